//! The HTML report: latency percentile curves of one or more runs drawn on the same chart, so
//! two brokers (or two versions of one) compare at a glance. The x axis is the usual "nines"
//! scale of HdrHistogram plots (log of 1/(1-p): 50 %, 90 %, 99 %, ... 99.999 %), the y axis is
//! logarithmic in milliseconds. The page is self-contained: inline SVG and CSS, no scripts, no
//! fetched assets, so it opens from a CI artifact or a mail attachment.

use std::fmt::Write as _;

use crate::summary::RunSummary;

/// Which latency a curve shows; one chart per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Publish,
    EndToEnd,
    /// A `.hgrm` file whose name does not say which it is.
    Other,
}

impl Metric {
    fn title(self) -> &'static str {
        match self {
            Metric::Publish => "Publish latency (send → ack)",
            Metric::EndToEnd => "End-to-end latency (send → consumed)",
            Metric::Other => "Latency",
        }
    }
}

/// One run (or one combined side of a comparison) as the report draws it.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    /// `[quantile, value_ms]` curves.
    pub curves: Vec<(Metric, Vec<[f64; 2]>)>,
    pub summary: Option<RunSummary>,
}

impl Series {
    pub fn from_summary(s: &RunSummary) -> Series {
        Series {
            label: s.label.clone(),
            curves: vec![
                (Metric::Publish, s.publish_latency.curve.clone()),
                (Metric::EndToEnd, s.e2e_latency.curve.clone()),
            ],
            summary: Some(s.clone()),
        }
    }
}

/// Decades on the x axis: up to 99.999 %.
const NINES_MAX: f64 = 5.0;
const WIDTH: f64 = 920.0;
const HEIGHT: f64 = 440.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 56.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const DASHES: [&str; 3] = ["", "8 4", "2 3"];
/// Presentation attributes (not CSS classes, so an SVG cut out of the page looks the same).
const GRID: &str = r##"stroke="#ccc" stroke-width="1""##;
const GRID_MINOR: &str = r##"stroke="#eee" stroke-width="1""##;
const X_LABEL: &str = r##"font-size="12" text-anchor="middle""##;
const Y_LABEL: &str = r##"font-size="12" text-anchor="end""##;
/// Height of one legend row under the chart.
const LEGEND_ROW: f64 = 18.0;

pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Position on the nines axis: log10(1 / (1 - p)), clamped to the axis.
pub fn nines(quantile: f64) -> f64 {
    if quantile >= 1.0 {
        return NINES_MAX;
    }
    (1.0 / (1.0 - quantile.max(0.0))).log10().min(NINES_MAX)
}

/// A latency in milliseconds as an axis label.
pub fn format_ms(v: f64) -> String {
    let trim = |x: f64| {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if v >= 1000.0 {
        format!("{} s", trim(v / 1000.0))
    } else if v >= 1.0 {
        format!("{} ms", trim(v))
    } else {
        format!("{} µs", trim(v * 1000.0))
    }
}

/// The y axis range in decades covering every plotted value (at least one decade).
fn y_decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (-1, 1);
    }
    let lo_d = lo.log10().floor() as i32;
    let hi_d = (hi.log10().ceil() as i32).max(lo_d + 1);
    (lo_d, hi_d)
}

struct Axes {
    lo_d: i32,
    hi_d: i32,
}

impl Axes {
    fn x(&self, nines: f64) -> f64 {
        LEFT + nines / NINES_MAX * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, ms: f64) -> f64 {
        let d = ms.max(10f64.powi(self.lo_d)).log10();
        let frac = (d - f64::from(self.lo_d)) / f64::from(self.hi_d - self.lo_d);
        HEIGHT - BOTTOM - frac * (HEIGHT - TOP - BOTTOM)
    }
}

fn grid(out: &mut String, a: &Axes) {
    let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"];
    for (i, label) in labels.iter().enumerate() {
        let x = a.x(i as f64);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" {GRID}/><text x="{x:.1}" y="{:.1}" {X_LABEL}>{label}</text>"##,
            HEIGHT - BOTTOM,
            HEIGHT - BOTTOM + 18.0
        );
    }
    let x50 = a.x(nines(0.5));
    let _ = write!(
        out,
        r##"<line x1="{x50:.1}" y1="{TOP}" x2="{x50:.1}" y2="{:.1}" {GRID_MINOR}/><text x="{x50:.1}" y="{:.1}" {X_LABEL}>50%</text>"##,
        HEIGHT - BOTTOM,
        HEIGHT - BOTTOM + 18.0
    );
    for d in a.lo_d..=a.hi_d {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(d);
            if v > 10f64.powi(a.hi_d) * 1.0001 {
                continue;
            }
            let y = a.y(v);
            let grid = if m == 1.0 { GRID } else { GRID_MINOR };
            let _ = write!(
                out,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" {grid}/><text x="{:.1}" y="{:.1}" {Y_LABEL}>{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                escape(&format_ms(v))
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">percentile</text>"##,
        (LEFT + WIDTH - RIGHT) / 2.0,
        HEIGHT - 12.0
    );
}

fn style_of(i: usize) -> (&'static str, &'static str) {
    (
        COLORS[i % COLORS.len()],
        DASHES[(i / COLORS.len()) % DASHES.len()],
    )
}

/// One chart: every series' curve for `metric`.
fn chart(metric: Metric, series: &[Series]) -> String {
    let curves: Vec<(usize, &Vec<[f64; 2]>)> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.curves
                .iter()
                .filter(move |(m, c)| *m == metric && !c.is_empty())
                .map(move |(_, c)| (i, c))
        })
        .collect();
    let (lo_d, hi_d) = y_decades(curves.iter().flat_map(|(_, c)| c.iter().map(|p| p[1])));
    let a = Axes { lo_d, hi_d };
    let height = HEIGHT + curves.len() as f64 * LEGEND_ROW + 8.0;
    let mut out = format!(
        r##"<h2>{}</h2><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" role="img"><rect width="100%" height="100%" fill="#fff"/>"##,
        escape(metric.title())
    );
    grid(&mut out, &a);
    for (i, c) in &curves {
        let (color, dash) = style_of(*i);
        let points: Vec<String> = c
            .iter()
            .map(|p| format!("{:.1},{:.1}", a.x(nines(p[0])), a.y(p[1])))
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"><title>{}</title></polyline>"##,
            points.join(" "),
            escape(&series[*i].label)
        );
    }
    legend(&mut out, series, curves.iter().map(|(i, _)| *i));
    out.push_str("</svg>\n");
    out
}

fn legend(out: &mut String, series: &[Series], shown: impl Iterator<Item = usize>) {
    for (row, i) in shown.enumerate() {
        let (color, dash) = style_of(i);
        let y = HEIGHT + 4.0 + row as f64 * LEGEND_ROW;
        let x = LEFT;
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{color}" stroke-width="3" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}" font-size="13">{}</text>"##,
            x + 28.0,
            x + 34.0,
            y + 4.0,
            escape(&series[i].label)
        );
    }
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The figures table: one row per series that has a summary.
fn table(series: &[Series]) -> String {
    let mut out = String::from(
        "<h2>Figures</h2><table><tr><th>run</th><th>workload</th><th>produced msg/s</th>\
         <th>MiB/s</th><th>consumed msg/s</th><th>publish p50 / p99 / p99.9 / max (ms)</th>\
         <th>e2e p50 / p99 / p99.9 / max (ms)</th><th>broker CPU-s/GiB</th>\
         <th>broker peak RSS MiB</th><th>missing / dup</th></tr>\n",
    );
    for s in series {
        let Some(r) = &s.summary else { continue };
        let lat = |l: &crate::latency::LatencySummary| {
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3}",
                l.p50_ms, l.p99_ms, l.p99_9_ms, l.max_ms
            )
        };
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td></tr>",
            escape(&s.label),
            escape(&r.workload_name),
            r.produced.msgs_per_s,
            r.produced.mib_per_s,
            r.consumed.msgs_per_s,
            lat(&r.publish_latency),
            lat(&r.e2e_latency),
            cell(r.broker.and_then(|b| b.cpu_s_per_gib), 2),
            cell(r.broker.map(|b| b.rss_peak_mib), 1),
            r.totals.missing,
            r.totals.duplicates
        );
    }
    out.push_str("</table>\n");
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222}\
svg{border:1px solid #ccc}\
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;\
text-align:right}td:first-child,th:first-child{text-align:left}";

/// The whole page. `notes_html` (already escaped) goes between the title and the charts.
pub fn render(title: &str, series: &[Series], notes_html: &str) -> String {
    let mut metrics: Vec<Metric> = series
        .iter()
        .flat_map(|s| s.curves.iter().map(|(m, _)| *m))
        .collect();
    metrics.sort();
    metrics.dedup();
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>{STYLE}</style></head><body><h1>{t}</h1>\n{notes_html}\n",
        t = escape(title)
    );
    for m in metrics {
        out.push_str(&chart(m, series));
    }
    if series.iter().any(|s| s.summary.is_some()) {
        out.push_str(&table(series));
    }
    out.push_str(
        "<p>Latency is measured from the intended send time at fixed rates (no coordinated \
         omission) and from the actual send time at max rate. Axis: percentile on a log scale \
         of 1/(1-p); latency on a log scale.</p></body></html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(label: &str, scale: f64) -> Series {
        let curve: Vec<[f64; 2]> = [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]
            .iter()
            .enumerate()
            .map(|(i, q)| [*q, scale * (i + 1) as f64])
            .collect();
        Series {
            label: label.into(),
            curves: vec![(Metric::Publish, curve.clone()), (Metric::EndToEnd, curve)],
            summary: Some(RunSummary {
                label: label.into(),
                workload_name: "w".into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert!((nines(0.5) - 2f64.log10()).abs() < 1e-9);
        assert_eq!(nines(1.0), NINES_MAX);
        assert_eq!(nines(0.9999999), NINES_MAX);
    }

    #[test]
    fn axis_labels() {
        assert_eq!(format_ms(0.05), "50 µs");
        assert_eq!(format_ms(1.0), "1 ms");
        assert_eq!(format_ms(2.5), "2.5 ms");
        assert_eq!(format_ms(5000.0), "5 s");
        assert_eq!(y_decades([0.3, 42.0].into_iter()), (-1, 2));
        assert_eq!(y_decades([1.0].into_iter()), (0, 1));
        assert_eq!(y_decades(std::iter::empty()), (-1, 1));
    }

    #[test]
    fn two_runs_share_each_chart() {
        let html = render(
            "A vs B",
            &[series("shardlog <A>", 1.0), series("kafka", 3.0)],
            "<p>notes</p>",
        );
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches("<svg").count(), 2, "publish and e2e charts");
        assert_eq!(html.matches("<polyline").count(), 4);
        assert!(html.contains("shardlog &lt;A&gt;"));
        assert!(!html.contains("shardlog <A>"));
        for label in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
            assert!(html.contains(&format!(">{label}</text>")), "{label}");
        }
        assert!(html.contains("<p>notes</p>"));
        assert!(html.contains("<table>"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://") || html.matches("http://").count() == 2);
        // xmlns only
    }

    #[test]
    fn curves_go_right_and_up() {
        let html = render("x", &[series("a", 1.0)], "");
        let pts = html
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let xy: Vec<(f64, f64)> = pts
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert!(xy.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 <= w[0].1));
        assert_eq!(xy[0].0, LEFT);
        assert_eq!(xy.last().unwrap().0, WIDTH - RIGHT);
    }

    #[test]
    fn hgrm_only_series_get_a_generic_chart_and_no_table() {
        let s = Series {
            label: "file".into(),
            curves: vec![(Metric::Other, vec![[0.5, 1.0], [1.0, 2.0]])],
            summary: None,
        };
        let html = render("x", &[s], "");
        assert_eq!(html.matches("<svg").count(), 1);
        assert!(html.contains("<h2>Latency</h2>"));
        assert!(!html.contains("<table>"));
    }
}
