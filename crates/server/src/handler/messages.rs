//! Messages: send, poll, flush. Work for a partition runs on the shard that owns it (in place
//! when that is this shard); stored bytes travel back untouched.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    rc::Rc,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use galgo_cluster::{
    ClusterView,
    replica::{GroupHandle, GroupView},
    wire::SendOutcome,
};
use galgo_metadata::{GroupId, GroupKey, MetadataError, Need, PartitionKey, ShardId, TopicKey};
use galgo_protocol::{
    Consumer, ErrorCode, Identifier, Partitioning, PollingStrategy,
    command::messages::{
        FlushUnsavedBuffer, POLLED_MESSAGES_HEADER_BYTES, PollMessages, PolledMessagesHeader,
        SendMessages,
    },
    consumer_key,
    partitioning::partition_for_key,
    vsr::batch::KeptRecord,
};
use galgo_storage::{AppendReceipt, OffsetOwner, PartitionLog};

use super::{
    Appended, Outcome, Reply, groups::after_group_commit, partition_calls::on_partition, remote,
};
use crate::{
    context::Shard,
    context::{Context, now_us},
    error::CommandError,
    session::{Generation, Session},
};

/// A partition of a resolved topic: its key and owner.
pub fn locate(
    shard: &Shard,
    topic: TopicKey,
    partition: u32,
) -> Result<(PartitionKey, ShardId), CommandError> {
    let metadata = shard.metadata.borrow();
    let owner = metadata
        .topic_by_key(topic)?
        .partitions
        .get(partition as usize)
        .ok_or(ErrorCode::PartitionNotFound)?
        .owner;
    Ok((topic.partition(partition), owner))
}

/// The partition a send goes to, with its owner, from one look at the topic.
fn route(
    shard: &Shard,
    context: &Context,
    topic: TopicKey,
    partitioning: &Partitioning,
) -> Result<(PartitionKey, ShardId), CommandError> {
    let metadata = shard.metadata.borrow();
    let partitions = &metadata.topic_by_key(topic)?.partitions;
    let count = partitions.len() as u32;
    let partition = match partitioning {
        Partitioning::PartitionId(id) => *id,
        _ if count == 0 => return Err(ErrorCode::NoPartitions.into()),
        Partitioning::Balanced => context.next_balanced(topic.stream, topic.topic, count),
        Partitioning::MessagesKey(key) => partition_for_key(key, count),
    };
    let owner = partitions
        .get(partition as usize)
        .ok_or(ErrorCode::PartitionNotFound)?
        .owner;
    Ok((topic.partition(partition), owner))
}

/// SendMessages: answers once the owner accepted the batch (and, with fsync = "always",
/// once it is on stable storage).
pub async fn send(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    send: SendMessages,
) -> Outcome {
    let (key, owner) = route(shard, context, topic, &send.partitioning)?;
    session.note_partition_owner(owner);
    // A 0.8 request's block was split off the request without a copy, so the request's
    // metadata and index stay allocated with it; a 0.9 send was converted into a block of
    // its own.
    let held_bytes = match session.generation {
        Generation::Vsr(_) => 0,
        _ => send.bytes_before_block() as u64,
    };
    let (messages, count, frames) = (send.messages, send.messages_count, send.frames);
    if let Some(remote) = remote::placement(shard, key) {
        let receipt = remote::send(shard, &remote, messages, count).await?;
        return Ok(Reply::appended(Appended {
            stream_id: topic.stream.0,
            topic_id: topic.topic.0,
            partition_id: key.partition.0,
            base_offset: receipt.first_offset,
        }));
    }
    let base_offset = on_partition(shard, key, owner, move |owner, log| async move {
        let bytes = messages.len() as u64;
        // The owner's clock stamps the batch, so timestamps follow offsets per partition;
        // on a cluster node, the partition leader's clock.
        let receipt = match owner.state().serving_replica(&key)? {
            Some(group) => replicated_send(&owner, &group, messages, count).await?,
            None => {
                log.append_holding(messages, count, now_us(), held_bytes, frames)
                    .await?
            }
        };
        let appended = u64::from(count - receipt.duplicates_count);
        owner.state().requests.record_in(key, appended, bytes);
        Ok(receipt.first_offset)
    })
    .await?;
    Ok(Reply::appended(Appended {
        stream_id: topic.stream.0,
        topic_id: topic.topic.0,
        partition_id: key.partition.0,
        base_offset,
    }))
}

/// How long a send to a replicated partition waits for its outcome: 5 election timeouts at
/// the default tick, as a metadata change does. Past it the outcome is unknown.
const REPLICATED_SEND_WAIT: Duration = Duration::from_secs(10);

/// The node leading a replicated partition, waited for up to two election timeouts (that
/// wait is returned too); 58 TransientNotAccepted when none is known by then.
async fn partition_leader(
    shard: &Shard,
    view: &GroupView,
) -> Result<(Arc<ClusterView>, u64, Duration), CommandError> {
    let Some(cluster) = shard.state().seed.cluster.clone() else {
        return Err(ErrorCode::TransientNotAccepted.into());
    };
    let wait = 2 * cluster.settings.election_timeout();
    let Some(leader) = view.wait_for_leader(wait).await else {
        return Err(ErrorCode::TransientNotAccepted.into());
    };
    Ok((cluster, leader, wait))
}

/// A send to a replicated partition, acknowledged once committed (or, with `ack = "leader"`,
/// once the leader holds it). Proposed here when this node leads the partition, forwarded
/// once to the leader otherwise (waiting up to two election timeouts for one to be known).
/// Not stored (no leader, refused, or replaced by another leader's entries) is 58
/// TransientNotAccepted; no outcome in time is 57 TransientNotCommitted (it may still be
/// stored).
async fn replicated_send(
    shard: &Shard,
    group: &GroupHandle,
    messages: BytesMut,
    count: u32,
) -> Result<AppendReceipt, CommandError> {
    let view = group.view();
    let (cluster, leader, _) = partition_leader(shard, view).await?;
    let outcome = if leader == view.node_id() {
        match compio::time::timeout(
            REPLICATED_SEND_WAIT,
            group.propose(messages, count, now_us()),
        )
        .await
        {
            Ok(result) => SendOutcome::from(result),
            Err(_) => SendOutcome::Unknown,
        }
    } else {
        let forward = cluster.partitions.forward_send(
            leader,
            view.group(),
            messages.freeze(),
            count,
            REPLICATED_SEND_WAIT,
        );
        unless_leader_changes(view, leader, forward).await
    };
    match outcome {
        SendOutcome::Stored {
            first_offset,
            last_offset,
        } => Ok(stored_receipt(first_offset, last_offset, count)),
        SendOutcome::NotLeader(_) | SendOutcome::NotStored => {
            Err(ErrorCode::TransientNotAccepted.into())
        }
        SendOutcome::Invalid => Err(ErrorCode::InvalidMessagesCount.into()),
        SendOutcome::Unknown => Err(ErrorCode::TransientNotCommitted.into()),
    }
}

/// The receipt of `count` messages a leader stored at `first_offset..=last_offset`: it
/// dropped those whose ids a committed batch had (when deduplicating), the rest are the
/// offsets it answered.
pub(super) fn stored_receipt(first_offset: u64, last_offset: u64, count: u32) -> AppendReceipt {
    let stored = last_offset.wrapping_add(1).wrapping_sub(first_offset);
    let stored = u32::try_from(stored).unwrap_or(count).min(count);
    AppendReceipt {
        first_offset,
        last_offset,
        duplicates_count: count - stored,
    }
}

/// A forwarded proposal's outcome, or unknown as soon as this replica sees `leader` replaced:
/// a leader that died takes what was forwarded to it with it (an election), and the caller
/// should not wait the whole bound for that.
async fn unless_leader_changes(
    view: &GroupView,
    leader: u64,
    forward: impl Future<Output = SendOutcome>,
) -> SendOutcome {
    let (mut forward, mut changed) = (pin!(forward), pin!(view.wait_for_leader_change(leader)));
    poll_fn(|cx| match forward.as_mut().poll(cx) {
        Poll::Ready(outcome) => Poll::Ready(outcome),
        Poll::Pending => changed.as_mut().poll(cx).map(|()| SendOutcome::Unknown),
    })
    .await
}

/// A consumer offset write (`None` deletes) on a replicated partition: proposed here when
/// this node leads it, forwarded once to the leader otherwise, and answered once this
/// replica applied it, so that the next poll through this node starts after it. The leader
/// refuses an offset past its committed messages (4100 InvalidOffset) and a delete of
/// nothing stored (3021); no leader is 58, no outcome in time 57, as for a send.
pub(super) async fn replicated_offset(
    shard: &Shard,
    group: &GroupHandle,
    owner: OffsetOwner,
    offset: Option<u64>,
) -> Result<(), CommandError> {
    let view = group.view();
    let (cluster, leader, wait) = partition_leader(shard, view).await?;
    let outcome = if leader == view.node_id() {
        match compio::time::timeout(REPLICATED_SEND_WAIT, group.propose_offset(owner, offset)).await
        {
            Ok(result) => SendOutcome::from(result),
            Err(_) => SendOutcome::Unknown,
        }
    } else {
        let forward = cluster.partitions.forward_offset(
            leader,
            view.group(),
            owner,
            offset,
            REPLICATED_SEND_WAIT,
        );
        unless_leader_changes(view, leader, forward).await
    };
    match outcome {
        SendOutcome::Stored {
            first_offset: index,
            ..
        } => {
            // Committed: visible here within a round trip (the leader broadcasts its commit).
            let _ = compio::time::timeout(wait, view.wait_for_applied(index)).await;
            Ok(())
        }
        SendOutcome::NotLeader(_) | SendOutcome::NotStored => {
            Err(ErrorCode::TransientNotAccepted.into())
        }
        SendOutcome::Invalid if offset.is_some() => Err(ErrorCode::InvalidOffset.into()),
        SendOutcome::Invalid => Err(ErrorCode::ConsumerOffsetNotFound.into()),
        SendOutcome::Unknown => Err(ErrorCode::TransientNotCommitted.into()),
    }
}

/// PollMessages, for a single consumer (partition 0 unless given) or a group member.
pub async fn poll(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    poll: PollMessages,
) -> Outcome {
    let consumer = match &poll.consumer {
        Consumer::Single(consumer) => consumer,
        Consumer::Group(group) => {
            return poll_group(shard, context, session, topic, &poll, group).await;
        }
    };
    let partition = poll.partition_id.unwrap_or(0);
    let (key, owner) = locate(shard, topic, partition)?;
    session.note_partition_owner(owner);
    let read = PartitionRead::new(
        key,
        OffsetOwner::Consumer(consumer_key(consumer)),
        &poll,
        context,
    );
    let polled = poll_on(shard, owner, read, None).await?;
    Ok(Reply::polled(polled.chunks, polled.kept))
}

/// Runs a poll where its partition is served: on the shard that owns it, or, on a cluster
/// node that holds no replica of it, on a replica node (`remote::poll`). `group`: the
/// consumer group a member polls for.
async fn poll_on(
    shard: &Rc<Shard>,
    owner: ShardId,
    read: PartitionRead,
    group: Option<GroupKey>,
) -> Result<Polled, CommandError> {
    let remote = remote::placement(shard, read.key);
    shard
        .call(owner, move |shard| async move {
            match remote {
                Some(remote) => remote::poll(&shard, &remote, read).await,
                None => poll_owned(&shard, read, group).await,
            }
        })
        .await?
}

/// A poll of a partition this shard owns. A group member's: the owner remembers the last
/// offset it served the group (a pending revocation waits for the commit of it), and an
/// auto-commit may complete one.
pub(super) async fn poll_owned(
    shard: &Rc<Shard>,
    read: PartitionRead,
    group: Option<GroupKey>,
) -> Result<Polled, CommandError> {
    let key = read.key;
    let log = shard
        .partition(&key)
        .ok_or(CommandError::Protocol(ErrorCode::PartitionNotFound))?;
    let replica = shard.state().serving_replica(&key)?;
    let polled = poll_partition_waiting(shard, &log, replica.as_ref(), read).await?;
    polled.count_out(shard, key);
    if let Some(group) = group
        && let Some(last_returned) = polled.last_returned
    {
        shard
            .state()
            .groups
            .record_served(key, group.group.0, last_returned);
        if read.auto_commit {
            after_group_commit(shard, group, key.partition.0).await?;
        }
    }
    Ok(polled)
}

/// The partition a member's poll reads: the given one if the member owns it, otherwise the
/// next of its partitions in round-robin order (skipping those pending revocation). `None`
/// when it has none: members beyond the partition count get empty results, not errors.
fn group_partition(
    shard: &Shard,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    poll: &PollMessages,
    group: &Identifier,
) -> Result<(GroupKey, Option<u32>), CommandError> {
    let metadata = shard.metadata.borrow();
    let (key, found) = metadata.group_in(topic, group)?;
    let member = found
        .member_of_client(session.client_id)
        .ok_or(MetadataError::NotGroupMember)?;
    let partition = match poll.partition_id {
        Some(partition) => Some(partition).filter(|&p| found.owns(member.id, p)),
        None => {
            let partitions = found.pollable_partitions(member.id);
            context
                .groups
                .next_partition(session.client_id, key, &partitions)
        }
    };
    Ok((key, partition))
}

/// PollMessages as a group member ([`poll_owned`] says what the owner remembers).
async fn poll_group(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    poll: &PollMessages,
    group: &Identifier,
) -> Outcome {
    let (group, partition) = group_partition(shard, context, session, topic, poll, group)?;
    let Some(partition) = partition else {
        // A 0.9 member names its partition from its last Sync; when that is stale (a
        // rebalance moved it), the empty poll's u32::MAX tells the SDK to sync again.
        let named_elsewhere = poll.partition_id.is_some() && session.is_vsr();
        return Ok(no_partition_reply(if named_elsewhere {
            NOT_OWNED_PARTITION_ID
        } else {
            0
        }));
    };
    let (key, owner) = locate(shard, topic, partition)?;
    session.note_partition_owner(owner);
    let read = PartitionRead::new(key, OffsetOwner::Group(group.group.0), poll, context);
    let polled = poll_on(shard, owner, read, Some(group)).await?;
    Ok(Reply::polled(polled.chunks, polled.kept))
}

/// The partition id of an empty 0.9 group poll of a partition the member does not own
/// (PROTOCOL-0.9.md §8.7): the SDK syncs its assignment and retries.
const NOT_OWNED_PARTITION_ID: u32 = u32::MAX;

/// The answer of a member with no partition: OK, `partition_id`, offset 0, no messages.
fn no_partition_reply(partition_id: u32) -> Reply {
    let header = PolledMessagesHeader {
        partition_id,
        current_offset: 0,
        messages_count: 0,
    };
    Reply::encoded(|out| header.encode(out))
}

/// What a poll of one partition returned.
pub(super) struct Polled {
    /// The response: header, then the stored messages as they are.
    pub chunks: Vec<Bytes>,
    /// Frames kept for some of those chunks (galgo_storage::Polled::kept), indexing `chunks`.
    pub kept: Vec<KeptRecord>,
    /// The offset of the last message returned, if any.
    pub last_returned: Option<u64>,
    /// Messages returned.
    pub messages_count: u32,
}

impl Polled {
    /// Counts what this poll returned in the owner's traffic figures.
    fn count_out(&self, owner: &Shard, key: PartitionKey) {
        let bytes = self.chunks.iter().skip(1).map(Bytes::len).sum::<usize>();
        let requests = &owner.state().requests;
        requests.record_out(key, u64::from(self.messages_count), bytes as u64);
    }
}

/// What a poll reads from one partition, sent to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PartitionRead {
    pub key: PartitionKey,
    pub consumer: OffsetOwner,
    pub strategy: PollingStrategy,
    pub count: u32,
    pub auto_commit: bool,
    /// How long to wait for messages when there are none (0: answer at once).
    pub wait: Duration,
}

impl PartitionRead {
    fn new(
        key: PartitionKey,
        consumer: OffsetOwner,
        poll: &PollMessages,
        context: &Context,
    ) -> Self {
        let wait_ms = poll.wait_ms.min(context.seed.limits.poll_wait_ms_max);
        Self {
            key,
            consumer,
            strategy: poll.strategy,
            count: poll.count,
            auto_commit: poll.auto_commit,
            wait: Duration::from_millis(u64::from(wait_ms)),
        }
    }
}

/// A poll that, finding nothing, waits for the partition's next append (galgo's long poll)
/// and polls again, until messages come, its wait runs out or the shard stops. Each wake
/// polls once more: an append below the start offset, or a purge, only re-arms the wait.
///
/// A replicated partition (`replica`) is read up to its high watermark only, and its long
/// polls wake when that moves: its log also holds batches not committed yet.
async fn poll_partition_waiting(
    shard: &Rc<Shard>,
    log: &PartitionLog,
    replica: Option<&GroupHandle>,
    read: PartitionRead,
) -> Result<Polled, CommandError> {
    let deadline = Instant::now() + read.wait;
    loop {
        // Seen before polling: an append that lands while the poll runs ends the wait at once.
        let end = match replica {
            Some(replica) => replica.view().high_watermark(),
            None => log.last_offset().map_or(0, |last| last + 1),
        };
        let polled =
            poll_partition(shard, log, read, replica.map(|replica| (replica, end))).await?;
        if polled.messages_count > 0 || read.count == 0 || shard.is_stopping() {
            return Ok(polled);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(polled);
        }
        let woken = match replica {
            Some(replica) => compio::time::timeout(left, replica.view().wait_for_commit(end)).await,
            None => compio::time::timeout(left, log.wait_for_append(end)).await,
        };
        if woken.is_err() {
            return Ok(polled);
        }
    }
}

/// Reads from one partition on its owner and commits the offset when asked; for a replicated
/// partition, below its high watermark `committed_end` only, and the offset proposed to its
/// group (answered before it commits: [`commit_proposed`]).
async fn poll_partition(
    shard: &Rc<Shard>,
    log: &PartitionLog,
    read: PartitionRead,
    replica: Option<(&GroupHandle, u64)>,
) -> Result<Polled, CommandError> {
    let committed_end = replica.map(|(_, end)| end);
    let PartitionRead {
        key,
        consumer,
        strategy,
        count,
        auto_commit,
        ..
    } = read;
    let last = match committed_end {
        Some(end) => end
            .checked_sub(1)
            .filter(|&last| last >= log.first_offset()),
        None => log.last_offset(),
    };
    let start = match (strategy, last) {
        (_, None) => None,
        (PollingStrategy::Offset(offset), _) => Some(offset.max(log.first_offset())),
        (PollingStrategy::Timestamp(at), _) => log.offset_at_timestamp(at).await?,
        (PollingStrategy::First, _) => Some(log.first_offset()),
        (PollingStrategy::Last, Some(last)) => {
            Some((last + 1 - u64::from(count).min(last + 1)).max(log.first_offset()))
        }
        (PollingStrategy::Next, _) => Some(next_offset(shard, log, key, consumer)),
    };
    let current_offset = last.unwrap_or(0);
    let polled = match start {
        Some(start)
            if count > 0
                && let Some(last) = last.filter(|&last| start <= last) =>
        {
            let count = count.min(u32::try_from(last + 1 - start).unwrap_or(u32::MAX));
            Some(log.poll(start, count).await?)
        }
        _ => None,
    };
    let messages_count = polled.as_ref().map_or(0, |polled| polled.messages_count);
    let last_returned = polled
        .as_ref()
        .filter(|polled| polled.messages_count > 0)
        .map(|polled| polled.first_offset + u64::from(polled.messages_count) - 1);
    if auto_commit && let Some(last_returned) = last_returned {
        match replica {
            Some((group, _)) => {
                let commit =
                    commit_replicated(shard.clone(), group.clone(), key, consumer, last_returned);
                commit_proposed(shard, key, consumer, last_returned, commit);
            }
            None => log.store_offset(consumer, last_returned).await?,
        }
    }
    let head = PolledMessagesHeader {
        partition_id: key.partition.0,
        current_offset,
        messages_count,
    };
    let (chunks, kept) = reply_parts(head, polled);
    Ok(Polled {
        chunks,
        kept,
        last_returned,
        messages_count,
    })
}

/// A poll's reply: the head, then the stored messages, with the frames kept for some of
/// them (indexes moved past the head).
fn reply_parts(
    head: PolledMessagesHeader,
    polled: Option<galgo_storage::Polled>,
) -> (Vec<Bytes>, Vec<KeptRecord>) {
    let mut header = BytesMut::with_capacity(POLLED_MESSAGES_HEADER_BYTES);
    head.encode(&mut header);
    let mut chunks = vec![header.freeze()];
    let Some(polled) = polled else {
        return (chunks, Vec::new());
    };
    chunks.extend(polled.chunks);
    let mut kept = polled.kept;
    for record in &mut kept {
        record.chunk += 1;
    }
    (chunks, kept)
}

/// Where a Next poll starts: after the offset stored for `consumer`, or after the one an
/// auto-commit poll proposed here and that is not settled yet.
fn next_offset(shard: &Shard, log: &PartitionLog, key: PartitionKey, consumer: OffsetOwner) -> u64 {
    shard
        .state()
        .proposed_offsets
        .get(key, consumer)
        .or_else(|| log.stored_offset(consumer))
        .map_or(log.first_offset(), |stored| stored + 1)
}

/// A cluster node's auto-commit: the poll is answered now, and `offset` is written by
/// `commit` in the background (proposed to the partition's group, forwarded to its leader
/// like any offset; from a node holding no replica, through a replica node). Until it
/// settles the offset stands in for the stored one on this shard (crate::proposed_offsets),
/// so the consumer's next Next poll here goes on after it. If it fails, the stored offset
/// is what it was and the messages after it are delivered again (at least once), as after a
/// crash before the commit.
pub(super) fn commit_proposed(
    shard: &Rc<Shard>,
    key: PartitionKey,
    owner: OffsetOwner,
    offset: u64,
    commit: impl Future<Output = Result<(), CommandError>> + 'static,
) {
    shard.state().proposed_offsets.propose(key, owner, offset);
    let shard = shard.clone();
    compio::runtime::spawn(async move {
        let committed = commit.await;
        shard.state().proposed_offsets.settle(key, owner, offset);
        if let Err(error) = committed {
            tracing::debug!(partition = %key, ?owner, offset, %error,
                "an auto-commit did not commit: the messages after the stored offset come again");
        }
    })
    .detach();
}

/// The auto-commit of a partition this node holds a replica of: through its group, and once
/// applied, a pending revocation of the partition in the group may complete.
async fn commit_replicated(
    shard: Rc<Shard>,
    group: GroupHandle,
    key: PartitionKey,
    owner: OffsetOwner,
    offset: u64,
) -> Result<(), CommandError> {
    replicated_offset(&shard, &group, owner, Some(offset)).await?;
    match owner {
        OffsetOwner::Group(id) => {
            let group = GroupKey {
                stream: key.stream,
                topic: key.topic,
                group: GroupId(id),
            };
            after_group_commit(&shard, group, key.partition.0).await
        }
        OffsetOwner::Consumer(_) => Ok(()),
    }
}

/// FlushUnsavedBuffer: writes the partition's journal out, and fsyncs it when asked.
pub async fn flush(shard: &Rc<Shard>, topic: TopicKey, flush: FlushUnsavedBuffer) -> Outcome {
    let (key, owner) = locate(shard, topic, flush.partition_id)?;
    let fsync = flush.fsync;
    match remote::placement(shard, key) {
        Some(remote) => remote::flush(&remote, key, fsync).await?,
        None => {
            on_partition(shard, key, owner, move |_, log| async move {
                Ok(log.flush(fsync).await?)
            })
            .await?
        }
    }
    Ok(Reply::empty())
}

topic_handlers! {
    SendMessages: Need::Send => |cx, request, scope| {
        send(cx.shard, cx.context, cx.session, scope?, request).await
    };
    PollMessages: Need::Poll => |cx, request, scope| {
        poll(cx.shard, cx.context, cx.session, scope?, request).await
    };
    FlushUnsavedBuffer: Need::Send => |cx, request, scope| flush(cx.shard, scope?, request).await;
}
