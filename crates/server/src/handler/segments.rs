//! DeleteSegments (PROTOCOL.md §5.3): an operator's manual retention on one partition.

use std::rc::Rc;

use galgo_metadata::{Need, PartitionKey, TopicKey};
use galgo_protocol::command::topics::DeleteSegments;
use galgo_storage::PartitionLog;

use super::{Outcome, Reply, messages::locate, partition_calls::on_partition, remote};
use crate::{context::Shard, error::CommandError};

/// Deletes up to `segments_count` of the partition's oldest sealed segments, never the active
/// one, and none holding a message past the lowest stored consumer or group offset (what a
/// consumer has not committed yet stays).
pub async fn delete(shard: &Rc<Shard>, topic: TopicKey, delete: DeleteSegments) -> Outcome {
    let (key, owner) = locate(shard, topic, delete.partition_id)?;
    let count = delete.segments_count;
    match remote::placement(shard, key) {
        Some(remote) => remote::delete_segments(&remote, key, count).await?,
        None => {
            on_partition(shard, key, owner, move |shard, log| async move {
                delete_from(&shard, key, &log, count).await
            })
            .await?
        }
    }
    Ok(Reply::empty())
}

/// DeleteSegments on the partition's owner, with its log (a cluster node: this replica's
/// segments, as retention removes them on each replica).
pub(super) async fn delete_from(
    shard: &Shard,
    key: PartitionKey,
    log: &PartitionLog,
    count: u32,
) -> Result<(), CommandError> {
    let end_offset_max = log.min_stored_offset().unwrap_or(u64::MAX);
    let removed = log.remove_oldest_segments(count, end_offset_max).await?;
    tracing::info!(shard = shard.id().0, partition = %key, asked = count,
        deleted = removed.segments_count, messages = removed.messages_count, "segments deleted");
    Ok(())
}

topic_handlers! {
    DeleteSegments: Need::ManageTopic => |cx, request, scope| {
        delete(cx.shard, scope?, request).await
    };
}
