//! Storage tests that need real files and an executor: a model-based property test (random
//! appends, reads, rolls, retention, DeleteRecords and clean/crash reopens against a plain
//! in-memory model), crash tests (torn tails and flipped bytes at thousands of random points),
//! and I/O failure handling.

use std::path::Path;

use bytes::BytesMut;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::batch::{self, build_test_batch};
use super::io::{self, block_on};
use super::scan::scan_all;
use super::{Chunk, Durability, LogConfig, PartitionLog, ReadOutcome, StorageError};
use crate::types::{Offset, TimestampMs};

/// The model: every batch as stored (offsets assigned), and the log start.
#[derive(Default)]
struct Model {
    batches: Vec<(Offset, Offset, Vec<u8>)>,
    log_start: Offset,
    /// The epoch appends are stamped with.
    epoch: i32,
}

impl Model {
    fn next(&self) -> Offset {
        self.batches.last().map_or(Offset(0), |b| b.1)
    }
    fn from(&self, offset: Offset) -> Vec<&Vec<u8>> {
        self.batches
            .iter()
            .filter(|b| b.1 > offset)
            .map(|b| &b.2)
            .collect()
    }
    /// A batch boundary at or after the log start, `per_mille` of the way to the end.
    fn boundary(&self, per_mille: u16) -> Offset {
        let bases = self.batches.iter().map(|b| b.0);
        let bases: Vec<Offset> = bases
            .chain(std::iter::once(self.next()))
            .filter(|&b| b >= self.log_start)
            .collect();
        bases[(bases.len() - 1) * usize::from(per_mille) / 1000]
    }
    fn truncate_to(&mut self, next: Offset) {
        assert!(
            next == Offset(0) || self.batches.iter().any(|b| b.1 == next),
            "recovered end {next} is a batch boundary"
        );
        self.batches.retain(|b| b.1 <= next);
    }
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 3000,
        index_interval_bytes: 256,
        cache_bytes_max: 1200,
        preallocate_bytes_step: 8192,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

/// `small_config` with a recovery checkpoint of the active segment every 512 bytes.
fn checkpointing_config() -> LogConfig {
    LogConfig {
        checkpoint_bytes_min: 512,
        checkpoint_ms_min: 0,
        ..small_config()
    }
}

fn stored(mut b: Vec<u8>, base: Offset) -> Vec<u8> {
    batch::assign_offset(&mut b, base, 0);
    b
}

/// Reads the log from `from` to its high watermark the way a consumer does.
async fn consume_all(log: &PartitionLog, from: Offset) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = from;
    while at < log.high_watermark() {
        let r = log.read(at, 700).await.expect("read");
        assert!(!r.chunks.is_empty(), "a read below the hw returns a batch");
        for c in r.chunks {
            let h = batch::validate(&c, false).expect("served batches are valid");
            at = h.next_offset();
            out.push(c.to_vec());
        }
    }
    out
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        records: i32,
        value_bytes: usize,
    },
    Read {
        at_per_mille: u16,
        max_bytes: usize,
    },
    Retain {
        bytes: i64,
    },
    DeleteRecords {
        at_per_mille: u16,
    },
    Reopen {
        clean: bool,
    },
    /// A follower's cut at a batch boundary chosen between the log start and the end.
    Truncate {
        at_per_mille: u16,
    },
    /// A new leader epoch for later appends.
    NewEpoch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..6i32, 0..400usize).prop_map(|(records, value_bytes)| Op::Append { records, value_bytes }),
        3 => (0..1000u16, 1..3000usize).prop_map(|(at_per_mille, max_bytes)| Op::Read { at_per_mille, max_bytes }),
        1 => (0..6000i64).prop_map(|bytes| Op::Retain { bytes }),
        1 => (0..1000u16).prop_map(|at_per_mille| Op::DeleteRecords { at_per_mille }),
        1 => any::<bool>().prop_map(|clean| Op::Reopen { clean }),
        1 => (0..1000u16).prop_map(|at_per_mille| Op::Truncate { at_per_mille }),
        1 => Just(Op::NewEpoch),
    ]
}

fn pick(start: Offset, end: Offset, per_mille: u16) -> Offset {
    Offset(start.0 + (end.0 - start.0) * i64::from(per_mille) / 1000)
}

async fn run_ops(dir: &Path, ops: Vec<Op>) {
    let mut model = Model::default();
    let mut log = PartitionLog::open(dir, checkpointing_config())
        .await
        .unwrap();
    let mut durable = Offset(0);
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append {
                records,
                value_bytes,
            } => {
                let b = build_test_batch(records, value_bytes, TimestampMs(step as i64));
                let info = log
                    .append(BytesMut::from(&b[..]), TimestampMs(step as i64))
                    .await
                    .unwrap();
                assert_eq!(info.base_offset, model.next());
                let mut b = b;
                batch::assign_offset(&mut b, info.base_offset, model.epoch);
                model.batches.push((info.base_offset, info.ticket, b));
            }
            Op::Read {
                at_per_mille,
                max_bytes,
            } => {
                log.wait(model.next(), Durability::Written).await.unwrap();
                durable = model.next();
                let at = pick(model.log_start, model.next(), at_per_mille);
                let r = log.read(at, max_bytes).await.unwrap();
                let expect = model.from(at);
                assert!(r.chunks.len() <= expect.len());
                assert_eq!(
                    r.chunks.is_empty(),
                    expect.is_empty(),
                    "first batch always served"
                );
                for (got, want) in r.chunks.iter().zip(expect) {
                    assert_eq!(&got[..], &want[..], "read at {at}");
                }
                assert!(r.bytes() <= max_bytes || r.chunks.len() == 1);
            }
            Op::Retain { bytes } => {
                log.wait(model.next(), Durability::Written).await.unwrap();
                let mut c = log.config();
                c.retention_bytes = bytes;
                log.set_config(c);
                log.enforce_retention(TimestampMs(step as i64))
                    .await
                    .unwrap();
                let mut c = log.config();
                c.retention_bytes = -1;
                log.set_config(c);
                assert!(log.log_start() >= model.log_start);
                model.log_start = log.log_start();
            }
            Op::DeleteRecords { at_per_mille } => {
                log.wait(model.next(), Durability::Written).await.unwrap();
                let at = pick(model.log_start, model.next(), at_per_mille);
                assert_eq!(
                    log.delete_records(at, TimestampMs(step as i64))
                        .await
                        .unwrap(),
                    at.max(model.log_start)
                );
                model.log_start = log.log_start();
            }
            Op::Reopen { clean } => {
                if clean {
                    log.close().await.unwrap();
                } else {
                    log.abandon().await;
                }
                log = PartitionLog::open(dir, checkpointing_config())
                    .await
                    .unwrap();
                assert!(log.next_offset() >= durable, "durable data survives");
                if clean {
                    assert_eq!(log.next_offset(), model.next(), "clean close keeps all");
                }
                model.truncate_to(log.next_offset());
                model.epoch = log.leader_epoch();
                // After a crash the start may be behind (checkpoint lag), never ahead.
                assert!(log.log_start() <= model.log_start.max(log.log_start()));
                model.log_start = model.log_start.max(log.log_start());
            }
            Op::Truncate { at_per_mille } => {
                let to = model.boundary(at_per_mille);
                log.truncate_to(to).await.unwrap();
                assert_eq!(log.next_offset(), to);
                assert_eq!(log.high_watermark(), to);
                model.truncate_to(to);
                durable = durable.min(to);
            }
            Op::NewEpoch => {
                model.epoch += 1;
                log.set_leader_epoch(model.epoch);
            }
        }
    }
    log.wait(model.next(), Durability::Written).await.unwrap();
    for (base, _, b) in model.batches.iter().filter(|b| b.0 >= model.log_start) {
        let h = batch::parse_header(b).unwrap();
        assert_eq!(log.epoch_at(*base), Some(h.leader_epoch), "epoch at {base}");
    }
    let all = consume_all(&log, model.log_start).await;
    let expect: Vec<_> = model.from(model.log_start).into_iter().cloned().collect();
    assert_eq!(all, expect);
    log.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        block_on(run_ops(dir.path(), ops));
    }
}

#[test]
fn reads_from_disk_after_clean_reopen_and_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let log = PartitionLog::open(dir.path(), small_config())
            .await
            .unwrap();
        let mut last = None;
        for i in 0..50 {
            let b = build_test_batch(2, 100, TimestampMs(1000 + i * 10));
            last = Some(
                log.append(BytesMut::from(&b[..]), TimestampMs(0))
                    .await
                    .unwrap(),
            );
        }
        log.wait(last.unwrap().ticket, Durability::Synced)
            .await
            .unwrap();
        assert!(log.segment_count() > 3);
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.path(), small_config())
            .await
            .unwrap();
        assert_eq!(log.next_offset(), Offset(100));
        assert_eq!(consume_all(&log, Offset(0)).await.len(), 50);
        let (h, _) = log
            .batch_for_timestamp(TimestampMs(1205))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            h.base_offset,
            Offset(42),
            "first batch with ts >= 1205 is the 22nd"
        );
        assert!(log
            .batch_for_timestamp(TimestampMs(99_999))
            .await
            .unwrap()
            .is_none());
        assert_eq!(log.max_timestamp(), (TimestampMs(1490), Offset(98)));
        log.close().await.unwrap();
    });
}

#[test]
fn a_sequential_reader_is_served_from_read_ahead_after_its_first_disk_read() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 64 << 10,
        readahead_bytes: 16 << 10,
        read_chunk_bytes: 3000, // batches straddle the chunks
        ..small_config()
    };
    let mut want = Vec::new();
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut last = Offset(0);
        for i in 0..400 {
            let b = build_test_batch(1 + i % 3, 150 + (i as usize * 7) % 300, TimestampMs(1));
            let info = log
                .append(BytesMut::from(&b[..]), TimestampMs(1))
                .await
                .unwrap();
            want.push(stored(b, info.base_offset));
            last = info.ticket;
        }
        log.wait(last, Durability::Written).await.unwrap();
        log.close().await.unwrap();
    });
    block_on(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        let (hits0, misses0) = super::readcache::with(|c| c.hit_counts());
        let mut got = Vec::new();
        let mut at = Offset(0);
        while at < log.high_watermark() {
            let r = log.read(at, 700).await.unwrap();
            for c in r.chunks {
                at = batch::validate(&c, false).unwrap().next_offset();
                got.push(c.to_vec());
            }
            super::io::sleep(std::time::Duration::from_millis(1)).await; // let read-ahead run
        }
        assert_eq!(got, want, "every batch once, in order, across segments");
        let (hits, misses) = super::readcache::with(|c| c.hit_counts());
        let (hits, misses) = (hits - hits0, misses - misses0);
        assert!(
            misses <= 8 && hits > 10 * misses,
            "{hits} reads from the cache, {misses} from disk"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn corrupt_trusted_segment_is_an_error_not_served() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let log = PartitionLog::open(dir.path(), small_config())
            .await
            .unwrap();
        let mut last = Offset(0);
        for i in 0..40 {
            let b = build_test_batch(1, 150, TimestampMs(i));
            last = log
                .append(BytesMut::from(&b[..]), TimestampMs(i))
                .await
                .unwrap()
                .ticket;
        }
        log.wait(last, Durability::Written).await.unwrap();
        log.close().await.unwrap();
    });
    // Sealed segments are trusted on a clean open (not rescanned): corrupt one behind its back.
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[8..12].copy_from_slice(&0x00ff_ffffi32.to_be_bytes()); // absurd length, first batch
    let crc_hit = bytes.len() - 1;
    bytes[crc_hit] ^= 0x10; // and a flipped byte in the last batch
    std::fs::write(&seg, &bytes).unwrap();
    block_on(async {
        // Without --verify-reads, a length that breaks the batch chain is still caught.
        let log = PartitionLog::open(dir.path(), small_config())
            .await
            .unwrap();
        assert!(matches!(
            log.read(Offset(0), 1 << 20).await,
            Err(StorageError::CorruptOnDisk { .. })
        ));
        log.close().await.unwrap();
    });
    block_on(async {
        let verifying = LogConfig {
            verify_reads: true,
            ..small_config()
        };
        let log = PartitionLog::open(dir.path(), verifying).await.unwrap();
        assert!(matches!(
            log.read(Offset(0), 1 << 20).await,
            Err(StorageError::CorruptOnDisk { .. })
        ));
        // With it, whatever is read from that segment is either an error or a valid batch.
        let mut at = Offset(1);
        while at < Offset(20) {
            match log.read(at, 100).await {
                Ok(r) => {
                    for c in &r.chunks {
                        batch::validate(c, false).expect("only valid batches are served");
                    }
                    at = at.plus(1);
                }
                Err(StorageError::CorruptOnDisk { .. }) => at = at.plus(1),
                Err(e) => panic!("{e}"),
            }
        }
        log.close().await.unwrap();
    });
}

/// Builds a one-segment log: `durable` batches waited for, then more appended and the process
/// "killed". Returns the original stored batches and the byte length that was durable.
fn crashed_log(dir: &Path, seed: u64) -> (Vec<Vec<u8>>, usize, usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let config = LogConfig {
        preallocate_bytes_step: 4096,
        ..small_config()
    };
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..config
    };
    block_on(async {
        let log = PartitionLog::open(dir, config).await.unwrap();
        let mut batches = Vec::new();
        let durable: usize = 20;
        for i in 0..40usize {
            let ts = TimestampMs(i as i64);
            let b = build_test_batch(rng.gen_range(1..4), rng.gen_range(10..300), ts);
            let info = log.append(BytesMut::from(&b[..]), ts).await.unwrap();
            batches.push(stored(b, info.base_offset));
            if i + 1 == durable {
                log.wait(info.ticket, Durability::Written).await.unwrap();
            }
        }
        log.abandon().await;
        let durable_bytes = batches[..durable].iter().map(|b| b.len()).sum();
        (batches, durable, durable_bytes)
    })
}

fn epoch_blind(b: &[u8]) -> Vec<u8> {
    let mut v = b.to_vec();
    v[12..16].fill(0); // partition leader epoch: broker-owned, outside the CRC
    v
}

#[test]
fn scanner_survives_thousands_of_cuts_and_flips() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, durable, durable_bytes) = crashed_log(dir.path(), 7);
    let image = std::fs::read(dir.path().join("00000000000000000000.log")).unwrap();
    assert!(image.len() >= durable_bytes);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for case in 0..4000 {
        let mut img = image.clone();
        let cut = rng.gen_range(durable_bytes..=img.len());
        img.truncate(cut);
        let anywhere = case % 4 == 0;
        for _ in 0..rng.gen_range(0..4) {
            let lo = if anywhere { 0 } else { durable_bytes };
            if lo < img.len() {
                let at = rng.gen_range(lo..img.len());
                img[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        let (found, _) = scan_all(&img, 1 << 20);
        if !anywhere {
            assert!(found.len() >= durable, "case {case}: durable batches kept");
        }
        let mut pos = 0usize;
        for (i, f) in found.iter().enumerate() {
            let got = &img[f.position as usize..f.position as usize + f.header.size_bytes];
            if epoch_blind(got) != epoch_blind(&batches[i]) {
                // Only the unchecked base offset can differ; recovery's contiguity check stops there.
                assert_ne!(
                    f.header.base_offset,
                    batch::parse_header(&batches[i]).unwrap().base_offset
                );
                break;
            }
            pos += got.len();
        }
        assert!(pos <= img.len());
    }
}

#[test]
fn reopen_after_torn_and_corrupt_tails_serves_only_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, durable, durable_bytes) = crashed_log(dir.path(), 3);
    let seg = "00000000000000000000.log";
    let image = std::fs::read(dir.path().join(seg)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for case in 0..150 {
        let work = tempfile::tempdir().unwrap();
        let mut img = image.clone();
        let cut = rng.gen_range(durable_bytes..=img.len());
        img.truncate(cut);
        let anywhere = case % 3 == 0;
        for _ in 0..rng.gen_range(0..3) {
            let lo = if anywhere { 0 } else { durable_bytes };
            if lo < img.len() {
                let at = rng.gen_range(lo..img.len());
                img[at] ^= 1 << rng.gen_range(0..8);
            }
        }
        std::fs::write(work.path().join(seg), &img).unwrap();
        block_on(async {
            let log = PartitionLog::open(work.path(), small_config())
                .await
                .unwrap();
            if !anywhere {
                assert!(
                    log.next_offset()
                        >= batch::parse_header(&batches[durable - 1])
                            .unwrap()
                            .next_offset()
                );
            }
            let served = consume_all(&log, Offset(0)).await;
            for (i, got) in served.iter().enumerate() {
                assert_eq!(
                    epoch_blind(got),
                    epoch_blind(&batches[i]),
                    "case {case}: batch {i}"
                );
            }
            // Appends continue cleanly after recovery and survive another reopen.
            let b = build_test_batch(1, 10, TimestampMs(1));
            let info = log
                .append(BytesMut::from(&b[..]), TimestampMs(1))
                .await
                .unwrap();
            log.wait(info.ticket, Durability::Written).await.unwrap();
            log.abandon().await;
            let again = PartitionLog::open(work.path(), small_config())
                .await
                .unwrap();
            assert_eq!(again.next_offset(), info.ticket);
            again.close().await.unwrap();
        });
    }
}

#[test]
fn io_failure_stops_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("t-0");
    block_on(async {
        let log = PartitionLog::open(&part, small_config()).await.unwrap();
        let b = build_test_batch(1, 100, TimestampMs(1));
        let info = log
            .append(BytesMut::from(&b[..]), TimestampMs(1))
            .await
            .unwrap();
        log.wait(info.ticket, Durability::Written).await.unwrap();
        // Losing the directory makes the next segment roll fail.
        std::fs::remove_dir_all(&part).unwrap();
        let mut last = info;
        for _ in 0..40 {
            match log.append(BytesMut::from(&b[..]), TimestampMs(1)).await {
                Ok(i) => last = i,
                Err(StorageError::LogDirFailed(_)) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        let waited = log.wait(last.ticket, Durability::Policy).await;
        assert!(
            matches!(waited, Err(StorageError::LogDirFailed(_))),
            "{waited:?}"
        );
        assert!(matches!(
            log.append(BytesMut::from(&b[..]), TimestampMs(1)).await,
            Err(StorageError::LogDirFailed(_))
        ));
    });
}

/// Issue 17, case 4: one corrupt batch used to fail every read whose window held it, hiding the
/// intact batches before it, and a flipped base-offset byte went unnoticed (records served at
/// wrong offsets). Now a read serves the intact batches before a corrupt one and stops there;
/// only a read from the corrupt batch itself is an error; offsets must run on batch to batch.
#[test]
fn a_corrupt_batch_stops_reads_at_it_and_hides_nothing_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let size = build_test_batch(1, 150, TimestampMs(0)).len() as u64;
    let config = LogConfig {
        segment_bytes_max: 60 * size + 1, // the 61st batch rolls: the first 60 are sealed
        ..small_config()
    };
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut last = Offset(0);
        for i in 0..65 {
            let b = build_test_batch(1, 150, TimestampMs(i));
            let appended = log.append(BytesMut::from(&b[..]), TimestampMs(i)).await;
            last = appended.unwrap().ticket;
        }
        log.wait(last, Durability::Written).await.unwrap();
        log.close().await.unwrap();
    });
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = |i: u64| (i * size) as usize;
    assert_eq!(batch::declared_size(&bytes[at(30)..]), Some(size as usize));
    bytes[at(30) + 16] = 7; // batch 30: magic 7
    bytes[at(45) + 7] ^= 0x40; // batch 45: its base offset, 45 → 45 ^ 64
    std::fs::write(&seg, &bytes).unwrap();
    block_on(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        let offsets = |chunks: &[Chunk]| -> Vec<i64> {
            let hs = chunks.iter().map(|c| batch::parse_header(c).unwrap());
            hs.map(|h| h.base_offset.get()).collect()
        };
        let served = log.read(Offset(0), 1 << 20).await.unwrap();
        assert_eq!(offsets(&served.chunks), (0..30).collect::<Vec<_>>());
        let corrupt = |r: Result<ReadOutcome, StorageError>| {
            matches!(r, Err(StorageError::CorruptOnDisk { .. }))
        };
        assert!(
            corrupt(log.read(Offset(30), 1 << 20).await),
            "the corrupt batch itself"
        );
        let after = log.read(Offset(35), 1 << 20).await.unwrap();
        assert_eq!(
            offsets(&after.chunks),
            (35..45).collect::<Vec<_>>(),
            "up to the bad offset"
        );
        assert!(
            corrupt(log.read(Offset(45), 1 << 20).await),
            "a base offset out of line"
        );
        let rest = log.read(Offset(50), 1 << 20).await.unwrap();
        assert_eq!(offsets(&rest.chunks)[0], 50, "past it, from the index");
        log.close().await.unwrap();
    });
}

/// A length field cut short by a few bytes in the last batch of a sealed segment (a bit flip
/// that clears a low bit; the CRC is not checked by default) left fewer bytes than a length
/// prefix before the segment's end: the disk read re-read those bytes for ever, its shard
/// spinning. Now they are corrupt, and the batches before them are served.
#[test]
fn a_length_cut_short_at_a_segment_end_is_corrupt_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let size = build_test_batch(1, 150, TimestampMs(0)).len();
    let config = LogConfig {
        segment_bytes_max: 60 * size as u64 + 1, // the 61st batch rolls: the first 60 are sealed
        ..small_config()
    };
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut last = Offset(0);
        for i in 0..65 {
            let b = build_test_batch(1, 150, TimestampMs(i));
            let appended = log.append(BytesMut::from(&b[..]), TimestampMs(i)).await;
            last = appended.unwrap().ticket;
        }
        log.wait(last, Durability::Written).await.unwrap();
        log.close().await.unwrap();
    });
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = std::fs::read(&seg).unwrap();
    assert_eq!(bytes.len(), 60 * size, "sealed at 60 batches");
    let at = 59 * size + 8; // batch 59's length field: 4 bytes fewer
    let shorter = (size - batch::LOG_OVERHEAD_BYTES - 4) as i32;
    bytes[at..at + 4].copy_from_slice(&shorter.to_be_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    block_on(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        let read =
            futures_lite::future::or(async { Some(log.read(Offset(59), 1 << 20).await) }, async {
                io::sleep(std::time::Duration::from_secs(20)).await;
                None
            });
        let served = read.await.expect("the read ends").unwrap();
        let bases: Vec<i64> = served
            .chunks
            .iter()
            .map(|c| batch::parse_header(c).unwrap().base_offset.get())
            .collect();
        assert_eq!(bases, [59], "the batch that passes the checks");
        let next = log.read(Offset(60), 1 << 20).await.unwrap();
        assert_eq!(next.chunks.len(), 5, "the next segment");
        log.close().await.unwrap();
    });
}

/// `PartitionLog::replay` hands over every batch from an offset on, once and in order, the
/// first one cut by that offset too, over segments and reads; a batch larger than a replay
/// read, cut by the offset, does not end the replay.
#[test]
fn replay_hands_over_each_batch_from_an_offset_on_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        message_bytes_max: 4 << 20,
        ..small_config()
    };
    // 3 records a batch, offsets 0..120; batch 10 (offsets 30..32) of 1.2 MiB.
    let batches: Vec<Vec<u8>> = (0..40)
        .map(|i| {
            let value_bytes = if i == 10 { 400 << 10 } else { 100 };
            stored(
                build_test_batch(3, value_bytes, TimestampMs(i)),
                Offset(3 * i),
            )
        })
        .collect();
    let replayed = |log: PartitionLog, from: i64| async move {
        let mut seen = Vec::new();
        log.replay(Offset(from), |h, b| {
            assert_eq!(h.size_bytes, b.len());
            seen.push((h.base_offset.get(), b.to_vec()));
            Ok(())
        })
        .await
        .unwrap();
        seen
    };
    let expect = |from: i64| -> Vec<(i64, Vec<u8>)> {
        let first = (from / 3) as usize;
        (first..40)
            .map(|i| (3 * i as i64, batches[i].clone()))
            .collect()
    };
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut last = Offset(0);
        for b in &batches {
            let appended = log.append(BytesMut::from(&b[..]), TimestampMs(1)).await;
            last = appended.unwrap().ticket;
        }
        log.wait(last, Durability::Written).await.unwrap();
        for from in [0, 7, 9, 31, 119, 120] {
            assert_eq!(
                replayed(log.clone(), from).await,
                expect(from),
                "from {from}"
            );
        }
        log.close().await.unwrap();
        // From the disk now.
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert!(log.segment_count() > 3);
        for from in [0, 7, 9, 31, 119, 120] {
            assert_eq!(
                replayed(log.clone(), from).await,
                expect(from),
                "from {from}"
            );
        }
        log.close().await.unwrap();
    });
}

/// Appends `batches` batches of 2 records of `value_bytes` each to a log in `dir`, each
/// waited for until written, then stops the log as kill -9 would; returns them as stored.
fn written_then_killed(
    dir: &Path,
    config: LogConfig,
    batches: i64,
    value_bytes: usize,
) -> Vec<Vec<u8>> {
    block_on(async {
        let log = PartitionLog::open(dir, config).await.unwrap();
        let mut out = Vec::new();
        for i in 0..batches {
            let b = build_test_batch(2, value_bytes, TimestampMs(i));
            let info = log
                .append(BytesMut::from(&b[..]), TimestampMs(i))
                .await
                .unwrap();
            log.wait(info.ticket, Durability::Written).await.unwrap();
            out.push(stored(b, info.base_offset));
        }
        log.abandon().await;
        out
    })
}

/// Issue 17, case 9: recovery after a crash rescanned the whole active segment, so restart time
/// grew with it. With recovery checkpoints it scans only what was written after the last one,
/// and serves everything as before.
#[test]
fn crash_recovery_scans_only_what_follows_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes_max: 64 << 20,
        checkpoint_bytes_min: 64 << 10,
        checkpoint_ms_min: 0,
        ..small_config()
    };
    let written = written_then_killed(dir.path(), config.clone(), 400, 1000);
    let total: usize = written.iter().map(Vec::len).sum();
    let rec = block_on(super::recovery::recover(dir.path(), &config)).unwrap();
    assert!(!rec.was_clean);
    assert_eq!(rec.segments.len(), 1, "one active segment");
    assert!(
        rec.scanned_bytes < (64 << 10) + 4096,
        "scanned {} of {total} bytes",
        rec.scanned_bytes
    );
    drop(rec);
    block_on(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert_eq!(log.next_offset(), Offset(800));
        assert_eq!(consume_all(&log, Offset(0)).await, written);
        let (ts, at) = log.max_timestamp();
        assert_eq!((ts, at), (TimestampMs(399), Offset(798)));
        log.close().await.unwrap();
    });
}

/// Index files of a segment's base left over from an earlier segment (an older version deleted
/// a segment's log before its indexes) must not be taken for a recovery checkpoint of a new
/// segment of that base: a new segment file removes them.
#[test]
fn leftover_index_files_are_not_taken_for_a_new_segment_s_checkpoint() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    block_on(async {
        let log = PartitionLog::open(old.path(), small_config())
            .await
            .unwrap();
        for i in 0..3 {
            let b = build_test_batch(1, 50, TimestampMs(i));
            log.append(BytesMut::from(&b[..]), TimestampMs(i))
                .await
                .unwrap();
        }
        log.close().await.unwrap();
    });
    for ext in ["index", "timeindex"] {
        let name = format!("{:020}.{ext}", 0);
        std::fs::copy(old.path().join(&name), new.path().join(&name)).unwrap();
    }
    let written = written_then_killed(new.path(), small_config(), 5, 90);
    block_on(async {
        let log = PartitionLog::open(new.path(), small_config())
            .await
            .unwrap();
        assert_eq!(
            log.next_offset(),
            Offset(10),
            "nothing cut at a foreign prefix"
        );
        assert_eq!(consume_all(&log, Offset(0)).await, written);
        log.close().await.unwrap();
    });
}

/// From a review: retention could delete every sealed segment while the active one, rolled by
/// segment.ms and not yet written, had no file; a crash before the log-start checkpoint then
/// left no segment file, and the log reopened at its old start, handing out offsets again.
/// Now the active segment's file exists before anything is deleted.
#[test]
fn retention_leaves_a_segment_file_that_holds_the_log_end() {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("t-0");
    let config = LogConfig {
        segment_ms: 1,
        retention_ms: 1,
        ..small_config()
    };
    block_on(async {
        let log = PartitionLog::open(&part, config.clone()).await.unwrap();
        for ts in 0..5 {
            let b = build_test_batch(2, 50, TimestampMs(ts));
            let info = log.append(BytesMut::from(&b[..]), TimestampMs(ts)).await;
            log.wait(info.unwrap().ticket, Durability::Written)
                .await
                .unwrap();
        }
        let end = log.next_offset();
        log.enforce_retention(TimestampMs::now()).await.unwrap(); // rolls
        for _ in 0..100 {
            if log.segment_count() == 1 && log.log_start() == end {
                break;
            }
            io::sleep(std::time::Duration::from_millis(10)).await; // the flusher seals
            log.enforce_retention(TimestampMs::now()).await.unwrap();
        }
        assert_eq!(
            (log.segment_count(), log.log_start()),
            (1, end),
            "all old ones gone"
        );
        let logs = std::fs::read_dir(&part)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .count();
        assert_eq!(logs, 1, "the empty active segment's file");
        // As if the checkpoint had not been written: recovery must still find the end.
        std::fs::remove_file(part.join(super::recovery::LOG_START_FILE)).unwrap();
        log.abandon().await;
        let reopened = PartitionLog::open(&part, config).await.unwrap();
        assert_eq!(reopened.next_offset(), end, "no offset handed out twice");
    });
}

/// Issue 21: batches carry the epoch they were appended under, and the epoch boundaries come
/// back the same after a clean close and after a crash with checkpoints (file plus scan),
/// and move with the log start.
#[test]
fn leader_epochs_are_stamped_and_survive_close_crash_and_deleted_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = checkpointing_config();
    let expected = [(0, Offset(0)), (3, Offset(20)), (4, Offset(50))];
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut last = None;
        for i in 0..40 {
            match i {
                10 => log.set_leader_epoch(3),
                25 => log.set_leader_epoch(4),
                _ => {}
            }
            let b = build_test_batch(2, 100, TimestampMs(i));
            let info = log
                .append(BytesMut::from(&b[..]), TimestampMs(i))
                .await
                .unwrap();
            last = Some(info.ticket);
        }
        log.wait(last.unwrap(), Durability::Synced).await.unwrap();
        let read = log.read(Offset(20), 1).await.unwrap();
        let h = batch::parse_header(&read.chunks[0]).unwrap();
        assert_eq!((h.base_offset, h.leader_epoch), (Offset(20), 3));
        assert_eq!(log.end_offset_for_epoch(3), (3, 50));
        assert_eq!(log.end_offset_for_epoch(4), (4, 80));
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(log.leader_epoch(), 4, "appends go on in the latest epoch");
        for (epoch, start) in expected {
            assert_eq!(log.epoch_at(start), Some(epoch));
        }
        assert_eq!(log.end_offset_for_epoch(2), (0, 20));
        log.set_leader_epoch(6);
        let b = build_test_batch(2, 100, TimestampMs(99));
        let info = log
            .append(BytesMut::from(&b[..]), TimestampMs(99))
            .await
            .unwrap();
        log.wait(info.ticket, Durability::Written).await.unwrap();
        log.abandon().await;
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(
            log.end_offset_for_epoch(4),
            (4, 80),
            "crash: epoch 6 starts at 80"
        );
        assert_eq!(log.end_offset_for_epoch(6), (6, 82));
        log.delete_records(Offset(30), TimestampMs(100))
            .await
            .unwrap();
        assert_eq!(log.epoch_at(Offset(30)), Some(3));
        assert_eq!(log.epoch_at(Offset(29)), None, "below the log start");
        assert_eq!(log.end_offset_for_epoch(0), (0, 30), "older than all kept");
        log.close().await.unwrap();
    });
}

/// Issue 21: a follower's truncation cuts whole segments and part of one (a sealed,
/// finalized one here), refuses a point inside a batch or below the log start without
/// harm, and the log goes on from the cut: appends, reads, the epochs, a clean reopen and a
/// crash all agree.
#[test]
fn truncation_cuts_segments_and_the_log_goes_on_from_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        let mut stored_batches = Vec::new();
        let mut last = Offset(0);
        for i in 0..40 {
            if i == 20 {
                log.set_leader_epoch(2);
            }
            let b = build_test_batch(2, 100, TimestampMs(i));
            let info = log
                .append(BytesMut::from(&b[..]), TimestampMs(i))
                .await
                .unwrap();
            let mut b = b;
            batch::assign_offset(&mut b, info.base_offset, if i < 20 { 0 } else { 2 });
            stored_batches.push(b);
            last = info.ticket;
        }
        log.wait(last, Durability::Synced).await.unwrap();
        let segments = log.segment_count();
        assert!(segments > 3, "{segments} segments");
        assert!(log.truncate_to(Offset(31)).await.is_err(), "inside a batch");
        log.delete_records(Offset(4), TimestampMs(50))
            .await
            .unwrap();
        assert!(
            log.truncate_to(Offset(2)).await.is_err(),
            "below the log start"
        );
        assert_eq!(log.next_offset(), Offset(80), "refusals change nothing");

        log.truncate_to(Offset(30)).await.unwrap();
        assert_eq!(
            (log.next_offset(), log.high_watermark()),
            (Offset(30), Offset(30))
        );
        assert!(log.segment_count() < segments);
        assert_eq!(log.end_offset_for_epoch(0), (0, 30), "epoch 2 is gone");
        stored_batches.truncate(15);
        assert_eq!(consume_all(&log, Offset(4)).await, stored_batches[2..]);
        log.set_leader_epoch(3);
        for i in 0..10 {
            let b = build_test_batch(2, 100, TimestampMs(100 + i));
            let info = log
                .append(BytesMut::from(&b[..]), TimestampMs(0))
                .await
                .unwrap();
            let mut b = b;
            batch::assign_offset(&mut b, info.base_offset, 3);
            stored_batches.push(b);
            last = info.ticket;
        }
        assert_eq!(last, Offset(50));
        log.wait(last, Durability::Written).await.unwrap();
        assert_eq!(consume_all(&log, Offset(4)).await, stored_batches[2..]);
        log.close().await.unwrap();

        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        assert_eq!(consume_all(&log, Offset(4)).await, stored_batches[2..]);
        assert_eq!(log.end_offset_for_epoch(0), (0, 30));
        assert_eq!(log.end_offset_for_epoch(3), (3, 50));
        log.truncate_to(Offset(40)).await.unwrap();
        log.abandon().await;
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        stored_batches.truncate(20);
        assert_eq!(log.next_offset(), Offset(40), "the cut holds after a crash");
        assert_eq!(consume_all(&log, Offset(4)).await, stored_batches[2..]);
        log.close().await.unwrap();
    });
}

/// Issue 21: a follower's log takes the leader's stored batches as they are (same offsets,
/// epochs and bytes), refuses one that does not continue it, and after a truncation takes
/// the new leader's suffix: both logs end byte-identical.
#[test]
fn a_follower_log_holds_the_leader_s_batches_byte_for_byte() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    block_on(async {
        let leader = PartitionLog::open(ld.path(), small_config()).await.unwrap();
        let follower = PartitionLog::open(fd.path(), small_config()).await.unwrap();
        let copy = |from: Offset| {
            let (leader, follower) = (leader.clone(), follower.clone());
            async move {
                leader
                    .wait(leader.next_offset(), Durability::Written)
                    .await
                    .unwrap();
                for b in consume_all(&leader, from).await {
                    follower
                        .append_replicated(BytesMut::from(&b[..]), TimestampMs(0))
                        .unwrap();
                }
            }
        };
        for i in 0..12 {
            if i == 6 {
                leader.set_leader_epoch(1);
            }
            let b = build_test_batch(3, 50, TimestampMs(i));
            leader
                .append(BytesMut::from(&b[..]), TimestampMs(i))
                .await
                .unwrap();
        }
        copy(Offset(0)).await;
        // Out of place: a batch the follower already has, or an older epoch at the end.
        let first = consume_all(&leader, Offset(0)).await.remove(0);
        let again = follower.append_replicated(BytesMut::from(&first[..]), TimestampMs(0));
        assert!(
            matches!(again, Err(StorageError::OutOfPlace { .. })),
            "{again:?}"
        );
        let mut old = build_test_batch(1, 10, TimestampMs(0));
        batch::assign_offset(&mut old, Offset(36), 0);
        let older = follower.append_replicated(BytesMut::from(&old[..]), TimestampMs(0));
        assert!(
            matches!(older, Err(StorageError::OutOfPlace { .. })),
            "{older:?}"
        );
        // The follower wrote a suffix the new leader never had: cut, then the leader's.
        let stray = build_test_batch(2, 10, TimestampMs(0));
        let mut stray = stray;
        batch::assign_offset(&mut stray, Offset(36), 1);
        follower
            .append_replicated(BytesMut::from(&stray[..]), TimestampMs(0))
            .unwrap();
        leader.set_leader_epoch(2);
        for i in 0..4 {
            let b = build_test_batch(1, 70, TimestampMs(100 + i));
            leader
                .append(BytesMut::from(&b[..]), TimestampMs(0))
                .await
                .unwrap();
        }
        follower.truncate_to(Offset(36)).await.unwrap();
        copy(Offset(36)).await;
        follower
            .wait(follower.next_offset(), Durability::Written)
            .await
            .unwrap();
        assert_eq!(
            consume_all(&follower, Offset(0)).await,
            consume_all(&leader, Offset(0)).await
        );
        assert_eq!(follower.end_offset_for_epoch(1), (1, 36));
        assert_eq!(
            follower.end_offset_for_epoch(2),
            leader.end_offset_for_epoch(2)
        );
        leader.close().await.unwrap();
        follower.close().await.unwrap();
    });
}

/// Appends 40 batches of two 100-byte records (offsets 0..80, timestamps 0..40) and waits
/// for them to be `level`.
async fn append_forty(log: &PartitionLog, level: Durability) {
    let mut last = Offset(0);
    for i in 0..40 {
        let b = build_test_batch(2, 100, TimestampMs(i));
        let info = log
            .append(BytesMut::from(&b[..]), TimestampMs(i))
            .await
            .unwrap();
        last = info.ticket;
    }
    log.wait(last, level).await.unwrap();
}

/// DeleteRecords while the periodic retention run is under way: the runs take turns, so
/// neither fails on the other's log-start checkpoint file (CI saw KAFKA_STORAGE_ERROR).
#[test]
fn delete_records_and_retention_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        append_forty(&log, Durability::Synced).await;
        for at in [4i64, 10, 30, 50] {
            let (deleted, (periodic, again)) = futures_lite::future::zip(
                log.delete_records(Offset(at), TimestampMs(100)),
                futures_lite::future::zip(
                    log.enforce_retention(TimestampMs(100)),
                    log.delete_records(Offset(at), TimestampMs(100)),
                ),
            )
            .await;
            assert_eq!(deleted.unwrap(), Offset(at));
            periodic.unwrap();
            assert_eq!(again.unwrap(), Offset(at));
        }
        log.close().await.unwrap();
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert_eq!(log.log_start(), Offset(50));
        log.close().await.unwrap();
    });
}

/// DeleteRecords racing a close: the close waits for the run under way (both write the
/// log-start file), later runs answer Closed, and the log reopens at the moved start.
#[test]
fn close_waits_for_a_retention_run_and_later_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config();
    block_on(async {
        let log = PartitionLog::open(dir.path(), config.clone())
            .await
            .unwrap();
        append_forty(&log, Durability::Synced).await;
        let (deleted, closed) = futures_lite::future::zip(
            log.delete_records(Offset(30), TimestampMs(100)),
            log.close(),
        )
        .await;
        assert_eq!(deleted.unwrap(), Offset(30));
        closed.unwrap();
        assert!(matches!(
            log.enforce_retention(TimestampMs(100)).await,
            Err(StorageError::Closed)
        ));
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        assert_eq!(log.log_start(), Offset(30));
        log.close().await.unwrap();
    });
}

/// Issue 21: a replicated log's reads end at its commit point, from the tail cache and
/// from disk alike; DeleteRecords cannot pass it; moving it shows the rest.
#[test]
fn reads_end_at_the_commit_point_of_a_replicated_log() {
    let dir = tempfile::tempdir().unwrap();
    block_on(async {
        let log = PartitionLog::open(dir.path(), small_config())
            .await
            .unwrap();
        append_forty(&log, Durability::Written).await;
        for commit in [0, 30, 58, 80] {
            log.set_commit(Offset(commit));
            assert_eq!(log.high_watermark(), Offset(commit));
            let got = consume_all(&log, Offset(0)).await;
            assert_eq!(got.len() as i64, commit / 2, "batches below {commit}");
            let near_end = log
                .read(Offset((commit - 2).max(0)), 1 << 20)
                .await
                .unwrap();
            let beyond = near_end
                .chunks
                .iter()
                .any(|c| batch::parse_header(c).unwrap().base_offset >= Offset(commit));
            assert!(!beyond, "nothing past the commit point");
            if commit < 80 {
                let past = log.read(Offset(commit + 1), 100).await;
                assert!(
                    past.unwrap().chunks.is_empty(),
                    "written, not committed: empty"
                );
            }
            assert!(log.read(Offset(81), 100).await.is_err(), "past the log end");
        }
        log.set_commit(Offset(20));
        assert!(log
            .delete_records(Offset(30), TimestampMs(100))
            .await
            .is_err());
        assert_eq!(
            log.delete_records(Offset(20), TimestampMs(100))
                .await
                .unwrap(),
            Offset(20)
        );
        log.close().await.unwrap();
    });
}

/// Issue 21: a replicated log's start never passes its stored Raft checkpoint, whether
/// DeleteRecords or retention asks: the replica rebuilds from there when it opens.
#[test]
fn the_log_start_of_a_replicated_log_stops_at_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 0, // everything sealed has expired
        ..small_config()
    };
    block_on(async {
        let log = PartitionLog::open(dir.path(), config).await.unwrap();
        append_forty(&log, Durability::Synced).await;
        log.set_start_limit(Offset(20));
        let moved = log
            .delete_records(Offset(50), TimestampMs::now())
            .await
            .unwrap();
        assert_eq!(moved, Offset(20), "up to the checkpoint only");
        log.enforce_retention(TimestampMs::now()).await.unwrap();
        assert_eq!(log.log_start(), Offset(20));
        assert!(
            log.read(Offset(20), 100).await.is_ok(),
            "kept from the checkpoint on"
        );
        log.set_start_limit(Offset(60));
        log.enforce_retention(TimestampMs::now()).await.unwrap();
        assert!(log.log_start() > Offset(20) && log.log_start() <= Offset(60));
        log.close().await.unwrap();
    });
}
