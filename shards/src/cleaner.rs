//! The per-shard retention cleaner (PROTOCOL.md §9.5): every `cleaner_interval_ms` it deletes
//! the expired sealed segments of the partitions this shard owns, and trims the topics over
//! their size limit whose partition 0 this shard owns.
//!
//! Expiry is a per-partition rule, so each shard applies it alone. A size limit is a topic's:
//! its partitions may live on several shards, so exactly one shard (partition 0's owner)
//! gathers every partition's sealed segments, picks the oldest across the topic until the rest
//! fits, and asks each owner to delete its share. An owner deletes "the oldest sealed segments
//! up to end offset X", so a pick that raced with expiry never deletes more than was chosen.

use std::{
    collections::BTreeMap,
    rc::Rc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use galgo_metadata::{PartitionKey, ShardId, Topic};
use galgo_storage::StorageError;

use crate::{CallError, Shard, ShardState};

/// Runs until the shard stops; does nothing when the interval is 0. Start one on every
/// shard.
pub async fn run_retention_cleaner<S: ShardState>(shard: Rc<Shard<S>>) {
    let interval_ms = shard.storage().cleaner_interval_ms;
    if interval_ms == 0 {
        return;
    }
    let mut ticks = compio::time::interval(Duration::from_millis(interval_ms));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        if shard.is_stopping() {
            return;
        }
        if let Err(error) = clean_retention(&shard).await {
            tracing::error!(shard = shard.id().0, %error, "retention cleaner failed");
        }
    }
}

/// Why a cleaner run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CleanerError {
    /// A segment could not be deleted.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Another shard could not be reached.
    #[error("{0}")]
    Call(#[from] CallError),
}

/// One cleaner run on this shard: expiry of its own partitions, then the size limits of the
/// topics it trims.
pub async fn clean_retention<S: ShardState>(shard: &Rc<Shard<S>>) -> Result<(), CleanerError> {
    let now_us = now_us();
    for (key, log) in shard.owned_partitions() {
        let expiry_us = shard
            .metadata
            .borrow()
            .partitions_topic(key)
            .map(|topic| topic.settings.message_expiry_us);
        if let Some(expiry_us) = expiry_us.filter(|&expiry| expiry != u64::MAX) {
            log.remove_expired_segments(now_us, Some(expiry_us), None)
                .await?;
        }
    }
    for (partitions, size_bytes_max) in topics_to_trim(shard) {
        trim_topic(shard, partitions, size_bytes_max).await?;
    }
    Ok(())
}

type TopicPartitions = Vec<(PartitionKey, ShardId)>;

/// Topics with a size limit whose partition 0 this shard owns.
fn topics_to_trim<S: ShardState>(shard: &Shard<S>) -> Vec<(TopicPartitions, u64)> {
    let metadata = shard.metadata.borrow();
    let mut found = Vec::new();
    for stream in metadata.streams() {
        for topic in stream.topics() {
            let limit = topic.settings.max_topic_size_bytes;
            let trims_here = topic.partitions.first().map(|p| p.owner) == Some(shard.id());
            if limit == u64::MAX || !trims_here {
                continue;
            }
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let key = PartitionKey {
                        stream: stream.id,
                        topic: topic.id,
                        partition: partition.id,
                    };
                    (key, partition.owner)
                })
                .collect();
            found.push((partitions, limit));
        }
    }
    found
}

/// A sealed segment as the size rule sees it.
struct Candidate {
    key: PartitionKey,
    end_offset: u64,
    end_timestamp: u64,
    size_bytes: u64,
}

/// Deletes the topic's oldest sealed segments (by end timestamp, across partitions) until the
/// topic fits in `size_bytes_max`.
async fn trim_topic<S: ShardState>(
    shard: &Rc<Shard<S>>,
    partitions: TopicPartitions,
    size_bytes_max: u64,
) -> Result<(), CleanerError> {
    let (mut size_bytes, mut candidates) = gather_segments(shard, &partitions).await?;
    if size_bytes <= size_bytes_max {
        return Ok(());
    }
    candidates.sort_by_key(|c| (c.end_timestamp, c.key, c.end_offset));
    let mut last_removed: BTreeMap<PartitionKey, u64> = BTreeMap::new();
    for candidate in candidates {
        if size_bytes <= size_bytes_max {
            break;
        }
        size_bytes -= candidate.size_bytes;
        last_removed.insert(candidate.key, candidate.end_offset);
    }
    let owners: BTreeMap<PartitionKey, ShardId> = partitions.into_iter().collect();
    for (key, end_offset) in last_removed {
        let owner = owners[&key];
        shard
            .call(owner, move |shard| async move {
                match shard.partition(&key) {
                    Some(log) => log.remove_oldest_segments(u32::MAX, end_offset).await,
                    None => Ok(Default::default()),
                }
            })
            .await??;
    }
    Ok(())
}

/// The topic's size and its sealed segments, one call per owning shard.
async fn gather_segments<S: ShardState>(
    shard: &Rc<Shard<S>>,
    partitions: &TopicPartitions,
) -> Result<(u64, Vec<Candidate>), CleanerError> {
    let mut by_owner: BTreeMap<ShardId, Vec<PartitionKey>> = BTreeMap::new();
    for (key, owner) in partitions {
        by_owner.entry(*owner).or_default().push(*key);
    }
    let mut size_bytes = 0;
    let mut candidates = Vec::new();
    for (owner, keys) in by_owner {
        let gathered = shard
            .call(owner, move |shard| async move {
                let mut size_bytes = 0;
                let mut found = Vec::new();
                for key in keys {
                    let Some(log) = shard.partition(&key) else {
                        continue;
                    };
                    size_bytes += log.stats().size_bytes;
                    let sealed = log.segments().into_iter().filter(|s| s.sealed);
                    found.extend(sealed.map(|segment| Candidate {
                        key,
                        end_offset: segment.end_offset.expect("a sealed segment is not empty"),
                        end_timestamp: segment.end_timestamp,
                        size_bytes: segment.size_bytes,
                    }));
                }
                (size_bytes, found)
            })
            .await?;
        size_bytes += gathered.0;
        candidates.extend(gathered.1);
    }
    Ok((size_bytes, candidates))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}

/// The topic of a partition, for its settings.
trait PartitionsTopic {
    fn partitions_topic(&self, key: PartitionKey) -> Option<&Topic>;
}

impl PartitionsTopic for galgo_metadata::Metadata {
    fn partitions_topic(&self, key: PartitionKey) -> Option<&Topic> {
        use galgo_protocol::identifier::Identifier;
        self.topic(
            &Identifier::Numeric(key.stream.0),
            &Identifier::Numeric(key.topic.0),
        )
        .ok()
    }
}
