//! Plain-text tables for the CLI's output, kept parsing-friendly: a header line, left-aligned
//! columns separated by runs of spaces, no trailing spaces, and no cell that is empty or holds
//! whitespace (an empty value prints as `-`, whitespace inside a value as `_`), so
//! `awk '{print $3}'` or `split()` always finds the same column.

/// What a missing value prints as.
pub const NONE: &str = "-";

/// One cell as printed: `-` when empty, whitespace replaced by `_`.
pub fn cell(value: &str) -> String {
    if value.is_empty() {
        return NONE.to_string();
    }
    value
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// An optional number as a cell.
pub fn num(value: Option<i64>) -> String {
    value.map_or_else(|| NONE.to_string(), |v| v.to_string())
}

/// Renders `header` and `rows` as lines, each ending in a newline. Columns are padded to their
/// widest cell and separated by two spaces. Rows shorter than the header get `-` cells.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| cell(h)).collect())
        .chain(rows.iter().map(|r| {
            (0..header.len())
                .map(|i| r.get(i).map_or_else(|| NONE.to_string(), |c| cell(c)))
                .collect()
        }))
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let mut line = String::new();
        for (i, c) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            let pad = widths[i] - c.chars().count();
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_lines_have_no_trailing_spaces() {
        let rows = vec![
            vec!["g".to_string(), "orders".to_string(), "10".to_string()],
            vec!["group-long".to_string(), "t".to_string(), "7".to_string()],
        ];
        let out = render(&["GROUP", "TOPIC", "LAG"], &rows);
        assert_eq!(
            out,
            "GROUP       TOPIC   LAG\n\
             g           orders  10\n\
             group-long  t       7\n"
        );
    }

    #[test]
    fn empty_and_spaced_cells_stay_one_field() {
        let rows = vec![vec![String::new(), "my client".to_string()]];
        let out = render(&["A", "B"], &rows);
        let fields: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(fields, ["-", "my_client"]);
    }

    #[test]
    fn short_rows_are_filled_and_header_alone_renders() {
        let out = render(&["A", "B"], &[vec!["x".to_string()]]);
        assert_eq!(out, "A  B\nx  -\n");
        assert_eq!(render(&["GROUP", "STATE"], &[]), "GROUP  STATE\n");
    }

    #[test]
    fn numbers() {
        assert_eq!(num(Some(42)), "42");
        assert_eq!(num(None), "-");
    }
}
