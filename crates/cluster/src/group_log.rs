//! The metadata group's Raft log on disk: `state/cluster/metadata.raft`, a record file (the
//! metadata log's framing: length, XXH3, payload; fdatasynced per append; a torn tail cut at
//! open). Replaying it rebuilds the group's `MemStorage` (entries and hard state): metadata is
//! small, so the whole log lives in memory as well.
//!
//! ```text
//! record 0: "galgo-raft-log" | format u16 | node id u64 | cluster id (rest)      identity
//! record 1: "galgo-raft-snap" | index u64 | term u64 | voters u32 | voter u64 …
//!           | metadata snapshot (rest)                                 only after a compaction
//! record n: term u64 | vote u64 | commit u64 | entries u32 | per entry:
//!           length u32 | raft-rs `eraftpb.Entry`, protobuf-encoded            one Ready
//! ```
//!
//! Each Ready's entries and hard state go in one record, so a restart never finds a commit
//! past the entries it covers. Entries that overwrite a tail (a new leader's log) are appended
//! like any others; replaying them in order truncates as raft-rs did. A compaction (or a
//! snapshot from the leader) rewrites the whole file as the identity, the snapshot and one
//! Ready with the hard state and the entries after the snapshot
//! ([`MetadataLog::rewrite`]: the old file or the new one, never a mix). A Ready record
//! never starts with the snapshot's 15-byte magic: that would be a term above 7·10¹⁸.

use std::{cell::RefCell, path::PathBuf, rc::Rc};

use galgo_storage::MetadataLog;
use protobuf::Message as _;
use raft::{
    GetEntriesContext, RaftState, Storage,
    eraftpb::{ConfState, Entry, HardState, Snapshot},
    storage::MemStorage,
};

const MAGIC: &[u8; 14] = b"galgo-raft-log";
const SNAPSHOT_MAGIC: &[u8; 15] = b"galgo-raft-snap";
/// 2: a consumer-group join names the node its client is on (`MembershipChange::Join`), and
/// nodes announce their start (`NodeStarted`). 3: the metadata leader removes the members of
/// a node lost for the member timeout (`NodeLost`), an entry format 2 builds cannot read.
/// 4: record 1 may be a snapshot (a compacted log). A format 3 log is read (it has no
/// snapshot) and becomes format 4 at its first compaction; any other format is refused.
const FORMAT: u16 = 4;
/// The older format this build still reads.
const FORMAT_READ: u16 = 3;

/// The group's log file.
pub struct GroupLog {
    file: MetadataLog,
    /// Record 0, as a compaction writes it again.
    identity: Vec<u8>,
}

/// What a log holds at open: raft-rs's storage and the snapshot it starts from, if any.
pub struct OpenedLog {
    /// The log, ready for appends.
    pub log: GroupLog,
    /// Entries after the snapshot, hard state and configuration.
    pub storage: MemStorage,
    /// The snapshot the log starts from (with its data), if it was compacted.
    pub snapshot: Option<Snapshot>,
}

impl GroupLog {
    /// Opens (creating) the log of this node in this cluster and rebuilds its storage, with
    /// `voters` as the configuration of a new log. Refuses a log written by another node or
    /// cluster.
    pub async fn open(
        path: PathBuf,
        node_id: u64,
        cluster_id: &str,
        voters: Vec<u64>,
    ) -> Result<OpenedLog, String> {
        let shown = path.display().to_string();
        let (file, records) = MetadataLog::open(path)
            .await
            .map_err(|error| format!("cannot open the cluster log {shown}: {error}"))?;
        let identity = identity_record(node_id, cluster_id, FORMAT);
        let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let Some((first, mut readies)) = records.split_first() else {
            file.append(&identity)
                .await
                .map_err(|error| format!("cannot write the cluster log {shown}: {error}"))?;
            let log = GroupLog { file, identity };
            return Ok(OpenedLog {
                log,
                storage,
                snapshot: None,
            });
        };
        check_identity(first, node_id, cluster_id)
            .map_err(|why| format!("the cluster log {shown} {why}"))?;
        let unreadable = |why: &str| format!("the cluster log {shown} is unreadable: {why}");
        let mut snapshot = None;
        if let Some((record, rest)) = readies.split_first()
            && record.starts_with(SNAPSHOT_MAGIC)
        {
            let decoded = decode_snapshot(record).map_err(unreadable)?;
            storage
                .wl()
                .apply_snapshot(decoded.clone())
                .map_err(|error| unreadable(&error.to_string()))?;
            snapshot = Some(decoded);
            readies = rest;
        }
        for record in readies {
            let (hard_state, entries) = decode_ready(record).map_err(unreadable)?;
            let mut core = storage.wl();
            if !entries.is_empty() {
                core.append(&entries)
                    .map_err(|error| format!("the cluster log {shown}: {error}"))?;
            }
            core.set_hardstate(hard_state);
        }
        let log = GroupLog { file, identity };
        Ok(OpenedLog {
            log,
            storage,
            snapshot,
        })
    }

    /// Makes one Ready durable: its entries and the hard state after it.
    pub async fn append(&self, hard_state: &HardState, entries: &[Entry]) -> Result<(), String> {
        self.file
            .append(&encode_ready(hard_state, entries))
            .await
            .map_err(|error| format!("cannot write the cluster log: {error}"))
    }

    /// Replaces the log with `snapshot`, then `hard_state` and the `entries` after the
    /// snapshot: a compaction, or a snapshot from the leader (with no entries).
    pub async fn rewrite(
        &mut self,
        snapshot: &Snapshot,
        hard_state: &HardState,
        entries: &[Entry],
    ) -> Result<(), String> {
        let snapshot = encode_snapshot(snapshot);
        let ready = encode_ready(hard_state, entries);
        self.file
            .rewrite(&[&self.identity, &snapshot, &ready])
            .await
            .map_err(|error| format!("cannot rewrite the cluster log: {error}"))
    }
}

/// What raft-rs reads: the log in memory, and the snapshot it starts from, which a follower
/// behind the log's start is sent. Shard 0's driver is its only user.
#[derive(Clone)]
pub struct GroupStorage {
    memory: MemStorage,
    snapshot: Rc<RefCell<Option<Snapshot>>>,
}

impl GroupStorage {
    /// The storage of a log as opened.
    pub fn new(memory: MemStorage, snapshot: Option<Snapshot>) -> Self {
        Self {
            memory,
            snapshot: Rc::new(RefCell::new(snapshot)),
        }
    }

    /// The entries and hard state.
    pub fn memory(&self) -> &MemStorage {
        &self.memory
    }

    /// The index the log's snapshot stands for (0 before the first).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot
            .borrow()
            .as_ref()
            .map_or(0, |snapshot| snapshot.get_metadata().index)
    }

    /// Starts the log at `snapshot`: the entries it covers go, those after it stay (a
    /// compaction), and so does the hard state.
    pub fn compact_to(&self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        let hard_state = self.memory.rl().hard_state().clone();
        let last = self.memory.last_index().expect("memory storage answers");
        let kept = if last > index {
            self.memory
                .entries(index + 1, last + 1, None, GetEntriesContext::empty(false))
                .expect("entries after the applied index are held")
        } else {
            Vec::new()
        };
        let mut core = self.memory.wl();
        core.apply_snapshot(snapshot.clone())
            .expect("a compaction's index is within the log");
        core.append(&kept)
            .expect("the kept entries follow the snapshot");
        core.set_hardstate(hard_state);
        *self.snapshot.borrow_mut() = Some(snapshot);
    }

    /// Replaces the whole log with the leader's `snapshot`, then `hard_state`.
    pub fn install(&self, snapshot: Snapshot, hard_state: HardState) -> Result<(), String> {
        let mut core = self.memory.wl();
        core.apply_snapshot(snapshot.clone())
            .map_err(|error| error.to_string())?;
        core.set_hardstate(hard_state);
        *self.snapshot.borrow_mut() = Some(snapshot);
        Ok(())
    }
}

impl Storage for GroupStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.memory.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.memory.entries(low, high, max_size, context)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.memory.term(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.memory.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.memory.last_index()
    }

    /// The log's snapshot, whatever index is asked for: raft-rs asks only once a follower
    /// needs entries the log no longer holds, which a compaction made the snapshot cover.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        self.snapshot.borrow().clone().ok_or(raft::Error::Store(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

/// Refuses record 0 unless it names this node of this cluster in a format this build reads.
fn check_identity(first: &[u8], node_id: u64, cluster_id: &str) -> Result<(), String> {
    let format_at = MAGIC.len();
    if first.len() >= format_at + 2 && first[..format_at] == MAGIC[..] {
        let found = u16::from_le_bytes([first[format_at], first[format_at + 1]]);
        if found != FORMAT && found != FORMAT_READ {
            return Err(format!(
                "is in format {found}, which this galgo does not read (it reads formats \
                 {FORMAT_READ} and {FORMAT}) and does not convert"
            ));
        }
        if first[..] == identity_record(node_id, cluster_id, found)[..] {
            return Ok(());
        }
    }
    Err(format!(
        "belongs to another node or cluster (this is node {node_id} of cluster \
         {cluster_id:?}); refusing to start"
    ))
}

fn identity_record(node_id: u64, cluster_id: &str, format: u16) -> Vec<u8> {
    let mut record = MAGIC.to_vec();
    record.extend_from_slice(&format.to_le_bytes());
    record.extend_from_slice(&node_id.to_le_bytes());
    record.extend_from_slice(cluster_id.as_bytes());
    record
}

fn encode_ready(hard_state: &HardState, entries: &[Entry]) -> Vec<u8> {
    let mut record =
        Vec::with_capacity(28 + entries.iter().map(|e| e.data.len() + 32).sum::<usize>());
    record.extend_from_slice(&hard_state.term.to_le_bytes());
    record.extend_from_slice(&hard_state.vote.to_le_bytes());
    record.extend_from_slice(&hard_state.commit.to_le_bytes());
    record.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        let encoded = entry
            .write_to_bytes()
            .expect("encoding an entry into memory cannot fail");
        record.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        record.extend_from_slice(&encoded);
    }
    record
}

fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    let metadata = snapshot.get_metadata();
    let voters = &metadata.get_conf_state().voters;
    let mut record = Vec::with_capacity(39 + voters.len() * 8 + snapshot.data.len());
    record.extend_from_slice(SNAPSHOT_MAGIC);
    record.extend_from_slice(&metadata.index.to_le_bytes());
    record.extend_from_slice(&metadata.term.to_le_bytes());
    record.extend_from_slice(&(voters.len() as u32).to_le_bytes());
    for voter in voters {
        record.extend_from_slice(&voter.to_le_bytes());
    }
    record.extend_from_slice(&snapshot.data);
    record
}

fn decode_snapshot(record: &[u8]) -> Result<Snapshot, &'static str> {
    let mut rest = record
        .get(SNAPSHOT_MAGIC.len()..)
        .ok_or("truncated snapshot")?;
    let mut take = |len: usize| -> Result<&[u8], &'static str> {
        let (head, tail) = rest.split_at_checked(len).ok_or("truncated snapshot")?;
        rest = tail;
        Ok(head)
    };
    let u64_of = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    let index = u64_of(take(8)?);
    let term = u64_of(take(8)?);
    let count = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
    let voters = take(count.checked_mul(8).ok_or("truncated snapshot")?)?
        .chunks_exact(8)
        .map(u64_of)
        .collect::<Vec<u64>>();
    let mut snapshot = Snapshot {
        data: rest.to_vec().into(),
        ..Snapshot::default()
    };
    let metadata = snapshot.mut_metadata();
    metadata.index = index;
    metadata.term = term;
    metadata.set_conf_state(ConfState::from((voters, vec![])));
    Ok(snapshot)
}

fn decode_ready(record: &[u8]) -> Result<(HardState, Vec<Entry>), &'static str> {
    let u64_at = |at: usize| -> Result<u64, &'static str> {
        record
            .get(at..at + 8)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().expect("8")))
            .ok_or("truncated record")
    };
    let hard_state = HardState {
        term: u64_at(0)?,
        vote: u64_at(8)?,
        commit: u64_at(16)?,
        ..HardState::default()
    };
    let count = record
        .get(24..28)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4")))
        .ok_or("truncated record")?;
    let mut rest = &record[28..];
    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let len = rest
            .get(..4)
            .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4")) as usize)
            .ok_or("truncated entry")?;
        let encoded = rest.get(4..4 + len).ok_or("truncated entry")?;
        entries.push(Entry::parse_from_bytes(encoded).map_err(|_| "undecodable entry")?);
        rest = &rest[4 + len..];
    }
    Ok((hard_state, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    #[compio::test]
    async fn a_reopened_log_has_the_entries_and_state_written_and_overwritten_tails_stay_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.raft");
        let OpenedLog { log, storage, .. } = GroupLog::open(path.clone(), 1, "c", vec![1, 2, 3])
            .await
            .unwrap();
        assert_eq!(storage.last_index().unwrap(), 0);
        log.append(
            &hard_state(1, 1, 0),
            &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
        )
        .await
        .unwrap();
        // A new leader of term 2 replaces index 3 onwards.
        log.append(
            &hard_state(2, 2, 3),
            &[entry(3, 2, b"C"), entry(4, 2, b"D")],
        )
        .await
        .unwrap();
        drop(log);
        let OpenedLog { storage, .. } = GroupLog::open(path.clone(), 1, "c", vec![1, 2, 3])
            .await
            .unwrap();
        let state = storage.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(2, 2, 3));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        let entries = storage
            .entries(1, 5, None, raft::GetEntriesContext::empty(false))
            .unwrap();
        let data: Vec<&[u8]> = entries.iter().map(|entry| &entry.data[..]).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"C", b"D"]);
        assert_eq!(entries[2].term, 2);
        let refused = GroupLog::open(path, 2, "c", vec![1, 2, 3]).await;
        assert!(refused.is_err(), "another node's log is refused");
    }

    #[compio::test]
    async fn a_log_of_another_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.raft");
        let (file, _) = MetadataLog::open(path.clone()).await.unwrap();
        file.append(&identity_record(1, "c", 2)).await.unwrap();
        drop(file);
        let refused = GroupLog::open(path, 1, "c", vec![1]).await;
        let why = refused.err().expect("refused");
        assert!(why.contains("in format 2"), "{why}");
    }

    fn snapshot(index: u64, term: u64, voters: Vec<u64>, data: &[u8]) -> Snapshot {
        let mut snapshot = Snapshot {
            data: data.to_vec().into(),
            ..Snapshot::default()
        };
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((voters, vec![])));
        snapshot
    }

    #[compio::test]
    async fn a_compacted_log_starts_at_its_snapshot_and_keeps_what_follows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.raft");
        // A log of the previous format is read, and becomes this format once compacted.
        let (file, _) = MetadataLog::open(path.clone()).await.unwrap();
        file.append(&identity_record(1, "c", FORMAT_READ))
            .await
            .unwrap();
        file.append(&encode_ready(
            &hard_state(1, 1, 2),
            &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
        ))
        .await
        .unwrap();
        drop(file);
        let OpenedLog {
            mut log,
            snapshot: none,
            ..
        } = GroupLog::open(path.clone(), 1, "c", vec![1, 2, 3])
            .await
            .unwrap();
        assert!(none.is_none());
        let taken = snapshot(2, 1, vec![1, 2, 3], b"state at 2");
        log.rewrite(&taken, &hard_state(1, 1, 2), &[entry(3, 1, b"c")])
            .await
            .unwrap();
        log.append(&hard_state(2, 2, 4), &[entry(4, 2, b"d")])
            .await
            .unwrap();
        drop(log);
        let OpenedLog {
            storage, snapshot, ..
        } = GroupLog::open(path.clone(), 1, "c", vec![1, 2, 3])
            .await
            .unwrap();
        assert_eq!(snapshot, Some(taken));
        assert_eq!(storage.first_index().unwrap(), 3);
        assert_eq!(storage.last_index().unwrap(), 4);
        assert_eq!(
            storage.term(2).unwrap(),
            1,
            "the snapshot's term answers for its index"
        );
        assert!(storage.term(1).is_err(), "what the snapshot covers is gone");
        assert_eq!(
            storage.initial_state().unwrap().hard_state,
            hard_state(2, 2, 4)
        );
        let (_, records) = MetadataLog::open(path).await.unwrap();
        assert_eq!(records[0][..], identity_record(1, "c", FORMAT)[..]);
        assert_eq!(
            records.len(),
            4,
            "identity, snapshot, compaction's Ready, one append"
        );
    }

    #[test]
    fn a_torn_snapshot_record_is_an_error_not_a_panic() {
        let whole = encode_snapshot(&snapshot(9, 3, vec![1, 2], b"data"));
        assert_eq!(decode_snapshot(&whole).unwrap().data.as_ref(), b"data");
        for cut in 0..SNAPSHOT_MAGIC.len() + 8 + 8 + 4 + 16 {
            assert!(decode_snapshot(&whole[..cut]).is_err(), "cut at {cut}");
        }
    }
}
