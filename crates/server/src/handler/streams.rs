//! Streams: get, list, create, update, delete, purge.

use std::rc::Rc;

use bytes::BytesMut;
use galgo_metadata::{Metadata, Need, PartitionKey, ShardId, Stream, StreamId};
use galgo_protocol::{
    Identifier,
    command::{
        streams::{
            CreateStream, DeleteStream, GetStream, GetStreams, PurgeStream, StreamDetails,
            StreamHeader, UpdateStream,
        },
        topics::TopicHeader,
    },
};

use super::{
    Outcome, Reply,
    metadata_change::change_metadata,
    partition_calls::{PartitionFigures, PartitionOp, gather_figures, on_owners},
    topics::topic_header,
};
use crate::context::{Shard, now_us};

/// Every partition of the streams `select` picks, with its owner.
pub fn partitions_of(
    metadata: &Metadata,
    select: impl Fn(&Stream) -> bool,
) -> Vec<(PartitionKey, ShardId)> {
    metadata
        .partitions()
        .filter(|(key, _)| {
            metadata
                .stream(&Identifier::Numeric(key.stream.0))
                .is_ok_and(&select)
        })
        .map(|(key, partition)| (key, partition.owner))
        .collect()
}

fn stream_header(
    stream: &Stream,
    figures: &std::collections::BTreeMap<PartitionKey, PartitionFigures>,
) -> StreamHeader {
    let mine = figures.iter().filter(|(key, _)| key.stream == stream.id);
    let (size_bytes, messages_count) = mine.fold((0, 0), |(size, count), (_, figures)| {
        (
            size + figures.stats.size_bytes,
            count + figures.stats.messages_count,
        )
    });
    StreamHeader {
        id: stream.id.0,
        created_at_us: stream.created_at_us,
        topics_count: stream.topics_count(),
        size_bytes,
        messages_count,
        name: stream.name.clone(),
    }
}

/// GetStream: the stream and its topics, or the empty answer when it does not exist.
pub async fn get(shard: &Rc<Shard>, stream: Option<StreamId>) -> Outcome {
    let Some(id) = stream else {
        return Ok(Reply::empty());
    };
    let partitions = partitions_of(&shard.metadata.borrow(), |candidate| candidate.id == id);
    let figures = gather_figures(shard, partitions).await?;
    let metadata = shard.metadata.borrow();
    // Gone while the figures were gathered: answered as if it never was.
    let Ok(stream) = metadata.stream_by_id(id) else {
        return Ok(Reply::empty());
    };
    let details = StreamDetails {
        header: stream_header(stream, &figures),
        topics: stream
            .topics()
            .map(|topic| topic_header(stream.id, topic, &figures))
            .collect::<Vec<TopicHeader>>(),
    };
    Ok(Reply::encoded(|out| details.encode(out)))
}

/// GetStreams: every stream, by id.
pub async fn list(shard: &Rc<Shard>) -> Outcome {
    let partitions = partitions_of(&shard.metadata.borrow(), |_| true);
    let figures = gather_figures(shard, partitions).await?;
    let metadata = shard.metadata.borrow();
    let mut out = BytesMut::new();
    for stream in metadata.streams() {
        stream_header(stream, &figures).encode(&mut out);
    }
    Ok(Reply::bytes(out))
}

/// CreateStream: answers the new stream's header. The event reached this shard before the
/// reply did, so the stream is read back through the ordinary path.
pub async fn create(shard: &Rc<Shard>, create: CreateStream) -> Outcome {
    let now = now_us();
    let stream = change_metadata(shard, move |metadata| {
        metadata.prepare_create_stream(&create.name, now)
    })
    .await?;
    get(shard, Some(stream.id)).await
}

/// UpdateStream: renames.
pub async fn update(shard: &Rc<Shard>, update: UpdateStream) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_update_stream(&update.stream, &update.name)
    })
    .await?;
    Ok(Reply::empty())
}

/// DeleteStream: the stream, its topics and their partitions' files.
pub async fn delete(shard: &Rc<Shard>, stream: Identifier) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_delete_stream(&stream)
    })
    .await?;
    Ok(Reply::empty())
}

/// PurgeStream: every message of every topic, journals included (not on a cluster node).
pub async fn purge(shard: &Rc<Shard>, stream: StreamId) -> Outcome {
    super::topics::refuse_purge_on_a_cluster(shard)?;
    let partitions = partitions_of(&shard.metadata.borrow(), |candidate| candidate.id == stream);
    on_owners(shard, partitions, PartitionOp::Purge).await?;
    Ok(Reply::empty())
}

unscoped_handlers! {
    GetStreams: Some(Need::ReadAllStreams) => |cx, _| list(cx.shard).await;
    CreateStream: Some(Need::CreateStream) => |cx, request| create(cx.shard, request).await;
}

stream_handlers! {
    GetStream: Need::ReadStream => |cx, _, scope| get(cx.shard, scope.ok()).await;
    UpdateStream: Need::ManageStream => |cx, request, _| update(cx.shard, request).await;
    DeleteStream: Need::ManageStream => |cx, request, _| delete(cx.shard, request.stream).await;
    PurgeStream: Need::ManageStream => |cx, _, scope| purge(cx.shard, scope?).await;
}
