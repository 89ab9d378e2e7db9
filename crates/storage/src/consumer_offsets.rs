//! Stored consumer and consumer-group offsets of one partition (PROTOCOL.md §8.5, §9.1):
//! `offsets/consumers/{id}` and `offsets/groups/{id}`, 8 bytes, u64 LE.
//!
//! The in-memory map is the truth; files follow it. Writes are serialised per partition and
//! write whatever the map holds when their turn comes, so racing stores of one owner always
//! leave the newest value on disk. A file is replaced atomically: write `{id}.tmp`, rename.

use std::{
    cell::RefCell,
    collections::HashMap,
    path::{Path, PathBuf},
};

use async_lock::Mutex;

use crate::{FsyncMode, StorageError, disk};

/// Directory of the offset files, inside a partition's directory.
pub(crate) const OFFSETS_DIR: &str = "offsets";
const CONSUMERS_DIR: &str = "consumers";
const GROUPS_DIR: &str = "groups";
/// Size of a stored offset file.
const OFFSET_FILE_BYTES: usize = 8;

/// Who an offset is stored for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OffsetOwner {
    /// A single consumer, by its consumer id.
    Consumer(u32),
    /// A consumer group, by its group id.
    Group(u32),
}

impl OffsetOwner {
    fn subdir(self) -> &'static str {
        match self {
            Self::Consumer(_) => CONSUMERS_DIR,
            Self::Group(_) => GROUPS_DIR,
        }
    }

    fn id(self) -> u32 {
        match self {
            Self::Consumer(id) | Self::Group(id) => id,
        }
    }
}

/// A stored offset that recovery changed because it pointed past the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClampedOffset {
    /// Whose offset.
    pub owner: OffsetOwner,
    /// What was stored.
    pub stored: u64,
    /// What it is now; `None` when the partition is empty and the offset was removed.
    pub clamped_to: Option<u64>,
}

/// The stored offsets of one partition. Lives on the partition's shard.
pub(crate) struct ConsumerOffsets {
    dir: PathBuf,
    fsync: bool,
    stored: RefCell<HashMap<OffsetOwner, u64>>,
    write_lock: Mutex<()>,
}

impl ConsumerOffsets {
    /// Loads `{partition}/offsets/`, creating it when absent. Leftover temporary files are
    /// removed; files of the wrong size are logged and removed (they were never acknowledged).
    pub async fn open(partition_dir: &Path, fsync: FsyncMode) -> Result<Self, StorageError> {
        let dir = partition_dir.join(OFFSETS_DIR);
        let mut stored = HashMap::new();
        for (subdir, owner_of) in [
            (
                CONSUMERS_DIR,
                OffsetOwner::Consumer as fn(u32) -> OffsetOwner,
            ),
            (GROUPS_DIR, OffsetOwner::Group as fn(u32) -> OffsetOwner),
        ] {
            let subdir = dir.join(subdir);
            disk::create_dir_all(&subdir).await?;
            for name in disk::list_dir(&subdir).await? {
                let path = subdir.join(&name);
                let Some(id) = name.parse::<u32>().ok() else {
                    if name.ends_with(disk::TMP_SUFFIX) {
                        disk::remove_file_if_exists(&path).await?;
                    }
                    continue;
                };
                let bytes = compio::fs::read(&path).await?;
                match <[u8; OFFSET_FILE_BYTES]>::try_from(bytes.as_slice()) {
                    Ok(value) => {
                        stored.insert(owner_of(id), u64::from_le_bytes(value));
                    }
                    Err(_) => {
                        tracing::warn!(path = %path.display(), size = bytes.len(),
                            "stored offset file is not 8 bytes; removing it");
                        disk::remove_file_if_exists(&path).await?;
                    }
                }
            }
        }
        Ok(Self {
            dir,
            fsync: fsync == FsyncMode::Always,
            stored: RefCell::new(stored),
            write_lock: Mutex::new(()),
        })
    }

    /// The stored offset of `owner`.
    pub fn get(&self, owner: OffsetOwner) -> Option<u64> {
        self.stored.borrow().get(&owner).copied()
    }

    /// Every stored offset, by owner.
    pub fn all(&self) -> Vec<(OffsetOwner, u64)> {
        self.stored
            .borrow()
            .iter()
            .map(|(owner, offset)| (*owner, *offset))
            .collect()
    }

    /// The lowest offset stored for anyone, if any is.
    pub fn min(&self) -> Option<u64> {
        self.stored.borrow().values().copied().min()
    }

    /// Stores and persists `offset` for `owner`.
    pub async fn store(&self, owner: OffsetOwner, offset: u64) -> Result<(), StorageError> {
        self.stored.borrow_mut().insert(owner, offset);
        self.persist(owner).await
    }

    /// Removes the stored offset of `owner`; false when there was none.
    pub async fn delete(&self, owner: OffsetOwner) -> Result<bool, StorageError> {
        let existed = self.stored.borrow_mut().remove(&owner).is_some();
        if existed {
            self.persist(owner).await?;
        }
        Ok(existed)
    }

    /// Clamps every offset past `last_offset` (all of them when the partition is empty).
    pub async fn clamp(
        &self,
        last_offset: Option<u64>,
    ) -> Result<Vec<ClampedOffset>, StorageError> {
        let mut clamped: Vec<ClampedOffset> = self
            .stored
            .borrow()
            .iter()
            .filter(|&(_, &stored)| last_offset.is_none_or(|last| stored > last))
            .map(|(&owner, &stored)| ClampedOffset {
                owner,
                stored,
                clamped_to: last_offset,
            })
            .collect();
        clamped.sort_by_key(|entry| entry.owner);
        for entry in &clamped {
            tracing::warn!(owner = ?entry.owner, stored = entry.stored, clamped_to = ?entry.clamped_to,
                "stored offset points past the last message; clamping it");
            match entry.clamped_to {
                Some(last) => self.store(entry.owner, last).await?,
                None => {
                    self.delete(entry.owner).await?;
                }
            }
        }
        Ok(clamped)
    }

    /// Forgets every stored offset and removes their files.
    pub async fn purge(&self) -> Result<(), StorageError> {
        self.stored.borrow_mut().clear();
        let _turn = self.write_lock.lock().await;
        for subdir in [CONSUMERS_DIR, GROUPS_DIR] {
            let subdir = self.dir.join(subdir);
            disk::remove_dir_all(&subdir).await?;
            disk::create_dir_all(&subdir).await?;
        }
        Ok(())
    }

    /// Makes the file of `owner` match the map (written, or removed when absent from it).
    async fn persist(&self, owner: OffsetOwner) -> Result<(), StorageError> {
        let _turn = self.write_lock.lock().await;
        let subdir = self.dir.join(owner.subdir());
        let path = subdir.join(owner.id().to_string());
        let Some(value) = self.get(owner) else {
            disk::remove_file_if_exists(&path).await?;
            return Ok(());
        };
        disk::replace_file(&path, value.to_le_bytes().to_vec(), self.fsync).await?;
        Ok(())
    }
}
