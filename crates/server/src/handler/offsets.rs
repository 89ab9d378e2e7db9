//! Consumer offsets of single consumers and of consumer groups: get, store, delete. Stored on
//! the partition's owner, beside its log (PROTOCOL.md §5.7).

use std::rc::Rc;

use galgo_metadata::{GroupKey, MetadataError, Need, PartitionKey, ShardId, TopicKey};
use galgo_protocol::{
    Consumer, ErrorCode,
    command::offsets::{
        ConsumerOffsetInfo, DeleteConsumerOffset, GetConsumerOffset, OffsetTarget,
        StoreConsumerOffset,
    },
    consumer_key,
};
use galgo_storage::OffsetOwner;

use super::{
    Outcome, Reply,
    groups::after_group_commit,
    messages::{locate, replicated_offset},
    remote,
};
use crate::{
    context::{Context, Shard},
    error::CommandError,
    session::Session,
};

/// Whose offset, on which partition; for a group member also the group (its commits may
/// complete a pending revocation).
struct Resolved {
    owner_key: OffsetOwner,
    partition: u32,
    group: Option<GroupKey>,
}

/// For reading: a missing partition means 0, and a group needs no membership.
fn resolve_for_read(
    shard: &Shard,
    topic: TopicKey,
    target: &OffsetTarget,
) -> Result<Resolved, CommandError> {
    let partition = target.partition_id.unwrap_or(0);
    let (owner_key, group) = match &target.consumer {
        Consumer::Single(id) => (OffsetOwner::Consumer(consumer_key(id)), None),
        Consumer::Group(id) => {
            let metadata = shard.metadata.borrow();
            let (key, _) = metadata.group_in(topic, id)?;
            (OffsetOwner::Group(key.group.0), Some(key))
        }
    };
    Ok(Resolved {
        owner_key,
        partition,
        group,
    })
}

/// For writing: a group requires membership (5006); the partition must be one the member
/// owns (3022), and a missing one means the member's current round-robin partition.
fn resolve_for_write(
    shard: &Shard,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    target: &OffsetTarget,
) -> Result<Resolved, CommandError> {
    let Consumer::Group(id) = &target.consumer else {
        return resolve_for_read(shard, topic, target);
    };
    let metadata = shard.metadata.borrow();
    let (key, group) = metadata.group_in(topic, id)?;
    let member = group
        .member_of_client(session.client_id)
        .ok_or(MetadataError::NotGroupMember)?;
    let partition = match target.partition_id {
        Some(partition) => Some(partition).filter(|&p| group.owns(member.id, p)),
        None => {
            let partitions = group.pollable_partitions(member.id);
            context
                .groups
                .current_partition(session.client_id, key, &partitions)
        }
    }
    .ok_or(ErrorCode::NotResolvedConsumer)?;
    Ok(Resolved {
        owner_key: OffsetOwner::Group(key.group.0),
        partition,
        group: Some(key),
    })
}

/// GetConsumerOffset: `{partition, current, stored}`, or the empty answer when nothing is
/// stored or the stream, topic, group or partition does not exist.
pub async fn get(shard: &Rc<Shard>, topic: Option<TopicKey>, get: GetConsumerOffset) -> Outcome {
    let Some(topic) = topic else {
        return Ok(Reply::empty());
    };
    let Ok(resolved) = resolve_for_read(shard, topic, &get.target) else {
        return Ok(Reply::empty());
    };
    let owner_key = resolved.owner_key;
    let Ok((key, owner)) = locate(shard, topic, resolved.partition) else {
        return Ok(Reply::empty());
    };
    let remote = remote::placement(shard, key);
    let info = shard
        .call(owner, move |shard| async move {
            match remote {
                Some(remote) => remote::get_offset(&shard, &remote, key, owner_key).await,
                None => get_owned(&shard, key, owner_key).map(|(current_offset, stored)| {
                    stored.map(|stored_offset| ConsumerOffsetInfo {
                        partition_id: key.partition.0,
                        current_offset,
                        stored_offset,
                    })
                }),
            }
        })
        .await
        .map_err(CommandError::from)
        .and_then(|info| info);
    Ok(match info.ok().flatten() {
        Some(info) => Reply::encoded(|out| info.encode(out)),
        None => Reply::empty(),
    })
}

/// GetConsumerOffset on the partition's owner: the current offset (a replicated partition's
/// last committed one), and the stored one if any.
pub(super) fn get_owned(
    shard: &Shard,
    key: PartitionKey,
    owner_key: OffsetOwner,
) -> Result<(u64, Option<u64>), CommandError> {
    let log = shard
        .partition(&key)
        .ok_or(CommandError::Protocol(ErrorCode::PartitionNotFound))?;
    let current_offset = match shard.state().replica(&key) {
        Some(replica) => replica.view().high_watermark().saturating_sub(1),
        None => log.last_offset().unwrap_or(0),
    };
    // What an auto-commit poll proposed here counts as stored until it settles.
    let proposed = shard.state().proposed_offsets.get(key, owner_key);
    Ok((
        current_offset,
        proposed.or_else(|| log.stored_offset(owner_key)),
    ))
}

/// StoreConsumerOffset: the offset must not pass the partition's last offset. A group's
/// commit may complete a pending revocation of that partition.
pub async fn store(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    store: StoreConsumerOffset,
) -> Outcome {
    let resolved = resolve_for_write(shard, context, session, topic, &store.target)?;
    let (owner_key, group) = (resolved.owner_key, resolved.group);
    let (key, owner) = locate(shard, topic, resolved.partition)?;
    write_offset(shard, (key, owner), owner_key, Some(store.offset), group).await?;
    Ok(Reply::empty())
}

/// DeleteConsumerOffset: 3021 when nothing is stored.
pub async fn delete(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    topic: TopicKey,
    delete: DeleteConsumerOffset,
) -> Outcome {
    let resolved = resolve_for_write(shard, context, session, topic, &delete.target)?;
    let owner_key = resolved.owner_key;
    let (key, owner) = locate(shard, topic, resolved.partition)?;
    write_offset(shard, (key, owner), owner_key, None, None).await?;
    Ok(Reply::empty())
}

/// Stores (`Some`) or deletes (`None`) an offset from the partition's owner shard: through a
/// replica node when this node holds none ([`remote::write_offset`]), else
/// [`write_owned`].
pub(super) async fn write_offset(
    shard: &Rc<Shard>,
    (key, owner): (PartitionKey, ShardId),
    owner_key: OffsetOwner,
    offset: Option<u64>,
    group: Option<GroupKey>,
) -> Result<(), CommandError> {
    let remote = remote::placement(shard, key);
    shard
        .call(owner, move |shard| async move {
            match remote {
                Some(remote) => remote::write_offset(&shard, &remote, key, owner_key, offset).await,
                None => write_owned(&shard, key, owner_key, offset, group).await,
            }
        })
        .await?
}

/// Stores (`Some`) or deletes (`None`) an offset on the partition's owner: through its group
/// on a cluster node (the leader checks the offset against what it committed), otherwise
/// checked against the log's last offset here. A delete of nothing stored is 3021. `group`:
/// the consumer group whose commit this is, which may complete a pending revocation.
pub(super) async fn write_owned(
    shard: &Rc<Shard>,
    key: PartitionKey,
    owner_key: OffsetOwner,
    offset: Option<u64>,
    group: Option<GroupKey>,
) -> Result<(), CommandError> {
    let log = shard
        .partition(&key)
        .ok_or(CommandError::Protocol(ErrorCode::PartitionNotFound))?;
    match (shard.state().serving_replica(&key)?, offset) {
        (Some(replica), _) => {
            shard.state().proposed_offsets.forget(key, owner_key);
            replicated_offset(shard, &replica, owner_key, offset).await?;
        }
        (None, Some(offset)) => match log.last_offset() {
            Some(last) if offset <= last => log.store_offset(owner_key, offset).await?,
            _ => return Err(ErrorCode::InvalidOffset.into()),
        },
        (None, None) => {
            if !log.delete_offset(owner_key).await? {
                return Err(ErrorCode::ConsumerOffsetNotFound.into());
            }
        }
    }
    if let Some(group) = group
        && offset.is_some()
    {
        after_group_commit(shard, group, key.partition.0).await?;
    }
    Ok(())
}

topic_handlers! {
    GetConsumerOffset in target: Need::Poll => |cx, request, scope| {
        get(cx.shard, scope.ok(), request).await
    };
    StoreConsumerOffset in target: Need::Poll => |cx, request, scope| {
        store(cx.shard, cx.context, cx.session, scope?, request).await
    };
    DeleteConsumerOffset in target: Need::Poll => |cx, request, scope| {
        delete(cx.shard, cx.context, cx.session, scope?, request).await
    };
}
