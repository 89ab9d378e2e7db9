//! How a metadata command runs: on shard 0, under the metadata lock, validated against shard
//! 0's replica, with the partition logs it creates opened on their owners *before* the change
//! is persisted and the ones it removes deleted *after* (so an id reused by a later create
//! never meets stale files), and broadcast to every shard before the reply.

use std::rc::Rc;

use galgo_metadata::{
    Change, Metadata, MetadataError, NewTopic, PartitionId, PartitionKey, PartitionsChange,
    ShardId, TopicChange,
};

use galgo_cluster::{MetadataGroup, ProposeError};
use galgo_storage::MetadataLog;

use super::partition_calls::{PartitionOp, on_owners};
use crate::{context::Shard, error::CommandError};

/// Runs `prepare` against shard 0's replica and commits the change it returns. Returns that
/// change as `prepare` typed it (with the ids shard 0 assigned), so the caller reads them
/// without matching on [`Change`].
pub async fn change_metadata<C, P>(shard: &Rc<Shard>, prepare: P) -> Result<C, CommandError>
where
    C: Into<Change> + Clone + Send + 'static,
    P: Fn(&Metadata) -> Result<C, MetadataError> + Send + 'static,
{
    shard
        .call(ShardId(0), move |shard0| async move {
            let log = shard0.lock_metadata().await;
            if let Some(group) = shard0.state().metadata_group().cloned() {
                let prepared =
                    propose_change(&shard0, &group, |metadata| prepare(metadata).map(Some));
                return Ok(prepared.await?.expect("a change was prepared"));
            }
            let prepared = prepare(&shard0.metadata.borrow())?;
            let change: Change = prepared.clone().into();
            let created = partitions_created_by(&shard0.metadata.borrow(), &change);
            on_owners(&shard0, created, PartitionOp::OpenFresh).await?;
            let removed = shard0.metadata.borrow().partitions_removed_by(&change);
            shard0.commit(&log, change).await?;
            drop(log);
            on_owners(&shard0, removed, PartitionOp::Remove).await?;
            Ok(prepared)
        })
        .await?
}

/// How many times a cluster node prepares a change again when other changes keep coming
/// first.
const CONFLICTS_MAX: u32 = 16;

/// A cluster node's `change_metadata`, on shard 0 under the metadata lock: prepares against
/// this node's replica and proposes to the metadata group; the change applies on every node
/// (crate::cluster::ReplicatedMetadata), and here before this returns. When another change
/// came first, prepares again against the newer replica. `prepare` may find nothing to change
/// (`None`, proposed as nothing).
async fn propose_change<C, P>(
    shard0: &Rc<Shard>,
    group: &MetadataGroup,
    prepare: P,
) -> Result<Option<C>, CommandError>
where
    C: Into<Change> + Clone,
    P: Fn(&Metadata) -> Result<Option<C>, MetadataError>,
{
    for _ in 0..CONFLICTS_MAX {
        let (version, prepared) = {
            let metadata = shard0.metadata.borrow();
            (metadata.version(), prepare(&metadata)?)
        };
        let Some(prepared) = prepared else {
            return Ok(None);
        };
        match group.propose(version, prepared.clone().into()).await {
            Ok(()) => return Ok(Some(prepared)),
            Err(ProposeError::Conflict) => {}
            Err(error) => return Err(CommandError::Cluster(error)),
        }
    }
    Err(CommandError::Cluster(ProposeError::Conflict))
}

/// On shard 0, holding the metadata lock (`log`): makes what `prepare` returns, if anything,
/// the next metadata change: in the metadata log on a single node, through the metadata group
/// on a cluster node. For changes that create and remove no partition (consumer groups and
/// their members); [`change_metadata`] handles those that do.
pub async fn commit_on_shard0<C, P>(
    shard0: &Rc<Shard>,
    log: &MetadataLog,
    prepare: P,
) -> Result<Option<C>, CommandError>
where
    C: Into<Change> + Clone,
    P: Fn(&Metadata) -> Result<Option<C>, MetadataError>,
{
    if let Some(group) = shard0.state().metadata_group().cloned() {
        return propose_change(shard0, &group, prepare).await;
    }
    let prepared = prepare(&shard0.metadata.borrow())?;
    if let Some(change) = &prepared {
        shard0.commit(log, change.clone()).await?;
    }
    Ok(prepared)
}

/// The partitions a change creates, with the owners placement will give them.
pub fn partitions_created_by(metadata: &Metadata, change: &Change) -> Vec<(PartitionKey, ShardId)> {
    let (stream, topic, first, count) = match change {
        Change::Topic(TopicChange::Create(NewTopic {
            stream_id,
            id,
            partitions_count,
            ..
        })) => (*stream_id, *id, 0, *partitions_count),
        Change::Partitions(PartitionsChange::Create {
            stream_id,
            topic_id,
            count,
            ..
        }) => {
            let existing = metadata
                .streams()
                .find(|stream| stream.id == *stream_id)
                .and_then(|stream| stream.topics().find(|topic| topic.id == *topic_id))
                .map_or(0, |topic| topic.partitions.len() as u32);
            (*stream_id, *topic_id, existing, *count)
        }
        _ => return Vec::new(),
    };
    let owners = metadata.plan_placement(count);
    (first..first + count)
        .zip(owners)
        .map(|(partition, owner)| {
            let key = PartitionKey {
                stream,
                topic,
                partition: PartitionId(partition),
            };
            (key, owner)
        })
        .collect()
}
