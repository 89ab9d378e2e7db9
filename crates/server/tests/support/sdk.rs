//! The official Iggy Rust SDK (crate `iggy` 0.10.0) as the tests use it.
//!
//! Clients are built from the connection string `iggy://iggy:iggy@{addr}` (TCP, auto-login as
//! root), with automatic reconnection turned off: a server that drops a connection must fail the
//! test, not be papered over by the SDK's reconnect-and-retry (PROTOCOL.md §11.2).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iggy::prelude::*;
use iggy_common::{ConnectionString, TcpConnectionStringOptions};

/// Upper bound for one SDK-driven test body.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `future`, panicking if it takes longer than `timeout`.
#[track_caller]
pub fn within<F: Future>(timeout: Duration, future: F) -> impl Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    async move {
        match tokio::time::timeout(timeout, future).await {
            Ok(output) => output,
            Err(_) => panic!("timed out after {timeout:?} (started at {caller})"),
        }
    }
}

fn config(addr: SocketAddr, login: bool) -> TcpClientConfig {
    let connection_string = format!("iggy://iggy:iggy@{addr}");
    let parsed = ConnectionString::<TcpConnectionStringOptions>::from_str(&connection_string)
        .expect("valid connection string");
    let mut config = TcpClientConfig::from(parsed);
    config.reconnection.enabled = false;
    config.nodelay = true;
    if !login {
        config.auto_login = AutoLogin::Disabled;
    }
    config
}

async fn connect_with(config: TcpClientConfig) -> IggyClient {
    let tcp = TcpClient::create(Arc::new(config)).expect("create TCP client");
    let client = IggyClient::create(ClientWrapper::Tcp(tcp), None, None);
    within(Duration::from_secs(20), client.connect())
        .await
        .expect("connect the SDK client");
    client
}

/// How a test client reaches the server.
#[derive(Clone, Debug)]
pub enum Via {
    /// Plain TCP.
    Tcp,
    /// TCP + TLS, trusting `ca_file`, verifying the name `localhost`.
    TcpTls { ca_file: PathBuf },
    /// Plain WebSocket.
    WebSocket,
    /// WebSocket + TLS, trusting `ca_file`, verifying the name `localhost`.
    Wss { ca_file: PathBuf },
}

/// A connected client over `via` to `addr`, logged in as root, reconnection off. TLS clients
/// validate the certificate against the CA file for the name `localhost` (PROTOCOL.md §2.2).
pub async fn client_via(addr: SocketAddr, via: &Via) -> IggyClient {
    let wrapper = match via {
        Via::Tcp => ClientWrapper::Tcp(tcp_client(config(addr, true))),
        Via::TcpTls { ca_file } => {
            let mut config = config(addr, true);
            config.tls_enabled = true;
            config.tls_domain = "localhost".to_owned();
            config.tls_ca_file = Some(ca_file.display().to_string());
            config.tls_validate_certificate = true;
            ClientWrapper::Tcp(tcp_client(config))
        }
        Via::WebSocket => ClientWrapper::WebSocket(websocket_client(ws_config(addr, None))),
        Via::Wss { ca_file } => {
            ClientWrapper::WebSocket(websocket_client(ws_config(addr, Some(ca_file))))
        }
    };
    let client = IggyClient::create(wrapper, None, None);
    within(Duration::from_secs(20), client.connect())
        .await
        .unwrap_or_else(|error| panic!("connect the SDK client via {via:?}: {error}"));
    client
}

fn tcp_client(config: TcpClientConfig) -> TcpClient {
    TcpClient::create(Arc::new(config)).expect("create TCP client")
}

fn websocket_client(config: WebSocketClientConfig) -> WebSocketClient {
    WebSocketClient::create(Arc::new(config)).expect("create WebSocket client")
}

fn ws_config(addr: SocketAddr, ca_file: Option<&PathBuf>) -> WebSocketClientConfig {
    let mut config = WebSocketClientConfig {
        server_address: addr.to_string(),
        // Root's credentials, as the TCP connection string gives them.
        auto_login: config(addr, true).auto_login,
        ..WebSocketClientConfig::default()
    };
    config.reconnection.enabled = false;
    if let Some(ca_file) = ca_file {
        config.tls_enabled = true;
        config.tls_domain = "localhost".to_owned();
        config.tls_ca_file = Some(ca_file.display().to_string());
        config.tls_validate_certificate = true;
    }
    config
}

/// A connected client, logged in as root `iggy`/`iggy`.
pub async fn client(addr: SocketAddr) -> IggyClient {
    connect_with(config(addr, true)).await
}

/// A connected client that has not logged in.
pub async fn client_without_login(addr: SocketAddr) -> IggyClient {
    connect_with(config(addr, false)).await
}

/// A client built by the SDK's own connection-string path, with its defaults untouched.
pub async fn client_from_connection_string(addr: SocketAddr) -> IggyClient {
    let client = IggyClient::from_connection_string(&format!("iggy://iggy:iggy@{addr}"))
        .expect("valid connection string");
    within(Duration::from_secs(20), client.connect())
        .await
        .expect("connect the SDK client");
    client
}

/// A numeric identifier.
pub fn id(value: u32) -> Identifier {
    Identifier::numeric(value).expect("numeric identifier")
}

/// A string identifier.
pub fn name(value: &str) -> Identifier {
    Identifier::named(value).expect("named identifier")
}

/// A message with this payload and no headers.
pub fn message(payload: impl Into<Bytes>) -> IggyMessage {
    IggyMessage::builder()
        .payload(payload.into())
        .build()
        .expect("valid message")
}

/// Messages whose payloads are `"{prefix}-{i}"` for `i` in `range`.
pub fn messages(prefix: &str, range: std::ops::Range<u64>) -> Vec<IggyMessage> {
    range
        .map(|i| message(Bytes::from(format!("{prefix}-{i}"))))
        .collect()
}

/// Creates a stream and a topic with `partitions` partitions (server defaults elsewhere);
/// returns `(stream_id, topic_id)`.
pub async fn create_stream_and_topic(
    client: &IggyClient,
    stream: &str,
    topic: &str,
    partitions: u32,
) -> (u32, u32) {
    let stream_id = client
        .create_stream(stream)
        .await
        .expect("create stream")
        .id;
    let topic = client
        .create_topic(
            &id(stream_id),
            topic,
            partitions,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .expect("create topic");
    assert_eq!(topic.partitions_count, partitions);
    (stream_id, topic.id)
}

/// Polls up to `count` messages of one partition from `offset` as consumer 1, no auto-commit.
pub async fn poll_offset(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    offset: u64,
    count: u32,
) -> PolledMessages {
    let polled = client
        .poll_messages(
            &id(stream_id),
            &id(topic_id),
            Some(partition_id),
            &Consumer::new(id(1)),
            &PollingStrategy::offset(offset),
            count,
            false,
        )
        .await
        .expect("poll messages");
    // The SDK silently stops at a short buffer, so compare the declared count ourselves.
    assert_eq!(
        polled.count as usize,
        polled.messages.len(),
        "messages_count vs messages in a poll response"
    );
    polled
}

/// Every message of a partition from offset 0, polled in pages.
pub async fn poll_all(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
) -> Vec<IggyMessage> {
    const PAGE: u32 = 100;
    let mut all = Vec::new();
    loop {
        let polled = poll_offset(
            client,
            stream_id,
            topic_id,
            partition_id,
            all.len() as u64,
            PAGE,
        )
        .await;
        if polled.messages.is_empty() {
            return all;
        }
        all.extend(polled.messages);
    }
}

/// The payloads of `messages` as UTF-8 strings.
pub fn payload_strings(messages: &[IggyMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).expect("UTF-8 payload"))
        .collect()
}

/// The offsets of `messages`.
pub fn offsets(messages: &[IggyMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.header.offset).collect()
}
