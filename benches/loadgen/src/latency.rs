//! Latency histograms and their two text forms. Values are recorded in microseconds in an
//! HdrHistogram (1 µs to 1 h, 3 significant digits), summarised as the percentiles the reports
//! print, written as `.hgrm` files in HdrHistogram's percentile-distribution text format (values
//! in milliseconds, so the files load in the HdrHistogram plotter and compare with other tools'
//! files), and read back from such files for the `report` subcommand.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest recordable latency, microseconds (one hour); longer ones saturate to it.
const LATENCY_US_MAX: u64 = 3_600_000_000;
const SIGFIG: u8 = 3;
/// Microseconds per millisecond: the unit of `.hgrm` files and reports.
const US_PER_MS: f64 = 1000.0;
/// Percentile rows per halving of the distance to 100 % (HdrHistogram's usual 5).
const TICKS_PER_HALF_DISTANCE: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    #[error("histograms cannot be added: {0:?}")]
    Add(hdrhistogram::AdditionError),
    #[error("not an HdrHistogram percentile distribution: {0}")]
    Hgrm(String),
}

/// A new, empty latency histogram (values in microseconds).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, SIGFIG).expect("valid histogram bounds")
}

/// Records one latency given in nanoseconds.
pub fn record_ns(h: &mut Histogram<u64>, latency_ns: u64) {
    h.saturating_record((latency_ns / 1000).max(1));
}

pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), LatencyError> {
    into.add(from).map_err(LatencyError::Add)
}

/// The figures reports print for one histogram, in milliseconds, plus its percentile curve.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub p99_99_ms: f64,
    pub max_ms: f64,
    /// `[quantile, value_ms]` points of the percentile distribution (the `.hgrm` rows).
    pub curve: Vec<[f64; 2]>,
}

fn ms(us: u64) -> f64 {
    us as f64 / US_PER_MS
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let at = |q: f64| ms(h.value_at_quantile(q));
        LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / US_PER_MS,
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            p99_9_ms: at(0.999),
            p99_99_ms: at(0.9999),
            max_ms: ms(h.max()),
            curve: rows(h).iter().map(|r| [r.quantile, r.value_ms]).collect(),
        }
    }
}

/// One row of a percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    value_ms: f64,
    quantile: f64,
    total_count: u64,
}

fn rows(h: &Histogram<u64>) -> Vec<Row> {
    let mut total = 0;
    h.iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| {
            total += v.count_since_last_iteration();
            Row {
                value_ms: ms(h.highest_equivalent(v.value_iterated_to())),
                quantile: v.quantile_iterated_to(),
                total_count: total,
            }
        })
        .collect()
}

/// The histogram as an HdrHistogram percentile-distribution text (`.hgrm`), values in ms.
pub fn to_hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    for r in rows(h) {
        if r.quantile < 1.0 {
            let _ = writeln!(
                out,
                "{:12.3} {:2.12} {:10} {:14.2}",
                r.value_ms,
                r.quantile,
                r.total_count,
                1.0 / (1.0 - r.quantile)
            );
        } else {
            let _ = writeln!(
                out,
                "{:12.3} {:2.12} {:10}",
                r.value_ms, r.quantile, r.total_count
            );
        }
    }
    let (mean, stdev) = if h.is_empty() {
        (0.0, 0.0)
    } else {
        (h.mean() / US_PER_MS, h.stdev() / US_PER_MS)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for a precision: the power of two that resolves
/// `2 * 10^sigfig` distinct values.
fn sub_buckets(sigfig: u8) -> u64 {
    let single_unit = 2 * 10u64.pow(u32::from(sigfig));
    single_unit.next_power_of_two()
}

/// Reads the `[quantile, value]` points of a percentile-distribution text (any value unit; the
/// files this tool writes are in milliseconds).
pub fn parse_hgrm(text: &str) -> Result<Vec<[f64; 2]>, LatencyError> {
    let mut points = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) {
            return Err(LatencyError::Hgrm(format!("unexpected row {line:?}")));
        }
        let parse = |s: &str| {
            s.parse::<f64>()
                .map_err(|_| LatencyError::Hgrm(format!("bad number in row {line:?}")))
        };
        let (value, quantile) = (parse(cols[0])?, parse(cols[1])?);
        if !(0.0..=1.0).contains(&quantile) {
            return Err(LatencyError::Hgrm(format!(
                "percentile out of range: {line:?}"
            )));
        }
        points.push([quantile, value]);
    }
    if points.is_empty() {
        return Err(LatencyError::Hgrm("no percentile rows".into()));
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform_1_to_10000_us() -> Histogram<u64> {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record_ns(&mut h, us * 1000);
        }
        h
    }

    #[test]
    fn summary_percentiles_in_ms() {
        let s = LatencySummary::of(&uniform_1_to_10000_us());
        assert_eq!(s.count, 10_000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 0.001;
        assert!(close(s.p50_ms, 5.0), "{}", s.p50_ms);
        assert!(close(s.p90_ms, 9.0), "{}", s.p90_ms);
        assert!(close(s.p99_ms, 9.9), "{}", s.p99_ms);
        assert!(close(s.p99_9_ms, 9.99), "{}", s.p99_9_ms);
        assert!(close(s.max_ms, 10.0), "{}", s.max_ms);
        assert!(close(s.mean_ms, 5.0005), "{}", s.mean_ms);
        assert_eq!(s.curve.last().unwrap()[0], 1.0);
        assert!(s
            .curve
            .windows(2)
            .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
    }

    #[test]
    fn empty_and_saturating() {
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
        let mut h = new_histogram();
        record_ns(&mut h, 10); // below 1 µs counts as 1 µs
        record_ns(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= LATENCY_US_MAX);
    }

    #[test]
    fn hgrm_has_the_standard_layout_and_round_trips() {
        let h = uniform_1_to_10000_us();
        let text = to_hgrm(&h);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let first = lines.next().unwrap();
        assert_eq!(
            first,
            "       0.001 0.000000000000          1           1.00"
        );
        assert!(text.contains("#[Mean    =        5.001, StdDeviation   ="));
        assert!(text.contains("#[Max     =       10.007, Total count    =        10000]"));
        assert!(text.contains("#[Buckets =           22, SubBuckets     =         2048]"));
        let last_row = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(last_row.split_whitespace().count(), 3, "{last_row}");
        assert!(last_row.contains("1.000000000000      10000"));
        let points = parse_hgrm(&text).unwrap();
        let summary = LatencySummary::of(&h);
        assert_eq!(points.len(), summary.curve.len());
        for (p, c) in points.iter().zip(&summary.curve) {
            assert!((p[0] - c[0]).abs() < 1e-9 && (p[1] - c[1]).abs() < 0.0005);
        }
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = uniform_1_to_10000_us();
        merge(&mut a, &uniform_1_to_10000_us()).unwrap();
        assert_eq!(a.len(), 20_000);
    }

    #[test]
    fn bad_hgrm_is_refused() {
        assert!(parse_hgrm("").is_err());
        assert!(parse_hgrm("hello there").is_err());
        assert!(parse_hgrm("1.0 2.5 10 1.0").is_err());
        assert_eq!(parse_hgrm("  2.5 0.5 10 2.00\n").unwrap(), vec![[0.5, 2.5]]);
    }
}
