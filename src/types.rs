//! Newtypes shared by every layer: offsets, timestamps and durations are plain integers on the
//! wire, but mixing an offset with a timestamp, a timestamp with a timeout, or any of them with a
//! byte count is a bug the compiler should catch. Handlers convert at the wire boundary; storage,
//! partitions and the group machine only see these types.

use std::fmt;

/// A Kafka log offset: the position of a record in its partition, counted in records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl Offset {
    /// The first offset of a new partition.
    pub const ZERO: Offset = Offset(0);

    /// The offset as the wire's `i64`.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The offset `n` records later. Panics on overflow: offsets are bounded far below i64::MAX
    /// by construction (one record per offset), so overflow is a logic error, not bad input.
    pub fn plus(self, n: i64) -> Offset {
        Offset(self.0.checked_add(n).expect("offset overflow"))
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TimestampMs(pub i64);

impl TimestampMs {
    /// Kafka's "no timestamp" value (-1).
    pub const NONE: TimestampMs = TimestampMs(-1);

    /// The timestamp as the wire's `i64` (milliseconds, or -1 for none).
    pub fn get(self) -> i64 {
        self.0
    }

    /// The wall clock now. Only the I/O edges call this; pure code takes time as an argument.
    pub fn now() -> TimestampMs {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        TimestampMs(d.as_millis() as i64)
    }

    /// The time `d` later (earlier if `d` is negative). Saturates: durations can come from
    /// the wire or the settings, and a deadline past the end of time is simply never due.
    pub fn plus(self, d: DurationMs) -> TimestampMs {
        TimestampMs(self.0.saturating_add(d.0))
    }

    /// How long after `earlier` this is (negative if it is before). Saturates.
    pub fn since(self, earlier: TimestampMs) -> DurationMs {
        DurationMs(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// A span of time in milliseconds: a timeout, a delay, a retention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationMs(pub i64);

impl DurationMs {
    /// No time at all.
    pub const ZERO: DurationMs = DurationMs(0);

    /// The milliseconds as a plain number (for the wire and for arithmetic).
    pub fn get(self) -> i64 {
        self.0
    }

    /// `self` less `other`, never below zero (what is left of a budget).
    pub fn minus(self, other: DurationMs) -> DurationMs {
        DurationMs(self.0.saturating_sub(other.0).max(0))
    }
}

impl From<i32> for DurationMs {
    /// The wire's i32 timeouts (session.timeout.ms, rebalance.timeout.ms).
    fn from(ms: i32) -> DurationMs {
        DurationMs(i64::from(ms))
    }
}

impl fmt::Display for DurationMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
