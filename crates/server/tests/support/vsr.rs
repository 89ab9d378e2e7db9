//! Raw 0.9-generation frames ("VSR framing", PROTOCOL-0.9.md §2) over a blocking TCP socket,
//! built by hand from the header tables, for what the SDK cannot be made to do on purpose:
//! send the very same request twice.
//!
//! A frame is a 256-byte header, then `size - 256` body bytes. Requests carry `command 5`; the
//! server answers each with a Reply (`command 8`) or an Eviction (`command 13`). Every read has
//! a timeout, so a server that does not answer fails the test instead of hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use xxhash_rust::xxh3::xxh3_64;

/// How long a raw read waits for the server.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Every header is this long (PROTOCOL-0.9.md §2.1).
pub const HEADER_BYTES: usize = 256;
/// A batch header in a SendMessages body (PROTOCOL-0.9.md §8.8, table A).
const BATCH_HEADER_BYTES: usize = 256;
/// A message frame's header in a batch (PROTOCOL-0.9.md §8.8, table B).
const MESSAGE_HEADER_BYTES: usize = 48;
/// `iggy_binary_protocol` 0.11.0 packed as `major << 20 | minor << 10 | patch`.
pub const PROTOCOL_VERSION: u32 = 11 << 10;

/// Header `command` values (PROTOCOL-0.9.md §2.2).
pub mod command {
    pub const REQUEST: u8 = 5;
    pub const REPLY: u8 = 8;
    pub const EVICTION: u8 = 13;
}

/// Request `operation` values (PROTOCOL-0.9.md §3.1, §3.2).
pub mod operation {
    pub const REGISTER: u8 = 1;
    pub const NON_REPLICATED: u8 = 2;
    pub const LOGOUT: u8 = 3;
    pub const CREATE_STREAM: u8 = 128;
    pub const SEND_MESSAGES: u8 = 160;
}

/// One frame the server sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: [u8; HEADER_BYTES],
    pub body: Vec<u8>,
}

impl Frame {
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.header[at..at + 4].try_into().expect("4 bytes"))
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.header[at..at + 8].try_into().expect("8 bytes"))
    }

    fn u128_at(&self, at: usize) -> u128 {
        u128::from_le_bytes(self.header[at..at + 16].try_into().expect("16 bytes"))
    }

    pub fn size(&self) -> u32 {
        self.u32_at(48)
    }

    pub fn command(&self) -> u8 {
        self.header[60]
    }

    /// Reply: the echoed `request_checksum` (bytes 128..144).
    pub fn request_checksum(&self) -> u128 {
        self.u128_at(128)
    }

    /// Reply: the echoed client id (bytes 160..176); Eviction: the evicted one (128..144).
    pub fn client(&self) -> u128 {
        match self.command() {
            command::EVICTION => self.u128_at(128),
            _ => self.u128_at(160),
        }
    }

    /// Reply: the echoed request number.
    pub fn request(&self) -> u64 {
        self.u64_at(200)
    }

    /// Reply: the echoed operation.
    pub fn operation(&self) -> u8 {
        self.header[208]
    }

    /// Reply: 0, or the Iggy error code (PROTOCOL-0.9.md §6.1).
    pub fn status(&self) -> u32 {
        self.u32_at(216)
    }

    /// Eviction: the reason byte (PROTOCOL-0.9.md §2.5).
    pub fn eviction_reason(&self) -> u8 {
        self.header[255]
    }

    /// The header without `op` and `commit` (176..192), which a server may restamp on a
    /// replayed reply and the SDK ignores: what two answers to one request must share.
    pub fn header_without_op_and_commit(&self) -> Vec<u8> {
        [&self.header[..176], &self.header[192..]].concat()
    }

    /// The error a result-framed Reply carries by either channel (PROTOCOL-0.9.md §6.1,
    /// §6.2): a non-zero `status` with an empty body, or a rejection in the result section;
    /// `None` for a success.
    pub fn error(&self) -> Option<u32> {
        if self.status() != 0 {
            assert!(
                self.body.is_empty(),
                "an error status with a body: {self:?}"
            );
            return Some(self.status());
        }
        self.result().err()
    }

    /// A result-framed body (PROTOCOL-0.9.md §6.2): the payload after a `count = 0` result
    /// section, or the first result code of a rejection.
    pub fn result(&self) -> Result<&[u8], u32> {
        assert!(self.body.len() >= 4, "a result section: {:?}", self.body);
        let count = u32::from_le_bytes(self.body[0..4].try_into().expect("4 bytes"));
        if count == 0 {
            return Ok(&self.body[4..]);
        }
        assert!(self.body.len() >= 12, "a rejection entry: {:?}", self.body);
        Err(u32::from_le_bytes(
            self.body[8..12].try_into().expect("4 bytes"),
        ))
    }
}

/// What a request header says besides its body (PROTOCOL-0.9.md §2.3).
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub client: u128,
    pub session: u64,
    pub request: u64,
    pub operation: u8,
    /// The 0.8 command code at 196..200, for NonReplicated requests only.
    pub code: u32,
    /// Stamp `request_checksum` with XXH3-64 of the body (the SDK does so for Register,
    /// Logout and metadata operations; it sends 0 for SendMessages).
    pub stamp: bool,
}

/// The whole request frame: header, then `body`.
pub fn request_frame(request: &Request, body: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; HEADER_BYTES];
    let size = u32::try_from(HEADER_BYTES + body.len()).expect("frame fits u32");
    frame[48..52].copy_from_slice(&size.to_le_bytes());
    frame[60] = command::REQUEST;
    frame[128..144].copy_from_slice(&request.client.to_le_bytes());
    if request.stamp {
        frame[144..152].copy_from_slice(&xxh3_64(body).to_le_bytes());
    }
    frame[168..176].copy_from_slice(&request.request.to_le_bytes());
    frame[176] = request.operation;
    frame[184..192].copy_from_slice(&request.session.to_le_bytes());
    if request.operation == operation::NON_REPLICATED {
        frame[196..200].copy_from_slice(&request.code.to_le_bytes());
    }
    frame.extend_from_slice(body);
    frame
}

/// `name8`: a u8 length, then the bytes.
fn put_name(out: &mut Vec<u8>, text: &str) {
    out.push(u8::try_from(text.len()).expect("name up to 255 bytes"));
    out.extend_from_slice(text.as_bytes());
}

/// A numeric Identifier: kind 1, length 4, the u32.
pub fn numeric_identifier(value: u32) -> Vec<u8> {
    let mut out = vec![1, 4];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// The Register body, password form (PROTOCOL-0.9.md §5.2).
pub fn register_body(username: &str, password: &str) -> Vec<u8> {
    let mut body = PROTOCOL_VERSION.to_le_bytes().to_vec();
    put_name(&mut body, "galgo-tests");
    put_name(&mut body, "0.0.0");
    put_name(&mut body, username);
    put_name(&mut body, password);
    body.extend_from_slice(&0u32.to_le_bytes());
    body
}

/// The CreateStream body: the name and an empty options block (PROTOCOL-0.9.md §8.2).
pub fn create_stream_body(name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_name(&mut body, name);
    body
}

/// One message of a hand-built batch.
pub struct RawMessage<'a> {
    pub id: u128,
    pub origin_timestamp: u64,
    pub payload: &'a [u8],
}

/// The SendMessages body for one batch to an explicit partition (PROTOCOL-0.9.md §8.8),
/// with every message and batch checksum computed as the SDK does.
pub fn send_messages_body(
    stream: u32,
    topic: u32,
    partition: u32,
    messages: &[RawMessage],
) -> Vec<u8> {
    let mut metadata = numeric_identifier(stream);
    metadata.extend(numeric_identifier(topic));
    metadata.extend_from_slice(&[2, 4]);
    metadata.extend_from_slice(&partition.to_le_bytes());
    let count = u32::try_from(messages.len()).expect("count fits u32");
    metadata.extend_from_slice(&count.to_le_bytes());
    let mut body = u32::try_from(metadata.len())
        .expect("metadata fits u32")
        .to_le_bytes()
        .to_vec();
    body.extend(metadata);
    body.extend(batch(messages));
    body
}

/// A batch header and its frames, as a client sends them (table A and table B).
fn batch(messages: &[RawMessage]) -> Vec<u8> {
    let origin = messages
        .iter()
        .map(|m| m.origin_timestamp)
        .min()
        .expect("a batch has messages");
    let mut frames = Vec::new();
    let mut checksums = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let mut frame = vec![0u8; 8];
        frame.extend_from_slice(&message.id.to_le_bytes());
        frame.extend_from_slice(&u32::try_from(index).expect("delta").to_le_bytes());
        let delta = u32::try_from(message.origin_timestamp - origin).expect("timestamp delta");
        frame.extend_from_slice(&delta.to_le_bytes());
        frame.extend_from_slice(&0u32.to_le_bytes());
        let payload_length = u32::try_from(message.payload.len()).expect("payload length");
        frame.extend_from_slice(&payload_length.to_le_bytes());
        frame.extend_from_slice(&[0u8; 8]);
        assert_eq!(frame.len(), MESSAGE_HEADER_BYTES);
        frame.extend_from_slice(message.payload);
        let checksum = xxh3_64(&frame[8..]);
        frame[0..8].copy_from_slice(&checksum.to_le_bytes());
        checksums.extend_from_slice(&checksum.to_le_bytes());
        frames.extend(frame);
    }
    let batch_length = (BATCH_HEADER_BYTES + frames.len()) as u64;
    let count = u32::try_from(messages.len()).expect("count fits u32");
    // partition_id, base_offset and base_timestamp are the server's to stamp: zeros here.
    let mut checksummed = vec![0u8; 24];
    checksummed.extend_from_slice(&origin.to_le_bytes());
    checksummed.extend_from_slice(&batch_length.to_le_bytes());
    checksummed.extend_from_slice(&count.to_le_bytes());
    let mut header = vec![0u8; BATCH_HEADER_BYTES];
    header[24..32].copy_from_slice(&origin.to_le_bytes());
    header[32..40].copy_from_slice(&batch_length.to_le_bytes());
    let batch_checksum = xxh3_64(&[checksummed, checksums].concat());
    header[40..48].copy_from_slice(&batch_checksum.to_le_bytes());
    header[48..52].copy_from_slice(&count.to_le_bytes());
    header.extend(frames);
    header
}

/// A blocking connection speaking raw 0.9 frames for one client id.
pub struct VsrConn {
    stream: TcpStream,
    /// This connection's client id (random per registration in the SDK; fixed here).
    pub client: u128,
    /// The session the Register reply bound, 0 before.
    pub session: u64,
    /// The last request number used by a replicated request.
    pub request: u64,
}

impl VsrConn {
    pub fn connect(addr: SocketAddr, client: u128) -> VsrConn {
        let stream = TcpStream::connect_timeout(&addr, READ_TIMEOUT)
            .and_then(super::raw::with_test_options)
            .unwrap_or_else(|error| panic!("connect to {addr}: {error}"));
        VsrConn {
            stream,
            client,
            session: 0,
            request: 0,
        }
    }

    /// Writes bytes as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
    }

    /// Reads one whole frame, panicking on a timeout or a closed connection.
    #[track_caller]
    pub fn read_frame(&mut self) -> Frame {
        let mut header = [0u8; HEADER_BYTES];
        self.stream
            .read_exact(&mut header)
            .unwrap_or_else(|error| panic!("reading a 256-byte header: {error}"));
        let size = u32::from_le_bytes(header[48..52].try_into().expect("4 bytes")) as usize;
        assert!(size >= HEADER_BYTES, "frame size {size} is under 256");
        let mut body = vec![0u8; size - HEADER_BYTES];
        self.stream
            .read_exact(&mut body)
            .unwrap_or_else(|error| panic!("reading a {size}-byte frame's body: {error}"));
        Frame { header, body }
    }

    /// Sends one frame and reads the answer.
    #[track_caller]
    pub fn exchange(&mut self, frame: &[u8]) -> Frame {
        self.send_bytes(frame);
        self.read_frame()
    }

    /// Registers (logs in) with a password and binds the session; asserts a Reply.
    #[track_caller]
    pub fn register(&mut self, username: &str, password: &str) {
        let request = Request {
            client: self.client,
            session: 0,
            request: 0,
            operation: operation::REGISTER,
            code: 0,
            stamp: true,
        };
        let reply = self.exchange(&request_frame(&request, &register_body(username, password)));
        assert_eq!(
            (reply.command(), reply.status(), reply.operation()),
            (command::REPLY, 0, operation::REGISTER),
            "a Register reply: {reply:?}"
        );
        let payload = reply.result().expect("login accepted");
        assert!(payload.len() >= 16, "user id and session: {payload:?}");
        self.session = u64::from_le_bytes(payload[4..12].try_into().expect("8 bytes"));
        assert!(self.session > 0, "a session must be > 0");
        self.request = 0;
    }

    /// The next replicated request's frame (request number advanced), not yet sent.
    pub fn next_frame(&mut self, operation: u8, stamp: bool, body: &[u8]) -> Vec<u8> {
        self.request += 1;
        let request = Request {
            client: self.client,
            session: self.session,
            request: self.request,
            operation,
            code: 0,
            stamp,
        };
        request_frame(&request, body)
    }
}
