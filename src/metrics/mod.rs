//! Metrics as Prometheus reads them: the text exposition format (Prometheus 0.0.4, and
//! OpenMetrics 1.0 when the scraper asks for it) and latency histograms with fixed buckets.
//!
//! It sits at the very edge of the admin HTTP server (`crate::admin`): each shard fills a
//! snapshot of plain numbers on its own thread, shard 0 merges the snapshots and renders them
//! here. Nothing in this module touches a shard, a clock or a socket, so it is tested alone.
//! Histograms travel between shards as [`Buckets`] (a fixed array of counters, filled as each
//! observation is recorded), which merge by addition.

use std::fmt::Write as _;

/// Upper bounds of the latency buckets, in microseconds (100 µs to 30 s; +Inf is implied).
/// The exposition writes them in seconds.
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000,
];

/// Which exposition format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text (counters' families lose `_total`, the text ends with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text`, otherwise Prometheus text.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The response's Content-Type.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Buckets per histogram: one per bound, and +Inf.
pub const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// A metric family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only ever rises (its name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, `_sum` and `_count`.
    Histogram,
}

/// A latency distribution in fixed buckets ([`LATENCY_BOUNDS_S`]): what a shard sends to the
/// scraping shard. Counts are per bucket (not cumulative) until rendered.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Buckets {
    /// Observations per bucket; the last one is above the largest bound. A fixed array, so a
    /// snapshot copies it without allocating.
    pub counts: [u64; BUCKETS],
    /// The sum of all observations, in seconds.
    pub sum_s: f64,
}

impl Buckets {
    /// Empty buckets, ready to record.
    pub fn new() -> Buckets {
        Buckets::default()
    }

    /// Records one observation of `us` microseconds: a search over 17 bounds and two
    /// additions, cheap enough for every request.
    pub fn record_us(&mut self, us: u64) {
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_s += us as f64 / 1e6;
    }

    /// Adds `other`'s observations to these (merging shards).
    pub fn merge(&mut self, other: &Buckets) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum_s += other.sum_s;
    }

    /// How many observations in all.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A label set: `(name, value)` pairs, names from this crate, values escaped when written.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// An exposition being written: families in order, each with its samples.
#[derive(Debug)]
pub struct Exposition {
    format: Format,
    out: String,
}

impl Exposition {
    /// An empty exposition in `format`.
    pub fn new(format: Format) -> Exposition {
        Exposition {
            format,
            out: String::with_capacity(64 << 10),
        }
    }

    /// Starts a family: its HELP and TYPE lines. Counter names end in `_total`; OpenMetrics
    /// names the family without it.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let (family, kind) = match kind {
            Kind::Counter if self.format == Format::OpenMetrics => {
                (name.strip_suffix("_total").unwrap_or(name), "counter")
            }
            Kind::Counter => (name, "counter"),
            Kind::Gauge => (name, "gauge"),
            Kind::Histogram => (name, "histogram"),
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {family} {help}");
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.out.push_str(name);
        self.labels(labels, None);
        self.out.push(' ');
        self.number(value);
        self.out.push('\n');
    }

    /// One histogram's `_bucket` (cumulative, with `le`), `_sum` and `_count` samples.
    pub fn histogram(&mut self, name: &str, labels: Labels<'_>, b: &Buckets) {
        let mut cumulative = 0;
        for (i, n) in b.counts.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BOUNDS_US
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |&us| (us as f64 / 1e6).to_string());
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        self.out.push(' ');
        self.number(b.sum_s);
        let _ = write!(self.out, "\n{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    /// The finished text (OpenMetrics ends with `# EOF`).
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }

    fn labels(&mut self, labels: Labels<'_>, le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let le = le.map(|v| ("le", v));
        for (i, (k, v)) in labels.iter().copied().chain(le).enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v);
            self.out.push('"');
        }
        self.out.push('}');
    }

    fn number(&mut self, v: f64) {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
            let _ = write!(self.out, "{}", v as i64);
        } else if v.is_nan() {
            self.out.push_str("NaN");
        } else if v.is_infinite() {
            self.out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.out, "{v}");
        }
    }
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_labels_are_written_as_prometheus_reads_them() {
        let mut e = Exposition::new(Format::Prometheus);
        e.family("x_bytes_total", Kind::Counter, "Bytes.\nIn all.");
        e.sample("x_bytes_total", &[("topic", "a\"b\\c\nd")], 12.0);
        e.family("y", Kind::Gauge, "A gauge.");
        e.sample("y", &[], 0.25);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP x_bytes_total Bytes.\\nIn all.\n# TYPE x_bytes_total counter\n\
             x_bytes_total{topic=\"a\\\"b\\\\c\\nd\"} 12\n\
             # HELP y A gauge.\n# TYPE y gauge\ny 0.25\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut e = Exposition::new(Format::OpenMetrics);
        e.family("x_total", Kind::Counter, "X.");
        e.sample("x_total", &[], 1.0);
        let text = e.finish();
        assert!(text.starts_with("# HELP x X.\n# TYPE x counter\nx_total 1\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
    }

    #[test]
    fn histograms_bucket_microseconds_and_merge_by_addition() {
        // 50 µs: first bucket; 0.7 ms: le 0.001; 2 s (twice): le 2.5; 59 s: +Inf.
        let mut b = Buckets::new();
        for us in [50, 700, 2_000_000, 2_000_000, 59_000_000] {
            b.record_us(us);
        }
        assert_eq!(b.count(), 5);
        assert_eq!(b.counts[0], 1);
        assert_eq!(b.counts[3], 1);
        assert_eq!(b.counts[13], 2);
        assert_eq!(b.counts[17], 1);
        assert!((b.sum_s - 63.00075).abs() < 1e-9, "{}", b.sum_s);
        let mut merged = b.clone();
        merged.merge(&b);
        assert_eq!(merged.count(), 10);
        let mut e = Exposition::new(Format::Prometheus);
        e.family("lat_seconds", Kind::Histogram, "Latency.");
        e.histogram("lat_seconds", &[("api", "Produce")], &merged);
        let text = e.finish();
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"0.0001\"} 2\n"));
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"2.5\"} 8\n"));
        assert!(text.contains("lat_seconds_bucket{api=\"Produce\",le=\"+Inf\"} 10\n"));
        assert!(text.contains("lat_seconds_count{api=\"Produce\"} 10\n"));
        let empty = Buckets::default();
        let mut e = Exposition::new(Format::Prometheus);
        e.histogram("z", &[], &empty);
        let text = e.finish();
        assert!(text.starts_with("z_bucket{le=\"0.0001\"} 0\n"), "{text}");
        assert!(
            text.ends_with("z_bucket{le=\"+Inf\"} 0\nz_sum 0\nz_count 0\n"),
            "{text}"
        );
    }
}
