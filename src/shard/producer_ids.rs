//! Producer ids for idempotent producers (InitProducerId), handed out by the controller shard.
//! Ids are never reused, also across restarts: the controller persists the end of the block of
//! ids it may hand out (`__cluster/producer-id-block`) before handing out any id of it, and a
//! restart starts at that end. A crash therefore skips at most one block of ids. In a
//! cluster the blocks come from the metadata log instead (`shard/cluster.rs`), one per
//! broker at a time, so no two brokers hand out the same id.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use crate::runtime::Semaphore;
use crate::storage::{io, recovery, StorageError};
use crate::types::Offset;

/// Ids reserved per persisted block.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
const BLOCK_FILE: &str = "producer-id-block";

/// The producer-id allocator on shard 0: ids are handed out in order from the current block;
/// the next block is persisted before its first id is used.
pub struct ProducerIds {
    dir: PathBuf,
    next: Cell<i64>,
    /// One past the last id the persisted block allows.
    until: Cell<i64>,
    lock: Semaphore,
}

impl ProducerIds {
    /// Reads the last persisted block end from `<data_dir>/__cluster` (0 when there is none).
    pub fn load(data_dir: &Path) -> std::io::Result<ProducerIds> {
        let dir = data_dir.join("__cluster");
        let start = match std::fs::read(dir.join(BLOCK_FILE)) {
            Ok(b) => recovery::decode_checkpoint(&b).map_or_else(
                || {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "corrupt producer-id-block file",
                    ))
                },
                |o| Ok(o.0),
            )?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIds {
            dir,
            next: Cell::new(start),
            until: Cell::new(start),
            lock: Semaphore::new(1),
        })
    }

    /// A fresh producer id, from the next block persisted here when this one is spent.
    pub async fn allocate(&self) -> Result<i64, StorageError> {
        self.allocate_with(|| self.persist_next_block()).await
    }

    /// A fresh producer id from the current block, or else from a new block that `block`
    /// gets: (first id, one past the last). One caller at a time gets a block; the others
    /// wait and take from it.
    pub async fn allocate_with<F, Fut, E>(&self, block: F) -> Result<i64, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(i64, i64), E>>,
        E: From<StorageError>,
    {
        if let Some(id) = self.take() {
            return Ok(id);
        }
        let _permit = self
            .lock
            .acquire_permit(1)
            .await
            .map_err(|_| StorageError::Closed)?;
        if let Some(id) = self.take() {
            return Ok(id); // another caller got a block meanwhile
        }
        let (from, until) = block().await?;
        assert!(from < until, "a block holds ids");
        self.next.set(from);
        self.until.set(until);
        Ok(self.take().expect("a fresh block has ids"))
    }

    /// Persists the end of the block after the current one, which it returns.
    async fn persist_next_block(&self) -> Result<(i64, i64), StorageError> {
        let from = self.until.get();
        let until = from + PRODUCER_ID_BLOCK;
        std::fs::create_dir_all(&self.dir).map_err(|e| StorageError::io("create", &self.dir, e))?;
        io::write_small_atomic(
            &self.dir,
            BLOCK_FILE,
            recovery::encode_checkpoint(Offset(until)),
        )
        .await?;
        Ok((from, until))
    }

    fn take(&self) -> Option<i64> {
        let id = self.next.get();
        (id < self.until.get()).then(|| {
            self.next.set(id + 1);
            id
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::io::block_on;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let ids = ProducerIds::load(dir.path()).unwrap();
            block_on(async {
                for _ in 0..1500 {
                    assert!(seen.insert(ids.allocate().await.unwrap()));
                }
            });
        }
        assert_eq!(seen.len(), 4500);
    }
}
