//! Both client generations on one server at the same time: `iggy` 0.10.0 (0.8 classic framing)
//! and `iggy` 0.11.0 (renamed `iggy_next`, 0.9 VSR framing) on the same TCP port, which tells
//! them apart by the first 4 bytes of each connection (PROTOCOL-0.9.md §11).
//!
//! * A 0.8 producer and a 0.9 consumer use one topic concurrently, and the reverse; both
//!   generations then read back the same payloads, headers, ids, offsets, timestamps and origin
//!   timestamps, and the 0.8 view carries valid 0.8 checksums.
//! * Consumer offsets stored by one generation are read, continued and deleted by the other.
//! * One consumer group with a member of each generation: the server's assignment is what both
//!   see (the 0.9 member learns it through SyncConsumerGroup), and every message is consumed
//!   once.
//! * A key sends to the same partition from both generations (the 0.8 server hashes it; the
//!   0.9 client hashes it itself).
//! * The 0.9 retry rule, on raw frames: the same request (client id, session, request number)
//!   sent twice is answered twice, alike, and applied once (PROTOCOL-0.9.md §9).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use galgo_protocol::message::checksum;
use support::TestServer;
use support::sdk::{self as old, TEST_TIMEOUT, within};
use support::sdk_next as new;
use support::vsr::{self, Frame, RawMessage, VsrConn, command, operation};

use iggy::prelude::{ConsumerGroupClient as _, ConsumerOffsetClient as _, MessageClient as _};
use iggy_next::prelude::{
    ConsumerGroupClient as _, ConsumerOffsetClient as _, MessageClient as _, StreamClient as _,
};

/// How long a consumer keeps polling for messages a concurrent producer is still sending.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(30);
/// Batches the concurrent producers send, and messages per batch.
const BATCHES: u64 = 20;
const BATCH_LENGTH: u64 = 5;

/// One message as a client generation sees it, everything but the checksum (whose input
/// differs between the generations' formats).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    id: u128,
    offset: u64,
    timestamp: u64,
    origin_timestamp: u64,
    payload: Vec<u8>,
    user_headers: Option<Vec<u8>>,
}

fn seen_old(message: &iggy::prelude::IggyMessage) -> Seen {
    Seen {
        id: message.header.id,
        offset: message.header.offset,
        timestamp: message.header.timestamp,
        origin_timestamp: message.header.origin_timestamp,
        payload: message.payload.to_vec(),
        user_headers: message.user_headers.as_ref().map(|h| h.to_vec()),
    }
}

fn seen_new(message: &iggy_next::prelude::IggyMessage) -> Seen {
    Seen {
        id: message.header.id,
        offset: message.header.offset,
        timestamp: message.header.timestamp,
        origin_timestamp: message.header.origin_timestamp,
        payload: message.payload.to_vec(),
        user_headers: message.user_headers.as_ref().map(|h| h.to_vec()),
    }
}

/// The messages of batch `batch` of a 0.8 producer: headers naming the generation and the
/// index, and a client-chosen id on every other message (the others get the server's).
fn old_batch(batch: u64) -> Vec<iggy::prelude::IggyMessage> {
    use iggy::prelude::{HeaderKey, HeaderValue, IggyMessage};
    (batch * BATCH_LENGTH..(batch + 1) * BATCH_LENGTH)
        .map(|i| {
            let headers = BTreeMap::from([
                (
                    HeaderKey::try_from("gen").unwrap(),
                    HeaderValue::try_from("0.8").unwrap(),
                ),
                (HeaderKey::try_from("i").unwrap(), HeaderValue::from(i)),
            ]);
            let id = (i % 2 == 0).then_some(0xA000 + u128::from(i));
            IggyMessage::builder()
                .maybe_id(id)
                .payload(Bytes::from(format!("old-{i}")))
                .user_headers(headers)
                .build()
                .unwrap()
        })
        .collect()
}

/// The messages of batch `batch` of a 0.9 producer, shaped like [`old_batch`]'s.
fn new_batch(batch: u64) -> Vec<iggy_next::prelude::IggyMessage> {
    use iggy_next::prelude::{HeaderKey, HeaderValue, IggyMessage};
    (batch * BATCH_LENGTH..(batch + 1) * BATCH_LENGTH)
        .map(|i| {
            let headers = BTreeMap::from([
                (
                    HeaderKey::try_from("gen").unwrap(),
                    HeaderValue::try_from("0.9").unwrap(),
                ),
                (HeaderKey::try_from("i").unwrap(), HeaderValue::from(i)),
            ]);
            let id = (i % 2 == 0).then_some(0xB000 + u128::from(i));
            IggyMessage::builder()
                .maybe_id(id)
                .payload(Bytes::from(format!("new-{i}")))
                .user_headers(headers)
                .build()
                .unwrap()
        })
        .collect()
}

/// Sends every 0.8 batch to partition 0; returns what was sent (ids 0 where the server picks).
async fn produce_old(client: &iggy::prelude::IggyClient, stream: u32, topic: u32) -> Vec<Seen> {
    let mut sent = Vec::new();
    for batch in 0..BATCHES {
        let mut messages = old_batch(batch);
        sent.extend(messages.iter().map(seen_old));
        client
            .send_messages(
                &old::id(stream),
                &old::id(topic),
                &iggy::prelude::Partitioning::partition_id(0),
                &mut messages,
            )
            .await
            .expect("0.8 send");
    }
    sent
}

/// Sends every 0.9 batch to partition 0; returns what was sent, with the ids the SDK minted.
async fn produce_new(
    client: &iggy_next::prelude::IggyClient,
    stream: u32,
    topic: u32,
) -> Vec<Seen> {
    let mut sent = Vec::new();
    for batch in 0..BATCHES {
        let mut messages = new_batch(batch);
        client
            .send_messages(
                &new::id(stream),
                &new::id(topic),
                &iggy_next::prelude::Partitioning::partition_id(0),
                &mut messages,
            )
            .await
            .expect("0.9 send");
        sent.extend(messages.iter().map(seen_new));
    }
    sent
}

/// Polls partition 0 with Next and auto-commit as consumer `reader` (0.9) until every message
/// arrived, at most [`CONDITION_TIMEOUT`].
async fn consume_new(
    client: &iggy_next::prelude::IggyClient,
    stream: u32,
    topic: u32,
) -> Vec<Seen> {
    let reader = iggy_next::prelude::Consumer::new(new::name("reader"));
    let next = iggy_next::prelude::PollingStrategy::next();
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    let mut got = Vec::new();
    while (got.len() as u64) < BATCHES * BATCH_LENGTH {
        assert!(
            Instant::now() < deadline,
            "0.9 consumer got {} messages",
            got.len()
        );
        let polled = client
            .poll_messages(
                &new::id(stream),
                &new::id(topic),
                Some(0),
                &reader,
                &next,
                7,
                true,
            )
            .await
            .expect("0.9 poll");
        if polled.messages.is_empty() {
            tokio::task::yield_now().await;
        }
        got.extend(polled.messages.iter().map(seen_new));
    }
    got
}

/// Polls partition 0 with Next and auto-commit as consumer `reader` (0.8) until every message
/// arrived, at most [`CONDITION_TIMEOUT`].
async fn consume_old(client: &iggy::prelude::IggyClient, stream: u32, topic: u32) -> Vec<Seen> {
    let reader = iggy::prelude::Consumer::new(old::name("reader"));
    let next = iggy::prelude::PollingStrategy::next();
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    let mut got = Vec::new();
    while (got.len() as u64) < BATCHES * BATCH_LENGTH {
        assert!(
            Instant::now() < deadline,
            "0.8 consumer got {} messages",
            got.len()
        );
        let polled = client
            .poll_messages(
                &old::id(stream),
                &old::id(topic),
                Some(0),
                &reader,
                &next,
                7,
                true,
            )
            .await
            .expect("0.8 poll");
        if polled.messages.is_empty() {
            tokio::task::yield_now().await;
        }
        for message in &polled.messages {
            assert_eq!(
                message.header.checksum,
                checksum(&message.to_bytes()),
                "0.8 checksum"
            );
        }
        got.extend(polled.messages.iter().map(seen_old));
    }
    got
}

/// What both generations read back from partition 0 afterwards, by offset from 0.
async fn both_views(
    old_client: &iggy::prelude::IggyClient,
    new_client: &iggy_next::prelude::IggyClient,
    stream: u32,
    topic: u32,
) -> (Vec<Seen>, Vec<Seen>) {
    let old_view = old::poll_all(old_client, stream, topic, 0).await;
    for message in &old_view {
        assert_eq!(
            message.header.checksum,
            checksum(&message.to_bytes()),
            "0.8 checksum"
        );
    }
    let new_view = new::poll_all(new_client, stream, topic, 0).await;
    (
        old_view.iter().map(seen_old).collect(),
        new_view.iter().map(seen_new).collect(),
    )
}

/// The messages as served match the messages as sent: the same order, offsets from 0, one
/// timestamp per batch, and the sender's ids (a server-chosen one where the sender left 0).
fn check_served_as_sent(served: &[Seen], sent: &[Seen]) {
    assert_eq!(served.len(), sent.len());
    for (offset, (got, want)) in served.iter().zip(sent).enumerate() {
        assert_eq!(got.offset, offset as u64);
        assert_eq!(
            (&got.payload, &got.user_headers),
            (&want.payload, &want.user_headers)
        );
        assert_eq!(
            got.origin_timestamp, want.origin_timestamp,
            "origin of {offset}"
        );
        if want.id == 0 {
            assert_ne!(got.id, 0, "the server chose an id for {offset}");
        } else {
            assert_eq!(got.id, want.id, "id of {offset}");
        }
        let batch_start = offset - offset % BATCH_LENGTH as usize;
        assert_eq!(
            got.timestamp, served[batch_start].timestamp,
            "one timestamp per batch"
        );
    }
    assert!(served.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
}

#[tokio::test]
async fn an_old_producer_and_a_new_consumer_share_a_topic_at_the_same_time() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let old_client = old::client(server.addr).await;
        let new_client = new::client(server.addr).await;
        let (stream, topic) = old::create_stream_and_topic(&old_client, "mixed", "t", 1).await;
        let (sent, consumed) = tokio::join!(
            produce_old(&old_client, stream, topic),
            consume_new(&new_client, stream, topic)
        );
        let (old_view, new_view) = both_views(&old_client, &new_client, stream, topic).await;
        assert_eq!(
            consumed, new_view,
            "the concurrent 0.9 consumer saw what was stored"
        );
        assert_eq!(old_view, new_view, "both generations see the same messages");
        check_served_as_sent(&old_view, &sent);
        // The 0.9 consumer's auto-commits are the offsets the 0.8 client reads.
        let stored = old_client
            .get_consumer_offset(
                &iggy::prelude::Consumer::new(old::name("reader")),
                &old::id(stream),
                &old::id(topic),
                Some(0),
            )
            .await
            .expect("get")
            .expect("the 0.9 consumer committed");
        assert_eq!(stored.stored_offset, BATCHES * BATCH_LENGTH - 1);
    })
    .await;
}

#[tokio::test]
async fn a_new_producer_and_an_old_consumer_share_a_topic_at_the_same_time() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let old_client = old::client(server.addr).await;
        let new_client = new::client(server.addr).await;
        let (stream, topic) = new::create_stream_and_topic(&new_client, "mixed", "t", 1).await;
        let (sent, consumed) = tokio::join!(
            produce_new(&new_client, stream, topic),
            consume_old(&old_client, stream, topic)
        );
        let (old_view, new_view) = both_views(&old_client, &new_client, stream, topic).await;
        assert_eq!(
            consumed, old_view,
            "the concurrent 0.8 consumer saw what was stored"
        );
        assert_eq!(old_view, new_view, "both generations see the same messages");
        check_served_as_sent(&new_view, &sent);
        let stored = new_client
            .get_consumer_offset(
                &iggy_next::prelude::Consumer::new(new::name("reader")),
                &new::id(stream),
                &new::id(topic),
                Some(0),
            )
            .await
            .expect("get")
            .expect("the 0.8 consumer committed");
        assert_eq!(stored.stored_offset, BATCHES * BATCH_LENGTH - 1);
    })
    .await;
}

/// One consumer, named alike in both generations, on partition 0 of one topic.
struct SharedConsumer<'a> {
    old_client: &'a iggy::prelude::IggyClient,
    new_client: &'a iggy_next::prelude::IggyClient,
    old_consumer: iggy::prelude::Consumer,
    new_consumer: iggy_next::prelude::Consumer,
    stream: u32,
    topic: u32,
}

impl SharedConsumer<'_> {
    fn old_ids(&self) -> (iggy::prelude::Identifier, iggy::prelude::Identifier) {
        (old::id(self.stream), old::id(self.topic))
    }

    fn new_ids(
        &self,
    ) -> (
        iggy_next::prelude::Identifier,
        iggy_next::prelude::Identifier,
    ) {
        (new::id(self.stream), new::id(self.topic))
    }

    /// The stored offset as the 0.8 client reads it.
    async fn old_offset(&self) -> Option<u64> {
        let (s, t) = self.old_ids();
        let read = self
            .old_client
            .get_consumer_offset(&self.old_consumer, &s, &t, Some(0));
        read.await.expect("0.8 get").map(|o| o.stored_offset)
    }

    /// The stored offset as the 0.9 client reads it.
    async fn new_offset(&self) -> Option<u64> {
        let (s, t) = self.new_ids();
        let read = self
            .new_client
            .get_consumer_offset(&self.new_consumer, &s, &t, Some(0));
        let info = read.await.expect("0.9 get")?;
        assert_eq!((info.partition_id, info.current_offset), (0, 9));
        Some(info.stored_offset)
    }

    async fn old_store(&self, offset: u64) {
        let (s, t) = self.old_ids();
        let store =
            self.old_client
                .store_consumer_offset(&self.old_consumer, &s, &t, Some(0), offset);
        store.await.expect("0.8 store");
    }

    async fn new_store(&self, offset: u64) {
        let (s, t) = self.new_ids();
        let store =
            self.new_client
                .store_consumer_offset(&self.new_consumer, &s, &t, Some(0), offset);
        store.await.expect("0.9 store");
    }

    async fn old_delete(&self) {
        let (s, t) = self.old_ids();
        let delete = self
            .old_client
            .delete_consumer_offset(&self.old_consumer, &s, &t, Some(0));
        delete.await.expect("0.8 delete");
    }

    async fn new_delete(&self) {
        let (s, t) = self.new_ids();
        let delete = self
            .new_client
            .delete_consumer_offset(&self.new_consumer, &s, &t, Some(0));
        delete.await.expect("0.9 delete");
    }

    /// The offsets of a 0.8 Next poll of up to `count` messages, committing them.
    async fn old_next(&self, count: u32) -> Vec<u64> {
        let (s, t) = self.old_ids();
        let next = iggy::prelude::PollingStrategy::next();
        let poll =
            self.old_client
                .poll_messages(&s, &t, Some(0), &self.old_consumer, &next, count, true);
        old::offsets(&poll.await.expect("0.8 next").messages)
    }

    /// The offsets of a 0.9 Next poll of up to `count` messages, committing them.
    async fn new_next(&self, count: u32) -> Vec<u64> {
        let (s, t) = self.new_ids();
        let next = iggy_next::prelude::PollingStrategy::next();
        let poll =
            self.new_client
                .poll_messages(&s, &t, Some(0), &self.new_consumer, &next, count, true);
        new::offsets(&poll.await.expect("0.9 next").messages)
    }
}

#[tokio::test]
async fn consumer_offsets_are_shared_between_generations() {
    use iggy::prelude::Consumer as OldConsumer;
    use iggy_next::prelude::Consumer as NewConsumer;

    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let old_client = old::client(server.addr).await;
        let new_client = new::client(server.addr).await;
        let (stream, topic) = old::create_stream_and_topic(&old_client, "offsets", "t", 1).await;
        new::send_to(&new_client, stream, topic, 0, new::messages("m", 0..10)).await;
        let consumers = [
            (
                OldConsumer::new(old::name("shared")),
                NewConsumer::new(new::name("shared")),
            ),
            (OldConsumer::new(old::id(7)), NewConsumer::new(new::id(7))),
        ];
        for (old_consumer, new_consumer) in consumers {
            let shared = SharedConsumer {
                old_client: &old_client,
                new_client: &new_client,
                old_consumer,
                new_consumer,
                stream,
                topic,
            };
            shared.old_store(4).await;
            assert_eq!(shared.new_offset().await, Some(4), "stored by 0.8");
            assert_eq!(
                shared.new_next(3).await,
                vec![5, 6, 7],
                "0.9 continues after 4"
            );
            assert_eq!(shared.old_offset().await, Some(7), "committed by 0.9");
            assert_eq!(shared.old_next(1).await, vec![8], "0.8 continues after 7");
            assert_eq!(shared.new_offset().await, Some(8), "committed by 0.8");
            shared.new_store(2).await;
            assert_eq!(shared.old_offset().await, Some(2), "stored by 0.9");
            shared.new_delete().await;
            assert_eq!(shared.old_offset().await, None, "deleted by 0.9");
            shared.old_store(1).await;
            shared.old_delete().await;
            assert_eq!(shared.new_offset().await, None, "deleted by 0.8");
        }
    })
    .await;
}

/// The partitions each member owns, by the member's client id.
async fn members(
    client: &iggy::prelude::IggyClient,
    stream: u32,
    topic: u32,
) -> BTreeMap<u32, Vec<u32>> {
    let details = client
        .get_consumer_group(&old::id(stream), &old::id(topic), &old::name("g"))
        .await
        .expect("get group")
        .expect("group exists");
    details
        .members
        .into_iter()
        .map(|m| (m.id, m.partitions))
        .collect()
}

/// Polls as a 0.8 member (the server picks the partition) with Next and auto-commit until
/// each of its partitions answered empty once in a row.
async fn drain_old(
    client: &iggy::prelude::IggyClient,
    stream: u32,
    topic: u32,
    partitions: usize,
) -> Vec<(u32, String)> {
    let group = iggy::prelude::Consumer::group(old::name("g"));
    let next = iggy::prelude::PollingStrategy::next();
    let mut got = Vec::new();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < partitions {
        let polled = client
            .poll_messages(
                &old::id(stream),
                &old::id(topic),
                None,
                &group,
                &next,
                7,
                true,
            )
            .await
            .expect("0.8 member poll");
        empty_in_a_row = if polled.messages.is_empty() {
            empty_in_a_row + 1
        } else {
            0
        };
        for payload in old::payload_strings(&polled.messages) {
            got.push((polled.partition_id, payload));
        }
    }
    got
}

/// Polls as a 0.9 member (the SDK picks among the partitions SyncConsumerGroup gave it) with
/// Next and auto-commit until each of its partitions answered empty once in a row.
async fn drain_new(
    client: &iggy_next::prelude::IggyClient,
    stream: u32,
    topic: u32,
    partitions: usize,
) -> Vec<(u32, String)> {
    let group = iggy_next::prelude::Consumer::group(new::name("g"));
    let next = iggy_next::prelude::PollingStrategy::next();
    let mut got = Vec::new();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < partitions {
        let polled = client
            .poll_messages(
                &new::id(stream),
                &new::id(topic),
                None,
                &group,
                &next,
                7,
                true,
            )
            .await
            .expect("0.9 member poll");
        empty_in_a_row = if polled.messages.is_empty() {
            empty_in_a_row + 1
        } else {
            0
        };
        for payload in new::payload_strings(&polled.messages) {
            got.push((polled.partition_id, payload));
        }
    }
    got
}

#[tokio::test]
async fn a_consumer_group_is_shared_between_generations() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = old::client(server.addr).await;
        let (stream, topic) = old::create_stream_and_topic(&admin, "groups", "t", 4).await;
        admin
            .create_consumer_group(&old::id(stream), &old::id(topic), "g")
            .await
            .expect("create group");
        for partition in 0..4u32 {
            let batch = new::messages(&format!("p{partition}"), 0..10);
            let sender = new::client(server.addr).await;
            new::send_to(&sender, stream, topic, partition, batch).await;
        }
        let old_member = old::client(server.addr).await;
        let new_member = new::client(server.addr).await;
        old_member
            .join_consumer_group(&old::id(stream), &old::id(topic), &old::name("g"))
            .await
            .expect("0.8 join");
        new_member
            .join_consumer_group(&new::id(stream), &new::id(topic), &new::name("g"))
            .await
            .expect("0.9 join");
        // Member ids are the group's own (not client ids): tell the members apart by what
        // each drained, which must be exactly one member's share.
        let shares = members(&admin, stream, topic).await;
        let mut listed: Vec<BTreeSet<u32>> = shares
            .values()
            .map(|partitions| partitions.iter().copied().collect())
            .collect();
        listed.sort();
        assert_eq!(
            listed.iter().map(BTreeSet::len).collect::<Vec<_>>(),
            [2, 2],
            "fair: {shares:?}"
        );

        let from_old = drain_old(&old_member, stream, topic, 2).await;
        let from_new = drain_new(&new_member, stream, topic, 2).await;
        let old_partitions: BTreeSet<u32> = from_old.iter().map(|(p, _)| *p).collect();
        let new_partitions: BTreeSet<u32> = from_new.iter().map(|(p, _)| *p).collect();
        let mut drained = vec![old_partitions, new_partitions];
        drained.sort();
        assert_eq!(drained, listed, "each member consumed exactly its share");
        let mut payloads: Vec<String> = from_old
            .into_iter()
            .chain(from_new)
            .map(|(_, p)| p)
            .collect();
        payloads.sort();
        let mut expected: Vec<String> = (0..4)
            .flat_map(|p| (0..10).map(move |i| format!("p{p}-{i}")))
            .collect();
        expected.sort();
        assert_eq!(payloads, expected, "every message exactly once");
        check_group_offsets_and_leave(&admin, &new_member, stream, topic).await;
    })
    .await;
}

/// Both generations read the group's commits; when the 0.9 member leaves, the 0.8 member owns
/// every partition.
async fn check_group_offsets_and_leave(
    admin: &iggy::prelude::IggyClient,
    new_member: &iggy_next::prelude::IggyClient,
    stream: u32,
    topic: u32,
) {
    for partition in 0..4 {
        let by_old = admin
            .get_consumer_offset(
                &iggy::prelude::Consumer::group(old::name("g")),
                &old::id(stream),
                &old::id(topic),
                Some(partition),
            )
            .await
            .expect("0.8 get")
            .expect("committed");
        let by_new = new_member
            .get_consumer_offset(
                &iggy_next::prelude::Consumer::group(new::name("g")),
                &new::id(stream),
                &new::id(topic),
                Some(partition),
            )
            .await
            .expect("0.9 get")
            .expect("committed");
        assert_eq!(
            (by_old.stored_offset, by_new.stored_offset),
            (9, 9),
            "partition {partition}"
        );
    }
    new_member
        .leave_consumer_group(&new::id(stream), &new::id(topic), &new::name("g"))
        .await
        .expect("0.9 leave");
    let shares = members(admin, stream, topic).await;
    assert_eq!(
        shares.values().cloned().collect::<Vec<_>>(),
        vec![vec![0, 1, 2, 3]]
    );
}

#[tokio::test]
async fn a_key_lands_on_the_same_partition_from_both_generations() {
    const PARTITIONS: u32 = 5;
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let old_client = old::client(server.addr).await;
        let new_client = new::client(server.addr).await;
        let (stream, topic) =
            old::create_stream_and_topic(&old_client, "keys", "t", PARTITIONS).await;
        let keys = [
            "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
        ];
        for key in keys {
            let mut by_old = old::messages(&format!("{key}.old"), 0..1);
            let old_key = iggy::prelude::Partitioning::messages_key_str(key).unwrap();
            old_client
                .send_messages(&old::id(stream), &old::id(topic), &old_key, &mut by_old)
                .await
                .expect("0.8 send");
            let mut by_new = new::messages(&format!("{key}.new"), 0..1);
            let new_key = iggy_next::prelude::Partitioning::messages_key_str(key).unwrap();
            new_client
                .send_messages(&new::id(stream), &new::id(topic), &new_key, &mut by_new)
                .await
                .expect("0.9 send");
        }
        let mut placed = BTreeMap::new();
        for partition in 0..PARTITIONS {
            for payload in
                old::payload_strings(&old::poll_all(&old_client, stream, topic, partition).await)
            {
                placed.insert(payload, partition);
            }
        }
        for key in keys {
            assert_eq!(
                placed[&format!("{key}.old-0")],
                placed[&format!("{key}.new-0")],
                "key {key}: {placed:?}"
            );
        }
        let used: BTreeSet<u32> = placed.values().copied().collect();
        assert!(
            used.len() > 1,
            "8 keys should not all hash to one partition"
        );
    })
    .await;
}

/// A raw 0.9 connection with a fixed client id, registered as root.
fn registered(server: &TestServer, client: u128) -> VsrConn {
    let mut conn = VsrConn::connect(server.addr, client);
    conn.register("iggy", "iggy");
    conn
}

/// Sends `frame` twice on `conn` and asserts that both answers are the same successful Reply
/// to request `request` of `operation`; returns it.
#[track_caller]
fn answered_twice_alike(conn: &mut VsrConn, frame: &[u8], request: u64, operation: u8) -> Frame {
    let first = conn.exchange(frame);
    assert_eq!(
        (
            first.command(),
            first.status(),
            first.operation(),
            first.request(),
            first.client()
        ),
        (command::REPLY, 0, operation, request, conn.client),
        "the first answer: {first:?}"
    );
    let second = conn.exchange(frame);
    assert_eq!(
        second.command(),
        command::REPLY,
        "the retry is answered: {second:?}"
    );
    assert_eq!(
        second.header_without_op_and_commit(),
        first.header_without_op_and_commit(),
        "the retry's reply header"
    );
    assert_eq!(second.body, first.body, "the retry's reply body");
    first
}

#[tokio::test]
async fn a_retried_create_stream_is_answered_again_and_applied_once() {
    let server = TestServer::start(&[]);
    let mut conn = registered(&server, 0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100);
    let frame = conn.next_frame(
        operation::CREATE_STREAM,
        true,
        &vsr::create_stream_body("once"),
    );
    let reply = answered_twice_alike(&mut conn, &frame, 1, operation::CREATE_STREAM);
    let record = reply.result().expect("the stream was created");
    assert_eq!(record[0..4], 0u32.to_le_bytes(), "stream id 0");
    assert_eq!(
        reply.request_checksum(),
        u128::from(xxhash_rust::xxh3::xxh3_64(&frame[256..]))
    );

    // The next request number is a new request, applied even with the same body: it fails as
    // a taken name (in `status` or in the result section: PROTOCOL-0.9.md §6.1, §6.2).
    let same_body = conn.next_frame(
        operation::CREATE_STREAM,
        true,
        &vsr::create_stream_body("once"),
    );
    let refused = conn.exchange(&same_body);
    assert_eq!((refused.command(), refused.request()), (command::REPLY, 2));
    assert_eq!(refused.error(), Some(1012), "StreamNameAlreadyExists");
    let other = conn.next_frame(
        operation::CREATE_STREAM,
        true,
        &vsr::create_stream_body("twice"),
    );
    let created = conn.exchange(&other);
    assert_eq!(
        created.result().expect("created")[0..4],
        1u32.to_le_bytes(),
        "stream id 1"
    );

    within(TEST_TIMEOUT, async {
        let client = new::client(server.addr).await;
        let names: Vec<String> = client
            .get_streams()
            .await
            .expect("streams")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["once", "twice"], "the retry created nothing");
    })
    .await;
}

#[tokio::test]
async fn a_retried_send_messages_is_answered_again_and_applied_once() {
    let server = TestServer::start(&[]);
    let (stream, topic) = within(TEST_TIMEOUT, async {
        let client = new::client(server.addr).await;
        new::create_stream_and_topic(&client, "retry", "t", 1).await
    })
    .await;
    let mut conn = registered(&server, 0x1234_5678_9ABC_DEF0_0FED_CBA9_8765_4321);
    let batch = [
        RawMessage {
            id: 1,
            origin_timestamp: 1_000,
            payload: b"first",
        },
        RawMessage {
            id: 2,
            origin_timestamp: 1_001,
            payload: b"second",
        },
        RawMessage {
            id: 3,
            origin_timestamp: 1_005,
            payload: b"third",
        },
    ];
    let frame = conn.next_frame(
        operation::SEND_MESSAGES,
        false,
        &vsr::send_messages_body(stream, topic, 0, &batch),
    );
    answered_twice_alike(&mut conn, &frame, 1, operation::SEND_MESSAGES);
    let later = [RawMessage {
        id: 4,
        origin_timestamp: 2_000,
        payload: b"fourth",
    }];
    let next = conn.next_frame(
        operation::SEND_MESSAGES,
        false,
        &vsr::send_messages_body(stream, topic, 0, &later),
    );
    let reply = conn.exchange(&next);
    assert_eq!(
        (reply.command(), reply.status(), reply.request()),
        (command::REPLY, 0, 2),
        "{reply:?}"
    );

    within(TEST_TIMEOUT, check_stored_once(&server, stream, topic)).await;
}

/// The four hand-built messages are stored once each, in order, with their ids and origin
/// timestamps, and the 0.8 generation reads them with valid 0.8 checksums.
async fn check_stored_once(server: &TestServer, stream: u32, topic: u32) {
    let client = new::client(server.addr).await;
    let stored = new::poll_all(&client, stream, topic, 0).await;
    let seen: Vec<(u64, u128, u64, String)> = stored
        .iter()
        .map(|m| {
            let payload = String::from_utf8(m.payload.to_vec()).expect("UTF-8");
            (
                m.header.offset,
                m.header.id,
                m.header.origin_timestamp,
                payload,
            )
        })
        .collect();
    let expected: Vec<(u64, u128, u64, String)> = [
        (0, 1, 1_000, "first"),
        (1, 2, 1_001, "second"),
        (2, 3, 1_005, "third"),
        (3, 4, 2_000, "fourth"),
    ]
    .iter()
    .map(|(offset, id, origin, payload)| (*offset, *id, *origin, payload.to_string()))
    .collect();
    assert_eq!(seen, expected, "the retried batch is stored once");
    let old_client = old::client(server.addr).await;
    for message in old::poll_all(&old_client, stream, topic, 0).await {
        assert_eq!(message.header.checksum, checksum(&message.to_bytes()));
    }
}
