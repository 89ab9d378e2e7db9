//! DeleteSegments (PROTOCOL.md §5.3): an operator's manual retention on one partition.

use std::rc::Rc;

use galgo_metadata::{Need, TopicKey};
use galgo_protocol::command::topics::DeleteSegments;

use super::{Outcome, Reply, messages::locate, partition_calls::on_partition};
use crate::context::Shard;

/// Deletes up to `segments_count` of the partition's oldest sealed segments, never the active
/// one, and none holding a message past the lowest stored consumer or group offset (what a
/// consumer has not committed yet stays).
pub async fn delete(shard: &Rc<Shard>, topic: TopicKey, delete: DeleteSegments) -> Outcome {
    let (key, owner) = locate(shard, topic, delete.partition_id)?;
    let count = delete.segments_count;
    let removed = on_partition(shard, key, owner, move |_, log| async move {
        let end_offset_max = log.min_stored_offset().unwrap_or(u64::MAX);
        Ok(log.remove_oldest_segments(count, end_offset_max).await?)
    })
    .await?;
    tracing::info!(shard = shard.id().0, partition = %key, asked = count,
        deleted = removed.segments_count, messages = removed.messages_count, "segments deleted");
    Ok(Reply::empty())
}

topic_handlers! {
    DeleteSegments: Need::ManageTopic => |cx, request, scope| {
        delete(cx.shard, scope?, request).await
    };
}
