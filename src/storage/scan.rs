//! Forward scan over segment bytes: the one place that decides where valid data ends.
//!
//! Recovery feeds a segment through [`Scanner`] chunk by chunk; it verifies every batch
//! (header and CRC32C) and reports each valid batch so indexes can be rebuilt. The scan stops at
//! the first torn, zeroed or corrupt batch: everything before it is the recovered log, and the
//! caller truncates there. Pure: bytes in, positions out; it never touches a file.

use super::batch::{self, BatchHeader, Batches, Stop};

/// A valid batch found by the scan, with its byte position in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    /// The batch's byte position in the segment.
    pub position: u64,
    /// Its header, checked (CRC included).
    pub header: BatchHeader,
}

/// Why a scan stopped before the end of the bytes it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanStop {
    /// Need more bytes to decide (a batch straddles the chunk end).
    NeedMore {
        /// Bytes the next batch needs from its start (the scanner's position);
        /// `LOG_OVERHEAD_BYTES` when even its length prefix is missing.
        batch_bytes: usize,
    },
    /// Data ends here: zeros, garbage, a torn or corrupt batch, or a batch over the size cap.
    End {
        /// What was found there, for the log line.
        reason: String,
    },
}

/// Incremental scanner: feed it the bytes that follow `position`.
#[derive(Debug)]
pub struct Scanner {
    /// Byte position in the segment of the next batch to check.
    pub position: u64,
    batch_bytes_max: usize,
}

impl Scanner {
    /// A scanner starting at byte `position`, believing no batch larger than `batch_bytes_max`.
    pub fn new(position: u64, batch_bytes_max: usize) -> Scanner {
        Scanner {
            position,
            batch_bytes_max,
        }
    }

    /// Checks batches at the start of `buf` (the bytes at `self.position`), calling `found` for
    /// each valid one, until it must stop. Returns how it stopped and advances `position`.
    pub fn feed(&mut self, buf: &[u8], mut found: impl FnMut(ScannedBatch)) -> ScanStop {
        for walked in Batches::with_max(buf, self.batch_bytes_max) {
            let bytes = match walked {
                Ok((_, bytes)) => bytes,
                Err(Stop::Partial { batch_bytes }) => return ScanStop::NeedMore { batch_bytes },
                Err(stop @ (Stop::BadLength | Stop::TooLarge { .. })) => {
                    return end(&stop.to_string())
                }
            };
            match batch::validate(bytes, false) {
                Ok(header) => {
                    found(ScannedBatch {
                        position: self.position,
                        header,
                    });
                    self.position += bytes.len() as u64;
                }
                Err(e) => return end(&e.to_string()),
            }
        }
        ScanStop::NeedMore {
            batch_bytes: batch::LOG_OVERHEAD_BYTES,
        }
    }
}

fn end(reason: &str) -> ScanStop {
    ScanStop::End {
        reason: reason.to_string(),
    }
}

/// Scans a whole in-memory segment image; returns the valid batches and the valid length.
pub fn scan_all(bytes: &[u8], batch_bytes_max: usize) -> (Vec<ScannedBatch>, u64) {
    let mut scanner = Scanner::new(0, batch_bytes_max);
    let mut out = Vec::new();
    scanner.feed(bytes, |b| out.push(b));
    (out, scanner.position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::batch::{assign_offset, build_test_batch};
    use crate::types::{Offset, TimestampMs};

    fn image(n: usize) -> (Vec<u8>, Vec<usize>) {
        let mut img = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            let mut b = build_test_batch(1 + i as i32 % 3, 50 + i * 7, TimestampMs(i as i64));
            assign_offset(&mut b, Offset(i as i64 * 10), 0);
            img.extend_from_slice(&b);
            ends.push(img.len());
        }
        (img, ends)
    }

    #[test]
    fn scans_whole_image_and_stops_at_zeros() {
        let (mut img, ends) = image(6);
        img.extend_from_slice(&[0u8; 4096]);
        let (found, valid) = scan_all(&img, 1 << 20);
        assert_eq!(found.len(), 6);
        assert_eq!(valid as usize, *ends.last().unwrap());
    }

    #[test]
    fn every_cut_point_yields_the_longest_whole_prefix() {
        let (img, ends) = image(8);
        for cut in 0..=img.len() {
            let (found, valid) = scan_all(&img[..cut], 1 << 20);
            let expect = ends.iter().filter(|&&e| e <= cut).count();
            assert_eq!(found.len(), expect, "cut at {cut}");
            assert_eq!(
                valid as usize,
                if expect == 0 { 0 } else { ends[expect - 1] }
            );
        }
    }

    #[test]
    fn chunked_feed_matches_whole_scan() {
        let (img, ends) = image(10);
        let mut s = Scanner::new(0, 1 << 20);
        let mut count = 0;
        let mut consumed = 0usize;
        for chunk_end in (100..=img.len()).step_by(100).chain([img.len()]) {
            let stop = s.feed(&img[consumed..chunk_end], |_| count += 1);
            consumed = s.position as usize;
            if let ScanStop::End { .. } = stop {
                break;
            }
        }
        assert_eq!(count, 10);
        assert_eq!(s.position as usize, *ends.last().unwrap());
    }
}
