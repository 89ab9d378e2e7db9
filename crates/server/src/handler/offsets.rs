//! Consumer offsets of single consumers: get, store, delete. Stored on the partition's owner,
//! beside its log. Group offsets come with consumer groups.

use std::rc::Rc;

use galgo_protocol::{
    Consumer, ErrorCode,
    command::offsets::{
        ConsumerOffsetInfo, DeleteConsumerOffset, GetConsumerOffset, OffsetTarget,
        StoreConsumerOffset,
    },
    consumer_key,
};
use galgo_shards::Shard;
use galgo_storage::OffsetOwner;

use super::{Outcome, Reply, messages::locate, partition_calls::on_partition};
use crate::error::CommandError;

fn single_consumer(target: &OffsetTarget) -> Result<OffsetOwner, CommandError> {
    match &target.consumer {
        Consumer::Single(id) => Ok(OffsetOwner::Consumer(consumer_key(id))),
        Consumer::Group(_) => Err(ErrorCode::FeatureUnavailable.into()),
    }
}

/// GetConsumerOffset: `{partition, current, stored}`, or the empty answer when nothing is
/// stored or the stream, topic or partition does not exist.
pub async fn get(shard: &Rc<Shard>, get: GetConsumerOffset) -> Outcome {
    let owner_key = single_consumer(&get.target)?;
    let partition = get.target.partition_id.unwrap_or(0);
    let Ok((key, owner)) = locate(shard, &get.target.stream, &get.target.topic, partition) else {
        return Ok(Reply::empty());
    };
    let info = on_partition(shard, key, owner, move |_, log| async move {
        Ok(log
            .stored_offset(owner_key)
            .map(|stored_offset| ConsumerOffsetInfo {
                partition_id: partition,
                current_offset: log.last_offset().unwrap_or(0),
                stored_offset,
            }))
    })
    .await
    .ok()
    .flatten();
    Ok(match info {
        Some(info) => Reply::encoded(|out| info.encode(out)),
        None => Reply::empty(),
    })
}

/// StoreConsumerOffset: the offset must not pass the partition's last offset.
pub async fn store(shard: &Rc<Shard>, store: StoreConsumerOffset) -> Outcome {
    let owner_key = single_consumer(&store.target)?;
    let partition = store.target.partition_id.unwrap_or(0);
    let (key, owner) = locate(shard, &store.target.stream, &store.target.topic, partition)?;
    let offset = store.offset;
    on_partition(shard, key, owner, move |_, log| async move {
        match log.last_offset() {
            Some(last) if offset <= last => Ok(log.store_offset(owner_key, offset).await?),
            _ => Err(ErrorCode::InvalidOffset.into()),
        }
    })
    .await?;
    Ok(Reply::empty())
}

/// DeleteConsumerOffset: 3021 when nothing is stored.
pub async fn delete(shard: &Rc<Shard>, delete: DeleteConsumerOffset) -> Outcome {
    let owner_key = single_consumer(&delete.target)?;
    let partition = delete.target.partition_id.unwrap_or(0);
    let (key, owner) = locate(
        shard,
        &delete.target.stream,
        &delete.target.topic,
        partition,
    )?;
    on_partition(shard, key, owner, move |_, log| async move {
        if log.delete_offset(owner_key).await? {
            Ok(())
        } else {
            Err(ErrorCode::ConsumerOffsetNotFound.into())
        }
    })
    .await?;
    Ok(Reply::empty())
}
