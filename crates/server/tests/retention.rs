//! Retention with the official Iggy Rust SDK against a real galgo-server: per-topic message
//! expiry and max size enforced by the shards' cleaners, the delete_segments command, and
//! deduplication by message id. Expiries are short and every wait is on a condition.
//!
//! Segments are 4096 bytes and every message is 64 + 100 bytes, sent in batches of 10
//! (1640 bytes): a segment takes two batches (the third would pass 4096), so segment k holds
//! offsets 20k..20k+19.

mod support;

use std::time::{Duration, Instant};

use iggy::prelude::*;
use support::TestServer;
use support::sdk::{self, TEST_TIMEOUT, id, within};

const SEGMENT_BYTES: u64 = 4096;
const MESSAGE_BYTES: u64 = 64 + 100;
const MESSAGES_PER_SEGMENT: u64 = 20;
/// How long the cleaners may take to act on what is due.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(30);

fn args() -> Vec<&'static str> {
    vec![
        "--set",
        "storage.segment_size_bytes=4096",
        "--set",
        "retention.cleaner_interval_ms=50",
    ]
}

fn payload(i: u64) -> String {
    format!("{i:0100}")
}

/// Sends `batches` batches of 10 messages to one partition and writes them to segments.
async fn fill(client: &IggyClient, stream: u32, topic: u32, partition: u32, batches: u64) {
    for batch in 0..batches {
        let mut messages: Vec<IggyMessage> = (batch * 10..batch * 10 + 10)
            .map(|i| sdk::message(payload(i)))
            .collect();
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(partition),
                &mut messages,
            )
            .await
            .expect("send");
    }
    client
        .flush_unsaved_buffer(&id(stream), &id(topic), partition, true)
        .await
        .expect("flush");
}

async fn create_topic(
    client: &IggyClient,
    stream: u32,
    name: &str,
    partitions: u32,
    expiry: IggyExpiry,
    max_size: MaxTopicSize,
) -> u32 {
    client
        .create_topic(
            &id(stream),
            name,
            partitions,
            CompressionAlgorithm::None,
            None,
            expiry,
            max_size,
        )
        .await
        .expect("create topic")
        .id
}

async fn topic(client: &IggyClient, stream: u32, topic: u32) -> TopicDetails {
    client
        .get_topic(&id(stream), &id(topic))
        .await
        .expect("get topic")
        .expect("topic exists")
}

/// Offset of the first message a First poll returns.
async fn first_offset(client: &IggyClient, stream: u32, topic: u32, partition: u32) -> u64 {
    let polled = client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(partition),
            &Consumer::new(id(1)),
            &PollingStrategy::first(),
            1,
            false,
        )
        .await
        .expect("poll");
    polled.messages[0].header.offset
}

/// Waits until `done` holds for the topic, with a bound.
async fn wait_for_topic(
    client: &IggyClient,
    stream: u32,
    topic_id: u32,
    what: &str,
    done: impl Fn(&TopicDetails) -> bool,
) -> TopicDetails {
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    loop {
        let details = topic(client, stream, topic_id).await;
        if done(&details) {
            return details;
        }
        assert!(Instant::now() < deadline, "{what}: still {details:?}");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn expired_sealed_segments_are_deleted_and_nothing_else() {
    let server = TestServer::start(&args());
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let stream = client.create_stream("s").await.expect("stream").id;
        let short = IggyExpiry::ExpireDuration(IggyDuration::from(Duration::from_millis(500)));
        let long = IggyExpiry::ExpireDuration(IggyDuration::from(Duration::from_secs(3600)));
        let expiring = create_topic(
            &client,
            stream,
            "short",
            1,
            short,
            MaxTopicSize::ServerDefault,
        )
        .await;
        let kept = create_topic(
            &client,
            stream,
            "long",
            1,
            long,
            MaxTopicSize::ServerDefault,
        )
        .await;
        for topic_id in [expiring, kept] {
            fill(&client, stream, topic_id, 0, 9).await;
            let details = topic(&client, stream, topic_id).await;
            assert_eq!(details.partitions[0].segments_count, 5);
            assert_eq!(details.messages_count, 90);
        }
        let details = wait_for_topic(&client, stream, expiring, "expiry", |details| {
            details.partitions[0].segments_count == 1
        })
        .await;
        // Only the sealed segments went; the active one (offsets 80..89) never expires.
        assert_eq!(details.messages_count, 10);
        assert_eq!(details.size.as_bytes_u64(), 10 * MESSAGE_BYTES);
        assert_eq!(
            first_offset(&client, stream, expiring, 0).await,
            4 * MESSAGES_PER_SEGMENT
        );
        let next = sdk::poll_offset(&client, stream, expiring, 0, 0, 100).await;
        assert_eq!(sdk::offsets(&next.messages), (80..90).collect::<Vec<_>>());
        // The cleaners ran many times meanwhile; the long-lived topic lost nothing.
        let untouched = topic(&client, stream, kept).await;
        assert_eq!(untouched.partitions[0].segments_count, 5);
        assert_eq!(untouched.messages_count, 90);
        assert_eq!(first_offset(&client, stream, kept, 0).await, 0);
    })
    .await;
}

#[tokio::test]
async fn topics_over_their_size_lose_their_oldest_segments_only() {
    let server = TestServer::start(&args());
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let stream = client.create_stream("s").await.expect("stream").id;
        let max_bytes = 3 * SEGMENT_BYTES;
        let limited = create_topic(
            &client,
            stream,
            "limited",
            2,
            IggyExpiry::NeverExpire,
            MaxTopicSize::Custom(IggyByteSize::from(max_bytes)),
        )
        .await;
        assert_eq!(
            topic(&client, stream, limited).await.max_topic_size,
            MaxTopicSize::Custom(IggyByteSize::from(max_bytes))
        );
        // Partition 0 first, so its segments are the oldest of the topic.
        fill(&client, stream, limited, 0, 9).await;
        fill(&client, stream, limited, 1, 5).await;
        let details = wait_for_topic(&client, stream, limited, "size limit", |details| {
            details.size.as_bytes_u64() <= max_bytes
        })
        .await;
        let size = details.size.as_bytes_u64();
        // One segment fewer deleted would still be over the limit: nothing more went.
        let sealed_bytes = 2 * 10 * MESSAGE_BYTES;
        assert!(size + sealed_bytes > max_bytes, "over-deleted: {size}");
        // 140 messages, 20 per sealed segment: 12288 / 164 → at most 74 kept, so 4 segments
        // (80 messages) go, all of partition 0's 4 sealed ones (the oldest).
        assert_eq!(details.messages_count, 60);
        assert_eq!(first_offset(&client, stream, limited, 0).await, 80);
        assert_eq!(first_offset(&client, stream, limited, 1).await, 0);
    })
    .await;
}

#[tokio::test]
async fn delete_segments_keeps_the_active_one_and_what_consumers_did_not_commit() {
    let server = TestServer::start(&["--set", "storage.segment_size_bytes=4096"]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic_id) = sdk::create_stream_and_topic(&client, "s", "t", 1).await;
        fill(&client, stream, topic_id, 0, 10).await;
        assert_eq!(
            topic(&client, stream, topic_id).await.partitions[0].segments_count,
            5
        );
        let consumer = Consumer::new(id(7));
        client
            .store_consumer_offset(&consumer, &id(stream), &id(topic_id), Some(0), 45)
            .await
            .expect("store");
        // Segments ending at 19 and 39 are committed past; the one ending at 59 is not.
        client
            .delete_segments(&id(stream), &id(topic_id), 0, 10)
            .await
            .expect("delete segments");
        assert_eq!(first_offset(&client, stream, topic_id, 0).await, 40);
        assert_eq!(
            topic(&client, stream, topic_id).await.partitions[0].segments_count,
            3
        );
        client
            .store_consumer_offset(&consumer, &id(stream), &id(topic_id), Some(0), 99)
            .await
            .expect("store");
        client
            .delete_segments(&id(stream), &id(topic_id), 0, 1)
            .await
            .expect("delete one segment");
        assert_eq!(first_offset(&client, stream, topic_id, 0).await, 60);
        client
            .delete_segments(&id(stream), &id(topic_id), 0, 10)
            .await
            .expect("delete the rest");
        let details = topic(&client, stream, topic_id).await;
        assert_eq!(
            details.partitions[0].segments_count, 1,
            "the active segment stays"
        );
        assert_eq!(details.messages_count, 20);
        assert_eq!(first_offset(&client, stream, topic_id, 0).await, 80);
        let code = client
            .delete_segments(&id(stream), &id(topic_id), 9, 1)
            .await
            .expect_err("unknown partition")
            .as_code();
        assert_eq!(code, 3007);
    })
    .await;
}

fn with_id(message_id: u128, text: &str) -> IggyMessage {
    IggyMessage::builder()
        .id(message_id)
        .payload(bytes::Bytes::from(text.to_owned()))
        .build()
        .expect("valid message")
}

async fn send(client: &IggyClient, stream: u32, topic: u32, mut messages: Vec<IggyMessage>) {
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut messages,
        )
        .await
        .expect("send");
}

#[tokio::test]
async fn deduplication_drops_repeated_ids_when_enabled() {
    let server = TestServer::start(&[
        "--set",
        "deduplication.enabled=true",
        "--set",
        "deduplication.ids_max=1000",
    ]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic_id) = sdk::create_stream_and_topic(&client, "s", "t", 1).await;
        send(
            &client,
            stream,
            topic_id,
            (1..=10).map(|i| with_id(i, "first")).collect(),
        )
        .await;
        // 5..=10 were seen; 11..=15 are new; messages without an id always pass.
        let mut again: Vec<IggyMessage> = (5..=15).map(|i| with_id(i, "again")).collect();
        again.push(sdk::message("no id"));
        send(&client, stream, topic_id, again).await;
        send(
            &client,
            stream,
            topic_id,
            vec![with_id(3, "all duplicates")],
        )
        .await;
        let all = sdk::poll_all(&client, stream, topic_id, 0).await;
        let ids: Vec<u128> = all.iter().map(|m| m.header.id).collect();
        assert_eq!(&ids[..15], &(1..=15).collect::<Vec<u128>>()[..]);
        assert_eq!(all.len(), 16);
        assert_eq!(sdk::offsets(&all), (0..16).collect::<Vec<u64>>());
        assert_eq!(sdk::payload_strings(&all)[15], "no id");
    })
    .await;
}

#[tokio::test]
async fn without_deduplication_repeated_ids_are_kept() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic_id) = sdk::create_stream_and_topic(&client, "s", "t", 1).await;
        send(
            &client,
            stream,
            topic_id,
            vec![with_id(1, "a"), with_id(1, "b")],
        )
        .await;
        send(&client, stream, topic_id, vec![with_id(1, "c")]).await;
        assert_eq!(sdk::poll_all(&client, stream, topic_id, 0).await.len(), 3);
    })
    .await;
}
