//! Topics and their partitions: get, list, create, update, delete, purge; add and remove
//! partitions.

use std::{collections::BTreeMap, rc::Rc};

use bytes::BytesMut;
use galgo_metadata::{PartitionKey, StreamId, Topic, TopicSettings};
use galgo_protocol::{
    Identifier,
    command::topics::{
        CompressionAlgorithm, CreatePartitions, CreateTopic, DeletePartitions, DeleteTopic,
        GetTopic, PartitionInfo, PurgeTopic, TopicDetails, TopicHeader, UpdateTopic,
    },
};
use galgo_shards::Shard;

use super::{
    Outcome, Reply,
    metadata_change::change_metadata,
    partition_calls::{PartitionFigures, PartitionOp, gather_figures, on_owners},
};
use crate::context::now_us;

type Figures = BTreeMap<PartitionKey, PartitionFigures>;

fn key_of(stream: StreamId, topic: &Topic, partition: u32) -> PartitionKey {
    PartitionKey {
        stream,
        topic: topic.id,
        partition: galgo_metadata::PartitionId(partition),
    }
}

fn compression(code: u8) -> CompressionAlgorithm {
    if code == CompressionAlgorithm::Gzip.as_u8() {
        CompressionAlgorithm::Gzip
    } else {
        CompressionAlgorithm::None
    }
}

/// A topic's header with sums over its partitions.
pub fn topic_header(stream: StreamId, topic: &Topic, figures: &Figures) -> TopicHeader {
    let (size_bytes, messages_count) = topic
        .partitions
        .iter()
        .filter_map(|partition| figures.get(&key_of(stream, topic, partition.id.0)))
        .fold((0, 0), |(size, count), figures| {
            (
                size + figures.stats.size_bytes,
                count + figures.stats.messages_count,
            )
        });
    TopicHeader {
        id: topic.id.0,
        created_at_us: topic.created_at_us,
        partitions_count: topic.partitions.len() as u32,
        message_expiry_us: topic.settings.message_expiry_us,
        compression: compression(topic.settings.compression),
        max_topic_size_bytes: topic.settings.max_topic_size_bytes,
        replication_factor: topic.settings.replication_factor,
        size_bytes,
        messages_count,
        name: topic.name.clone(),
    }
}

fn topic_details(stream: StreamId, topic: &Topic, figures: &Figures) -> TopicDetails {
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let found = figures
                .get(&key_of(stream, topic, partition.id.0))
                .copied()
                .unwrap_or_default();
            PartitionInfo {
                id: partition.id.0,
                created_at_us: partition.created_at_us,
                segments_count: found.stats.segments_count,
                current_offset: found.current_offset,
                size_bytes: found.stats.size_bytes,
                messages_count: found.stats.messages_count,
            }
        })
        .collect();
    TopicDetails {
        header: topic_header(stream, topic, figures),
        partitions,
    }
}

/// The partitions of one topic with their owners, if the topic exists.
fn topic_partitions(
    shard: &Shard,
    stream: &Identifier,
    topic: &Identifier,
) -> Option<Vec<(PartitionKey, galgo_metadata::ShardId)>> {
    let metadata = shard.metadata.borrow();
    let stream_id = metadata.stream(stream).ok()?.id;
    let topic = metadata.topic(stream, topic).ok()?;
    Some(
        topic
            .partitions
            .iter()
            .map(|partition| (key_of(stream_id, topic, partition.id.0), partition.owner))
            .collect(),
    )
}

/// GetTopic: the topic and its partitions, or the empty answer.
pub async fn get(shard: &Rc<Shard>, get: GetTopic) -> Outcome {
    let Some(partitions) = topic_partitions(shard, &get.stream, &get.topic) else {
        return Ok(Reply::empty());
    };
    let figures = gather_figures(shard, partitions).await?;
    let metadata = shard.metadata.borrow();
    let (Ok(stream), Ok(topic)) = (
        metadata.stream(&get.stream),
        metadata.topic(&get.stream, &get.topic),
    ) else {
        return Ok(Reply::empty());
    };
    let details = topic_details(stream.id, topic, &figures);
    Ok(Reply::encoded(|out| details.encode(out)))
}

/// GetTopics: every topic of a stream, or the empty answer.
pub async fn list(shard: &Rc<Shard>, stream: Identifier) -> Outcome {
    let partitions = {
        let metadata = shard.metadata.borrow();
        let Ok(found) = metadata.stream(&stream) else {
            return Ok(Reply::empty());
        };
        let id = found.id;
        super::streams::partitions_of(&metadata, |candidate| candidate.id == id)
    };
    let figures = gather_figures(shard, partitions).await?;
    let metadata = shard.metadata.borrow();
    let Ok(stream) = metadata.stream(&stream) else {
        return Ok(Reply::empty());
    };
    let mut out = BytesMut::new();
    for topic in stream.topics() {
        topic_header(stream.id, topic, &figures).encode(&mut out);
    }
    Ok(Reply::bytes(out))
}

fn settings(
    compression: CompressionAlgorithm,
    message_expiry_us: u64,
    max_topic_size_bytes: u64,
    replication_factor: u8,
) -> TopicSettings {
    TopicSettings {
        compression: compression.as_u8(),
        message_expiry_us,
        max_topic_size_bytes,
        replication_factor,
    }
}

/// CreateTopic: answers the new topic with its (empty) partitions.
pub async fn create(shard: &Rc<Shard>, create: CreateTopic) -> Outcome {
    let now = now_us();
    let stream = create.stream.clone();
    let topic = change_metadata(shard, move |metadata| {
        let settings = settings(
            create.compression,
            create.message_expiry_us,
            create.max_topic_size_bytes,
            create.replication_factor,
        );
        metadata.prepare_create_topic(
            &create.stream,
            &create.name,
            create.partitions_count,
            settings,
            now,
        )
    })
    .await?;
    let get_new = GetTopic {
        stream,
        topic: Identifier::Numeric(topic.id.0),
    };
    get(shard, get_new).await
}

/// UpdateTopic: name and settings.
pub async fn update(shard: &Rc<Shard>, update: UpdateTopic) -> Outcome {
    change_metadata(shard, move |metadata| {
        let settings = settings(
            update.compression,
            update.message_expiry_us,
            update.max_topic_size_bytes,
            update.replication_factor,
        );
        metadata.prepare_update_topic(&update.stream, &update.topic, &update.name, settings)
    })
    .await?;
    Ok(Reply::empty())
}

/// DeleteTopic: the topic and its partitions' files.
pub async fn delete(shard: &Rc<Shard>, delete: DeleteTopic) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_delete_topic(&delete.stream, &delete.topic)
    })
    .await?;
    Ok(Reply::empty())
}

/// PurgeTopic: every message, journals included; offsets restart at 0.
pub async fn purge(shard: &Rc<Shard>, purge: PurgeTopic) -> Outcome {
    {
        let metadata = shard.metadata.borrow();
        metadata.topic(&purge.stream, &purge.topic)?;
    }
    let partitions = topic_partitions(shard, &purge.stream, &purge.topic).unwrap_or_default();
    on_owners(shard, partitions, PartitionOp::Purge).await?;
    Ok(Reply::empty())
}

/// CreatePartitions: appends partitions, placed on the least-loaded shards.
pub async fn create_partitions(shard: &Rc<Shard>, create: CreatePartitions) -> Outcome {
    let now = now_us();
    change_metadata(shard, move |metadata| {
        metadata.prepare_create_partitions(
            &create.stream,
            &create.topic,
            create.partitions_count,
            now,
        )
    })
    .await?;
    Ok(Reply::empty())
}

/// DeletePartitions: removes the highest-numbered partitions and their files.
pub async fn delete_partitions(shard: &Rc<Shard>, delete: DeletePartitions) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_delete_partitions(&delete.stream, &delete.topic, delete.partitions_count)
    })
    .await?;
    Ok(Reply::empty())
}
