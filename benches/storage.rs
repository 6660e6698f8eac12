//! Storage throughput, each figure beside a raw O_DIRECT baseline measured in the same run.
//!
//! - `write/<batch>/raw`: sequential O_DIRECT writes of `<batch>` bytes into a preallocated file,
//!   one in flight (the device's bandwidth through the same glommio path).
//! - `write/<batch>/append`: `PartitionLog::append` of producer batches of 1 KiB records, waited
//!   for as acks=1 does (O_DIRECT write complete, no fsync), pipelined like a producer.
//! - `write/<batch>/append_fsync`: the same on a flush.messages=1 topic (fdatasync per write).
//! - `read/raw`, `read/disk`, `read/cache`: 1 MiB sequential reads from a file, from the log on
//!   disk (cache too small to help) and from the log's tail cache.
//!
//! Run: `cargo bench --bench storage` (docs/benchmarks.md has figures and the machine).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardlog::storage::batch::build_test_batch;
use shardlog::storage::io::{block_on, SegmentFile};
use shardlog::storage::{Durability, LogConfig, PartitionLog};
use shardlog::types::{Offset, TimestampMs};

const RECORD_BYTES: usize = 1024;
const READ_BYTES: usize = 1 << 20;

fn producer_batch(batch_bytes: usize) -> Vec<u8> {
    // 1 KiB records (value plus ~10 bytes of record framing), filling the batch without
    // crossing it, so a "1 MiB" batch stays under the default max.message.bytes.
    let records = ((batch_bytes - 61) / RECORD_BYTES).max(1) as i32;
    build_test_batch(records, RECORD_BYTES - 10, TimestampMs::now())
}

fn bench_config(fsync: bool) -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 << 20,
        flush_messages: if fsync { 1 } else { i64::MAX as u64 },
        ..LogConfig::default()
    }
}

async fn raw_write(dir: &Path, chunk: usize, iters: u64) -> Duration {
    let file = SegmentFile::open(&dir.join("raw.bin"), true).await.unwrap();
    let total = chunk as u64 * iters;
    file.preallocate(total.max(4096)).await.unwrap();
    let data = vec![0x5Au8; chunk];
    let start = Instant::now();
    for i in 0..iters {
        file.write_aligned(i * chunk as u64, &[&data])
            .await
            .unwrap();
    }
    start.elapsed()
}

async fn log_append(dir: &Path, batch: &[u8], iters: u64, fsync: bool) -> Duration {
    let log = PartitionLog::open(dir.join("p-0"), bench_config(fsync))
        .await
        .unwrap();
    let level = if fsync {
        Durability::Policy
    } else {
        Durability::Written
    };
    let start = Instant::now();
    let mut last = Offset(0);
    for _ in 0..iters {
        let info = log
            .append(BytesMut::from(batch), TimestampMs::now())
            .await
            .unwrap();
        last = info.ticket;
    }
    log.wait(last, level).await.unwrap();
    let elapsed = start.elapsed();
    log.close().await.unwrap();
    elapsed
}

fn bench_writes(c: &mut Criterion) {
    let mut g = c.benchmark_group("write");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (name, bytes) in [("16KiB", 16 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        let batch = producer_batch(bytes);
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(BenchmarkId::new(name, "raw"), |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir_in(bench_dir()).unwrap();
                block_on(raw_write(dir.path(), bytes, iters))
            })
        });
        for (label, fsync) in [("append", false), ("append_fsync", true)] {
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|iters| {
                    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
                    block_on(log_append(dir.path(), &batch, iters, fsync))
                })
            });
        }
    }
    g.finish();
}

/// Fills a log with `bytes` of 64 KiB batches; returns it open.
async fn filled_log(dir: &Path, bytes: usize, cache_bytes_max: usize) -> PartitionLog {
    let config = LogConfig {
        cache_bytes_max,
        ..bench_config(false)
    };
    let log = PartitionLog::open(dir.join("p-0"), config).await.unwrap();
    let batch = producer_batch(64 << 10);
    let mut last = Offset(0);
    for _ in 0..bytes / batch.len() {
        last = log
            .append(BytesMut::from(&batch[..]), TimestampMs::now())
            .await
            .unwrap()
            .ticket;
    }
    log.wait(last, Durability::Written).await.unwrap();
    log
}

async fn log_read(log: &PartitionLog, iters: u64) -> Duration {
    let hw = log.high_watermark();
    let mut at = Offset(0);
    let start = Instant::now();
    for _ in 0..iters {
        let r = log.read(at, READ_BYTES).await.unwrap();
        let last = r.chunks.last().expect("data");
        let h = shardlog::storage::batch::parse_header(last).unwrap();
        at = if h.next_offset() >= hw {
            Offset(0)
        } else {
            h.next_offset()
        };
        std::hint::black_box(&r);
    }
    start.elapsed()
}

async fn raw_read(dir: &Path, file_bytes: u64, iters: u64) -> Duration {
    let path = dir.join("raw.bin");
    let file = SegmentFile::open(&path, true).await.unwrap();
    let data = vec![0x5Au8; 1 << 20];
    for i in 0..file_bytes >> 20 {
        file.write_aligned(i << 20, &[&data]).await.unwrap();
    }
    let start = Instant::now();
    for i in 0..iters {
        let pos = (i * READ_BYTES as u64) % file_bytes;
        std::hint::black_box(file.read(pos, READ_BYTES).await.unwrap());
    }
    start.elapsed()
}

fn bench_reads(c: &mut Criterion) {
    let mut g = c.benchmark_group("read");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(READ_BYTES as u64));
    let data_bytes = 128 << 20;
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let dir = tempfile::tempdir_in(bench_dir()).unwrap();
            block_on(raw_read(dir.path(), data_bytes as u64, iters))
        })
    });
    for (label, cache) in [("disk", 1 << 20), ("cache", 256 << 20)] {
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir_in(bench_dir()).unwrap();
                block_on(async {
                    let log = filled_log(dir.path(), data_bytes, cache).await;
                    let d = log_read(&log, iters).await;
                    log.close().await.unwrap();
                    d
                })
            })
        });
    }
    g.finish();
}

/// Where bench data goes: $SHARDLOG_BENCH_DIR, else the target directory (a real disk; /tmp may
/// be tmpfs, where O_DIRECT does not apply).
fn bench_dir() -> std::path::PathBuf {
    let dir = std::env::var_os("SHARDLOG_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

criterion_group!(benches, bench_writes, bench_reads);
criterion_main!(benches);
