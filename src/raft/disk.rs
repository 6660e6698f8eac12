//! A Raft group's log on disk, for groups whose writes are few and small (the cluster
//! metadata log on shard 0): one append-only file of checksummed records — hard states,
//! entries, snapshots — replayed into a [`RaftLog`] at start. A [`Write`] from the group
//! becomes one record, synced when the write must be durable before its messages go out.
//! After a compaction the file is rewritten (temporary file, fsync, rename, fsync of the
//! directory) to the snapshot plus the entries after it, so it does not grow without bound.
//! A torn record at the end (a crash mid-write) is cut off at start; it was never reported
//! durable. Blocking std::fs, as the topic registry's file is: these writes are rare.
//!
//! Record: `u32` length of the rest, `u32` CRC32C of the body, body = `u8` kind (1 hard
//! state: term, vote, commit as `u64`s; 2 entries: `u32` count and entries; 3 snapshot), in
//! the layout of `wire.rs`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use bytes::{BufMut, Bytes, BytesMut};
use raft::eraftpb::{HardState, Snapshot};

use super::log::RaftLog;
use super::wire::{self, Reader};
use super::Write;

const FILE: &str = "raft.log";
const HARD_STATE: u8 = 1;
const ENTRIES: u8 = 2;
const SNAPSHOT: u8 = 3;
/// The largest record read back: a record announcing more is corrupt.
const RECORD_BYTES_MAX: usize = 256 << 20;

/// A group's log file.
pub struct LogFile {
    dir: PathBuf,
    file: File,
}

impl LogFile {
    /// Opens (or creates) the log in `dir` and replays it; a new log starts as
    /// `RaftLog::new(voters)`. A torn record at the end is cut off.
    pub fn open(dir: &Path, voters: &[u64]) -> std::io::Result<(LogFile, RaftLog)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut log = RaftLog::new(voters);
        let read = bytes.len();
        let good = replay(Bytes::from(bytes), &mut log);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if good < read {
            tracing::warn!(path = %path.display(), kept = good, cut = read - good,
                "raft log: cut a torn record at the end");
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        Ok((
            LogFile {
                dir: dir.to_path_buf(),
                file,
            },
            log,
        ))
    }

    /// Appends the group's write; syncs it when it must be durable.
    pub fn write(&mut self, w: &Write) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        if let Some(s) = &w.snapshot {
            record(&mut b, SNAPSHOT, |b| wire::put_snapshot(b, s));
        }
        if !w.entries.is_empty() {
            record(&mut b, ENTRIES, |b| {
                b.put_u32(w.entries.len() as u32);
                w.entries.iter().for_each(|e| wire::put_entry(b, e));
            });
        }
        if let Some(hs) = &w.hard_state {
            record(&mut b, HARD_STATE, |b| put_hard_state(b, hs));
        }
        if b.is_empty() {
            return Ok(());
        }
        self.file.write_all(&b)?;
        if w.must_sync || w.snapshot.is_some() {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Rewrites the file as `log` holds it now (after a compaction): its snapshot, the
    /// entries after it, its hard state.
    pub fn rewrite(&mut self, log: &RaftLog) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        let (meta, data) = log.snapshot_parts();
        let mut s = Snapshot {
            data: data.clone(),
            ..Snapshot::default()
        };
        s.set_metadata(meta.clone());
        record(&mut b, SNAPSHOT, |b| wire::put_snapshot(b, &s));
        let entries = log.entries_after_snapshot();
        record(&mut b, ENTRIES, |b| {
            b.put_u32(entries.len() as u32);
            entries.iter().for_each(|e| wire::put_entry(b, e));
        });
        record(&mut b, HARD_STATE, |b| put_hard_state(b, log.hard_state()));
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&b)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(self.dir.join(FILE))?;
        Ok(())
    }
}

fn put_hard_state(b: &mut BytesMut, hs: &HardState) {
    b.put_u64(hs.term);
    b.put_u64(hs.vote);
    b.put_u64(hs.commit);
}

/// Appends one record of `kind` whose body `body` writes.
fn record(b: &mut BytesMut, kind: u8, body: impl FnOnce(&mut BytesMut)) {
    let mut rest = BytesMut::new();
    rest.put_u8(kind);
    body(&mut rest);
    b.put_u32(rest.len() as u32 + 4);
    b.put_u32(crc32c::crc32c(&rest));
    b.put_slice(&rest);
}

/// Replays records into `log`; returns the length of the good prefix.
fn replay(bytes: Bytes, log: &mut RaftLog) -> usize {
    let mut at = 0;
    while let Some((len, body)) = next_record(&bytes, at) {
        if apply(body, log).is_err() {
            break;
        }
        at += 4 + len;
    }
    at
}

/// The record at `at`: its length after the length field, and its body (CRC checked).
fn next_record(bytes: &Bytes, at: usize) -> Option<(usize, Bytes)> {
    let head = bytes.get(at..at + 8)?;
    let len = u32::from_be_bytes(head[..4].try_into().ok()?) as usize;
    if !(5..=RECORD_BYTES_MAX).contains(&len) || at + 4 + len > bytes.len() {
        return None;
    }
    let crc = u32::from_be_bytes(head[4..8].try_into().ok()?);
    let body = bytes.slice(at + 8..at + 4 + len);
    (crc32c::crc32c(&body) == crc).then_some((len, body))
}

fn apply(body: Bytes, log: &mut RaftLog) -> Result<(), wire::WireError> {
    let mut r = Reader::new(body);
    match r.u8()? {
        HARD_STATE => {
            let hs = HardState {
                term: r.u64()?,
                vote: r.u64()?,
                commit: r.u64()?,
                ..HardState::default()
            };
            log.set_hard_state(hs);
        }
        ENTRIES => {
            let n = r.u32()? as usize;
            let entries: Result<Vec<_>, _> = (0..n).map(|_| r.entry()).collect();
            log.append(&entries?);
        }
        SNAPSHOT => log.install(&r.snapshot()?),
        _ => return Err(wire::WireError::Invalid("record kind")),
    }
    if !r.is_done() {
        return Err(wire::WireError::Length);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Entry;

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        Entry {
            index,
            term,
            data: Bytes::from(data.to_string()),
            ..Entry::default()
        }
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    fn write(entries: Vec<Entry>, hard: HardState) -> Write {
        Write {
            hard_state: Some(hard),
            entries,
            snapshot: None,
            must_sync: true,
        }
    }

    fn shape(log: &RaftLog) -> (u64, u64, Vec<(u64, u64)>, HardState) {
        let ents = log
            .entries_after_snapshot()
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        (
            log.snapshot_parts().0.index,
            log.last(),
            ents,
            log.hard_state().clone(),
        )
    }

    #[test]
    fn writes_replay_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, _) = LogFile::open(dir.path(), &[1, 2, 3]).unwrap();
        f.write(&write(
            vec![entry(1, 1, "a"), entry(2, 1, "b")],
            hs(1, 1, 1),
        ))
        .unwrap();
        f.write(&write(
            vec![entry(2, 2, "c"), entry(3, 2, "d")],
            hs(2, 2, 3),
        ))
        .unwrap();
        let (_, log) = LogFile::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(
            shape(&log),
            (0, 3, vec![(1, 1), (2, 2), (3, 2)], hs(2, 2, 3))
        );
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);

        // A crash mid-write leaves half a record: it is cut, the rest stays.
        let path = dir.path().join(FILE);
        let full = std::fs::read(&path).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&full[..20]).unwrap();
        drop(f);
        let (_, again) = LogFile::open(dir.path(), &[1, 2, 3]).unwrap();
        assert_eq!(shape(&again), shape(&log));
        assert_eq!(
            std::fs::read(&path).unwrap().len(),
            full.len(),
            "torn tail cut"
        );
    }

    #[test]
    fn a_rewrite_after_compaction_keeps_the_snapshot_and_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let (mut f, mut log) = LogFile::open(dir.path(), &[1]).unwrap();
        let w = write((1..=5).map(|i| entry(i, 1, "x")).collect(), hs(1, 1, 4));
        log.append(&w.entries);
        log.set_hard_state(w.hard_state.clone().unwrap());
        f.write(&w).unwrap();
        log.compact(3, Bytes::from_static(b"image@3"));
        f.rewrite(&log).unwrap();
        f.write(&write(vec![entry(6, 1, "y")], hs(1, 1, 6)))
            .unwrap();
        let (_, back) = LogFile::open(dir.path(), &[1]).unwrap();
        assert_eq!(
            shape(&back),
            (3, 6, vec![(4, 1), (5, 1), (6, 1)], hs(1, 1, 6))
        );
        assert_eq!(&back.snapshot_parts().1[..], b"image@3");
    }
}
