//! Raw wire protocol over a blocking TCP socket (PROTOCOL.md §1, §4, §5, §6).
//!
//! Requests are `[length u32 = 4 + payload][code u32][payload]`; responses are
//! `[status u32][length u32][payload]`. Every read has a timeout, so a server that does not
//! answer fails the test instead of hanging it.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use galgo_protocol::command::system::ShardStats;
use galgo_protocol::message::{MessageIter, MessageView, encode_message};

/// How long a raw read waits for the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A test's socket: no Nagle delay, and reads and writes that give up after
/// [`READ_TIMEOUT`] instead of hanging the test.
pub fn with_test_options(stream: TcpStream) -> std::io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// Command codes (PROTOCOL.md §3) used by the raw tests.
pub mod code {
    pub const PING: u32 = 1;
    pub const GET_STATS: u32 = 10;
    pub const GET_ME: u32 = 20;
    pub const GET_USERS: u32 = 32;
    pub const LOGIN_USER: u32 = 38;
    pub const POLL_MESSAGES: u32 = 100;
    pub const SEND_MESSAGES: u32 = 101;
    pub const GET_STREAM: u32 = 200;
    pub const GET_STREAMS: u32 = 201;
    pub const CREATE_STREAM: u32 = 202;
    pub const CREATE_TOPIC: u32 = 302;
    pub const GET_CONSUMER_GROUPS: u32 = 601;
    /// galgo extension: per-shard counters.
    pub const GET_SHARD_STATS: u32 = 9000;
}

/// Error codes (PROTOCOL.md §7) the raw tests expect.
pub mod error {
    pub const INVALID_COMMAND: u32 = 3;
    pub const INVALID_FORMAT: u32 = 4;
    pub const FEATURE_UNAVAILABLE: u32 = 5;
    pub const INVALID_IDENTIFIER: u32 = 6;
    pub const UNAUTHENTICATED: u32 = 40;
    pub const INVALID_CREDENTIALS: u32 = 42;
    pub const STREAM_ID_NOT_FOUND: u32 = 1009;
    pub const INVALID_MESSAGES_COUNT: u32 = 4009;
    pub const NON_ZERO_OFFSET: u32 = 4031;
    pub const NON_ZERO_TIMESTAMP: u32 = 4032;
    pub const MISSING_INDEX: u32 = 4033;
    pub const INVALID_MESSAGES_SIZE: u32 = 4036;
    pub const TOO_SMALL_MESSAGE: u32 = 4037;
}

/// One response frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u32,
    pub payload: Vec<u8>,
}

impl Response {
    /// Asserts status 0 and returns the payload.
    #[track_caller]
    pub fn ok(self) -> Vec<u8> {
        assert_eq!(self.status, 0, "expected OK, got error {}", self.status);
        self.payload
    }

    /// Asserts this is the error `status` with the empty payload errors always have.
    #[track_caller]
    pub fn assert_error(&self, status: u32) {
        assert_eq!(
            (self.status, self.payload.len()),
            (status, 0),
            "expected error {status} with an empty payload"
        );
    }
}

/// A blocking connection speaking raw frames.
pub struct RawConn {
    stream: TcpStream,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        RawConn::try_connect(addr).unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
    }

    /// Speaks over a stream the test connected itself.
    pub fn from_stream(stream: TcpStream) -> RawConn {
        RawConn {
            stream: with_test_options(stream).expect("socket options"),
        }
    }

    /// Connects, or says why not (for tests where the server may be gone).
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)?;
        Ok(RawConn {
            stream: with_test_options(stream)?,
        })
    }

    /// Connects and logs in as root, or says why not (for tests where the server may be gone).
    pub fn try_connect_logged_in(addr: SocketAddr) -> std::io::Result<RawConn> {
        let mut conn = RawConn::try_connect(addr)?;
        conn.try_send_bytes(&frame(code::LOGIN_USER, &login_payload("iggy", "iggy")))?;
        let response = conn.try_read_response()?;
        if response.status != 0 {
            return Err(std::io::Error::other(format!(
                "login refused: {}",
                response.status
            )));
        }
        Ok(conn)
    }

    /// A connection that has logged in as root.
    pub fn connect_logged_in(addr: SocketAddr) -> RawConn {
        let mut conn = RawConn::connect(addr);
        conn.login_root();
        conn
    }

    /// A second handle on the same socket, for writing from another thread.
    pub fn try_clone_writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone socket")
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local addr")
    }

    /// Writes bytes as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Like [`RawConn::send_bytes`], but a connection the server already closed is not an error.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Writes one well-formed request frame.
    pub fn send_frame(&mut self, code: u32, payload: &[u8]) {
        self.send_bytes(&frame(code, payload));
    }

    /// Reads one response frame, panicking on timeout or a closed connection.
    #[track_caller]
    pub fn read_response(&mut self) -> Response {
        match self.try_read_response() {
            Ok(response) => response,
            Err(error) => panic!("reading a response: {error}"),
        }
    }

    pub fn try_read_response(&mut self) -> std::io::Result<Response> {
        let mut header = [0u8; 8];
        self.stream.read_exact(&mut header)?;
        let status = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let length = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        let mut payload = vec![0u8; length as usize];
        self.stream.read_exact(&mut payload)?;
        Ok(Response { status, payload })
    }

    /// Sends one request and reads its response.
    #[track_caller]
    pub fn request(&mut self, code: u32, payload: &[u8]) -> Response {
        self.send_frame(code, payload);
        self.read_response()
    }

    /// A Ping that must be answered with the empty OK `00 00 00 00 00 00 00 00`.
    #[track_caller]
    pub fn ping(&mut self) {
        let response = self.request(code::PING, &[]);
        assert_eq!(
            response,
            Response {
                status: 0,
                payload: Vec::new()
            },
            "ping must get the empty OK"
        );
    }

    /// LoginUser iggy/iggy; asserts the root user id 0.
    #[track_caller]
    pub fn login_root(&mut self) {
        let payload = self
            .request(code::LOGIN_USER, &login_payload("iggy", "iggy"))
            .ok();
        assert_eq!(payload, 0u32.to_le_bytes(), "root logs in as user 0");
    }

    /// Waits until the server closes the connection (EOF or reset), discarding whatever it
    /// sends first. Panics if the connection is still open after `timeout`.
    #[track_caller]
    pub fn expect_closed(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "server did not close the connection within {timeout:?}"
            );
            self.stream
                .set_read_timeout(Some(left))
                .expect("read timeout");
            match self.stream.read(&mut buffer) {
                Ok(0) => return,
                Ok(_) => continue,
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::BrokenPipe
                            | ErrorKind::ConnectionAborted
                    ) =>
                {
                    return;
                }
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue;
                }
                Err(error) => panic!("waiting for close: {error}"),
            }
        }
    }
}

/// A request frame: `[4 + payload.len() u32][code u32][payload]`.
pub fn frame(code: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(4 + payload.len()).expect("frame fits u32");
    let mut bytes = Vec::with_capacity(8 + payload.len());
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(&code.to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A numeric Identifier: `01 04 <u32 LE>`.
pub fn id_numeric(id: u32) -> Vec<u8> {
    let mut bytes = vec![1, 4];
    bytes.extend_from_slice(&id.to_le_bytes());
    bytes
}

/// A string Identifier: `02 <len u8> <name>`.
pub fn id_named(name: &str) -> Vec<u8> {
    let mut bytes = vec![2, u8::try_from(name.len()).expect("name ≤ 255 bytes")];
    bytes.extend_from_slice(name.as_bytes());
    bytes
}

/// `name8` / `str8`: a u8 length and the bytes.
pub fn str8(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(bytes.len()).expect("≤ 255 bytes")];
    out.extend_from_slice(bytes);
    out
}

/// LoginUser payload as the SDK 0.10.0 sends it (PROTOCOL.md §5.4).
pub fn login_payload(username: &str, password: &str) -> Vec<u8> {
    let mut payload = str8(username.as_bytes());
    payload.extend(str8(password.as_bytes()));
    let version = b"0.10.0";
    payload.extend_from_slice(&(version.len() as u32).to_le_bytes());
    payload.extend_from_slice(version);
    payload.extend_from_slice(&0u32.to_le_bytes());
    payload
}

/// CreateTopic payload: no compression, server-default expiry and size, replication 0.
pub fn create_topic_payload(stream: &[u8], name: &str, partitions: u32) -> Vec<u8> {
    let mut payload = stream.to_vec();
    payload.extend_from_slice(&partitions.to_le_bytes());
    payload.push(1); // compression: none
    payload.extend_from_slice(&0u64.to_le_bytes()); // message expiry: server default
    payload.extend_from_slice(&0u64.to_le_bytes()); // max topic size: server default
    payload.push(0); // replication factor: not set
    payload.extend(str8(name.as_bytes()));
    payload
}

/// Creates stream `name` and returns its id (from the StreamHeader, PROTOCOL.md §5.2).
#[track_caller]
pub fn create_stream(conn: &mut RawConn, name: &str) -> u32 {
    let header = conn
        .request(code::CREATE_STREAM, &str8(name.as_bytes()))
        .ok();
    u32::from_le_bytes(header[0..4].try_into().expect("StreamHeader id"))
}

/// Creates a topic and returns its id (from the TopicHeader).
#[track_caller]
pub fn create_topic(conn: &mut RawConn, stream_id: u32, name: &str, partitions: u32) -> u32 {
    let payload = create_topic_payload(&id_numeric(stream_id), name, partitions);
    let header = conn.request(code::CREATE_TOPIC, &payload).ok();
    u32::from_le_bytes(header[0..4].try_into().expect("TopicHeader id"))
}

/// Partitioning::PartitionId (PROTOCOL.md §4.4).
pub fn partitioning_id(partition_id: u32) -> Vec<u8> {
    let mut bytes = vec![2, 4];
    bytes.extend_from_slice(&partition_id.to_le_bytes());
    bytes
}

/// The parts of a SendMessages payload (PROTOCOL.md §6.2), kept apart so tests can break each.
pub struct SendMessages {
    pub stream: Vec<u8>,
    pub topic: Vec<u8>,
    pub partitioning: Vec<u8>,
    pub count: u32,
    /// `count` × 16 bytes.
    pub index: Vec<u8>,
    pub messages: Vec<u8>,
}

impl SendMessages {
    /// A well-formed batch of messages with the given payloads, no user headers, id 0.
    pub fn new(
        stream_id: u32,
        topic_id: u32,
        partition_id: u32,
        payloads: &[&[u8]],
    ) -> SendMessages {
        let with_ids: Vec<(u128, &[u8])> = payloads.iter().map(|&payload| (0, payload)).collect();
        Self::with_ids(stream_id, topic_id, partition_id, &with_ids)
    }

    /// The same, each message with the id given beside its payload.
    pub fn with_ids(
        stream_id: u32,
        topic_id: u32,
        partition_id: u32,
        payloads: &[(u128, &[u8])],
    ) -> SendMessages {
        let mut messages = Vec::new();
        let mut index = Vec::new();
        for &(id, payload) in payloads {
            encode_message(id, 1, payload, b"", &mut messages);
            index.extend_from_slice(&0u32.to_le_bytes());
            index.extend_from_slice(&(messages.len() as u32).to_le_bytes());
            index.extend_from_slice(&0u64.to_le_bytes());
        }
        SendMessages {
            stream: id_numeric(stream_id),
            topic: id_numeric(topic_id),
            partitioning: partitioning_id(partition_id),
            count: payloads.len() as u32,
            index,
            messages,
        }
    }

    /// The payload with `metadata_length` computed from the parts.
    pub fn encode(&self) -> Vec<u8> {
        let metadata_length = self.stream.len() + self.topic.len() + self.partitioning.len() + 4;
        let mut payload = (metadata_length as u32).to_le_bytes().to_vec();
        payload.extend_from_slice(&self.stream);
        payload.extend_from_slice(&self.topic);
        payload.extend_from_slice(&self.partitioning);
        payload.extend_from_slice(&self.count.to_le_bytes());
        payload.extend_from_slice(&self.index);
        payload.extend_from_slice(&self.messages);
        payload
    }
}

/// PollMessages payload for a single numeric consumer with an explicit partition.
pub fn poll_payload(
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    offset: u64,
    count: u32,
) -> Vec<u8> {
    let mut payload = vec![1]; // Consumer
    payload.extend(id_numeric(1));
    payload.extend(id_numeric(stream_id));
    payload.extend(id_numeric(topic_id));
    payload.push(1);
    payload.extend_from_slice(&partition_id.to_le_bytes());
    payload.push(1); // PollingStrategy::Offset
    payload.extend_from_slice(&offset.to_le_bytes());
    payload.extend_from_slice(&count.to_le_bytes());
    payload.push(0); // no auto-commit
    payload
}

/// A decoded PollMessages response (PROTOCOL.md §5.6).
#[derive(Debug)]
pub struct Polled {
    pub partition_id: u32,
    pub current_offset: u64,
    /// `(offset, payload)` of each message; checksums are verified while decoding.
    pub messages: Vec<(u64, Vec<u8>)>,
}

/// Decodes a PollMessages response, asserting its internal consistency.
#[track_caller]
pub fn decode_polled(payload: &[u8]) -> Polled {
    assert!(
        payload.len() >= 16,
        "poll response shorter than its 16-byte header"
    );
    let partition_id = u32::from_le_bytes(payload[0..4].try_into().expect("4"));
    let current_offset = u64::from_le_bytes(payload[4..12].try_into().expect("8"));
    let count = u32::from_le_bytes(payload[12..16].try_into().expect("4"));
    let mut messages = Vec::new();
    for view in MessageIter::new(&payload[16..]) {
        let view: MessageView<'_> =
            view.unwrap_or_else(|at| panic!("torn message at byte {at} of a poll response"));
        assert!(
            view.checksum_is_valid(),
            "bad checksum on offset {}",
            view.offset()
        );
        assert_eq!(view.reserved(), 0, "reserved must be 0");
        messages.push((view.offset(), view.payload().to_vec()));
    }
    assert_eq!(
        messages.len(),
        count as usize,
        "messages_count vs messages in the response"
    );
    Polled {
        partition_id,
        current_offset,
        messages,
    }
}

/// Polls `count` messages from `offset` of a partition over raw TCP.
#[track_caller]
pub fn poll(
    conn: &mut RawConn,
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    offset: u64,
    count: u32,
) -> Polled {
    let payload = conn
        .request(
            code::POLL_MESSAGES,
            &poll_payload(stream_id, topic_id, partition_id, offset, count),
        )
        .ok();
    decode_polled(&payload)
}

/// `batches` SendMessages frames back to back, one message `p{partition}-b{batch}` each: a
/// pipeline to write in one go.
pub fn pipelined_sends(stream_id: u32, topic_id: u32, partition: u32, batches: u32) -> Vec<u8> {
    let mut pipelined = Vec::new();
    for batch in 0..batches {
        let payload = format!("p{partition}-b{batch}");
        let send = SendMessages::new(stream_id, topic_id, partition, &[payload.as_bytes()]);
        pipelined.extend(frame(code::SEND_MESSAGES, &send.encode()));
    }
    pipelined
}

/// Cross-shard calls sent by every shard so far (GetShardStats).
#[track_caller]
pub fn calls_sent(addr: SocketAddr) -> u64 {
    let mut conn = RawConn::connect_logged_in(addr);
    calls_sent_in(&conn.request(code::GET_SHARD_STATS, &[]).ok())
}

/// The cross-shard calls of every shard in a GetShardStats response's payload.
#[track_caller]
pub fn calls_sent_in(payload: &[u8]) -> u64 {
    decode_shard_stats(payload)
        .shards
        .iter()
        .map(|shard| shard.calls_sent)
        .sum()
}

/// GetShardStats (galgo's code 9000) over a fresh logged-in connection.
#[track_caller]
pub fn shard_stats(addr: SocketAddr) -> ShardStats {
    let mut conn = RawConn::connect_logged_in(addr);
    decode_shard_stats(&conn.request(code::GET_SHARD_STATS, &[]).ok())
}

#[track_caller]
fn decode_shard_stats(payload: &[u8]) -> ShardStats {
    ShardStats::decode(payload)
        .unwrap_or_else(|error| panic!("decode GetShardStats: {error:?} in {payload:02x?}"))
}
