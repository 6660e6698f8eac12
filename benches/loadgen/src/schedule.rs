//! When each message is due, and which part of the run counts. At a fixed rate, send `i` of the
//! run is due at `start + i / rate` whatever happened before it; latency is measured from that
//! intended time, so a broker stall shows up in every message that should have been sent during
//! it (no coordinated omission). All times are nanoseconds on one monotonic clock shared by the
//! producers and consumers of a run.

use std::time::Instant;

/// The monotonic clock of one run: nanoseconds since its origin.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    origin: Instant,
}

impl RunClock {
    pub fn start() -> RunClock {
        RunClock {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// The phases of a run on its clock: producers send in `[start_ns, end_ns)`; messages sent (or
/// due) in `[measure_start_ns, end_ns)` are measured, the ones before are warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phases {
    pub start_ns: u64,
    pub measure_start_ns: u64,
    pub end_ns: u64,
}

impl Phases {
    pub fn new(start_ns: u64, warmup_s: u64, duration_s: u64) -> Phases {
        let measure_start_ns = start_ns + warmup_s * 1_000_000_000;
        Phases {
            start_ns,
            measure_start_ns,
            end_ns: measure_start_ns + duration_s * 1_000_000_000,
        }
    }

    /// Whether a message sent (or due) at `t_ns` is measured.
    pub fn measured(&self, t_ns: u64) -> bool {
        t_ns >= self.measure_start_ns && t_ns < self.end_ns
    }

    pub fn window_s(&self) -> f64 {
        (self.end_ns - self.measure_start_ns) as f64 / 1e9
    }
}

/// The sends of one producer among `producers` sharing a total rate. Producer `j` takes sends
/// `j, j + n, j + 2n, ...` of the run's global sequence, so together they send evenly spaced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSchedule {
    total_msgs_per_s: f64,
    producers: u64,
    index: u64,
}

impl RateSchedule {
    pub fn new(total_msgs_per_s: f64, producers: usize, index: usize) -> RateSchedule {
        assert!(total_msgs_per_s > 0.0 && index < producers);
        RateSchedule {
            total_msgs_per_s,
            producers: producers as u64,
            index: index as u64,
        }
    }

    /// When this producer's `i`-th send is due, in nanoseconds after the start.
    pub fn due_offset_ns(&self, i: u64) -> u64 {
        let global = i.saturating_mul(self.producers).saturating_add(self.index);
        (global as f64 * 1e9 / self.total_msgs_per_s).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sends_are_due_at_start_plus_i_over_rate() {
        let s = RateSchedule::new(1000.0, 1, 0);
        assert_eq!(s.due_offset_ns(0), 0);
        assert_eq!(s.due_offset_ns(1), 1_000_000);
        assert_eq!(s.due_offset_ns(1000), 1_000_000_000);
        // No drift accumulates: the millionth send is due exactly at 1000 s.
        assert_eq!(s.due_offset_ns(1_000_000), 1_000_000_000_000);
        let odd = RateSchedule::new(3.0, 1, 0);
        assert_eq!(odd.due_offset_ns(3_000_000), 1_000_000_000_000_000);
        assert_eq!(odd.due_offset_ns(1), 333_333_333);
    }

    #[test]
    fn producers_interleave_evenly() {
        let n = 4;
        let mut all: Vec<u64> = (0..n)
            .flat_map(|j| {
                let s = RateSchedule::new(400.0, n, j);
                (0..100).map(move |i| s.due_offset_ns(i))
            })
            .collect();
        all.sort_unstable();
        for (k, t) in all.iter().enumerate() {
            assert_eq!(*t, k as u64 * 2_500_000, "send {k}");
        }
    }

    #[test]
    fn phases_split_warmup_from_measurement() {
        let p = Phases::new(5, 2, 3);
        assert_eq!(p.measure_start_ns, 2_000_000_005);
        assert_eq!(p.end_ns, 5_000_000_005);
        assert!(!p.measured(2_000_000_004));
        assert!(p.measured(2_000_000_005));
        assert!(p.measured(5_000_000_004));
        assert!(!p.measured(5_000_000_005));
        assert_eq!(p.window_s(), 3.0);
    }

    #[test]
    fn clock_moves_forward() {
        let c = RunClock::start();
        let a = c.now_ns();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.now_ns() >= a + 2_000_000);
    }
}
