//! A replicated partition's Raft log records (docs/architecture.md, "Raft log = partition
//! log"): `raft.records` in the partition's directory, one 48-byte record per Raft entry in
//! index order. A batch's payload is not here: it is the partition log's, once. A record says
//! which messages an entry holds; an entry that is not a batch lives wholly in its record.
//!
//! ```text
//! index u64 | term u64 | kind u8 | aux [u8; 3] | count u32 | first_offset u64 | bytes u64
//!   | xxh3 u64 (of the 40 bytes before it)
//! ```
//!
//! At open the records are read back and cut at the first one that is torn, fails its
//! checksum or does not follow the one before it (index + 1): a crash mid-write loses only
//! what was never reported durable. A write never overwrites a record in place except after
//! [`RaftRecords::truncate_from`], which Raft asks for only above its commit.

use std::path::{Path, PathBuf};

use compio::fs::File;
use xxhash_rust::xxh3::xxh3_64;

use crate::{StorageError, disk};

/// The file's name in the partition's directory.
pub const RAFT_RECORDS_FILE: &str = "raft.records";
/// Bytes of one record.
pub const RAFT_RECORD_BYTES: usize = 48;
/// Records read at once at open (1.5 MiB).
const READ_RECORDS: usize = 32_768;

/// What a Raft entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// `count` messages from `first_offset`, `bytes` long, in the partition log.
    Batch = 1,
    /// No data: the entry a new leader appends.
    Empty = 2,
    /// A stored consumer offset: the consumer's kind in `aux[0]`, its id in `count`, the
    /// offset in `first_offset`.
    StoreOffset = 3,
    /// A deleted consumer offset: kind and id as for `StoreOffset`.
    DeleteOffset = 4,
}

impl RecordKind {
    fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Batch,
            2 => Self::Empty,
            3 => Self::StoreOffset,
            4 => Self::DeleteOffset,
            _ => return None,
        })
    }
}

/// One entry's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftRecord {
    /// The entry's Raft index.
    pub index: u64,
    /// The entry's Raft term.
    pub term: u64,
    /// What it holds.
    pub kind: RecordKind,
    /// Kind-specific (see [`RecordKind`]).
    pub aux: [u8; 3],
    /// Messages of a batch, or a consumer id.
    pub count: u32,
    /// A batch's first offset, or a stored offset.
    pub first_offset: u64,
    /// A batch's size in bytes.
    pub bytes: u64,
}

impl RaftRecord {
    /// The record, encoded.
    pub fn encode(&self) -> [u8; RAFT_RECORD_BYTES] {
        let mut out = [0u8; RAFT_RECORD_BYTES];
        out[0..8].copy_from_slice(&self.index.to_le_bytes());
        out[8..16].copy_from_slice(&self.term.to_le_bytes());
        out[16] = self.kind as u8;
        out[17..20].copy_from_slice(&self.aux);
        out[20..24].copy_from_slice(&self.count.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_offset.to_le_bytes());
        out[32..40].copy_from_slice(&self.bytes.to_le_bytes());
        let checksum = xxh3_64(&out[..40]);
        out[40..48].copy_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Decodes a record; `None` when torn, damaged or of an unknown kind.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.get(..RAFT_RECORD_BYTES)?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if xxh3_64(&bytes[..40]) != u64_at(40) {
            return None;
        }
        Some(Self {
            index: u64_at(0),
            term: u64_at(8),
            kind: RecordKind::from_u8(bytes[16])?,
            aux: [bytes[17], bytes[18], bytes[19]],
            count: u32::from_le_bytes(bytes[20..24].try_into().expect("4")),
            first_offset: u64_at(24),
            bytes: u64_at(32),
        })
    }
}

/// The open `raft.records` file. Lives on the partition's shard.
pub struct RaftRecords {
    path: PathBuf,
    file: File,
    /// Index of the first record in the file (meaningless while empty).
    first_index: u64,
    /// Records in the file.
    len: u64,
}

impl RaftRecords {
    /// Opens (creating) `dir/raft.records` and returns its records, cut as the module page
    /// says (the file is cut to match).
    pub async fn open(dir: &Path) -> Result<(Self, Vec<RaftRecord>), StorageError> {
        disk::create_dir_all(dir).await?;
        let path = dir.join(RAFT_RECORDS_FILE);
        let file = disk::open_read_write(&path, true).await?;
        let file_len = disk::file_len(&file).await?;
        let whole = file_len / RAFT_RECORD_BYTES as u64;
        let mut records: Vec<RaftRecord> = Vec::new();
        let mut at = 0u64;
        'read: while at < whole {
            let batch = (whole - at).min(READ_RECORDS as u64) as usize;
            let bytes = disk::read_exact_at(
                &file,
                batch * RAFT_RECORD_BYTES,
                at * RAFT_RECORD_BYTES as u64,
            )
            .await?;
            for chunk in bytes.chunks_exact(RAFT_RECORD_BYTES) {
                let follows = |record: &RaftRecord| {
                    records
                        .last()
                        .is_none_or(|last| record.index == last.index + 1)
                };
                match RaftRecord::decode(chunk).filter(follows) {
                    Some(record) => records.push(record),
                    None => break 'read,
                }
            }
            at += batch as u64;
        }
        let kept = records.len() as u64 * RAFT_RECORD_BYTES as u64;
        if kept != file_len {
            tracing::warn!(path = %path.display(), records = records.len(),
                cut_bytes = file_len - kept, "raft records cut at the first damaged one");
            file.set_len(kept).await?;
            file.sync_data().await?;
        }
        let first_index = records.first().map_or(0, |record| record.index);
        let len = records.len() as u64;
        Ok((
            Self {
                path,
                file,
                first_index,
                len,
            },
            records,
        ))
    }

    /// Index of the last record; `None` when there is none.
    pub fn last_index(&self) -> Option<u64> {
        (self.len > 0).then(|| self.first_index + self.len - 1)
    }

    /// Index of the first record; `None` when there is none.
    pub fn first_index(&self) -> Option<u64> {
        (self.len > 0).then_some(self.first_index)
    }

    /// Writes `records` (consecutive indexes) after the last one, or in place of the records
    /// from the first one's index on (a new leader's entries replacing an uncommitted tail).
    /// Not synced: [`RaftRecords::sync`] makes them durable.
    pub async fn append(&mut self, records: &[RaftRecord]) -> Result<(), StorageError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        if !records
            .windows(2)
            .all(|pair| pair[1].index == pair[0].index + 1)
        {
            return Err(StorageError::InvalidBatch(
                "raft records with non-consecutive indexes",
            ));
        }
        match self.last_index() {
            None => self.first_index = first.index,
            Some(last) if first.index == last + 1 => {}
            Some(last) if (self.first_index..=last).contains(&first.index) => {
                self.truncate_from(first.index).await?;
            }
            Some(_) => {
                return Err(StorageError::InvalidBatch(
                    "raft records that do not follow the file's",
                ));
            }
        }
        let mut bytes = Vec::with_capacity(records.len() * RAFT_RECORD_BYTES);
        for record in records {
            bytes.extend_from_slice(&record.encode());
        }
        disk::write_all_at(&self.file, bytes, self.len * RAFT_RECORD_BYTES as u64).await?;
        self.len += records.len() as u64;
        Ok(())
    }

    /// fdatasyncs what was written.
    pub async fn sync(&self) -> Result<(), StorageError> {
        self.file.sync_data().await?;
        Ok(())
    }

    /// Drops the records from `index` on.
    pub async fn truncate_from(&mut self, index: u64) -> Result<(), StorageError> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if index > last {
            return Ok(());
        }
        let keep = index.saturating_sub(self.first_index);
        self.file.set_len(keep * RAFT_RECORD_BYTES as u64).await?;
        self.len = keep;
        Ok(())
    }

    /// Drops the records below `index` (retention removed their messages, or a snapshot
    /// replaced them), by writing the rest to a new file that replaces this one: a crash
    /// leaves either file whole. Only worth it once the dropped prefix is large; the caller
    /// decides when.
    pub async fn compact_below(&mut self, index: u64) -> Result<(), StorageError> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if index <= self.first_index {
            return Ok(());
        }
        let keep_from = index.min(last + 1);
        let skip = keep_from - self.first_index;
        let kept = self.len - skip;
        let bytes = disk::read_exact_at(
            &self.file,
            (kept as usize) * RAFT_RECORD_BYTES,
            skip * RAFT_RECORD_BYTES as u64,
        )
        .await?;
        let fresh_path = self.path.with_extension("records.new");
        let fresh = disk::open_read_write(&fresh_path, true).await?;
        fresh.set_len(0).await?;
        disk::write_all_at(&fresh, bytes, 0).await?;
        fresh.sync_data().await?;
        compio::fs::rename(&fresh_path, &self.path).await?;
        if let Some(dir) = self.path.parent() {
            disk::sync_dir(dir).await?;
        }
        self.file = fresh;
        self.first_index = keep_from;
        self.len = kept;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(index: u64, term: u64) -> RaftRecord {
        RaftRecord {
            index,
            term,
            kind: RecordKind::Batch,
            aux: [0; 3],
            count: 3,
            first_offset: index.wrapping_mul(3),
            bytes: 300,
        }
    }

    fn records(from: u64, to: u64, term: u64) -> Vec<RaftRecord> {
        (from..=to).map(|index| record(index, term)).collect()
    }

    async fn reopen(dir: &Path) -> (RaftRecords, Vec<RaftRecord>) {
        RaftRecords::open(dir).await.unwrap()
    }

    #[compio::test]
    async fn records_survive_reopens_and_replace_a_tail() {
        let temp = tempfile::tempdir().unwrap();
        let (mut file, found) = reopen(temp.path()).await;
        assert!(found.is_empty());
        assert_eq!(file.last_index(), None);
        file.append(&records(5, 9, 1)).await.unwrap();
        file.sync().await.unwrap();
        drop(file);
        let (mut file, found) = reopen(temp.path()).await;
        assert_eq!(found, records(5, 9, 1));
        assert_eq!((file.first_index(), file.last_index()), (Some(5), Some(9)));
        // A new leader's entries from 8 on replace 8 and 9.
        file.append(&records(8, 11, 2)).await.unwrap();
        let (_, found) = reopen(temp.path()).await;
        let mut expected = records(5, 7, 1);
        expected.extend(records(8, 11, 2));
        assert_eq!(found, expected);
        assert!(
            file.append(&records(3, 4, 2)).await.is_err(),
            "below the file"
        );
        assert!(file.append(&records(13, 14, 2)).await.is_err(), "a gap");
        let mut holes = records(12, 13, 2);
        holes[1].index = 20;
        assert!(file.append(&holes).await.is_err(), "not consecutive");
        file.truncate_from(10).await.unwrap();
        assert_eq!(file.last_index(), Some(9));
        file.compact_below(7).await.unwrap();
        assert_eq!(file.first_index(), Some(7));
        file.append(&records(10, 10, 3)).await.unwrap();
        let (file, found) = reopen(temp.path()).await;
        let mut expected = records(7, 7, 1);
        expected.extend(records(8, 9, 2));
        expected.extend(records(10, 10, 3));
        assert_eq!(found, expected);
        assert_eq!(file.first_index(), Some(7));
    }

    #[compio::test]
    async fn a_damaged_or_torn_tail_is_cut() {
        let temp = tempfile::tempdir().unwrap();
        let (mut file, _) = reopen(temp.path()).await;
        file.append(&records(1, 6, 1)).await.unwrap();
        drop(file);
        let path = temp.path().join(RAFT_RECORDS_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[4 * RAFT_RECORD_BYTES + 20] ^= 1;
        bytes.extend_from_slice(&[9; 17]);
        std::fs::write(&path, &bytes).unwrap();
        let (mut file, found) = reopen(temp.path()).await;
        assert_eq!(found, records(1, 4, 1), "cut at the damaged fifth record");
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            4 * RAFT_RECORD_BYTES as u64
        );
        file.append(&records(5, 5, 2)).await.unwrap();
        let (_, found) = reopen(temp.path()).await;
        assert_eq!(found.len(), 5);
    }

    #[test]
    fn every_kind_round_trips_and_unknown_kinds_are_refused() {
        for kind in [
            RecordKind::Batch,
            RecordKind::Empty,
            RecordKind::StoreOffset,
            RecordKind::DeleteOffset,
        ] {
            let value = RaftRecord {
                kind,
                aux: [1, 2, 3],
                ..record(u64::MAX, 7)
            };
            assert_eq!(RaftRecord::decode(&value.encode()), Some(value));
        }
        let mut bytes = record(1, 1).encode();
        bytes[16] = 9;
        let checksum = xxh3_64(&bytes[..40]);
        bytes[40..].copy_from_slice(&checksum.to_le_bytes());
        assert_eq!(RaftRecord::decode(&bytes), None);
        assert_eq!(RaftRecord::decode(&bytes[..47]), None);
    }
}
