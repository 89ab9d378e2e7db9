//! Partition groups of three replicas in one process: real partition logs in temp
//! directories, Raft messages passed in memory through links a test can cut. Facts, not
//! timings: every wait is for a condition, bounded.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    path::PathBuf,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use galgo_cluster::{
    Ack,
    replica::{GroupConfig, GroupHandle, ReplicaError, Sink, groups_driven_here, start_group},
};
use galgo_protocol::message::{MessageIter, encode_message};
use galgo_storage::{
    DirectIo, FsyncMode, LogStart, OffsetOwner, PartitionLog, RaftRecords, RecordKind,
    SNAPSHOT_INTENT_FILE, SnapshotIntent, StorageConfig, TailCache,
};

const GROUP: u64 = 77;
const NODES: [u64; 3] = [1, 2, 3];
const WAIT: Duration = Duration::from_secs(20);

/// Three replicas and the links between them.
struct Replicas {
    temp: tempfile::TempDir,
    ack: Ack,
    handles: Rc<RefCell<HashMap<u64, GroupHandle>>>,
    logs: HashMap<u64, Rc<PartitionLog>>,
    /// Links (from, to) that drop everything.
    cut: Rc<RefCell<HashSet<(u64, u64)>>>,
}

fn storage_config() -> Rc<StorageConfig> {
    Rc::new(StorageConfig {
        segment_size_bytes: 256 << 10,
        journal_messages_max: 64,
        journal_bytes_max: 1 << 20,
        fsync: FsyncMode::Interval,
        direct_io: DirectIo::Auto,
    })
}

impl Replicas {
    async fn start(ack: Ack) -> Self {
        let mut replicas = Replicas {
            temp: tempfile::tempdir().unwrap(),
            ack,
            handles: Rc::default(),
            logs: HashMap::new(),
            cut: Rc::default(),
        };
        for node in NODES {
            replicas.start_node(node).await;
        }
        replicas
    }

    fn dir(&self, node: u64) -> PathBuf {
        self.temp.path().join(format!("node-{node}"))
    }

    async fn start_node(&mut self, node: u64) {
        let dir = self.dir(node);
        let (log, _) = PartitionLog::open(dir.clone(), storage_config(), &TailCache::new(1 << 20))
            .await
            .unwrap();
        let (handles, cut) = (self.handles.clone(), self.cut.clone());
        let sink: Sink = Rc::new(move |group, message| {
            assert_eq!(group, GROUP);
            let to = message.to;
            if !cut.borrow().contains(&(node, to))
                && let Some(handle) = handles.borrow().get(&to)
            {
                handle.step(message);
            }
            true
        });
        let config = GroupConfig {
            group: GROUP,
            node_id: node,
            voters: NODES.to_vec(),
            preferred_leader: 1,
            ack: self.ack,
            tick: Duration::from_millis(10),
        };
        let handle = start_group(config, &dir, log.clone(), sink).await.unwrap();
        self.handles.borrow_mut().insert(node, handle);
        self.logs.insert(node, log);
    }

    /// Stops a replica as a crash would leave it: its log is not closed.
    async fn stop_node(&mut self, node: u64) {
        let handle = self.handles.borrow_mut().remove(&node).unwrap();
        handle.stop();
        let view = handle.view().clone();
        drop(handle);
        wait_until("the stopped group let go of its view", || {
            Rc::strong_count(&view) == 1
        })
        .await;
        self.logs.remove(&node);
    }

    fn isolate(&self, node: u64, isolated: bool) {
        let mut cut = self.cut.borrow_mut();
        for other in NODES.into_iter().filter(|&other| other != node) {
            for link in [(node, other), (other, node)] {
                if isolated {
                    cut.insert(link);
                } else {
                    cut.remove(&link);
                }
            }
        }
    }

    fn leader_among(&self, nodes: &[u64]) -> Option<u64> {
        let handles = self.handles.borrow();
        nodes
            .iter()
            .copied()
            .find(|node| handles.get(node).is_some_and(|h| h.view().is_leader()))
    }

    async fn wait_leader(&self, among: &[u64]) -> u64 {
        let started = Instant::now();
        loop {
            if let Some(leader) = self.leader_among(among) {
                return leader;
            }
            assert!(started.elapsed() < WAIT, "no leader among {among:?}");
            compio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn propose(
        &self,
        node: u64,
        tag: &str,
        count: u32,
        bytes: usize,
    ) -> Result<(u64, u64), ReplicaError> {
        let handle = self.handles.borrow().get(&node).cloned();
        let handle = handle.expect("a running replica");
        let receipt = handle
            .propose(block(tag, count, bytes), count, now_us())
            .await?;
        Ok((receipt.first_offset, receipt.last_offset))
    }

    /// Proposes through whichever of `among` leads until the batch is stored (an election
    /// under load answers "not leader" or "replaced": not stored, so sent again).
    async fn propose_stored(&self, among: &[u64], tag: &str, count: u32, bytes: usize) {
        let started = Instant::now();
        loop {
            let leader = self.wait_leader(among).await;
            match self.propose(leader, tag, count, bytes).await {
                Ok(_) => return,
                Err(ReplicaError::NotLeader(_) | ReplicaError::Replaced) => {
                    assert!(started.elapsed() < WAIT, "{tag} never stored");
                }
                Err(error) => panic!("{tag}: {error}"),
            }
        }
    }

    /// Waits until every running replica committed `end` messages and holds the same bytes.
    async fn wait_agree(&self, end: u64) -> Vec<String> {
        let nodes: Vec<u64> = self.logs.keys().copied().collect();
        for &node in &nodes {
            let handles = self.handles.clone();
            wait_until("every replica committed everything", move || {
                handles.borrow()[&node].view().high_watermark() >= end
            })
            .await;
        }
        let mut contents = Vec::new();
        for &node in &nodes {
            let log = &self.logs[&node];
            assert_eq!(log.last_offset(), end.checked_sub(1), "node {node}'s log");
            contents.push(read_all(log).await);
        }
        for other in &contents[1..] {
            assert_eq!(other, &contents[0], "replicas hold the same messages");
        }
        contents.swap_remove(0)
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// `count` client messages whose payloads are `{tag}-{k}` padded to `bytes`.
fn block(tag: &str, count: u32, bytes: usize) -> BytesMut {
    let mut out = Vec::new();
    for k in 0..count {
        let mut payload = format!("{tag}-{k}").into_bytes();
        payload.resize(payload.len().max(bytes), b'.');
        encode_message(0, 1, &payload, b"", &mut out);
    }
    BytesMut::from(&out[..])
}

/// Every message's (offset, id, payload tag), checked contiguous with valid checksums.
async fn read_all(log: &PartitionLog) -> Vec<String> {
    read_from(log, 0).await
}

/// The messages from `from` on (from the log's first offset if that is later).
async fn read_from(log: &PartitionLog, from: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = from.max(log.first_offset());
    loop {
        let polled = log.poll(next, 10_000).await.unwrap();
        if polled.messages_count == 0 {
            return out;
        }
        for chunk in &polled.chunks {
            for view in MessageIter::new(chunk) {
                let view = view.unwrap();
                assert!(view.checksum_is_valid());
                assert_eq!(view.offset(), next);
                next += 1;
                let payload = String::from_utf8_lossy(view.payload());
                let tag = payload.trim_end_matches('.');
                out.push(format!("{}:{:x}:{tag}", view.offset(), view.id()));
            }
        }
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < WAIT, "timed out waiting: {what}");
        compio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The groups of a thread share one driver, which lets go of a group once it stopped.
#[compio::test]
async fn one_driver_runs_the_groups_of_a_thread_and_forgets_stopped_ones() {
    let mut replicas = Replicas::start(Ack::Majority).await;
    assert_eq!(groups_driven_here(), 3);
    let leader = replicas.wait_leader(&NODES).await;
    let follower = NODES.into_iter().find(|&node| node != leader).unwrap();
    replicas.stop_node(follower).await;
    wait_until("the stopped group is no longer driven", || {
        groups_driven_here() == 2
    })
    .await;
    // A restarted group is driven again, and the three store a batch.
    replicas.start_node(follower).await;
    assert_eq!(groups_driven_here(), 3);
    replicas.propose_stored(&NODES, "after", 1, 10).await;
}

/// A runtime made after another on the same thread (tests on one thread) gets a driver of
/// its own: the first one's went with its runtime.
#[test]
fn groups_of_a_later_runtime_on_the_same_thread_are_driven() {
    for _ in 0..2 {
        compio::runtime::Runtime::new().unwrap().block_on(async {
            let replicas = Replicas::start(Ack::Majority).await;
            replicas.wait_leader(&NODES).await;
        });
    }
}

#[compio::test]
async fn three_replicas_hold_the_same_committed_batches() {
    let replicas = Replicas::start(Ack::Majority).await;
    let leader = replicas.wait_leader(&NODES).await;
    let mut end = 0;
    for n in 0..20u32 {
        let count = 1 + n % 4;
        let (first, last) = replicas
            .propose(leader, &format!("b{n}"), count, 100)
            .await
            .unwrap();
        assert_eq!((first, last), (end, end + u64::from(count) - 1));
        end += u64::from(count);
    }
    let messages = replicas.wait_agree(end).await;
    assert_eq!(messages.len() as u64, end);
    assert!(messages[0].ends_with(":b0-0"));
    let follower = NODES.into_iter().find(|&node| node != leader).unwrap();
    assert_eq!(
        replicas.propose(follower, "x", 1, 10).await,
        Err(ReplicaError::NotLeader(Some(leader))),
        "a follower refuses sends and names the leader"
    );
    assert!(replicas.dir(leader).join("raft.records").exists());
}

#[compio::test]
async fn a_killed_leader_is_replaced_and_catches_up_after_a_restart() {
    let mut replicas = Replicas::start(Ack::Majority).await;
    let leader = replicas.wait_leader(&NODES).await;
    for n in 0..5 {
        replicas
            .propose(leader, &format!("a{n}"), 2, 50)
            .await
            .unwrap();
    }
    replicas.stop_node(leader).await;
    let others: Vec<u64> = NODES.into_iter().filter(|&node| node != leader).collect();
    let second = replicas.wait_leader(&others).await;
    for n in 0..5 {
        let (first, _) = replicas
            .propose(second, &format!("b{n}"), 3, 50)
            .await
            .unwrap();
        assert_eq!(first, 10 + 3 * n, "the new leader continues the offsets");
    }
    replicas.start_node(leader).await;
    let messages = replicas.wait_agree(25).await;
    assert!(messages[10].ends_with(":b0-0"));
    // Once back and caught up, the preferred replica (node 1) leads again.
    if leader == 1 {
        let handles = replicas.handles.clone();
        wait_until("the preferred replica leads again", move || {
            handles.borrow()[&1].view().is_leader()
        })
        .await;
        replicas.propose(1, "again", 1, 10).await.unwrap();
        replicas.wait_agree(26).await;
    }
    // The whole group restarts and keeps everything.
    for node in NODES {
        replicas.stop_node(node).await;
    }
    for node in NODES {
        replicas.start_node(node).await;
    }
    let end = replicas.logs[&1].last_offset().map_or(0, |last| last + 1);
    let leader = replicas.wait_leader(&NODES).await;
    replicas.propose(leader, "c", 1, 10).await.unwrap();
    assert_eq!(replicas.wait_agree(end + 1).await[..25], messages[..]);
}

#[compio::test]
async fn an_isolated_leaders_uncommitted_batches_are_replaced_not_stored() {
    let replicas = Replicas::start(Ack::Majority).await;
    let old = replicas.wait_leader(&NODES).await;
    replicas.propose(old, "kept", 2, 10).await.unwrap();
    replicas.wait_agree(2).await;
    replicas.isolate(old, true);
    // Sent to the isolated leader: written there, never committed.
    let proposer = replicas.handles.borrow()[&old].clone();
    let lost =
        compio::runtime::spawn(
            async move { proposer.propose(block("lost", 3, 10), 3, now_us()).await },
        );
    let old_log = replicas.logs[&old].clone();
    wait_until("the isolated leader wrote the batch", || {
        old_log.last_offset() == Some(4)
    })
    .await;
    let others: Vec<u64> = NODES.into_iter().filter(|&node| node != old).collect();
    let new = replicas.wait_leader(&others).await;
    replicas.propose(new, "won", 1, 10).await.unwrap();
    replicas.isolate(old, false);
    assert_eq!(lost.await.unwrap(), Err(ReplicaError::Replaced));
    let messages = replicas.wait_agree(3).await;
    assert!(messages[2].ends_with(":won-0"), "{messages:?}");
}

#[compio::test]
async fn a_follower_far_behind_catches_up_from_the_leaders_log() {
    let replicas = Replicas::start(Ack::Majority).await;
    let leader = replicas.wait_leader(&NODES).await;
    let behind = NODES.into_iter().find(|&node| node != leader).unwrap();
    replicas.isolate(behind, true);
    // More than the leader keeps in memory past its applied index (8 MiB): the follower's
    // entries come back from the leader's segments. Through whichever of the other two leads:
    // 12 MiB on a loaded machine can outlast a 10 ms tick's leadership (seen in CI).
    let others: Vec<u64> = NODES.into_iter().filter(|&node| node != behind).collect();
    for n in 0..48 {
        replicas
            .propose_stored(&others, &format!("big{n}"), 4, 64 << 10)
            .await;
    }
    replicas.isolate(behind, false);
    let messages = replicas.wait_agree(192).await;
    assert!(messages[191].ends_with(":big47-3"));
}

/// Retention on a replica, as the delete-segments command would: the sealed segments ending
/// at or below `end_offset_max`, as soon as the group lets it remove them.
async fn remove_what_retention_may(
    log: &PartitionLog,
    first_offset_at_least: u64,
    end_offset_max: u64,
) {
    let started = Instant::now();
    loop {
        log.remove_oldest_segments(u32::MAX, end_offset_max)
            .await
            .unwrap();
        if log.first_offset() >= first_offset_at_least {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "retention stayed at {} (wanted {first_offset_at_least})",
            log.first_offset()
        );
        compio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[compio::test]
async fn a_follower_behind_retention_catches_up_by_snapshot_and_after_a_torn_install() {
    let mut replicas = Replicas::start(Ack::Majority).await;
    let leader = replicas.wait_leader(&NODES).await;
    let behind = NODES.into_iter().find(|&node| node != leader).unwrap();
    let other = NODES
        .into_iter()
        .find(|&node| node != leader && node != behind)
        .unwrap();
    for n in 0..4 {
        replicas
            .propose_stored(&NODES, &format!("early{n}"), 2, 100)
            .await;
    }
    replicas.wait_agree(8).await;
    replicas.stop_node(behind).await;
    // An offset the stopped follower misses, whose entry retention then compacts away: the
    // snapshot carries it.
    let consumer = OffsetOwner::Consumer(9);
    replicas
        .write_offset(&[leader, other], consumer, Some(6))
        .await
        .unwrap();
    // 48 batches of 256 KiB over 256 KiB segments, then retention on the two that run:
    // what the stopped follower lacks is gone from every log that has it.
    for n in 0..48 {
        replicas
            .propose_stored(&[leader, other], &format!("big{n}"), 4, 64 << 10)
            .await;
    }
    let end = 8 + 48 * 4;
    for node in [leader, other] {
        let handles = replicas.handles.clone();
        wait_until("the running replicas committed everything", move || {
            handles.borrow()[&node].view().high_watermark() >= end
        })
        .await;
        // Retention waits for the commit to be saved (every election timeout).
        remove_what_retention_may(&replicas.logs[&node], 100, end - 20).await;
    }
    // Retention may have kept more on one of the two than on the other, and either may lead
    // when the follower returns: it catches up from whichever does.
    let kept_from = [leader, other]
        .map(|node| replicas.logs[&node].first_offset())
        .into_iter()
        .min()
        .unwrap();
    assert!(kept_from >= 100 && kept_from < end, "{kept_from} {end}");
    let leader = replicas.wait_leader(&[leader, other]).await;

    replicas.start_node(behind).await;
    let handles = replicas.handles.clone();
    wait_until("the restarted follower caught up", move || {
        handles.borrow()[&behind].view().high_watermark() >= end
    })
    .await;
    let restarted = &replicas.logs[&behind];
    assert!(
        restarted.first_offset() >= kept_from,
        "the follower's log restarted where a running replica's starts (a snapshot), not at {}",
        restarted.first_offset()
    );
    let from = restarted.first_offset();
    let holder = [leader, other]
        .into_iter()
        .find(|node| replicas.logs[node].first_offset() <= from)
        .unwrap();
    let expected = read_from(&replicas.logs[&holder], from).await;
    assert_eq!(read_from(restarted, from).await, expected);
    assert_eq!(expected.len() as u64, end - from);
    assert!(expected.last().unwrap().ends_with(":big47-3"));
    assert_eq!(
        restarted.stored_offset(consumer),
        Some(6),
        "from the snapshot"
    );

    // The restarted follower is a full member: with the other one gone, sends still commit.
    let other = if leader == other {
        NODES
            .into_iter()
            .find(|&node| node != leader && node != behind)
            .unwrap()
    } else {
        other
    };
    let leader = NODES
        .into_iter()
        .find(|&node| node != behind && node != other)
        .unwrap();
    replicas.stop_node(other).await;
    replicas
        .propose_stored(&[leader, behind], "after", 3, 10)
        .await;
    let handles = replicas.handles.clone();
    wait_until("the follower committed the new batch", move || {
        handles.borrow()[&behind].view().high_watermark() >= end + 3
    })
    .await;

    // A crash part-way through an install: the intent is found at open and the install is
    // finished (the log restarts at its start, the records go). The intent names the
    // follower's own last entry, so Raft loses nothing it acknowledged; the follower's log
    // then holds nothing below it, and it still commits what comes next (the other
    // follower is still down).
    replicas.stop_node(behind).await;
    let dir = replicas.dir(behind);
    let (_, records) = RaftRecords::open(&dir).await.unwrap();
    // Its last entry may be a new leader's empty one, after the last batch.
    let last = *records.last().unwrap();
    let last_batch = records
        .iter()
        .rev()
        .find(|record| record.kind == RecordKind::Batch)
        .unwrap();
    let start = LogStart {
        index: last.index,
        term: last.term,
        offset: last_batch.first_offset + u64::from(last_batch.count),
    };
    assert_eq!(start.offset, end + 3);
    SnapshotIntent::write(&dir, start).await.unwrap();
    replicas.start_node(behind).await;
    assert!(
        !dir.join(SNAPSHOT_INTENT_FILE).exists(),
        "the intent is cleared"
    );
    let restarted = &replicas.logs[&behind];
    assert_eq!(restarted.first_offset(), start.offset);
    assert_eq!(restarted.next_offset(), start.offset);
    replicas
        .propose_stored(&[leader, behind], "later", 2, 10)
        .await;
    let handles = replicas.handles.clone();
    wait_until(
        "the follower committed after the finished install",
        move || handles.borrow()[&behind].view().high_watermark() >= end + 5,
    )
    .await;
    let expected = read_from(&replicas.logs[&leader], start.offset).await;
    assert_eq!(
        read_from(&replicas.logs[&behind], start.offset).await,
        expected
    );
    assert_eq!(expected.len(), 2);
    assert!(expected[1].ends_with(":later-1"));
}

impl Replicas {
    /// Proposes an offset write through whichever of `among` leads until it is applied there
    /// (an election answers "not leader": not written, so sent again).
    async fn write_offset(
        &self,
        among: &[u64],
        owner: OffsetOwner,
        offset: Option<u64>,
    ) -> Result<u64, ReplicaError> {
        let started = Instant::now();
        loop {
            let leader = self.wait_leader(among).await;
            let handle = self.handles.borrow().get(&leader).cloned().unwrap();
            match handle.propose_offset(owner, offset).await {
                Err(ReplicaError::NotLeader(_) | ReplicaError::Replaced) => {
                    assert!(started.elapsed() < WAIT, "{owner:?} never written");
                }
                outcome => return outcome,
            }
        }
    }

    /// Waits until every running replica stores `expected` for `owner`.
    async fn wait_offsets(&self, owner: OffsetOwner, expected: Option<u64>) {
        for log in self.logs.values() {
            let log = log.clone();
            wait_until("every replica applied the offset write", move || {
                log.stored_offset(owner) == expected
            })
            .await;
        }
    }
}

#[compio::test]
async fn consumer_offsets_are_replicated_through_the_group() {
    let replicas = Replicas::start(Ack::Majority).await;
    replicas.propose_stored(&NODES, "m", 5, 10).await;
    replicas.wait_agree(5).await;
    let consumer = OffsetOwner::Consumer(7);
    let group = OffsetOwner::Group(2);
    let index = replicas
        .write_offset(&NODES, consumer, Some(3))
        .await
        .unwrap();
    assert!(index > 0);
    replicas.write_offset(&NODES, group, Some(4)).await.unwrap();
    replicas.wait_offsets(consumer, Some(3)).await;
    replicas.wait_offsets(group, Some(4)).await;
    assert_eq!(
        replicas.write_offset(&NODES, consumer, Some(5)).await,
        Err(ReplicaError::InvalidOffset),
        "past the committed messages"
    );
    replicas.write_offset(&NODES, consumer, None).await.unwrap();
    replicas.wait_offsets(consumer, None).await;
    assert_eq!(
        replicas.write_offset(&NODES, consumer, None).await,
        Err(ReplicaError::InvalidOffset),
        "nothing left to delete"
    );
    replicas.wait_offsets(group, Some(4)).await;
}

#[compio::test]
async fn with_ack_leader_a_send_is_answered_before_a_majority_holds_it() {
    let replicas = Replicas::start(Ack::Leader).await;
    let leader = replicas.wait_leader(&NODES).await;
    replicas.propose(leader, "first", 1, 10).await.unwrap();
    replicas.wait_agree(1).await;
    // With both followers cut off the leader still answers (it keeps leading until its
    // check-quorum notices), but nothing commits: consumers see nothing new.
    for node in NODES.into_iter().filter(|&node| node != leader) {
        replicas.isolate(node, true);
    }
    let answered = replicas.propose(leader, "alone", 1, 10).await;
    if answered.is_ok() {
        let view = replicas.handles.borrow()[&leader].view().clone();
        assert_eq!(view.high_watermark(), 1, "not committed: not readable");
    } else {
        assert!(matches!(answered, Err(ReplicaError::NotLeader(_))));
    }
}
