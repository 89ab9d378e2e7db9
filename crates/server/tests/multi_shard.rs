//! A 4-shard server: partitions spread over shards, connections land on any shard (SO_REUSEPORT),
//! and every connection reads and writes every partition through cross-shard calls.

mod support;

use std::collections::BTreeMap;

use iggy::prelude::*;
use support::TestServer;
use support::sdk::{self, TEST_TIMEOUT, id, within};
use support::{raw, vsr};

const SHARDS: u32 = 4;
const PARTITIONS: u32 = 8;
const PER_PARTITION: u64 = 20;

fn expected_payloads(partition: u32) -> Vec<String> {
    (0..PER_PARTITION)
        .map(|i| format!("p{partition}-{i}"))
        .collect()
}

async fn assert_partitions(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    which: impl Iterator<Item = u32>,
) {
    for partition in which {
        let messages = sdk::poll_all(client, stream, topic, partition).await;
        assert_eq!(
            sdk::offsets(&messages),
            (0..PER_PARTITION).collect::<Vec<u64>>(),
            "offsets of partition {partition}"
        );
        assert_eq!(
            sdk::payload_strings(&messages),
            expected_payloads(partition),
            "partition {partition}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_reaches_every_partition_across_shards() {
    let server = TestServer::start(&["--shards", "4"]);
    within(TEST_TIMEOUT, async {
        let writer = sdk::client(server.addr).await;
        let (stream, topic) =
            sdk::create_stream_and_topic(&writer, "sharded", "t", PARTITIONS).await;

        // One connection writes every partition, wherever it lives.
        write_every_partition(&writer, stream, topic).await;

        // Another connection reads every partition back.
        let reader = sdk::client(server.addr).await;
        assert_partitions(&reader, stream, topic, 0..PARTITIONS).await;

        // Several connections, spread over the shards by the kernel, each read every partition.
        let mut readers = Vec::new();
        for _ in 0..6 {
            readers.push(sdk::client(server.addr).await);
        }
        for client in &readers {
            assert_partitions(client, stream, topic, 0..PARTITIONS).await;
        }
        assert_every_client_listed(&reader, &readers).await;

        // Metadata reads agree on every connection, whichever shard serves it.
        for client in readers.iter().chain([&writer, &reader]) {
            assert_topic_details(client, stream, topic).await;
        }
        let stats = reader.get_stats().await.expect("get_stats");
        assert_eq!(
            (stats.partitions_count, stats.messages_count),
            (PARTITIONS, u64::from(PARTITIONS) * PER_PARTITION)
        );

        // Stored offsets live with their partition and are visible from any connection.
        assert_stored_offsets_shared(&readers, &writer, stream, topic).await;
    })
    .await;

    assert_shards_shared_the_work(server.addr);
}

/// Sends `PER_PARTITION` messages to every partition, in two batches each.
async fn write_every_partition(writer: &IggyClient, stream: u32, topic: u32) {
    for partition in 0..PARTITIONS {
        for half in [0..PER_PARTITION / 2, PER_PARTITION / 2..PER_PARTITION] {
            let mut batch = sdk::messages(&format!("p{partition}"), half);
            writer
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(partition),
                    &mut batch,
                )
                .await
                .expect("send");
        }
    }
}

/// `get_clients` on one connection lists every reader's address, whichever shard holds it.
async fn assert_every_client_listed(reader: &IggyClient, readers: &[IggyClient]) {
    let addresses: Vec<String> = {
        let mut all = Vec::new();
        for client in readers {
            all.push(client.get_me().await.expect("get_me").address);
        }
        all
    };
    let clients = reader.get_clients().await.expect("get_clients");
    for address in &addresses {
        assert!(
            clients.iter().any(|c| &c.address == address),
            "get_clients lists {address} (every shard's clients)"
        );
    }
}

/// The topic's details, as seen by `client`, count every partition and every message.
async fn assert_topic_details(client: &IggyClient, stream: u32, topic: u32) {
    let details = client
        .get_topic(&id(stream), &id(topic))
        .await
        .unwrap()
        .expect("topic");
    assert_eq!(details.partitions_count, PARTITIONS);
    assert_eq!(
        details.messages_count,
        u64::from(PARTITIONS) * PER_PARTITION
    );
    for partition in &details.partitions {
        assert_eq!(
            (partition.messages_count, partition.current_offset),
            (PER_PARTITION, PER_PARTITION - 1)
        );
    }
}

/// Each partition's consumer offset is stored through one of the readers (round robin) and
/// read back through the writer.
async fn assert_stored_offsets_shared(
    readers: &[IggyClient],
    writer: &IggyClient,
    stream: u32,
    topic: u32,
) {
    for (i, partition) in (0..PARTITIONS).enumerate() {
        let client = &readers[i % readers.len()];
        client
            .store_consumer_offset(
                &Consumer::new(id(9)),
                &id(stream),
                &id(topic),
                Some(partition),
                u64::from(partition),
            )
            .await
            .expect("store offset");
    }
    for partition in 0..PARTITIONS {
        let stored = writer
            .get_consumer_offset(
                &Consumer::new(id(9)),
                &id(stream),
                &id(topic),
                Some(partition),
            )
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(stored.stored_offset, u64::from(partition));
    }
}

/// The per-shard statistics show every shard running, the partitions spread and balanced over
/// them, and cross-shard calls made and received.
fn assert_shards_shared_the_work(addr: std::net::SocketAddr) {
    let stats = raw::shard_stats(addr);
    assert_eq!(stats.shards.len(), SHARDS as usize, "{stats:?}");
    let mut ids: Vec<u32> = stats.shards.iter().map(|s| s.shard_id).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..SHARDS).collect::<Vec<u32>>());
    assert_eq!(
        stats.shards.iter().map(|s| s.partitions).sum::<u32>(),
        PARTITIONS,
        "{stats:?}"
    );
    let owning = stats.shards.iter().filter(|s| s.partitions > 0).count();
    assert!(
        owning > 1,
        "partitions spread over more than one shard: {stats:?}"
    );
    assert!(
        stats
            .shards
            .iter()
            .all(|s| s.partitions <= PARTITIONS / SHARDS + 1),
        "placement is balanced: {stats:?}"
    );
    assert!(
        stats.shards.iter().map(|s| s.calls_sent).sum::<u64>() > 0,
        "cross-shard calls happened: {stats:?}"
    );
    assert!(
        stats.shards.iter().map(|s| s.calls_received).sum::<u64>() > 0,
        "{stats:?}"
    );
    assert!(
        stats.shards.iter().map(|s| s.connections).sum::<u32>() >= 1,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_per_writer_order_and_contiguous_offsets() {
    let server = TestServer::start(&["--shards", "4"]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) =
            sdk::create_stream_and_topic(&admin, "concurrent", "t", PARTITIONS).await;
        const WRITERS: u32 = 4;
        const BATCHES: u32 = 40;
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let client = sdk::client(server.addr).await;
            tasks.push(tokio::spawn(async move {
                for batch in 0..BATCHES {
                    let partition = (batch + writer) % PARTITIONS;
                    let mut messages = sdk::messages(&format!("w{writer}.b{batch}"), 0..3);
                    client
                        .send_messages(
                            &id(stream),
                            &id(topic),
                            &Partitioning::partition_id(partition),
                            &mut messages,
                        )
                        .await
                        .expect("concurrent send");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
        // Balanced batches from one connection are dealt over all partitions, one each.
        let balanced = sdk::client(server.addr).await;
        for batch in 0..PARTITIONS {
            balanced
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::balanced(),
                    &mut sdk::messages(&format!("bal{batch}"), 0..1),
                )
                .await
                .expect("balanced send");
        }

        let mut total = 0;
        for partition in 0..PARTITIONS {
            let messages = sdk::poll_all(&admin, stream, topic, partition).await;
            assert_writer_order(partition, &messages);
            total += messages.len();
        }
        assert_eq!(total, (WRITERS * BATCHES * 3 + PARTITIONS) as usize);
    })
    .await;
}

/// One partition's messages: offsets contiguous from 0, each writer's batches in the order it
/// sent them, and exactly one balanced batch.
fn assert_writer_order(partition: u32, messages: &[IggyMessage]) {
    assert_eq!(
        sdk::offsets(messages),
        (0..messages.len() as u64).collect::<Vec<u64>>()
    );
    let mut last_batch: BTreeMap<String, i64> = BTreeMap::new();
    let mut balanced_here = 0;
    for payload in sdk::payload_strings(messages) {
        if payload.starts_with("bal") {
            balanced_here += 1;
            continue;
        }
        let (writer, rest) = payload.split_once(".b").expect("w{writer}.b{batch}-{i}");
        let batch: i64 = rest.split_once('-').expect("-i").0.parse().unwrap();
        let previous = last_batch.insert(writer.to_string(), batch).unwrap_or(-1);
        assert!(
            batch >= previous,
            "partition {partition}: {writer} batch {batch} after {previous}"
        );
    }
    assert_eq!(
        balanced_here, 1,
        "partition {partition} got one balanced batch"
    );
}

#[test]
fn acknowledged_metadata_changes_are_visible_on_every_connection() {
    use support::raw::{RawConn, code, id_named};

    let server = TestServer::start(&["--shards", "4"]);
    // Eight connections: the kernel spreads them over the shards.
    let mut conns: Vec<RawConn> = (0..8)
        .map(|_| RawConn::connect_logged_in(server.addr))
        .collect();
    for i in 0..100usize {
        let name = format!("visible-{i}");
        let creator = i % conns.len();
        let created = raw::create_stream(&mut conns[creator], &name);
        for (reader, conn) in conns.iter_mut().enumerate() {
            let found = conn.request(code::GET_STREAM, &id_named(&name)).ok();
            assert!(
                !found.is_empty() && u32::from_le_bytes(found[0..4].try_into().unwrap()) == created,
                "stream {name} made on connection {creator} is not visible on connection {reader}"
            );
        }
    }
}

/// A plain TCP connection that keeps sending to one partition moves to that partition's shard
/// (migration.rs): its later requests cost no cross-shard call, it stays logged in, requests it
/// pipelined across the move are all answered in order, and everything it sent is stored.
#[test]
fn a_connection_moves_to_the_shard_of_its_partitions() {
    const TWO_SHARDS_PARTITIONS: u32 = 4;
    const BATCHES: u32 = 40;
    let server = TestServer::start(&["--shards", "2"]);
    let mut conn = raw::RawConn::connect_logged_in(server.addr);
    let stream_id = raw::create_stream(&mut conn, "moving");
    let topic_id = raw::create_topic(&mut conn, stream_id, "t", TWO_SHARDS_PARTITIONS);
    // 4 partitions over 2 shards, at most 3 on one (balanced placement): whichever shard this
    // connection landed on, some partition below lives on the other one.
    for partition in 0..TWO_SHARDS_PARTITIONS {
        let before = raw::calls_sent(server.addr);
        let pipelined = raw::pipelined_sends(stream_id, topic_id, partition, BATCHES);
        // All frames in one write: the ones after a move arrive in the buffer it hands over.
        conn.send_bytes(&pipelined);
        for _ in 0..BATCHES {
            conn.read_response().ok();
        }
        let spent = raw::calls_sent(server.addr) - before;
        assert!(
            spent < u64::from(BATCHES) / 2,
            "partition {partition}: {spent} cross-shard calls for {BATCHES} sends; the connection did not follow its partition"
        );
    }
    for partition in 0..TWO_SHARDS_PARTITIONS {
        let polled = raw::poll(&mut conn, stream_id, topic_id, partition, 0, BATCHES + 1);
        let expected: Vec<(u64, Vec<u8>)> = (0..BATCHES)
            .map(|batch| {
                (
                    u64::from(batch),
                    format!("p{partition}-b{batch}").into_bytes(),
                )
            })
            .collect();
        assert_eq!(polled.messages, expected, "partition {partition}");
    }
}

/// The same move for a 0.9 connection: its generation and its session go with it. It stays
/// registered (no new Register), its pipelined sends across the move are all answered, and a
/// retry of its last send after the move gets the kept reply instead of a second append.
#[test]
fn a_0_9_connection_moves_with_its_session() {
    const TWO_SHARDS_PARTITIONS: u32 = 4;
    const BATCHES: u32 = 40;
    let server = TestServer::start(&["--shards", "2"]);
    let mut admin = raw::RawConn::connect_logged_in(server.addr);
    let stream_id = raw::create_stream(&mut admin, "moving");
    let topic_id = raw::create_topic(&mut admin, stream_id, "t", TWO_SHARDS_PARTITIONS);
    let mut conn = vsr::VsrConn::connect(server.addr, 0x5EED);
    conn.register("iggy", "iggy");
    let mut last = Vec::new();
    for partition in 0..TWO_SHARDS_PARTITIONS {
        let before = raw::calls_sent(server.addr);
        let mut pipelined = Vec::new();
        for batch in 0..BATCHES {
            let payload = format!("p{partition}-b{batch}");
            let message = vsr::RawMessage {
                id: u128::from(batch + 1),
                origin_timestamp: 1,
                payload: payload.as_bytes(),
            };
            let body = vsr::send_messages_body(stream_id, topic_id, partition, &[message]);
            last = conn.next_frame(vsr::operation::SEND_MESSAGES, false, &body);
            pipelined.extend_from_slice(&last);
        }
        conn.send_bytes(&pipelined);
        for batch in 0..BATCHES {
            let reply = conn.read_frame();
            assert_eq!(reply.status(), 0, "partition {partition}, batch {batch}");
        }
        let spent = raw::calls_sent(server.addr) - before;
        assert!(
            spent < u64::from(BATCHES) / 2,
            "partition {partition}: {spent} cross-shard calls for {BATCHES} sends"
        );
    }
    let retried = conn.exchange(&last);
    assert_eq!(
        retried.status(),
        0,
        "the retry is answered from the kept reply"
    );
    for partition in 0..TWO_SHARDS_PARTITIONS {
        let polled = raw::poll(&mut admin, stream_id, topic_id, partition, 0, BATCHES + 1);
        let expected: Vec<(u64, Vec<u8>)> = (0..BATCHES)
            .map(|batch| {
                let payload = format!("p{partition}-b{batch}").into_bytes();
                (u64::from(batch), payload)
            })
            .collect();
        assert_eq!(
            polled.messages, expected,
            "partition {partition}: each once, in order"
        );
    }
}
