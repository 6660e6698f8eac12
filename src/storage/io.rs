//! The storage module's only contact with the runtime: O_DIRECT segment files, small metadata
//! files, task spawning and timers, all on glommio (io_uring). Everything else in `storage/` is
//! runtime-free; swapping glommio means rewriting this file alone.
//!
//! Segment writes are aligned to the device block (`SegmentFile::alignment`) and go through one
//! DMA buffer per write; reads return [`IoBuf`], a slice of the DMA read buffer (no copy).

use std::future::Future;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use glommio::io::{BufferedFile, DmaFile, OpenOptions, ReadResult};

use super::error::{Result, StorageError};

/// Bytes read from disk: a view into the DMA buffer the kernel filled.
#[derive(Clone)]
pub struct IoBuf(ReadResult);

impl IoBuf {
    /// A zero-copy sub-slice.
    pub fn slice(&self, offset: usize, len: usize) -> Option<IoBuf> {
        ReadResult::slice(&self.0, offset, len).map(IoBuf)
    }
}

impl Deref for IoBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for IoBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IoBuf({} bytes)", self.0.len())
    }
}

/// One `<base>.log` file opened for O_DIRECT reads and writes.
pub struct SegmentFile {
    file: DmaFile,
    path: PathBuf,
}

fn io_err(op: &'static str, path: &Path, e: glommio::GlommioError<()>) -> StorageError {
    use glommio::GlommioError::{EnhancedIoError, IoError};
    let source = match e {
        IoError(io) | EnhancedIoError { source: io, .. } => io,
        other => std::io::Error::other(other.to_string()),
    };
    StorageError::io(op, path, source)
}

thread_local! {
    /// Devices (st_dev) whose io_uring poll support this executor thread has probed correctly.
    static PROBED_DEVICES: std::cell::RefCell<std::collections::HashSet<u64>> = Default::default();
}

/// glommio decides, once per device and thread, whether O_DIRECT reads may use the IOPOLL ring
/// by reading the first block of the first file it opens there. On an empty file that read
/// "succeeds" at EOF, so devices without polling support (virtio, most cloud disks) are wrongly
/// marked pollable and every later read fails with EOPNOTSUPP. We open a non-empty probe file
/// first so the probe sees real data and decides right.
///
/// Each shard probes its data directory at start, while there is room for the probe file, so
/// that a partition first written on a full disk does not need one.
pub async fn ensure_probed(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)
        .map_err(|e| StorageError::io("stat", dir, e))?
        .dev();
    if PROBED_DEVICES.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(format!(
        ".iopoll-probe-{:?}.tmp",
        std::thread::current().id()
    ));
    // On a full disk, any non-empty file already there does as well (a segment).
    let existing = match std::fs::write(&probe, vec![0xA5u8; 8192]) {
        Ok(()) => None,
        Err(e) => {
            let _ = std::fs::remove_file(&probe);
            Some(existing_probe(dir, dev).ok_or_else(|| StorageError::io("write", &probe, e))?)
        }
    };
    let probe = existing.as_ref().unwrap_or(&probe);
    let opened = DmaFile::open(probe).await;
    if existing.is_none() {
        let _ = std::fs::remove_file(probe);
    }
    let file = opened.map_err(|e| io_err("open probe", probe, e))?;
    let _ = file.close().await;
    PROBED_DEVICES.with(|p| p.borrow_mut().insert(dev));
    Ok(())
}

/// A non-empty file on device `dev`, for the probe when none can be written (a full disk):
/// one in `dir`, in a directory inside it, or in a directory beside it (another partition's
/// segment). Its first block holds data, so the probe read is real I/O, as the probe needs.
fn existing_probe(dir: &Path, dev: u64) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let on_dev = |m: &std::fs::Metadata| m.dev() == dev;
    let non_empty = |d: &Path| {
        std::fs::read_dir(d)
            .ok()?
            .flatten()
            .find(|e| {
                e.metadata()
                    .is_ok_and(|m| m.is_file() && m.len() > 0 && on_dev(&m))
            })
            .map(|e| e.path())
    };
    let in_subdirs = |d: &Path| {
        std::fs::read_dir(d)
            .ok()?
            .flatten()
            .filter(|e| e.metadata().is_ok_and(|m| m.is_dir() && on_dev(&m)))
            .find_map(|e| non_empty(&e.path()))
    };
    non_empty(dir)
        .or_else(|| in_subdirs(dir))
        .or_else(|| in_subdirs(dir.parent()?))
}

impl SegmentFile {
    /// Opens (creating if asked) a segment file for direct I/O.
    pub async fn open(path: &Path, create: bool) -> Result<Rc<SegmentFile>> {
        ensure_probed(path.parent().unwrap_or(Path::new("."))).await?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(|e| io_err("open segment", path, e))?;
        Ok(Rc::new(SegmentFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    /// The file's path, for errors and logs.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device's direct-I/O block size: every write starts and ends on a multiple.
    pub fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    /// Writes `parts` (concatenated, then zero-padded to the alignment) at aligned `pos`, with
    /// one copy into a DMA buffer. Asserts alignment before and the full length after.
    pub async fn write_aligned(&self, pos: u64, parts: &[&[u8]]) -> Result<()> {
        let align = self.alignment();
        assert_eq!(pos % align, 0, "write position must be aligned");
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let padded = align_up(len as u64, align) as usize;
        let mut buf = self.file.alloc_dma_buffer(padded);
        let dst = buf.as_bytes_mut();
        let mut at = 0;
        for p in parts {
            dst[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        dst[at..].fill(0);
        let started = std::time::Instant::now();
        let written = self
            .file
            .write_at(buf, pos)
            .await
            .map_err(|e| io_err("write segment", &self.path, e))?;
        super::stats::record_write(started.elapsed(), padded);
        if written != padded {
            return Err(StorageError::io(
                "write segment",
                &self.path,
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short direct write"),
            ));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `pos` (short at end of file). Zero-copy result.
    pub async fn read(&self, pos: u64, len: usize) -> Result<IoBuf> {
        let buf = self.file.read_at(pos, len).await;
        let buf = buf.map_err(|e| io_err("read segment", &self.path, e))?;
        super::stats::record_read(buf.len());
        Ok(IoBuf(buf))
    }

    /// fdatasync: makes what was written durable. A failure is never retried (see
    /// `StorageError::is_exhaustion`).
    pub async fn sync(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let synced = self.file.fdatasync().await;
        super::stats::record_sync(started.elapsed());
        synced.map_err(|e| io_err("fdatasync segment", &self.path, e))
    }

    /// Reserves blocks up to `size` so appends do not allocate (file size becomes `size`).
    pub async fn preallocate(&self, size: u64) -> Result<()> {
        self.file
            .pre_allocate(size, false)
            .await
            .map_err(|e| io_err("fallocate segment", &self.path, e))
    }

    /// Cuts (or extends) the file to `size` bytes.
    pub async fn truncate(&self, size: u64) -> Result<()> {
        self.file
            .truncate(size)
            .await
            .map_err(|e| io_err("truncate segment", &self.path, e))
    }

    /// The file's size in bytes, preallocated space included.
    pub async fn size(&self) -> Result<u64> {
        self.file
            .file_size()
            .await
            .map_err(|e| io_err("stat segment", &self.path, e))
    }
}

/// `v` rounded up to a multiple of `align` (which must not be 0).
pub fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align) * align
}

/// `v` rounded down to a multiple of `align` (which must not be 0).
pub fn align_down(v: u64, align: u64) -> u64 {
    v / align * align
}

/// Reads a whole small file (indexes, checkpoints); None when it does not exist.
pub async fn read_small(path: &Path, len_max: u64) -> Result<Option<Vec<u8>>> {
    let file = match BufferedFile::open(path).await {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(io_err("open", path, e)),
    };
    let size = file
        .file_size()
        .await
        .map_err(|e| io_err("stat", path, e))?;
    let size = size.min(len_max) as usize;
    let data = file
        .read_at(0, size)
        .await
        .map_err(|e| io_err("read", path, e))?;
    let _ = file.close().await;
    Ok(Some(data.to_vec()))
}

fn is_not_found(e: &glommio::GlommioError<()>) -> bool {
    use glommio::GlommioError::{EnhancedIoError, IoError};
    match e {
        IoError(io) | EnhancedIoError { source: io, .. } => {
            io.kind() == std::io::ErrorKind::NotFound
        }
        _ => false,
    }
}

/// Writes a small file durably and atomically: temp file, fdatasync, rename, directory sync.
/// A failed write removes its temp file, so a full disk keeps no half-written leftovers.
pub async fn write_small_atomic(dir: &Path, name: &str, bytes: Vec<u8>) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let written = write_synced(&tmp, bytes).await;
    if written.is_err() {
        let _ = remove(&tmp).await;
    }
    written?;
    glommio::io::rename(&tmp, &dst)
        .await
        .map_err(|e| io_err("rename", &dst, e))?;
    sync_dir(dir).await
}

async fn write_synced(path: &Path, bytes: Vec<u8>) -> Result<()> {
    let file = BufferedFile::create(path)
        .await
        .map_err(|e| io_err("create", path, e))?;
    let len = bytes.len();
    let n = file.write_at(bytes, 0).await;
    let synced = match n {
        Ok(n) => {
            assert_eq!(n, len, "small file written whole");
            file.fdatasync()
                .await
                .map_err(|e| io_err("fdatasync", path, e))
        }
        Err(e) => Err(io_err("write", path, e)),
    };
    let _ = file.close().await;
    synced
}

/// fsyncs a directory, so that files created, renamed or removed in it stay so after a crash.
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| io_err("open dir", dir, e))?;
    d.sync().await.map_err(|e| io_err("fsync dir", dir, e))?;
    let _ = d.close().await;
    Ok(())
}

/// Removes a file; one that does not exist counts as removed.
pub async fn remove(path: &Path) -> Result<()> {
    match glommio::io::remove(path).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(io_err("remove", path, e)),
    }
}

/// A spawned task (see [`spawn`]); awaiting it gives its output.
pub type Task<T> = glommio::Task<T>;

/// Spawns a task on the current shard's executor; it is cancelled when the handle drops
/// unless detached.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(fut)
}

/// Waits `d` on the executor's timer without blocking the thread.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await
}

/// Runs `fut` to completion on a fresh single-threaded executor (tests, benches, tools).
pub fn block_on<T>(fut: impl Future<Output = T>) -> T {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(1 << 20)
        .make()
        .expect("executor")
        .run(fut)
}
