//! DeleteSegments (PROTOCOL.md §5.3): an operator's manual retention on one partition.

use std::rc::Rc;

use galgo_metadata::{Need, PartitionKey, TopicKey};
use galgo_protocol::{ErrorCode, command::topics::DeleteSegments};

use super::{Outcome, Reply, messages::locate, remote};
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
            shard
                .call(owner, move |shard| async move {
                    delete_owned(&shard, key, count).await
                })
                .await??;
        }
    }
    Ok(Reply::empty())
}

/// DeleteSegments on the partition's owner (a cluster node: this replica's segments, as
/// retention removes them on each replica).
pub(super) async fn delete_owned(
    shard: &Shard,
    key: PartitionKey,
    count: u32,
) -> Result<(), CommandError> {
    let log = shard
        .partition(&key)
        .ok_or(CommandError::Protocol(ErrorCode::PartitionNotFound))?;
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
