//! Topics and their partitions: get, list, create, update, delete, purge; add and remove
//! partitions.

use std::{collections::BTreeMap, rc::Rc};

use bytes::BytesMut;
use galgo_metadata::{Need, PartitionKey, StreamId, Topic, TopicKey, TopicSettings};
use galgo_protocol::ErrorCode;
use galgo_protocol::command::topics::{
    CompressionAlgorithm, CreatePartitions, CreateTopic, DeletePartitions, DeleteTopic, GetTopic,
    GetTopics, PartitionInfo, PurgeTopic, TopicDetails, TopicHeader, UpdateTopic,
};

use super::{
    Outcome, Reply,
    metadata_change::change_metadata,
    partition_calls::{PartitionFigures, PartitionOp, gather_figures, on_owners},
};
use crate::{
    context::{Shard, now_us},
    error::CommandError,
};

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
    key: TopicKey,
) -> Option<Vec<(PartitionKey, galgo_metadata::ShardId)>> {
    let metadata = shard.metadata.borrow();
    let topic = metadata.topic_by_key(key).ok()?;
    Some(
        topic
            .partitions
            .iter()
            .map(|partition| (key.partition(partition.id.0), partition.owner))
            .collect(),
    )
}

/// GetTopic: the topic and its partitions, or the empty answer.
pub async fn get(shard: &Rc<Shard>, key: Option<TopicKey>) -> Outcome {
    let Some((key, partitions)) = key.and_then(|key| Some((key, topic_partitions(shard, key)?)))
    else {
        return Ok(Reply::empty());
    };
    let figures = gather_figures(shard, partitions).await?;
    let metadata = shard.metadata.borrow();
    // Gone while the figures were gathered: answered as if it never was.
    let Ok(topic) = metadata.topic_by_key(key) else {
        return Ok(Reply::empty());
    };
    let details = topic_details(key.stream, topic, &figures);
    Ok(Reply::encoded(|out| details.encode(out)))
}

/// GetTopics: every topic of a stream, or the empty answer.
pub async fn list(shard: &Rc<Shard>, stream: Option<StreamId>) -> Outcome {
    let Some(id) = stream else {
        return Ok(Reply::empty());
    };
    let partitions =
        super::streams::partitions_of(&shard.metadata.borrow(), |candidate| candidate.id == id);
    let figures = gather_figures(shard, partitions).await?;
    let metadata = shard.metadata.borrow();
    let Ok(stream) = metadata.stream_by_id(id) else {
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

/// The replication factor a topic gets for `asked` (0: not set): on a single node what was
/// asked, as Iggy keeps it; on a cluster node what was asked, min(3, nodes) when not set. More
/// than the node count cannot be met and is refused (2018 InvalidReplicationFactor).
fn replication_factor(shard: &Shard, asked: u8) -> Result<u8, CommandError> {
    let Some(view) = shard.state().seed.cluster.as_ref() else {
        return Ok(asked);
    };
    let nodes = u8::try_from(view.settings.peers.len()).unwrap_or(u8::MAX);
    if asked > nodes {
        tracing::info!(
            asked,
            nodes,
            "a replication factor above the node count refused"
        );
        return Err(ErrorCode::InvalidReplicationFactor.into());
    }
    Ok(view.settings.default_factor(asked))
}

/// CreateTopic: answers the new topic with its (empty) partitions.
pub async fn create(shard: &Rc<Shard>, create: CreateTopic) -> Outcome {
    let now = now_us();
    let replication_factor = replication_factor(shard, create.replication_factor)?;
    let topic = change_metadata(shard, move |metadata| {
        let settings = settings(
            create.compression,
            create.message_expiry_us,
            create.max_topic_size_bytes,
            replication_factor,
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
    let key = TopicKey {
        stream: topic.stream_id,
        topic: topic.id,
    };
    get(shard, Some(key)).await
}

/// UpdateTopic: name and settings; a setting the request leaves out (the 0.9 generation's
/// patch) keeps its current value, read under the metadata lock.
pub async fn update(shard: &Rc<Shard>, update: UpdateTopic) -> Outcome {
    let asked = match update.replication_factor {
        0 => 0,
        asked => replication_factor(shard, asked)?,
    };
    // A cluster node does not move replicas: a topic keeps the factor it was created with.
    if asked != 0 && shard.state().seed.cluster.is_some() {
        let metadata = shard.metadata.borrow();
        let current = metadata.resolve_topic(&update.stream, &update.topic)?;
        let current = metadata.topic_by_key(current)?.settings.replication_factor;
        if asked != current {
            tracing::info!(
                asked,
                current,
                "a change of a topic's replication factor refused"
            );
            return Err(ErrorCode::InvalidReplicationFactor.into());
        }
    }
    change_metadata(shard, move |metadata| {
        let current = metadata.resolve_topic(&update.stream, &update.topic)?;
        let current = metadata.topic_by_key(current)?.settings;
        let settings = settings(
            update
                .compression
                .unwrap_or_else(|| compression(current.compression)),
            update
                .message_expiry_us
                .unwrap_or(current.message_expiry_us),
            update
                .max_topic_size_bytes
                .unwrap_or(current.max_topic_size_bytes),
            match asked {
                0 => current.replication_factor,
                asked => asked,
            },
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

/// PurgeTopic: every message, journals included; offsets restart at 0. Not on a cluster
/// node (5 FeatureUnavailable): offsets would restart under the partitions' Raft logs.
pub async fn purge(shard: &Rc<Shard>, key: TopicKey) -> Outcome {
    refuse_purge_on_a_cluster(shard)?;
    let partitions = topic_partitions(shard, key).unwrap_or_default();
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

stream_handlers! {
    GetTopics: Need::ReadTopics => |cx, _, scope| list(cx.shard, scope.ok()).await;
    CreateTopic: Need::ManageTopics => |cx, request, _| create(cx.shard, request).await;
}

// The commands that change a topic send its identifiers to shard 0, which resolves them again
// against the state it changes.
topic_handlers! {
    GetTopic: Need::ReadTopic => |cx, _, scope| get(cx.shard, scope.ok()).await;
    UpdateTopic: Need::ManageTopic => |cx, request, _| update(cx.shard, request).await;
    DeleteTopic: Need::ManageTopic => |cx, request, _| delete(cx.shard, request).await;
    PurgeTopic: Need::ManageTopic => |cx, _, scope| purge(cx.shard, scope?).await;
    CreatePartitions: Need::ManageTopic => |cx, request, _| {
        create_partitions(cx.shard, request).await
    };
    DeletePartitions: Need::ManageTopic => |cx, request, _| {
        delete_partitions(cx.shard, request).await
    };
}

/// Purges rewind a partition's offsets, which its Raft group's log cannot follow: a cluster
/// node refuses them (docs/architecture.md, "Not in the first version").
pub fn refuse_purge_on_a_cluster(shard: &Shard) -> Result<(), CommandError> {
    if shard.state().seed.cluster.is_some() {
        tracing::warn!("purge refused: a cluster cannot purge replicated partitions");
        return Err(ErrorCode::FeatureUnavailable.into());
    }
    Ok(())
}
