//! Comparing two brokers: the figures that decide a comparison (throughput; p50, p99 and p99.9
//! of publish and end-to-end latency), their ratios B/A, the per-round figures (rounds run
//! A, B, A, B, ... so drift on a shared machine hits both sides alike), and each side's rounds
//! combined into one summary (latency from the merged histograms, throughput averaged).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::summary::{BrokerUsage, RunSummary, Throughput};

/// The compared figures of one run or one combined side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub produced_msgs_per_s: f64,
    pub produced_mib_per_s: f64,
    pub consumed_msgs_per_s: f64,
    pub publish_p50_ms: f64,
    pub publish_p99_ms: f64,
    pub publish_p99_9_ms: f64,
    pub e2e_p50_ms: f64,
    pub e2e_p99_ms: f64,
    pub e2e_p99_9_ms: f64,
}

impl Figures {
    pub fn of(s: &RunSummary) -> Figures {
        Figures {
            produced_msgs_per_s: s.produced.msgs_per_s,
            produced_mib_per_s: s.produced.mib_per_s,
            consumed_msgs_per_s: s.consumed.msgs_per_s,
            publish_p50_ms: s.publish_latency.p50_ms,
            publish_p99_ms: s.publish_latency.p99_ms,
            publish_p99_9_ms: s.publish_latency.p99_9_ms,
            e2e_p50_ms: s.e2e_latency.p50_ms,
            e2e_p99_ms: s.e2e_latency.p99_ms,
            e2e_p99_9_ms: s.e2e_latency.p99_9_ms,
        }
    }

    fn named(&self) -> [(&'static str, f64); 9] {
        [
            ("produced msg/s", self.produced_msgs_per_s),
            ("produced MiB/s", self.produced_mib_per_s),
            ("consumed msg/s", self.consumed_msgs_per_s),
            ("publish p50 ms", self.publish_p50_ms),
            ("publish p99 ms", self.publish_p99_ms),
            ("publish p99.9 ms", self.publish_p99_9_ms),
            ("e2e p50 ms", self.e2e_p50_ms),
            ("e2e p99 ms", self.e2e_p99_ms),
            ("e2e p99.9 ms", self.e2e_p99_9_ms),
        ]
    }
}

/// One compared figure: A, B and B/A (`None` when A is zero).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub metric: String,
    pub a: f64,
    pub b: f64,
    pub b_over_a: Option<f64>,
}

pub fn ratios(a: &Figures, b: &Figures) -> Vec<Ratio> {
    a.named()
        .iter()
        .zip(b.named())
        .map(|((name, va), (_, vb))| Ratio {
            metric: name.to_string(),
            a: *va,
            b: vb,
            b_over_a: (*va != 0.0).then(|| vb / va),
        })
        .collect()
}

/// A side's rounds as one summary: throughput averaged over rounds, counts summed, latency
/// from the histograms merged over all rounds, broker CPU per GiB over all rounds.
pub fn combine(
    label: &str,
    rounds: &[RunSummary],
    publish: &Histogram<u64>,
    e2e: &Histogram<u64>,
) -> RunSummary {
    let n = rounds.len().max(1) as f64;
    let mean = |f: &dyn Fn(&RunSummary) -> Throughput| Throughput {
        msgs: rounds.iter().map(|r| f(r).msgs).sum(),
        bytes: rounds.iter().map(|r| f(r).bytes).sum(),
        msgs_per_s: rounds.iter().map(|r| f(r).msgs_per_s).sum::<f64>() / n,
        mib_per_s: rounds.iter().map(|r| f(r).mib_per_s).sum::<f64>() / n,
    };
    let produced = mean(&|r| r.produced);
    let mut totals = crate::stats::Totals::default();
    for r in rounds {
        let t = &r.totals;
        totals.sent += t.sent;
        totals.acked += t.acked;
        totals.delivery_errors += t.delivery_errors;
        totals.send_errors += t.send_errors;
        totals.consumed += t.consumed;
        totals.consumed_unique += t.consumed_unique;
        totals.duplicates += t.duplicates;
        totals.untracked += t.untracked;
        totals.foreign += t.foreign;
        totals.missing += t.missing;
    }
    let first = rounds.first().cloned().unwrap_or_default();
    RunSummary {
        label: label.to_string(),
        window_s: rounds.iter().map(|r| r.window_s).sum(),
        consumed: mean(&|r| r.consumed),
        totals,
        publish_latency: LatencySummary::of(publish),
        e2e_latency: LatencySummary::of(e2e),
        broker: combine_broker(rounds, produced.bytes),
        timeline: Vec::new(),
        produced,
        ..first
    }
}

fn combine_broker(rounds: &[RunSummary], produced_bytes: u64) -> Option<BrokerUsage> {
    let all: Option<Vec<BrokerUsage>> = rounds.iter().map(|r| r.broker).collect();
    let all = all.filter(|v| !v.is_empty())?;
    let cpu_s: f64 = all.iter().map(|b| b.cpu_s).sum();
    Some(BrokerUsage {
        pid: all[0].pid,
        cpu_s,
        cpu_s_per_gib: BrokerUsage::cpu_s_per_gib(cpu_s, produced_bytes),
        rss_peak_mib: all.iter().map(|b| b.rss_peak_mib).fold(0.0, f64::max),
        vm_hwm_mib: all.iter().map(|b| b.vm_hwm_mib).fold(0.0, f64::max),
    })
}

/// What `compare` writes as `compare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub a_label: String,
    pub b_label: String,
    pub rounds: Vec<[Figures; 2]>,
    pub combined: [Figures; 2],
    pub ratios: Vec<Ratio>,
}

impl Comparison {
    pub fn new(a: &RunSummary, b: &RunSummary, rounds: Vec<[Figures; 2]>) -> Comparison {
        let combined = [Figures::of(a), Figures::of(b)];
        Comparison {
            a_label: a.label.clone(),
            b_label: b.label.clone(),
            ratios: ratios(&combined[0], &combined[1]),
            rounds,
            combined,
        }
    }
}

/// The comparison as printed (and embedded in the HTML report).
pub fn format_comparison(c: &Comparison) -> String {
    let mut out = format!(
        "A = {}, B = {}, {} round(s); ratio = B / A (throughput: > 1 means B is faster; \
         latency: > 1 means B is slower)\n\n{:<18} {:>12} {:>12} {:>8}\n",
        c.a_label,
        c.b_label,
        c.rounds.len(),
        "combined",
        "A",
        "B",
        "B/A"
    );
    for r in &c.ratios {
        let ratio = r
            .b_over_a
            .map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
        let _ = writeln!(
            out,
            "{:<18} {:>12.3} {:>12.3} {:>8}",
            r.metric, r.a, r.b, ratio
        );
    }
    let _ = write!(out, "\n{:<7} {:<4}", "round", "side");
    for (name, _) in Figures::default().named() {
        let _ = write!(out, " {:>16}", name);
    }
    out.push('\n');
    for (i, pair) in c.rounds.iter().enumerate() {
        for (side, f) in ["A", "B"].iter().zip(pair) {
            let _ = write!(out, "{:<7} {:<4}", i + 1, side);
            for (_, v) in f.named() {
                let _ = write!(out, " {v:>16.3}");
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{new_histogram, record_ns};

    fn summary(label: &str, msgs_per_s: f64, p99: f64) -> RunSummary {
        let mut s = RunSummary {
            label: label.into(),
            window_s: 10.0,
            ..Default::default()
        };
        s.produced.msgs_per_s = msgs_per_s;
        s.produced.bytes = 1 << 30;
        s.publish_latency.p99_ms = p99;
        s.totals.acked = 100;
        s.broker = Some(BrokerUsage {
            pid: 1,
            cpu_s: 2.0,
            cpu_s_per_gib: Some(2.0),
            rss_peak_mib: msgs_per_s / 100.0,
            vm_hwm_mib: 1.0,
        });
        s
    }

    #[test]
    fn ratios_are_b_over_a() {
        let a = Figures::of(&summary("a", 1000.0, 2.0));
        let b = Figures::of(&summary("b", 1500.0, 1.0));
        let r = ratios(&a, &b);
        assert_eq!(r.len(), 9);
        assert_eq!(r[0].metric, "produced msg/s");
        assert_eq!(r[0].b_over_a, Some(1.5));
        let p99 = r.iter().find(|r| r.metric == "publish p99 ms").unwrap();
        assert_eq!(p99.b_over_a, Some(0.5));
        let e2e = r.iter().find(|r| r.metric == "e2e p50 ms").unwrap();
        assert_eq!(e2e.b_over_a, None, "A is zero");
    }

    #[test]
    fn combine_averages_rates_and_merges_latency() {
        let rounds = [summary("a", 1000.0, 2.0), summary("a", 3000.0, 4.0)];
        let mut h = new_histogram();
        for ms in 1..=100u64 {
            record_ns(&mut h, ms * 1_000_000);
        }
        let c = combine("A (2 rounds)", &rounds, &h, &h);
        assert_eq!(c.label, "A (2 rounds)");
        assert_eq!(c.produced.msgs_per_s, 2000.0);
        assert_eq!(c.produced.bytes, 2 << 30);
        assert_eq!(c.window_s, 20.0);
        assert_eq!(c.totals.acked, 200);
        assert!((c.publish_latency.p99_ms - 99.0).abs() < 0.1);
        let b = c.broker.unwrap();
        assert_eq!((b.cpu_s, b.cpu_s_per_gib), (4.0, Some(2.0)));
        assert_eq!(b.rss_peak_mib, 30.0);
        let mut no_pid = rounds.clone();
        no_pid[1].broker = None;
        assert!(combine("x", &no_pid, &h, &h).broker.is_none());
    }

    #[test]
    fn printed_comparison_has_ratios_and_rounds() {
        let a = summary("shardlog", 1000.0, 2.0);
        let b = summary("kafka", 500.0, 3.0);
        let rounds = vec![[Figures::of(&a), Figures::of(&b)]; 2];
        let c = Comparison::new(&a, &b, rounds);
        let text = format_comparison(&c);
        assert!(text.contains("A = shardlog, B = kafka, 2 round(s)"));
        assert!(text.contains("produced msg/s         1000.000      500.000    0.500"));
        assert!(text.contains("publish p99 ms            2.000        3.000    1.500"));
        assert_eq!(text.lines().filter(|l| l.starts_with("2 ")).count(), 2);
        let json = serde_json::to_string(&c).unwrap();
        assert!(json.contains("\"b_over_a\":0.5"));
    }
}
