//! Compatibility: every command the official Iggy Rust SDK (`iggy` 0.10.0) sends over TCP,
//! against a real galgo-server with 2 shards. Expected behaviour is Iggy 0.8.0's as recorded in
//! PROTOCOL.md, except where §11 says galgo deliberately does better (purge).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::Bytes;
use galgo_protocol::message::checksum;
use galgo_storage::offset_index::INDEX_ENTRY_BYTES;
use iggy::prelude::*;
use support::TestServer;
use support::raw::{self, RawConn};
use support::sdk::{self, TEST_TIMEOUT, id, name, within};

fn error_code<T: std::fmt::Debug>(result: Result<T, IggyError>) -> u32 {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(error) => error.as_code(),
    }
}

#[tokio::test]
async fn ping_login_logout_and_credentials() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client_without_login(server.addr).await;
        client.ping().await.expect("ping needs no login");

        let wrong = client
            .login_user(DEFAULT_ROOT_USERNAME, "not-the-password")
            .await;
        assert_eq!(error_code(wrong), IggyError::InvalidCredentials.as_code());
        let unknown = client.login_user("nobody", "iggy").await;
        assert_eq!(error_code(unknown), IggyError::InvalidCredentials.as_code());

        let identity = client.login_user("iggy", "iggy").await.expect("root login");
        assert_eq!(identity.user_id, 0, "root is user 0");
        let me = client.get_me().await.expect("get_me after login");
        assert_eq!(me.user_id, Some(0));
        client.logout_user().await.expect("logout");
        // Logging in again on the same connection works.
        client
            .login_user("iggy", "iggy")
            .await
            .expect("login again");
        client.ping().await.expect("ping after re-login");

        // The SDK's own connection-string path with its defaults (reconnection on).
        let default_client = sdk::client_from_connection_string(server.addr).await;
        default_client.ping().await.expect("ping");
        assert_eq!(
            default_client.get_me().await.expect("get_me").user_id,
            Some(0)
        );
    })
    .await;

    // What the server answers once a session has logged out: 40, and the connection lives on.
    let mut conn = RawConn::connect_logged_in(server.addr);
    conn.request(39, &[]).ok();
    conn.request(raw::code::GET_STREAMS, &[])
        .assert_error(raw::error::UNAUTHENTICATED);
    conn.ping();
}

#[tokio::test]
async fn get_me_get_client_and_get_clients() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let other = sdk::client(server.addr).await;
        let me = client.get_me().await.expect("get_me");
        assert_eq!(me.transport, "TCP");
        assert_eq!(me.user_id, Some(0));
        assert_eq!(me.consumer_groups_count, 0);
        assert!(me.consumer_groups.is_empty());
        let address: SocketAddr = me.address.parse().expect("address is a socket address");
        assert_eq!(address.ip(), server.addr.ip());
        assert_ne!(
            address.port(),
            server.addr.port(),
            "the client's port, not the server's"
        );

        let other_me = other.get_me().await.expect("get_me");
        assert_ne!(other_me.client_id, me.client_id);
        assert_ne!(other_me.address, me.address);

        let clients = client.get_clients().await.expect("get_clients");
        for wanted in [&me, &other_me] {
            let found = clients
                .iter()
                .find(|c| c.client_id == wanted.client_id)
                .unwrap_or_else(|| panic!("client {} missing from {clients:?}", wanted.client_id));
            assert_eq!(found.address, wanted.address);
            assert_eq!(found.user_id, Some(0));
            assert_eq!(found.transport, "TCP");
        }

        let fetched = client
            .get_client(other_me.client_id)
            .await
            .expect("get_client")
            .expect("the other client exists");
        assert_eq!(fetched.address, other_me.address);
        assert_eq!(fetched.user_id, Some(0));

        let unknown = (1..u32::MAX)
            .find(|candidate| !clients.iter().any(|c| c.client_id == *candidate))
            .expect("a free id");
        assert!(
            client
                .get_client(unknown)
                .await
                .expect("get_client")
                .is_none()
        );
        assert_eq!(
            error_code(client.get_client(0).await),
            IggyError::InvalidClientId.as_code(),
            "client id 0 is invalid"
        );
        // Iggy's client ids are XXH32 (seed 0) of the peer address text (PROTOCOL.md §8.2).
        let hashed =
            galgo_protocol::consumer_key(&galgo_protocol::Identifier::Name(me.address.clone()));
        assert_eq!(me.client_id, hashed);
    })
    .await;

    // The address the server reports is exactly the peer address of the connection.
    let mut conn = RawConn::connect_logged_in(server.addr);
    let details = conn.request(raw::code::GET_ME, &[]).ok();
    let user_id = u32::from_le_bytes(details[4..8].try_into().unwrap());
    let transport = details[8];
    let address_len = u32::from_le_bytes(details[9..13].try_into().unwrap()) as usize;
    let address = std::str::from_utf8(&details[13..13 + address_len]).expect("UTF-8 address");
    assert_eq!((user_id, transport), (0, 1));
    assert_eq!(address, conn.local_addr().to_string());
}

#[tokio::test]
async fn stats_and_cluster_metadata() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = fill_two_streams_for_stats(&client).await;
        let now = check_server_stats(&client).await;
        check_stream_and_topic_stats(&client, stream, topic, now).await;
        check_cluster_metadata(&client, server.addr).await;
    })
    .await;
}

/// Creates two streams with three topics (1, 2 and 3 partitions) and sends four messages to
/// the first topic and six to partition 1 of the second. Returns the second stream and topic,
/// whose numbers the later steps check.
async fn fill_two_streams_for_stats(client: &IggyClient) -> (u32, u32) {
    let (s0, t0) = sdk::create_stream_and_topic(client, "stats-a", "t1", 1).await;
    let (s1, t1) = sdk::create_stream_and_topic(client, "stats-b", "t2", 2).await;
    client
        .create_topic(
            &id(s1),
            "t3",
            3,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .expect("third topic");
    client
        .send_messages(
            &id(s0),
            &id(t0),
            &Partitioning::partition_id(0),
            &mut sdk::messages("m", 0..4),
        )
        .await
        .expect("send");
    client
        .send_messages(
            &id(s1),
            &id(t1),
            &Partitioning::partition_id(1),
            &mut sdk::messages("m", 0..6),
        )
        .await
        .expect("send");
    (s1, t1)
}

/// Checks the server-wide counts and returns the time they were checked at (µs since the
/// epoch), so that the next step checks creation times against the same instant.
async fn check_server_stats(client: &IggyClient) -> u64 {
    let stats = client.get_stats().await.expect("get_stats");
    assert_eq!(stats.streams_count, 2);
    assert_eq!(stats.topics_count, 3);
    assert_eq!(stats.partitions_count, 6);
    assert_eq!(stats.messages_count, 10);
    assert_eq!(stats.clients_count, 1, "this test's only connection");
    assert_eq!(stats.consumer_groups_count, 0);
    assert_eq!(stats.segments_count, 6, "one (open) segment per partition");
    // Sizes count whole messages: 64-byte header + payload ("m-N" is 3 bytes).
    assert_eq!(stats.messages_size_bytes.as_bytes_u64(), 10 * (64 + 3));
    let now = IggyTimestamp::now().as_micros();
    assert!(
        stats.start_time.as_micros() <= now && stats.start_time.as_micros() > now - 600_000_000
    );
    now
}

async fn check_stream_and_topic_stats(client: &IggyClient, stream: u32, topic: u32, now: u64) {
    let details = client
        .get_stream(&id(stream))
        .await
        .expect("get_stream")
        .expect("exists");
    assert_eq!(details.messages_count, 6);
    assert_eq!(details.topics_count, 2);
    assert_eq!(details.size.as_bytes_u64(), 6 * (64 + 3));
    let created = details.created_at.as_micros();
    assert!(
        created <= now && created > now - 600_000_000,
        "created_at is µs since the epoch"
    );
    let topic_details = client
        .get_topic(&id(stream), &id(topic))
        .await
        .unwrap()
        .expect("topic");
    assert_eq!(topic_details.size.as_bytes_u64(), 6 * (64 + 3));
    let sizes: Vec<(u64, u64, u64)> = topic_details
        .partitions
        .iter()
        .map(|p| (p.messages_count, p.size.as_bytes_u64(), p.current_offset))
        .collect();
    assert_eq!(sizes, vec![(0, 0, 0), (6, 6 * 67, 5)]);
}

async fn check_cluster_metadata(client: &IggyClient, addr: SocketAddr) {
    let metadata = client
        .get_cluster_metadata()
        .await
        .expect("get_cluster_metadata");
    assert_eq!(metadata.nodes.len(), 1, "one node: {metadata:?}");
    let node = &metadata.nodes[0];
    assert_eq!(node.ip, addr.ip().to_string());
    assert_eq!(node.endpoints.tcp, addr.port());
    assert_eq!(node.role, ClusterNodeRole::Leader);
    assert_eq!(node.status, ClusterNodeStatus::Healthy);
}

#[tokio::test]
async fn streams_create_get_list_update_delete() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        create_and_look_up_streams(&client).await;
        rename_streams(&client).await;
        delete_streams(&client).await;
    })
    .await;
}

/// Creates `alpha` (id 0) and `beta` (id 1) and finds them by id, by name and in the list.
async fn create_and_look_up_streams(client: &IggyClient) {
    assert!(client.get_streams().await.expect("get_streams").is_empty());

    let alpha = client.create_stream("alpha").await.expect("create alpha");
    assert_eq!(
        (alpha.id, alpha.name.as_str(), alpha.topics_count),
        (0, "alpha", 0)
    );
    let beta = client.create_stream("beta").await.expect("create beta");
    assert_eq!(beta.id, 1, "ids are 0-based slab keys");
    assert_eq!(
        error_code(client.create_stream("alpha").await),
        IggyError::StreamNameAlreadyExists(String::new()).as_code()
    );

    let by_id = client
        .get_stream(&id(1))
        .await
        .expect("get")
        .expect("beta by id");
    let by_name = client
        .get_stream(&name("beta"))
        .await
        .expect("get")
        .expect("beta by name");
    assert_eq!((by_id.id, by_id.name.as_str()), (1, "beta"));
    assert_eq!((by_name.id, by_name.name.as_str()), (1, "beta"));
    assert!(client.get_stream(&id(99)).await.expect("get").is_none());
    assert!(
        client
            .get_stream(&name("nope"))
            .await
            .expect("get")
            .is_none()
    );

    let names: Vec<(u32, String)> = client
        .get_streams()
        .await
        .expect("get_streams")
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    assert_eq!(
        names,
        vec![(0, "alpha".to_string()), (1, "beta".to_string())]
    );
}

/// Renames stream 1 by numeric id and by name, ending as `delta`.
async fn rename_streams(client: &IggyClient) {
    client
        .update_stream(&id(1), "gamma")
        .await
        .expect("rename by id");
    assert!(
        client
            .get_stream(&name("beta"))
            .await
            .expect("get")
            .is_none()
    );
    assert_eq!(
        client
            .get_stream(&name("gamma"))
            .await
            .expect("get")
            .expect("gamma")
            .id,
        1
    );
    client
        .update_stream(&name("gamma"), "delta")
        .await
        .expect("rename by name");
    assert_eq!(
        client
            .get_stream(&id(1))
            .await
            .expect("get")
            .expect("delta")
            .name,
        "delta"
    );
    assert_eq!(
        error_code(client.update_stream(&id(1), "alpha").await),
        IggyError::StreamNameAlreadyExists(String::new()).as_code()
    );
    assert_eq!(
        error_code(client.update_stream(&id(42), "whatever").await),
        IggyError::StreamIdNotFound(id(42)).as_code()
    );
}

/// Deletes `delta` by name and `alpha` by id; a deleted stream is gone for both lookups.
async fn delete_streams(client: &IggyClient) {
    client
        .delete_stream(&name("delta"))
        .await
        .expect("delete by name");
    assert!(client.get_stream(&id(1)).await.expect("get").is_none());
    assert_eq!(
        error_code(client.delete_stream(&name("delta")).await),
        IggyError::StreamIdNotFound(id(1)).as_code()
    );
    client.delete_stream(&id(0)).await.expect("delete by id");
    assert!(client.get_streams().await.expect("get_streams").is_empty());
    assert_eq!(
        error_code(client.delete_stream(&id(0)).await),
        IggyError::StreamIdNotFound(id(0)).as_code()
    );
    // A name freed by a delete can be used again.
    client
        .create_stream("alpha")
        .await
        .expect("re-create alpha");
}

#[tokio::test]
async fn purge_stream_removes_flushed_and_journal_messages() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "purge-s", "t", 2).await;
        fill_flushed_and_journal(&client, stream, topic).await;

        client
            .purge_stream(&name("purge-s"))
            .await
            .expect("purge by name");
        let details = client
            .get_stream(&id(stream))
            .await
            .unwrap()
            .expect("stream survives purge");
        assert_eq!(details.messages_count, 0);
        assert_eq!(details.topics_count, 1, "purge keeps topics");
        for partition in 0..2 {
            check_purged_partition_restarts(&client, stream, topic, partition).await;
        }
        assert_eq!(
            error_code(client.purge_stream(&id(77)).await),
            IggyError::StreamIdNotFound(id(77)).as_code()
        );
    })
    .await;
}

/// Puts five flushed messages and then three journal-only ones on each of two partitions, so
/// that a purge has to remove both kinds.
async fn fill_flushed_and_journal(client: &IggyClient, stream: u32, topic: u32) {
    for partition in 0..2 {
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(partition),
                &mut sdk::messages("flushed", 0..5),
            )
            .await
            .expect("send");
        client
            .flush_unsaved_buffer(&id(stream), &id(topic), partition, true)
            .await
            .expect("flush");
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(partition),
                &mut sdk::messages("journal", 0..3),
            )
            .await
            .expect("send");
    }
    assert_eq!(
        client
            .get_stream(&id(stream))
            .await
            .unwrap()
            .unwrap()
            .messages_count,
        16
    );
}

/// A purged partition reads empty, and the next messages sent to it start again at offset 0.
async fn check_purged_partition_restarts(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partition: u32,
) {
    let polled = sdk::poll_offset(client, stream, topic, partition, 0, 100).await;
    assert!(
        polled.messages.is_empty(),
        "partition {partition} after purge: {:?}",
        sdk::payload_strings(&polled.messages)
    );
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(partition),
            &mut sdk::messages("after", 0..2),
        )
        .await
        .expect("send after purge");
    let polled = sdk::poll_offset(client, stream, topic, partition, 0, 100).await;
    assert_eq!(
        sdk::offsets(&polled.messages),
        vec![0, 1],
        "offsets restart at 0"
    );
    assert_eq!(
        sdk::payload_strings(&polled.messages),
        vec!["after-0", "after-1"]
    );
}

#[tokio::test]
async fn topics_create_get_list_update_delete() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let stream = client
            .create_stream("topics")
            .await
            .expect("create stream")
            .id;
        create_orders_and_payments(&client, stream).await;
        refuse_duplicate_and_orphan_topics(&client, stream).await;
        look_up_topics(&client, stream).await;
        update_orders_topic(&client, stream).await;
        grow_and_shrink_partitions(&client, stream).await;
        delete_topics(&client, stream).await;
    })
    .await;
}

/// Creates `orders` (3 partitions, by stream name) and `payments` (no partitions, by id).
async fn create_orders_and_payments(client: &IggyClient, stream: u32) {
    let created = client
        .create_topic(
            &name("topics"),
            "orders",
            3,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .expect("create topic by stream name");
    assert_eq!(
        (created.id, created.name.as_str(), created.partitions_count),
        (0, "orders", 3)
    );
    assert_eq!(
        created.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        created.replication_factor, 1,
        "replication factor 0 reports 1"
    );
    let second = client
        .create_topic(
            &id(stream),
            "payments",
            0,
            CompressionAlgorithm::None,
            Some(1),
            IggyExpiry::NeverExpire,
            MaxTopicSize::Unlimited,
        )
        .await
        .expect("create topic with 0 partitions");
    assert_eq!((second.id, second.partitions_count), (1, 0));
}

/// A taken name and an unknown stream are both refused.
async fn refuse_duplicate_and_orphan_topics(client: &IggyClient, stream: u32) {
    assert_eq!(
        error_code(
            client
                .create_topic(
                    &id(stream),
                    "orders",
                    1,
                    CompressionAlgorithm::None,
                    None,
                    IggyExpiry::ServerDefault,
                    MaxTopicSize::ServerDefault
                )
                .await
        ),
        IggyError::TopicNameAlreadyExists(String::new(), id(0)).as_code()
    );
    assert_eq!(
        error_code(
            client
                .create_topic(
                    &id(55),
                    "x",
                    1,
                    CompressionAlgorithm::None,
                    None,
                    IggyExpiry::ServerDefault,
                    MaxTopicSize::ServerDefault
                )
                .await
        ),
        IggyError::StreamIdNotFound(id(55)).as_code()
    );
}

/// Finds the topics by id and by name, singly and as the stream's list.
async fn look_up_topics(client: &IggyClient, stream: u32) {
    let by_name = client
        .get_topic(&id(stream), &name("orders"))
        .await
        .unwrap()
        .expect("by name");
    let by_id = client
        .get_topic(&name("topics"), &id(0))
        .await
        .unwrap()
        .expect("by id");
    assert_eq!((by_name.id, by_id.name.as_str()), (0, "orders"));
    assert_eq!(by_id.partitions.len(), 3);
    assert!(
        by_id
            .partitions
            .iter()
            .all(|p| p.messages_count == 0 && p.current_offset == 0)
    );
    assert!(
        client
            .get_topic(&id(stream), &id(9))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_topic(&id(stream), &name("none"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(client.get_topic(&id(9), &id(0)).await.unwrap().is_none());
    let topics: Vec<(u32, String)> = client
        .get_topics(&id(stream))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    assert_eq!(
        topics,
        vec![(0, "orders".to_string()), (1, "payments".to_string())]
    );
    assert!(client.get_topics(&id(9)).await.unwrap().is_empty());
    assert_eq!(
        client
            .get_stream(&id(stream))
            .await
            .unwrap()
            .unwrap()
            .topics
            .len(),
        2
    );
}

/// Updates `orders` to `orders-v2`: name, expiry, max size, replication factor.
async fn update_orders_topic(client: &IggyClient, stream: u32) {
    let expiry = IggyExpiry::ExpireDuration(IggyDuration::from(3_600_000_000));
    let max_size = MaxTopicSize::Custom(IggyByteSize::from(10 * 1024 * 1024 * 1024u64));
    client
        .update_topic(
            &id(stream),
            &name("orders"),
            "orders-v2",
            CompressionAlgorithm::None,
            Some(1),
            expiry,
            max_size,
        )
        .await
        .expect("update topic");
    let updated = client
        .get_topic(&id(stream), &id(0))
        .await
        .unwrap()
        .expect("updated");
    assert_eq!(updated.name, "orders-v2");
    assert_eq!(updated.message_expiry, expiry);
    assert_eq!(updated.max_topic_size, max_size);
    assert_eq!(updated.partitions_count, 3);
    assert!(
        client
            .get_topic(&id(stream), &name("orders"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        error_code(
            client
                .update_topic(
                    &id(stream),
                    &id(0),
                    "payments",
                    CompressionAlgorithm::None,
                    None,
                    IggyExpiry::ServerDefault,
                    MaxTopicSize::ServerDefault
                )
                .await
        ),
        IggyError::TopicNameAlreadyExists(String::new(), id(0)).as_code()
    );
}

/// Partitions are appended at the end and removed from the end, with their messages.
async fn grow_and_shrink_partitions(client: &IggyClient, stream: u32) {
    client
        .create_partitions(&id(stream), &id(0), 2)
        .await
        .expect("create partitions");
    let grown = client
        .get_topic(&id(stream), &id(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        grown.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    client
        .send_messages(
            &id(stream),
            &id(0),
            &Partitioning::partition_id(4),
            &mut sdk::messages("p4", 0..2),
        )
        .await
        .expect("send to a new partition");
    client
        .delete_partitions(&id(stream), &id(0), 2)
        .await
        .expect("delete partitions");
    let shrunk = client
        .get_topic(&id(stream), &id(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shrunk.partitions.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(
        shrunk.messages_count, 0,
        "deleted partitions take their messages"
    );
    assert_eq!(
        error_code(client.delete_partitions(&id(stream), &id(0), 4).await),
        IggyError::InvalidPartitionsCount.as_code()
    );
    let error = error_code(
        client
            .send_messages(
                &id(stream),
                &id(0),
                &Partitioning::partition_id(4),
                &mut sdk::messages("gone", 0..1),
            )
            .await,
    );
    assert_eq!(
        error, 3007,
        "send to a deleted partition gives PartitionNotFound"
    );
}

/// Deletes `orders-v2` by name and `payments` by id.
async fn delete_topics(client: &IggyClient, stream: u32) {
    client
        .delete_topic(&id(stream), &name("orders-v2"))
        .await
        .expect("delete by name");
    client
        .delete_topic(&id(stream), &id(1))
        .await
        .expect("delete by id");
    assert!(client.get_topics(&id(stream)).await.unwrap().is_empty());
    assert_eq!(
        error_code(client.delete_topic(&id(stream), &id(1)).await),
        IggyError::TopicIdNotFound(id(1), id(stream)).as_code()
    );
}

#[tokio::test]
async fn purge_topic_removes_journal_too_and_offsets_restart() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "s", "purge-t", 1).await;
        send_to_partition_0(&client, stream, topic, "on-disk", 10).await;
        client
            .flush_unsaved_buffer(&id(stream), &id(topic), 0, false)
            .await
            .expect("flush");
        send_to_partition_0(&client, stream, topic, "in-journal", 5).await;
        let consumer = Consumer::new(id(3));
        client
            .store_consumer_offset(&consumer, &id(stream), &id(topic), Some(0), 12)
            .await
            .expect("store offset");

        client
            .purge_topic(&id(stream), &name("purge-t"))
            .await
            .expect("purge topic");
        check_purged_topic_is_empty(&client, stream, topic).await;

        send_to_partition_0(&client, stream, topic, "fresh", 3).await;
        let polled = sdk::poll_offset(&client, stream, topic, 0, 0, 100).await;
        assert_eq!(sdk::offsets(&polled.messages), vec![0, 1, 2]);
        assert_eq!(
            sdk::payload_strings(&polled.messages),
            vec!["fresh-0", "fresh-1", "fresh-2"]
        );
        assert_eq!(polled.current_offset, 2);
    })
    .await;
}

/// Sends `prefix-0..prefix-{n-1}` to partition 0 in one batch.
async fn send_to_partition_0(client: &IggyClient, stream: u32, topic: u32, prefix: &str, n: u64) {
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut sdk::messages(prefix, 0..n),
        )
        .await
        .expect("send");
}

/// The purged topic keeps its partition, reports no messages, and no polling strategy finds
/// any, not even at the offset a consumer had stored before the purge.
async fn check_purged_topic_is_empty(client: &IggyClient, stream: u32, topic: u32) {
    let details = client
        .get_topic(&id(stream), &id(topic))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(details.messages_count, 0);
    assert_eq!(details.partitions[0].current_offset, 0);
    assert_eq!(details.partitions_count, 1, "purge keeps partitions");
    for strategy in [
        PollingStrategy::offset(0),
        PollingStrategy::first(),
        PollingStrategy::last(),
        PollingStrategy::offset(12),
    ] {
        let polled = client
            .poll_messages(
                &id(stream),
                &id(topic),
                Some(0),
                &Consumer::new(id(1)),
                &strategy,
                100,
                false,
            )
            .await
            .expect("poll after purge");
        assert!(
            polled.messages.is_empty(),
            "{strategy:?} after purge returned {:?}",
            sdk::payload_strings(&polled.messages)
        );
    }
}

/// The partition each payload landed on, found by reading every partition back.
async fn partition_of_payloads(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partitions: u32,
) -> BTreeMap<String, u32> {
    let mut map = BTreeMap::new();
    for partition in 0..partitions {
        for payload in sdk::payload_strings(&sdk::poll_all(client, stream, topic, partition).await)
        {
            assert!(
                map.insert(payload.clone(), partition).is_none(),
                "{payload} stored twice"
            );
        }
    }
    map
}

#[tokio::test]
async fn send_balanced_partition_id_and_messages_key() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        const PARTITIONS: u32 = 3;
        let (stream, topic) =
            sdk::create_stream_and_topic(&client, "routing", "t", PARTITIONS).await;
        check_balanced_round_robin(&client, stream, topic, PARTITIONS).await;
        check_explicit_partition_id(&client, stream, topic, PARTITIONS).await;
        check_messages_key_is_sticky(&client, stream, topic, PARTITIONS).await;
    })
    .await;
}

/// Balanced: one batch per send, dealt round-robin.
async fn check_balanced_round_robin(client: &IggyClient, stream: u32, topic: u32, partitions: u32) {
    for batch in 0..6u64 {
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::balanced(),
                &mut sdk::messages(&format!("balanced{batch}"), 0..2),
            )
            .await
            .expect("send balanced");
    }
    let placed = partition_of_payloads(client, stream, topic, partitions).await;
    let batch_partition: Vec<u32> = (0..6)
        .map(|batch| placed[&format!("balanced{batch}-0")])
        .collect();
    for batch in 0..6 {
        assert_eq!(
            placed[&format!("balanced{batch}-1")],
            batch_partition[batch],
            "a batch stays on one partition"
        );
    }
    let first_three: BTreeSet<u32> = batch_partition[0..3].iter().copied().collect();
    assert_eq!(
        first_three.len(),
        3,
        "round-robin covers every partition: {batch_partition:?}"
    );
    assert_eq!(
        batch_partition[0..3],
        batch_partition[3..6],
        "round-robin cycles: {batch_partition:?}"
    );
    for (i, pair) in batch_partition.windows(2).enumerate() {
        assert_eq!(
            pair[1],
            (pair[0] + 1) % partitions,
            "batch {} follows batch {i}: {batch_partition:?}",
            i + 1
        );
    }
}

/// PartitionId: exactly where asked, and a partition past the last one is refused.
async fn check_explicit_partition_id(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partitions: u32,
) {
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(2),
            &mut sdk::messages("explicit", 0..3),
        )
        .await
        .expect("send to partition 2");
    let placed = partition_of_payloads(client, stream, topic, partitions).await;
    for i in 0..3 {
        assert_eq!(placed[&format!("explicit-{i}")], 2);
    }
    assert_eq!(
        error_code(
            client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(partitions),
                    &mut sdk::messages("x", 0..1)
                )
                .await
        ),
        3007,
        "PartitionNotFound"
    );
}

/// MessagesKey: the same key always lands on the same partition.
async fn check_messages_key_is_sticky(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partitions: u32,
) {
    let keys = ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"];
    for round in 0..3 {
        for key in keys {
            client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::messages_key_str(key).unwrap(),
                    &mut sdk::messages(&format!("{key}.r{round}"), 0..1),
                )
                .await
                .expect("send keyed");
        }
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::messages_key_u64(42),
                &mut sdk::messages(&format!("u64.r{round}"), 0..1),
            )
            .await
            .expect("send keyed by u64");
    }
    let placed = partition_of_payloads(client, stream, topic, partitions).await;
    let mut key_partitions = BTreeSet::new();
    for key in keys
        .iter()
        .map(|k| k.to_string())
        .chain(["u64".to_string()])
    {
        let landed: BTreeSet<u32> = (0..3)
            .map(|round| placed[&format!("{key}.r{round}-0")])
            .collect();
        assert_eq!(landed.len(), 1, "key {key} landed on {landed:?}");
        key_partitions.extend(landed);
    }
    assert!(
        key_partitions.len() > 1,
        "7 keys should not all hash to one partition"
    );
}

fn header_map() -> BTreeMap<HeaderKey, HeaderValue> {
    let entries: Vec<(&str, HeaderValue)> = vec![
        (
            "string",
            HeaderValue::try_from("zażółć gęślą jaźń").unwrap(),
        ),
        (
            "raw",
            HeaderValue::try_from(vec![0u8, 1, 2, 254, 255]).unwrap(),
        ),
        ("bool", true.into()),
        ("i8", (-8i8).into()),
        ("i16", (-1600i16).into()),
        ("i32", (-320_000i32).into()),
        ("i64", (-64_000_000_000i64).into()),
        ("i128", (-(1i128 << 100)).into()),
        ("u8", 8u8.into()),
        ("u16", 1600u16.into()),
        ("u32", 3_200_000u32.into()),
        ("u64", u64::MAX.into()),
        ("u128", u128::MAX.into()),
        ("f32", 3.5f32.into()),
        ("f64", (-2.25f64).into()),
    ];
    entries
        .into_iter()
        .map(|(key, value)| (HeaderKey::try_from(key).unwrap(), value))
        .collect()
}

#[tokio::test]
async fn payloads_and_user_headers_round_trip_byte_exact() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "bytes", "t", 1).await;

        let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let large: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let sent = byte_exact_messages(&binary, &large);
        send_byte_exact_batches(&client, stream, topic, &sent).await;

        let polled = sdk::poll_offset(&client, stream, topic, 0, 0, 100).await;
        check_byte_exact_round_trip(&polled, &sent, &binary, &large);
        check_paging_matches(&client, stream, topic, &polled.messages).await;
    })
    .await;
}

/// Five messages that cover the payload and header shapes: plain, binary with every header
/// type and a client-chosen id, one megabyte, a single zero byte with headers only, and a
/// maximal id with bytes that are not UTF-8.
fn byte_exact_messages(binary: &[u8], large: &[u8]) -> Vec<IggyMessage> {
    let mut headers_only = header_map();
    headers_only.insert(
        HeaderKey::try_from("k").unwrap(),
        HeaderValue::try_from("v").unwrap(),
    );
    vec![
        IggyMessage::builder()
            .payload(Bytes::from_static(b"plain"))
            .build()
            .unwrap(),
        IggyMessage::builder()
            .id(0xDEAD_BEEF_u128 << 64 | 7)
            .payload(Bytes::from(binary.to_vec()))
            .user_headers(header_map())
            .build()
            .unwrap(),
        IggyMessage::builder()
            .payload(Bytes::from(large.to_vec()))
            .build()
            .unwrap(),
        IggyMessage::builder()
            .payload(Bytes::from_static(&[0]))
            .user_headers(headers_only)
            .build()
            .unwrap(),
        IggyMessage::builder()
            .id(u128::MAX)
            .payload(Bytes::from_static(b"\xff\xfe\x00 tail"))
            .user_headers(header_map())
            .build()
            .unwrap(),
    ]
}

/// Sends copies of `sent` in one batch, then two more messages in a second batch.
async fn send_byte_exact_batches(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    sent: &[IggyMessage],
) {
    // send_messages takes the messages mutably, so it gets copies and the originals stay as
    // they were for the comparison.
    let mut to_send: Vec<IggyMessage> = sent
        .iter()
        .map(|m| IggyMessage::from_bytes(m.to_bytes()).expect("copy"))
        .collect();
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut to_send,
        )
        .await
        .expect("send");
    // A second batch, so offsets continue across batches.
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut sdk::messages("second", 0..2),
        )
        .await
        .expect("send");
}

/// All seven messages come back in order, the first five exactly as sent.
fn check_byte_exact_round_trip(
    polled: &PolledMessages,
    sent: &[IggyMessage],
    binary: &[u8],
    large: &[u8],
) {
    assert_eq!(polled.partition_id, 0);
    assert_eq!(polled.current_offset, 6);
    assert_eq!(sdk::offsets(&polled.messages), (0..7).collect::<Vec<u64>>());
    let batch_timestamp = polled.messages[0].header.timestamp;
    assert!(batch_timestamp > 0);
    for (i, (got, want)) in polled.messages.iter().zip(sent).enumerate() {
        check_message_kept(i, got, want, batch_timestamp);
    }
    assert_eq!(polled.messages[2].payload.len(), 1_000_000);
    assert_eq!(&polled.messages[2].payload[..], large);
    assert_eq!(&polled.messages[1].payload[..], binary);
    let generated: BTreeSet<u128> = [0, 2, 3]
        .iter()
        .map(|&i| polled.messages[i].header.id)
        .collect();
    assert_eq!(generated.len(), 3, "generated ids differ");
    assert_eq!(
        sdk::payload_strings(&polled.messages[5..]),
        vec!["second-0", "second-1"]
    );
    assert!(polled.messages[5].header.timestamp >= batch_timestamp);
}

/// Message `i` as served (`got`) against the message sent (`want`) of a batch stamped with
/// `batch_timestamp`.
fn check_message_kept(i: usize, got: &IggyMessage, want: &IggyMessage, batch_timestamp: u64) {
    assert_eq!(got.payload, want.payload, "payload of message {i}");
    assert_eq!(got.header.payload_length as usize, want.payload.len());
    assert_eq!(
        got.user_headers, want.user_headers,
        "user header bytes of message {i}"
    );
    assert_eq!(
        got.header.user_headers_length,
        want.header.user_headers_length
    );
    assert_eq!(
        got.header.origin_timestamp, want.header.origin_timestamp,
        "origin timestamp kept"
    );
    assert_eq!(
        got.header.timestamp, batch_timestamp,
        "one timestamp per batch"
    );
    assert_eq!(got.header.reserved, 0);
    if want.header.id != 0 {
        assert_eq!(got.header.id, want.header.id, "client-chosen id kept");
    } else {
        assert_ne!(got.header.id, 0, "server generates an id for id 0");
    }
    assert_eq!(
        got.header.checksum,
        checksum(&got.to_bytes()),
        "checksum of message {i}"
    );
    if want.user_headers.is_some() {
        assert_eq!(
            got.user_headers_map().unwrap(),
            want.user_headers_map().unwrap()
        );
    }
}

/// Reading back in pages of two gives the same messages: the big one must not break paging.
async fn check_paging_matches(client: &IggyClient, stream: u32, topic: u32, all: &[IggyMessage]) {
    let mut paged = Vec::new();
    while paged.len() < 7 {
        let page = sdk::poll_offset(client, stream, topic, 0, paged.len() as u64, 2).await;
        assert!(!page.messages.is_empty() && page.messages.len() <= 2);
        paged.extend(page.messages);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn poll_by_offset_timestamp_first_last_next() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "polling", "t", 2).await;
        // Ten one-message batches, so each message has its own timestamp.
        for i in 0..10u64 {
            client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(1),
                    &mut sdk::messages("m", i..i + 1),
                )
                .await
                .expect("send");
        }
        let timestamps = check_offset_first_last_next(&client, stream, topic).await;
        check_poll_by_timestamp(&client, stream, topic, &timestamps).await;
        check_default_partition_and_unknown_ids(&client, stream, topic).await;
        check_next_with_auto_commit(&client, stream, topic).await;
        check_next_without_auto_commit(&client, stream, topic).await;
    })
    .await;
}

/// One poll of partition 1 by a consumer that stores nothing.
async fn poll_partition_1(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    strategy: PollingStrategy,
    count: u32,
) -> PolledMessages {
    client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(1),
            &Consumer::new(id(1)),
            &strategy,
            count,
            false,
        )
        .await
        .expect("poll")
}

/// Offset, First, Last and Next over the ten messages on partition 1; returns their
/// timestamps for the Timestamp step.
async fn check_offset_first_last_next(client: &IggyClient, stream: u32, topic: u32) -> Vec<u64> {
    let poll = |strategy, count| poll_partition_1(client, stream, topic, strategy, count);
    let all = poll(PollingStrategy::offset(0), 100).await;
    assert_eq!(sdk::offsets(&all.messages), (0..10).collect::<Vec<u64>>());
    assert_eq!(
        (all.partition_id, all.current_offset, all.count),
        (1, 9, 10)
    );
    let timestamps: Vec<u64> = all.messages.iter().map(|m| m.header.timestamp).collect();
    assert!(
        timestamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps never go back: {timestamps:?}"
    );

    assert_eq!(
        sdk::offsets(&poll(PollingStrategy::offset(3), 4).await.messages),
        vec![3, 4, 5, 6]
    );
    assert_eq!(
        sdk::offsets(&poll(PollingStrategy::offset(8), 100).await.messages),
        vec![8, 9]
    );
    let past_end = poll(PollingStrategy::offset(10), 5).await;
    assert!(past_end.messages.is_empty());
    assert_eq!(
        (
            past_end.partition_id,
            past_end.current_offset,
            past_end.count
        ),
        (1, 9, 0)
    );
    assert_eq!(
        sdk::offsets(&poll(PollingStrategy::first(), 3).await.messages),
        vec![0, 1, 2]
    );
    assert_eq!(
        sdk::offsets(&poll(PollingStrategy::last(), 3).await.messages),
        vec![7, 8, 9]
    );
    assert_eq!(
        sdk::offsets(&poll(PollingStrategy::last(), 50).await.messages),
        (0..10).collect::<Vec<u64>>()
    );
    assert_eq!(
        sdk::offsets(&poll(PollingStrategy::next(), 2).await.messages),
        vec![0, 1],
        "Next with nothing stored = First"
    );
    timestamps
}

/// Timestamp(t) starts at the first message stamped at or after `t`.
async fn check_poll_by_timestamp(client: &IggyClient, stream: u32, topic: u32, timestamps: &[u64]) {
    for probe in [0usize, 4, 9] {
        let t = timestamps[probe];
        let expected: Vec<u64> = (0..10u64)
            .filter(|&o| timestamps[o as usize] >= t)
            .take(3)
            .collect();
        let strategy = PollingStrategy::timestamp(IggyTimestamp::from(t));
        let got = poll_partition_1(client, stream, topic, strategy, 3).await;
        assert_eq!(sdk::offsets(&got.messages), expected, "Timestamp({t})");
    }
    let future = poll_partition_1(
        client,
        stream,
        topic,
        PollingStrategy::timestamp(IggyTimestamp::from(timestamps[9] + 1)),
        3,
    )
    .await;
    assert!(
        future.messages.is_empty(),
        "nothing is newer than the last message"
    );
}

/// The error code of polling First from stream `s`, topic `t`, partition `p`.
async fn first_poll_error(client: &IggyClient, s: u32, t: u32, p: u32) -> u32 {
    error_code(
        client
            .poll_messages(
                &id(s),
                &id(t),
                Some(p),
                &Consumer::new(id(1)),
                &PollingStrategy::first(),
                10,
                false,
            )
            .await,
    )
}

/// Without a partition, a single consumer polls partition 0; unknown ids are errors; the
/// other partition is empty, and polling it says so.
async fn check_default_partition_and_unknown_ids(client: &IggyClient, stream: u32, topic: u32) {
    let no_partition = client
        .poll_messages(
            &id(stream),
            &id(topic),
            None,
            &Consumer::new(id(1)),
            &PollingStrategy::first(),
            10,
            false,
        )
        .await
        .unwrap();
    assert_eq!((no_partition.partition_id, no_partition.count), (0, 0));
    assert_eq!(
        first_poll_error(client, stream, topic, 2).await,
        3007,
        "PartitionNotFound"
    );
    assert_eq!(
        first_poll_error(client, stream, 9, 0).await,
        2010,
        "TopicIdNotFound"
    );
    assert_eq!(
        first_poll_error(client, 9, topic, 0).await,
        1009,
        "StreamIdNotFound"
    );

    let empty = client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(0),
            &Consumer::new(id(1)),
            &PollingStrategy::first(),
            10,
            false,
        )
        .await
        .expect("poll empty partition");
    assert!(empty.messages.is_empty());
    assert_eq!((empty.partition_id, empty.current_offset), (0, 0));
}

/// auto_commit: each Next continues where the last one stopped.
async fn check_next_with_auto_commit(client: &IggyClient, stream: u32, topic: u32) {
    let consumer = Consumer::new(name("auto-reader"));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let page = client
            .poll_messages(
                &id(stream),
                &id(topic),
                Some(1),
                &consumer,
                &PollingStrategy::next(),
                3,
                true,
            )
            .await
            .expect("poll next");
        seen.extend(sdk::offsets(&page.messages));
    }
    assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    let stored = client
        .get_consumer_offset(&consumer, &id(stream), &id(topic), Some(1))
        .await
        .unwrap()
        .expect("auto-commit stored an offset");
    assert_eq!(
        (
            stored.partition_id,
            stored.current_offset,
            stored.stored_offset
        ),
        (1, 9, 9)
    );
    let after = client
        .poll_messages(
            &id(stream),
            &id(topic),
            Some(1),
            &consumer,
            &PollingStrategy::next(),
            3,
            true,
        )
        .await
        .unwrap();
    assert!(after.messages.is_empty());
}

/// Without auto-commit, Next does not move.
async fn check_next_without_auto_commit(client: &IggyClient, stream: u32, topic: u32) {
    let other = Consumer::new(id(500));
    for _ in 0..2 {
        let page = client
            .poll_messages(
                &id(stream),
                &id(topic),
                Some(1),
                &other,
                &PollingStrategy::next(),
                3,
                false,
            )
            .await
            .unwrap();
        assert_eq!(sdk::offsets(&page.messages), vec![0, 1, 2]);
    }
    assert!(
        client
            .get_consumer_offset(&other, &id(stream), &id(topic), Some(1))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn flush_unsaved_buffer_writes_the_segment() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "flush", "t", 2).await;
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(1),
                &mut sdk::messages("m", 0..5),
            )
            .await
            .unwrap();
        client
            .flush_unsaved_buffer(&id(stream), &id(topic), 1, true)
            .await
            .expect("flush with fsync");
        client
            .flush_unsaved_buffer(&name("flush"), &name("t"), 0, false)
            .await
            .expect("flush of an empty partition");
        let dir = server.partition_dir(stream, topic, 1);
        let log =
            std::fs::read(dir.join(format!("{:020}.log", 0))).expect("segment log after flush");
        let index =
            std::fs::read(dir.join(format!("{:020}.index", 0))).expect("segment index after flush");
        let polled = sdk::poll_offset(&client, stream, topic, 1, 0, 10).await;
        let wire: Vec<u8> = polled
            .messages
            .iter()
            .flat_map(|m| m.to_bytes().to_vec())
            .collect();
        // While the segment is active, a log written with O_DIRECT (storage.direct_io) ends
        // with zeros up to the next 4096-byte boundary; sealing or closing cuts them.
        let (messages, padding) = log.split_at(wire.len().min(log.len()));
        assert_eq!(
            messages, wire,
            "the .log holds the messages exactly as served"
        );
        assert!(
            padding.is_empty() || (log.len().is_multiple_of(4096) && padding.len() < 4096),
            "only O_DIRECT padding follows them"
        );
        assert!(padding.iter().all(|&byte| byte == 0), "padding is zeros");
        assert_eq!(
            index.len(),
            5 * INDEX_ENTRY_BYTES,
            "one index entry per message"
        );
        assert_eq!(
            error_code(
                client
                    .flush_unsaved_buffer(&id(stream), &id(topic), 7, false)
                    .await
            ),
            3007,
            "PartitionNotFound"
        );
    })
    .await;
}

#[tokio::test]
async fn consumer_offsets_store_get_delete() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "offsets", "t", 2).await;
        let numeric = Consumer::new(id(7));
        let named = Consumer::new(name("reader"));
        let (s, t) = (id(stream), id(topic));

        assert!(
            client
                .get_consumer_offset(&numeric, &s, &t, Some(0))
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            error_code(
                client
                    .store_consumer_offset(&numeric, &s, &t, Some(0), 0)
                    .await
            ),
            IggyError::InvalidOffset(0).as_code(),
            "storing on a partition that never had a message"
        );
        client
            .send_messages(
                &s,
                &t,
                &Partitioning::partition_id(0),
                &mut sdk::messages("m", 0..10),
            )
            .await
            .unwrap();

        store_and_get_offsets(&client, &numeric, &named, &s, &t).await;
        // Next continues after the stored offset.
        let next = client
            .poll_messages(&s, &t, Some(0), &named, &PollingStrategy::next(), 3, false)
            .await
            .unwrap();
        assert_eq!(sdk::offsets(&next.messages), vec![3, 4, 5]);
        overwrite_offset(&client, &numeric, &s, &t).await;
        delete_offset(&client, &numeric, &named, &s, &t).await;
    })
    .await;
}

/// Stores offset 5 for the numeric consumer and 2 for the named one (through the stream's
/// and topic's names), and reads them back per partition.
async fn store_and_get_offsets(
    client: &IggyClient,
    numeric: &Consumer,
    named: &Consumer,
    s: &Identifier,
    t: &Identifier,
) {
    client
        .store_consumer_offset(numeric, s, t, Some(0), 5)
        .await
        .expect("store numeric");
    client
        .store_consumer_offset(named, &name("offsets"), &name("t"), Some(0), 2)
        .await
        .expect("store named");
    let numeric_offset = client
        .get_consumer_offset(numeric, s, t, Some(0))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        (
            numeric_offset.partition_id,
            numeric_offset.current_offset,
            numeric_offset.stored_offset
        ),
        (0, 9, 5)
    );
    let named_offset = client
        .get_consumer_offset(named, s, t, Some(0))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(named_offset.stored_offset, 2);
    // No partition given means partition 0 for a single consumer.
    assert_eq!(
        client
            .get_consumer_offset(named, s, t, None)
            .await
            .unwrap()
            .expect("partition 0")
            .stored_offset,
        2
    );
    assert!(
        client
            .get_consumer_offset(named, s, t, Some(1))
            .await
            .unwrap()
            .is_none(),
        "offsets are per partition"
    );
    assert!(
        client
            .get_consumer_offset(named, &id(9), t, Some(0))
            .await
            .unwrap()
            .is_none(),
        "unknown stream reads as none"
    );
}

/// A stored offset can move forward and back, but not past the partition's last offset.
async fn overwrite_offset(client: &IggyClient, numeric: &Consumer, s: &Identifier, t: &Identifier) {
    client
        .store_consumer_offset(numeric, s, t, Some(0), 9)
        .await
        .expect("overwrite");
    assert_eq!(
        client
            .get_consumer_offset(numeric, s, t, Some(0))
            .await
            .unwrap()
            .unwrap()
            .stored_offset,
        9
    );
    client
        .store_consumer_offset(numeric, s, t, Some(0), 1)
        .await
        .expect("move back");
    assert_eq!(
        client
            .get_consumer_offset(numeric, s, t, Some(0))
            .await
            .unwrap()
            .unwrap()
            .stored_offset,
        1
    );
    assert_eq!(
        error_code(
            client
                .store_consumer_offset(numeric, s, t, Some(0), 10)
                .await
        ),
        IggyError::InvalidOffset(10).as_code(),
        "offset past the partition's last offset"
    );
}

/// Deletes the numeric consumer's offset, once; the named consumer's stays.
async fn delete_offset(
    client: &IggyClient,
    numeric: &Consumer,
    named: &Consumer,
    s: &Identifier,
    t: &Identifier,
) {
    client
        .delete_consumer_offset(numeric, s, t, Some(0))
        .await
        .expect("delete");
    assert!(
        client
            .get_consumer_offset(numeric, s, t, Some(0))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        error_code(client.delete_consumer_offset(numeric, s, t, Some(0)).await),
        IggyError::ConsumerOffsetNotFound(0).as_code()
    );
    assert_eq!(
        client
            .get_consumer_offset(named, s, t, Some(0))
            .await
            .unwrap()
            .unwrap()
            .stored_offset,
        2,
        "deleting one consumer's offset leaves the others"
    );
}

#[tokio::test]
async fn snapshots_are_feature_unavailable() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        // galgo builds no diagnostics archive; PROTOCOL.md §5.1 allows answering 5.
        assert_eq!(
            error_code(
                client
                    .snapshot(
                        SnapshotCompression::Deflated,
                        vec![SystemSnapshotType::Test]
                    )
                    .await
            ),
            IggyError::FeatureUnavailable.as_code(),
            "snapshot"
        );
        // The connection is fine afterwards.
        client.ping().await.expect("ping");
        assert_eq!(client.get_me().await.expect("get_me").user_id, Some(0));
    })
    .await;
}

#[tokio::test]
async fn topic_without_partitions_rejects_sends() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "empty", "none", 0).await;
        let balanced = client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::balanced(),
                &mut sdk::messages("x", 0..1),
            )
            .await;
        // Iggy 0.8.0 answers 2010 TopicIdNotFound here (PROTOCOL.md §6.3); 3008 NoPartitions, as
        // for MessagesKey, is the clearer answer and the SDK treats both alike.
        let code = error_code(balanced);
        assert!(
            [2010, 3008].contains(&code),
            "Balanced over 0 partitions gave {code}"
        );
        let keyed = client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::messages_key_str("k").unwrap(),
                &mut sdk::messages("x", 0..1),
            )
            .await;
        assert_eq!(
            error_code(keyed),
            3008,
            "MessagesKey over 0 partitions gives NoPartitions"
        );
        let explicit = client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(0),
                &mut sdk::messages("x", 0..1),
            )
            .await;
        assert_eq!(error_code(explicit), 3007);
        client
            .create_partitions(&id(stream), &id(topic), 1)
            .await
            .expect("add a partition");
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::messages_key_str("k").unwrap(),
                &mut sdk::messages("x", 0..1),
            )
            .await
            .expect("now there is a partition");
        assert_eq!(sdk::poll_all(&client, stream, topic, 0).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn high_level_producer_and_standalone_consumer() {
    use futures_util::StreamExt;

    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) =
            sdk::create_stream_and_topic(&client, "high-level", "events", 2).await;
        let producer = client
            .producer("high-level", "events")
            .unwrap()
            .direct(DirectConfig::builder().batch_length(10).build())
            .partitioning(Partitioning::partition_id(1))
            .build();
        producer.init().await.expect("producer init");
        producer
            .send(sdk::messages("hl", 0..25))
            .await
            .expect("producer send");

        let mut consumer = client
            .consumer("hl-reader", "high-level", "events", 1)
            .unwrap()
            .polling_strategy(PollingStrategy::next())
            .batch_length(7)
            .auto_commit(AutoCommit::When(AutoCommitWhen::PollingMessages))
            .poll_interval(IggyDuration::from(1_000))
            .build();
        consumer.init().await.expect("consumer init");
        let mut received = Vec::new();
        while received.len() < 25 {
            let message = consumer
                .next()
                .await
                .expect("stream goes on")
                .expect("consumed message");
            assert_eq!(message.partition_id, 1);
            received.push(message.message);
        }
        assert_eq!(sdk::offsets(&received), (0..25).collect::<Vec<u64>>());
        assert_eq!(
            sdk::payload_strings(&received),
            sdk::payload_strings(&sdk::messages("hl", 0..25))
        );
        let stored = client
            .get_consumer_offset(
                &Consumer::new(name("hl-reader")),
                &id(stream),
                &id(topic),
                Some(1),
            )
            .await
            .unwrap()
            .expect("auto-committed while polling");
        assert_eq!(stored.stored_offset, 24);
        drop(consumer);
        drop(producer);
        assert!(sdk::poll_all(&client, stream, topic, 0).await.is_empty());
    })
    .await;
}

#[test]
fn raw_poll_always_has_the_16_byte_header() {
    let server = TestServer::start(&[]);
    let mut conn = RawConn::connect_logged_in(server.addr);
    let stream = raw::create_stream(&mut conn, "raw-poll");
    let topic = raw::create_topic(&mut conn, stream, "t", 2);
    let empty = raw::poll(&mut conn, stream, topic, 1, 0, 10);
    assert_eq!(
        (
            empty.partition_id,
            empty.current_offset,
            empty.messages.len()
        ),
        (1, 0, 0)
    );
    let batch = raw::SendMessages::new(stream, topic, 1, &[b"a", b"b", b"c"]);
    conn.request(raw::code::SEND_MESSAGES, &batch.encode()).ok();
    // The SDK refuses count 0 itself; the server answers it with the bare header.
    let zero = raw::poll(&mut conn, stream, topic, 1, 0, 0);
    assert_eq!(
        (zero.partition_id, zero.current_offset, zero.messages.len()),
        (1, 2, 0)
    );
    let past_end = raw::poll(&mut conn, stream, topic, 1, 3, 10);
    assert_eq!(
        (
            past_end.partition_id,
            past_end.current_offset,
            past_end.messages.len()
        ),
        (1, 2, 0)
    );
    let all = raw::poll(&mut conn, stream, topic, 1, 0, 10);
    assert_eq!(
        all.messages,
        vec![(0, b"a".to_vec()), (1, b"b".to_vec()), (2, b"c".to_vec())]
    );
}

#[tokio::test]
async fn large_batches_of_small_messages() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "bulk", "t", 1).await;
        for round in 0..3u64 {
            let mut batch = sdk::messages("bulk", round * 5_000..(round + 1) * 5_000);
            client
                .send_messages(
                    &id(stream),
                    &id(topic),
                    &Partitioning::partition_id(0),
                    &mut batch,
                )
                .await
                .expect("send 5000 messages in one batch");
        }
        let polled = sdk::poll_offset(&client, stream, topic, 0, 0, 15_000).await;
        assert_eq!(
            sdk::offsets(&polled.messages),
            (0..15_000).collect::<Vec<u64>>()
        );
        let expected: Vec<String> = (0..15_000).map(|i| format!("bulk-{i}")).collect();
        assert_eq!(sdk::payload_strings(&polled.messages), expected);
        let middle = sdk::poll_offset(&client, stream, topic, 0, 4_990, 20).await;
        assert_eq!(
            sdk::offsets(&middle.messages),
            (4_990..5_010).collect::<Vec<u64>>()
        );
        let last = client
            .poll_messages(
                &id(stream),
                &id(topic),
                Some(0),
                &Consumer::new(id(1)),
                &PollingStrategy::last(),
                7_000,
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            sdk::offsets(&last.messages),
            (8_000..15_000).collect::<Vec<u64>>()
        );
    })
    .await;
}
