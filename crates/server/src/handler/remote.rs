//! A cluster node's work on partitions it holds no replica of (a replication factor below the
//! node count; docs/architecture.md, "Partition groups"). The node keeps such a partition in
//! its metadata but no log, files or group, and reaches a replica node:
//!
//! * a send is forwarded to the partition's leader (the hint this shard last heard, else the
//!   first reachable replica, following "not leader" answers to the one they name);
//! * everything else runs whole on one replica node, as that node runs it for its own
//!   clients: polls (with their long-poll wait, Next offsets and auto-commit), consumer offset
//!   reads and writes, flushes, DeleteSegments, and partition figures. The replica is the
//!   first of the partition's replicas heard from recently, in replica order, so that a
//!   consumer's polls and commits through one node meet the same replica while it answers.
//!
//! The calls travel on the replication transport as opaque calls (`galgo_cluster::wire`);
//! [`Calls`] serves them on shard 0 of the replica node and runs each on the shard owning the
//! partition there.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use galgo_cluster::{
    ClusterView,
    replica::CallError,
    transport::CallServer,
    wire::{Pieces, SendOutcome},
};
use galgo_metadata::{GroupId, GroupKey, PartitionId, PartitionKey, ShardId, StreamId, TopicId};
use galgo_protocol::{ErrorCode, PollingStrategy, Reader, command::offsets::ConsumerOffsetInfo};
use galgo_storage::{AppendReceipt, OffsetOwner, PartitionStats};

use super::{
    messages::{PartitionRead, Polled, commit_proposed, poll_owned, stored_receipt},
    offsets::{get_owned, write_owned},
    partition_calls::{PartitionFigures, figures_here, on_partition},
    segments::delete_from,
};
use crate::{
    cluster::{Placement, held, placement as placement_in},
    context::Shard,
    error::CommandError,
};

/// How long a call waits for its answer (beyond a poll's own wait), and a send for its
/// outcome: as long as a send to a replicated partition waits.
const CALL_WAIT: Duration = Duration::from_secs(10);

/// A call's operation.
const OP_POLL: u8 = 1;
const OP_GET_OFFSET: u8 = 2;
const OP_WRITE_OFFSET: u8 = 3;
const OP_FLUSH: u8 = 4;
const OP_DELETE_SEGMENTS: u8 = 5;
const OP_FIGURES: u8 = 6;

/// The status of an answer that succeeded; any other is the error code.
const STATUS_OK: u32 = 0;

/// A partition this node holds no replica of, and where it is replicated.
#[derive(Clone, Debug)]
pub struct Remote {
    cluster: Arc<ClusterView>,
    placed: Placement,
}

/// The partition `key` as a remote one, when this is a cluster node holding no replica of it.
pub fn placement(shard: &Shard, key: PartitionKey) -> Option<Remote> {
    let cluster = shard.state().seed.cluster.as_ref()?;
    let metadata = shard.metadata.borrow();
    if held(&metadata, cluster, key)? {
        return None;
    }
    let placed = placement_in(&metadata, cluster, key)?;
    Some(Remote {
        cluster: cluster.clone(),
        placed,
    })
}

impl Remote {
    /// The replica nodes in the order calls try them: those heard from recently first, each
    /// part in replica order (the preferred replica first).
    fn targets(&self) -> Vec<u64> {
        let (mut reachable, silent): (Vec<u64>, Vec<u64>) = self
            .placed
            .replicas
            .iter()
            .partition(|&&node| self.cluster.is_healthy(node));
        reachable.extend(silent);
        reachable
    }

    /// The start of a call on this partition: operation, group, key.
    fn call_head(&self, op: u8, key: PartitionKey) -> BytesMut {
        let mut body = BytesMut::with_capacity(64);
        body.put_u8(op);
        put_partition(&mut body, self.placed.group, key);
        body
    }

    /// Calls the first replica node that takes the call; the answer's body after its status.
    /// A node that cannot be reached, or answers 58 (its replica cannot serve now), passes
    /// the call to the next, and so does one that gives no answer to a call that `repeats`
    /// (a read with no effect: a node just died, and this one has not noticed yet), waited
    /// for two election timeouts beyond `wait`. Any other call unanswered after [`CALL_WAIT`]
    /// beyond `wait` is `unanswered` (a write: it may have happened).
    async fn call(
        &self,
        body: Bytes,
        (wait, repeats): (Duration, bool),
        unanswered: ErrorCode,
    ) -> Result<Bytes, CommandError> {
        let patience = if repeats {
            2 * self.cluster.settings.election_timeout()
        } else {
            CALL_WAIT
        };
        for target in self.targets() {
            let answer = self
                .cluster
                .partitions
                .call(target, vec![body.clone()], wait + patience)
                .await;
            match answer.map(answer_status) {
                Err(CallError::NotSent) => {}
                Err(CallError::NoAnswer) if repeats => {}
                Err(CallError::NoAnswer) => return Err(unanswered.into()),
                Ok(Err(ErrorCode::TransientNotAccepted)) => {}
                Ok(result) => return Ok(result?),
            }
        }
        Err(ErrorCode::TransientNotAccepted.into())
    }
}

/// A call that reads only: repeated on the next replica when unanswered.
const READ: (Duration, bool) = (Duration::ZERO, true);
/// A call that writes: not repeated.
const WRITE: (Duration, bool) = (Duration::ZERO, false);

impl Remote {
    /// A call that writes, answered by its status alone.
    async fn write(&self, body: BytesMut) -> Result<(), CommandError> {
        self.call(body.freeze(), WRITE, ErrorCode::TransientNotCommitted)
            .await
            .map(drop)
    }
}

/// An answer's status and the body after it.
fn answer_status(mut answer: Bytes) -> Result<Bytes, ErrorCode> {
    if answer.len() < 4 {
        return Err(ErrorCode::TransientNotAccepted);
    }
    match answer.get_u32_le() {
        STATUS_OK => Ok(answer),
        code => Err(ErrorCode::from_u32(code).unwrap_or(ErrorCode::Error)),
    }
}

/// Bytes of a partition in a call: group u64, stream u32, topic u32, partition u32.
const PARTITION_BYTES: usize = 8 + 4 + 4 + 4;

fn put_partition(out: &mut BytesMut, group: u64, key: PartitionKey) {
    out.put_u64_le(group);
    out.put_u32_le(key.stream.0);
    out.put_u32_le(key.topic.0);
    out.put_u32_le(key.partition.0);
}

fn read_partition(reader: &mut Reader<'_>) -> Result<(u64, PartitionKey), ErrorCode> {
    let group = reader.u64()?;
    let key = PartitionKey {
        stream: StreamId(reader.u32()?),
        topic: TopicId(reader.u32()?),
        partition: PartitionId(reader.u32()?),
    };
    Ok((group, key))
}

fn put_owner(out: &mut BytesMut, owner: OffsetOwner) {
    let (kind, id) = match owner {
        OffsetOwner::Consumer(id) => (1, id),
        OffsetOwner::Group(id) => (2, id),
    };
    out.put_u8(kind);
    out.put_u32_le(id);
}

fn read_owner(reader: &mut Reader<'_>) -> Result<OffsetOwner, ErrorCode> {
    match (reader.u8()?, reader.u32()?) {
        (1, id) => Ok(OffsetOwner::Consumer(id)),
        (2, id) => Ok(OffsetOwner::Group(id)),
        _ => Err(ErrorCode::InvalidCommand),
    }
}

/// The consumer group of a group's offset owner on partition `key`.
fn group_of(key: PartitionKey, owner: OffsetOwner) -> Option<GroupKey> {
    match owner {
        OffsetOwner::Group(id) => Some(GroupKey {
            stream: key.stream,
            topic: key.topic,
            group: GroupId(id),
        }),
        OffsetOwner::Consumer(_) => None,
    }
}

/// A send, forwarded to the partition's leader. "Not leader" answers are followed once per
/// replica (to the node they name, else the next replica); a replica that cannot be reached
/// or did not store the batch passes it to the next. 58 when none stored it, 57 when the
/// outcome is unknown (it may still be stored), as for a send through a replica.
pub(super) async fn send(
    shard: &Shard,
    remote: &Remote,
    messages: BytesMut,
    count: u32,
) -> Result<AppendReceipt, CommandError> {
    let group = remote.placed.group;
    let messages = messages.freeze();
    let targets = remote.targets();
    let deadline = Instant::now() + CALL_WAIT;
    let mut tried: Vec<u64> = Vec::with_capacity(targets.len());
    let untried = |tried: &[u64]| targets.iter().copied().find(|node| !tried.contains(node));
    let mut next = shard
        .state()
        .remote_leader(group)
        .filter(|&node| remote.placed.on(node))
        .or_else(|| untried(&tried));
    while let Some(target) = next {
        tried.push(target);
        let wait = deadline.saturating_duration_since(Instant::now());
        let outcome = remote
            .cluster
            .partitions
            .forward_send(target, group, messages.clone(), count, wait)
            .await;
        next = match outcome {
            SendOutcome::Stored {
                first_offset,
                last_offset,
            } => {
                shard.state().set_remote_leader(group, target);
                return Ok(stored_receipt(first_offset, last_offset, count));
            }
            SendOutcome::NotLeader(hint) if remote.placed.on(hint) && !tried.contains(&hint) => {
                shard.state().set_remote_leader(group, hint);
                Some(hint)
            }
            SendOutcome::NotLeader(_) | SendOutcome::NotStored => untried(&tried),
            SendOutcome::Invalid => return Err(ErrorCode::InvalidMessagesCount.into()),
            SendOutcome::Unknown => return Err(ErrorCode::TransientNotCommitted.into()),
        };
    }
    Err(ErrorCode::TransientNotAccepted.into())
}

/// A poll, run on a replica node ([`poll_owned`] there), from this node's shard owning the
/// partition. An auto-commit poll is sent as a plain one and its offset proposed from here
/// once answered, as a replica answers one once its offset is proposed: until that write
/// settles the offset stands in for the stored one on this shard (crate::proposed_offsets),
/// so the consumer's next Next poll here goes on after it. A poll whose answer is lost
/// therefore commits nothing (its messages come again), and is repeated on the next replica
/// like any read.
pub(super) async fn poll(
    shard: &Rc<Shard>,
    remote: &Remote,
    read: PartitionRead,
) -> Result<Polled, CommandError> {
    let (key, consumer) = (read.key, read.consumer);
    let strategy = match (
        read.strategy,
        shard.state().proposed_offsets.get(key, consumer),
    ) {
        (PollingStrategy::Next, Some(proposed)) => PollingStrategy::Offset(proposed + 1),
        (strategy, _) => strategy,
    };
    let mut body = remote.call_head(OP_POLL, key);
    put_owner(&mut body, consumer);
    strategy.encode(&mut body);
    body.put_u32_le(read.count);
    body.put_u8(0);
    body.put_u32_le(u32::try_from(read.wait.as_millis()).unwrap_or(u32::MAX));
    let mut answer = remote
        .call(
            body.freeze(),
            (read.wait, true),
            ErrorCode::TransientNotAccepted,
        )
        .await?;
    if answer.len() < 4 + 1 + 8 {
        return Err(ErrorCode::TransientNotAccepted.into());
    }
    let messages_count = answer.get_u32_le();
    let returned = answer.get_u8() == 1;
    let last = answer.get_u64_le();
    let last_returned = returned.then_some(last);
    if read.auto_commit
        && let Some(last) = last_returned
    {
        let remote = remote.clone();
        let commit = async move { write_offset_call(&remote, key, consumer, Some(last)).await };
        commit_proposed(shard, key, consumer, last, commit);
    }
    Ok(Polled {
        chunks: vec![answer],
        kept: Vec::new(),
        last_returned,
        messages_count,
    })
}

/// GetConsumerOffset, run on a replica node, from this node's shard owning the partition:
/// an offset an auto-commit poll proposed here counts as stored until it settles.
pub(super) async fn get_offset(
    shard: &Shard,
    remote: &Remote,
    key: PartitionKey,
    owner: OffsetOwner,
) -> Result<Option<ConsumerOffsetInfo>, CommandError> {
    let proposed = shard.state().proposed_offsets.get(key, owner);
    let mut body = remote.call_head(OP_GET_OFFSET, key);
    put_owner(&mut body, owner);
    let mut answer = remote
        .call(body.freeze(), READ, ErrorCode::TransientNotAccepted)
        .await?;
    if answer.len() < 8 + 1 + 8 {
        return Err(ErrorCode::TransientNotAccepted.into());
    }
    let current_offset = answer.get_u64_le();
    let stored = answer.get_u8() == 1;
    let stored_offset = answer.get_u64_le();
    Ok(proposed
        .or(stored.then_some(stored_offset))
        .map(|stored_offset| ConsumerOffsetInfo {
            partition_id: key.partition.0,
            current_offset,
            stored_offset,
        }))
}

/// StoreConsumerOffset (`Some`) or DeleteConsumerOffset (`None`), run on a replica node (which
/// answers once it applied the write: the next poll it serves starts after it), from this
/// node's shard owning the partition, whose proposed offset for `owner` it replaces.
pub(super) async fn write_offset(
    shard: &Shard,
    remote: &Remote,
    key: PartitionKey,
    owner: OffsetOwner,
    offset: Option<u64>,
) -> Result<(), CommandError> {
    shard.state().proposed_offsets.forget(key, owner);
    write_offset_call(remote, key, owner, offset).await
}

async fn write_offset_call(
    remote: &Remote,
    key: PartitionKey,
    owner: OffsetOwner,
    offset: Option<u64>,
) -> Result<(), CommandError> {
    let mut body = remote.call_head(OP_WRITE_OFFSET, key);
    put_owner(&mut body, owner);
    body.put_u8(u8::from(offset.is_some()));
    body.put_u64_le(offset.unwrap_or(0));
    remote.write(body).await
}

/// FlushUnsavedBuffer, run on a replica node.
pub(super) async fn flush(
    remote: &Remote,
    key: PartitionKey,
    fsync: bool,
) -> Result<(), CommandError> {
    let mut body = remote.call_head(OP_FLUSH, key);
    body.put_u8(u8::from(fsync));
    remote.write(body).await
}

/// DeleteSegments, run on a replica node (its own segments, as on a replica node itself).
pub(super) async fn delete_segments(
    remote: &Remote,
    key: PartitionKey,
    count: u32,
) -> Result<(), CommandError> {
    let mut body = remote.call_head(OP_DELETE_SEGMENTS, key);
    body.put_u32_le(count);
    remote.write(body).await
}

/// Bytes of one partition's figures in an answer: held flag, messages, bytes, segments,
/// current offset.
const FIGURES_BYTES: usize = 1 + 8 + 8 + 4 + 8;

/// The figures of remote partitions: one call per replica node asked (each partition's first
/// target), bounded by two election timeouts. A node that does not answer in time leaves its
/// partitions out.
pub(super) async fn figures(
    remote: Vec<(PartitionKey, Remote)>,
) -> BTreeMap<PartitionKey, PartitionFigures> {
    let mut by_target: BTreeMap<u64, Vec<(PartitionKey, Remote)>> = BTreeMap::new();
    for (key, partition) in remote {
        if let Some(&target) = partition.targets().first() {
            by_target.entry(target).or_default().push((key, partition));
        }
    }
    let mut figures = BTreeMap::new();
    for (target, partitions) in by_target {
        let mut body = BytesMut::with_capacity(5 + partitions.len() * PARTITION_BYTES);
        body.put_u8(OP_FIGURES);
        body.put_u32_le(partitions.len() as u32);
        for (key, partition) in &partitions {
            put_partition(&mut body, partition.placed.group, *key);
        }
        let cluster = &partitions[0].1.cluster;
        let answer = cluster
            .partitions
            .call(
                target,
                vec![body.freeze()],
                2 * cluster.settings.election_timeout(),
            )
            .await;
        let Ok(Ok(mut answer)) = answer.map(answer_status) else {
            tracing::debug!(node = target, "a replica node gave no partition figures");
            continue;
        };
        if answer.len() != partitions.len() * FIGURES_BYTES {
            continue;
        }
        for (key, _) in partitions {
            let held = answer.get_u8() == 1;
            let stats = PartitionStats {
                messages_count: answer.get_u64_le(),
                size_bytes: answer.get_u64_le(),
                segments_count: answer.get_u32_le(),
            };
            let current_offset = answer.get_u64_le();
            if held {
                figures.insert(
                    key,
                    PartitionFigures {
                        stats,
                        current_offset,
                    },
                );
            }
        }
    }
    figures
}

/// Serves other nodes' calls on this node's shard 0.
pub struct Calls {
    shard0: Rc<Shard>,
}

impl Calls {
    /// The server of calls, on shard 0.
    pub fn new(shard0: Rc<Shard>) -> Self {
        Self { shard0 }
    }
}

impl CallServer for Calls {
    fn serve(&self, from: u64, body: Bytes) -> Pin<Box<dyn Future<Output = Pieces>>> {
        let shard0 = self.shard0.clone();
        Box::pin(async move {
            match serve(&shard0, &body).await {
                Ok(answer) => answer,
                Err(error) => {
                    let code = error.code();
                    if error.is_server_fault() {
                        tracing::warn!(node = from, %error, "a call from another node failed");
                    } else {
                        tracing::debug!(node = from, %error, "a call from another node refused");
                    }
                    vec![status(code.as_u32())]
                }
            }
        })
    }
}

fn status(code: u32) -> Bytes {
    Bytes::copy_from_slice(&code.to_le_bytes())
}

/// The shard owning partition `key` here, when this node holds a replica of it and it is the
/// same partition the caller meant (the same group: Iggy reuses partition ids).
fn owner_here(shard0: &Shard, group: u64, key: PartitionKey) -> Result<ShardId, ErrorCode> {
    let cluster = shard0
        .state()
        .seed
        .cluster
        .as_deref()
        .ok_or(ErrorCode::FeatureUnavailable)?;
    let metadata = shard0.metadata.borrow();
    let placed = placement_in(&metadata, cluster, key).ok_or(ErrorCode::PartitionNotFound)?;
    if placed.group != group {
        return Err(ErrorCode::PartitionNotFound);
    }
    if !placed.on(cluster.node_id()) {
        // The caller's metadata and this node's disagree on who holds it: not served here.
        return Err(ErrorCode::TransientNotAccepted);
    }
    let topic = metadata
        .topic_by_key(galgo_metadata::TopicKey {
            stream: key.stream,
            topic: key.topic,
        })
        .map_err(|_| ErrorCode::PartitionNotFound)?;
    topic
        .partitions
        .get(key.partition.0 as usize)
        .map(|partition| partition.owner)
        .ok_or(ErrorCode::PartitionNotFound)
}

/// Runs one call and encodes its answer.
async fn serve(shard0: &Rc<Shard>, body: &[u8]) -> Result<Pieces, CommandError> {
    let mut reader = Reader::new(body);
    let op = reader.u8()?;
    if op == OP_FIGURES {
        return serve_figures(shard0, &mut reader).await;
    }
    let (group, key) = read_partition(&mut reader)?;
    let owner = owner_here(shard0, group, key)?;
    let mut head = BytesMut::with_capacity(32);
    head.put_u32_le(STATUS_OK);
    match op {
        OP_POLL => return serve_poll(shard0, owner, key, &mut reader).await,
        OP_GET_OFFSET => {
            let owner_key = read_owner(&mut reader)?;
            let (current, stored) = shard0
                .call(owner, move |shard| async move {
                    get_owned(&shard, key, owner_key)
                })
                .await??;
            head.put_u64_le(current);
            head.put_u8(u8::from(stored.is_some()));
            head.put_u64_le(stored.unwrap_or(0));
        }
        OP_WRITE_OFFSET => {
            let owner_key = read_owner(&mut reader)?;
            let (store, offset) = (reader.u8()? == 1, reader.u64()?);
            let offset = store.then_some(offset);
            let group = group_of(key, owner_key);
            shard0
                .call(owner, move |shard| async move {
                    write_owned(&shard, key, owner_key, offset, group).await
                })
                .await??;
        }
        OP_FLUSH => {
            let fsync = reader.u8()? == 1;
            on_partition(shard0, key, owner, move |_, log| async move {
                Ok(log.flush(fsync).await?)
            })
            .await?;
        }
        OP_DELETE_SEGMENTS => {
            let count = reader.u32()?;
            on_partition(shard0, key, owner, move |shard, log| async move {
                delete_from(&shard, key, &log, count).await
            })
            .await?;
        }
        _ => return Err(ErrorCode::InvalidCommand.into()),
    }
    Ok(vec![head.freeze()])
}

/// A poll call: the poll runs on the owner as it does for this node's own clients.
async fn serve_poll(
    shard0: &Rc<Shard>,
    owner: ShardId,
    key: PartitionKey,
    reader: &mut Reader<'_>,
) -> Result<Pieces, CommandError> {
    let mut head = BytesMut::with_capacity(32);
    head.put_u32_le(STATUS_OK);
    let consumer = read_owner(reader)?;
    let strategy = PollingStrategy::decode(reader)?;
    let count = reader.u32()?;
    let auto_commit = reader.u8()? == 1;
    let wait_ms = reader
        .u32()?
        .min(shard0.state().seed.limits.poll_wait_ms_max);
    let read = PartitionRead {
        key,
        consumer,
        strategy,
        count,
        auto_commit,
        wait: Duration::from_millis(u64::from(wait_ms)),
    };
    let group = group_of(key, consumer);
    let polled = shard0
        .call(owner, move |shard| async move {
            poll_owned(&shard, read, group).await
        })
        .await??;
    head.put_u32_le(polled.messages_count);
    head.put_u8(u8::from(polled.last_returned.is_some()));
    head.put_u64_le(polled.last_returned.unwrap_or(0));
    let mut answer = Vec::with_capacity(polled.chunks.len() + 1);
    answer.push(head.freeze());
    answer.extend(polled.chunks);
    Ok(answer)
}

/// The figures of the partitions a call names, in its order; those not held here (or no
/// longer the partition meant) flagged absent.
async fn serve_figures(
    shard0: &Rc<Shard>,
    reader: &mut Reader<'_>,
) -> Result<Pieces, CommandError> {
    let count = reader.u32()? as usize;
    if count > reader.remaining() / PARTITION_BYTES {
        return Err(ErrorCode::InvalidCommand.into());
    }
    let mut asked = Vec::with_capacity(count);
    for _ in 0..count {
        let (group, key) = read_partition(reader)?;
        asked.push((key, owner_here(shard0, group, key).ok()));
    }
    let held: Vec<_> = asked
        .iter()
        .filter_map(|&(key, owner)| Some((key, owner?)))
        .collect();
    let gathered = figures_here(shard0, held).await?;
    let mut answer = BytesMut::with_capacity(4 + count * FIGURES_BYTES);
    answer.put_u32_le(STATUS_OK);
    for (key, _) in asked {
        let figures = gathered.get(&key);
        answer.put_u8(u8::from(figures.is_some()));
        let figures = figures.copied().unwrap_or_default();
        answer.put_u64_le(figures.stats.messages_count);
        answer.put_u64_le(figures.stats.size_bytes);
        answer.put_u32_le(figures.stats.segments_count);
        answer.put_u64_le(figures.current_offset);
    }
    Ok(vec![answer.freeze()])
}
