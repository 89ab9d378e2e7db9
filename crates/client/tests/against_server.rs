//! The client against a real galgo-server: connection strings, logins, metadata calls,
//! prepared and typed sends and polls, and the management calls the CLI makes.

mod support {
    // Each test binary uses a different part of the harness.
    #[allow(dead_code)]
    pub mod galgo_server;
}

use std::net::SocketAddr;

use galgo_client::protocol::command::offsets::OffsetTarget;
use galgo_client::protocol::command::topics::{CompressionAlgorithm, CreateTopic, UpdateTopic};
use galgo_client::protocol::command::users::{CreateUser, UserStatus};
use galgo_client::protocol::message::encode_message;
use galgo_client::protocol::{
    Consumer, ErrorCode, GlobalPermissions, Identifier, Partitioning, Permissions, PollMessages,
    PollingStrategy,
};
use galgo_client::{Client, ClientError, PreparedBatch, TransportKind};
use support::galgo_server::GalgoServer;

fn run<F: Future>(future: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(future)
}

fn message(payload: &[u8], origin_us: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(0, origin_us, payload, b"", &mut out);
    out
}

fn poll(stream: &Identifier, topic: &Identifier, partition: u32, offset: u64) -> PollMessages {
    PollMessages {
        consumer: Consumer::Single(Identifier::Numeric(1)),
        stream: stream.clone(),
        topic: topic.clone(),
        partition_id: Some(partition),
        strategy: PollingStrategy::Offset(offset),
        count: 100,
        auto_commit: false,
        wait_ms: 0,
    }
}

/// The connection string of `server` for the generation `protocol` ("0.8" or "0.9").
fn speaking(server: &GalgoServer, protocol: &str) -> String {
    format!("{}?protocol={protocol}", server.connection_string())
}

#[test]
fn login_metadata_send_and_poll() {
    send_and_poll_in("0.8");
}

#[test]
fn login_metadata_send_and_poll_in_the_0_9_generation() {
    send_and_poll_in("0.9");
}

fn send_and_poll_in(protocol: &str) {
    let server = GalgoServer::start();
    run(async {
        let mut client = Client::from_connection_string(&speaking(&server, protocol))
            .await
            .expect("connect and log in");
        client.ping().await.unwrap();
        let stats = client.get_stats().await.unwrap();
        assert!(!stats.iggy_server_version.is_empty());

        let stream = client.create_stream("orders").await.unwrap();
        let stream = Identifier::Numeric(stream.header.id);
        let topic = client.create_topic(&stream, "created", 2).await.unwrap();
        assert_eq!(topic.partitions.len(), 2);
        let topic = Identifier::Name("created".into());
        assert!(client.get_topic(&stream, &topic).await.unwrap().is_some());

        let (a, b) = (message(b"first", 11), message(b"second", 12));
        client
            .send_messages(&stream, &topic, &Partitioning::PartitionId(1), &[&a, &b])
            .await
            .unwrap();
        let c = message(b"third", 0);
        let mut batch = PreparedBatch::new(&stream, &topic, &Partitioning::PartitionId(1), &[&c]);
        batch.set_origin_timestamps(99);
        let (sent, batch) = client.send_prepared(batch).await;
        sent.unwrap();
        let (sent, _) = client.send_prepared(batch).await;
        sent.unwrap();

        let polled = client
            .poll_messages(&poll(&stream, &topic, 1, 0))
            .await
            .unwrap();
        assert_eq!(polled.header.messages_count, 4);
        assert_eq!(polled.header.current_offset, 3);
        let seen: Vec<(u64, Vec<u8>, u64)> = polled
            .iter()
            .map(|m| m.unwrap())
            .map(|m| (m.offset(), m.payload().to_vec(), m.origin_timestamp()))
            .collect();
        assert_eq!(
            seen,
            [
                (0, b"first".to_vec(), 11),
                (1, b"second".to_vec(), 12),
                (2, b"third".to_vec(), 99),
                (3, b"third".to_vec(), 99)
            ]
        );
        let empty = client
            .poll_messages(&poll(&stream, &topic, 0, 0))
            .await
            .unwrap();
        assert_eq!(empty.header.messages_count, 0);

        client.delete_stream(&stream).await.unwrap();
        assert!(client.get_stream(&stream).await.unwrap().is_none());
        assert!(client.get_streams().await.unwrap().is_empty());
    });
}

#[test]
fn server_errors_keep_the_connection_usable() {
    for protocol in ["0.8", "0.9"] {
        errors_keep_the_connection_usable_in(protocol);
    }
}

fn errors_keep_the_connection_usable_in(protocol: &str) {
    let server = GalgoServer::start();
    run(async {
        let mut client = Client::from_connection_string(&speaking(&server, protocol))
            .await
            .unwrap();
        let missing = Identifier::Name("missing".into());
        let error = client.delete_stream(&missing).await.unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(ErrorCode::StreamIdNotFound),
            "{error}"
        );
        client.create_stream("s").await.unwrap();
        let error = client.create_stream("s").await.unwrap_err();
        assert_eq!(
            error.server_code(),
            Some(ErrorCode::StreamNameAlreadyExists)
        );
        client.ping().await.unwrap();
    });
}

#[test]
fn wrong_credentials_and_unsupported_transports_are_refused() {
    let server = GalgoServer::start();
    run(async {
        for protocol in ["0.8", "0.9"] {
            let wrong = format!("iggy+tcp://iggy:wrong@{}?protocol={protocol}", server.addr);
            let error = Client::from_connection_string(&wrong).await.err().unwrap();
            assert_eq!(
                error.server_code(),
                Some(ErrorCode::InvalidCredentials),
                "{protocol}: {error}"
            );
        }

        let quic = format!("iggy+quic://iggy:iggy@{}", server.addr);
        let error = Client::from_connection_string(&quic).await.err().unwrap();
        assert!(matches!(
            error,
            ClientError::UnsupportedTransport(TransportKind::Quic)
        ));
    });
}

#[test]
fn management_calls_round_trip() {
    management_calls_in("0.8");
}

#[test]
fn management_calls_round_trip_in_the_0_9_generation() {
    management_calls_in("0.9");
}

fn management_calls_in(protocol: &str) {
    let server = GalgoServer::start();
    run(async {
        let mut client = Client::from_connection_string(&speaking(&server, protocol))
            .await
            .unwrap();
        client_calls(&mut client).await;
        let (stream, topic) = stream_and_topic_calls(&mut client).await;
        offset_and_purge_calls(&mut client, &stream, &topic).await;
        user_calls(&mut client).await;
        token_calls(&mut client, server.addr).await;
    });
}

async fn client_calls(client: &mut Client) {
    let me = client.get_me().await.unwrap();
    assert!(client.get_client(me.client_id).await.unwrap().is_some());
    assert!(!client.get_clients().await.unwrap().is_empty());
}

/// Creates, renames and reshapes a stream and its topic; returns the names they end with.
async fn stream_and_topic_calls(client: &mut Client) -> (Identifier, Identifier) {
    client.create_stream("a").await.unwrap();
    let stream = Identifier::Name("a".into());
    client.update_stream(&stream, "b").await.unwrap();
    let stream = Identifier::Name("b".into());
    let create = CreateTopic {
        stream: stream.clone(),
        partitions_count: 1,
        compression: CompressionAlgorithm::Gzip,
        message_expiry_us: 3_600_000_000,
        max_topic_size_bytes: 1 << 30,
        replication_factor: 1,
        name: "t".into(),
    };
    let created = client.create_topic_with(&create).await.unwrap();
    assert_eq!(created.header.message_expiry_us, 3_600_000_000);
    let topic = Identifier::Name("t".into());
    client.create_partitions(&stream, &topic, 2).await.unwrap();
    client.delete_partitions(&stream, &topic, 1).await.unwrap();
    let update = UpdateTopic {
        stream: stream.clone(),
        topic: topic.clone(),
        compression: Some(CompressionAlgorithm::None),
        message_expiry_us: Some(0),
        max_topic_size_bytes: Some(0),
        replication_factor: 1,
        name: "u".into(),
    };
    client.update_topic(&update).await.unwrap();
    let topics = client.get_topics(&stream).await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(
        (topics[0].name.as_str(), topics[0].partitions_count),
        ("u", 2)
    );
    (stream, Identifier::Name("u".into()))
}

async fn offset_and_purge_calls(client: &mut Client, stream: &Identifier, topic: &Identifier) {
    let m = message(b"x", 1);
    client
        .send_messages(stream, topic, &Partitioning::PartitionId(0), &[&m])
        .await
        .unwrap();
    let target = OffsetTarget {
        consumer: Consumer::Single(Identifier::Numeric(7)),
        stream: stream.clone(),
        topic: topic.clone(),
        partition_id: Some(0),
    };
    assert!(client.get_consumer_offset(&target).await.unwrap().is_none());
    client.store_consumer_offset(&target, 0).await.unwrap();
    let stored = client.get_consumer_offset(&target).await.unwrap().unwrap();
    assert_eq!((stored.stored_offset, stored.current_offset), (0, 0));
    client.delete_consumer_offset(&target).await.unwrap();
    client.purge_topic(stream, topic).await.unwrap();
    client.purge_stream(stream).await.unwrap();
}

async fn user_calls(client: &mut Client) {
    let user = client
        .create_user(&CreateUser {
            username: "alice".into(),
            password: "secret1".into(),
            status: UserStatus::Active,
            permissions: None,
        })
        .await
        .unwrap();
    let alice = Identifier::Numeric(user.header.id);
    client
        .update_user(&alice, Some("alicia"), Some(UserStatus::Inactive))
        .await
        .unwrap();
    let permissions = Permissions {
        global: GlobalPermissions {
            read_streams: true,
            ..GlobalPermissions::default()
        },
        ..Permissions::default()
    };
    client
        .update_permissions(&alice, Some(permissions.clone()))
        .await
        .unwrap();
    let details = client.get_user(&alice).await.unwrap().unwrap();
    assert_eq!(details.header.username, "alicia");
    assert_eq!(details.permissions, Some(permissions));
    client
        .change_password(&alice, "secret1", "secret2")
        .await
        .unwrap();
    assert_eq!(client.get_users().await.unwrap().len(), 2);
    client.delete_user(&alice).await.unwrap();
    assert!(client.get_user(&alice).await.unwrap().is_none());
}

/// A personal access token logs a second client in until it is deleted.
async fn token_calls(client: &mut Client, addr: SocketAddr) {
    let token = client.create_personal_access_token("cli", 0).await.unwrap();
    assert_eq!(client.get_personal_access_tokens().await.unwrap().len(), 1);
    let mut by_token = Client::from_connection_string(&format!("iggy://{token}@{addr}"))
        .await
        .unwrap();
    by_token.ping().await.unwrap();
    client.delete_personal_access_token("cli").await.unwrap();
    assert!(
        client
            .get_personal_access_tokens()
            .await
            .unwrap()
            .is_empty()
    );
}
