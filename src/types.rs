//! Newtypes shared by every layer: offsets and timestamps are plain `i64` on the wire, but mixing
//! an offset with a timestamp or a byte count is a bug the compiler should catch. Handlers convert
//! at the wire boundary; storage and partitions only see these types.

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
}

impl fmt::Display for TimestampMs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
