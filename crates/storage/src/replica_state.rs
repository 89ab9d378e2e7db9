//! A replicated partition's Raft state (docs/architecture.md, "Raft log = partition log"):
//! `raft_state` in the partition's directory, two 4 KiB slots written alternately, so a write
//! torn by a crash leaves the other slot, one write older, intact.
//!
//! ```text
//! slot (4096 bytes, at 0 or 4096):
//!   magic "galgoRST" | format u16 | voters u16 | sequence u64 | term u64 | vote u64
//!   | commit u64 | applied u64 | start index u64 | start term u64 | start offset u64
//!   | voters × u64 | xxh3 u64 (of everything before it) | zeros
//! ```
//!
//! Every save is fdatasynced, whatever the partition's `fsync` mode: Raft's term and vote must
//! survive a crash (a vote forgotten allows two leaders in one term). The state is small and
//! changes on elections and commits, not per message.

use std::path::Path;

use compio::fs::File;
use xxhash_rust::xxh3::xxh3_64;

use crate::{StorageError, disk};

/// The file's name in the partition's directory.
pub const REPLICA_STATE_FILE: &str = "raft_state";
/// The snapshot install intent's name in the partition's directory.
pub const SNAPSHOT_INTENT_FILE: &str = "raft_snapshot";
const INTENT_MAGIC: &[u8; 8] = b"galgoRSI";
const INTENT_BYTES: usize = 8 + 3 * 8 + 8;
const SLOT_BYTES: usize = 4096;
const MAGIC: &[u8; 8] = b"galgoRST";
const FORMAT: u16 = 1;
const FIXED_BYTES: usize = 8 + 2 + 2 + 8 * 9;
/// Most voters a state holds (a slot's room).
pub const REPLICA_VOTERS_MAX: usize = (SLOT_BYTES - FIXED_BYTES - 8) / 8;

/// Where a replica's log starts: the entry before its first (`index`, its `term`) and the
/// partition offset its first entry's messages start at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStart {
    /// Index of the last entry no longer held (0 for a log that never lost one).
    pub index: u64,
    /// That entry's term.
    pub term: u64,
    /// The partition's first offset.
    pub offset: u64,
}

/// What `raft_state` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaState {
    /// Raft's current term.
    pub term: u64,
    /// Who this replica voted for in `term` (0: nobody).
    pub vote: u64,
    /// Highest index known committed (never past the durable entries).
    pub commit: u64,
    /// Highest index applied.
    pub applied: u64,
    /// Where the log starts.
    pub log_start: LogStart,
    /// The group's voters.
    pub voters: Vec<u64>,
}

/// The open `raft_state` file.
pub struct ReplicaStateFile {
    file: File,
    /// Sequence number of the newest slot written.
    sequence: u64,
}

impl ReplicaStateFile {
    /// Opens (creating) `dir/raft_state` and returns the newest intact state in it, if any.
    /// A file whose slots are both damaged is refused: the state cannot be guessed.
    pub async fn open(dir: &Path) -> Result<(Self, Option<ReplicaState>), StorageError> {
        disk::create_dir_all(dir).await?;
        let file = disk::open_read_write(&dir.join(REPLICA_STATE_FILE), true).await?;
        let len = disk::file_len(&file).await?;
        let mut newest: Option<(u64, ReplicaState)> = None;
        let mut damaged = 0;
        for slot in 0..2u64 {
            let at = slot * SLOT_BYTES as u64;
            if len < at + SLOT_BYTES as u64 {
                continue;
            }
            let bytes = disk::read_exact_at(&file, SLOT_BYTES, at).await?;
            match decode_slot(&bytes) {
                Some((sequence, state)) => {
                    if newest.as_ref().is_none_or(|(best, _)| sequence > *best) {
                        newest = Some((sequence, state));
                    }
                }
                None => damaged += 1,
            }
        }
        if newest.is_none() && damaged > 0 {
            return Err(StorageError::Corrupt(format!(
                "{} in {} has no intact slot",
                REPLICA_STATE_FILE,
                dir.display()
            )));
        }
        let sequence = newest.as_ref().map_or(0, |(sequence, _)| *sequence);
        Ok((Self { file, sequence }, newest.map(|(_, state)| state)))
    }

    /// Saves `state` into the slot not holding the newest one, and fdatasyncs it.
    pub async fn save(&mut self, state: &ReplicaState) -> Result<(), StorageError> {
        if state.voters.len() > REPLICA_VOTERS_MAX {
            return Err(StorageError::InvalidConfig(format!(
                "{} voters; a replica state holds at most {REPLICA_VOTERS_MAX}",
                state.voters.len()
            )));
        }
        let sequence = self.sequence + 1;
        let slot = encode_slot(sequence, state);
        disk::write_all_at(&self.file, slot, (sequence % 2) * SLOT_BYTES as u64).await?;
        self.file.sync_data().await?;
        self.sequence = sequence;
        Ok(())
    }
}

/// A snapshot install in progress: written and fdatasynced before a replica changes anything
/// for a snapshot, removed once its log restarts at the snapshot's offset and its records are
/// gone. A replica that finds one at open finishes the install: without it, a crash between
/// the steps would leave a log whose messages below the new start no Raft record vouches for.
///
/// ```text
/// magic "galgoRSI" | start index u64 | start term u64 | start offset u64 | xxh3 u64
/// ```
pub struct SnapshotIntent;

impl SnapshotIntent {
    /// Records that the replica in `dir` is moving its log start to `start`.
    pub async fn write(dir: &Path, start: LogStart) -> Result<(), StorageError> {
        let mut bytes = Vec::with_capacity(INTENT_BYTES);
        bytes.extend_from_slice(INTENT_MAGIC);
        for value in [start.index, start.term, start.offset] {
            bytes.extend_from_slice(&value.to_le_bytes());
        }
        let checksum = xxh3_64(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        let file = disk::open_read_write(&dir.join(SNAPSHOT_INTENT_FILE), true).await?;
        file.set_len(0).await?;
        disk::write_all_at(&file, bytes, 0).await?;
        file.sync_data().await?;
        disk::sync_dir(dir).await?;
        Ok(())
    }

    /// The install the replica in `dir` had started, if any. A torn intent was never acted
    /// on (it is fdatasynced before anything else changes) and reads as none.
    pub async fn read(dir: &Path) -> Result<Option<LogStart>, StorageError> {
        let file = match disk::open_read_write(&dir.join(SNAPSHOT_INTENT_FILE), false).await {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let len = disk::file_len(&file).await?;
        if len != INTENT_BYTES as u64 {
            return Ok(None);
        }
        let bytes = disk::read_exact_at(&file, INTENT_BYTES, 0).await?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if &bytes[..8] != INTENT_MAGIC || xxh3_64(&bytes[..32]) != u64_at(32) {
            return Ok(None);
        }
        Ok(Some(LogStart {
            index: u64_at(8),
            term: u64_at(16),
            offset: u64_at(24),
        }))
    }

    /// The install is complete (or the intent was torn): forget it.
    pub async fn clear(dir: &Path) -> Result<(), StorageError> {
        if disk::remove_file_if_exists(&dir.join(SNAPSHOT_INTENT_FILE)).await? {
            disk::sync_dir(dir).await?;
        }
        Ok(())
    }
}

fn encode_slot(sequence: u64, state: &ReplicaState) -> Vec<u8> {
    let mut out = Vec::with_capacity(SLOT_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&(state.voters.len() as u16).to_le_bytes());
    for value in [
        sequence,
        state.term,
        state.vote,
        state.commit,
        state.applied,
        state.log_start.index,
        state.log_start.term,
        state.log_start.offset,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    for voter in &state.voters {
        out.extend_from_slice(&voter.to_le_bytes());
    }
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out.resize(SLOT_BYTES, 0);
    out
}

fn decode_slot(bytes: &[u8]) -> Option<(u64, ReplicaState)> {
    if &bytes[..8] != MAGIC || u16::from_le_bytes([bytes[8], bytes[9]]) != FORMAT {
        return None;
    }
    let voters = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
    if voters > REPLICA_VOTERS_MAX {
        return None;
    }
    let end = 12 + 8 * (8 + voters);
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if xxh3_64(&bytes[..end]) != u64_at(end) {
        return None;
    }
    let field = |k: usize| u64_at(12 + 8 * k);
    let state = ReplicaState {
        term: field(1),
        vote: field(2),
        commit: field(3),
        applied: field(4),
        log_start: LogStart {
            index: field(5),
            term: field(6),
            offset: field(7),
        },
        voters: (0..voters).map(|k| field(8 + k)).collect(),
    };
    Some((field(0), state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(term: u64) -> ReplicaState {
        ReplicaState {
            term,
            vote: 2,
            commit: 10 * term,
            applied: 10 * term - 1,
            log_start: LogStart {
                index: 3,
                term: 1,
                offset: 40,
            },
            voters: vec![1, 2, 3],
        }
    }

    #[compio::test]
    async fn the_newest_intact_slot_wins() {
        let temp = tempfile::tempdir().unwrap();
        let (mut file, found) = ReplicaStateFile::open(temp.path()).await.unwrap();
        assert_eq!(found, None, "a new file holds no state");
        for term in 1..=3 {
            file.save(&state(term)).await.unwrap();
            drop(file);
            let (reopened, found) = ReplicaStateFile::open(temp.path()).await.unwrap();
            assert_eq!(found, Some(state(term)));
            file = reopened;
        }
        drop(file);
        // A torn write of the newest slot (term 3, sequence 3: slot 1) leaves term 2.
        let path = temp.path().join(REPLICA_STATE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT_BYTES + 40] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (mut file, found) = ReplicaStateFile::open(temp.path()).await.unwrap();
        assert_eq!(found, Some(state(2)));
        // The next save goes to the damaged slot, not over the intact one.
        file.save(&state(4)).await.unwrap();
        let (_, found) = ReplicaStateFile::open(temp.path()).await.unwrap();
        assert_eq!(found, Some(state(4)));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode_slot(&bytes[..SLOT_BYTES]).unwrap().1, state(2));
    }

    #[compio::test]
    async fn a_file_with_no_intact_slot_is_refused() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::write(
            temp.path().join(REPLICA_STATE_FILE),
            vec![7u8; 2 * SLOT_BYTES],
        )
        .unwrap();
        assert!(matches!(
            ReplicaStateFile::open(temp.path()).await,
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn every_voter_count_round_trips() {
        for voters in [0, 1, REPLICA_VOTERS_MAX] {
            let mut value = state(5);
            value.voters = (1..=voters as u64).collect();
            let slot = encode_slot(9, &value);
            assert_eq!(slot.len(), SLOT_BYTES);
            assert_eq!(decode_slot(&slot), Some((9, value)));
        }
    }

    #[compio::test]
    async fn a_snapshot_intent_is_read_back_whole_or_not_at_all() {
        let temp = tempfile::tempdir().unwrap();
        assert_eq!(SnapshotIntent::read(temp.path()).await.unwrap(), None);
        let start = LogStart {
            index: 40,
            term: 3,
            offset: 1_234,
        };
        SnapshotIntent::write(temp.path(), start).await.unwrap();
        assert_eq!(
            SnapshotIntent::read(temp.path()).await.unwrap(),
            Some(start)
        );
        let path = temp.path().join(SNAPSHOT_INTENT_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            SnapshotIntent::read(temp.path()).await.unwrap(),
            None,
            "damaged"
        );
        std::fs::write(&path, &bytes[..10]).unwrap();
        assert_eq!(
            SnapshotIntent::read(temp.path()).await.unwrap(),
            None,
            "torn"
        );
        SnapshotIntent::clear(temp.path()).await.unwrap();
        assert!(!path.exists());
        SnapshotIntent::clear(temp.path()).await.unwrap();
    }
}
