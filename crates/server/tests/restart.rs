//! Durability across restarts: a graceful stop (SIGTERM) flushes and fsyncs everything, a crash
//! (SIGKILL) with `storage.fsync=always` loses nothing that was acknowledged, and a restart on the
//! same data dir serves every message byte for byte with the same offsets and stored offsets.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use galgo_protocol::message::{MessageIter, checksum};
use galgo_storage::offset_index::INDEX_ENTRY_BYTES;
use iggy::prelude::*;
use support::TestServer;
use support::sdk::{self, TEST_TIMEOUT, id, name, within};

const SEGMENT_SIZE: &str = "storage.segment_size_bytes=4096";

/// Everything a client can see of one topic: metadata and every message's wire bytes.
#[derive(Debug, PartialEq)]
struct TopicSnapshot {
    name: String,
    partitions: Vec<(u32, u64, u64)>,
    messages: BTreeMap<u32, Vec<Bytes>>,
}

async fn snapshot(client: &IggyClient, stream: u32, topic: u32) -> TopicSnapshot {
    let details = client
        .get_topic(&id(stream), &id(topic))
        .await
        .unwrap()
        .expect("topic exists");
    let mut messages = BTreeMap::new();
    for partition in &details.partitions {
        let polled = sdk::poll_all(client, stream, topic, partition.id).await;
        assert_eq!(
            sdk::offsets(&polled),
            (0..polled.len() as u64).collect::<Vec<u64>>()
        );
        for message in &polled {
            assert_eq!(
                message.header.checksum,
                checksum(&message.to_bytes()),
                "checksum at offset {}",
                message.header.offset
            );
        }
        messages.insert(partition.id, polled.iter().map(|m| m.to_bytes()).collect());
    }
    TopicSnapshot {
        name: details.name,
        partitions: details
            .partitions
            .iter()
            .map(|p| (p.id, p.current_offset, p.messages_count))
            .collect(),
        messages,
    }
}

/// Sends `count` messages of varied sizes (some with headers) to `partition`, in batches of 7.
async fn send_varied(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partition: u32,
    prefix: &str,
    count: u64,
) {
    let mut i = 0;
    while i < count {
        let end = (i + 7).min(count);
        let mut batch: Vec<IggyMessage> = (i..end)
            .map(|n| {
                let mut payload = format!("{prefix}-{n}-").into_bytes();
                payload.extend((0..(n * 37 % 300)).map(|b| (b as u8) ^ (n as u8)));
                let builder = IggyMessage::builder().payload(Bytes::from(payload));
                if n % 3 == 0 {
                    let headers = BTreeMap::from([
                        (HeaderKey::try_from("n").unwrap(), HeaderValue::from(n)),
                        (
                            HeaderKey::try_from("tag").unwrap(),
                            HeaderValue::try_from(prefix).unwrap(),
                        ),
                    ]);
                    builder.user_headers(headers).build().unwrap()
                } else {
                    builder.build().unwrap()
                }
            })
            .collect();
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(partition),
                &mut batch,
            )
            .await
            .expect("send");
        i = end;
    }
}

/// The segments of a partition dir, by start offset, checked against the layout of
/// PROTOCOL.md §9: `{start:020}.log` of back-to-back messages starting at that offset, and a
/// `.index` of 16-byte entries (relative offset, end position, timestamp), one per message.
fn check_segments(dir: &Path) -> Vec<u64> {
    let mut starts = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let file_name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = file_name.strip_suffix(".log") {
            assert_eq!(
                stem.len(),
                20,
                "segment names are 20-digit offsets: {file_name}"
            );
            starts.push(stem.parse::<u64>().expect("numeric segment name"));
        }
    }
    starts.sort_unstable();
    let mut next_offset = starts.first().copied().unwrap_or(0);
    for &start in &starts {
        assert_eq!(
            start,
            next_offset,
            "segments are contiguous in {}",
            dir.display()
        );
        let log = std::fs::read(dir.join(format!("{start:020}.log"))).unwrap();
        let index = std::fs::read(dir.join(format!("{start:020}.index")))
            .expect("every .log has its .index");
        let mut entries = index.chunks_exact(INDEX_ENTRY_BYTES);
        assert_eq!(index.len() % INDEX_ENTRY_BYTES, 0);
        for (k, view) in MessageIter::new(&log).enumerate() {
            let view =
                view.unwrap_or_else(|at| panic!("torn message at byte {at} of segment {start}"));
            assert_eq!(view.offset(), start + k as u64);
            assert!(view.checksum_is_valid());
            let entry = entries
                .next()
                .unwrap_or_else(|| panic!("no index entry for offset {}", view.offset()));
            // Read field by field as PROTOCOL.md §9.3 lays them out, not with the server's
            // own decoder, so that a layout change shows here.
            let relative = u32::from_le_bytes(entry[0..4].try_into().unwrap());
            let position = u32::from_le_bytes(entry[4..8].try_into().unwrap());
            let timestamp = u64::from_le_bytes(entry[8..16].try_into().unwrap());
            assert_eq!(relative, k as u32);
            assert_eq!(
                position as usize,
                (view.as_bytes().as_ptr() as usize - log.as_ptr() as usize) + view.size(),
                "end position of offset {}",
                view.offset()
            );
            assert_eq!(timestamp, view.timestamp());
            next_offset += 1;
        }
        assert!(
            entries.next().is_none(),
            "index of segment {start} has more entries than messages"
        );
    }
    starts
}

#[tokio::test]
async fn graceful_restart_restores_metadata_messages_and_offsets() {
    let mut server = TestServer::start(&["--set", SEGMENT_SIZE]);
    let (stream, topic, before, other_topic) = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic, other_topic) = create_durable_metadata(&client).await;
        write_messages_and_offsets(&client, stream, topic, other_topic).await;
        (
            stream,
            topic,
            snapshot(&client, stream, topic).await,
            other_topic,
        )
    })
    .await;

    server.stop();
    let starts = check_segments(&server.partition_dir(stream, topic, 0));
    assert!(
        starts.len() > 2,
        "120 messages in 4 KiB segments roll several segments: {starts:?}"
    );
    check_segments(&server.partition_dir(stream, topic, 1));
    check_segments(&server.partition_dir(stream, topic, 2));

    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        assert_metadata_restored(&client, stream, other_topic).await;

        let after = snapshot(&client, stream, topic).await;
        assert_eq!(after, before, "every message byte for byte, same offsets");

        assert_stored_offsets_restored(&client, stream, topic).await;

        // Writing continues where it stopped.
        assert_writing_continues(&client, stream, topic).await;
    })
    .await;

    // A second cycle, to cover a store that was itself recovered.
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        assert_second_cycle_restored(&client, stream, topic, &before).await;
    })
    .await;
    server.stop();
    check_segments(&server.partition_dir(stream, topic, 0));
}

/// Creates stream "durable" with topic "events" (3 partitions) and a topic renamed after its
/// creation, and leaves one deleted and one empty stream behind. Returns the stream, the
/// "events" topic and the renamed topic.
async fn create_durable_metadata(client: &IggyClient) -> (u32, u32, u32) {
    let (stream, topic) = sdk::create_stream_and_topic(client, "durable", "events", 3).await;
    let other_topic = client
        .create_topic(
            &id(stream),
            "to-rename",
            1,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::NeverExpire,
            MaxTopicSize::ServerDefault,
        )
        .await
        .unwrap()
        .id;
    client
        .update_topic(
            &id(stream),
            &id(other_topic),
            "renamed",
            CompressionAlgorithm::None,
            None,
            IggyExpiry::NeverExpire,
            MaxTopicSize::ServerDefault,
        )
        .await
        .unwrap();
    let doomed = client.create_stream("doomed").await.unwrap().id;
    client.delete_stream(&id(doomed)).await.unwrap();
    client.create_stream("kept-empty").await.unwrap();
    (stream, topic, other_topic)
}

/// Fills the partitions of `topic` unevenly (120, 75 and 3 messages) and `other_topic` with 10,
/// then stores consumer offsets, one of them by auto-commit.
async fn write_messages_and_offsets(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    other_topic: u32,
) {
    for (partition, count) in [(0u32, 120u64), (1, 75), (2, 3)] {
        send_varied(
            client,
            stream,
            topic,
            partition,
            &format!("p{partition}"),
            count,
        )
        .await;
    }
    send_varied(client, stream, other_topic, 0, "other", 10).await;
    let offsets = [
        (Consumer::new(id(1)), 0u32, 100u64),
        (Consumer::new(name("named-reader")), 1, 42),
        (Consumer::new(id(1)), 2, 2),
    ];
    for (consumer, partition, offset) in &offsets {
        client
            .store_consumer_offset(consumer, &id(stream), &id(topic), Some(*partition), *offset)
            .await
            .unwrap();
    }
    // auto-commit stores an offset too.
    client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(1),
            &Consumer::new(id(77)),
            &PollingStrategy::next(),
            10,
            true,
        )
        .await
        .unwrap();
}

/// The deleted stream stays deleted, and the renamed topic keeps its name, expiry and messages.
async fn assert_metadata_restored(client: &IggyClient, stream: u32, other_topic: u32) {
    let streams: Vec<String> = client
        .get_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        streams,
        vec!["durable", "kept-empty"],
        "the deleted stream stays deleted"
    );
    let renamed = client
        .get_topic(&id(stream), &id(other_topic))
        .await
        .unwrap()
        .expect("renamed topic");
    assert_eq!(renamed.name, "renamed");
    assert_eq!(renamed.message_expiry, IggyExpiry::NeverExpire);
    assert_eq!(
        sdk::poll_all(client, stream, other_topic, 0).await.len(),
        10
    );
}

/// Every stored offset, the auto-committed one included, is back, and polling Next resumes
/// after it.
async fn assert_stored_offsets_restored(client: &IggyClient, stream: u32, topic: u32) {
    let stored = |consumer: Consumer, partition: u32| async move {
        client
            .get_consumer_offset(&consumer, &id(stream), &id(topic), Some(partition))
            .await
            .unwrap()
            .map(|info| info.stored_offset)
    };
    assert_eq!(stored(Consumer::new(id(1)), 0).await, Some(100));
    assert_eq!(
        stored(Consumer::new(name("named-reader")), 1).await,
        Some(42)
    );
    assert_eq!(stored(Consumer::new(id(1)), 2).await, Some(2));
    assert_eq!(
        stored(Consumer::new(id(77)), 1).await,
        Some(9),
        "auto-committed offset"
    );
    assert_eq!(stored(Consumer::new(id(1)), 1).await, None);
    let next = client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(0),
            &Consumer::new(id(1)),
            &PollingStrategy::next(),
            5,
            false,
        )
        .await
        .unwrap();
    assert_eq!(sdk::offsets(&next.messages), vec![101, 102, 103, 104, 105]);
}

/// New sends to partitions 0 and 2 get the next offsets, and the stats count them.
async fn assert_writing_continues(client: &IggyClient, stream: u32, topic: u32) {
    send_varied(client, stream, topic, 0, "after", 10).await;
    send_varied(client, stream, topic, 2, "after", 1).await;
    let p0 = sdk::poll_offset(client, stream, topic, 0, 118, 100).await;
    assert_eq!(sdk::offsets(&p0.messages), (118..130).collect::<Vec<u64>>());
    for (n, message) in p0.messages[2..].iter().enumerate() {
        let prefix = format!("after-{n}-");
        assert!(
            message.payload.starts_with(prefix.as_bytes()),
            "offset {}",
            message.header.offset
        );
    }
    assert_eq!(
        sdk::offsets(
            &sdk::poll_offset(client, stream, topic, 2, 0, 100)
                .await
                .messages
        ),
        vec![0, 1, 2, 3]
    );
    let stats = client.get_stats().await.unwrap();
    assert_eq!(
        (
            stats.streams_count,
            stats.topics_count,
            stats.partitions_count
        ),
        (2, 2, 4)
    );
    assert_eq!(stats.messages_count, 120 + 75 + 3 + 10 + 11);
}

/// After the second restart partition 0 still starts with the original 120 messages, and a
/// new stream gets an id no existing stream uses.
async fn assert_second_cycle_restored(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    before: &TopicSnapshot,
) {
    let p0 = sdk::poll_all(client, stream, topic, 0).await;
    assert_eq!(p0.len(), 130);
    let before_p0: Vec<Bytes> = p0[..120].iter().map(|m| m.to_bytes()).collect();
    assert_eq!(before_p0, before.messages[&0]);
    let in_use: Vec<u32> = client
        .get_streams()
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let new = client.create_stream("after-two-restarts").await.unwrap();
    assert!(
        !in_use.contains(&new.id),
        "a new stream gets an unused id: {} in {in_use:?}",
        new.id
    );
    assert_eq!(client.get_streams().await.unwrap().len(), 3);
}

#[tokio::test]
async fn sigkill_with_fsync_always_keeps_every_acknowledged_message() {
    let mut server = TestServer::start(&["--set", SEGMENT_SIZE, "--set", "storage.fsync=always"]);
    let (stream, topic, acknowledged) = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "crashy", "t", 2).await;
        send_rounds_and_offsets(&client, stream, topic).await;
        (stream, topic, snapshot(&client, stream, topic).await)
    })
    .await;

    server.kill();
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        assert_acknowledged_survived(&client, stream, topic, &acknowledged).await;
    })
    .await;

    // A crash right after a restart recovers the same way.
    server.kill();
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let messages = sdk::poll_all(&client, stream, topic, 1).await;
        assert_eq!(messages.len(), 93);
        assert_eq!(
            sdk::payload_strings(&messages[91..]),
            vec!["post-crash-0", "post-crash-1"]
        );
    })
    .await;
}

/// Sends 30 rounds of 3 messages to both partitions, stores an offset on partition 1 and
/// auto-commits one on partition 0, and ends with one more acknowledged message on partition 1.
async fn send_rounds_and_offsets(client: &IggyClient, stream: u32, topic: u32) {
    for round in 0..30u64 {
        for partition in 0..2 {
            let mut batch = sdk::messages(&format!("p{partition}.r{round}"), 0..3);
            client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(partition),
                    &mut batch,
                )
                .await
                .expect("acknowledged send");
        }
    }
    client
        .store_consumer_offset(&Consumer::new(id(5)), &id(stream), &id(topic), Some(1), 77)
        .await
        .unwrap();
    client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(0),
            &Consumer::new(name("auto")),
            &PollingStrategy::next(),
            31,
            true,
        )
        .await
        .unwrap();
    // The last acknowledged send comes right before the crash.
    let mut last = vec![sdk::message("the last acknowledged message")];
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(1),
            &mut last,
        )
        .await
        .unwrap();
}

/// After the SIGKILL every acknowledged message and both stored offsets are back, and new
/// sends continue at the next offset.
async fn assert_acknowledged_survived(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    acknowledged: &TopicSnapshot,
) {
    let recovered = snapshot(client, stream, topic).await;
    assert_eq!(
        &recovered, acknowledged,
        "every acknowledged message survives SIGKILL"
    );
    assert_eq!(recovered.messages[&1].len(), 91);
    let stored = client
        .get_consumer_offset(&Consumer::new(id(5)), &id(stream), &id(topic), Some(1))
        .await
        .unwrap()
        .expect("stored offset survives SIGKILL");
    assert_eq!(stored.stored_offset, 77);
    let auto = client
        .get_consumer_offset(
            &Consumer::new(name("auto")),
            &id(stream),
            &id(topic),
            Some(0),
        )
        .await
        .unwrap()
        .expect("auto-committed offset survives SIGKILL");
    assert_eq!(auto.stored_offset, 30);
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(1),
            &mut sdk::messages("post-crash", 0..2),
        )
        .await
        .unwrap();
    assert_eq!(
        sdk::offsets(
            &sdk::poll_offset(client, stream, topic, 1, 90, 10)
                .await
                .messages
        ),
        vec![90, 91, 92]
    );
}

/// The payload of message `k` of a writer that sends batches of 3 to `partition`.
fn sequenced_payload(partition: u32, k: u64) -> String {
    format!("p{partition}.b{}-{}", k / 3, k % 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_writes_keeps_every_acknowledged_batch_and_a_clean_prefix() {
    const PARTITIONS: u32 = 2;
    const ACKED_BEFORE_KILL: u64 = 40;
    let mut server = TestServer::start(&["--set", SEGMENT_SIZE, "--set", "storage.fsync=always"]);
    let (stream, topic, acked) = within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) =
            sdk::create_stream_and_topic(&admin, "mid-write", "t", PARTITIONS).await;
        let mut writers = Vec::new();
        let mut progress = Vec::new();
        for partition in 0..PARTITIONS {
            let client = sdk::client(server.addr).await;
            let (writer, acked_rx) = spawn_sequenced_writer(client, stream, topic, partition);
            writers.push(writer);
            progress.push(acked_rx);
        }
        for rx in &mut progress {
            rx.wait_for(|&acked| acked >= ACKED_BEFORE_KILL)
                .await
                .expect("writer alive");
        }
        // Crash while both writers still have sends in flight.
        server.kill();
        for writer in writers {
            writer
                .await
                .expect("writer task ends once the server is gone");
        }
        let acked: Vec<u64> = progress.iter().map(|rx| *rx.borrow()).collect();
        (stream, topic, acked)
    })
    .await;

    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        for partition in 0..PARTITIONS {
            let acked_batches = acked[partition as usize];
            assert_clean_prefix_then_resume(&client, stream, topic, partition, acked_batches).await;
        }
    })
    .await;
    server.stop();
    check_segments(&server.partition_dir(stream, topic, 0));
    check_segments(&server.partition_dir(stream, topic, 1));
}

/// Spawns a writer that sends batches of 3 sequenced messages to `partition` until a send
/// fails. The receiver holds how many batches were acknowledged so far.
fn spawn_sequenced_writer(
    client: IggyClient,
    stream: u32,
    topic: u32,
    partition: u32,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Receiver<u64>,
) {
    let (acked_tx, acked_rx) = tokio::sync::watch::channel(0u64);
    let writer = tokio::spawn(async move {
        // One request in flight at a time: everything before it was acknowledged.
        for batch in 0..1_000_000u64 {
            let mut messages: Vec<IggyMessage> = (batch * 3..batch * 3 + 3)
                .map(|k| sdk::message(sequenced_payload(partition, k)))
                .collect();
            let sent = client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(partition),
                    &mut messages,
                )
                .await;
            if sent.is_err() {
                break;
            }
            acked_tx.send_replace(batch + 1);
        }
    });
    (writer, acked_rx)
}

/// After the crash `partition` holds every one of its `acked_batches` batches, at most the one
/// unacknowledged batch more, all intact and in order; a new send lands right after them.
async fn assert_clean_prefix_then_resume(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partition: u32,
    acked_batches: u64,
) {
    let messages = sdk::poll_all(client, stream, topic, partition).await;
    let acked_messages = acked_batches * 3;
    assert!(
        messages.len() as u64 >= acked_messages,
        "partition {partition}: {} messages after the crash, {acked_messages} acknowledged",
        messages.len()
    );
    assert!(
        messages.len() as u64 <= acked_messages + 3,
        "partition {partition}: at most the one unacknowledged batch may survive"
    );
    for (k, message) in messages.iter().enumerate() {
        assert_eq!(message.header.offset, k as u64);
        assert_eq!(message.header.checksum, checksum(&message.to_bytes()));
        assert_eq!(
            message.payload,
            sequenced_payload(partition, k as u64).as_bytes(),
            "offset {k}"
        );
    }
    let next = messages.len() as u64;
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(partition),
            &mut sdk::messages("resumed", 0..1),
        )
        .await
        .unwrap();
    let resumed = sdk::poll_offset(client, stream, topic, partition, next, 10).await;
    assert_eq!(sdk::offsets(&resumed.messages), vec![next]);
}

#[tokio::test]
async fn shard_count_may_change_between_runs() {
    const PARTITIONS: u32 = 8;
    let mut server = TestServer::start(&["--shards", "4", "--set", SEGMENT_SIZE]);
    let (stream, topic) = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) =
            sdk::create_stream_and_topic(&client, "reshard", "t", PARTITIONS).await;
        for partition in 0..PARTITIONS {
            send_varied(
                &client,
                stream,
                topic,
                partition,
                &format!("p{partition}"),
                30,
            )
            .await;
            client
                .store_consumer_offset(
                    &Consumer::new(id(4)),
                    &id(stream),
                    &id(topic),
                    Some(partition),
                    u64::from(partition),
                )
                .await
                .unwrap();
        }
        (stream, topic)
    })
    .await;

    for (shards, written) in [("2", 30u64), ("3", 31), ("1", 32)] {
        server.restart_with_args(&["--shards", shards, "--set", SEGMENT_SIZE]);
        within(TEST_TIMEOUT, async {
            let client = sdk::client(server.addr).await;
            assert_partitions_kept(&client, stream, topic, PARTITIONS, written).await;
            for partition in 0..PARTITIONS {
                send_varied(
                    &client,
                    stream,
                    topic,
                    partition,
                    &format!("p{partition}"),
                    1,
                )
                .await;
            }
        })
        .await;
        let stats = support::raw::shard_stats(server.addr);
        assert_eq!(
            stats.shards.len(),
            shards.parse::<usize>().unwrap(),
            "{stats:?}"
        );
        assert_eq!(
            stats.shards.iter().map(|s| s.partitions).sum::<u32>(),
            PARTITIONS,
            "{stats:?}"
        );
    }
}

/// Each of the `partitions` partitions holds its `written` messages, from its own first one,
/// and its stored offset, whichever shard now owns it.
async fn assert_partitions_kept(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partitions: u32,
    written: u64,
) {
    for partition in 0..partitions {
        let messages = sdk::poll_all(client, stream, topic, partition).await;
        assert_eq!(messages.len() as u64, written, "partition {partition}");
        let prefix = format!("p{partition}-0-");
        assert!(messages[0].payload.starts_with(prefix.as_bytes()));
        let stored = client
            .get_consumer_offset(
                &Consumer::new(id(4)),
                &id(stream),
                &id(topic),
                Some(partition),
            )
            .await
            .unwrap()
            .expect("stored offset");
        assert_eq!(stored.stored_offset, u64::from(partition));
    }
}

#[tokio::test]
async fn graceful_stop_with_open_idle_and_half_sent_connections() {
    let mut server = TestServer::start(&[]);
    let client = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "open", "t", 1).await;
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(0),
                &mut sdk::messages("m", 0..3),
            )
            .await
            .unwrap();
        client
    })
    .await;
    let mut idle = support::raw::RawConn::connect_logged_in(server.addr);
    let mut half = support::raw::RawConn::connect_logged_in(server.addr);
    let batch = support::raw::SendMessages::new(0, 0, 0, &[b"half-sent"]).encode();
    half.send_bytes(&support::raw::frame(support::raw::code::SEND_MESSAGES, &batch)[..30]);
    let _never_logged_in = support::raw::RawConn::connect(server.addr);

    server.stop();
    // The idle connection is closed, at most after an unsolicited Disconnected (8) frame.
    match idle.try_read_response() {
        Ok(frame) => {
            frame.assert_error(8);
            idle.expect_closed(std::time::Duration::from_secs(5));
        }
        Err(error) => assert!(
            !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the idle connection was left open after the server exited: {error}"
        ),
    }
    drop(client);

    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let messages = sdk::poll_all(&client, 0, 0, 0).await;
        assert_eq!(
            sdk::payload_strings(&messages),
            vec!["m-0", "m-1", "m-2"],
            "the half-sent batch was not stored"
        );
    })
    .await;
}

#[tokio::test]
async fn deleted_streams_topics_and_partitions_leave_nothing_behind() {
    let mut server = TestServer::start(&[]);
    let (stream, topic) = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        // Partitions: delete the highest, create again under the same id: it starts empty.
        let (stream, topic) = sdk::create_stream_and_topic(&client, "reuse", "t", 2).await;
        recreated_partition_starts_empty(&client, stream, topic).await;

        // Topics: delete and create another; whatever id it gets, it starts empty.
        new_topic_starts_empty(&client, stream).await;

        // Streams: the same.
        new_stream_starts_empty(&client).await;
        (stream, topic)
    })
    .await;

    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        assert_only_live_names_restored(&client, stream).await;
        assert_eq!(
            sdk::payload_strings(&sdk::poll_all(&client, stream, topic, 1).await),
            vec!["new-partition-0", "new-partition-1", "new-partition-2"]
        );
        assert_no_old_payload_anywhere(&client).await;
        let stats = client.get_stats().await.unwrap();
        assert_eq!(
            stats.messages_count, 3,
            "only the new partition's messages exist"
        );
    })
    .await;
}

/// Sends three messages, `{prefix}-0` to `{prefix}-2`, to one partition.
async fn send_three(client: &IggyClient, s: u32, t: u32, p: u32, prefix: &str) {
    client
        .send_messages(
            &id(s),
            &id(t),
            &Partitioning::partition_id(p),
            &mut sdk::messages(prefix, 0..3),
        )
        .await
        .unwrap();
}

/// Partition 1 gets flushed messages and a stored offset, is deleted and created again: it
/// comes back with neither, then gets new messages.
async fn recreated_partition_starts_empty(client: &IggyClient, stream: u32, topic: u32) {
    send_three(client, stream, topic, 1, "old-partition").await;
    client
        .flush_unsaved_buffer(&id(stream), &id(topic), 1, true)
        .await
        .unwrap();
    client
        .store_consumer_offset(&Consumer::new(id(1)), &id(stream), &id(topic), Some(1), 2)
        .await
        .unwrap();
    client
        .delete_partitions(&id(stream), &id(topic), 1)
        .await
        .unwrap();
    client
        .create_partitions(&id(stream), &id(topic), 1)
        .await
        .unwrap();
    assert!(
        sdk::poll_all(client, stream, topic, 1).await.is_empty(),
        "a re-created partition starts empty"
    );
    assert!(
        client
            .get_consumer_offset(&Consumer::new(id(1)), &id(stream), &id(topic), Some(1))
            .await
            .unwrap()
            .is_none(),
        "a re-created partition has no stored offsets"
    );
    send_three(client, stream, topic, 1, "new-partition").await;
}

/// A topic with flushed messages is deleted; the next topic created starts empty.
async fn new_topic_starts_empty(client: &IggyClient, stream: u32) {
    let doomed = client
        .create_topic(
            &id(stream),
            "doomed",
            1,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .unwrap()
        .id;
    send_three(client, stream, doomed, 0, "old-topic").await;
    client
        .flush_unsaved_buffer(&id(stream), &id(doomed), 0, true)
        .await
        .unwrap();
    client.delete_topic(&id(stream), &id(doomed)).await.unwrap();
    let fresh = client
        .create_topic(
            &id(stream),
            "fresh",
            1,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .unwrap();
    assert_eq!(fresh.messages_count, 0);
    assert!(
        sdk::poll_all(client, stream, fresh.id, 0).await.is_empty(),
        "a new topic starts empty"
    );
}

/// A stream with flushed messages is deleted; the next stream created starts empty.
async fn new_stream_starts_empty(client: &IggyClient) {
    let (old_stream, old_topic) = sdk::create_stream_and_topic(client, "old-stream", "t", 1).await;
    send_three(client, old_stream, old_topic, 0, "old-stream").await;
    client
        .flush_unsaved_buffer(&id(old_stream), &id(old_topic), 0, true)
        .await
        .unwrap();
    client.delete_stream(&id(old_stream)).await.unwrap();
    let (new_stream, new_topic) = sdk::create_stream_and_topic(client, "new-stream", "t", 1).await;
    assert!(
        sdk::poll_all(client, new_stream, new_topic, 0)
            .await
            .is_empty(),
        "a new stream starts empty"
    );
}

/// After the restart only the live streams ("reuse", "new-stream") and the live topics of
/// `stream` ("t", "fresh") exist.
async fn assert_only_live_names_restored(client: &IggyClient, stream: u32) {
    let names: Vec<String> = client
        .get_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"reuse".to_string()) && names.contains(&"new-stream".to_string()));
    let topics: Vec<String> = client
        .get_topics(&id(stream))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(topics.len(), 2, "{topics:?}");
    assert!(topics.contains(&"t".to_string()) && topics.contains(&"fresh".to_string()));
}

/// No partition of any stream serves a message of a deleted partition, topic or stream.
async fn assert_no_old_payload_anywhere(client: &IggyClient) {
    for s in client.get_streams().await.unwrap() {
        for t in client.get_topics(&id(s.id)).await.unwrap() {
            for p in 0..t.partitions_count {
                for payload in sdk::payload_strings(&sdk::poll_all(client, s.id, t.id, p).await) {
                    assert!(
                        !payload.starts_with("old-"),
                        "{payload} came back in {}/{}/{p}",
                        s.name,
                        t.name
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn metadata_survives_sigkill_with_default_durability() {
    let mut server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, _) = sdk::create_stream_and_topic(&client, "meta", "first", 2).await;
        client
            .create_topic(
                &id(stream),
                "second",
                1,
                CompressionAlgorithm::None,
                None,
                IggyExpiry::NeverExpire,
                MaxTopicSize::ServerDefault,
            )
            .await
            .unwrap();
        client
            .create_partitions(&id(stream), &name("first"), 3)
            .await
            .unwrap();
        client
            .delete_partitions(&id(stream), &name("first"), 1)
            .await
            .unwrap();
        client
            .update_topic(
                &id(stream),
                &name("second"),
                "second-renamed",
                CompressionAlgorithm::None,
                None,
                IggyExpiry::NeverExpire,
                MaxTopicSize::ServerDefault,
            )
            .await
            .unwrap();
        client
            .update_stream(&id(stream), "meta-renamed")
            .await
            .unwrap();
        let gone = client.create_stream("gone").await.unwrap().id;
        client.delete_stream(&id(gone)).await.unwrap();
    })
    .await;
    // Metadata changes are acknowledged only once they are durable (ARCHITECTURE.md).
    server.kill();
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let streams = client.get_streams().await.unwrap();
        assert_eq!(
            streams.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            vec!["meta-renamed"]
        );
        let stream = client
            .get_stream(&name("meta-renamed"))
            .await
            .unwrap()
            .expect("stream");
        let topics: Vec<(String, u32)> = stream
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions_count))
            .collect();
        assert_eq!(
            topics,
            vec![("first".to_string(), 4), ("second-renamed".to_string(), 1)]
        );
    })
    .await;
}

#[tokio::test]
async fn config_file_and_messages_larger_than_a_segment() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("galgo.toml");
    // The file says 1 MiB; --set overrides it with 4 KiB.
    std::fs::write(
        &config,
        "[storage]\nsegment_size_bytes = 1048576\njournal_messages_max = 2\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let mut server = TestServer::start(&["--config", config_arg, "--set", SEGMENT_SIZE]);
    let sizes = [10_000usize, 3, 50_000, 4_000, 4_033, 1, 200_000, 7];
    let (stream, topic, before) = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "big", "t", 1).await;
        for (n, size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..*size).map(|i| (i * 7 + n) as u8).collect();
            client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(0),
                    &mut [sdk::message(payload)],
                )
                .await
                .unwrap();
        }
        (stream, topic, snapshot(&client, stream, topic).await)
    })
    .await;
    server.stop();
    let segments = check_segments(&server.partition_dir(stream, topic, 0));
    assert!(
        segments.len() >= 4,
        "4 KiB segments (the --set value) rolled around big messages: {segments:?}"
    );
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        assert_eq!(snapshot(&client, stream, topic).await, before);
        for (n, size) in sizes.iter().enumerate() {
            let one = sdk::poll_offset(&client, stream, topic, 0, n as u64, 1).await;
            assert_eq!(one.messages[0].payload.len(), *size, "offset {n}");
        }
    })
    .await;
}
