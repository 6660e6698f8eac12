//! How long this shard's requests take, by API key: the broker's side of a client's latency.
//! The connection reader stamps a request when its frame has arrived whole, the request's task
//! stamps it when the handler returns, and the writer records both spans once the response is
//! on the socket. "handle" is the handler's own time (storage writes, cross-shard calls,
//! long-poll waits); "total" adds the wait behind earlier responses on the same connection and
//! the send. Each shard keeps its own histograms (no sharing) and logs them when it stops, so
//! a benchmark run can say how much of the latency a client saw was spent in the broker.

use std::cell::RefCell;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::metrics::Buckets;

/// API keys above this are not recorded (none is served; only answered requests are).
const API_KEY_MAX: i16 = crate::kafka::dispatch::SERVED_KEY_MAX;
/// Longer spans are recorded as this (a parked Fetch is bounded by its max_wait_ms anyway).
const SPAN_US_MAX: u64 = 60_000_000;
/// Two significant digits (1 % resolution) keep a histogram at about 20 KiB; three would take
/// seven times that, per API key and span, on every shard.
const SIGNIFICANT_DIGITS: u8 = 2;

/// One API key's spans, in microseconds: HdrHistograms for the log's quantiles, and the same
/// spans in the metrics endpoint's fixed buckets (copied at scrape time, not converted).
struct ApiTimes {
    handle: Histogram<u64>,
    total: Histogram<u64>,
    handle_buckets: Buckets,
    total_buckets: Buckets,
}

impl ApiTimes {
    fn new() -> Self {
        let h = || {
            Histogram::new_with_bounds(1, SPAN_US_MAX, SIGNIFICANT_DIGITS)
                .expect("static bounds are valid")
        };
        ApiTimes {
            handle: h(),
            total: h(),
            handle_buckets: Buckets::new(),
            total_buckets: Buckets::new(),
        }
    }
}

/// A shard's request latency histograms (one per API key seen, allocated on first use).
#[derive(Default)]
pub struct RequestTimes {
    by_api: RefCell<Vec<Option<Box<ApiTimes>>>>,
}

/// What one API key's histograms say, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSummary {
    pub api: i16,
    pub count: u64,
    /// p50, p99, p99.9 and max of the handler's time, µs.
    pub handle_us: [u64; 4],
    /// p50, p99, p99.9 and max of the whole time in the broker, µs.
    pub total_us: [u64; 4],
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, SPAN_US_MAX)
}

fn quantiles(h: &Histogram<u64>) -> [u64; 4] {
    [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
}

impl RequestTimes {
    /// Records one request of `api`: the handler took `handle`, the broker `total` in all.
    pub fn record(&self, api: i16, handle: Duration, total: Duration) {
        if !(0..=API_KEY_MAX).contains(&api) {
            return;
        }
        let mut by_api = self.by_api.borrow_mut();
        let i = api as usize;
        if by_api.len() <= i {
            by_api.resize_with(i + 1, || None);
        }
        let t = by_api[i].get_or_insert_with(|| Box::new(ApiTimes::new()));
        // In range by construction (clamped to the histogram's bounds).
        let (handle, total) = (micros(handle), micros(total.max(handle)));
        let _ = t.handle.record(handle);
        let _ = t.total.record(total);
        t.handle_buckets.record_us(handle);
        t.total_buckets.record_us(total);
    }

    /// The API keys with at least one request, in key order.
    pub fn summary(&self) -> Vec<ApiSummary> {
        let by_api = self.by_api.borrow();
        let seen = by_api.iter().enumerate();
        let seen = seen.filter_map(|(i, t)| Some((i as i16, t.as_ref()?)));
        seen.map(|(api, t)| ApiSummary {
            api,
            count: t.total.len(),
            handle_us: quantiles(&t.handle),
            total_us: quantiles(&t.total),
        })
        .collect()
    }

    /// Every API key's distributions, for the metrics endpoint.
    pub fn buckets(&self) -> Vec<super::stats::ApiStats> {
        let by_api = self.by_api.borrow();
        let seen = by_api.iter().enumerate();
        let seen = seen.filter_map(|(i, t)| Some((i as i16, t.as_ref()?)));
        seen.map(|(api, t)| super::stats::ApiStats {
            api,
            total: t.total_buckets.clone(),
            handle: t.handle_buckets.clone(),
        })
        .collect()
    }

    /// Logs the summary (one line per API key) for shard `shard`.
    pub fn log(&self, shard: usize) {
        for s in self.summary() {
            let api = kafka_protocol::messages::ApiKey::try_from(s.api);
            let api = api.map_or_else(|_| s.api.to_string(), |k| format!("{k:?}"));
            let [h50, h99, h999, hmax] = s.handle_us;
            let [t50, t99, t999, tmax] = s.total_us;
            tracing::info!(
                shard, api, count = s.count,
                handle_us = %format!("p50 {h50} p99 {h99} p99.9 {h999} max {hmax}"),
                total_us = %format!("p50 {t50} p99 {t99} p99.9 {t999} max {tmax}"),
                "request latency"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_kept_per_api_key() {
        let t = RequestTimes::default();
        for ms in 1..=100 {
            t.record(0, Duration::from_millis(ms), Duration::from_millis(ms + 1));
        }
        t.record(1, Duration::from_micros(5), Duration::from_micros(2));
        t.record(-1, Duration::from_secs(1), Duration::from_secs(1));
        t.record(
            API_KEY_MAX + 1,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let s = t.summary();
        assert_eq!(s.len(), 2, "unknown keys are not recorded: {s:?}");
        assert_eq!((s[0].api, s[0].count), (0, 100));
        let near = |got: u64, want: u64| got.abs_diff(want) * 50 <= want;
        assert!(near(s[0].handle_us[0], 50_000), "{s:?}");
        assert!(near(s[0].handle_us[1], 99_000), "{s:?}");
        assert!(near(s[0].total_us[3], 101_000), "{s:?}");
        // Total is never shorter than the handler's part of it.
        assert_eq!((s[1].api, s[1].handle_us[3], s[1].total_us[3]), (1, 5, 5));
    }

    #[test]
    fn a_histogram_stays_small() {
        let h = ApiTimes::new();
        let bytes = h.handle.distinct_values() * std::mem::size_of::<u64>();
        assert!(bytes <= 24 << 10, "{bytes} bytes");
    }

    #[test]
    fn spans_beyond_the_bound_are_clamped() {
        let t = RequestTimes::default();
        t.record(1, Duration::ZERO, Duration::from_secs(3600));
        let s = t.summary();
        assert_eq!(s[0].handle_us[3], 1);
        assert!(s[0].total_us[3] >= SPAN_US_MAX, "{s:?}");
    }
}
