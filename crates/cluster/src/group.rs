//! The metadata Raft group on shard 0: one `RawNode`, driven by one task that owns it.
//!
//! The task wakes for an [`Input`] (a peer's message, a local proposal, a tick), steps the
//! node, and handles its `Ready` in the order raft-rs asks: a leader's messages leave at once;
//! new entries and the hard state are made durable together (one fdatasynced record); then
//! committed entries are applied, messages that had to wait for the write leave, and the node
//! advances. Nothing else touches the `RawNode`, so nothing steps it between `ready()` and
//! `advance()`, even while a write or an apply awaits.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::Future,
    path::PathBuf,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_channel::oneshot;
use galgo_metadata::Change;
use raft::{
    Config, RawNode, Storage,
    eraftpb::{Entry, EntryType, HardState, Message, Snapshot},
};
use thiserror::Error;

use crate::{
    disks::Disks,
    group_log::{GroupLog, GroupStorage, OpenedLog},
    log_bridge,
    proposal::MetadataProposal,
    send_reports::SendReports,
    settings::{ELECTION_TICKS, HEARTBEAT_TICKS},
    transport::{self, CallServer, Outboxes},
    view::ClusterView,
    wire::METADATA_GROUP,
};

/// Inputs queued for the driver before their senders wait.
const INPUTS_MAX: usize = 4096;
/// Inputs handled before the driver looks at its `Ready`.
const INPUTS_PER_PASS: usize = 256;
/// How many (longest) election timeouts a proposal is retried before its caller hears that
/// no leader took it: 10 s at the default tick.
const PROPOSE_ELECTIONS_MAX: u32 = 5;
/// Largest append message (raft-rs's default 0 sends one entry per message).
const MESSAGE_BYTES_MAX: u64 = 1 << 20;
/// Append messages in flight per follower.
const INFLIGHT_MESSAGES_MAX: usize = 64;
/// How often a node that cannot write its Raft log tries again.
const PERSIST_RETRY: Duration = Duration::from_secs(1);

/// What the driver acts on.
pub enum Input {
    /// A message from a peer.
    Message(Message),
    /// A proposal from this node: its sequence number and its entry.
    Propose(u64, Vec<u8>),
    /// The tick.
    Tick,
}

/// How the node applies committed metadata: the server's apply path.
pub trait Applier: 'static {
    /// Applies `proposal` if this node's replica is at its `expected_version` (then true), or
    /// changes nothing (false). `replaying` is set for the entries applied from the log at
    /// start-up, before the node serves.
    fn apply(
        &self,
        proposal: MetadataProposal,
        replaying: bool,
    ) -> Pin<Box<dyn Future<Output = bool> + '_>>;

    /// The applied state, as a snapshot's data: what [`Applier::restore`] takes back.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the applied state with a snapshot's. `replaying` is set at start-up, before
    /// the node serves (the log starts from its snapshot); otherwise the leader sent it to
    /// this node, which was behind the leader's log start. Refuses data it cannot read,
    /// changing nothing.
    fn restore<'a>(
        &'a self,
        data: &'a [u8],
        replaying: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + 'a>>;
}

/// Why a proposal did not apply.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ProposeError {
    /// Another change applied first: prepare again against the newer replica.
    #[error("another metadata change came first")]
    Conflict,
    /// No leader took it in time (no quorum).
    #[error("no metadata leader took the change within {0:?}")]
    NoLeader(Duration),
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopped,
    /// A snapshot from the leader replaced this node's log before the change was seen to
    /// apply: it may or may not be part of it.
    #[error("a metadata snapshot from the leader came before the change's outcome was known")]
    Unknown,
}

/// This node's proposers that wait, by sequence, for their change's outcome.
type Waiters = Rc<RefCell<HashMap<u64, oneshot::Sender<Result<(), ProposeError>>>>>;

/// The handle shard 0 proposes through.
pub struct MetadataGroup {
    view: Arc<ClusterView>,
    inputs: flume::Sender<Input>,
    waiters: Waiters,
    next_sequence: Cell<u64>,
    dialers: RefCell<Option<transport::Dialers>>,
}

impl std::fmt::Debug for MetadataGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataGroup")
            .field("node", &self.view.node_id())
            .field("leader", &self.view.leader())
            .finish_non_exhaustive()
    }
}

impl MetadataGroup {
    /// Opens the group's log at `path`, applies what it holds up to its commit (with
    /// `replaying` set), binds the replication listener (its peers' calls served by `calls`)
    /// and starts the driver and its tick on this runtime (shard 0's);
    /// [`MetadataGroup::connect_peers`] then dials the peers.
    pub async fn start(
        view: Arc<ClusterView>,
        path: PathBuf,
        applier: Rc<dyn Applier>,
        calls: Rc<dyn CallServer>,
    ) -> Result<Rc<MetadataGroup>, String> {
        let settings = &view.settings;
        // The disk ids live beside the log (GroupLog::open makes the directory).
        let log_dir = path.parent().map(PathBuf::from).unwrap_or_default();
        let OpenedLog {
            log,
            storage,
            snapshot,
        } = GroupLog::open(
            path,
            settings.node_id,
            &settings.cluster_id,
            settings.voters(),
        )
        .await?;
        let storage = GroupStorage::new(storage, snapshot);
        let commit = replay(&storage, applier.as_ref()).await?;
        let config = Config {
            id: settings.node_id,
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            applied: commit,
            pre_vote: true,
            check_quorum: true,
            max_size_per_msg: MESSAGE_BYTES_MAX,
            max_inflight_msgs: INFLIGHT_MESSAGES_MAX,
            ..Config::default()
        };
        config.validate().map_err(|error| error.to_string())?;
        let logger = log_bridge::logger(METADATA_GROUP, settings.node_id);
        // Entries since the last snapshot count across restarts, so a node restarted more
        // often than it applies `metadata_snapshot_entries` still compacts.
        let compact_at =
            storage_compact_at(storage.snapshot_index(), settings.metadata_snapshot_entries);
        let node = RawNode::new(&config, storage, &logger).map_err(|error| error.to_string())?;
        let (inputs, queued) = flume::bounded(INPUTS_MAX);
        let disks = Rc::new(Disks::open(&log_dir).await?);
        transport::listen(view.clone(), inputs.clone(), disks.clone(), calls).await?;
        let (outboxes, dialers) = transport::outboxes(&view, disks.own());
        view.partitions.set_outboxes(outboxes.clone());
        let waiters = Rc::new(RefCell::new(HashMap::new()));
        let driver = Driver {
            node,
            log,
            outboxes,
            applier,
            view: view.clone(),
            waiters: waiters.clone(),
            queued,
            reports: SendReports::default(),
            pending: HashMap::new(),
            snapshot_entries: settings.metadata_snapshot_entries,
            compact_at,
        };
        compio::runtime::spawn(driver.run()).detach();
        compio::runtime::spawn(tick(inputs.clone(), settings.tick)).detach();
        tracing::info!(
            node = settings.node_id,
            cluster = %settings.cluster_id,
            voters = ?settings.voters(),
            replayed_to = commit,
            "metadata group started"
        );
        Ok(Rc::new(MetadataGroup {
            view,
            inputs,
            waiters,
            next_sequence: Cell::new(0),
            dialers: RefCell::new(Some(dialers)),
        }))
    }

    /// Dials the peers: once this node's client listeners are bound and their ports are in
    /// the view, so the handshake can tell them. Until then peers only dial in.
    pub fn connect_peers(&self) {
        if let Some(dialers) = self.dialers.borrow_mut().take() {
            dialers.start();
        }
    }

    /// Proposes `change`, prepared against metadata version `expected_version`, and waits
    /// until this node has applied it. A proposal no leader takes is sent again (it is safe
    /// to send twice: see [`MetadataProposal`]) for [`PROPOSE_ELECTIONS_MAX`] election
    /// timeouts.
    pub async fn propose(&self, expected_version: u64, change: Change) -> Result<(), ProposeError> {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence + 1);
        let proposal = MetadataProposal {
            origin: self.view.node_id(),
            sequence,
            expected_version,
            change,
        };
        let data = proposal.to_bytes();
        let (slot, mut outcome) = oneshot::channel();
        self.waiters.borrow_mut().insert(sequence, slot);
        let election = self.view.settings.election_timeout();
        let deadline = Instant::now() + election * PROPOSE_ELECTIONS_MAX;
        let retry = election / 2;
        let result = loop {
            if self
                .inputs
                .send_async(Input::Propose(sequence, data.clone()))
                .await
                .is_err()
            {
                break Err(ProposeError::Stopped);
            }
            let wait = retry.min(deadline.saturating_duration_since(Instant::now()));
            match compio::time::timeout(wait, &mut outcome).await {
                Ok(Ok(outcome)) => break outcome,
                Ok(Err(_)) => break Err(ProposeError::Stopped),
                Err(_) if Instant::now() >= deadline => {
                    break Err(ProposeError::NoLeader(election * PROPOSE_ELECTIONS_MAX));
                }
                Err(_) => {}
            }
        };
        self.waiters.borrow_mut().remove(&sequence);
        result
    }
}

/// Restores the log's snapshot, if any, and applies the entries after it up to the commit;
/// returns that commit.
async fn replay(storage: &GroupStorage, applier: &dyn Applier) -> Result<u64, String> {
    if let Ok(snapshot) = storage.snapshot(0, 0) {
        applier
            .restore(&snapshot.data, true)
            .await
            .map_err(|why| format!("the cluster log's snapshot cannot be restored: {why}"))?;
    }
    let commit = storage
        .initial_state()
        .map_err(|error| error.to_string())?
        .hard_state
        .commit;
    let first = storage.first_index().map_err(|error| error.to_string())?;
    if commit < first {
        return Ok(commit);
    }
    let entries = storage
        .entries(
            first,
            commit + 1,
            None,
            raft::GetEntriesContext::empty(false),
        )
        .map_err(|error| error.to_string())?;
    for entry in entries {
        if let Some(proposal) = proposal_of(&entry) {
            applier.apply(proposal, true).await;
        }
    }
    Ok(commit)
}

/// The proposal an entry carries; `None` for a leader's empty entry (or, logged, an entry no
/// proposal could be read from, which every node skips alike).
fn proposal_of(entry: &Entry) -> Option<MetadataProposal> {
    if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
        return None;
    }
    match MetadataProposal::from_bytes(&entry.data) {
        Ok(proposal) => Some(proposal),
        Err(why) => {
            tracing::error!(index = entry.index, %why, "unreadable metadata entry skipped");
            None
        }
    }
}

async fn tick(inputs: flume::Sender<Input>, every: Duration) {
    loop {
        compio::time::sleep(every).await;
        if inputs.send_async(Input::Tick).await.is_err() {
            return;
        }
    }
}

/// The applied index at which the next compaction is due, counted from the last one.
fn storage_compact_at(applied: u64, snapshot_entries: u64) -> u64 {
    applied.saturating_add(snapshot_entries)
}

struct Driver {
    node: RawNode<GroupStorage>,
    log: GroupLog,
    outboxes: Outboxes,
    applier: Rc<dyn Applier>,
    view: Arc<ClusterView>,
    waiters: Waiters,
    queued: flume::Receiver<Input>,
    /// What this pass's sends leave for raft-rs to hear.
    reports: SendReports,
    /// Applied entries between two compactions.
    snapshot_entries: u64,
    /// The applied index from which the next compaction is due.
    compact_at: u64,
    /// This node's proposals whose proposer still waits, by sequence: proposed again as soon
    /// as a new leader is known, rather than at the proposer's next retry.
    pending: HashMap<u64, Vec<u8>>,
}

impl Driver {
    async fn run(mut self) {
        while let Ok(input) = self.queued.recv_async().await {
            self.handle(input);
            for _ in 1..INPUTS_PER_PASS {
                let Ok(input) = self.queued.try_recv() else {
                    break;
                };
                self.handle(input);
            }
            self.on_ready().await;
            self.reports.report(&mut self.node);
            self.compact().await;
            let (leader, term) = (self.node.raft.leader_id, self.node.raft.term);
            let new_leader = leader != 0 && self.view.leader() != Some(leader);
            self.view.set_leader(leader, term);
            if new_leader {
                tracing::info!(
                    node = self.view.node_id(),
                    leader,
                    term,
                    "metadata group has a new leader"
                );
                self.propose_pending();
                self.on_ready().await;
            }
        }
    }

    fn handle(&mut self, input: Input) {
        let result = match input {
            Input::Message(message) => self.node.step(message),
            Input::Propose(sequence, data) => {
                let result = self.node.propose(Vec::new(), data.clone());
                self.pending.insert(sequence, data);
                result
            }
            Input::Tick => {
                self.node.tick();
                Ok(())
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "metadata group input not taken");
        }
    }

    /// Proposes again what this node's proposers still wait for (a new leader was elected, so
    /// what went to the old one may be lost); forgets what nobody waits for any more.
    fn propose_pending(&mut self) {
        let waiting = self.waiters.borrow();
        self.pending
            .retain(|sequence, _| waiting.contains_key(sequence));
        drop(waiting);
        for data in self.pending.values() {
            if let Err(error) = self.node.propose(Vec::new(), data.clone()) {
                tracing::debug!(%error, "metadata proposal not taken");
            }
        }
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let outboxes = &self.outboxes;
            self.reports
                .send(message, |message| outboxes.send(METADATA_GROUP, message));
        }
    }

    async fn on_ready(&mut self) {
        if !self.node.has_ready() {
            return;
        }
        let mut ready = self.node.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install(ready.snapshot().clone(), ready.hs()).await;
        }
        let entries = ready.take_entries();
        let hard_state = ready.hs().cloned();
        if !entries.is_empty() || hard_state.is_some() {
            let store = self.node.raft.raft_log.store.memory().clone();
            let durable = hard_state.unwrap_or_else(|| store.rl().hard_state().clone());
            self.persist(&durable, &entries).await;
            let mut core = store.wl();
            core.append(&entries)
                .expect("raft-rs hands out entries that follow the log");
            core.set_hardstate(durable);
        }
        self.apply(ready.take_committed_entries()).await;
        self.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let store = self.node.raft.raft_log.store.memory().clone();
            let mut durable = store.rl().hard_state().clone();
            durable.commit = commit;
            self.persist(&durable, &[]).await;
            store.wl().set_hardstate(durable);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries()).await;
        self.node.advance_apply();
    }

    /// Makes entries and hard state durable. A node that cannot write its Raft log (a full
    /// disk, an I/O error) must not vote or acknowledge what it may forget, so the driver waits
    /// here, retrying, and takes no part in the group meanwhile: no tick, no message, no vote.
    /// A leader's followers stop hearing it and elect another; the node serves what it has
    /// and goes on where it stopped once a write succeeds. (A failed append leaves the file
    /// as it was: the next one overwrites whatever part got written.)
    async fn persist(&self, hard_state: &HardState, entries: &[Entry]) {
        let mut failures = 0u64;
        while let Err(why) = self.log.append(hard_state, entries).await {
            if failures == 0 {
                tracing::error!(
                    %why,
                    "cannot write the cluster log: this node takes no part in the metadata \
                     group until a write succeeds (retrying every second)"
                );
            }
            failures += 1;
            compio::time::sleep(PERSIST_RETRY).await;
        }
        if failures > 0 {
            tracing::info!(failures, "the cluster log is writable again");
        }
    }

    /// Installs the leader's snapshot (this node was behind the leader's log start): the log
    /// is rewritten as the snapshot, then the applied state replaced by its data. Like
    /// [`Driver::persist`], a node that cannot write its log waits here, taking no part.
    async fn install(&mut self, snapshot: Snapshot, hard_state: Option<&HardState>) {
        let store = self.node.raft.raft_log.store.clone();
        let (index, term) = (snapshot.get_metadata().index, snapshot.get_metadata().term);
        let mut durable = hard_state
            .cloned()
            .unwrap_or_else(|| store.memory().rl().hard_state().clone());
        durable.commit = durable.commit.max(index);
        durable.term = durable.term.max(term);
        let mut failures = 0u64;
        while let Err(why) = self.log.rewrite(&snapshot, &durable, &[]).await {
            if failures == 0 {
                tracing::error!(%why, "cannot write the leader's metadata snapshot: this node \
                    takes no part in the metadata group until a write succeeds (retrying every second)");
            }
            failures += 1;
            compio::time::sleep(PERSIST_RETRY).await;
        }
        store
            .install(snapshot.clone(), durable)
            .expect("raft-rs hands over a snapshot past this log's start");
        // This node's proposals that still wait may be in the snapshot or not: their
        // proposers hear that the outcome is unknown rather than prepare them again.
        for sequence in std::mem::take(&mut self.pending).into_keys() {
            if let Some(waiter) = self.waiters.borrow_mut().remove(&sequence) {
                let _ = waiter.send(Err(ProposeError::Unknown));
            }
        }
        if let Err(why) = self.applier.restore(&snapshot.data, false).await {
            // Its log now starts at the snapshot: with the state behind it, every later entry
            // would be skipped, silently. A start on this log refuses it the same way.
            panic!(
                "the leader's metadata snapshot at index {index} cannot be restored ({why}): \
                 this node cannot follow the metadata group"
            );
        }
        self.compact_at = storage_compact_at(index, self.snapshot_entries);
        tracing::info!(
            node = self.view.node_id(),
            index,
            term,
            bytes = snapshot.data.len(),
            "metadata snapshot installed from the leader"
        );
    }

    /// Compacts the log into a snapshot of the applied state once `snapshot_entries` entries
    /// were applied since the last one. A failed rewrite leaves the log as it was, and the
    /// next try comes after as many entries again.
    async fn compact(&mut self) {
        let applied = self.node.raft.raft_log.applied;
        if applied < self.compact_at {
            return;
        }
        self.compact_at = storage_compact_at(applied, self.snapshot_entries);
        let store = self.node.raft.raft_log.store.clone();
        let Ok(term) = store.term(applied) else {
            return;
        };
        let state = store.initial_state().expect("memory storage answers");
        let mut snapshot = Snapshot {
            data: self.applier.snapshot().into(),
            ..Snapshot::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = applied;
        metadata.term = term;
        metadata.set_conf_state(state.conf_state);
        let last = store.last_index().expect("memory storage answers");
        let entries = if last > applied {
            store
                .entries(
                    applied + 1,
                    last + 1,
                    None,
                    raft::GetEntriesContext::empty(false),
                )
                .expect("the entries after the applied index are held")
        } else {
            Vec::new()
        };
        let compacted = applied - store.snapshot_index();
        match self
            .log
            .rewrite(&snapshot, &state.hard_state, &entries)
            .await
        {
            Ok(()) => {
                let bytes = snapshot.data.len();
                store.compact_to(snapshot);
                tracing::info!(
                    index = applied,
                    compacted,
                    kept = entries.len(),
                    bytes,
                    "metadata log compacted into a snapshot"
                );
            }
            Err(why) => tracing::warn!(%why, next_at = self.compact_at,
                "cannot compact the cluster log; it keeps its entries until the next try"),
        }
    }

    async fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            let Some(proposal) = proposal_of(&entry) else {
                continue;
            };
            let mine = (proposal.origin == self.view.node_id()).then_some(proposal.sequence);
            let applied = self.applier.apply(proposal, false).await;
            if let Some(sequence) = mine {
                self.pending.remove(&sequence);
                if let Some(waiter) = self.waiters.borrow_mut().remove(&sequence) {
                    let _ = waiter.send(if applied {
                        Ok(())
                    } else {
                        Err(ProposeError::Conflict)
                    });
                }
            }
        }
    }
}
