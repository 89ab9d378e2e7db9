//! raft-rs's `Storage` for a partition group (docs/architecture.md, "Raft log = partition
//! log"), answered synchronously on the partition's shard.
//!
//! Every entry of the log has a small [`EntryMeta`] in memory (its term and what it holds,
//! as its `raft.records` record says); the data of recent entries (a batch's stamped messages)
//! is kept in memory too, from `window_start` on, which never passes `applied + 1`: raft-rs's
//! synchronous reads (committed entries for a `Ready`) never touch a file. A leader sending a
//! lagging follower older entries asks with a context that can wait: `entries` then queues a
//! [`Fetch`] and answers `LogTemporarilyUnavailable`; the driver reads the batches from the
//! partition log, hands them to [`PartitionStorage::fetched`] and calls raft-rs's
//! `on_entries_fetched`, whose retry finds them.

use std::{
    cell::{Ref, RefCell, RefMut},
    collections::{BTreeMap, VecDeque},
    rc::Rc,
};

use bytes::Bytes;
use galgo_storage::{LogStart, OffsetOwner, PartitionLog, RaftRecord, RecordKind};
use protobuf::Message as _;
use raft::{
    GetEntriesContext, RaftState, Storage, StorageError,
    eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot},
};

/// Bytes of an entry's context: kind u8 | aux [u8; 3] | count u32 | first offset u64.
pub const ENTRY_CONTEXT_BYTES: usize = 16;
/// A snapshot's data: format u32 | offsets count u32 | the log start offset u64, then per
/// stored consumer offset: owner kind u8 (1 consumer, 2 group) | owner id u32 | offset u64. A
/// partition snapshot holds no messages (docs/architecture.md, "Snapshots and retention").
const SNAPSHOT_HEAD_BYTES: usize = 16;
const SNAPSHOT_OFFSET_BYTES: usize = 13;
const SNAPSHOT_FORMAT: u32 = 2;

/// The data of a snapshot whose log starts at partition offset `offset`, with the stored
/// consumer offsets.
pub fn snapshot_data(offset: u64, offsets: &[(OffsetOwner, u64)]) -> Bytes {
    let mut out = Vec::with_capacity(SNAPSHOT_HEAD_BYTES + offsets.len() * SNAPSHOT_OFFSET_BYTES);
    out.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
    out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    for &(owner, stored) in offsets {
        let (kind, id) = owner_code(owner);
        out.push(kind);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&stored.to_le_bytes());
    }
    Bytes::from(out)
}

/// What a snapshot installs: its log start and the stored consumer offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotContent {
    /// Where the log starts.
    pub start: LogStart,
    /// The consumer offsets stored at the leader.
    pub offsets: Vec<(OffsetOwner, u64)>,
}

/// What a snapshot describes, or why it cannot be installed.
pub fn decode_snapshot(snapshot: &Snapshot) -> Result<SnapshotContent, String> {
    let data = &snapshot.data[..];
    let metadata = snapshot.get_metadata();
    let unknown = || {
        format!(
            "snapshot at {} has {} bytes of data in an unknown format",
            metadata.index,
            data.len()
        )
    };
    if data.len() < SNAPSHOT_HEAD_BYTES
        || u32::from_le_bytes(data[..4].try_into().expect("4 bytes")) != SNAPSHOT_FORMAT
    {
        return Err(unknown());
    }
    let count = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes")) as usize;
    let body = &data[SNAPSHOT_HEAD_BYTES..];
    if count.checked_mul(SNAPSHOT_OFFSET_BYTES) != Some(body.len()) {
        return Err(unknown());
    }
    let mut offsets = Vec::with_capacity(count);
    for record in body.chunks_exact(SNAPSHOT_OFFSET_BYTES) {
        let id = u32::from_le_bytes(record[1..5].try_into().expect("4 bytes"));
        let owner = offset_owner(record[0], id).ok_or_else(unknown)?;
        offsets.push((
            owner,
            u64::from_le_bytes(record[5..13].try_into().expect("8 bytes")),
        ));
    }
    Ok(SnapshotContent {
        start: LogStart {
            index: metadata.index,
            term: metadata.term,
            offset: u64::from_le_bytes(data[8..16].try_into().expect("8 bytes")),
        },
        offsets,
    })
}

/// An offset owner as entries and snapshots write it: kind (1 consumer, 2 group) and id.
pub fn owner_code(owner: OffsetOwner) -> (u8, u32) {
    match owner {
        OffsetOwner::Consumer(id) => (1, id),
        OffsetOwner::Group(id) => (2, id),
    }
}

/// The owner a kind and id name.
pub fn offset_owner(kind: u8, id: u32) -> Option<OffsetOwner> {
    match kind {
        1 => Some(OffsetOwner::Consumer(id)),
        2 => Some(OffsetOwner::Group(id)),
        _ => None,
    }
}

/// What one entry holds, without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Its term.
    pub term: u64,
    /// What it holds.
    pub kind: RecordKind,
    /// Kind-specific (see `RecordKind`).
    pub aux: [u8; 3],
    /// Messages of a batch, or a consumer id.
    pub count: u32,
    /// A batch's first offset, or a stored offset.
    pub first_offset: u64,
    /// Size of its data (a batch's bytes).
    pub bytes: u64,
}

impl EntryMeta {
    /// The meta of a raft-rs entry: from its context, or `Empty` for an entry without one
    /// (a new leader's).
    pub fn of(entry: &Entry) -> Result<Self, String> {
        let term = entry.term;
        if entry.context.is_empty() {
            if !entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                return Err(format!("entry {} has data but no context", entry.index));
            }
            return Ok(Self {
                term,
                kind: RecordKind::Empty,
                aux: [0; 3],
                count: 0,
                first_offset: 0,
                bytes: 0,
            });
        }
        let context = &entry.context[..];
        if context.len() != ENTRY_CONTEXT_BYTES {
            return Err(format!(
                "entry {} has a context of {} bytes",
                entry.index,
                context.len()
            ));
        }
        let kind = match context[0] {
            1 => RecordKind::Batch,
            2 => RecordKind::Empty,
            3 => RecordKind::StoreOffset,
            4 => RecordKind::DeleteOffset,
            other => return Err(format!("entry {} has unknown kind {other}", entry.index)),
        };
        Ok(Self {
            term,
            kind,
            aux: [context[1], context[2], context[3]],
            count: u32::from_le_bytes(context[4..8].try_into().expect("4 bytes")),
            first_offset: u64::from_le_bytes(context[8..16].try_into().expect("8 bytes")),
            bytes: entry.data.len() as u64,
        })
    }

    /// The meta of a consumer offset write: `Some(offset)` stores it, `None` deletes it.
    pub fn offset_write(term: u64, owner: OffsetOwner, offset: Option<u64>) -> Self {
        let (kind, id) = owner_code(owner);
        Self {
            term,
            kind: if offset.is_some() {
                RecordKind::StoreOffset
            } else {
                RecordKind::DeleteOffset
            },
            aux: [kind, 0, 0],
            count: id,
            first_offset: offset.unwrap_or(0),
            bytes: 0,
        }
    }

    /// The owner and offset of a consumer offset write (`None` as the offset for a delete).
    pub fn offset_target(&self) -> Option<(OffsetOwner, Option<u64>)> {
        let owner = offset_owner(self.aux[0], self.count)?;
        match self.kind {
            RecordKind::StoreOffset => Some((owner, Some(self.first_offset))),
            RecordKind::DeleteOffset => Some((owner, None)),
            _ => None,
        }
    }

    /// The meta of a batch of `count` messages from `first_offset`, `bytes` long.
    pub fn batch(term: u64, first_offset: u64, count: u32, bytes: u64) -> Self {
        Self {
            term,
            kind: RecordKind::Batch,
            aux: [0; 3],
            count,
            first_offset,
            bytes,
        }
    }

    /// The context an entry of this meta carries.
    pub fn context(&self) -> Bytes {
        let mut out = Vec::with_capacity(ENTRY_CONTEXT_BYTES);
        out.push(self.kind as u8);
        out.extend_from_slice(&self.aux);
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.first_offset.to_le_bytes());
        Bytes::from(out)
    }

    /// The record of this meta at `index`.
    pub fn record(&self, index: u64) -> RaftRecord {
        RaftRecord {
            index,
            term: self.term,
            kind: self.kind,
            aux: self.aux,
            count: self.count,
            first_offset: self.first_offset,
            bytes: self.bytes,
        }
    }

    /// The meta a record describes.
    pub fn from_record(record: &RaftRecord) -> Self {
        Self {
            term: record.term,
            kind: record.kind,
            aux: record.aux,
            count: record.count,
            first_offset: record.first_offset,
            bytes: record.bytes,
        }
    }

    /// Offset after a batch's last message (`first_offset` for anything else).
    pub fn end_offset(&self) -> u64 {
        match self.kind {
            RecordKind::Batch => self.first_offset + u64::from(self.count),
            _ => self.first_offset,
        }
    }
}

/// Entries a leader wants for a lagging follower, from the partition log.
#[derive(Debug)]
pub struct Fetch {
    /// First index wanted.
    pub low: u64,
    /// Index after the last wanted.
    pub high: u64,
    /// raft-rs's context, handed back to `on_entries_fetched`.
    pub context: GetEntriesContext,
}

/// The state behind [`PartitionStorage`].
#[derive(Debug, Default)]
pub struct Core {
    /// Term, vote and commit.
    pub hard_state: HardState,
    /// The voters.
    pub conf_state: ConfState,
    /// The entry before the first held, and the partition offset the first starts at.
    pub log_start: LogStart,
    /// Metas of every entry held, from `log_start.index + 1`.
    metas: VecDeque<EntryMeta>,
    /// Data of the entries from `window_start` on.
    window: VecDeque<Bytes>,
    window_start: u64,
    /// Data read back for a lagging follower, by index.
    fetched: BTreeMap<u64, Bytes>,
    /// Reads queued by `entries`.
    fetches: Vec<Fetch>,
}

impl Core {
    /// Index of the last entry held (the log start's when none is).
    pub fn last_index(&self) -> u64 {
        self.log_start.index + self.metas.len() as u64
    }

    /// The meta of entry `index`, if held.
    pub fn meta(&self, index: u64) -> Option<&EntryMeta> {
        let at = index.checked_sub(self.log_start.index + 1)?;
        self.metas.get(usize::try_from(at).ok()?)
    }

    /// Offset after the last entry's messages: where the next batch starts.
    pub fn end_offset(&self) -> u64 {
        self.metas
            .iter()
            .rev()
            .find(|meta| meta.kind == RecordKind::Batch)
            .map_or(self.log_start.offset, EntryMeta::end_offset)
    }

    /// Offset after the messages of the entries up to `index`.
    pub fn end_offset_at(&self, index: u64) -> u64 {
        let held = (index.saturating_sub(self.log_start.index) as usize).min(self.metas.len());
        self.metas
            .iter()
            .take(held)
            .rev()
            .find(|meta| meta.kind == RecordKind::Batch)
            .map_or(self.log_start.offset, EntryMeta::end_offset)
    }

    /// Where the log may start once the partition log starts at `first_offset` (retention
    /// removed what lies below): after the last entry, at most `limit`, whose messages are all
    /// below it. `None` when no message of a held entry is gone.
    pub fn start_at(&self, first_offset: u64, limit: u64) -> Option<LogStart> {
        let mut start = self.log_start;
        for index in self.log_start.index + 1..=limit.min(self.last_index()) {
            let meta = self.meta(index).expect("held");
            if meta.kind == RecordKind::Batch {
                if meta.end_offset() > first_offset {
                    break;
                }
                start.offset = meta.end_offset();
            }
            start.index = index;
            start.term = meta.term;
        }
        (start.offset > self.log_start.offset).then_some(start)
    }

    /// Forgets the entries up to `start.index`, which becomes the log start.
    pub fn compact(&mut self, start: LogStart) {
        assert!(
            start.index > self.log_start.index && start.index <= self.last_index(),
            "a compaction inside the log"
        );
        let drop = (start.index - self.log_start.index) as usize;
        self.metas.drain(..drop);
        if self.window_start <= start.index {
            let drop = ((start.index + 1 - self.window_start) as usize).min(self.window.len());
            self.window.drain(..drop);
            self.window_start = start.index + 1;
        }
        self.fetched = self.fetched.split_off(&(start.index + 1));
        self.log_start = start;
    }

    /// Replaces the whole log with a snapshot's start: nothing held after it.
    pub fn install(&mut self, start: LogStart, conf_state: ConfState) {
        self.metas.clear();
        self.window.clear();
        self.fetched.clear();
        self.fetches.clear();
        self.window_start = start.index + 1;
        self.log_start = start;
        self.conf_state = conf_state;
        self.hard_state.commit = self.hard_state.commit.max(start.index);
    }

    /// Index of the first entry whose data is in memory.
    pub fn window_start(&self) -> u64 {
        self.window_start
    }

    /// Appends `entries` (raft-rs's, consecutive), replacing the held ones from the first's
    /// index on. Returns the index the log was cut at, if it was.
    pub fn append(&mut self, entries: &[Entry]) -> Result<Option<u64>, String> {
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let last = self.last_index();
        if first.index <= self.log_start.index || first.index > last + 1 {
            return Err(format!(
                "entries from {} do not fit a log holding {}..={last}",
                first.index,
                self.log_start.index + 1
            ));
        }
        let cut = (first.index <= last).then(|| {
            self.truncate_from(first.index);
            first.index
        });
        for entry in entries {
            debug_assert_eq!(entry.index, self.last_index() + 1);
            self.metas.push_back(EntryMeta::of(entry)?);
            if self.window_start + self.window.len() as u64 == entry.index {
                self.window.push_back(entry.data.clone());
            }
        }
        Ok(cut)
    }

    /// Forgets the entries from `index` on.
    fn truncate_from(&mut self, index: u64) {
        let keep = (index - self.log_start.index - 1) as usize;
        self.metas.truncate(keep);
        let keep_window = index.saturating_sub(self.window_start) as usize;
        self.window.truncate(keep_window);
        if self.window.is_empty() {
            self.window_start = self.window_start.min(index);
        }
        self.fetched.split_off(&index);
    }

    /// Lets go of the data of entries below `index` (never past `applied + 1`: the caller's
    /// promise), keeping at most `keep_bytes` of them for followers slightly behind.
    pub fn release_window(&mut self, index: u64, keep_bytes: u64) {
        let index = index.min(self.window_start + self.window.len() as u64);
        let mut held: u64 = 0;
        let mut keep_from = index;
        while keep_from > self.window_start {
            let data = &self.window[(keep_from - 1 - self.window_start) as usize];
            if held + data.len() as u64 > keep_bytes {
                break;
            }
            held += data.len() as u64;
            keep_from -= 1;
        }
        let drop = (keep_from.saturating_sub(self.window_start) as usize).min(self.window.len());
        self.window.drain(..drop);
        self.window_start += drop as u64;
    }

    /// Puts the data of the entries from `start` to the last in memory (at open: the
    /// entries above the commit, read back from the log).
    pub fn set_window(&mut self, start: u64, data: Vec<Bytes>) {
        assert!(
            start > self.log_start.index,
            "the window starts inside the log"
        );
        assert_eq!(
            start + data.len() as u64,
            self.last_index() + 1,
            "the window reaches the last entry"
        );
        self.window = data.into();
        self.window_start = start;
    }

    /// Whether `entries` queued reads.
    pub fn has_fetches(&self) -> bool {
        !self.fetches.is_empty()
    }

    /// Takes the reads `entries` queued.
    pub fn take_fetches(&mut self) -> Vec<Fetch> {
        std::mem::take(&mut self.fetches)
    }

    /// Data read back for entries below the window, for the `on_entries_fetched` call that
    /// follows; [`Core::clear_fetched`] lets it go after that call.
    pub fn fetched(&mut self, data: impl IntoIterator<Item = (u64, Bytes)>) {
        for (index, bytes) in data {
            if index < self.window_start && self.meta(index).is_some() {
                self.fetched.insert(index, bytes);
            }
        }
    }

    /// Forgets the data read back (raft-rs took what it wanted in `on_entries_fetched`).
    pub fn clear_fetched(&mut self) {
        self.fetched.clear();
    }

    fn data(&self, index: u64) -> Option<Bytes> {
        if index >= self.window_start {
            return self
                .window
                .get((index - self.window_start) as usize)
                .cloned();
        }
        let meta = self.meta(index)?;
        if meta.kind != RecordKind::Batch {
            return Some(Bytes::new());
        }
        self.fetched.get(&index).cloned()
    }

    fn entry(&self, index: u64, data: Bytes) -> Entry {
        let meta = self.meta(index).expect("held");
        Entry {
            entry_type: EntryType::EntryNormal,
            term: meta.term,
            index,
            data,
            context: if meta.kind == RecordKind::Empty {
                Bytes::new()
            } else {
                meta.context()
            },
            ..Entry::default()
        }
    }
}

/// The `Storage` of one partition group; the driver keeps a clone to update it.
#[derive(Clone, Default)]
pub struct PartitionStorage {
    core: Rc<RefCell<Core>>,
    /// The partition log, whose stored consumer offsets a snapshot carries.
    log: Option<Rc<PartitionLog>>,
}

impl std::fmt::Debug for PartitionStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionStorage")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl PartitionStorage {
    /// Storage for a log starting at `log_start` with `records` after it (their data read
    /// from the partition log when asked for), and the saved hard state and voters. The
    /// window starts after the last record: what a restart holds is on disk only.
    pub fn new(
        hard_state: HardState,
        voters: Vec<u64>,
        log_start: LogStart,
        records: &[RaftRecord],
    ) -> Result<Self, String> {
        let mut metas = VecDeque::with_capacity(records.len());
        for (k, record) in records.iter().enumerate() {
            if record.index != log_start.index + 1 + k as u64 {
                return Err(format!(
                    "raft record {} where {} was expected",
                    record.index,
                    log_start.index + 1 + k as u64
                ));
            }
            metas.push_back(EntryMeta::from_record(record));
        }
        let window_start = log_start.index + 1 + metas.len() as u64;
        let core = Core {
            hard_state,
            conf_state: ConfState::from((voters, vec![])),
            log_start,
            metas,
            window: VecDeque::new(),
            window_start,
            fetched: BTreeMap::new(),
            fetches: Vec::new(),
        };
        Ok(Self {
            core: Rc::new(RefCell::new(core)),
            log: None,
        })
    }

    /// The same storage, whose snapshots carry `log`'s stored consumer offsets.
    pub fn with_log(mut self, log: Rc<PartitionLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Reads the state.
    pub fn rl(&self) -> Ref<'_, Core> {
        self.core.borrow()
    }

    /// Changes the state (never while raft-rs reads it: both run on the driver's turn).
    pub fn wl(&self) -> RefMut<'_, Core> {
        self.core.borrow_mut()
    }
}

impl Storage for PartitionStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.core.borrow();
        Ok(RaftState::new(
            core.hard_state.clone(),
            core.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into();
        let mut core = self.core.borrow_mut();
        if low <= core.log_start.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > core.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut entries = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let Some(data) = core.data(index) else {
                if !entries.is_empty() {
                    break;
                }
                if !context.can_async() {
                    tracing::error!(
                        index,
                        window = core.window_start,
                        "a partition group's entry is neither in memory nor fetchable"
                    );
                    return Err(raft::Error::Store(StorageError::Unavailable));
                }
                let high = high.min(core.window_start);
                core.fetches.push(Fetch { low, high, context });
                return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
            };
            let entry = core.entry(index, data);
            size += u64::from(entry.compute_size());
            if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            entries.push(entry);
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.core.borrow();
        if index == core.log_start.index {
            return Ok(core.log_start.term);
        }
        if index < core.log_start.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        core.meta(index)
            .map(|meta| meta.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.borrow().log_start.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.borrow().last_index())
    }

    /// Only a follower behind the log start needs one: the log start itself and the stored
    /// consumer offsets, no messages (retention removed them everywhere below it). The
    /// offsets are the latest applied here, possibly past the start: the entries after it
    /// set them again in order, so the follower ends with the same ones.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.core.borrow();
        if core.log_start.index == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let offsets = self
            .log
            .as_ref()
            .map(|log| log.stored_offsets())
            .unwrap_or_default();
        let mut snapshot = Snapshot {
            data: snapshot_data(core.log_start.offset, &offsets),
            ..Snapshot::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = core.log_start.index;
        metadata.term = core.log_start.term;
        metadata.set_conf_state(core.conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_entry(index: u64, term: u64, first_offset: u64, count: u32) -> Entry {
        let meta = EntryMeta::batch(term, first_offset, count, 10);
        Entry {
            index,
            term,
            context: meta.context(),
            data: Bytes::from(vec![index as u8; 10]),
            ..Entry::default()
        }
    }

    fn empty_entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    fn storage() -> PartitionStorage {
        PartitionStorage::new(
            HardState::default(),
            vec![1, 2, 3],
            LogStart::default(),
            &[],
        )
        .unwrap()
    }

    #[test]
    fn entries_terms_and_offsets_follow_appends_and_cuts() {
        let storage = storage();
        let entries = vec![
            empty_entry(1, 1),
            batch_entry(2, 1, 0, 3),
            batch_entry(3, 1, 3, 2),
        ];
        assert_eq!(storage.wl().append(&entries).unwrap(), None);
        assert_eq!(storage.last_index().unwrap(), 3);
        assert_eq!(storage.rl().end_offset(), 5);
        assert_eq!(storage.rl().end_offset_at(2), 3);
        assert_eq!(storage.rl().end_offset_at(1), 0);
        let got = storage
            .entries(1, 4, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, entries, "entries come back as appended");
        assert_eq!(storage.term(0).unwrap(), 0);
        assert_eq!(storage.term(3).unwrap(), 1);
        // A new leader's entries replace 3.
        let replacing = vec![empty_entry(3, 2), batch_entry(4, 2, 3, 4)];
        assert_eq!(storage.wl().append(&replacing).unwrap(), Some(3));
        assert_eq!(storage.term(3).unwrap(), 2);
        assert_eq!(storage.rl().end_offset(), 7);
        let limited = storage
            .entries(1, 5, Some(1), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            limited.len(),
            1,
            "at least one entry, however small the limit"
        );
        assert!(
            storage.wl().append(&[batch_entry(9, 2, 7, 1)]).is_err(),
            "a gap"
        );
        assert!(matches!(
            storage.entries(1, 9, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
    }

    #[test]
    fn entries_below_the_window_are_fetched_when_the_caller_can_wait() {
        let storage = storage();
        let entries: Vec<Entry> = (1..=6)
            .map(|index| batch_entry(index, 1, (index - 1) * 2, 2))
            .collect();
        storage.wl().append(&entries).unwrap();
        storage.wl().release_window(5, 10);
        assert_eq!(
            storage.rl().window_start(),
            4,
            "one 10-byte entry kept below 5"
        );
        assert!(matches!(
            storage.entries(2, 7, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        assert!(matches!(
            storage.entries(2, 7, None, GetEntriesContext::empty(true)),
            Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable))
        ));
        let fetches = storage.wl().take_fetches();
        assert_eq!(fetches.len(), 1);
        assert_eq!((fetches[0].low, fetches[0].high), (2, 4));
        storage
            .wl()
            .fetched((2..4).map(|index| (index, entries[index as usize - 1].data.clone())));
        let got = storage
            .entries(2, 7, None, GetEntriesContext::empty(true))
            .unwrap();
        assert_eq!(got, entries[1..6].to_vec());
        // Entries in the window are answered before a gap, not after it.
        storage.wl().release_window(7, 0);
        let got = storage.entries(5, 7, None, GetEntriesContext::empty(true));
        assert!(got.is_err(), "5 and 6 left the window and were not fetched");
    }

    #[test]
    fn a_restarted_log_knows_its_records_but_holds_no_data() {
        let records: Vec<RaftRecord> = (11..=13)
            .map(|index| {
                EntryMeta::of(&batch_entry(index, 4, index * 10, 10))
                    .unwrap()
                    .record(index)
            })
            .collect();
        let start = LogStart {
            index: 10,
            term: 3,
            offset: 110,
        };
        let storage =
            PartitionStorage::new(HardState::default(), vec![1], start, &records).unwrap();
        assert_eq!(storage.first_index().unwrap(), 11);
        assert_eq!(storage.last_index().unwrap(), 13);
        assert_eq!(storage.term(10).unwrap(), 3);
        assert!(storage.term(9).is_err());
        assert_eq!(storage.rl().end_offset(), 140);
        assert!(matches!(
            storage.entries(10, 12, None, GetEntriesContext::empty(true)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(
            storage
                .entries(11, 12, None, GetEntriesContext::empty(true))
                .is_err()
        );
        assert!(
            PartitionStorage::new(HardState::default(), vec![1], LogStart::default(), &records)
                .is_err(),
            "records must follow the log start"
        );
    }

    #[test]
    fn retention_moves_the_start_and_a_snapshot_describes_it() {
        let leader = storage();
        assert!(leader.snapshot(0, 2).is_err(), "nothing compacted yet");
        let entries = vec![
            empty_entry(1, 1),
            batch_entry(2, 1, 0, 3),
            batch_entry(3, 1, 3, 2),
            empty_entry(4, 2),
            batch_entry(5, 2, 5, 5),
        ];
        leader.wl().append(&entries).unwrap();
        assert_eq!(leader.rl().start_at(0, 5), None, "nothing removed");
        assert_eq!(
            leader.rl().start_at(4, 5),
            Some(LogStart {
                index: 2,
                term: 1,
                offset: 3
            }),
            "entry 3 still has a message at 4"
        );
        let start = leader.rl().start_at(5, 5).unwrap();
        assert_eq!(
            start,
            LogStart {
                index: 4,
                term: 2,
                offset: 5
            }
        );
        assert_eq!(
            leader.rl().start_at(10, 3),
            Some(LogStart {
                index: 3,
                term: 1,
                offset: 5
            }),
            "never past the limit"
        );
        leader.wl().compact(start);
        assert_eq!(leader.first_index().unwrap(), 5);
        assert_eq!(leader.term(4).unwrap(), 2);
        assert!(leader.term(3).is_err());
        assert!(matches!(
            leader.entries(4, 6, None, GetEntriesContext::empty(true)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let got = leader
            .entries(5, 6, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(got, entries[4..].to_vec());
        let snapshot = leader.snapshot(0, 2).unwrap();
        assert_eq!(snapshot.get_metadata().index, 4);
        assert_eq!(snapshot.get_metadata().term, 2);
        assert_eq!(
            snapshot.get_metadata().get_conf_state().voters,
            vec![1, 2, 3]
        );
        assert_eq!(decode_snapshot(&snapshot).unwrap().start, start);
    }

    #[test]
    fn a_follower_installs_a_snapshots_start_and_appends_after_it() {
        let start = LogStart {
            index: 4,
            term: 2,
            offset: 5,
        };
        let mut snapshot = Snapshot {
            data: snapshot_data(start.offset, &[(OffsetOwner::Group(3), 4)]),
            ..Snapshot::default()
        };
        snapshot.mut_metadata().index = start.index;
        snapshot.mut_metadata().term = start.term;
        snapshot
            .mut_metadata()
            .set_conf_state(ConfState::from((vec![1, 2, 3], vec![])));
        assert_eq!(decode_snapshot(&snapshot).unwrap().start, start);
        let entries = [empty_entry(1, 1), batch_entry(2, 1, 0, 3)];
        let follower = storage();
        follower.wl().append(&entries[..2]).unwrap();
        follower
            .wl()
            .install(start, snapshot.get_metadata().get_conf_state().clone());
        assert_eq!(follower.first_index().unwrap(), 5);
        assert_eq!(follower.last_index().unwrap(), 4);
        assert_eq!(follower.rl().end_offset(), 5);
        assert_eq!(follower.rl().hard_state.commit, 4);
        follower.wl().append(&[batch_entry(5, 2, 5, 5)]).unwrap();
        assert_eq!(follower.rl().end_offset(), 10);

        let mut bad = snapshot.clone();
        bad.data = Bytes::from_static(b"not a snapshot");
        assert!(decode_snapshot(&bad).is_err());
    }
}
