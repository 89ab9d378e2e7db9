//! Consumer groups: get, list, create, delete, join, leave; leaving on disconnect; and the
//! completion of pending revocations (PROTOCOL.md §5.8, §8.6).
//!
//! Groups and membership live in the metadata: every change is a call to shard 0, whose event
//! reaches every shard before the reply, so a member's next poll is routed by the new
//! assignment on whichever shard its connection is. Group offsets live beside each partition
//! on its owner, which also remembers what it served each group: a revocation completes when
//! the old owner's commit reaches that (checked on join, on store and on auto-commit), or when
//! `[consumer_group] rebalancing_timeout_ms` passes.

use std::{cell::RefCell, collections::HashMap, rc::Rc, time::Duration};

use bytes::BytesMut;
use galgo_metadata::{
    ConsumerGroup, GroupKey, Metadata, MetadataError, Need, PartitionId, PartitionKey, ShardId,
    Topic, TopicKey,
};
use galgo_protocol::{
    ErrorCode, Identifier,
    command::groups::{
        CreateConsumerGroup, DeleteConsumerGroup, GetConsumerGroup, GetConsumerGroups,
        GroupAssignment, GroupDetails, GroupHeader, GroupMember, JoinConsumerGroup,
        LeaveConsumerGroup, SyncConsumerGroup,
    },
};
use galgo_storage::OffsetOwner;

use super::{
    Outcome, Reply,
    messages::replicated_offset,
    metadata_change::{change_metadata, commit_on_shard0},
    offsets::write_offset,
    partition_calls::by_owner,
    remote,
};
use crate::{
    config::ConsumerGroupConfig,
    context::{Context, Shard, now_us},
    error::CommandError,
    session::Session,
};

/// The serving side of consumer groups on one shard: the poll cursors of the members whose
/// connections this shard serves, and, for the partitions it owns, what was served to each
/// group. Memory only: membership does not survive a restart either. Lives in the shard's
/// [`Context`].
#[derive(Debug, Default)]
pub struct GroupServing {
    /// Per (client, group): the round-robin position of the member's last poll without an
    /// explicit partition. A member's polls all come through its own connection, so its
    /// cursor lives on that connection's shard.
    cursors: RefCell<HashMap<(u32, GroupKey), u32>>,
    /// For each (partition this shard owns, consumer group): the last offset a poll served
    /// the group. A pending revocation completes once the group's stored offset reaches it
    /// (PROTOCOL.md §8.6).
    served: RefCell<HashMap<(PartitionKey, u32), u64>>,
}

impl GroupServing {
    /// The partition a member polls next among its `partitions` (round-robin), advancing the
    /// cursor; `None` when it has none.
    pub fn next_partition(
        &self,
        client_id: u32,
        group: GroupKey,
        partitions: &[u32],
    ) -> Option<u32> {
        if partitions.is_empty() {
            return None;
        }
        let mut cursors = self.cursors.borrow_mut();
        let cursor = cursors
            .entry((client_id, group))
            .and_modify(|cursor| *cursor = cursor.wrapping_add(1))
            .or_insert(0);
        Some(partitions[*cursor as usize % partitions.len()])
    }

    /// The partition of the member's last poll (the cursor is read, not advanced).
    pub fn current_partition(
        &self,
        client_id: u32,
        group: GroupKey,
        partitions: &[u32],
    ) -> Option<u32> {
        let cursor = self
            .cursors
            .borrow()
            .get(&(client_id, group))
            .copied()
            .unwrap_or(0);
        (!partitions.is_empty()).then(|| partitions[cursor as usize % partitions.len()])
    }

    /// Forgets a member's cursor (it left the group).
    pub fn forget_cursor(&self, client_id: u32, group: GroupKey) {
        self.cursors.borrow_mut().remove(&(client_id, group));
    }

    /// Forgets every cursor of a client whose connection moved to another shard; its polls
    /// start a new round there.
    pub fn forget_client(&self, client_id: u32) {
        self.cursors
            .borrow_mut()
            .retain(|(client, _), _| *client != client_id);
    }

    /// Records the last offset a poll served `group` from a partition this shard owns.
    pub fn record_served(&self, key: PartitionKey, group: u32, offset: u64) {
        self.served.borrow_mut().insert((key, group), offset);
    }

    /// The last offset a poll served `group` from a partition this shard owns, if any.
    pub fn last_served(&self, key: PartitionKey, group: u32) -> Option<u64> {
        self.served.borrow().get(&(key, group)).copied()
    }

    /// Forgets what was served to `group` from `key` (the group or its offsets were deleted).
    pub fn forget_served(&self, key: PartitionKey, group: u32) {
        self.served.borrow_mut().remove(&(key, group));
    }
}

fn header(topic: &Topic, group: &ConsumerGroup) -> GroupHeader {
    GroupHeader {
        id: group.id.0,
        partitions_count: topic.partitions_count(),
        members_count: group.members_count(),
        name: group.name.clone(),
    }
}

fn details(topic: &Topic, group: &ConsumerGroup) -> GroupDetails {
    let members = group
        .members()
        .map(|member| GroupMember {
            id: member.id.0,
            partitions: member.partitions.clone(),
        })
        .collect();
    GroupDetails {
        header: header(topic, group),
        members,
    }
}

/// The partitions of a group's topic with their owners.
pub fn group_partitions(shard: &Shard, key: GroupKey) -> Vec<(PartitionKey, ShardId)> {
    let metadata = shard.metadata.borrow();
    let Some((topic, _)) = metadata.group_at(key) else {
        return Vec::new();
    };
    topic
        .partitions
        .iter()
        .map(|partition| (partition_key(key, partition.id.0), partition.owner))
        .collect()
}

/// The address of one partition of a group's topic.
pub fn partition_key(group: GroupKey, partition: u32) -> PartitionKey {
    PartitionKey {
        stream: group.stream,
        topic: group.topic,
        partition: PartitionId(partition),
    }
}

/// GetConsumerGroup: the group with its members, or the empty answer.
pub fn get(shard: &Shard, topic: Option<TopicKey>, get: GetConsumerGroup) -> Outcome {
    let metadata = shard.metadata.borrow();
    let Some(Ok((key, _))) = topic.map(|topic| metadata.group_in(topic, &get.group)) else {
        return Ok(Reply::empty());
    };
    let (topic, group) = metadata.group_at(key).expect("just found");
    let details = details(topic, group);
    Ok(Reply::encoded(|out| details.encode(out)))
}

/// SyncConsumerGroup (the 0.9 generation, PROTOCOL-0.9.md §8.7): the caller's partitions in
/// the group that are not being revoked from it (as a poll without a partition would go
/// round), or the empty answer when it is not a member. The generation is the metadata
/// version, which every membership change advances.
pub fn sync(shard: &Shard, session: &Session, topic: TopicKey, sync: SyncConsumerGroup) -> Outcome {
    let metadata = shard.metadata.borrow();
    let (_, group) = metadata.group_in(topic, &sync.group)?;
    let Some(member) = group.member_of_client(session.client_id) else {
        return Ok(Reply::empty());
    };
    let assignment = GroupAssignment {
        generation: metadata.version(),
        partitions: group.pollable_partitions(member.id),
    };
    Ok(Reply::encoded(|out| assignment.encode(out)))
}

/// GetConsumerGroups: every group of a topic, or the empty answer.
pub fn list(shard: &Shard, topic: Option<TopicKey>) -> Outcome {
    let metadata = shard.metadata.borrow();
    let Some(Ok(topic)) = topic.map(|topic| metadata.topic_by_key(topic)) else {
        return Ok(Reply::empty());
    };
    let mut out = BytesMut::new();
    for group in topic.groups() {
        header(topic, group).encode(&mut out);
    }
    Ok(Reply::bytes(out))
}

/// CreateConsumerGroup: answers the new group's header (no members yet). Offsets an earlier
/// group of the same id left behind (a crash between its deletion and their removal) are
/// removed before the group exists.
pub async fn create(shard: &Rc<Shard>, create: CreateConsumerGroup) -> Outcome {
    let key = shard
        .call(ShardId(0), move |shard0| async move {
            let log = shard0.lock_metadata().await;
            let prepare = move |metadata: &Metadata| {
                metadata
                    .prepare_create_group(&create.stream, &create.topic, &create.name)
                    .map(Some)
            };
            let key = prepare(&shard0.metadata.borrow())?
                .expect("a group was prepared")
                .group;
            let partitions = topic_partitions(&shard0, key);
            forget_group_offsets(&shard0, partitions, key.group.0).await?;
            let created = commit_on_shard0(&shard0, &log, prepare).await?;
            let created = created.expect("a group was prepared").group;
            // On a cluster node another change may have come first and the group got another
            // id.
            if created != key {
                let partitions = topic_partitions(&shard0, created);
                forget_group_offsets(&shard0, partitions, created.group.0).await?;
            }
            Ok::<_, CommandError>(created)
        })
        .await??;
    let metadata = shard.metadata.borrow();
    let (topic, group) = metadata
        .group_at(key)
        .ok_or(CommandError::Metadata(MetadataError::GroupNotFound))?;
    let header = header(topic, group);
    Ok(Reply::encoded(|out| header.encode(out)))
}

/// The partitions of the topic a (possibly not yet created) group belongs to.
fn topic_partitions(shard: &Shard, key: GroupKey) -> Vec<(PartitionKey, ShardId)> {
    let metadata = shard.metadata.borrow();
    let topic = metadata.topic(
        &Identifier::Numeric(key.stream.0),
        &Identifier::Numeric(key.topic.0),
    );
    topic.map_or_else(
        |_| Vec::new(),
        |topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (partition_key(key, partition.id.0), partition.owner))
                .collect()
        },
    )
}

/// DeleteConsumerGroup: the group goes, and so do its stored offsets.
pub async fn delete(shard: &Rc<Shard>, topic: TopicKey, delete: DeleteConsumerGroup) -> Outcome {
    let (key, partitions) = {
        let metadata = shard.metadata.borrow();
        let (key, _) = metadata.group_in(topic, &delete.group)?;
        drop(metadata);
        (key, group_partitions(shard, key))
    };
    let (stream, topic, group) = (delete.stream, delete.topic, delete.group);
    change_metadata(shard, move |metadata| {
        metadata.prepare_delete_group(&stream, &topic, &group)
    })
    .await?;
    forget_group_offsets(shard, partitions, key.group.0).await?;
    Ok(Reply::empty())
}

/// Removes a group's stored offsets (and what was served to it) from the given partitions;
/// on a cluster node through each partition's group, so that every node forgets them.
async fn forget_group_offsets(
    shard: &Rc<Shard>,
    partitions: Vec<(PartitionKey, ShardId)>,
    group: u32,
) -> Result<(), CommandError> {
    let owner_key = OffsetOwner::Group(group);
    let (remote, partitions): (Vec<_>, Vec<_>) = partitions
        .into_iter()
        .partition(|&(key, _)| remote::placement(shard, key).is_some());
    for (key, owner) in remote {
        // Best effort, as below; a replica node serves the delete through the group.
        match write_offset(shard, (key, owner), owner_key, None, None).await {
            Ok(()) | Err(CommandError::Protocol(ErrorCode::ConsumerOffsetNotFound)) => {}
            Err(error) => {
                tracing::warn!(partition = %key, group, %error,
                    "a deleted group's offset could not be removed");
            }
        }
    }
    for (owner, keys) in by_owner(partitions) {
        shard
            .call(owner, move |shard| async move {
                for key in keys {
                    shard.state().groups.forget_served(key, group);
                    shard.state().proposed_offsets.forget(key, owner_key);
                    let Some(log) = shard.partition(&key) else {
                        continue;
                    };
                    match shard.state().replica(&key) {
                        Some(replica) if log.stored_offset(owner_key).is_some() => {
                            // Best effort: an offset left behind (no leader now) is one a
                            // group reusing the id would start from.
                            if let Err(error) =
                                replicated_offset(&shard, &replica, owner_key, None).await
                            {
                                tracing::warn!(partition = %key, group, %error,
                                    "a deleted group's offset could not be removed");
                            }
                        }
                        Some(_) => {}
                        None => {
                            log.delete_offset(owner_key).await?;
                        }
                    }
                }
                Ok::<_, CommandError>(())
            })
            .await??;
    }
    Ok(())
}

/// JoinConsumerGroup: a cooperative rebalance; joining twice is a no-op.
pub async fn join(shard: &Rc<Shard>, session: &Session, join: JoinConsumerGroup) -> Outcome {
    let client_id = session.client_id;
    let node = shard.state().node_id();
    shard
        .call(ShardId(0), move |shard0| async move {
            let log = shard0.lock_metadata().await;
            let (key, _) =
                shard0
                    .metadata
                    .borrow()
                    .group(&join.stream, &join.topic, &join.group)?;
            let at_us = now_us();
            commit_on_shard0(&shard0, &log, |metadata| {
                metadata.prepare_join_group(
                    &join.stream,
                    &join.topic,
                    &join.group,
                    (client_id, node),
                    at_us,
                )
            })
            .await?;
            drop(log);
            complete_ready_revocations(&shard0, key).await
        })
        .await??;
    Ok(Reply::empty())
}

/// LeaveConsumerGroup: a full rebalance; 5006 when the caller is not a member.
pub async fn leave(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    leave: LeaveConsumerGroup,
) -> Outcome {
    let (key, _) = shard.metadata.borrow().group_in(topic, &leave.group)?;
    leave_group(shard, key, session.client_id).await?;
    context.groups.forget_cursor(session.client_id, key);
    Ok(Reply::empty())
}

async fn leave_group(shard: &Rc<Shard>, key: GroupKey, client_id: u32) -> Result<(), CommandError> {
    shard
        .call(ShardId(0), move |shard0| async move {
            let log = shard0.lock_metadata().await;
            commit_on_shard0(&shard0, &log, |metadata| {
                metadata.prepare_leave_group(key, client_id).map(Some)
            })
            .await?;
            Ok::<_, CommandError>(())
        })
        .await?
}

/// A client disconnected: it leaves every group it was in. Its shard's replica knows them
/// all (a join is applied on the joining shard before it is answered).
pub async fn leave_all(shard: &Rc<Shard>, context: &Context, client_id: u32) {
    let memberships = shard.metadata.borrow().memberships_of(client_id);
    for (key, _) in memberships {
        context.groups.forget_cursor(client_id, key);
        match leave_group(shard, key, client_id).await {
            Ok(()) => {
                tracing::debug!(shard = shard.id().0, client_id, group = ?key, "disconnected member left its group")
            }
            Err(error) => {
                tracing::debug!(shard = shard.id().0, client_id, group = ?key, %error, "disconnected member could not leave")
            }
        }
    }
}

/// True when a revocation of `key` from `group` may complete now, as its owner sees it: the
/// group was never served from it, or its stored offset reached what it was served. Runs on
/// the partition's owner.
pub fn revocation_ready(shard: &Shard, key: PartitionKey, group: u32) -> bool {
    let Some(served) = shard.state().groups.last_served(key, group) else {
        return true;
    };
    shard
        .partition(&key)
        .and_then(|log| log.stored_offset(OffsetOwner::Group(group)))
        .is_some_and(|stored| stored >= served)
}

/// On a partition's owner, after the group's offset moved: if the partition is pending
/// revocation in this group and is now ready, asks shard 0 to complete it.
pub async fn after_group_commit(
    shard: &Rc<Shard>,
    group: GroupKey,
    partition: u32,
) -> Result<(), CommandError> {
    let pending = shard
        .metadata
        .borrow()
        .group_at(group)
        .is_some_and(|(_, found)| found.is_pending(partition));
    if !pending || !revocation_ready(shard, partition_key(group, partition), group.group.0) {
        return Ok(());
    }
    complete_revocations(shard, group, vec![partition]).await
}

/// Shard 0: asks each owner which of the group's pending revocations are ready and completes
/// those.
async fn complete_ready_revocations(shard0: &Rc<Shard>, key: GroupKey) -> Result<(), CommandError> {
    let pending: Vec<(PartitionKey, ShardId)> = {
        let metadata = shard0.metadata.borrow();
        let Some((topic, group)) = metadata.group_at(key) else {
            return Ok(());
        };
        group
            .pending_revocations()
            .filter_map(|(partition, _)| {
                let owner = topic.partitions.get(partition as usize)?.owner;
                Some((partition_key(key, partition), owner))
            })
            .collect()
    };
    let mut ready = Vec::new();
    for (owner, keys) in by_owner(pending) {
        let group = key.group.0;
        let found = shard0
            .call(owner, move |shard| async move {
                keys.into_iter()
                    .filter(|partition| revocation_ready(&shard, *partition, group))
                    .map(|partition| partition.partition.0)
                    .collect::<Vec<_>>()
            })
            .await?;
        ready.extend(found);
    }
    complete_revocations(shard0, key, ready).await
}

/// Moves the listed partitions that are still pending to their new owners (on shard 0).
async fn complete_revocations(
    shard: &Rc<Shard>,
    key: GroupKey,
    partitions: Vec<u32>,
) -> Result<(), CommandError> {
    if partitions.is_empty() {
        return Ok(());
    }
    shard
        .call(ShardId(0), move |shard0| async move {
            let log = shard0.lock_metadata().await;
            commit_on_shard0(&shard0, &log, |metadata| {
                Ok(metadata.prepare_complete_revocations(key, &partitions))
            })
            .await?;
            Ok::<_, CommandError>(())
        })
        .await?
}

/// Shard 0, until the server stops: completes revocations older than the timeout.
pub async fn expire_revocations(shard0: Rc<Shard>, config: ConsumerGroupConfig) {
    let period = Duration::from_millis(config.rebalancing_check_interval_ms);
    let timeout_us = config.rebalancing_timeout_ms.saturating_mul(1000);
    let mut ticks = compio::time::interval(period);
    loop {
        ticks.tick().await;
        if shard0.is_stopping() {
            return;
        }
        let late = shard0
            .metadata
            .borrow()
            .revocations_begun_before(now_us().saturating_sub(timeout_us));
        for (key, partitions) in late {
            tracing::info!(group = ?key, ?partitions, "revocations timed out; moving the partitions");
            if let Err(error) = complete_revocations(&shard0, key, partitions).await {
                tracing::warn!(group = ?key, %error, "cannot complete timed-out revocations");
            }
        }
    }
}

// Every group command reads the topic's groups: read_topic over it is enough (as in Iggy).
topic_handlers! {
    GetConsumerGroup: Need::ReadTopic => |cx, request, scope| get(cx.shard, scope.ok(), request);
    GetConsumerGroups: Need::ReadTopic => |cx, _, scope| list(cx.shard, scope.ok());
    CreateConsumerGroup: Need::ReadTopic => |cx, request, _| create(cx.shard, request).await;
    DeleteConsumerGroup: Need::ReadTopic => |cx, request, scope| {
        delete(cx.shard, scope?, request).await
    };
    JoinConsumerGroup: Need::ReadTopic => |cx, request, _| join(cx.shard, cx.session, request).await;
    SyncConsumerGroup: Need::ReadTopic => |cx, request, scope| sync(cx.shard, cx.session, scope?, request);
    LeaveConsumerGroup: Need::ReadTopic => |cx, request, scope| {
        leave(cx.shard, cx.context, cx.session, scope?, request).await
    };
}
