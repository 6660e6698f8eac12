//! The once-a-second view of a running benchmark: rates since the last tick, the p99 and max
//! latency of the messages acknowledged (or consumed) since the last tick, so a stall shows in
//! the second it happened, and the broker's CPU and memory when its pid is known. Ticks fall on
//! whole seconds after the start, so the samples at the start and end of the measurement window
//! bound the broker CPU time charged to the window exactly.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::procstat::{Pid, Sample, Sampler};
use crate::shared::RunShared;
use crate::stats::{self, SharedHist};
use crate::summary::{format_progress, BrokerUsage, Phase, TimelinePoint};
use crate::workload::MIB;

const TICK_NS: u64 = 1_000_000_000;

struct Broker {
    pid: Pid,
    sampler: Sampler,
    last: Option<Sample>,
    cpu_at_measure_start: Option<f64>,
    cpu_at_end: Option<f64>,
    rss_peak_kib: u64,
    warned: bool,
}

impl Broker {
    fn sample(&mut self) -> Option<Sample> {
        match self.sampler.sample() {
            Ok(s) => {
                self.rss_peak_kib = self.rss_peak_kib.max(s.rss_kib);
                self.last = Some(s);
                Some(s)
            }
            Err(e) => {
                if !std::mem::replace(&mut self.warned, true) {
                    tracing::warn!(pid = self.pid.0, error = %e, "cannot sample the broker");
                }
                None
            }
        }
    }
}

pub struct Monitor {
    shared: Arc<RunShared>,
    broker: Option<Broker>,
    print: bool,
    next_tick_ns: u64,
    prev_ns: u64,
    prev_acked: u64,
    prev_consumed: u64,
    /// The histograms as they were at the last tick (the next tick reports the difference).
    prev_publish: Option<Histogram<u64>>,
    prev_e2e: Option<Histogram<u64>>,
    timeline: Vec<TimelinePoint>,
}

impl Monitor {
    pub fn new(shared: &Arc<RunShared>, pid: Option<Pid>, print: bool) -> Monitor {
        Monitor {
            shared: shared.clone(),
            broker: pid.map(|pid| Broker {
                pid,
                sampler: Sampler::new(pid),
                last: None,
                cpu_at_measure_start: None,
                cpu_at_end: None,
                rss_peak_kib: 0,
                warned: false,
            }),
            print,
            next_tick_ns: 0,
            prev_ns: 0,
            prev_acked: 0,
            prev_consumed: 0,
            prev_publish: None,
            prev_e2e: None,
            timeline: Vec::new(),
        }
    }

    /// Called right after the phases are set, before the producers start.
    pub fn mark_start(&mut self) {
        let phases = *self.shared.phases.get().expect("phases set");
        self.prev_ns = phases.start_ns;
        self.next_tick_ns = phases.start_ns + TICK_NS;
        let totals = self.shared.counters.totals();
        (self.prev_acked, self.prev_consumed) = (totals.acked, totals.consumed);
        self.sample_broker(phases.start_ns);
    }

    /// Ticks once a second until `end_ns` (inclusive of a tick that falls on it).
    pub fn tick_until(&mut self, end_ns: u64, publish: &[SharedHist], e2e: &[SharedHist]) {
        while self.next_tick_ns <= end_ns {
            let now = self.shared.clock.now_ns();
            if now < self.next_tick_ns {
                std::thread::sleep(Duration::from_nanos(self.next_tick_ns - now));
            }
            self.tick(publish, e2e);
        }
    }

    pub fn tick_if_due(&mut self, publish: &[SharedHist], e2e: &[SharedHist]) {
        if self.shared.clock.now_ns() >= self.next_tick_ns {
            self.tick(publish, e2e);
        }
    }

    fn tick(&mut self, publish: &[SharedHist], e2e: &[SharedHist]) {
        let phases = *self.shared.phases.get().expect("phases set");
        let t_ns = self.next_tick_ns;
        let now = self.shared.clock.now_ns().max(t_ns);
        let interval_s = (now - self.prev_ns) as f64 / 1e9;
        let totals = self.shared.counters.totals();
        let produced = (totals.acked - self.prev_acked) as f64 / interval_s;
        let consumed = (totals.consumed - self.prev_consumed) as f64 / interval_s;
        let cpu_before = self.broker.as_ref().and_then(|b| b.last);
        let sample = self.sample_broker(t_ns);
        let (publish_p99_ms, publish_max_ms) = since_last(publish, &mut self.prev_publish);
        let (e2e_p99_ms, e2e_max_ms) = since_last(e2e, &mut self.prev_e2e);
        let point = TimelinePoint {
            t_s: (t_ns - phases.start_ns) as f64 / 1e9,
            phase: if t_ns <= phases.measure_start_ns {
                Phase::Warmup
            } else if t_ns <= phases.end_ns {
                Phase::Measure
            } else {
                Phase::Drain
            },
            produced_msgs_per_s: produced,
            produced_mib_per_s: produced * self.shared.message_bytes as f64 / MIB,
            consumed_msgs_per_s: consumed,
            publish_p99_ms,
            publish_max_ms,
            e2e_p99_ms,
            e2e_max_ms,
            broker_cpu_pct: match (cpu_before, sample) {
                (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s) / interval_s * 100.0),
                _ => None,
            },
            broker_rss_mib: sample.map(|s| s.rss_kib as f64 / 1024.0),
        };
        if self.print {
            println!("{}", format_progress(&point));
        }
        self.timeline.push(point);
        (self.prev_ns, self.prev_acked, self.prev_consumed) = (now, totals.acked, totals.consumed);
        self.next_tick_ns += TICK_NS;
    }

    /// Samples the broker, charging the sample to the window boundary `t_ns` falls on.
    fn sample_broker(&mut self, t_ns: u64) -> Option<Sample> {
        let phases = *self.shared.phases.get()?;
        let b = self.broker.as_mut()?;
        let s = b.sample()?;
        if b.cpu_at_measure_start.is_none() && t_ns >= phases.measure_start_ns {
            b.cpu_at_measure_start = Some(s.cpu_s);
        }
        if b.cpu_at_end.is_none() && t_ns >= phases.end_ns {
            b.cpu_at_end = Some(s.cpu_s);
        }
        Some(s)
    }

    /// The broker's cost over the window and the timeline.
    pub fn finish(mut self, produced_bytes: u64) -> (Option<BrokerUsage>, Vec<TimelinePoint>) {
        let usage = self.broker.as_mut().and_then(|b| {
            let last = b.sample().or(b.last)?;
            let cpu_s = b.cpu_at_end.unwrap_or(last.cpu_s) - b.cpu_at_measure_start?;
            Some(BrokerUsage {
                pid: b.pid.0,
                cpu_s,
                cpu_s_per_gib: BrokerUsage::cpu_s_per_gib(cpu_s, produced_bytes),
                rss_peak_mib: b.rss_peak_kib as f64 / 1024.0,
                vm_hwm_mib: last.hwm_kib as f64 / 1024.0,
            })
        });
        (usage, self.timeline)
    }
}

/// p99 and max, ms, of what `hists` recorded since `prev` (which becomes their current state).
fn since_last(
    hists: &[SharedHist],
    prev: &mut Option<Histogram<u64>>,
) -> (Option<f64>, Option<f64>) {
    let Ok(now) = stats::merged(hists) else {
        return (None, None);
    };
    let mut new = now.clone();
    let subtracted = prev.as_ref().is_none_or(|p| new.subtract(p).is_ok());
    *prev = Some(now);
    if !subtracted || new.is_empty() {
        return (None, None);
    }
    let ms = |us: u64| Some(us as f64 / 1000.0);
    (ms(new.value_at_quantile(0.99)), ms(new.max()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::record_ns;

    #[test]
    fn each_tick_reports_only_its_own_second() {
        let hists = [stats::new_shared(), stats::new_shared()];
        let record = |i: usize, ms: u64| record_ns(&mut hists[i].lock().unwrap(), ms * 1_000_000);
        let mut prev = None;
        assert_eq!(since_last(&hists, &mut prev), (None, None), "nothing yet");
        for _ in 0..100 {
            record(0, 1);
        }
        record(1, 50);
        let (p99, max) = since_last(&hists, &mut prev);
        assert!(
            p99.unwrap() < 1.01 && max.unwrap() > 49.9,
            "{p99:?} {max:?}"
        );
        for _ in 0..10 {
            record(1, 2);
        }
        let (p99, max) = since_last(&hists, &mut prev);
        assert!(
            (1.99..2.01).contains(&max.unwrap()),
            "the 50 ms stall was last second"
        );
        assert_eq!(p99, max);
        assert_eq!(
            since_last(&hists, &mut prev),
            (None, None),
            "a quiet second"
        );
    }
}
