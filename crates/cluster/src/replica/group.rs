//! One partition group on one replica: its `RawNode`, driven by a task of the partition's
//! shard, over the partition log, its `raft.records` and its `raft_state`.
//!
//! * **The leader stamps** a send before proposing it: offsets after its log's last entry
//!   (committed or not), a timestamp never below its newest, ids for id 0, checksums. The
//!   entry's data is the stamped batch, its context what the record says; followers append
//!   the bytes verbatim (`PartitionLog::append_stamped`).
//! * **A Ready** is handled in raft-rs's order: a leader's messages leave at once; entries
//!   are made durable (an uncommitted tail they replace is cut from the log and the records
//!   first; "durable" is written under `fsync = "interval"` or `"never"`, fdatasynced under
//!   `"always"`); a changed term or vote is saved and fdatasynced; committed entries are
//!   applied; the messages that waited for the write leave.
//! * **Apply** moves the high watermark (the offset after the last committed batch), wakes
//!   long polls parked on [`GroupView::wait_for_commit`], and answers this node's sends: success when the committed entry is the one
//!   proposed (same term), [`ReplicaError::Replaced`] when another leader's entry took its
//!   index. With `ack = "leader"` a send is answered once the leader's own write is durable.
//! * Nothing reads above the high watermark: the log holds uncommitted batches (it is the
//!   Raft log), and the server bounds polls by [`GroupView::high_watermark`].
//!
//! **One driver per shard** (thread) runs every group of that shard, as TiKV's batch system
//! runs its regions: a group has no task, timer or queue of its own. The driver takes what
//! the shard's groups were sent from one queue (each input tagged with its group), ticks them
//! all from one timer, and after each batch of inputs runs a **round**: every group touched
//! handles its Ready, the rounds' writes and fdatasyncs of all of them side by side, and the
//! next batch gathers meanwhile. A group's Ready is persisted before its round ends (the
//! asynchronous `advance_append_async` pipeline of the design is not built).

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    path::{Path, PathBuf},
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use futures_util::future::{Either, join, join_all, select};
use galgo_protocol::message::{self, MessageView};
use galgo_storage::{
    AppendReceipt, FsyncMode, LogStart, OffsetOwner, PartitionLog, RaftRecord, RaftRecords,
    RecordKind, ReplicaState, ReplicaStateFile, SnapshotIntent,
};
use raft::{
    Config, RawNode, StateRole,
    eraftpb::{Entry, HardState, Message, MessageType, Snapshot},
};
use thiserror::Error;

use super::storage::{EntryMeta, PartitionStorage, decode_snapshot};
use crate::{
    log_bridge,
    send_reports::SendReports,
    settings::{Ack, ELECTION_TICKS, HEARTBEAT_TICKS},
};

/// Inputs queued for a shard's groups before new messages are dropped (Raft resends) and
/// forwarded proposals refused.
const INPUTS_MAX: usize = 16_384;
/// Inputs a driver handles before its round.
const INPUTS_PER_ROUND: usize = 1024;
/// Largest append message.
const MESSAGE_BYTES_MAX: u64 = 1 << 20;
/// Append messages in flight per follower.
const INFLIGHT_MESSAGES_MAX: usize = 64;
/// How often a leader that is not the preferred one checks whether to hand leadership back
/// (two election timeouts, so that a failover settles first).
const REBALANCE_TICKS: u32 = 2 * ELECTION_TICKS as u32;
/// Ticks between saves of a moved commit (one election timeout).
const COMMIT_SAVE_TICKS: u32 = ELECTION_TICKS as u32;
/// Bytes of applied entries kept in memory for followers slightly behind.
const APPLIED_WINDOW_BYTES: u64 = 8 << 20;

/// What a group acts on.
pub enum GroupInput {
    /// A message from a peer.
    Message(Message),
    /// A send to propose (leader only).
    Propose(Proposal),
    /// A consumer offset write to propose (leader only).
    ProposeOffset(OffsetProposal),
    /// The tick.
    Tick,
    /// The group was handed to its shard's driver (wakes the driver to take it).
    Started,
    /// Stop the group (the partition is closed or deleted).
    Stop,
}

/// A send waiting for its outcome.
pub struct Proposal {
    /// The messages as the client sent them.
    pub messages: BytesMut,
    /// How many.
    pub count: u32,
    /// The server time, µs.
    pub now_us: u64,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<AppendReceipt, ReplicaError>>,
}

/// A consumer offset write waiting for its outcome: answered once applied on the leader (in
/// either ack mode: the leader's next poll must see it), with the entry's index.
pub struct OffsetProposal {
    /// Whose offset.
    pub owner: OffsetOwner,
    /// The offset to store; `None` deletes it.
    pub offset: Option<u64>,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<u64, ReplicaError>>,
}

/// Why a send was not acknowledged.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ReplicaError {
    /// This replica does not lead the group; the leader it knows, if any.
    #[error("this node does not lead the partition (leader: {0:?})")]
    NotLeader(Option<u64>),
    /// Another leader's entry took the proposal's index: it was not stored.
    #[error("the batch was replaced by another leader's entries and not stored")]
    Replaced,
    /// The batch is malformed.
    #[error("invalid batch: {0}")]
    InvalidBatch(String),
    /// The log could not be written; the outcome is unknown.
    #[error("partition storage: {0}")]
    Storage(String),
    /// The group stopped before the outcome was known.
    #[error("the partition group stopped")]
    Stopped,
    /// A snapshot from the leader replaced this replica's log before the outcome was known
    /// (the batch may have been committed).
    #[error("a snapshot replaced the log before the batch's outcome was known")]
    Superseded,
    /// An offset to store past the committed messages, or none stored to delete.
    #[error("no such offset: past the committed messages, or none stored")]
    InvalidOffset,
}

/// How a group is set up.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The group's id (never reused).
    pub group: u64,
    /// This node.
    pub node_id: u64,
    /// The replicas.
    pub voters: Vec<u64>,
    /// The replica that campaigns first in a new group.
    pub preferred_leader: u64,
    /// When a send is acknowledged.
    pub ack: Ack,
    /// Raft's tick.
    pub tick: Duration,
}

/// What the shard sees of a group: who leads, and how far it committed.
#[derive(Debug)]
pub struct GroupView {
    group: u64,
    node_id: u64,
    leader: Cell<u64>,
    term: Cell<u64>,
    high_watermark: Cell<u64>,
    /// Index of the last applied entry.
    applied: Cell<u64>,
    /// Notified when the high watermark or the applied index moves, the leader changes or the
    /// group stops.
    committed: event_listener::Event,
    stopped: Cell<bool>,
    /// Set by [`GroupHandle::stop`]: the group's task ends at its next pass (its tick wakes
    /// it even when its queue was too full to take the stop).
    stop_requested: Cell<bool>,
}

impl GroupView {
    /// The group's id.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// This node.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// Waits until the high watermark passes `end` or the group stops: what a long poll of
    /// a replicated partition parks on. Costs nothing while it waits; the apply wakes it.
    pub async fn wait_for_commit(&self, end: u64) {
        let moved = || self.high_watermark.get() > end || self.stopped.get();
        if moved() {
            return;
        }
        let listener = self.committed.listen();
        if moved() {
            return;
        }
        listener.await;
    }

    /// Waits until this replica applied the entry at `index` or the group stops: an offset
    /// write forwarded to the leader is visible here once it returns.
    pub async fn wait_for_applied(&self, index: u64) {
        let applied = || self.applied.get() >= index || self.stopped.get();
        loop {
            if applied() {
                return;
            }
            let listener = self.committed.listen();
            if applied() {
                return;
            }
            listener.await;
        }
    }

    /// The leader this replica knows (None during an election).
    pub fn leader(&self) -> Option<u64> {
        Some(self.leader.get()).filter(|&leader| leader != 0)
    }

    /// The leader, waiting up to `wait` for one to be known (an election).
    pub async fn wait_for_leader(&self, wait: Duration) -> Option<u64> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            if self.stopped.get() {
                return None;
            }
            let listener = self.committed.listen();
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || compio::time::timeout(left, listener).await.is_err() {
                return self.leader();
            }
        }
    }

    /// Waits until the leader is no longer `leader` (an election started or ended), or the
    /// group stops.
    pub async fn wait_for_leader_change(&self, leader: u64) {
        let changed = || self.leader.get() != leader || self.stopped.get();
        loop {
            if changed() {
                return;
            }
            let listener = self.committed.listen();
            if changed() {
                return;
            }
            listener.await;
        }
    }

    /// True once the group stopped on its own: its storage failed (a full disk), nobody asked
    /// it to.
    pub fn failed(&self) -> bool {
        self.stopped.get() && !self.stop_requested.get()
    }

    /// Waits until the group stops, asked to or not.
    pub async fn wait_stopped(&self) {
        loop {
            if self.stopped.get() {
                return;
            }
            let listener = self.committed.listen();
            if self.stopped.get() {
                return;
            }
            listener.await;
        }
    }

    /// True while this replica leads.
    pub fn is_leader(&self) -> bool {
        self.leader.get() == self.node_id
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term.get()
    }

    /// The offset after the last committed message: polls read below it only.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.get()
    }
}

/// Where a group's inputs go: its shard's queue, tagged with the group's slot in its driver
/// (not its group id: replicas of one group on one thread, as in tests, are distinct groups
/// of the driver).
#[derive(Clone, Debug)]
pub struct GroupInbox {
    slot: u64,
    queue: flume::Sender<(u64, GroupInput)>,
}

/// An input was not queued: the shard's queue is full, or its driver is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotQueued;

impl GroupInbox {
    /// Queues `input` if there is room.
    pub fn try_send(&self, input: GroupInput) -> Result<(), NotQueued> {
        self.queue
            .try_send((self.slot, input))
            .map_err(|_| NotQueued)
    }

    /// Queues `input`, waiting for room.
    pub async fn send_async(&self, input: GroupInput) -> Result<(), NotQueued> {
        self.queue
            .send_async((self.slot, input))
            .await
            .map_err(|_| NotQueued)
    }

    /// An inbox for slot `slot` on `queue` (tests of what routes inputs).
    #[cfg(test)]
    pub(crate) fn new(slot: u64, queue: flume::Sender<(u64, GroupInput)>) -> Self {
        Self { slot, queue }
    }
}

/// A running group: what the shard sends it.
#[derive(Clone)]
pub struct GroupHandle {
    inputs: GroupInbox,
    view: Rc<GroupView>,
}

impl std::fmt::Debug for GroupHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHandle")
            .field("view", &self.view)
            .finish_non_exhaustive()
    }
}

impl GroupHandle {
    /// The group's view.
    pub fn view(&self) -> &Rc<GroupView> {
        &self.view
    }

    /// Hands a peer's message to the group; dropped when its queue is full (Raft resends).
    pub fn step(&self, message: Message) {
        let _ = self.inputs.try_send(GroupInput::Message(message));
    }

    /// Proposes a send and waits for its outcome (see the module page). The caller bounds
    /// the wait: an entry that neither commits nor is replaced (no quorum) has no outcome.
    pub async fn propose(
        &self,
        messages: BytesMut,
        count: u32,
        now_us: u64,
    ) -> Result<AppendReceipt, ReplicaError> {
        let (reply, outcome) = oneshot::channel();
        let proposal = Proposal {
            messages,
            count,
            now_us,
            reply,
        };
        self.ask(GroupInput::Propose(proposal), outcome).await
    }

    /// Queues `input` and waits for the outcome it carries the sender of.
    async fn ask<T>(
        &self,
        input: GroupInput,
        outcome: oneshot::Receiver<Result<T, ReplicaError>>,
    ) -> Result<T, ReplicaError> {
        self.inputs
            .send_async(input)
            .await
            .map_err(|_| ReplicaError::Stopped)?;
        outcome.await.map_err(|_| ReplicaError::Stopped)?
    }

    /// Proposes a consumer offset write (`None` deletes) and waits for its outcome: the
    /// index of its entry, once applied here.
    pub async fn propose_offset(
        &self,
        owner: OffsetOwner,
        offset: Option<u64>,
    ) -> Result<u64, ReplicaError> {
        let (reply, outcome) = oneshot::channel();
        let proposal = OffsetProposal {
            owner,
            offset,
            reply,
        };
        self.ask(GroupInput::ProposeOffset(proposal), outcome).await
    }

    /// The group's inbox, for the router to hand it peers' messages.
    pub fn inputs(&self) -> GroupInbox {
        self.inputs.clone()
    }

    /// Stops the group: its driver lets go of it at its next round, without handling what is
    /// queued for it.
    pub fn stop(&self) {
        self.view.stop_requested.set(true);
        let _ = self.inputs.try_send(GroupInput::Stop);
    }
}

/// Where a group's messages to peers go: false when one was dropped.
pub type Sink = Rc<dyn Fn(u64, Message) -> bool>;

/// Opens the group of the partition whose log is `log` and whose directory is `dir`, and
/// hands it to this runtime's (the partition's shard's) driver.
pub async fn start_group(
    config: GroupConfig,
    dir: &Path,
    log: Rc<PartitionLog>,
    sink: Sink,
) -> Result<GroupHandle, String> {
    let opened = open_replica(&config, dir, &log).await?;
    let raft_config = Config {
        id: config.node_id,
        election_tick: ELECTION_TICKS,
        heartbeat_tick: HEARTBEAT_TICKS,
        applied: opened.saved.commit,
        pre_vote: true,
        check_quorum: true,
        max_size_per_msg: MESSAGE_BYTES_MAX,
        max_inflight_msgs: INFLIGHT_MESSAGES_MAX,
        ..Config::default()
    };
    let fail = |what: &str, error: &dyn std::fmt::Display| {
        format!(
            "partition group {} in {}: {what}: {error}",
            config.group,
            dir.display()
        )
    };
    raft_config
        .validate()
        .map_err(|error| fail("config", &error))?;
    let logger = log_bridge::logger(config.group, config.node_id);
    let storage = opened.storage.clone().with_log(log.clone());
    let mut node =
        RawNode::new(&raft_config, storage, &logger).map_err(|error| fail("raft", &error))?;
    if opened.new && config.preferred_leader == config.node_id {
        let _ = node.campaign();
    }
    let view = Rc::new(GroupView {
        group: config.group,
        node_id: config.node_id,
        leader: Cell::new(0),
        term: Cell::new(opened.saved.term),
        high_watermark: Cell::new(opened.storage.rl().end_offset_at(opened.saved.commit)),
        applied: Cell::new(opened.saved.commit),
        committed: event_listener::Event::new(),
        stopped: Cell::new(false),
        stop_requested: Cell::new(false),
    });
    // Nothing above the durably committed entries is ever removed by retention.
    log.set_retention_end(opened.storage.rl().end_offset_at(opened.saved.commit));
    let group = Group {
        config: config.clone(),
        node,
        storage: opened.storage,
        log,
        records: opened.records,
        retention_commit: opened.saved.commit,
        saver: StateSaver::new(opened.state_file, opened.saved),
        sink,
        view: view.clone(),
        pending: HashMap::new(),
        last_stamp: 0,
        reports: SendReports::default(),
        follow_retention: false,
        ticks: 0,
        leading_ticks: 0,
        dir: dir.to_path_buf(),
    };
    let inputs = drive_on_this_shard(group);
    Ok(GroupHandle { inputs, view })
}

/// A replica's files, opened and brought in step with its log.
struct Opened {
    state_file: ReplicaStateFile,
    records: RaftRecords,
    saved: ReplicaState,
    storage: PartitionStorage,
    /// No state was saved before: a new group.
    new: bool,
}

/// Opens `raft_state` and `raft.records` (creating a new group's), cuts the records and the
/// log to their common prefix and builds the storage, the entries above the commit loaded.
async fn open_replica(
    config: &GroupConfig,
    dir: &Path,
    log: &PartitionLog,
) -> Result<Opened, String> {
    let fail = |what: &str, error: &dyn std::fmt::Display| {
        format!(
            "partition group {} in {}: {what}: {error}",
            config.group,
            dir.display()
        )
    };
    let (mut state_file, saved) = ReplicaStateFile::open(dir)
        .await
        .map_err(|error| fail("raft_state", &error))?;
    let (mut records_file, mut records) = RaftRecords::open(dir)
        .await
        .map_err(|error| fail("raft.records", &error))?;
    let new = saved.is_none();
    let mut saved = saved.unwrap_or_else(|| ReplicaState {
        voters: config.voters.clone(),
        log_start: LogStart {
            index: 0,
            term: 0,
            offset: log.next_offset(),
        },
        ..ReplicaState::default()
    });
    recover(
        config.group,
        dir,
        log,
        &mut state_file,
        &mut saved,
        &mut records_file,
        &mut records,
    )
    .await
    .map_err(|error| fail("recovery", &error))?;
    let last_index = saved.log_start.index + records.len() as u64;
    if saved.commit > last_index {
        tracing::warn!(
            group = config.group,
            commit = saved.commit,
            last_index,
            "commit past the durable records (power lost under fsync = \"interval\"?); lowered"
        );
        saved.commit = last_index;
    }
    if new {
        state_file
            .save(&saved)
            .await
            .map_err(|error| fail("raft_state", &error))?;
    }
    let hard_state = HardState {
        term: saved.term,
        vote: saved.vote,
        commit: saved.commit,
        ..HardState::default()
    };
    let storage =
        PartitionStorage::new(hard_state, saved.voters.clone(), saved.log_start, &records)?;
    load_unapplied(&storage, log, saved.commit)
        .await
        .map_err(|error| fail("reading uncommitted entries", &error))?;
    Ok(Opened {
        state_file,
        records: records_file,
        saved,
        storage,
        new,
    })
}

/// Finishes what a crash interrupted, a snapshot install (its intent is still there) or the
/// rewrite of the records after retention moved the log start (records below it are left),
/// then cuts the records and the log to their common prefix.
async fn recover(
    group: u64,
    dir: &Path,
    log: &PartitionLog,
    state_file: &mut ReplicaStateFile,
    saved: &mut ReplicaState,
    records_file: &mut RaftRecords,
    records: &mut Vec<RaftRecord>,
) -> Result<(), String> {
    let intent = SnapshotIntent::read(dir)
        .await
        .map_err(|error| error.to_string())?;
    if let Some(start) = intent {
        tracing::warn!(
            group,
            index = start.index,
            offset = start.offset,
            "finishing a snapshot install a crash interrupted"
        );
        saved.log_start = start;
        saved.commit = saved.commit.max(start.index);
        state_file
            .save(saved)
            .await
            .map_err(|error| error.to_string())?;
        restart_log(dir, log, records_file, start.offset).await?;
        records.clear();
    }
    // Records of entries retention removed, left by a crash before the file was rewritten.
    if records
        .first()
        .is_some_and(|record| record.index <= saved.log_start.index)
    {
        records.retain(|record| record.index > saved.log_start.index);
        records_file
            .compact_below(saved.log_start.index + 1)
            .await
            .map_err(|error| error.to_string())?;
    }
    reconcile(log, records_file, records, saved.log_start).await
}

/// Cuts the records and the log to their common prefix: records whose batches the log lost
/// (its unsynced tail), and messages no record describes (written before their records).
async fn reconcile(
    log: &PartitionLog,
    file: &mut RaftRecords,
    records: &mut Vec<RaftRecord>,
    log_start: LogStart,
) -> Result<(), String> {
    if log.next_offset() < log_start.offset {
        // The log lost its unsynced tail below where Raft's log starts (power lost under
        // fsync = "interval" after retention moved the start): what is gone there is in the
        // snapshot the start stands for; start the log at the start.
        tracing::warn!(dir = %log.dir().display(), next = log.next_offset(),
            start = log_start.offset, "partition log behind its raft log start; restarted there");
        records.clear();
        file.truncate_from(0)
            .await
            .map_err(|error| error.to_string())?;
        log.reset_to(log_start.offset)
            .await
            .map_err(|error| error.to_string())?;
    }
    let log_end = log.next_offset();
    let before = records.len();
    while records.last().is_some_and(|record| {
        record.kind == RecordKind::Batch && record.first_offset + u64::from(record.count) > log_end
    }) {
        records.pop();
    }
    if records.len() < before {
        let from = log_start.index + 1 + records.len() as u64;
        tracing::warn!(dir = %log.dir().display(), from, "raft records past the log cut");
        file.truncate_from(from)
            .await
            .map_err(|error| error.to_string())?;
    }
    let records_end = records
        .iter()
        .rev()
        .find(|record| record.kind == RecordKind::Batch)
        .map_or(log_start.offset, |record| {
            record.first_offset + u64::from(record.count)
        });
    if log_end > records_end {
        tracing::warn!(dir = %log.dir().display(), from = records_end, to = log_end,
            "messages without raft records cut");
        log.truncate_from(records_end)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// The last steps of a snapshot install, after its intent and the new `raft_state` are
/// durable: the log restarts empty at `offset`, the records go, the intent is cleared.
async fn restart_log(
    dir: &Path,
    log: &PartitionLog,
    records: &mut RaftRecords,
    offset: u64,
) -> Result<(), String> {
    let storage_error = |error: galgo_storage::StorageError| error.to_string();
    log.reset_to(offset).await.map_err(storage_error)?;
    records.truncate_from(0).await.map_err(storage_error)?;
    records.sync().await.map_err(storage_error)?;
    SnapshotIntent::clear(dir).await.map_err(storage_error)
}

/// Loads the data of the entries above `commit` into the storage's window: raft-rs reads
/// them synchronously once they commit.
async fn load_unapplied(
    storage: &PartitionStorage,
    log: &PartitionLog,
    commit: u64,
) -> Result<(), String> {
    let last = storage.rl().last_index();
    let mut data = Vec::new();
    for index in commit + 1..=last {
        let meta = *storage.rl().meta(index).expect("held");
        data.push(read_batch(log, &meta).await?);
    }
    storage.wl().set_window(commit + 1, data);
    Ok(())
}

/// The stamped bytes of the batch `meta` describes, read back from the log (nothing for an
/// entry that is not a batch).
async fn read_batch(log: &PartitionLog, meta: &EntryMeta) -> Result<Bytes, String> {
    if meta.kind != RecordKind::Batch {
        return Ok(Bytes::new());
    }
    let mut out = BytesMut::with_capacity(meta.bytes as usize);
    let (mut offset, end) = (meta.first_offset, meta.end_offset());
    while offset < end {
        let polled = log
            .poll(offset, (end - offset) as u32)
            .await
            .map_err(|error| error.to_string())?;
        if polled.messages_count == 0 {
            return Err(format!("messages {offset}..{end} are missing from the log"));
        }
        for chunk in &polled.chunks {
            out.extend_from_slice(chunk);
        }
        offset += u64::from(polled.messages_count);
    }
    if out.len() as u64 != meta.bytes {
        return Err(format!(
            "batch at {} is {} bytes in the log, {} in its record",
            meta.first_offset,
            out.len(),
            meta.bytes
        ));
    }
    Ok(out.freeze())
}

/// The round of the `touched` groups (with whether an input asked each to stop): those with
/// nothing to write or read at once, the others side by side. The groups that stop.
async fn run_round(groups: &mut HashMap<u64, Group>, touched: &HashMap<u64, bool>) -> Vec<u64> {
    let mut stopped = Vec::new();
    let mut rounds = Vec::new();
    for (&id, group) in groups.iter_mut() {
        let Some(&stop) = touched.get(&id) else {
            continue;
        };
        match group.round_at_once(stop) {
            Some(true) => stopped.push(id),
            Some(false) => {}
            None => rounds.push(async move { (id, group.round(false).await) }),
        }
    }
    for (id, stop) in join_all(rounds).await {
        if stop {
            stopped.push(id);
        }
    }
    stopped
}

/// A shard's driver, as the groups it runs and the shard's code reach it.
struct ShardDriver {
    queue: flume::Sender<(u64, GroupInput)>,
    /// Groups opened and not taken by the driver yet, with their slots (a `Started` input
    /// follows each).
    starting: RefCell<Vec<(u64, Group)>>,
    /// The next group's slot.
    next_slot: Cell<u64>,
    /// The groups it runs.
    driven: Cell<usize>,
}

thread_local! {
    /// This shard's (thread's) drivers, by tick period.
    static DRIVERS: RefCell<HashMap<Duration, Rc<ShardDriver>>> = RefCell::new(HashMap::new());
}

/// Hands `group` to this shard's driver of its tick period, starting the driver when there is
/// none (or the runtime it ran on is gone); the group's inbox.
fn drive_on_this_shard(group: Group) -> GroupInbox {
    let every = group.config.tick;
    let driver = DRIVERS.with(|drivers| {
        let mut drivers = drivers.borrow_mut();
        if let Some(driver) = drivers.get(&every) {
            return driver.clone();
        }
        let (queue, queued) = flume::bounded(INPUTS_MAX);
        let driver = Rc::new(ShardDriver {
            queue,
            starting: RefCell::new(Vec::new()),
            next_slot: Cell::new(0),
            driven: Cell::new(0),
        });
        drivers.insert(every, driver.clone());
        compio::runtime::spawn(drive(driver.clone(), queued, every)).detach();
        driver
    });
    let slot = driver.next_slot.replace(driver.next_slot.get() + 1);
    driver.starting.borrow_mut().push((slot, group));
    let inbox = GroupInbox {
        slot,
        queue: driver.queue.clone(),
    };
    // Wakes the driver to take it; a full queue leaves that to its next tick.
    let _ = inbox.try_send(GroupInput::Started);
    inbox
}

/// How many groups this shard's (thread's) drivers run.
pub fn groups_driven_here() -> usize {
    DRIVERS.with(|drivers| {
        drivers
            .borrow()
            .values()
            .map(|driver| driver.driven.get() + driver.starting.borrow().len())
            .sum()
    })
}

/// Runs this shard's groups of tick period `every` until none is left: takes a batch of
/// inputs (or the tick), then runs the round of the groups they touched.
async fn drive(
    driver: Rc<ShardDriver>,
    queued: flume::Receiver<(u64, GroupInput)>,
    every: Duration,
) {
    // However the driver ends (its runtime dropped with it included), the next group of its
    // period starts another.
    struct Running(Duration);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = DRIVERS.try_with(|drivers| {
                if let Ok(mut drivers) = drivers.try_borrow_mut() {
                    drivers.remove(&self.0);
                }
            });
        }
    }
    let _running = Running(every);
    let mut groups: HashMap<u64, Group> = HashMap::new();
    let mut next_tick = Instant::now() + every;
    // One timer per tick, not one per batch of inputs.
    let mut tick = Box::pin(compio::time::sleep_until(next_tick));
    loop {
        let first = match select(queued.recv_async(), tick.as_mut()).await {
            Either::Left((Ok(input), _)) => Some(input),
            Either::Left((Err(_), _)) => return,
            Either::Right(((), _)) => None,
        };
        groups.extend(driver.starting.borrow_mut().drain(..));
        let mut touched: HashMap<u64, bool> = HashMap::new();
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + every;
            tick = Box::pin(compio::time::sleep_until(next_tick));
            for (&id, group) in &mut groups {
                // A stop whose input found the queue full is seen at the next tick.
                let stop = group.view.stop_requested.get() || group.handle(GroupInput::Tick);
                touched.insert(id, stop);
            }
        }
        let inputs = first
            .into_iter()
            .chain(std::iter::from_fn(|| queued.try_recv().ok()))
            .take(INPUTS_PER_ROUND);
        for (id, input) in inputs {
            let Some(group) = groups.get_mut(&id) else {
                continue;
            };
            let stop = touched.entry(id).or_default();
            if group.view.stop_requested.get() {
                *stop = true;
            } else if !*stop {
                *stop = group.handle(input);
            }
        }
        for id in run_round(&mut groups, &touched).await {
            if let Some(group) = groups.remove(&id) {
                group.finish();
            }
        }
        driver.driven.set(groups.len());
        if groups.is_empty() && driver.starting.borrow().is_empty() {
            // Nothing left to drive: the next group starts another driver.
            DRIVERS.with(|drivers| drivers.borrow_mut().remove(&every));
            let dropped = queued
                .drain()
                .filter(|(_, input)| !matches!(input, GroupInput::Tick | GroupInput::Started))
                .count();
            if dropped > 0 {
                tracing::debug!(dropped, "inputs for stopped groups dropped");
            }
            return;
        }
    }
}

/// The replica's `raft_state` and what it should hold: one save at a time, each writing the
/// state as it is when the save starts (a background commit save never writes an older term
/// or vote over a newer one).
#[derive(Clone)]
struct StateSaver {
    file: Rc<async_lock::Mutex<ReplicaStateFile>>,
    /// The commit of the last completed save.
    durable_commit: Rc<Cell<u64>>,
    state: Rc<RefCell<ReplicaState>>,
    /// A background save is queued or running.
    saving: Rc<Cell<bool>>,
    /// A background save failed.
    failed: Rc<Cell<bool>>,
}

impl StateSaver {
    /// The saver of `file`, whose newest state is `saved`.
    fn new(file: ReplicaStateFile, saved: ReplicaState) -> Self {
        Self {
            file: Rc::new(async_lock::Mutex::new(file)),
            durable_commit: Rc::new(Cell::new(saved.commit)),
            state: Rc::new(RefCell::new(saved)),
            saving: Rc::new(Cell::new(false)),
            failed: Rc::new(Cell::new(false)),
        }
    }

    async fn save_now(&self) -> Result<(), String> {
        let mut file = self.file.lock().await;
        let state = self.state.borrow().clone();
        file.save(&state).await.map_err(|error| error.to_string())?;
        self.durable_commit.set(state.commit);
        Ok(())
    }

    fn save_in_background(&self, group: u64) {
        if self.saving.replace(true) {
            return;
        }
        let saver = self.clone();
        compio::runtime::spawn(async move {
            if let Err(error) = saver.save_now().await {
                tracing::error!(group, %error, "cannot save a partition group's raft_state");
                saver.failed.set(true);
            }
            saver.saving.set(false);
        })
        .detach();
    }
}

/// A proposal of this node waiting for its entry to commit.
struct Pending {
    term: u64,
    waiter: Waiter,
}

/// Who waits for a proposal, and what they get.
enum Waiter {
    /// A send: its offsets.
    Batch {
        receipt: AppendReceipt,
        reply: oneshot::Sender<Result<AppendReceipt, ReplicaError>>,
    },
    /// A consumer offset write: its entry's index.
    Offset(oneshot::Sender<Result<u64, ReplicaError>>),
}

impl Pending {
    /// Answers the proposal at `index`.
    fn settle(self, index: u64, outcome: Result<(), ReplicaError>) {
        match self.waiter {
            Waiter::Batch { receipt, reply } => {
                let _ = reply.send(outcome.map(|()| receipt));
            }
            Waiter::Offset(reply) => {
                let _ = reply.send(outcome.map(|()| index));
            }
        }
    }
}

struct Group {
    config: GroupConfig,
    node: RawNode<PartitionStorage>,
    storage: PartitionStorage,
    log: Rc<PartitionLog>,
    records: RaftRecords,
    /// The replica's `raft_state`.
    saver: StateSaver,
    sink: Sink,
    view: Rc<GroupView>,
    /// This node's proposals by index.
    pending: HashMap<u64, Pending>,
    /// Timestamp of the newest batch this node stamped.
    last_stamp: u64,
    /// What this pass's sends leave for raft-rs to hear.
    reports: SendReports,
    /// Look at the partition log's first offset at the end of this pass (a tick, or an entry
    /// a follower needed was gone).
    follow_retention: bool,
    /// The durable commit the retention end was last set from.
    retention_commit: u64,
    /// Ticks since the commit was last saved.
    ticks: u32,
    /// Ticks this replica has led for (0 while it does not).
    leading_ticks: u32,
    dir: PathBuf,
}

impl Group {
    /// The group's part of its driver's round, after the inputs of the batch were handled
    /// (`stop`: one asked it to stop): its Ready, a moved commit saved now and then, its log
    /// start following retention; true when the group stops.
    async fn round(&mut self, stop: bool) -> bool {
        if stop {
            return true;
        }
        let mut stop = false;
        if let Err(error) = self.on_ready().await {
            // The log cannot be written: nothing more is promised from this replica.
            tracing::error!(group = self.config.group, dir = %self.dir.display(), %error,
                "partition group stopped: its log cannot be written");
            stop = true;
        }
        stop |= self.save_commit_now_and_then();
        if std::mem::take(&mut self.follow_retention) {
            self.follow_durable_commit();
            if let Err(error) = self.follow_retention().await {
                tracing::error!(group = self.config.group, %error,
                    "partition group stopped: its log start cannot be moved");
                stop = true;
            }
        }
        self.end_round(stop)
    }

    /// The round of a group with nothing to write or read, done at once with no future
    /// (most groups of an idle shard at each tick); `None` when it has something.
    fn round_at_once(&mut self, stop: bool) -> Option<bool> {
        if stop {
            return Some(true);
        }
        if self.node.has_ready() || self.storage.rl().has_fetches() {
            return None;
        }
        if self.follow_retention {
            self.follow_durable_commit();
            if self.log.first_offset() > self.storage.rl().log_start.offset {
                return None;
            }
            self.follow_retention = false;
        }
        let stop = self.save_commit_now_and_then();
        Some(self.end_round(stop))
    }

    /// Saves a moved commit once an election timeout of ticks passed; true when the group
    /// must stop (its `raft_state` cannot be written).
    fn save_commit_now_and_then(&mut self) -> bool {
        if self.ticks < COMMIT_SAVE_TICKS {
            return false;
        }
        let saved = self.save_commit();
        if let Err(error) = &saved {
            tracing::error!(group = self.config.group, %error,
                "partition group stopped: its raft_state cannot be written");
        }
        saved.is_err()
    }

    /// What every round ends with: raft-rs hears how the sends went, the view follows the
    /// leader and the term.
    fn end_round(&mut self, stop: bool) -> bool {
        self.reports.report(&mut self.node);
        if self.view.leader.replace(self.node.raft.leader_id) != self.node.raft.leader_id {
            self.view.committed.notify(usize::MAX);
        }
        self.view.term.set(self.node.raft.term);
        stop
    }

    /// The group stopped: what waits for it learns so.
    fn finish(mut self) {
        for (index, pending) in self.pending.drain() {
            pending.settle(index, Err(ReplicaError::Stopped));
        }
        self.view.leader.set(0);
        self.view.stopped.set(true);
        self.view.committed.notify(usize::MAX);
    }

    /// Handles one input; true to stop.
    fn handle(&mut self, input: GroupInput) -> bool {
        match input {
            GroupInput::Message(message) => {
                if let Err(error) = self.node.step(message) {
                    tracing::debug!(group = self.config.group, %error, "raft message not taken");
                }
            }
            GroupInput::Propose(proposal) => self.propose(proposal),
            GroupInput::ProposeOffset(proposal) => self.propose_offset(proposal),
            GroupInput::Tick => {
                self.node.tick();
                self.ticks += 1;
                self.follow_retention = true;
                self.leading_ticks = if self.node.raft.state == StateRole::Leader {
                    self.leading_ticks + 1
                } else {
                    0
                };
                // Half an election timeout off raft-rs's check-quorum, which clears every
                // peer's `recent_active` each election timeout until it hears from it again.
                if self.leading_ticks % REBALANCE_TICKS
                    == REBALANCE_TICKS / 2 + ELECTION_TICKS as u32 / 2
                {
                    self.hand_back_leadership();
                }
            }
            GroupInput::Started => {}
            GroupInput::Stop => return true,
        }
        false
    }

    /// A leader that is not the group's preferred one hands leadership back to it once it is
    /// reachable and holds the whole log (raft-rs's leader transfer: it campaigns at once),
    /// so that leaders spread over the nodes again after a failover. Each group decides alone.
    fn hand_back_leadership(&mut self) {
        let preferred = self.config.preferred_leader;
        let raft = &self.node.raft;
        if preferred == self.config.node_id || raft.lead_transferee.is_some() {
            return;
        }
        let last = raft.raft_log.last_index();
        let caught_up = raft
            .prs()
            .get(preferred)
            .is_some_and(|progress| progress.recent_active && progress.matched == last);
        if caught_up {
            tracing::debug!(
                group = self.config.group,
                to = preferred,
                "leadership handed back to the preferred replica"
            );
            self.node.transfer_leader(preferred);
        }
    }

    /// Where the next batch starts: after the last entry's messages, stable or not.
    fn next_offset(&self) -> u64 {
        self.node
            .raft
            .raft_log
            .unstable
            .entries
            .iter()
            .rev()
            .filter_map(|entry| EntryMeta::of(entry).ok())
            .find(|meta| meta.kind == RecordKind::Batch)
            .map_or_else(|| self.storage.rl().end_offset(), |meta| meta.end_offset())
    }

    fn propose(&mut self, proposal: Proposal) {
        if self.node.raft.state != StateRole::Leader {
            let leader = Some(self.node.raft.leader_id).filter(|&id| id != 0);
            let _ = proposal.reply.send(Err(ReplicaError::NotLeader(leader)));
            return;
        }
        let Proposal {
            messages,
            count,
            now_us,
            reply,
        } = proposal;
        let first_offset = self.next_offset();
        // Ids of committed batches only: a retry of a send that did not commit must pass.
        let (mut messages, count, duplicates_count) =
            self.log.drop_stored_ids(messages, count, now_us);
        if count == 0 {
            let _ = reply.send(Ok(AppendReceipt {
                first_offset,
                last_offset: first_offset.wrapping_sub(1),
                duplicates_count,
            }));
            return;
        }
        let timestamp = now_us.max(self.last_stamp).max(self.log.last_timestamp());
        if let Err(why) = stamp(&mut messages, count, first_offset, timestamp) {
            let _ = reply.send(Err(ReplicaError::InvalidBatch(why)));
            return;
        }
        let term = self.node.raft.term;
        let meta = EntryMeta::batch(term, first_offset, count, messages.len() as u64);
        let entry = Entry {
            data: messages.freeze(),
            context: meta.context(),
            ..Entry::default()
        };
        let index = match self.step_proposal(entry) {
            Ok(index) => index,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        self.last_stamp = timestamp;
        let receipt = AppendReceipt {
            first_offset,
            last_offset: first_offset + u64::from(count) - 1,
            duplicates_count,
        };
        self.pending.insert(
            index,
            Pending {
                term,
                waiter: Waiter::Batch { receipt, reply },
            },
        );
    }

    /// Proposes one entry on this leader; its index, or "not leader" when raft-rs dropped it
    /// (leadership lost, or a transfer under way).
    fn step_proposal(&mut self, entry: Entry) -> Result<u64, ReplicaError> {
        let message = Message {
            msg_type: MessageType::MsgPropose,
            from: self.config.node_id,
            entries: vec![entry].into(),
            ..Message::default()
        };
        if let Err(error) = self.node.step(message) {
            tracing::debug!(group = self.config.group, %error, "proposal dropped");
            let leader = Some(self.node.raft.leader_id).filter(|&id| id != self.config.node_id);
            return Err(ReplicaError::NotLeader(leader));
        }
        Ok(self.node.raft.raft_log.last_index())
    }

    /// A consumer offset write: an entry with no data whose record says whose offset and
    /// which (docs/architecture.md, "Consumer offsets"). The leader refuses an offset past
    /// its committed messages, and a delete of an offset it does not hold.
    fn propose_offset(&mut self, proposal: OffsetProposal) {
        let OffsetProposal {
            owner,
            offset,
            reply,
        } = proposal;
        if self.node.raft.state != StateRole::Leader {
            let leader = Some(self.node.raft.leader_id).filter(|&id| id != 0);
            let _ = reply.send(Err(ReplicaError::NotLeader(leader)));
            return;
        }
        let valid = match offset {
            Some(offset) => offset < self.view.high_watermark.get(),
            None => self.log.stored_offset(owner).is_some(),
        };
        if !valid {
            let _ = reply.send(Err(ReplicaError::InvalidOffset));
            return;
        }
        let term = self.node.raft.term;
        let meta = EntryMeta::offset_write(term, owner, offset);
        let entry = Entry {
            context: meta.context(),
            ..Entry::default()
        };
        let index = match self.step_proposal(entry) {
            Ok(index) => index,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        self.pending.insert(
            index,
            Pending {
                term,
                waiter: Waiter::Offset(reply),
            },
        );
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let (sink, group) = (&self.sink, self.config.group);
            self.reports.send(message, |message| sink(group, message));
        }
    }

    async fn on_ready(&mut self) -> Result<(), String> {
        loop {
            if self.node.has_ready() {
                self.handle_ready().await?;
            }
            let fetches = self.storage.wl().take_fetches();
            if fetches.is_empty() {
                return Ok(());
            }
            for fetch in fetches {
                let mut data = Vec::new();
                let mut bytes = 0;
                for index in fetch.low..fetch.high {
                    let Some(meta) = self.storage.rl().meta(index).copied() else {
                        break;
                    };
                    match read_batch(&self.log, &meta).await {
                        Ok(batch) => data.push((index, batch)),
                        Err(why) => {
                            // Retention removed it: the log start moves past it at the end
                            // of this pass, and that follower gets a snapshot instead.
                            tracing::debug!(group = self.config.group, index, %why,
                                "an entry a follower needs is gone from the log");
                            self.follow_retention = true;
                            break;
                        }
                    }
                    bytes += meta.bytes;
                    if bytes >= MESSAGE_BYTES_MAX {
                        break;
                    }
                }
                if data.is_empty() {
                    // Asked again at the follower's next answer.
                    continue;
                }
                self.storage.wl().fetched(data);
                self.node.on_entries_fetched(fetch.context);
                self.storage.wl().clear_fetched();
            }
        }
    }

    async fn handle_ready(&mut self) -> Result<(), String> {
        let mut ready = self.node.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot()).await?;
        }
        let entries = ready.take_entries();
        self.persist(&entries).await?;
        if let Some(hard_state) = ready.hs() {
            self.save_hard_state(hard_state.clone()).await?;
        }
        self.apply(ready.take_committed_entries()).await?;
        self.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.storage.wl().hard_state.commit = commit;
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries()).await?;
        self.node.advance_apply();
        let applied = self.node.raft.raft_log.applied;
        self.storage
            .wl()
            .release_window(applied + 1, APPLIED_WINDOW_BYTES);
        Ok(())
    }

    /// Follows the partition log's retention: the Raft log starts after the last entry whose
    /// messages are all gone (never past the durably committed entries), and the retention
    /// end follows the durable commit. Followers behind the new start get a snapshot.
    /// Retention may remove what the group durably committed: its end follows the saved
    /// commit.
    fn follow_durable_commit(&mut self) {
        let durable_commit = self.saver.durable_commit.get();
        if durable_commit != self.retention_commit {
            self.retention_commit = durable_commit;
            let end = self.storage.rl().end_offset_at(durable_commit);
            self.log.set_retention_end(end);
        }
    }

    /// The log start follows what retention removed ([`Group::follow_durable_commit`] first).
    async fn follow_retention(&mut self) -> Result<(), String> {
        let durable_commit = self.saver.durable_commit.get();
        let first_offset = self.log.first_offset();
        if first_offset <= self.storage.rl().log_start.offset {
            return Ok(());
        }
        let limit = durable_commit.min(self.node.raft.raft_log.applied);
        let Some(start) = self.storage.rl().start_at(first_offset, limit) else {
            return Ok(());
        };
        // raft_state first: a crash before the records are rewritten leaves records below
        // the start, which the next open drops.
        self.saver.state.borrow_mut().log_start = start;
        self.saver.save_now().await?;
        self.storage.wl().compact(start);
        self.records
            .compact_below(start.index + 1)
            .await
            .map_err(|error| error.to_string())?;
        tracing::debug!(
            group = self.config.group,
            index = start.index,
            offset = start.offset,
            "raft log start moved after retention"
        );
        Ok(())
    }

    /// Installs the leader's snapshot: this replica's log restarts, empty, where the
    /// leader's starts (its retention removed what lies below). An intent file makes the
    /// steps one: a crash part-way is finished at the next open.
    async fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), String> {
        let content = decode_snapshot(snapshot)?;
        let start = content.start;
        let conf_state = snapshot.get_metadata().get_conf_state().clone();
        let storage_error = |error: galgo_storage::StorageError| error.to_string();
        for (index, pending) in self.pending.extract_if(|&index, _| index <= start.index) {
            tracing::debug!(
                group = self.config.group,
                index,
                "a proposal's outcome superseded"
            );
            pending.settle(index, Err(ReplicaError::Superseded));
        }
        // The leader's stored offsets first: set semantics, so a crash before the rest
        // leaves newer offsets over an older log, which later entries set again.
        for (owner, _) in self.log.stored_offsets() {
            if !content.offsets.iter().any(|(kept, _)| *kept == owner) {
                self.log.delete_offset(owner).await.map_err(storage_error)?;
            }
        }
        for &(owner, offset) in &content.offsets {
            self.log
                .store_offset(owner, offset)
                .await
                .map_err(storage_error)?;
        }
        SnapshotIntent::write(&self.dir, start)
            .await
            .map_err(storage_error)?;
        {
            let mut saved = self.saver.state.borrow_mut();
            saved.log_start = start;
            saved.commit = saved.commit.max(start.index);
            saved.voters = conf_state.voters.clone();
        }
        self.saver.save_now().await?;
        restart_log(&self.dir, &self.log, &mut self.records, start.offset).await?;
        self.storage.wl().install(start, conf_state);
        self.view.applied.set(start.index);
        self.retention_commit = start.index;
        self.log.set_retention_end(start.offset);
        if start.offset > self.view.high_watermark.get() {
            self.view.high_watermark.set(start.offset);
            self.view.committed.notify(usize::MAX);
        }
        tracing::info!(
            group = self.config.group,
            index = start.index,
            offset = start.offset,
            "snapshot installed: the log restarts at the leader's log start"
        );
        Ok(())
    }

    /// Makes `entries` durable in the log and the records, cutting what they replace.
    async fn persist(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let storage_error = |error: galgo_storage::StorageError| error.to_string();
        if first.index <= self.storage.rl().last_index() {
            let cut_at = self.storage.rl().end_offset_at(first.index - 1);
            self.log
                .truncate_from(cut_at)
                .await
                .map_err(storage_error)?;
            self.records
                .truncate_from(first.index)
                .await
                .map_err(storage_error)?;
            for (index, pending) in self.pending.extract_if(|&index, _| index >= first.index) {
                tracing::debug!(group = self.config.group, index, "a proposal was replaced");
                pending.settle(index, Err(ReplicaError::Replaced));
            }
        }
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            let meta = EntryMeta::of(entry)?;
            if meta.kind == RecordKind::Batch {
                let receipt = self
                    .log
                    .append_stamped(entry.data.clone(), meta.count)
                    .await
                    .map_err(storage_error)?;
                if receipt.first_offset != meta.first_offset {
                    return Err(format!(
                        "entry {} starts at offset {} but the log is at {}",
                        entry.index, meta.first_offset, receipt.first_offset
                    ));
                }
            }
            records.push(meta.record(entry.index));
        }
        // The records and the log are written (and fdatasynced) side by side: an open cuts
        // both to their common prefix, so neither has to land first.
        let always = self.log.fsync_mode() == FsyncMode::Always;
        let records_file = &mut self.records;
        let records_written = async move {
            records_file.append(&records).await?;
            if always {
                records_file.sync().await?;
            }
            Ok(())
        };
        let (records_written, log_written) = join(records_written, self.log.flush(always)).await;
        records_written.and(log_written).map_err(storage_error)?;
        self.storage.wl().append(entries)?;
        if self.config.ack == Ack::Leader {
            for entry in entries {
                let durable_send = self.pending.get(&entry.index).is_some_and(|pending| {
                    pending.term == entry.term && matches!(pending.waiter, Waiter::Batch { .. })
                });
                if durable_send {
                    let pending = self.pending.remove(&entry.index).expect("present");
                    pending.settle(entry.index, Ok(()));
                }
            }
        }
        Ok(())
    }

    /// Saves a new term or vote at once (fdatasynced) before anything that depends on it
    /// leaves; a commit alone is saved with the next term or vote change or in the background
    /// every `COMMIT_SAVE_TICKS` ticks (a restart with an older commit only learns it again
    /// from the leader).
    async fn save_hard_state(&mut self, hard_state: HardState) -> Result<(), String> {
        let changed = {
            let saved = self.saver.state.borrow();
            hard_state.term != saved.term || hard_state.vote != saved.vote
        };
        self.storage.wl().hard_state = hard_state.clone();
        if changed {
            let commit = hard_state.commit.min(self.storage.rl().last_index());
            {
                let mut saved = self.saver.state.borrow_mut();
                saved.term = hard_state.term;
                saved.vote = hard_state.vote;
                saved.commit = saved.commit.max(commit);
            }
            self.saver.save_now().await?;
        }
        Ok(())
    }

    /// Saves a commit that moved since the last save, in the background: its fdatasync
    /// (hundreds of milliseconds on a busy disk) must not hold up the group.
    fn save_commit(&mut self) -> Result<(), String> {
        self.ticks = 0;
        if self.saver.failed.get() {
            return Err("the raft_state cannot be written".into());
        }
        let commit = {
            let storage = self.storage.rl();
            storage.hard_state.commit.min(storage.last_index())
        };
        if commit > self.saver.state.borrow().commit {
            self.saver.state.borrow_mut().commit = commit;
            self.saver.save_in_background(self.config.group);
        }
        Ok(())
    }

    /// Applies committed entries: consumer offset writes reach the partition's stored
    /// offsets, this node's proposals are answered, the high watermark moves.
    async fn apply(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let (last_index, end) = (last.index, self.storage.rl().end_offset_at(last.index));
        let storage_error = |error: galgo_storage::StorageError| error.to_string();
        let now_us = now_us();
        for entry in &entries {
            let meta = EntryMeta::of(entry)?;
            if meta.kind == RecordKind::Batch {
                self.log.remember_ids(&entry.data, meta.count, now_us);
            }
            match meta.offset_target() {
                Some((owner, Some(offset))) => self
                    .log
                    .store_offset(owner, offset)
                    .await
                    .map_err(storage_error)?,
                Some((owner, None)) => {
                    self.log.delete_offset(owner).await.map_err(storage_error)?;
                }
                None => {}
            }
            if let Some(pending) = self.pending.remove(&entry.index) {
                let outcome = if pending.term == entry.term {
                    Ok(())
                } else {
                    Err(ReplicaError::Replaced)
                };
                pending.settle(entry.index, outcome);
            }
        }
        self.view.applied.set(last_index);
        if end > self.view.high_watermark.get() {
            self.view.high_watermark.set(end);
        }
        self.view.committed.notify(usize::MAX);
        Ok(())
    }
}

/// The wall clock in µs since the Unix epoch.
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

/// Stamps `count` client messages from `first_offset` on at `timestamp` (ids for id 0,
/// checksums), checking that the block holds exactly them.
fn stamp(messages: &mut [u8], count: u32, first_offset: u64, timestamp: u64) -> Result<(), String> {
    let mut at = 0;
    for k in 0..count {
        let size = MessageView::parse(&messages[at..])
            .ok_or("the block holds fewer messages than counted")?
            .size();
        message::stamp(
            &mut messages[at..at + size],
            first_offset + u64::from(k),
            timestamp,
            || uuid::Uuid::new_v4().as_u128(),
        );
        at += size;
    }
    if count == 0 || at != messages.len() {
        return Err("the block is not exactly the counted messages".into());
    }
    Ok(())
}
