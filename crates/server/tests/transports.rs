//! The transports besides plain TCP (which the other suites use): WebSocket, TCP+TLS and WSS.
//!
//! * The official SDK (`iggy` 0.10.0) drives the whole command set over each, with TLS clients
//!   validating the server's certificate against a CA file for the name `localhost`.
//! * A 16 MB message goes out and comes back over each.
//! * Raw WebSocket frames check what the SDK does not exercise: requests split across messages
//!   or sharing one, Ping/Pong, Text, Close, and the message size limit.
//! * Fragmented messages with control frames between fragments, and WebSocket, TCP+TLS and
//!   WSS connections that move to the shard of their partitions mid-stream.
//! * Broken TLS handshakes, plain frames to a TLS port and HTTP that is not an upgrade are
//!   refused, and clients already connected do not notice.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iggy::prelude::*;
use rustls_pki_types::{CertificateDer, pem::PemObject};
use support::{
    TestServer,
    certs::TestCertificates,
    raw,
    sdk::{self, TEST_TIMEOUT, Via, id, within},
};
use tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{CloseCode, Data, OpCode},
    },
};

/// How long a raw socket waits for the server in these tests.
const RAW_TIMEOUT: Duration = Duration::from_secs(10);
/// The big message: 16 MB (under tungstenite's default 16 MiB frame limit of the SDK's
/// receiving side, with room for the poll response's headers).
const BIG_MESSAGE_BYTES: usize = 16_000_000;

fn start(flags: &[String]) -> TestServer {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    TestServer::start(&flags)
}

/// Every command of the core set, over one client, checking the session's transport code.
async fn every_command(client: &IggyClient, server: &TestServer, transport: &str) {
    client.ping().await.expect("ping");
    check_session(client, server, transport).await;
    let metadata = client
        .get_cluster_metadata()
        .await
        .expect("get_cluster_metadata");
    let endpoints = &metadata.nodes[0].endpoints;
    assert_eq!(
        (endpoints.tcp, endpoints.websocket),
        (server.addr.port(), server.ws_addr.port()),
        "cluster metadata reports the bound ports"
    );

    let stream = client.create_stream("s").await.expect("create stream").id;
    client
        .update_stream(&id(stream), "renamed")
        .await
        .expect("update stream");
    let found = client.get_stream(&sdk::name("renamed")).await.unwrap();
    assert_eq!(found.expect("stream by new name").id, stream);
    assert_eq!(client.get_streams().await.unwrap().len(), 1);

    let topic = topics_and_partitions(client, stream).await;
    messages_and_offsets(client, stream, topic).await;

    let stats = client.get_stats().await.expect("get_stats");
    assert_eq!(
        (
            stats.streams_count,
            stats.topics_count,
            stats.partitions_count
        ),
        (1, 1, 3)
    );
    assert_eq!(stats.messages_count, 15);

    client.purge_topic(&id(stream), &id(topic)).await.unwrap();
    assert!(sdk::poll_all(client, stream, topic, 0).await.is_empty());
    client.purge_stream(&id(stream)).await.unwrap();
    client.delete_topic(&id(stream), &id(topic)).await.unwrap();
    assert!(client.get_topics(&id(stream)).await.unwrap().is_empty());
    client.delete_stream(&id(stream)).await.unwrap();
    assert!(client.get_streams().await.unwrap().is_empty());
}

/// GetMe, GetClient, GetClients, logout and login: the record names this transport and peer.
async fn check_session(client: &IggyClient, server: &TestServer, transport: &str) {
    let me = client.get_me().await.expect("get_me");
    assert_eq!(me.transport, transport);
    assert_eq!(me.user_id, Some(0));
    let peer: SocketAddr = me.address.parse().expect("the address is ip:port");
    assert_eq!(peer.ip(), server.addr.ip());
    assert!(
        peer.port() != 0
            && peer.port() != server.addr.port()
            && peer.port() != server.ws_addr.port()
    );
    let clients = client.get_clients().await.expect("get_clients");
    let listed = clients
        .iter()
        .find(|other| other.client_id == me.client_id)
        .expect("GetClients lists this client");
    assert_eq!(
        (listed.transport.as_str(), listed.address.as_str()),
        (transport, me.address.as_str())
    );
    let one = client.get_client(me.client_id).await.expect("get_client");
    assert_eq!(one.expect("this client").transport, transport);
    client.logout_user().await.expect("logout");
    client
        .login_user("iggy", "iggy")
        .await
        .expect("login again");
}

/// Creates, updates, grows and shrinks a topic; returns its id (3 partitions left).
async fn topics_and_partitions(client: &IggyClient, stream: u32) -> u32 {
    let topic = client
        .create_topic(
            &id(stream),
            "t",
            2,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .expect("create topic")
        .id;
    client
        .update_topic(
            &id(stream),
            &id(topic),
            "t2",
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await
        .expect("update topic");
    client
        .create_partitions(&id(stream), &id(topic), 2)
        .await
        .expect("create partitions");
    client
        .delete_partitions(&id(stream), &id(topic), 1)
        .await
        .expect("delete partitions");
    let details = client
        .get_topic(&id(stream), &sdk::name("t2"))
        .await
        .unwrap()
        .expect("topic by new name");
    assert_eq!((details.id, details.partitions_count), (topic, 3));
    assert_eq!(client.get_topics(&id(stream)).await.unwrap().len(), 1);
    topic
}

/// Sends (around a flush), polls, and stores, reads and deletes a consumer offset.
async fn messages_and_offsets(client: &IggyClient, stream: u32, topic: u32) {
    let send = |prefix: &'static str, count: u64| async move {
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(0),
                &mut sdk::messages(prefix, 0..count),
            )
            .await
            .expect("send")
    };
    send("saved", 10).await;
    client
        .flush_unsaved_buffer(&id(stream), &id(topic), 0, true)
        .await
        .expect("flush");
    send("journal", 5).await;
    let all = sdk::poll_all(client, stream, topic, 0).await;
    assert_eq!(sdk::offsets(&all), (0..15).collect::<Vec<u64>>());
    let payloads = sdk::payload_strings(&all);
    assert_eq!(
        (payloads[0].as_str(), payloads[14].as_str()),
        ("saved-0", "journal-4")
    );

    let consumer = Consumer::new(id(1));
    let (s, t) = (id(stream), id(topic));
    client
        .store_consumer_offset(&consumer, &s, &t, Some(0), 7)
        .await
        .expect("store offset");
    let stored = client.get_consumer_offset(&consumer, &s, &t, Some(0)).await;
    assert_eq!(stored.unwrap().expect("stored").stored_offset, 7);
    client
        .delete_consumer_offset(&consumer, &s, &t, Some(0))
        .await
        .expect("delete offset");
    let deleted = client.get_consumer_offset(&consumer, &s, &t, Some(0)).await;
    assert!(deleted.unwrap().is_none());
}

/// Sends one 16 MB message and polls it back byte for byte.
async fn big_message_round_trip(client: &IggyClient) {
    let (stream, topic) = sdk::create_stream_and_topic(client, "big", "t", 1).await;
    let payload: Bytes = (0..BIG_MESSAGE_BYTES)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut [sdk::message(payload.clone())],
        )
        .await
        .expect("send a 16 MB message");
    let polled = sdk::poll_offset(client, stream, topic, 0, 0, 1).await;
    assert_eq!(polled.messages.len(), 1);
    assert!(
        polled.messages[0].payload == payload,
        "the 16 MB payload came back changed"
    );
}

#[tokio::test]
async fn every_command_and_a_16_mb_message_over_websocket() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client_via(server.ws_addr, &Via::WebSocket).await;
        every_command(&client, &server, "WebSocket").await;
        big_message_round_trip(&client).await;
    })
    .await;
}

#[tokio::test]
async fn every_command_and_a_16_mb_message_over_tcp_tls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let server = start(&certs.server_flags("tcp"));
    within(TEST_TIMEOUT, async {
        let via = Via::TcpTls {
            ca_file: certs.ca_file.clone(),
        };
        let client = sdk::client_via(server.addr, &via).await;
        every_command(&client, &server, "TCP").await;
        big_message_round_trip(&client).await;
    })
    .await;
}

#[tokio::test]
async fn every_command_and_a_16_mb_message_over_wss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let server = start(&certs.server_flags("websocket"));
    within(TEST_TIMEOUT, async {
        let via = Via::Wss {
            ca_file: certs.ca_file.clone(),
        };
        let client = sdk::client_via(server.ws_addr, &via).await;
        every_command(&client, &server, "WebSocket").await;
        big_message_round_trip(&client).await;
    })
    .await;
}

#[tokio::test]
async fn a_self_signed_certificate_is_generated_once_and_trusted_by_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_file = dir.path().join("generated/cert.pem");
    let key_file = dir.path().join("generated/key.pem");
    let flags: Vec<String> = ["tcp", "websocket"]
        .iter()
        .flat_map(|section| {
            [
                format!("{section}.tls.enabled=true"),
                format!("{section}.tls.self_signed=true"),
                format!(
                    "{section}.tls.cert_file={:?}",
                    cert_file.display().to_string()
                ),
                format!(
                    "{section}.tls.key_file={:?}",
                    key_file.display().to_string()
                ),
            ]
        })
        .flat_map(|assignment| ["--set".to_owned(), assignment])
        .collect();
    let mut server = start(&flags);
    let first = std::fs::read(&cert_file).expect("the certificate was written");
    within(TEST_TIMEOUT, async {
        let ca_file = cert_file.clone();
        let tls = sdk::client_via(server.addr, &Via::TcpTls { ca_file }).await;
        let ca_file = cert_file.clone();
        let wss = sdk::client_via(server.ws_addr, &Via::Wss { ca_file }).await;
        tls.ping().await.expect("ping over TCP+TLS");
        wss.ping().await.expect("ping over WSS");
    })
    .await;
    server.restart();
    assert_eq!(
        std::fs::read(&cert_file).expect("certificate"),
        first,
        "a restart presents the same certificate"
    );
    within(TEST_TIMEOUT, async {
        let client = sdk::client_via(
            server.addr,
            &Via::TcpTls {
                ca_file: cert_file.clone(),
            },
        )
        .await;
        client.ping().await.expect("ping after restart");
    })
    .await;
}

/// A connected raw WebSocket client (tungstenite, blocking) on any path.
fn raw_websocket(addr: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    websocket_over(raw_tcp(addr), addr)
}

/// A WebSocket upgrade over `stream` (plain, or TLS for WSS).
fn websocket_over<S: Read + Write>(stream: S, addr: SocketAddr) -> tungstenite::WebSocket<S> {
    let (ws, response) =
        tungstenite::client(format!("ws://{addr}/any/path"), stream).expect("WebSocket upgrade");
    assert_eq!(response.status(), 101);
    ws
}

/// The next binary message, skipping control messages.
fn next_binary<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) -> Vec<u8> {
    loop {
        match ws.read().expect("read a message") {
            Message::Binary(data) => return data.to_vec(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

const PING_OK: [u8; 8] = [0; 8];

#[test]
fn websocket_input_is_a_byte_stream_and_control_frames_are_answered() {
    let server = TestServer::start(&[]);
    let mut ws = raw_websocket(server.ws_addr);
    let ping = raw::frame(1, &[]);
    // One request split over three messages: one response.
    for part in [&ping[..3], &ping[3..5], &ping[5..]] {
        ws.send(Message::binary(part.to_vec())).expect("send part");
    }
    assert_eq!(next_binary(&mut ws), PING_OK);
    // Two requests in one message: two responses, one message each.
    ws.send(Message::binary([ping.clone(), ping.clone()].concat()))
        .expect("send two");
    assert_eq!(next_binary(&mut ws), PING_OK);
    assert_eq!(next_binary(&mut ws), PING_OK);
    // Ping gets a Pong with the same data; Text is ignored.
    ws.send(Message::Ping(Bytes::from_static(b"are you there")))
        .expect("send ping");
    match ws.read().expect("read the pong") {
        Message::Pong(data) => assert_eq!(&data[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    ws.send(Message::text("ignored")).expect("send text");
    ws.send(Message::binary(ping)).expect("send ping request");
    assert_eq!(next_binary(&mut ws), PING_OK);
    // A Close is answered with a Close, then the connection ends.
    ws.close(None).expect("close");
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("expected a clean close, got {error}"),
        }
    }
}

/// A data frame of `opcode`, final or not, as a raw client sends it (tungstenite masks it).
fn data_frame(opcode: Data, payload: &[u8], is_final: bool) -> Message {
    Message::Frame(Frame::message(
        payload.to_vec(),
        OpCode::Data(opcode),
        is_final,
    ))
}

/// Fragmented messages: a request split over the frames of one binary message with a Ping
/// between them, a fragmented Text message (ignored), and then a new binary message started
/// inside an unfinished one, which is a protocol violation (1002).
#[test]
fn fragmented_messages_and_control_frames_between_fragments() {
    let server = TestServer::start(&[]);
    let mut ws = raw_websocket(server.ws_addr);
    let ping = raw::frame(1, &[]);
    ws.send(data_frame(Data::Binary, &ping[..3], false))
        .expect("first fragment");
    ws.send(Message::Ping(Bytes::from_static(b"between")))
        .expect("send ping");
    ws.send(data_frame(Data::Continue, &ping[3..6], false))
        .expect("middle fragment");
    ws.send(data_frame(Data::Continue, &ping[6..], true))
        .expect("last fragment");
    match ws.read().expect("read the pong") {
        Message::Pong(data) => assert_eq!(&data[..], b"between"),
        other => panic!("expected a pong, got {other:?}"),
    }
    assert_eq!(next_binary(&mut ws), PING_OK);
    ws.send(data_frame(Data::Text, b"ignored ", false))
        .expect("text start");
    ws.send(data_frame(Data::Continue, b"text", true))
        .expect("text end");
    ws.send(Message::binary(ping.clone()))
        .expect("send ping request");
    assert_eq!(next_binary(&mut ws), PING_OK);
    ws.send(data_frame(Data::Binary, &ping[..3], false))
        .expect("unfinished message");
    ws.send(data_frame(Data::Binary, &ping, true))
        .expect("a new message inside it");
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Protocol),
        other => panic!("expected Close 1002, got {other:?}"),
    }
}

/// The binary protocol over some transport, for the tests of moving connections: frames
/// out, whole response frames (status, length, payload) in.
trait Wire {
    fn send_frames(&mut self, frames: Vec<u8>);
    fn response(&mut self) -> Vec<u8>;

    /// One request; its response's payload, asserting status 0.
    fn request(&mut self, code: u32, payload: &[u8]) -> Vec<u8> {
        self.send_frames(raw::frame(code, payload));
        let response = self.response();
        assert_eq!(&response[0..4], &[0; 4], "status of request {code}");
        response[8..].to_vec()
    }
}

/// Requests in binary WebSocket messages (plain or WSS).
impl<S: Read + Write> Wire for tungstenite::WebSocket<S> {
    fn send_frames(&mut self, frames: Vec<u8>) {
        self.send(Message::binary(frames)).expect("send a message");
    }

    fn response(&mut self) -> Vec<u8> {
        next_binary(self)
    }
}

/// Requests as a TLS byte stream (TCP+TLS).
impl Wire for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn send_frames(&mut self, frames: Vec<u8>) {
        self.write_all(&frames).expect("send over TLS");
    }

    fn response(&mut self) -> Vec<u8> {
        let mut response = vec![0; 8];
        self.read_exact(&mut response)
            .expect("read a response header");
        let length = u32::from_le_bytes(response[4..8].try_into().expect("4 bytes"));
        response.resize(8 + length as usize, 0);
        self.read_exact(&mut response[8..])
            .expect("read a response payload");
        response
    }
}

/// A logged-in connection over `wire` sends batches to each of 4 partitions on 2 shards, all
/// of one partition's requests written at once, so the move happens in the middle of the
/// transport's input (a WebSocket message, a TLS record): every request before and after it
/// is answered in order and stored, and after a few requests the connection is served by the
/// partition's own shard (`calls_sent`, the server's cross-shard calls so far, hardly grows).
fn follows_its_partitions(wire: &mut impl Wire, calls_sent: impl Fn() -> u64) {
    const PARTITIONS: u32 = 4;
    const BATCHES: u32 = 40;
    wire.request(raw::code::LOGIN_USER, &raw::login_payload("iggy", "iggy"));
    let stream_id = {
        let header = wire.request(raw::code::CREATE_STREAM, &raw::str8(b"moving"));
        u32::from_le_bytes(header[0..4].try_into().expect("StreamHeader id"))
    };
    let topic_payload = raw::create_topic_payload(&raw::id_numeric(stream_id), "t", PARTITIONS);
    let topic_header = wire.request(raw::code::CREATE_TOPIC, &topic_payload);
    let topic_id = u32::from_le_bytes(topic_header[0..4].try_into().expect("TopicHeader id"));
    // 4 partitions over 2 shards, at most 3 on one (balanced placement): whichever shard this
    // connection is on, some partition below lives on the other one.
    for partition in 0..PARTITIONS {
        let before = calls_sent();
        wire.send_frames(raw::pipelined_sends(
            stream_id, topic_id, partition, BATCHES,
        ));
        for batch in 0..BATCHES {
            let response = wire.response();
            assert_eq!(
                &response[0..4],
                &[0; 4],
                "partition {partition} batch {batch}"
            );
        }
        let spent = calls_sent() - before;
        assert!(
            spent < u64::from(BATCHES) / 2,
            "partition {partition}: {spent} cross-shard calls for {BATCHES} sends; the connection did not follow its partition"
        );
    }
    for partition in 0..PARTITIONS {
        let poll = raw::poll_payload(stream_id, topic_id, partition, 0, BATCHES + 1);
        let polled = raw::decode_polled(&wire.request(raw::code::POLL_MESSAGES, &poll));
        let expected: Vec<(u64, Vec<u8>)> = (0..BATCHES)
            .map(|batch| {
                let payload = format!("p{partition}-b{batch}").into_bytes();
                (u64::from(batch), payload)
            })
            .collect();
        assert_eq!(polled.messages, expected, "partition {partition}");
    }
}

/// A plain WebSocket connection follows its partitions with its WebSocket state, and control
/// frames are still answered once it moved.
#[test]
fn a_websocket_connection_moves_to_the_shard_of_its_partitions_mid_message() {
    let server = TestServer::start(&["--shards", "2"]);
    let mut ws = raw_websocket(server.ws_addr);
    follows_its_partitions(&mut ws, || raw::calls_sent(server.addr));
    ws.send(Message::Ping(Bytes::from_static(b"still there")))
        .expect("send ping");
    match ws.read().expect("read the pong") {
        Message::Pong(data) => assert_eq!(&data[..], b"still there"),
        other => panic!("expected a pong, got {other:?}"),
    }
}

/// A server on 2 shards with TLS on `section`'s listener ("tcp" or "websocket"), its
/// certificates, and the temp dir that holds them (keep it while the server runs).
fn two_shards_with_tls(section: &str) -> (tempfile::TempDir, TestCertificates, TestServer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let mut flags = certs.server_flags(section);
    flags.extend(["--shards".to_owned(), "2".to_owned()]);
    let server = start(&flags);
    (dir, certs, server)
}

/// A TCP+TLS connection moves with its rustls session (keys, sequence numbers, ciphertext
/// not yet decrypted); the TLS session goes on and ends with close_notify as usual.
#[test]
fn a_tls_connection_moves_to_the_shard_of_its_partitions() {
    let (_dir, certs, server) = two_shards_with_tls("tcp");
    let mut tls = tls_client(server.addr, &certs.ca_file);
    // The TCP listener speaks TLS; the plain WebSocket one answers the stats.
    let calls_sent = || {
        let mut ws = raw_websocket(server.ws_addr);
        ws.request(raw::code::LOGIN_USER, &raw::login_payload("iggy", "iggy"));
        raw::calls_sent_in(&ws.request(raw::code::GET_SHARD_STATS, &[]))
    };
    follows_its_partitions(&mut tls, calls_sent);
    tls.conn.send_close_notify();
    tls.flush().expect("send close_notify");
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest)
        .expect("the server ends the TLS session cleanly");
    assert!(
        rest.is_empty(),
        "unexpected bytes after close_notify: {rest:?}"
    );
}

/// A WSS connection moves with both its WebSocket and its TLS state.
#[test]
fn a_wss_connection_moves_to_the_shard_of_its_partitions() {
    let (_dir, certs, server) = two_shards_with_tls("websocket");
    let mut wss = websocket_over(tls_client(server.ws_addr, &certs.ca_file), server.ws_addr);
    follows_its_partitions(&mut wss, || raw::calls_sent(server.addr));
    wss.close(None).expect("send close");
    loop {
        match wss.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(error) => panic!("the WSS session did not close cleanly: {error}"),
        }
    }
}

#[test]
fn a_websocket_message_over_the_limit_closes_with_1009() {
    let server = TestServer::start(&["--set", "websocket.message_bytes_max=4096"]);
    let mut bystander = raw_websocket(server.ws_addr);
    let mut ws = raw_websocket(server.ws_addr);
    ws.send(Message::binary(vec![0u8; 8192])).expect("send");
    let close = match ws.read() {
        Ok(Message::Close(frame)) => frame,
        Ok(other) => panic!("expected a close, got {other:?}"),
        Err(error) => panic!("expected a close frame first, got {error}"),
    };
    assert_eq!(close.expect("a close frame").code, CloseCode::Size);
    bystander
        .send(Message::binary(raw::frame(1, &[])))
        .expect("send");
    assert_eq!(next_binary(&mut bystander), PING_OK);
}

/// Everything the server sends until it closes `stream` (EOF or reset), within RAW_TIMEOUT.
fn read_until_closed(stream: &mut impl Read) -> Vec<u8> {
    let deadline = Instant::now() + RAW_TIMEOUT;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        assert!(
            Instant::now() < deadline,
            "the server kept the connection open"
        );
        match stream.read(&mut buffer) {
            Ok(0) => return received,
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the server kept the connection open")
            }
            Err(_) => return received,
        }
    }
}

fn raw_tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, RAW_TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(RAW_TIMEOUT)).expect("timeout");
    stream
        .set_write_timeout(Some(RAW_TIMEOUT))
        .expect("timeout");
    stream
}

/// Sends `bytes` to a TLS port and asserts the server closes without answering in plain.
fn refused_by_tls_port(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = raw_tcp(addr);
    stream.write_all(bytes).expect("send");
    let answer = read_until_closed(&mut stream);
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "a TLS port answered {answer:?} instead of an alert"
    );
}

/// A TLS client session (rustls, blocking) with `addr`, trusting `ca_file` for `localhost`.
fn tls_client(
    addr: SocketAddr,
    ca_file: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(certificate.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().expect("server name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    rustls::StreamOwned::new(connection, raw_tcp(addr))
}

/// An HTTPS request that is not a WebSocket upgrade, to a WSS port; returns the raw answer.
fn https_get(addr: SocketAddr, ca_file: &Path) -> String {
    let mut tls = tls_client(addr, ca_file);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("send the request");
    String::from_utf8_lossy(&read_until_closed(&mut tls)).into_owned()
}

#[tokio::test]
async fn broken_handshakes_and_plain_http_are_refused_without_harming_other_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let mut flags = certs.server_flags("tcp");
    flags.extend(certs.server_flags("websocket"));
    let secure = start(&flags);
    let plain = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let ca_file = certs.ca_file.clone();
        let tls = sdk::client_via(secure.addr, &Via::TcpTls { ca_file }).await;
        let ca_file = certs.ca_file.clone();
        let wss = sdk::client_via(secure.ws_addr, &Via::Wss { ca_file }).await;
        let ws = sdk::client_via(plain.ws_addr, &Via::WebSocket).await;

        let (tls_addr, wss_addr, ws_addr) = (secure.addr, secure.ws_addr, plain.ws_addr);
        let ca_file = certs.ca_file.clone();
        tokio::task::spawn_blocking(move || {
            // A record header that announces a handshake, then junk; then an Iggy frame in
            // plain to a TLS port: no fallback to plain.
            let junk = b"\x16\x03\x01\x00\x10this is no hello";
            for addr in [tls_addr, wss_addr] {
                refused_by_tls_port(addr, junk);
                refused_by_tls_port(addr, &raw::frame(1, &[]));
            }
            let mut http = raw_tcp(ws_addr);
            http.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .expect("send");
            let answer = String::from_utf8_lossy(&read_until_closed(&mut http)).into_owned();
            assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
            let answer = https_get(wss_addr, &ca_file);
            assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        })
        .await
        .expect("raw clients");

        for client in [&tls, &wss, &ws] {
            client
                .ping()
                .await
                .expect("an established client is unharmed");
        }
        let clients = tls.get_clients().await.expect("get_clients");
        assert_eq!(
            clients.len(),
            2,
            "refused connections never became clients: {clients:?}"
        );
    })
    .await;
}

#[test]
fn silent_and_stalled_handshakes_are_dropped_after_their_timeout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let mut flags = certs.server_flags("tcp");
    flags.extend(
        [
            "tcp.tls.handshake_timeout_ms=200",
            "websocket.handshake_timeout_ms=200",
        ]
        .into_iter()
        .flat_map(|assignment| ["--set".to_owned(), assignment.to_owned()]),
    );
    let server = start(&flags);
    let mut bystander = raw_websocket(server.ws_addr);
    // Nothing at all to the TLS port; half an upgrade request to the WebSocket port.
    let mut silent = raw_tcp(server.addr);
    let mut stalled = raw_tcp(server.ws_addr);
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .expect("send half a request");
    assert!(read_until_closed(&mut silent).is_empty());
    assert!(read_until_closed(&mut stalled).is_empty());
    // A session that finished its handshake is not subject to the timeout.
    bystander
        .send(Message::binary(raw::frame(1, &[])))
        .expect("send");
    assert_eq!(next_binary(&mut bystander), PING_OK);
}

#[test]
fn a_graceful_shutdown_sends_disconnected_then_close_going_away() {
    let mut server = TestServer::start(&[]);
    let mut ws = raw_websocket(server.ws_addr);
    ws.send(Message::binary(raw::frame(1, &[]))).expect("send");
    assert_eq!(next_binary(&mut ws), PING_OK);
    server.stop();
    let disconnected = 8u32.to_le_bytes();
    assert_eq!(next_binary(&mut ws), [&disconnected[..], &[0; 4]].concat());
    match ws.read() {
        Ok(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected Close 1001, got {other:?}"),
    }
}
