//! Opening a partition directory: from files on disk to a [`LogState`] and open segment files.
//!
//! A clean shutdown leaves a `clean-shutdown` marker and index files for every segment: open
//! then loads indexes and scans nothing. Otherwise every segment from the `recovery-point`
//! checkpoint on is scanned batch by batch (CRC32C verified, indexes rebuilt) and the log is cut
//! at the first torn or corrupt batch; segments after a cut or a gap are deleted. Segments below
//! the recovery point were synced and indexed when sealed, so their index files are trusted if
//! their CRC holds and they cover the whole file (and scanned if not). The active segment's
//! index files, when it has them, are a recovery checkpoint (`write_checkpoint`): its indexes
//! as of a prefix that was synced before they were written, so the scan starts at the end of
//! that prefix and a restart after a crash reads only what was written since, whatever the
//! segment's size.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::config::LogConfig;
use super::epochs::{EpochCache, EPOCHS_FILE};
use super::error::{Result, StorageError};
use super::index::{OffsetIndex, TimeIndex, INDEX_HEADER_BYTES};
use super::io::{self, SegmentFile};
use super::scan::{ScanStop, Scanner};
use super::state::Segment;
use crate::types::Offset;

/// Marker written last by a clean close; its presence means open need scan nothing.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Checkpoint of the base of the oldest segment not yet finalized: recovery scans from there.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// Checkpoint of the log start offset (moved by DeleteRecords and retention).
pub const LOG_START_FILE: &str = "log-start-offset";
/// How much of a segment one recovery read brings in.
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Largest batch recovery will believe a length field about (bounds the read it causes).
const SCAN_BATCH_BYTES_MAX: usize = 64 << 20;
/// Largest leader-epoch checkpoint read at open.
const EPOCHS_FILE_BYTES_MAX: u64 = 1 << 20;
/// Largest index file read at open (a 1 GiB segment at 4 KiB intervals needs ~3 MiB).
const INDEX_FILE_BYTES_MAX: u64 = 64 << 20;

/// The path of the segment file with extension `ext` (`log`, `index`, `timeindex`): its base
/// offset in 20 digits, as Kafka names them.
pub fn segment_path(dir: &Path, base: Offset, ext: &str) -> PathBuf {
    dir.join(format!("{:020}.{ext}", base.0))
}

/// An offset checkpoint file: magic, offset, CRC32C of both.
pub fn encode_checkpoint(offset: Offset) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(b"SLCK");
    b.extend_from_slice(&offset.0.to_be_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_be_bytes());
    b
}

/// Reads a checkpoint file written by [`encode_checkpoint`]; None if it is corrupt.
pub fn decode_checkpoint(b: &[u8]) -> Option<Offset> {
    if b.len() != 16 || &b[0..4] != b"SLCK" {
        return None;
    }
    let crc = u32::from_be_bytes(b[12..16].try_into().ok()?);
    let offset = Offset(i64::from_be_bytes(b[4..12].try_into().ok()?));
    (crc32c::crc32c(&b[..12]) == crc).then_some(offset)
}

async fn read_checkpoint(dir: &Path, name: &str) -> Result<Option<Offset>> {
    Ok(io::read_small(&dir.join(name), 64)
        .await?
        .and_then(|b| decode_checkpoint(&b)))
}

/// What `open` hands to `PartitionLog`.
pub struct Recovered {
    /// The segments kept, oldest first; the last becomes the active one.
    pub segments: VecDeque<Segment>,
    /// The segment files recovery opened, by base offset.
    pub files: BTreeMap<Offset, Rc<SegmentFile>>,
    /// The log start offset from its checkpoint, 0 without one (`LogState::new` raises it to
    /// the first segment's base).
    pub log_start: Offset,
    /// True when the marker said the last close was clean (nothing was scanned).
    pub was_clean: bool,
    /// Bytes cut off the log end (torn or corrupt data), for logging and tests.
    pub truncated_bytes: u64,
    /// Bytes of segment files scanned batch by batch (the rest was loaded from indexes).
    pub scanned_bytes: u64,
    /// The leader-epoch boundaries: the checkpoint file's, with what the scan found after it.
    pub epochs: EpochCache,
    /// Whether `epochs` differs from the file (or there was none).
    pub epochs_changed: bool,
}

fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let rd = std::fs::read_dir(dir).map_err(|e| StorageError::io("list", dir, e))?;
    let mut bases = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| StorageError::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".log") {
            if stem.len() == 20 {
                if let Ok(n) = stem.parse::<i64>() {
                    bases.push(Offset(n));
                }
            }
        } else if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    bases.sort();
    Ok(bases)
}

/// Opens (creating it if needed) the partition directory and recovers its log.
pub async fn recover(dir: &Path, config: &LogConfig) -> Result<Recovered> {
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io("create dir", dir, e))?;
    let bases = list_segments(dir)?;
    let was_clean = io::read_small(&dir.join(CLEAN_SHUTDOWN_FILE), 64)
        .await?
        .is_some();
    let recovery_point = read_checkpoint(dir, RECOVERY_POINT_FILE)
        .await?
        .unwrap_or(Offset(0));
    let log_start = read_checkpoint(dir, LOG_START_FILE)
        .await?
        .unwrap_or(Offset(0));
    let (epochs, epochs_changed) = read_epochs(dir, log_start).await?;
    let mut out = Recovered {
        segments: VecDeque::new(),
        files: BTreeMap::new(),
        log_start,
        was_clean,
        truncated_bytes: 0,
        scanned_bytes: 0,
        epochs,
        epochs_changed,
    };
    let mut cut = false;
    let mut epochs_cut = false;
    for (i, &base) in bases.iter().enumerate() {
        let path = segment_path(dir, base, "log");
        let contiguous = out.segments.back().is_none_or(|s| s.next_offset == base);
        if cut || !contiguous {
            delete_segment_files(dir, base).await?;
            continue;
        }
        let file = SegmentFile::open(&path, false).await?;
        let trusted = was_clean || base < recovery_point;
        let last = i + 1 == bases.len();
        // Index files cover a prefix of the segment: all of it for a sealed segment or a
        // clean close, a synced prefix for a recovery checkpoint of the active one.
        let indexed = load_indexed(dir, base, &file).await?;
        let whole = match &indexed {
            Some(seg) => trusted && (last || file.size().await? == seg.log_bytes),
            None => false,
        };
        let seg = match indexed {
            Some(seg) if whole => seg,
            prefix => {
                let from = prefix.unwrap_or_else(|| Segment::new(base));
                let start = from.log_bytes;
                if !trusted && !epochs_cut {
                    // From the first segment past the recovery point, the file may lag what
                    // was appended (and hold epochs of batches a crash lost): the scan decides.
                    // Segments below it were sealed after the file described them.
                    out.epochs_changed |= out.epochs.truncate_from(from.next_offset);
                    epochs_cut = true;
                }
                // An epoch the scan finds that the file lacks must reach the file (at the next
                // checkpoint or clean close), or a later clean open would miss it.
                let known = out.epochs.clone();
                let (seg, file_bytes) = scan_segment(&file, from, config, &mut out.epochs).await?;
                out.epochs_changed |= out.epochs != known;
                out.scanned_bytes += seg.log_bytes - start;
                let torn = file_bytes.saturating_sub(seg.log_bytes);
                if torn > 0 && has_data_after(&file, seg.log_bytes).await? {
                    out.truncated_bytes += torn;
                    cut = true;
                }
                if last {
                    // Drop torn bytes and preallocated space past the valid end, so nothing
                    // stale can ever follow data written after this recovery.
                    file.truncate(seg.log_bytes).await?;
                    file.sync().await?;
                } else {
                    unless_full(dir, finalize_recovered(dir, &file, &seg).await)?;
                }
                seg
            }
        };
        // Only the last segment's file stays open: the log writes it. Sealed ones are opened
        // again when a read needs them (`files`), so a log of many segments holds one fd.
        out.files.clear();
        out.files.insert(base, file);
        out.segments.push_back(seg);
    }
    if let Some(active) = out.segments.back() {
        let point = encode_checkpoint(active.base);
        let written = io::write_small_atomic(dir, RECOVERY_POINT_FILE, point).await;
        if written.is_err() {
            // The old point may be past the new active segment (recovery cut segments off):
            // with none, the next open trusts no index and scans. Removing needs no space.
            io::remove(&dir.join(RECOVERY_POINT_FILE)).await?;
        }
        unless_full(dir, written)?;
    }
    io::remove(&dir.join(CLEAN_SHUTDOWN_FILE)).await?;
    io::sync_dir(dir).await?;
    Ok(out)
}

/// The leader-epoch checkpoint, and whether it must be written again: a missing file (a new
/// log, or one written before epochs were kept, whose batches all carry epoch 0) or a corrupt
/// one starts from epoch 0 at the log start, and the scan adds what it finds.
async fn read_epochs(dir: &Path, log_start: Offset) -> Result<(EpochCache, bool)> {
    let bytes = io::read_small(&dir.join(EPOCHS_FILE), EPOCHS_FILE_BYTES_MAX).await?;
    if let Some(cache) = bytes.as_deref().and_then(EpochCache::decode) {
        return Ok((cache, false));
    }
    if bytes.is_some() {
        tracing::warn!(dir = %dir.display(), "unreadable {EPOCHS_FILE}; epochs start again at 0");
    }
    let mut cache = EpochCache::default();
    cache.assign(0, log_start);
    Ok((cache, true))
}

/// True if any non-zero byte follows `from` in the first block after it: distinguishes a torn or
/// corrupt tail (data that failed checks) from the zeroed preallocated space after the log end.
async fn has_data_after(file: &SegmentFile, from: u64) -> Result<bool> {
    let buf = file.read(from, 4096).await?;
    Ok(buf.iter().any(|&b| b != 0))
}

async fn load_indexed(dir: &Path, base: Offset, file: &SegmentFile) -> Result<Option<Segment>> {
    let oi = io::read_small(&segment_path(dir, base, "index"), INDEX_FILE_BYTES_MAX).await?;
    let ti = io::read_small(&segment_path(dir, base, "timeindex"), INDEX_FILE_BYTES_MAX).await?;
    let (Some(oi), Some(ti)) = (oi, ti) else {
        return Ok(None);
    };
    let (Some((o, s1)), Some((t, s2))) = (OffsetIndex::decode(&oi), TimeIndex::decode(&ti)) else {
        return Ok(None);
    };
    if s1 != s2 || file.size().await? < s1.log_bytes || s1.next_offset < base {
        return Ok(None);
    }
    Ok(Some(Segment::from_index(base, o, t, s1)))
}

/// Scans a segment file on from what `seg` already holds (nothing, or the prefix a recovery
/// checkpoint indexed); returns the valid prefix as a segment and the file size.
async fn scan_segment(
    file: &SegmentFile,
    seg: Segment,
    config: &LogConfig,
    epochs: &mut EpochCache,
) -> Result<(Segment, u64)> {
    scan_segment_until(file, seg, config, epochs, Offset(i64::MAX)).await
}

/// Rebuilds a segment's bookkeeping from its batches, from the start up to the batch at
/// offset `until` (a truncation point; it and what follows are not tracked). Returns it with
/// the file's size.
pub async fn scan_segment_until(
    file: &SegmentFile,
    mut seg: Segment,
    config: &LogConfig,
    epochs: &mut EpochCache,
    until: Offset,
) -> Result<(Segment, u64)> {
    let file_bytes = file.size().await?;
    let cap = config.message_bytes_max.max(SCAN_BATCH_BYTES_MAX);
    let mut scanner = Scanner::new(seg.log_bytes, cap);
    let mut want = SCAN_CHUNK_BYTES;
    let mut bad_offsets = false;
    while scanner.position < file_bytes && !bad_offsets && seg.next_offset < until {
        let buf = file.read(scanner.position, want).await?;
        if buf.is_empty() {
            break;
        }
        let stop = scanner.feed(&buf, |b| {
            let expected = seg.next_offset;
            if bad_offsets || expected >= until {
                return;
            }
            if b.header.base_offset != expected {
                // A batch must start exactly where the previous ended (the first at the base).
                bad_offsets = true;
                return;
            }
            seg.track(&b.header, b.position, config.index_interval_bytes);
            epochs.observe(b.header.leader_epoch, b.header.base_offset);
        });
        match stop {
            ScanStop::End { .. } => break,
            ScanStop::NeedMore { batch_bytes } => {
                if buf.len() < want {
                    break; // end of file inside a batch: torn
                }
                want = batch_bytes.max(SCAN_CHUNK_BYTES);
            }
        }
    }
    seg.written_bytes = seg.log_bytes;
    seg.written_summary = seg.summary();
    Ok((seg, file_bytes))
}

/// Recovery's own bookkeeping (a recovered segment's indexes, the recovery point) only saves
/// the next open a scan: on a full disk it is left out, so the broker still starts and an
/// operator can free space through Kafka. The state stays safe: an older recovery point trusts
/// fewer segments, and a segment without whole indexes is scanned.
fn unless_full(dir: &Path, written: Result<()>) -> Result<()> {
    match written {
        Err(e) if e.is_exhaustion() => {
            tracing::warn!(dir = %dir.display(), error = %e, "recovery bookkeeping skipped");
            Ok(())
        }
        other => other,
    }
}

/// A sealed segment recovered by scanning: truncate, sync and index it like a normal seal.
async fn finalize_recovered(dir: &Path, file: &SegmentFile, seg: &Segment) -> Result<()> {
    file.truncate(seg.log_bytes).await?;
    file.sync().await?;
    write_indexes(dir, seg).await
}

/// Writes a whole segment's index files (`.index`, `.timeindex`), each atomically.
pub async fn write_indexes(dir: &Path, seg: &Segment) -> Result<()> {
    let s = seg.summary();
    let name = |ext: &str| format!("{:020}.{ext}", seg.base.0);
    io::write_small_atomic(dir, &name("index"), seg.offset_index.encode(s)).await?;
    io::write_small_atomic(dir, &name("timeindex"), seg.time_index.encode(seg.base, s)).await
}

/// Writes a recovery checkpoint's index files for the segment at `base` (its file synced
/// first, through the prefix they describe).
pub async fn write_checkpoint(
    dir: &Path,
    base: Offset,
    index: Vec<u8>,
    time: Vec<u8>,
) -> Result<()> {
    io::write_small_atomic(dir, &format!("{:020}.index", base.0), index).await?;
    io::write_small_atomic(dir, &format!("{:020}.timeindex", base.0), time).await
}

/// Index files go first: a crash in between leaves a log without indexes (scanned at the next
/// open), never indexes that a later segment of the same base could take for its own.
pub async fn delete_segment_files(dir: &Path, base: Offset) -> Result<()> {
    for ext in ["index", "timeindex", "log"] {
        io::remove(&segment_path(dir, base, ext)).await?;
    }
    Ok(())
}

const _: () = assert!(INDEX_HEADER_BYTES == 48);
