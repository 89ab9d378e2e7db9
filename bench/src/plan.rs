//! Who sends where: streams, topics and each actor's target, and the server-side setup and
//! clean-up (which uses only ordinary commands, so any server of the protocol works).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use galgo_client::protocol::message::encode_message;
use galgo_client::protocol::{Identifier, Partitioning};
use galgo_client::{Client, ClientError, PreparedBatch};

use crate::args::{Args, Mode};

/// The measured topic in every bench stream.
pub const TOPIC: &str = "bench";
/// The topic producers warm up on, so warm-up messages never reach a measured consumer.
pub const WARMUP_TOPIC: &str = "warmup";
/// The consumer group of each stream in balanced-consumer-group mode.
pub const GROUP: &str = "bench-group";

/// Progress of one stream, shared by its actors.
#[derive(Debug, Default)]
pub struct StreamProgress {
    /// Messages acknowledged by the server (or filled beforehand).
    pub produced: AtomicU64,
    /// Messages the stream's consumer group has received.
    pub group_consumed: AtomicU64,
}

/// The shape of a run, shared by every actor.
#[derive(Debug)]
pub struct Plan {
    /// The stream names, index = stream number.
    pub streams: Vec<String>,
    /// Progress per stream.
    pub progress: Vec<StreamProgress>,
    /// Producers still running; consumers of concurrent modes drain once it is 0.
    pub producers_running: AtomicUsize,
}

impl Plan {
    /// The plan of `args`.
    pub fn new(args: &Args) -> Arc<Plan> {
        let count = args.streams_count();
        let producers = if args.mode.measures_producers() {
            args.producers as usize
        } else {
            0
        };
        Arc::new(Plan {
            streams: (0..count)
                .map(|i| format!("{}-{}", args.stream_prefix, i + 1))
                .collect(),
            progress: (0..count).map(|_| StreamProgress::default()).collect(),
            producers_running: AtomicUsize::new(producers),
        })
    }

    /// The stream of actor `index`.
    pub fn stream_of(&self, index: u32) -> usize {
        index as usize % self.streams.len()
    }

    /// The stream identifier of stream number `stream`.
    pub fn stream_id(&self, stream: usize) -> Identifier {
        Identifier::Name(self.streams[stream].clone())
    }

    /// How producer `index` picks partitions: pinned modes give each producer one partition,
    /// the balanced mode lets the server round-robin.
    pub fn partitioning_of(&self, args: &Args, index: u32) -> Partitioning {
        match args.mode {
            Mode::BalancedProducer => Partitioning::Balanced,
            _ => Partitioning::PartitionId((index / self.streams.len() as u32) % args.partitions),
        }
    }

    /// Messages a pinned consumer of `stream` must read before it stops, when known in
    /// advance (filled beforehand, or a fixed number of batches per producer).
    pub fn stream_total(&self, stream: usize) -> u64 {
        self.progress[stream].produced.load(Ordering::Acquire)
    }
}

/// A batch of `args.messages_per_batch` messages of `args.message_size` bytes for `topic`.
pub fn batch(
    args: &Args,
    stream: &Identifier,
    topic: &str,
    partitioning: &Partitioning,
) -> PreparedBatch {
    let payload: Vec<u8> = (0..args.message_size).map(|i| (i % 251) as u8).collect();
    let mut message = Vec::new();
    encode_message(0, 0, &payload, b"", &mut message);
    let messages: Vec<&[u8]> = (0..args.messages_per_batch).map(|_| &message[..]).collect();
    PreparedBatch::new(
        stream,
        &Identifier::Name(topic.into()),
        partitioning,
        &messages,
    )
}

/// Deletes leftover bench streams, then creates the streams, their topics and groups.
///
/// Every measured topic is created before any warm-up topic: a server that places new
/// partitions by load (galgo puts each on its least-loaded shard) then lays the measured
/// partitions out as it would without a warm-up. Created stream by stream, the two topics of
/// each stream alternated over a 2-shard server and every measured partition landed on the
/// same shard, which then served all the producers while the other idled on warm-up topics
/// (one 100-byte message per request: p50 2.6–3.0× the raw round trip with a warm-up,
/// 1.1–1.5× without).
pub async fn set_up(client: &mut Client, args: &Args, plan: &Plan) -> Result<(), ClientError> {
    tear_down(client, plan).await?;
    for stream in 0..plan.streams.len() {
        let name = &plan.streams[stream];
        client.create_stream(name).await?;
        let id = plan.stream_id(stream);
        client.create_topic(&id, TOPIC, args.partitions).await?;
        if args.mode == Mode::BalancedConsumerGroup {
            let topic = Identifier::Name(TOPIC.into());
            client.create_consumer_group(&id, &topic, GROUP).await?;
        }
    }
    if args.warmup_secs > 0.0 && args.mode.measures_producers() {
        for stream in 0..plan.streams.len() {
            let id = plan.stream_id(stream);
            client
                .create_topic(&id, WARMUP_TOPIC, args.partitions)
                .await?;
        }
    }
    Ok(())
}

/// Fills each stream before a consumer-only run: `batches` batches per pinned consumer's
/// stream, or per group member, spread evenly over the partitions.
pub async fn prefill(client: &mut Client, args: &Args, plan: &Plan) -> Result<(), ClientError> {
    for stream in 0..plan.streams.len() {
        let members = (0..args.consumers)
            .filter(|&i| plan.stream_of(i) == stream)
            .count() as u64;
        let batches = match args.mode {
            Mode::BalancedConsumerGroup => args.batches * members,
            _ => args.batches,
        };
        let id = plan.stream_id(stream);
        for partition in 0..args.partitions {
            let share = batches / u64::from(args.partitions)
                + u64::from(u64::from(partition) < batches % u64::from(args.partitions));
            let mut prepared = batch(args, &id, TOPIC, &Partitioning::PartitionId(partition));
            for _ in 0..share {
                let (sent, back) = client.send_prepared(prepared).await;
                sent?;
                prepared = back;
                plan.progress[stream]
                    .produced
                    .fetch_add(u64::from(prepared.messages_count()), Ordering::AcqRel);
            }
        }
    }
    Ok(())
}

/// Deletes the bench streams that exist.
pub async fn tear_down(client: &mut Client, plan: &Plan) -> Result<(), ClientError> {
    let existing = client.get_streams().await?;
    for name in &plan.streams {
        if existing.iter().any(|stream| &stream.name == name) {
            client
                .delete_stream(&Identifier::Name(name.clone()))
                .await?;
        }
    }
    Ok(())
}
