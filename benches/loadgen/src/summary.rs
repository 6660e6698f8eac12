//! The result of one run as data: the JSON summary (what `report` and `compare` read back),
//! the once-a-second timeline, and the percentile table printed at the end. Throughput is in
//! messages per second and MiB/s (2^20 bytes, what Kafka's perf tools call MB/s), latency in
//! milliseconds.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::stats::Totals;
use crate::workload::MIB;

/// Events per second and MiB per second over the measurement window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub msgs: u64,
    pub bytes: u64,
    pub msgs_per_s: f64,
    pub mib_per_s: f64,
}

impl Throughput {
    pub fn over(msgs: u64, bytes: u64, window_s: f64) -> Throughput {
        let per_s = |x: u64| {
            if window_s > 0.0 {
                x as f64 / window_s
            } else {
                0.0
            }
        };
        Throughput {
            msgs,
            bytes,
            msgs_per_s: per_s(msgs),
            mib_per_s: per_s(bytes) / MIB,
        }
    }
}

/// What the broker process cost during the measurement window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerUsage {
    pub pid: u32,
    /// CPU seconds (user + system) the broker used in the window.
    pub cpu_s: f64,
    /// CPU seconds per GiB produced in the window (`None` when nothing was produced).
    pub cpu_s_per_gib: Option<f64>,
    /// Largest VmRSS seen in the once-a-second samples, MiB.
    pub rss_peak_mib: f64,
    /// The kernel's peak RSS of the process (VmHWM) at the end, MiB; covers its whole life.
    pub vm_hwm_mib: f64,
}

impl BrokerUsage {
    pub fn cpu_s_per_gib(cpu_s: f64, produced_bytes: u64) -> Option<f64> {
        (produced_bytes > 0).then(|| cpu_s / (produced_bytes as f64 / (MIB * 1024.0)))
    }
}

/// One second of the run, as the progress line showed it. Latencies are of the messages
/// acknowledged (publish) or consumed (e2e) in that second, and only measured ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    pub t_s: f64,
    pub phase: Phase,
    pub produced_msgs_per_s: f64,
    pub produced_mib_per_s: f64,
    pub consumed_msgs_per_s: f64,
    pub publish_p99_ms: Option<f64>,
    #[serde(default)]
    pub publish_max_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
    #[serde(default)]
    pub e2e_max_ms: Option<f64>,
    pub broker_cpu_pct: Option<f64>,
    pub broker_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Warmup,
    Measure,
    Drain,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warm-up",
            Phase::Measure => "measure",
            Phase::Drain => "drain",
        }
    }
}

/// Everything one run measured; written as `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub tool: String,
    pub label: String,
    pub bootstrap: String,
    pub workload_name: String,
    /// The validated workload as run (with overrides applied).
    pub workload: serde_json::Value,
    pub started_at_unix_s: u64,
    pub window_s: f64,
    /// Acknowledged in the window.
    pub produced: Throughput,
    /// Read by the consumers in the window.
    pub consumed: Throughput,
    pub totals: Totals,
    pub publish_latency: LatencySummary,
    pub e2e_latency: LatencySummary,
    pub broker: Option<BrokerUsage>,
    pub timeline: Vec<TimelinePoint>,
}

fn latency_row(out: &mut String, name: &str, l: &LatencySummary) {
    let _ = writeln!(
        out,
        "{name:<12} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10}",
        l.p50_ms, l.p90_ms, l.p99_ms, l.p99_9_ms, l.p99_99_ms, l.max_ms, l.count
    );
}

/// The table printed at the end of a run.
pub fn format_table(s: &RunSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} — workload {} against {} ({:.0} s measured)",
        s.label, s.workload_name, s.bootstrap, s.window_s
    );
    let _ = writeln!(
        out,
        "\n{:<12} {:>12} {:>10}",
        "throughput", "msg/s", "MiB/s"
    );
    for (name, t) in [("produced", &s.produced), ("consumed", &s.consumed)] {
        let _ = writeln!(
            out,
            "{name:<12} {:>12.1} {:>10.2}",
            t.msgs_per_s, t.mib_per_s
        );
    }
    let _ = writeln!(
        out,
        "\n{:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "latency ms", "p50", "p90", "p99", "p99.9", "p99.99", "max", "count"
    );
    latency_row(&mut out, "publish", &s.publish_latency);
    latency_row(&mut out, "end-to-end", &s.e2e_latency);
    if let Some(b) = &s.broker {
        let per_gib = b
            .cpu_s_per_gib
            .map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "\nbroker pid {}: {:.2} CPU-s in the window, {per_gib} CPU-s/GiB produced, \
             peak RSS {:.1} MiB (sampled), VmHWM {:.1} MiB",
            b.pid, b.cpu_s, b.rss_peak_mib, b.vm_hwm_mib
        );
    }
    let t = &s.totals;
    let _ = writeln!(
        out,
        "\nmessages: sent {}, acked {}, delivery errors {}, send errors {}, consumed {} \
         (unique {}, duplicates {}, missing {}, foreign {})",
        t.sent,
        t.acked,
        t.delivery_errors,
        t.send_errors,
        t.consumed,
        t.consumed_unique + t.untracked,
        t.duplicates,
        t.missing,
        t.foreign
    );
    if t.missing > 0 {
        let _ = writeln!(
            out,
            "WARNING: {} acknowledged messages were not consumed before the drain timeout; \
             end-to-end latency covers only the ones that were",
            t.missing
        );
    }
    out
}

/// The once-a-second progress line.
pub fn format_progress(p: &TimelinePoint) -> String {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    let mut line = format!(
        "[{:>5.0}s {:<7}] produced {:>10.1} msg/s {:>8.2} MiB/s | consumed {:>10.1} msg/s | \
         publish p99 {} max {} ms, e2e p99 {} max {} ms",
        p.t_s,
        p.phase.name(),
        p.produced_msgs_per_s,
        p.produced_mib_per_s,
        p.consumed_msgs_per_s,
        ms(p.publish_p99_ms),
        ms(p.publish_max_ms),
        ms(p.e2e_p99_ms),
        ms(p.e2e_max_ms)
    );
    if let (Some(cpu), Some(rss)) = (p.broker_cpu_pct, p.broker_rss_mib) {
        let _ = write!(line, " | broker {cpu:.0}% CPU, {rss:.0} MiB");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_and_cpu_per_gib() {
        let t = Throughput::over(2048, 2 << 20, 2.0);
        assert_eq!(t.msgs_per_s, 1024.0);
        assert_eq!(t.mib_per_s, 1.0);
        assert_eq!(Throughput::over(5, 5, 0.0).msgs_per_s, 0.0);
        assert_eq!(BrokerUsage::cpu_s_per_gib(3.0, 1 << 29), Some(6.0));
        assert_eq!(BrokerUsage::cpu_s_per_gib(3.0, 0), None);
    }

    #[test]
    fn table_shows_every_figure() {
        let mut s = RunSummary {
            label: "shardlog".into(),
            workload_name: "w".into(),
            bootstrap: "127.0.0.1:9092".into(),
            window_s: 10.0,
            produced: Throughput::over(10_000, 10_000 * 1024, 10.0),
            ..Default::default()
        };
        s.publish_latency.p99_9_ms = 4.25;
        s.e2e_latency.max_ms = 77.5;
        s.totals.acked = 10_000;
        s.broker = Some(BrokerUsage {
            pid: 7,
            cpu_s: 1.5,
            cpu_s_per_gib: Some(153.6),
            rss_peak_mib: 40.0,
            vm_hwm_mib: 41.0,
        });
        let t = format_table(&s);
        for needle in [
            "shardlog — workload w against 127.0.0.1:9092 (10 s measured)",
            "produced           1000.0       0.98",
            "p99.99",
            "4.250",
            "77.500",
            "153.60 CPU-s/GiB",
            "acked 10000",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        assert!(!t.contains("WARNING"));
        s.totals.missing = 3;
        assert!(format_table(&s).contains("WARNING: 3 acknowledged messages were not consumed"));
    }

    #[test]
    fn progress_line() {
        let p = TimelinePoint {
            t_s: 3.0,
            phase: Phase::Measure,
            produced_msgs_per_s: 20480.0,
            produced_mib_per_s: 20.0,
            consumed_msgs_per_s: 20470.0,
            publish_p99_ms: Some(1.5),
            publish_max_ms: Some(4.25),
            e2e_p99_ms: None,
            e2e_max_ms: None,
            broker_cpu_pct: Some(55.0),
            broker_rss_mib: Some(120.0),
        };
        let line = format_progress(&p);
        assert!(line.starts_with("[    3s measure]"), "{line}");
        assert!(line.contains("20480.0 msg/s"));
        assert!(line.contains("20.00 MiB/s"));
        assert!(line.contains("publish p99 1.500 max 4.250 ms, e2e p99 - max - ms"));
        assert!(line.contains("broker 55% CPU, 120 MiB"));
    }

    #[test]
    fn summary_json_round_trips() {
        let s = RunSummary {
            label: "x".into(),
            timeline: vec![TimelinePoint::default()],
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"phase\":\"warmup\""));
        assert_eq!(serde_json::from_str::<RunSummary>(&json).unwrap(), s);
    }
}
