//! The 0.9-generation official Iggy Rust SDK (crate `iggy` 0.11.0, renamed `iggy_next`) as the
//! tests use it: the same helpers as [`super::sdk`], for clients that speak VSR framing
//! (PROTOCOL-0.9.md).
//!
//! Clients are built from the connection string `iggy://iggy:iggy@{addr}` (auto-login as root),
//! with automatic reconnection turned off: a reconnect would mint a new client id and session
//! (PROTOCOL-0.9.md §9) and hide a server that dropped the connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use iggy_common_next::{ConnectionString, TcpConnectionStringOptions};
use iggy_next::prelude::*;

use super::sdk::{Via, within};

/// How long connecting (and the login and cluster-metadata check that follow it) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

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

fn tcp_client(config: TcpClientConfig) -> TcpClient {
    TcpClient::create(Arc::new(config)).expect("create TCP client")
}

fn websocket_client(config: WebSocketClientConfig) -> WebSocketClient {
    WebSocketClient::create(Arc::new(config)).expect("create WebSocket client")
}

fn ws_config(addr: SocketAddr, ca_file: Option<&PathBuf>) -> WebSocketClientConfig {
    let mut config = WebSocketClientConfig {
        server_address: addr.to_string(),
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

fn tls_config(addr: SocketAddr, ca_file: &Path) -> TcpClientConfig {
    let mut config = config(addr, true);
    config.tls_enabled = true;
    config.tls_domain = "localhost".to_owned();
    config.tls_ca_file = Some(ca_file.display().to_string());
    config.tls_validate_certificate = true;
    config
}

/// A connected 0.9 client over `via` to `addr`, logged in as root, reconnection off. TLS
/// clients validate the certificate against the CA file for the name `localhost`.
pub async fn client_via(addr: SocketAddr, via: &Via) -> IggyClient {
    let wrapper = match via {
        Via::Tcp => ClientWrapper::Tcp(tcp_client(config(addr, true))),
        Via::TcpTls { ca_file } => ClientWrapper::Tcp(tcp_client(tls_config(addr, ca_file))),
        Via::WebSocket => ClientWrapper::WebSocket(websocket_client(ws_config(addr, None))),
        Via::Wss { ca_file } => {
            ClientWrapper::WebSocket(websocket_client(ws_config(addr, Some(ca_file))))
        }
    };
    let client = IggyClient::create(wrapper, None, None);
    within(CONNECT_TIMEOUT, client.connect())
        .await
        .unwrap_or_else(|error| panic!("connect the 0.9 SDK client via {via:?}: {error}"));
    client
}

/// A connected 0.9 client over TCP, logged in as root `iggy`/`iggy`.
pub async fn client(addr: SocketAddr) -> IggyClient {
    client_via(addr, &Via::Tcp).await
}

/// A connected 0.9 client over TCP that has not logged in.
pub async fn client_without_login(addr: SocketAddr) -> IggyClient {
    let client = IggyClient::create(
        ClientWrapper::Tcp(tcp_client(config(addr, false))),
        None,
        None,
    );
    within(CONNECT_TIMEOUT, client.connect())
        .await
        .expect("connect the 0.9 SDK client");
    client
}

/// A connected 0.9 client built by the SDK's own connection-string path, defaults untouched
/// (reconnection on).
pub async fn client_from_connection_string(addr: SocketAddr) -> IggyClient {
    let client = IggyClient::from_connection_string(&format!("iggy://iggy:iggy@{addr}"))
        .expect("valid connection string");
    within(CONNECT_TIMEOUT, client.connect())
        .await
        .expect("connect the 0.9 SDK client");
    client
}

/// The protocol code of a call that must fail.
#[track_caller]
pub fn error_code<T: std::fmt::Debug>(result: Result<T, IggyError>) -> u32 {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(error) => error.as_code(),
    }
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

/// Topic options with `partitions` partitions and server defaults for everything else.
pub fn partitions(partitions: u32) -> TopicCreateOptions {
    TopicCreateOptions {
        partitions_count: Some(partitions),
        ..TopicCreateOptions::default()
    }
}

/// Creates a stream and a topic with `partitions` partitions (server defaults elsewhere);
/// returns `(stream_id, topic_id)`.
pub async fn create_stream_and_topic(
    client: &IggyClient,
    stream: &str,
    topic: &str,
    partition_count: u32,
) -> (u32, u32) {
    let stream_id = client
        .create_stream(stream)
        .await
        .expect("create stream")
        .id;
    let topic = client
        .create_topic(&id(stream_id), topic, &partitions(partition_count))
        .await
        .expect("create topic");
    assert_eq!(topic.partitions_count, partition_count);
    (stream_id, topic.id)
}

/// Sends `messages` to one partition.
pub async fn send_to(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    partition: u32,
    mut messages: Vec<IggyMessage>,
) {
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(partition),
            &mut messages,
        )
        .await
        .expect("send messages");
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
        let from = all.len() as u64;
        let polled = poll_offset(client, stream_id, topic_id, partition_id, from, PAGE).await;
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
