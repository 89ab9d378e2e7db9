//! The client against a real galgo-server: connection strings, logins, metadata calls,
//! prepared and typed sends and polls. (Consumer groups are not tested here: galgo answers
//! them with FeatureUnavailable until they land.)

mod support {
    pub mod galgo_server;
}

use galgo_client::protocol::message::encode_message;
use galgo_client::protocol::{
    Consumer, ErrorCode, Identifier, Partitioning, PollMessages, PollingStrategy,
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
    }
}

#[test]
fn login_metadata_send_and_poll() {
    let server = GalgoServer::start();
    run(async {
        let mut client = Client::from_connection_string(&server.connection_string())
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
    let server = GalgoServer::start();
    run(async {
        let mut client = Client::from_connection_string(&server.connection_string())
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
        let wrong = format!("iggy+tcp://iggy:wrong@{}", server.addr);
        let error = Client::from_connection_string(&wrong).await.err().unwrap();
        assert_eq!(
            error.server_code(),
            Some(ErrorCode::InvalidCredentials),
            "{error}"
        );

        let ws = format!("iggy+ws://iggy:iggy@{}", server.addr);
        let error = Client::from_connection_string(&ws).await.err().unwrap();
        assert!(matches!(
            error,
            ClientError::UnsupportedTransport(TransportKind::WebSocket)
        ));
        let tls = format!("iggy://iggy:iggy@{}?tls=true", server.addr);
        let error = Client::from_connection_string(&tls).await.err().unwrap();
        assert!(matches!(error, ClientError::UnsupportedOption(_)));
    });
}
