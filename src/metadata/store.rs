//! The registry's durable form: `<data_dir>/__cluster/topics.json`, written by the controller
//! shard with write-temp, fsync, rename, fsync-dir so a crash leaves the old or the new file.
//! These writes are rare (topic admin) and small, so they use std::fs on the controller shard.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::TopicMeta;

/// The contents of `topics.json`: the registry as of one [`super::Snapshot`] version.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub struct StoredRegistry {
    /// The snapshot version this file holds.
    pub version: u64,
    /// The cluster id Metadata and DescribeCluster report, drawn once when the data directory
    /// is first used.
    pub cluster_id: String,
    /// Every topic.
    pub topics: Vec<TopicMeta>,
}

/// `<data_dir>/__cluster`: the registry file and the space reserve.
fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("__cluster")
}

/// Reads the registry; `Ok(None)` for a data directory that has none yet, an `InvalidData`
/// error when the file does not parse.
pub fn load(data_dir: &Path) -> std::io::Result<Option<StoredRegistry>> {
    let path = dir(data_dir).join("topics.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the registry file (write a temporary file, fsync, rename, fsync the directory): a
/// crash leaves the old registry or the new one, never a mix.
pub fn save(data_dir: &Path, reg: &StoredRegistry) -> std::io::Result<()> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d)?;
    let tmp = d.join("topics.json.tmp");
    let written = write_synced(&tmp, reg);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::rename(&tmp, d.join("topics.json"))?;
    std::fs::File::open(&d)?.sync_all()
}

fn write_synced(path: &Path, reg: &StoredRegistry) -> std::io::Result<()> {
    let mut f = std::fs::File::create(path)?;
    f.write_all(&serde_json::to_vec_pretty(reg).map_err(std::io::Error::other)?)?;
    f.sync_all()
}

/// Space held back in `__cluster/reserve` so that a topic deletion can still write the
/// registry on a full disk, and free the topic's space (architecture.md §12).
pub const RESERVE_BYTES: u64 = 8 << 20;
const RESERVE_FILE: &str = "reserve";

/// Like `save`, but on a full disk gives up the reserve and tries once more: for changes
/// that free space (a topic deletion).
pub fn save_using_reserve(data_dir: &Path, reg: &StoredRegistry) -> std::io::Result<()> {
    match save(data_dir, reg) {
        Err(e) if is_no_space(&e) && release_reserve(data_dir) => {
            tracing::warn!("disk full: gave up the space reserve to write the registry");
            save(data_dir, reg)
        }
        other => other,
    }
}

/// Whether `e` means the file system (or the user's quota) is full: ENOSPC or EDQUOT.
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// Makes sure the reserve exists, when at least twice its size is free (a disk that is
/// nearly full keeps its last bytes for data). Returns whether it exists now.
pub fn keep_reserve(data_dir: &Path) -> std::io::Result<bool> {
    let path = dir(data_dir).join(RESERVE_FILE);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == RESERVE_BYTES) {
        return Ok(true);
    }
    if free_bytes(data_dir)? < 2 * RESERVE_BYTES {
        return Ok(false);
    }
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..RESERVE_BYTES / zeros.len() as u64 {
            f.write_all(&zeros)?;
        }
        f.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    written.map(|()| true)
}

/// Deletes the reserve; true if there was one to give up.
pub fn release_reserve(data_dir: &Path) -> bool {
    std::fs::remove_file(dir(data_dir).join(RESERVE_FILE)).is_ok()
}

/// Bytes an unprivileged writer may still use on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    disk_space(path).map(|s| s.usable)
}

/// The size of a file system and what is left of it, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskSpace {
    /// The file system's size.
    pub total: u64,
    /// Bytes an unprivileged writer may still use.
    pub usable: u64,
}

/// The size and usable bytes of the file system holding `path` (statvfs).
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` is a valid out-pointer; statvfs fills it
    // whole when it returns 0, and only then is it read.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    Ok(DiskSpace {
        total: st.f_blocks.saturating_mul(st.f_frsize),
        usable: st.f_bavail.saturating_mul(st.f_frsize),
    })
}

/// The partition directories (`<topic>-<n>`, a valid topic name) in the data directory, with
/// their topic and index.
pub fn partition_dirs(data_dir: &Path) -> std::io::Result<Vec<(PathBuf, String, i32)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(index) = index.parse::<i32>() else {
            continue;
        };
        if super::valid_topic_name(topic) {
            out.push((entry.path(), topic.to_string(), index));
        }
    }
    Ok(out)
}

/// Removes partition directories (`<topic>-<n>`) that the registry does not know: left by a
/// crash between persisting a topic deletion and deleting its files. Without this, re-creating
/// a topic of the same name would open the old records.
pub fn remove_orphans(data_dir: &Path, reg: &StoredRegistry) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for (path, topic, index) in partition_dirs(data_dir)? {
        let known = reg
            .topics
            .iter()
            .any(|t| t.name == topic && index < t.partitions);
        if !known {
            std::fs::remove_dir_all(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicConfigs;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let reg = StoredRegistry {
            version: 3,
            cluster_id: "c".into(),
            topics: vec![TopicMeta {
                name: "t".into(),
                id: uuid::Uuid::from_u128(7),
                partitions: 2,
                configs: TopicConfigs::default(),
            }],
        };
        save(dir.path(), &reg).unwrap();
        let back = load(dir.path()).unwrap().unwrap();
        assert_eq!((back.version, back.topics.clone()), (3, reg.topics.clone()));
        for d in ["t-0", "t-1", "t-2", "gone-0", "my-topic-0", "notes"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        let removed = remove_orphans(dir.path(), &back).unwrap();
        assert_eq!(removed.len(), 3, "t-2, gone-0, my-topic-0: {removed:?}");
        assert!(dir.path().join("t-1").exists() && dir.path().join("notes").exists());
        assert!(dir.path().join("__cluster").exists());
    }
}
