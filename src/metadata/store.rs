//! The registry's durable form: `<data_dir>/__cluster/topics.json`, written by the controller
//! shard with write-temp, fsync, rename, fsync-dir so a crash leaves the old or the new file.
//! These writes are rare (topic admin) and small, so they use std::fs on the controller shard.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::TopicMeta;

#[derive(serde::Serialize, serde::Deserialize, Default)]
pub struct StoredRegistry {
    pub version: u64,
    pub cluster_id: String,
    pub topics: Vec<TopicMeta>,
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("__cluster")
}

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

pub fn save(data_dir: &Path, reg: &StoredRegistry) -> std::io::Result<()> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d)?;
    let tmp = d.join("topics.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(reg).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, d.join("topics.json"))?;
    std::fs::File::open(&d)?.sync_all()
}

/// Removes partition directories (`<topic>-<n>`) that the registry does not know: left by a
/// crash between persisting a topic deletion and deleting its files. Without this, re-creating
/// a topic of the same name would open the old records.
pub fn remove_orphans(data_dir: &Path, reg: &StoredRegistry) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
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
        let known = reg
            .topics
            .iter()
            .any(|t| t.name == topic && index < t.partitions);
        if !known && super::valid_topic_name(topic) {
            std::fs::remove_dir_all(entry.path())?;
            removed.push(entry.path());
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
