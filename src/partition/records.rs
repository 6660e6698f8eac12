//! Walking the records inside an uncompressed v2 batch without building them: enough to find
//! the first record at or after a timestamp (ListOffsets by time, `Partition::offset_for`).
//! Every length is checked against the bytes present; nothing is allocated.

use crate::storage::batch;
use crate::types::{Offset, TimestampMs};

fn varint(b: &[u8], at: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
    }
    None
}

/// The offset and timestamp of the first record whose timestamp is ≥ `ts` in one batch; None
/// if the batch is compressed or malformed (callers fall back to the batch's base offset).
pub fn first_record_at_or_after(b: &[u8], ts: i64) -> Option<(Offset, TimestampMs)> {
    let h = batch::parse_header(b).ok()?;
    if h.compression() != 0 {
        return None;
    }
    if h.is_log_append_time() {
        return Some((h.base_offset, h.max_timestamp));
    }
    let mut at = batch::HEADER_BYTES;
    for _ in 0..h.record_count {
        let len = varint(b, &mut at)?;
        let end = at.checked_add(usize::try_from(len).ok()?)?;
        if end > b.len() {
            return None;
        }
        let mut p = at + 1; // attributes
        let ts_delta = varint(b, &mut p)?;
        let off_delta = varint(b, &mut p)?;
        let t = h.base_timestamp.0.checked_add(ts_delta)?;
        if !(0..=i64::from(h.last_offset_delta)).contains(&off_delta) {
            return None; // producer-supplied delta outside the batch: not trusted
        }
        if t >= ts {
            return Some((
                Offset(h.base_offset.0.checked_add(off_delta)?),
                TimestampMs(t),
            ));
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::build_test_batch;

    #[test]
    fn finds_the_record() {
        let mut b = build_test_batch(3, 5, TimestampMs(100));
        batch::assign_offset(&mut b, Offset(10), 0);
        // build_test_batch gives every record timestamp delta 0
        assert_eq!(
            first_record_at_or_after(&b, 100),
            Some((Offset(10), TimestampMs(100)))
        );
        assert_eq!(first_record_at_or_after(&b, 101), None);
        assert_eq!(first_record_at_or_after(&b[..70], 100), None);
        assert_eq!(varint(&[0x80; 20], &mut 0), None);
    }
}
