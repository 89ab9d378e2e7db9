//! Compatibility with the 0.9 client generation: the scenarios compat_sdk.rs drives with
//! `iggy` 0.10.0, driven again with the official Rust SDK `iggy` 0.11.0 (renamed `iggy_next`),
//! which speaks only VSR framing (PROTOCOL-0.9.md), against a real galgo-server with 2 shards.
//!
//! Where 0.11.0 behaves differently from 0.10.0 the tests expect what PROTOCOL-0.9.md says it
//! needs: login failures arrive as Evictions (§5.4), Balanced and MessagesKey are resolved by the
//! client (§8.8), group members are assigned partitions by SyncConsumerGroup (§8.7), the client
//! mints message ids, and GetClusterMetadata must report exactly one node (§8.9). The last tests
//! run one scenario (login, create, send, poll with headers, a consumer group) over TCP, TCP+TLS,
//! WebSocket and WSS.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::Bytes;
use iggy_next::prelude::*;
use support::TestServer;
use support::certs::TestCertificates;
use support::sdk::{TEST_TIMEOUT, Via, within};
use support::sdk_next::{self as sdk, error_code, id, name};
use support::vsr::{self, VsrConn};

/// Error codes (PROTOCOL.md §7, PROTOCOL-0.9.md §6.5) the scenarios expect.
mod code {
    pub const DISCONNECTED: u32 = 8;
    pub const UNAUTHENTICATED: u32 = 40;
    pub const UNAUTHORIZED: u32 = 41;
    pub const INVALID_CREDENTIALS: u32 = 42;
    pub const USER_ALREADY_EXISTS: u32 = 46;
    pub const INVALID_PERSONAL_ACCESS_TOKEN: u32 = 53;
    pub const STREAM_ID_NOT_FOUND: u32 = 1009;
    pub const STREAM_NAME_ALREADY_EXISTS: u32 = 1012;
    pub const TOPIC_ID_NOT_FOUND: u32 = 2010;
    pub const TOPIC_NAME_ALREADY_EXISTS: u32 = 2013;
    pub const PARTITION_NOT_FOUND: u32 = 3007;
    pub const CONSUMER_OFFSET_NOT_FOUND: u32 = 3021;
    pub const INVALID_OFFSET: u32 = 4100;
    pub const CONSUMER_GROUP_ID_NOT_FOUND: u32 = 5000;
    pub const CONSUMER_GROUP_NAME_ALREADY_EXISTS: u32 = 5004;
    pub const CONSUMER_GROUP_MEMBER_NOT_FOUND: u32 = 5006;
}

#[tokio::test]
async fn ping_login_logout_and_credentials() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client_without_login(server.addr).await;
        client.ping().await.expect("ping needs no login");
        assert_eq!(
            error_code(client.get_streams().await),
            code::UNAUTHENTICATED,
            "no session yet"
        );
        // Bad credentials end the registration with Eviction 9, which the SDK reports as
        // InvalidCredentials; the connection stays usable for the next login (§5.4).
        let wrong = client.login_user("iggy", "not-the-password").await;
        assert_eq!(error_code(wrong), code::INVALID_CREDENTIALS);
        let unknown = client.login_user("nobody", "iggy").await;
        assert_eq!(error_code(unknown), code::INVALID_CREDENTIALS);

        let identity = client.login_user("iggy", "iggy").await.expect("root login");
        assert_eq!(identity.user_id, 0, "root is user 0");
        assert_eq!(client.get_me().await.expect("get_me").user_id, Some(0));
        client.logout_user().await.expect("logout");
        assert_eq!(
            error_code(client.get_me().await),
            code::UNAUTHENTICATED,
            "logged out"
        );
        client
            .login_user("iggy", "iggy")
            .await
            .expect("login again");
        client.ping().await.expect("ping after re-login");
        assert!(client.get_streams().await.expect("get_streams").is_empty());

        // The SDK's own connection-string path with its defaults (reconnection on).
        let default_client = sdk::client_from_connection_string(server.addr).await;
        default_client.ping().await.expect("ping");
        let me = default_client.get_me().await.expect("get_me");
        assert_eq!(me.user_id, Some(0));
    })
    .await;
}

#[tokio::test]
async fn get_me_get_client_and_get_clients() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let other = sdk::client(server.addr).await;
        let me = client.get_me().await.expect("get_me");
        assert_eq!((me.transport.as_str(), me.user_id), ("TCP", Some(0)));
        assert_eq!(me.consumer_groups_count, 0);
        let address: SocketAddr = me.address.parse().expect("address is a socket address");
        assert_eq!(address.ip(), server.addr.ip());
        assert_ne!(address.port(), server.addr.port(), "the client's port");

        let other_me = other.get_me().await.expect("get_me");
        assert_ne!(other_me.client_id, me.client_id);
        let clients = client.get_clients().await.expect("get_clients");
        for wanted in [&me, &other_me] {
            let found = clients
                .iter()
                .find(|c| c.client_id == wanted.client_id)
                .unwrap_or_else(|| panic!("client {} missing from {clients:?}", wanted.client_id));
            assert_eq!(found.address, wanted.address);
            assert_eq!((found.user_id, found.transport.as_str()), (Some(0), "TCP"));
        }
        let fetched = client
            .get_client(other_me.client_id)
            .await
            .expect("get_client")
            .expect("the other client exists");
        assert_eq!(fetched.address, other_me.address);
        let unknown = (1..u32::MAX)
            .find(|candidate| !clients.iter().any(|c| c.client_id == *candidate))
            .expect("a free id");
        assert!(client.get_client(unknown).await.expect("get").is_none());
    })
    .await;
}

#[tokio::test]
async fn stats_and_cluster_metadata() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (s0, t0) = sdk::create_stream_and_topic(&client, "stats-a", "t1", 1).await;
        let (s1, t1) = sdk::create_stream_and_topic(&client, "stats-b", "t2", 2).await;
        client
            .create_topic(&id(s1), "t3", &sdk::partitions(3))
            .await
            .expect("third topic");
        sdk::send_to(&client, s0, t0, 0, sdk::messages("m", 0..4)).await;
        sdk::send_to(&client, s1, t1, 1, sdk::messages("m", 0..6)).await;

        let stats = client.get_stats().await.expect("get_stats");
        assert_eq!(
            (
                stats.streams_count,
                stats.topics_count,
                stats.partitions_count
            ),
            (2, 3, 6)
        );
        assert_eq!(stats.messages_count, 10);
        assert_eq!(stats.clients_count, 1, "this test's only connection");
        let details = client.get_stream(&id(s1)).await.unwrap().expect("stream");
        assert_eq!((details.messages_count, details.topics_count), (6, 2));
        let topic = client
            .get_topic(&id(s1), &id(t1))
            .await
            .unwrap()
            .expect("topic");
        let counts: Vec<(u64, u64)> = topic
            .partitions
            .iter()
            .map(|p| (p.messages_count, p.current_offset))
            .collect();
        assert_eq!(counts, vec![(0, 0), (6, 5)]);
        check_cluster_metadata(&client, &server).await;
    })
    .await;
}

/// One node, the leader, healthy, at the server's real TCP and WebSocket ports (§8.9).
async fn check_cluster_metadata(client: &IggyClient, server: &TestServer) {
    let metadata = client
        .get_cluster_metadata()
        .await
        .expect("get_cluster_metadata");
    assert_eq!(metadata.nodes.len(), 1, "one node: {metadata:?}");
    let node = &metadata.nodes[0];
    assert_eq!(node.ip, server.addr.ip().to_string());
    assert_eq!(
        (node.endpoints.tcp, node.endpoints.websocket),
        (server.addr.port(), server.ws_addr.port())
    );
    assert_eq!(node.role, ClusterNodeRole::Leader);
    assert_eq!(node.status, ClusterNodeStatus::Healthy);
}

#[tokio::test]
async fn streams_create_get_list_update_purge_delete() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        assert!(client.get_streams().await.expect("get_streams").is_empty());
        let alpha = client.create_stream("alpha").await.expect("create alpha");
        assert_eq!(
            (alpha.id, alpha.name.as_str(), alpha.topics_count),
            (0, "alpha", 0)
        );
        let beta = client.create_stream("beta").await.expect("create beta");
        assert_eq!(beta.id, 1, "ids are 0-based");
        assert_eq!(
            error_code(client.create_stream("alpha").await),
            code::STREAM_NAME_ALREADY_EXISTS
        );
        let by_name = client
            .get_stream(&name("beta"))
            .await
            .unwrap()
            .expect("beta");
        assert_eq!((by_name.id, by_name.name.as_str()), (1, "beta"));
        assert!(client.get_stream(&id(99)).await.unwrap().is_none());
        let names: Vec<(u32, String)> = client
            .get_streams()
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect();
        assert_eq!(names, vec![(0, "alpha".into()), (1, "beta".into())]);

        let no_options = StreamUpdateOptions::default();
        client
            .update_stream(&id(1), "gamma", &no_options)
            .await
            .expect("rename by id");
        assert!(client.get_stream(&name("beta")).await.unwrap().is_none());
        assert_eq!(
            error_code(client.update_stream(&id(1), "alpha", &no_options).await),
            code::STREAM_NAME_ALREADY_EXISTS
        );
        assert_eq!(
            error_code(client.update_stream(&id(42), "x", &no_options).await),
            code::STREAM_ID_NOT_FOUND
        );
        purge_and_delete_streams(&client).await;
    })
    .await;
}

/// Purges `gamma` (it keeps its topic, loses its messages) and deletes both streams.
async fn purge_and_delete_streams(client: &IggyClient) {
    let topic = client
        .create_topic(&name("gamma"), "t", &sdk::partitions(1))
        .await
        .expect("topic")
        .id;
    sdk::send_to(client, 1, topic, 0, sdk::messages("m", 0..3)).await;
    client.purge_stream(&name("gamma")).await.expect("purge");
    let purged = client.get_stream(&id(1)).await.unwrap().expect("gamma");
    assert_eq!((purged.messages_count, purged.topics_count), (0, 1));
    assert!(sdk::poll_all(client, 1, topic, 0).await.is_empty());

    client
        .delete_stream(&name("gamma"))
        .await
        .expect("delete by name");
    assert!(client.get_stream(&id(1)).await.unwrap().is_none());
    assert_eq!(
        error_code(client.delete_stream(&name("gamma")).await),
        code::STREAM_ID_NOT_FOUND
    );
    client.delete_stream(&id(0)).await.expect("delete by id");
    assert!(client.get_streams().await.unwrap().is_empty());
    client
        .create_stream("alpha")
        .await
        .expect("a freed name is usable");
}

#[tokio::test]
async fn topics_create_get_list_update_purge_delete_and_partitions() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let stream = client.create_stream("topics").await.expect("stream").id;
        create_and_look_up_topics(&client, stream).await;
        update_orders_topic(&client, stream).await;
        grow_and_shrink_partitions(&client, stream).await;

        sdk::send_to(&client, stream, 1, 0, sdk::messages("m", 0..3)).await;
        client
            .purge_topic(&id(stream), &id(1))
            .await
            .expect("purge topic");
        assert!(sdk::poll_all(&client, stream, 1, 0).await.is_empty());
        sdk::send_to(&client, stream, 1, 0, sdk::messages("fresh", 0..2)).await;
        let fresh = sdk::poll_all(&client, stream, 1, 0).await;
        assert_eq!(
            sdk::offsets(&fresh),
            vec![0, 1],
            "offsets restart after a purge"
        );

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
            code::TOPIC_ID_NOT_FOUND
        );
    })
    .await;
}

/// Creates `orders` (3 partitions, by stream name) and `payments` (1 partition, expiry and
/// size limit as options), refuses a duplicate and an orphan, and finds both.
async fn create_and_look_up_topics(client: &IggyClient, stream: u32) {
    let created = client
        .create_topic(&name("topics"), "orders", &sdk::partitions(3))
        .await
        .expect("create topic by stream name");
    assert_eq!(
        (created.id, created.name.as_str(), created.partitions_count),
        (0, "orders", 3)
    );
    let ids: Vec<u32> = created.partitions.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![0, 1, 2]);
    let options = TopicCreateOptions {
        partitions_count: Some(1),
        message_expiry: Some(IggyExpiry::NeverExpire),
        max_topic_size: Some(MaxTopicSize::Unlimited),
        ..TopicCreateOptions::default()
    };
    let second = client
        .create_topic(&id(stream), "payments", &options)
        .await
        .expect("create topic with options");
    assert_eq!((second.id, second.partitions_count), (1, 1));
    assert_eq!(
        error_code(
            client
                .create_topic(&id(stream), "orders", &sdk::partitions(1))
                .await
        ),
        code::TOPIC_NAME_ALREADY_EXISTS
    );
    assert_eq!(
        error_code(client.create_topic(&id(55), "x", &sdk::partitions(1)).await),
        code::STREAM_ID_NOT_FOUND
    );
    let by_name = client
        .get_topic(&id(stream), &name("orders"))
        .await
        .unwrap();
    assert_eq!(by_name.expect("by name").partitions.len(), 3);
    assert!(
        client
            .get_topic(&id(stream), &id(9))
            .await
            .unwrap()
            .is_none()
    );
    let topics: Vec<(u32, String)> = client
        .get_topics(&id(stream))
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.name))
        .collect();
    assert_eq!(topics, vec![(0, "orders".into()), (1, "payments".into())]);
    let details = client
        .get_stream(&id(stream))
        .await
        .unwrap()
        .expect("stream");
    assert_eq!(details.topics.len(), 2);
}

/// Renames `orders` to `orders-v2` and sets its expiry and size limit through the options.
async fn update_orders_topic(client: &IggyClient, stream: u32) {
    let expiry = IggyExpiry::ExpireDuration(IggyDuration::from(3_600_000_000));
    let max_size = MaxTopicSize::Custom(IggyByteSize::from(10 * 1024 * 1024 * 1024u64));
    let options = TopicUpdateOptions {
        message_expiry: Some(expiry),
        max_topic_size: Some(max_size),
        ..TopicUpdateOptions::default()
    };
    client
        .update_topic(&id(stream), &name("orders"), "orders-v2", &options)
        .await
        .expect("update topic");
    let updated = client
        .get_topic(&id(stream), &id(0))
        .await
        .unwrap()
        .expect("topic");
    assert_eq!(updated.name, "orders-v2");
    assert_eq!(
        (updated.message_expiry, updated.max_topic_size),
        (expiry, max_size)
    );
    assert_eq!(updated.partitions_count, 3);
    assert_eq!(
        error_code(
            client
                .update_topic(
                    &id(stream),
                    &id(0),
                    "payments",
                    &TopicUpdateOptions::default()
                )
                .await
        ),
        code::TOPIC_NAME_ALREADY_EXISTS
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
    let ids: Vec<u32> = grown.partitions.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4]);
    sdk::send_to(client, stream, 0, 4, sdk::messages("p4", 0..2)).await;
    client
        .delete_partitions(&id(stream), &id(0), 2)
        .await
        .expect("delete partitions");
    let shrunk = client
        .get_topic(&id(stream), &id(0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shrunk.partitions.len(), 3);
    assert_eq!(
        shrunk.messages_count, 0,
        "deleted partitions take their messages"
    );
    let gone = client
        .send_messages(
            &id(stream),
            &id(0),
            &Partitioning::partition_id(4),
            &mut sdk::messages("gone", 0..1),
        )
        .await;
    assert_eq!(error_code(gone), code::PARTITION_NOT_FOUND);
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
        let messages = sdk::poll_all(client, stream, topic, partition).await;
        for payload in sdk::payload_strings(&messages) {
            assert!(
                map.insert(payload.clone(), partition).is_none(),
                "{payload} twice"
            );
        }
    }
    map
}

/// Sends one batch with `partitioning` and checks the send confirmation, when the server gives
/// one (PROTOCOL-0.9.md §8.8 allows none): one per send, on the partition it landed on.
async fn send_with(client: &IggyClient, stream: u32, topic: u32, how: &Partitioning, prefix: &str) {
    let mut batch = sdk::messages(prefix, 0..2);
    let response = client
        .send_messages(&id(stream), &id(topic), how, &mut batch)
        .await
        .expect("send");
    assert!(response.confirmations.len() <= 1, "{response:?}");
    for confirmation in &response.confirmations {
        assert_eq!(
            (confirmation.stream_id, confirmation.topic_id),
            (stream, topic)
        );
    }
}

#[tokio::test]
async fn send_balanced_partition_id_and_messages_key() {
    const PARTITIONS: u32 = 3;
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "routing", "t", 3).await;
        for batch in 0..6 {
            let prefix = format!("balanced{batch}");
            send_with(&client, stream, topic, &Partitioning::balanced(), &prefix).await;
        }
        send_with(
            &client,
            stream,
            topic,
            &Partitioning::partition_id(2),
            "explicit",
        )
        .await;
        let keys = ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"];
        for round in 0..2 {
            for key in keys {
                let keyed = Partitioning::messages_key_str(key).unwrap();
                send_with(&client, stream, topic, &keyed, &format!("{key}.r{round}")).await;
            }
        }
        let placed = partition_of_payloads(&client, stream, topic, PARTITIONS).await;
        let balanced: Vec<u32> = (0..6).map(|b| placed[&format!("balanced{b}-0")]).collect();
        for batch in 0..6 {
            assert_eq!(
                placed[&format!("balanced{batch}-1")],
                balanced[batch],
                "one batch, one partition"
            );
        }
        for (i, pair) in balanced.windows(2).enumerate() {
            assert_eq!(
                pair[1],
                (pair[0] + 1) % PARTITIONS,
                "round-robin at {i}: {balanced:?}"
            );
        }
        assert_eq!((placed["explicit-0"], placed["explicit-1"]), (2, 2));
        for key in keys {
            // The SDK resolves a key to XXH32(key) % partitions (PROTOCOL-0.9.md §8.8).
            let expected = xxhash_rust::xxh32::xxh32(key.as_bytes(), 0) % PARTITIONS;
            for round in 0..2 {
                assert_eq!(placed[&format!("{key}.r{round}-0")], expected, "key {key}");
            }
        }
        let too_far = Partitioning::partition_id(PARTITIONS);
        let refused = client
            .send_messages(
                &id(stream),
                &id(topic),
                &too_far,
                &mut sdk::messages("x", 0..1),
            )
            .await;
        assert_eq!(error_code(refused), code::PARTITION_NOT_FOUND);
    })
    .await;
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
        ("i32", (-320_000i32).into()),
        ("i64", (-64_000_000_000i64).into()),
        ("i128", (-(1i128 << 100)).into()),
        ("u16", 1600u16.into()),
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

/// Five messages that cover the payload and header shapes: plain, binary with every header
/// type and a client-chosen id, one megabyte, a single zero byte with headers, and a maximal id
/// with bytes that are not UTF-8.
fn byte_exact_messages() -> Vec<IggyMessage> {
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let large: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let build = |id: Option<u128>, payload: Vec<u8>, headers: bool| {
        IggyMessage::builder()
            .maybe_id(id)
            .payload(Bytes::from(payload))
            .maybe_user_headers(headers.then(header_map))
            .build()
            .unwrap()
    };
    vec![
        build(None, b"plain".to_vec(), false),
        build(Some(0xDEAD_BEEF_u128 << 64 | 7), binary, true),
        build(None, large, false),
        build(None, vec![0], true),
        build(Some(u128::MAX), b"\xff\xfe\x00 tail".to_vec(), true),
    ]
}

#[tokio::test]
async fn payloads_and_user_headers_round_trip_byte_exact() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "bytes", "t", 1).await;
        let mut sent = byte_exact_messages();
        // send_messages mints the ids left at 0 into these very messages (§8.8).
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(0),
                &mut sent,
            )
            .await
            .expect("send");
        sdk::send_to(&client, stream, topic, 0, sdk::messages("second", 0..2)).await;

        let polled = sdk::poll_offset(&client, stream, topic, 0, 0, 100).await;
        assert_eq!((polled.partition_id, polled.current_offset), (0, 6));
        assert_eq!(sdk::offsets(&polled.messages), (0..7).collect::<Vec<u64>>());
        let batch_timestamp = polled.messages[0].header.timestamp;
        assert!(batch_timestamp > 0);
        for (i, (got, want)) in polled.messages.iter().zip(&sent).enumerate() {
            check_message_kept(i, got, want, batch_timestamp);
        }
        check_frames_verbatim(&polled.messages);
        check_paging_matches(&client, stream, topic, &polled.messages).await;
    })
    .await;
}

/// Served as the producer framed them: offset and timestamp deltas against the first message
/// of each sent batch (offsets 0 and 5), under the checksum the producer computed (§8.8).
fn check_frames_verbatim(messages: &[IggyMessage]) {
    for (i, got) in messages.iter().enumerate() {
        let first = &messages[if i < 5 { 0 } else { 5 }].header;
        let delta = (got.header.offset - first.offset) as u32;
        let time_delta = (got.header.origin_timestamp - first.origin_timestamp) as u32;
        let expected = frame_checksum(got, delta, time_delta);
        assert_eq!(got.header.checksum, expected, "checksum of message {i}");
    }
}

/// Pages of two give the same messages, checksums included: a message is the same whichever
/// poll serves it, and the big one must not break paging.
async fn check_paging_matches(client: &IggyClient, stream: u32, topic: u32, all: &[IggyMessage]) {
    // Pages of two give the same messages: the big one must not break paging.
    let mut paged = Vec::new();
    while paged.len() < 7 {
        let page = sdk::poll_offset(client, stream, topic, 0, paged.len() as u64, 2).await;
        assert!(!page.messages.is_empty() && page.messages.len() <= 2);
        paged.extend(page.messages);
    }
    // Headers first (a failure then names the field), then the bytes.
    let headers = |messages: &[IggyMessage]| -> Vec<[u128; 5]> {
        let fields = |h: &IggyMessageHeader| {
            let (offset, time, origin) = (h.offset, h.timestamp, h.origin_timestamp);
            [
                h.id,
                offset.into(),
                time.into(),
                origin.into(),
                h.payload_length.into(),
            ]
        };
        messages.iter().map(|m| fields(&m.header)).collect()
    };
    assert_eq!(headers(&paged), headers(all), "headers by page");
    for (got, want) in paged.iter().zip(all) {
        assert_eq!(
            (&got.payload, &got.user_headers),
            (&want.payload, &want.user_headers),
            "payloads and user headers by page"
        );
    }
    // While in memory, a 0.9 producer's frames go out as it sent them, whichever page
    // holds them: a page that starts inside a sent batch keeps the batch's base offset and
    // origin (§8.8 allows it for a slice), so each message keeps the producer's checksum
    // rather than one computed for the page's own records.
    for (got, want) in paged.iter().zip(all) {
        assert_eq!(
            got.header.checksum, want.header.checksum,
            "checksum by page"
        );
    }
}

/// XXH3-64 of a message frame (PROTOCOL-0.9.md §8.8, table B) with these deltas: the header
/// from byte 8 on, the payload, the user headers.
fn frame_checksum(message: &IggyMessage, offset_delta: u32, timestamp_delta: u32) -> u64 {
    let mut frame = message.header.id.to_le_bytes().to_vec();
    frame.extend_from_slice(&offset_delta.to_le_bytes());
    frame.extend_from_slice(&timestamp_delta.to_le_bytes());
    frame.extend_from_slice(&message.header.user_headers_length.to_le_bytes());
    frame.extend_from_slice(&message.header.payload_length.to_le_bytes());
    frame.extend_from_slice(&[0u8; 8]);
    frame.extend_from_slice(&message.payload);
    frame.extend_from_slice(message.user_headers.as_deref().unwrap_or_default());
    xxhash_rust::xxh3::xxh3_64(&frame)
}

/// Message `i` as served (`got`) against the message sent (`want`, with its minted id) of a
/// batch stamped with `batch_timestamp`.
fn check_message_kept(i: usize, got: &IggyMessage, want: &IggyMessage, batch_timestamp: u64) {
    assert_eq!(got.payload, want.payload, "payload of message {i}");
    assert_eq!(
        got.user_headers, want.user_headers,
        "user header bytes of message {i}"
    );
    assert_eq!(
        (got.header.payload_length, got.header.user_headers_length),
        (want.header.payload_length, want.header.user_headers_length)
    );
    assert_ne!(want.header.id, 0, "the SDK minted an id");
    assert_eq!(got.header.id, want.header.id, "id of message {i}");
    assert_eq!(
        got.header.origin_timestamp, want.header.origin_timestamp,
        "origin timestamp of message {i}"
    );
    assert_eq!(
        got.header.timestamp, batch_timestamp,
        "one timestamp per batch"
    );
    if want.user_headers.is_some() {
        assert_eq!(
            got.user_headers_map().unwrap(),
            want.user_headers_map().unwrap()
        );
    }
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

#[tokio::test]
async fn poll_by_offset_timestamp_first_last_next() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "polling", "t", 2).await;
        // Ten one-message batches, so each message has its own timestamp.
        for i in 0..10u64 {
            sdk::send_to(&client, stream, topic, 1, sdk::messages("m", i..i + 1)).await;
        }
        let timestamps = check_offset_first_last_next(&client, stream, topic).await;
        check_poll_by_timestamp(&client, stream, topic, &timestamps).await;
        check_next_with_auto_commit(&client, stream, topic).await;
        check_next_without_auto_commit(&client, stream, topic).await;
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
            .expect("poll an empty partition");
        assert_eq!(
            (empty.partition_id, empty.current_offset, empty.count),
            (0, 0, 0)
        );
        for (s, t, p, expected) in [
            (stream, topic, 2, code::PARTITION_NOT_FOUND),
            (stream, 9, 0, code::TOPIC_ID_NOT_FOUND),
            (9, topic, 0, code::STREAM_ID_NOT_FOUND),
        ] {
            let polled = client
                .poll_messages(
                    &id(s),
                    &id(t),
                    Some(p),
                    &Consumer::new(id(1)),
                    &PollingStrategy::first(),
                    10,
                    false,
                )
                .await;
            assert_eq!(error_code(polled), expected, "poll {s}/{t}/{p}");
        }
    })
    .await;
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
        "{timestamps:?}"
    );
    let offsets = |polled: PolledMessages| sdk::offsets(&polled.messages);
    assert_eq!(
        offsets(poll(PollingStrategy::offset(3), 4).await),
        vec![3, 4, 5, 6]
    );
    assert_eq!(
        offsets(poll(PollingStrategy::offset(8), 100).await),
        vec![8, 9]
    );
    let past_end = poll(PollingStrategy::offset(10), 5).await;
    assert_eq!(
        (
            past_end.partition_id,
            past_end.current_offset,
            past_end.count
        ),
        (1, 9, 0)
    );
    assert_eq!(
        offsets(poll(PollingStrategy::first(), 3).await),
        vec![0, 1, 2]
    );
    assert_eq!(
        offsets(poll(PollingStrategy::last(), 3).await),
        vec![7, 8, 9]
    );
    assert_eq!(
        offsets(poll(PollingStrategy::last(), 50).await),
        (0..10).collect::<Vec<u64>>()
    );
    assert_eq!(
        offsets(poll(PollingStrategy::next(), 2).await),
        vec![0, 1],
        "Next = First"
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
    let later = PollingStrategy::timestamp(IggyTimestamp::from(timestamps[9] + 1));
    let future = poll_partition_1(client, stream, topic, later, 3).await;
    assert!(
        future.messages.is_empty(),
        "nothing is newer than the last message"
    );
}

/// auto_commit: each Next continues where the last one stopped (the SDK asks GetClusterMetadata
/// for the node count before the first auto-commit poll, §8.9).
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
    let stored = client
        .get_consumer_offset(&other, &id(stream), &id(topic), Some(1))
        .await
        .unwrap();
    assert!(stored.is_none());
}

#[tokio::test]
async fn flush_unsaved_buffer() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "flush", "t", 2).await;
        sdk::send_to(&client, stream, topic, 1, sdk::messages("m", 0..5)).await;
        client
            .flush_unsaved_buffer(&id(stream), &id(topic), 1, true)
            .await
            .expect("flush with fsync");
        client
            .flush_unsaved_buffer(&name("flush"), &name("t"), 0, false)
            .await
            .expect("flush of an empty partition");
        let log = server
            .partition_dir(stream, topic, 1)
            .join(format!("{:020}.log", 0));
        let written = std::fs::metadata(&log)
            .expect("segment log after flush")
            .len();
        assert!(written > 0, "the flush wrote the segment");
        let missing = client
            .flush_unsaved_buffer(&id(stream), &id(topic), 7, false)
            .await;
        assert_eq!(error_code(missing), code::PARTITION_NOT_FOUND);
        let polled = sdk::poll_all(&client, stream, topic, 1).await;
        assert_eq!(
            sdk::payload_strings(&polled),
            sdk::payload_strings(&sdk::messages("m", 0..5))
        );
    })
    .await;
}

/// The stored offset of `consumer` on partition `partition`, if any.
async fn stored(
    client: &IggyClient,
    consumer: &Consumer,
    (stream, topic): (u32, u32),
    partition: u32,
) -> Option<u64> {
    let info = client
        .get_consumer_offset(consumer, &id(stream), &id(topic), Some(partition))
        .await
        .expect("get offset");
    info.map(|info| info.stored_offset)
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
        assert_eq!(stored(&client, &numeric, (stream, topic), 0).await, None);
        sdk::send_to(&client, stream, topic, 0, sdk::messages("m", 0..10)).await;

        client
            .store_consumer_offset(&numeric, &s, &t, Some(0), 5)
            .await
            .expect("store numeric");
        client
            .store_consumer_offset(&named, &name("offsets"), &name("t"), Some(0), 2)
            .await
            .expect("store named");
        let info = client.get_consumer_offset(&numeric, &s, &t, Some(0)).await;
        let info = info.expect("get").expect("stored");
        assert_eq!(
            (info.partition_id, info.current_offset, info.stored_offset),
            (0, 9, 5)
        );
        assert_eq!(stored(&client, &named, (stream, topic), 0).await, Some(2));
        assert_eq!(stored(&client, &named, (stream, topic), 1).await, None);
        let next = client
            .poll_messages(&s, &t, Some(0), &named, &PollingStrategy::next(), 3, false)
            .await
            .unwrap();
        assert_eq!(sdk::offsets(&next.messages), vec![3, 4, 5], "after 2");
        move_and_delete_offsets(&client, &numeric, &named, (stream, topic)).await;
    })
    .await;
}

/// A stored offset moves back but not past the end; a delete removes one consumer's offset,
/// once, and leaves the others.
async fn move_and_delete_offsets(
    client: &IggyClient,
    numeric: &Consumer,
    named: &Consumer,
    (stream, topic): (u32, u32),
) {
    let (s, t) = (id(stream), id(topic));
    client
        .store_consumer_offset(numeric, &s, &t, Some(0), 1)
        .await
        .expect("move back");
    assert_eq!(stored(client, numeric, (stream, topic), 0).await, Some(1));
    let past_end = client
        .store_consumer_offset(numeric, &s, &t, Some(0), 10)
        .await;
    assert_eq!(error_code(past_end), code::INVALID_OFFSET);
    client
        .delete_consumer_offset(numeric, &s, &t, Some(0))
        .await
        .expect("delete");
    assert_eq!(stored(client, numeric, (stream, topic), 0).await, None);
    let again = client
        .delete_consumer_offset(numeric, &s, &t, Some(0))
        .await;
    assert_eq!(error_code(again), code::CONSUMER_OFFSET_NOT_FOUND);
    assert_eq!(stored(client, named, (stream, topic), 0).await, Some(2));
}

/// Partitions per member, in member id order.
async fn assignment(client: &IggyClient, stream: u32, topic: u32, group: &str) -> Vec<Vec<u32>> {
    let details = client
        .get_consumer_group(&id(stream), &id(topic), &name(group))
        .await
        .expect("get group")
        .expect("group exists");
    assert_eq!(details.members_count as usize, details.members.len());
    details
        .members
        .into_iter()
        .map(|member| member.partitions)
        .collect()
}

/// Sends `count` messages `m-0..`, message `i` to partition `i % partitions`.
async fn send_spread(client: &IggyClient, stream: u32, topic: u32, partitions: u32, count: u64) {
    for partition in 0..partitions {
        let batch: Vec<IggyMessage> = (0..count)
            .filter(|i| i % u64::from(partitions) == u64::from(partition))
            .map(|i| sdk::message(format!("m-{i}")))
            .collect();
        sdk::send_to(client, stream, topic, partition, batch).await;
    }
}

/// Polls as a member (no partition: the SDK picks one of its assignment, §8.7) with Next and
/// auto-commit until each of its partitions answered empty once in a row; returns the
/// payloads with the partitions they came from.
async fn drain_member(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    group: &str,
    partitions: usize,
) -> Vec<(u32, String)> {
    let mut got = Vec::new();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < partitions.max(1) {
        let polled = client
            .poll_messages(
                &id(stream),
                &id(topic),
                None,
                &Consumer::group(name(group)),
                &PollingStrategy::next(),
                7,
                true,
            )
            .await
            .expect("poll as a group member");
        if polled.messages.is_empty() {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        for payload in sdk::payload_strings(&polled.messages) {
            got.push((polled.partition_id, payload));
        }
    }
    got
}

#[tokio::test]
async fn consumer_group_commands_and_a_member_with_auto_commit() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "s", "t", 3).await;
        create_and_list_groups(&client, stream, topic).await;
        let (s, t) = (id(stream), id(topic));
        client
            .join_consumer_group(&s, &t, &name("g"))
            .await
            .expect("join");
        assert_eq!(
            assignment(&client, stream, topic, "g").await,
            vec![vec![0, 1, 2]]
        );
        let me = client.get_me().await.expect("get_me");
        assert_eq!(me.consumer_groups_count, 1);
        send_spread(&client, stream, topic, 3, 30).await;
        let got = drain_member(&client, stream, topic, "g", 3).await;
        let payloads: BTreeSet<String> = got.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(got.len(), 30, "each message once");
        assert_eq!(payloads, (0..30).map(|i| format!("m-{i}")).collect());
        for (partition, payload) in &got {
            let i: u32 = payload[2..].parse().expect("m-N");
            assert_eq!(*partition, i % 3, "{payload} came from its partition");
        }
        leave_and_delete_group(&client, stream, topic).await;
    })
    .await;
}

/// Creates groups `g` (id 0) and `h` (id 1) and lists them; a duplicate name, a missing group
/// and a poll by a client that is no member are refused.
async fn create_and_list_groups(client: &IggyClient, stream: u32, topic: u32) {
    let (s, t) = (id(stream), id(topic));
    let created = client.create_consumer_group(&s, &t, "g").await.expect("g");
    assert_eq!(
        (created.id, created.name.as_str(), created.partitions_count),
        (0, "g", 3)
    );
    let second = client.create_consumer_group(&s, &t, "h").await.expect("h");
    assert_eq!(second.id, 1);
    let duplicate = client.create_consumer_group(&s, &t, "g").await;
    assert_eq!(
        error_code(duplicate),
        code::CONSUMER_GROUP_NAME_ALREADY_EXISTS
    );
    let listed = client.get_consumer_groups(&s, &t).await.expect("list");
    let names: Vec<String> = listed.into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["g", "h"]);
    let missing = client.get_consumer_group(&s, &t, &id(9)).await;
    assert!(missing.expect("get").is_none());
    let join_missing = client.join_consumer_group(&s, &t, &id(9)).await;
    assert_eq!(error_code(join_missing), code::CONSUMER_GROUP_ID_NOT_FOUND);
    // Not a member: SyncConsumerGroup answers empty and the SDK refuses the poll (§8.7).
    let group = Consumer::group(name("g"));
    let outsider = client
        .poll_messages(&s, &t, None, &group, &PollingStrategy::next(), 1, false)
        .await;
    assert_eq!(error_code(outsider), code::CONSUMER_GROUP_MEMBER_NOT_FOUND);
}

/// The auto-commits are the group's; after leaving, polling as the group is refused; deleting
/// the group frees its name and its offsets.
async fn leave_and_delete_group(client: &IggyClient, stream: u32, topic: u32) {
    let (s, t) = (id(stream), id(topic));
    let group = Consumer::group(name("g"));
    for partition in 0..3 {
        let offset = client
            .get_consumer_offset(&group, &s, &t, Some(partition))
            .await;
        assert_eq!(
            offset.expect("get").expect("auto-committed").stored_offset,
            9
        );
    }
    client
        .leave_consumer_group(&s, &t, &name("g"))
        .await
        .expect("leave");
    assert!(assignment(client, stream, topic, "g").await.is_empty());
    let left = client
        .poll_messages(&s, &t, None, &group, &PollingStrategy::next(), 1, false)
        .await;
    assert_eq!(error_code(left), code::CONSUMER_GROUP_MEMBER_NOT_FOUND);
    assert_eq!(
        client.get_me().await.expect("get_me").consumer_groups_count,
        0
    );
    client
        .delete_consumer_group(&s, &t, &name("g"))
        .await
        .expect("delete");
    assert!(
        client
            .get_consumer_group(&s, &t, &name("g"))
            .await
            .expect("get")
            .is_none()
    );
    let again = client.delete_consumer_group(&s, &t, &id(0)).await;
    assert_eq!(error_code(again), code::CONSUMER_GROUP_ID_NOT_FOUND);
    let reused = client
        .create_consumer_group(&s, &t, "g2")
        .await
        .expect("create");
    assert_eq!(reused.id, 0, "the freed id is reused");
    let fresh = client
        .get_consumer_offset(&Consumer::group(id(0)), &s, &t, Some(0))
        .await;
    assert!(
        fresh.expect("get").is_none(),
        "the deleted group's offsets are gone"
    );
}

#[tokio::test]
async fn two_members_split_four_partitions_and_consume_everything_once() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&admin, "s", "t", 4).await;
        admin
            .create_consumer_group(&id(stream), &id(topic), "g")
            .await
            .expect("create group");
        send_spread(&admin, stream, topic, 4, 200).await;
        let first = sdk::client(server.addr).await;
        let second = sdk::client(server.addr).await;
        for member in [&first, &second] {
            member
                .join_consumer_group(&id(stream), &id(topic), &name("g"))
                .await
                .expect("join");
        }
        assert_eq!(
            assignment(&admin, stream, topic, "g").await,
            vec![vec![0, 1], vec![2, 3]],
            "fair: 2/2"
        );
        let mut all = drain_member(&first, stream, topic, "g", 2).await;
        let from_second = drain_member(&second, stream, topic, "g", 2).await;
        let first_partitions: BTreeSet<u32> = all.iter().map(|(p, _)| *p).collect();
        let second_partitions: BTreeSet<u32> = from_second.iter().map(|(p, _)| *p).collect();
        assert_eq!(first_partitions, BTreeSet::from([0, 1]));
        assert_eq!(second_partitions, BTreeSet::from([2, 3]));
        all.extend(from_second);
        let mut payloads: Vec<String> = all.into_iter().map(|(_, payload)| payload).collect();
        payloads.sort();
        let mut expected: Vec<String> = (0..200).map(|i| format!("m-{i}")).collect();
        expected.sort();
        assert_eq!(payloads, expected, "every message exactly once");
        for partition in 0..4 {
            let offset = admin
                .get_consumer_offset(
                    &Consumer::group(name("g")),
                    &id(stream),
                    &id(topic),
                    Some(partition),
                )
                .await
                .expect("get")
                .expect("committed");
            assert_eq!(offset.stored_offset, 49);
        }
    })
    .await;
}

fn reader_of(stream_id: u32) -> Permissions {
    let grant = StreamPermissions {
        read_stream: true,
        ..StreamPermissions::default()
    };
    Permissions {
        global: GlobalPermissions::default(),
        streams: Some(BTreeMap::from([(stream_id as usize, grant)])),
    }
}

/// A connected 0.9 client logged in as `username`.
async fn client_as(addr: SocketAddr, username: &str, password: &str) -> IggyClient {
    let client = sdk::client_without_login(addr).await;
    client
        .login_user(username, password)
        .await
        .unwrap_or_else(|error| panic!("login as {username}: {error}"));
    client
}

#[tokio::test]
async fn users_and_permissions() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let root = sdk::client(server.addr).await;
        let (readable, topic) = sdk::create_stream_and_topic(&root, "readable", "t", 1).await;
        let (other, other_topic) = sdk::create_stream_and_topic(&root, "other", "t", 1).await;
        for (stream, topic) in [(readable, topic), (other, other_topic)] {
            sdk::send_to(&root, stream, topic, 0, sdk::messages("m", 0..3)).await;
        }
        let created = root
            .create_user(
                "reader",
                "reader-pass",
                UserStatus::Active,
                Some(reader_of(readable)),
            )
            .await
            .expect("create user");
        assert_eq!((created.id, created.username.as_str()), (1, "reader"));
        assert_eq!(created.permissions, Some(reader_of(readable)));
        let duplicate = root
            .create_user("reader", "x-pass", UserStatus::Active, None)
            .await;
        assert_eq!(error_code(duplicate), code::USER_ALREADY_EXISTS);
        let users: Vec<(u32, String)> = root
            .get_users()
            .await
            .expect("list")
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect();
        assert_eq!(users, vec![(0, "iggy".into()), (1, "reader".into())]);
        let by_name = root
            .get_user(&name("reader"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            (by_name.id, by_name.permissions),
            (1, Some(reader_of(readable)))
        );

        let reader = client_as(server.addr, "reader", "reader-pass").await;
        check_reader_is_limited(&reader, readable, topic, other, other_topic).await;
        manage_the_reader(&root, &reader, server.addr, readable, topic).await;
    })
    .await;
}

/// The reader polls its stream and nothing else, and may not send or manage anything.
async fn check_reader_is_limited(
    reader: &IggyClient,
    readable: u32,
    topic: u32,
    other: u32,
    other_topic: u32,
) {
    let polled = sdk::poll_offset(reader, readable, topic, 0, 0, 10).await;
    assert_eq!(
        sdk::payload_strings(&polled.messages),
        ["m-0", "m-1", "m-2"]
    );
    let send = reader
        .send_messages(
            &id(readable),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut sdk::messages("no", 0..1),
        )
        .await;
    assert_eq!(
        error_code(send),
        code::UNAUTHORIZED,
        "send to the readable stream"
    );
    let elsewhere = reader
        .poll_messages(
            &id(other),
            &id(other_topic),
            Some(0),
            &Consumer::new(id(1)),
            &PollingStrategy::offset(0),
            10,
            false,
        )
        .await;
    assert_eq!(
        error_code(elsewhere),
        code::UNAUTHORIZED,
        "poll another stream"
    );
    assert_eq!(
        error_code(reader.create_stream("mine").await),
        code::UNAUTHORIZED
    );
    assert_eq!(
        error_code(reader.delete_stream(&id(other)).await),
        code::UNAUTHORIZED
    );
    assert_eq!(error_code(reader.get_users().await), code::UNAUTHORIZED);
    let create_user = reader
        .create_user("eve", "eve-pass", UserStatus::Active, None)
        .await;
    assert_eq!(error_code(create_user), code::UNAUTHORIZED);
}

/// Root grants the reader sending (live on its session), renames and deactivates it, and
/// deletes it; the reader changes its own password in between.
async fn manage_the_reader(
    root: &IggyClient,
    reader: &IggyClient,
    addr: SocketAddr,
    readable: u32,
    topic: u32,
) {
    let mut permissions = reader_of(readable);
    if let Some(streams) = permissions.streams.as_mut() {
        streams
            .get_mut(&(readable as usize))
            .expect("grant")
            .send_messages = true;
    }
    root.update_permissions(&name("reader"), Some(permissions))
        .await
        .expect("grant send");
    sdk::send_to(reader, readable, topic, 0, sdk::messages("granted", 0..1)).await;

    reader
        .change_password(&id(1), "reader-pass", "reader-new")
        .await
        .expect("change own password");
    let fresh = sdk::client_without_login(addr).await;
    assert_eq!(
        error_code(fresh.login_user("reader", "reader-pass").await),
        code::INVALID_CREDENTIALS
    );
    fresh
        .login_user("reader", "reader-new")
        .await
        .expect("new password");
    fresh.logout_user().await.expect("logout");

    let no_options = UserUpdateOptions::default();
    root.update_user(
        &id(1),
        Some("renamed"),
        Some(UserStatus::Inactive),
        &no_options,
    )
    .await
    .expect("rename and deactivate");
    // An inactive user's login is answered with Eviction 11, which the SDK maps to 40
    // Unauthenticated and, with reconnection off, reports as 8 Disconnected (iggy 0.11.0
    // tcp_client.rs, send_raw_with_response). The raw bytes are checked too.
    assert_eq!(
        error_code(fresh.login_user("renamed", "reader-new").await),
        code::DISCONNECTED
    );
    check_inactive_login_is_evicted(addr, "renamed", "reader-new");
    root.update_user(&id(1), None, Some(UserStatus::Active), &no_options)
        .await
        .expect("activate");
    fresh
        .login_user("renamed", "reader-new")
        .await
        .expect("active again");
    root.delete_user(&name("renamed"))
        .await
        .expect("delete user");
    assert!(root.get_user(&id(1)).await.expect("get").is_none());
    let deleted = sdk::client_without_login(addr).await;
    assert_eq!(
        error_code(deleted.login_user("renamed", "reader-new").await),
        code::INVALID_CREDENTIALS
    );
}

/// The bytes behind an inactive user's failed login: an Eviction with reason 11 UserInactive
/// for the registering client id (PROTOCOL-0.9.md §2.5).
fn check_inactive_login_is_evicted(addr: SocketAddr, username: &str, password: &str) {
    let mut raw = VsrConn::connect(addr, 0x1D1E);
    raw.send_bytes(&vsr::request_frame(
        &vsr::Request {
            client: 0x1D1E,
            session: 0,
            request: 0,
            operation: vsr::operation::REGISTER,
            code: 0,
            stamp: true,
        },
        &vsr::register_body(username, password),
    ));
    let eviction = raw.read_frame();
    assert_eq!(
        (
            eviction.command(),
            eviction.eviction_reason(),
            eviction.client()
        ),
        (vsr::command::EVICTION, 11, 0x1D1E),
        "UserInactive: {eviction:?}"
    );
}

#[tokio::test]
async fn personal_access_tokens() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let root = sdk::client(server.addr).await;
        let raw = root
            .create_personal_access_token("ci-token", PersonalAccessTokenExpiry::NeverExpire)
            .await
            .expect("create token");
        assert!(!raw.token.is_empty());
        let listed = root.get_personal_access_tokens().await.expect("list");
        let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["ci-token"]);
        assert!(listed[0].expiry_at.is_none());
        let duplicate = root
            .create_personal_access_token("ci-token", PersonalAccessTokenExpiry::NeverExpire)
            .await;
        assert!(duplicate.is_err(), "a token name is unique per user");

        let by_token = sdk::client_without_login(server.addr).await;
        let identity = by_token
            .login_with_personal_access_token(&raw.token)
            .await
            .expect("login with the token");
        assert_eq!(identity.user_id, 0);
        assert_eq!(by_token.get_me().await.expect("get_me").user_id, Some(0));
        by_token
            .create_stream("made-with-a-token")
            .await
            .expect("root's rights");

        root.delete_personal_access_token("ci-token")
            .await
            .expect("delete token");
        assert!(
            root.get_personal_access_tokens()
                .await
                .expect("list")
                .is_empty()
        );
        // A bad token is an Eviction 10, which the SDK reports as InvalidPersonalAccessToken.
        let refused = sdk::client_without_login(server.addr).await;
        let login = refused.login_with_personal_access_token(&raw.token).await;
        assert_eq!(error_code(login), code::INVALID_PERSONAL_ACCESS_TOKEN);
        refused
            .login_user("iggy", "iggy")
            .await
            .expect("the connection lives on");
    })
    .await;
}

#[tokio::test]
async fn high_level_producer_and_consumer() {
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
                .expect("message");
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

#[tokio::test]
async fn high_level_consumer_group() {
    use futures_util::StreamExt;

    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&admin, "orders", "created", 3).await;
        send_spread(&admin, stream, topic, 3, 90).await;
        let client = sdk::client(server.addr).await;
        let mut consumer = client
            .consumer_group("workers", "orders", "created")
            .expect("builder")
            .auto_commit(AutoCommit::When(AutoCommitWhen::PollingMessages))
            .create_consumer_group_if_not_exists()
            .auto_join_consumer_group()
            .polling_strategy(PollingStrategy::next())
            .poll_interval(IggyDuration::from(1_000))
            .batch_length(8)
            .build();
        consumer.init().await.expect("init the consumer");
        let mut payloads = BTreeSet::new();
        while payloads.len() < 90 {
            let received = consumer
                .next()
                .await
                .expect("stream goes on")
                .expect("message");
            let payload = String::from_utf8(received.message.payload.to_vec()).expect("UTF-8");
            assert!(payloads.insert(payload), "a message came twice");
        }
        assert_eq!(payloads, (0..90).map(|i| format!("m-{i}")).collect());
        assert_eq!(
            assignment(&admin, stream, topic, "workers").await,
            vec![vec![0, 1, 2]]
        );
        for partition in 0..3 {
            let offset = admin
                .get_consumer_offset(
                    &Consumer::group(name("workers")),
                    &id(stream),
                    &id(topic),
                    Some(partition),
                )
                .await
                .expect("get")
                .expect("auto-committed");
            assert_eq!(offset.stored_offset, 29);
        }
    })
    .await;
}

/// One scenario over one transport: login (by connecting), GetMe naming the transport,
/// cluster metadata, create a stream and a topic, send with headers, poll them back, and a
/// consumer group member draining the topic with auto-commit.
async fn scenario_over(via: &Via, addr: SocketAddr, server: &TestServer, transport: &str) {
    let client = sdk::client_via(addr, via).await;
    client.ping().await.expect("ping");
    let me = client.get_me().await.expect("get_me");
    assert_eq!((me.transport.as_str(), me.user_id), (transport, Some(0)));
    check_cluster_metadata(&client, server).await;
    let (stream, topic) = sdk::create_stream_and_topic(&client, "over", "t", 2).await;
    let mut sent: Vec<IggyMessage> = (0..10u32)
        .map(|i| {
            IggyMessage::builder()
                .payload(Bytes::from(format!("via-{i}")))
                .user_headers(BTreeMap::from([(
                    HeaderKey::try_from("i").unwrap(),
                    HeaderValue::from(i),
                )]))
                .build()
                .unwrap()
        })
        .collect();
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(1),
            &mut sent,
        )
        .await
        .expect("send with headers");
    let polled = sdk::poll_offset(&client, stream, topic, 1, 0, 100).await;
    assert_eq!(polled.messages.len(), 10);
    for (got, want) in polled.messages.iter().zip(&sent) {
        assert_eq!(
            (got.header.id, &got.payload),
            (want.header.id, &want.payload)
        );
        assert_eq!(
            got.user_headers_map().unwrap(),
            want.user_headers_map().unwrap()
        );
    }
    client
        .create_consumer_group(&id(stream), &id(topic), "g")
        .await
        .expect("group");
    client
        .join_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("join");
    let drained = drain_member(&client, stream, topic, "g", 2).await;
    assert_eq!(drained.len(), 10);
    assert!(drained.iter().all(|(partition, _)| *partition == 1));
    client.logout_user().await.expect("logout");
    client
        .login_user("iggy", "iggy")
        .await
        .expect("login again");
    client
        .delete_stream(&id(stream))
        .await
        .expect("delete stream");
}

#[tokio::test]
async fn one_scenario_over_tcp() {
    let server = TestServer::start(&[]);
    within(
        TEST_TIMEOUT,
        scenario_over(&Via::Tcp, server.addr, &server, "TCP"),
    )
    .await;
}

#[tokio::test]
async fn one_scenario_over_tcp_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let flags = certs.server_flags("tcp");
    let server = TestServer::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let via = Via::TcpTls {
        ca_file: certs.ca_file.clone(),
    };
    within(
        TEST_TIMEOUT,
        scenario_over(&via, server.addr, &server, "TCP"),
    )
    .await;
}

#[tokio::test]
async fn one_scenario_over_websocket() {
    let server = TestServer::start(&[]);
    let via = Via::WebSocket;
    within(
        TEST_TIMEOUT,
        scenario_over(&via, server.ws_addr, &server, "WebSocket"),
    )
    .await;
}

#[tokio::test]
async fn one_scenario_over_wss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let flags = certs.server_flags("websocket");
    let server = TestServer::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let via = Via::Wss {
        ca_file: certs.ca_file.clone(),
    };
    within(
        TEST_TIMEOUT,
        scenario_over(&via, server.ws_addr, &server, "WebSocket"),
    )
    .await;
}

const ATTACH: u32 = 14;
const POLL_ROUTING: u32 = 103;
const POLL_ON_PRIMARY: u32 = 104;
const OFFSET_ROUTING: u32 = 123;

/// A NonReplicated request of `conn`'s session carrying `code`.
fn non_replicated(conn: &VsrConn, code: u32) -> vsr::Request {
    vsr::Request {
        client: conn.client,
        session: conn.session,
        request: conn.request,
        operation: vsr::operation::NON_REPLICATED,
        code,
        stamp: false,
    }
}

/// An AttachConsumerSession body naming `(client, session)`.
fn session_ref(client: u128, session: u64) -> Vec<u8> {
    let mut out = client.to_le_bytes().to_vec();
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out
}

/// A topic of one partition made over 0.8, and a PollMessages body for it.
fn routed_topic(server: &TestServer) -> Vec<u8> {
    let mut setup = support::raw::RawConn::connect(server.addr);
    setup.login_root();
    let stream = support::raw::create_stream(&mut setup, "routed");
    let topic = support::raw::create_topic(&mut setup, stream, "t", 1);
    support::raw::poll_payload(stream, topic, 0, 0, 10)
}

/// GetPollRouting and GetConsumerOffsetRouting by hand on one node: the route names this
/// connection's session and this node; a body that is not the routed request is refused.
#[test]
fn poll_routes_name_this_session_and_this_node() {
    let server = TestServer::start(&[]);
    let poll = routed_topic(&server);
    let mut main = VsrConn::connect(server.addr, 0xA11CE);
    main.register("iggy", "iggy");
    let route = main.exchange(&vsr::request_frame(
        &non_replicated(&main, POLL_ROUTING),
        &poll,
    ));
    assert_eq!(route.status(), 0, "{route:?}");
    let body = &route.body;
    assert_eq!(
        u128::from_le_bytes(body[..16].try_into().unwrap()),
        main.client
    );
    assert_eq!(
        u64::from_le_bytes(body[16..24].try_into().unwrap()),
        main.session
    );
    // ClusterNode after the 32 bytes: name str32, ip str32, then the TCP port.
    let name_len = u32::from_le_bytes(body[32..36].try_into().unwrap()) as usize;
    let ip_at = 36 + name_len;
    let ip_len = u32::from_le_bytes(body[ip_at..ip_at + 4].try_into().unwrap()) as usize;
    let port_at = ip_at + 4 + ip_len;
    let tcp_port = u16::from_le_bytes(body[port_at..port_at + 2].try_into().unwrap());
    assert_eq!(tcp_port, server.addr.port());
    // 123 takes an offset's target: Consumer | stream | topic | partition flag | partition.
    let target = &poll[..poll.len() - 14];
    let routed = main.exchange(&vsr::request_frame(
        &non_replicated(&main, OFFSET_ROUTING),
        target,
    ));
    assert_eq!(routed.status(), 0, "{routed:?}");
    assert_eq!(routed.body[..24], route.body[..24]);
    let garbage = main.exchange(&vsr::request_frame(
        &non_replicated(&main, POLL_ROUTING),
        b"not a poll",
    ));
    assert_ne!(garbage.status(), 0);
}

/// AttachConsumerSession by hand: a data connection attaches, after its own Register, to a
/// live session of its own user only, then polls with PollMessagesOnPrimary; a closed
/// session can no longer be attached to.
#[test]
fn a_data_connection_attaches_to_a_live_session_only() {
    let server = TestServer::start(&[]);
    let poll = routed_topic(&server);
    let mut main = VsrConn::connect(server.addr, 0xA11CE);
    main.register("iggy", "iggy");
    let mut data = VsrConn::connect(server.addr, 0xDA7A);
    let attach = |data: &mut VsrConn, body: &[u8]| {
        let request = non_replicated(data, ATTACH);
        data.exchange(&vsr::request_frame(&request, body))
    };
    let early = attach(&mut data, &session_ref(main.client, main.session));
    assert_eq!(early.status(), code::UNAUTHENTICATED, "before Register");
    data.register("iggy", "iggy");
    let wrong = attach(&mut data, &session_ref(main.client, main.session + 1));
    assert_eq!(wrong.status(), code::UNAUTHORIZED, "no such session");
    let short = attach(&mut data, &session_ref(main.client, main.session)[..31]);
    assert_eq!(short.status(), 3, "a 31-byte attach");
    let attached = attach(&mut data, &session_ref(main.client, main.session));
    assert_eq!((attached.status(), attached.body.len()), (0, 0));
    let polled = data.exchange(&vsr::request_frame(
        &non_replicated(&data, POLL_ON_PRIMARY),
        &poll,
    ));
    assert_eq!(polled.status(), 0, "{polled:?}");
    // partition_id u32 | current_offset u64 | messages_count u32: an empty partition.
    assert_eq!(polled.body.len(), 16);

    let (client, session) = (main.client, main.session);
    drop(main);
    let mut late = VsrConn::connect(server.addr, 0x1A7E);
    late.register("iggy", "iggy");
    let started = std::time::Instant::now();
    while attach(&mut late, &session_ref(client, session)).status() != code::UNAUTHORIZED {
        assert!(
            started.elapsed() < TEST_TIMEOUT,
            "the closed session stayed attachable"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
