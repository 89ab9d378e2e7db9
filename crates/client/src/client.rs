//! [`Client`]: one connection, one request in flight, strict request/response order.

use std::mem;

use bytes::{Buf, BufMut, BytesMut};
use compio::BufResult;
use galgo_protocol::{
    CommandCode, ErrorCode, RESPONSE_HEADER_BYTES, ResponseHeader, frame::REQUEST_HEADER_BYTES,
};

use crate::connection_string::{ConnectionString, Credentials, Protocol};
use crate::error::ClientError;
use crate::transport::Transport;
use crate::vsr::VsrClient;

/// Spare room kept in the read buffer so that one receive can take a whole small response.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// A connection to a server of the protocol. Lives on one compio runtime.
pub struct Client {
    transport: Transport,
    /// Reused for every request frame built by a typed call.
    write: BytesMut,
    /// Bytes received and not yet handed out.
    read: BytesMut,
    /// Present when the client speaks the 0.9 generation (crate::vsr).
    vsr: Option<VsrClient>,
    /// Whether the server waits when a poll asks it to (galgo's long-poll extension).
    pub(crate) long_polls: LongPolls,
}

/// What this connection's server does with a poll's `wait_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongPolls {
    /// No waiting poll has come back empty yet.
    Unknown,
    /// An empty answer to a waiting poll took (most of) the wait: the server waits.
    Honoured,
    /// An empty answer came back at once: the server (an Iggy server) ignores the wait, so
    /// polls are sent without it from now on and callers pace themselves.
    Ignored,
}

impl Client {
    /// Connects over `transport` without logging in, speaking the 0.8 generation.
    pub fn new(transport: Transport) -> Self {
        Self::with_protocol(transport, Protocol::V08)
    }

    /// Connects over `transport` without logging in, speaking `protocol`.
    pub fn with_protocol(transport: Transport, protocol: Protocol) -> Self {
        Self {
            transport,
            write: BytesMut::with_capacity(READ_BUFFER_BYTES),
            read: BytesMut::with_capacity(READ_BUFFER_BYTES),
            vsr: (protocol == Protocol::V09).then(VsrClient::new),
            long_polls: LongPolls::Unknown,
        }
    }

    /// Whether the server honours a poll's `wait_ms`, as far as this connection has seen.
    pub fn long_polls(&self) -> LongPolls {
        self.long_polls
    }

    /// The generation the client speaks.
    pub fn protocol(&self) -> Protocol {
        if self.vsr.is_some() {
            Protocol::V09
        } else {
            Protocol::V08
        }
    }

    /// Connects as the connection string says and logs in with its credentials.
    pub async fn connect(connection: &ConnectionString) -> Result<Self, ClientError> {
        let transport = Transport::connect(connection).await?;
        let mut client = Self::with_protocol(transport, connection.protocol);
        match &connection.credentials {
            Credentials::UsernamePassword { username, password } => {
                client.login_user(username, password).await?;
            }
            Credentials::PersonalAccessToken(token) => {
                client.login_with_personal_access_token(token).await?;
            }
        }
        Ok(client)
    }

    /// Parses `text` and [`Client::connect`]s.
    pub async fn from_connection_string(text: &str) -> Result<Self, ClientError> {
        Self::connect(&ConnectionString::parse(text)?).await
    }

    /// Sends a request whose payload `encode` appends, and returns the response payload.
    pub async fn request(
        &mut self,
        code: CommandCode,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<BytesMut, ClientError> {
        let mut frame = mem::take(&mut self.write);
        frame.clear();
        if self.vsr.is_some() {
            encode(&mut frame);
            let result = self.request_vsr(code, frame.split()).await;
            self.write = frame;
            return result;
        }
        frame.put_u64_le(0);
        encode(&mut frame);
        patch_header(&mut frame, code);
        let (result, frame) = self.request_frame(frame).await;
        self.write = frame;
        result
    }

    /// Sends a whole request frame (header included) and returns the response payload and the
    /// frame, so a caller can send the same buffer again without allocating.
    pub async fn request_frame(
        &mut self,
        frame: BytesMut,
    ) -> (Result<BytesMut, ClientError>, BytesMut) {
        debug_assert!(frame.len() >= REQUEST_HEADER_BYTES);
        if self.vsr.is_some() {
            // A prepared 0.8 frame, converted per request (the bench's 0.8 batches).
            let code = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
            let Some(code) = CommandCode::from_u32(code) else {
                return (Err(ClientError::Server(ErrorCode::InvalidCommand)), frame);
            };
            let payload = BytesMut::from(&frame[REQUEST_HEADER_BYTES..]);
            return (self.request_vsr(code, payload).await, frame);
        }
        let BufResult(written, frame) = self.transport.write_all(frame).await;
        if let Err(error) = written {
            return (Err(error.into()), frame);
        }
        (self.read_response().await, frame)
    }

    async fn read_response(&mut self) -> Result<BytesMut, ClientError> {
        self.fill(RESPONSE_HEADER_BYTES).await?;
        let header = ResponseHeader::decode(
            self.read[..RESPONSE_HEADER_BYTES]
                .try_into()
                .expect("8 bytes"),
        );
        self.read.advance(RESPONSE_HEADER_BYTES);
        header.result().map_err(ClientError::Server)?;
        let length = header.length as usize;
        self.fill(length).await?;
        Ok(self.read.split_to(length))
    }

    /// The transport, for the 0.9 envelope.
    pub(crate) fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// The bytes received and not yet handed out, for the 0.9 envelope.
    pub(crate) fn read_buffer(&mut self) -> &mut BytesMut {
        &mut self.read
    }

    /// Receives until the read buffer holds at least `wanted` bytes (the 0.9 envelope).
    pub(crate) async fn fill_read(&mut self, wanted: usize) -> Result<(), ClientError> {
        self.fill(wanted).await
    }

    /// The 0.9 state of a client that speaks it.
    pub(crate) fn vsr_state(&mut self) -> &mut VsrClient {
        self.vsr
            .as_mut()
            .expect("only 0.9 clients use the 0.9 envelope")
    }

    /// Receives until the read buffer holds at least `wanted` bytes.
    async fn fill(&mut self, wanted: usize) -> Result<(), ClientError> {
        if self.read.len() >= wanted {
            return Ok(());
        }
        let spare = self.read.capacity() - self.read.len();
        let needed = wanted.max(READ_BUFFER_BYTES) - self.read.len();
        if spare < needed {
            self.read.reserve(needed);
        }
        while self.read.len() < wanted {
            let buffer = mem::take(&mut self.read);
            let BufResult(received, buffer) = self.transport.append(buffer).await;
            self.read = buffer;
            if received? == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
        Ok(())
    }
}

/// Writes the request header in the first 8 bytes of `frame`, counting what follows them.
pub(crate) fn patch_header(frame: &mut BytesMut, code: CommandCode) {
    let payload_len = frame.len() - REQUEST_HEADER_BYTES;
    let length = u32::try_from(payload_len + 4).expect("request frame fits a u32 length");
    frame[..4].copy_from_slice(&length.to_le_bytes());
    frame[4..8].copy_from_slice(&code.as_u32().to_le_bytes());
}

/// Decodes a response with `decode`, naming the command when it fails.
pub(crate) fn decoded<T>(
    command: CommandCode,
    bytes: &[u8],
    decode: impl FnOnce(&[u8]) -> Result<T, ErrorCode>,
) -> Result<T, ClientError> {
    decode(bytes).map_err(|code| ClientError::MalformedResponse {
        command: command.name(),
        code,
    })
}
