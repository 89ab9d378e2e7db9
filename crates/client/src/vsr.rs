//! The 0.9 envelope on the client side (PROTOCOL-0.9.md): every typed call builds its 0.8
//! payload as before; here it becomes a 0.9 body behind a 256-byte header, and the reply's
//! body goes back to the 0.8 payload the typed call decodes. Logins are Register.

use std::hash::{BuildHasher, RandomState};

use bytes::{Buf, BufMut, BytesMut};
use galgo_protocol::{
    CommandCode, ErrorCode, Request,
    command::users::LoginResponse,
    message::{ID_AT, MessageView, OFFSET_AT},
    vsr::{
        bodies,
        header::{
            self, Eviction, HEADER_BYTES, Operation, ReplyHeader, RequestHeader, body_checksum,
        },
        register::{self, Credentials, Register, RegisterReply},
    },
};

use crate::{client::Client, error::ClientError, messages::PreparedBatch};

/// What a 0.9 connection's client keeps: its id, its session and its request counter.
#[derive(Debug)]
pub(crate) struct VsrClient {
    client_id: u128,
    session: u64,
    next_request: u64,
}

impl VsrClient {
    /// A client not registered yet.
    pub(crate) fn new() -> Self {
        Self {
            client_id: fresh_client_id(),
            session: 0,
            next_request: 1,
        }
    }

    /// The header of a request with `operation`, numbered as the SDK numbers it (§5.5).
    fn header(&mut self, operation: Operation, code: CommandCode, body: &[u8]) -> RequestHeader {
        let (request, session) = match operation {
            Operation::REGISTER => (0, 0),
            Operation::NON_REPLICATED => (self.next_request, self.session),
            _ => {
                self.next_request += 1;
                (self.next_request - 1, self.session)
            }
        };
        let stamped = operation == Operation::REGISTER
            || (operation.is_numbered() && !operation.is_partition());
        RequestHeader {
            size: (HEADER_BYTES + body.len()) as u32,
            cluster: 0,
            client: self.client_id,
            request_checksum: if stamped { body_checksum(body) } else { 0 },
            timestamp: 0,
            request,
            operation,
            session,
            code: if operation == Operation::NON_REPLICATED {
                code.as_u32()
            } else {
                0
            },
        }
    }
}

/// A random, non-zero client id: std's per-process random keys hash a counter-like input.
fn fresh_client_id() -> u128 {
    let keys = RandomState::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let high = u128::from(keys.hash_one(now));
    let low = u128::from(keys.hash_one(now ^ 1));
    ((high << 64) | low).max(1)
}

/// Gives every message of a 0.8 block whose id is 0 a random UUIDv4, as the 0.9 SDK does
/// before it sends (PROTOCOL-0.9.md §8.8): a 0.9 server mints no ids, and galgo keeps a 0.9
/// batch's frames for its 0.9 consumers only when the server changes none of them.
pub(crate) fn mint_ids(block: &mut [u8]) {
    let mut at = 0;
    while let Some(size) = MessageView::parse(&block[at..]).map(|message| message.size()) {
        let id = &mut block[at + ID_AT..at + OFFSET_AT];
        if id.iter().all(|&byte| byte == 0) {
            id.copy_from_slice(&uuid::Uuid::new_v4().as_u128().to_le_bytes());
        }
        at += size;
    }
}

fn malformed(command: CommandCode) -> impl Fn(ErrorCode) -> ClientError {
    move |code| ClientError::MalformedResponse {
        command: command.name(),
        code,
    }
}

/// The Register body for a 0.8 login payload.
fn register_body(code: CommandCode, payload: BytesMut) -> Result<BytesMut, ClientError> {
    let request = Request::decode(code.as_u32(), payload).map_err(ClientError::Server)?;
    let credentials = match request {
        Request::LoginUser(login) => Credentials::Password {
            username: login.username,
            password: login.password,
        },
        Request::LoginWithPersonalAccessToken(login) => Credentials::Token(login.token),
        _ => return Err(ClientError::Server(ErrorCode::InvalidCommand)),
    };
    let register = Register {
        protocol_version: register::PROTOCOL_VERSION,
        sdk_name: "galgo-client".to_owned(),
        sdk_version: env!("CARGO_PKG_VERSION").to_owned(),
        credentials,
        client_context: None,
    };
    let mut body = BytesMut::new();
    register.encode(&mut body);
    Ok(body)
}

impl Client {
    /// Sends the 0.8 `payload` of `code` in the 0.9 envelope and returns the reply as its
    /// 0.8 payload.
    pub(crate) async fn request_vsr(
        &mut self,
        code: CommandCode,
        payload: BytesMut,
    ) -> Result<BytesMut, ClientError> {
        let login = matches!(
            code,
            CommandCode::LoginUser | CommandCode::LoginWithPersonalAccessToken
        );
        let (operation, body) = if login {
            (Operation::REGISTER, register_body(code, payload)?)
        } else {
            let mut request =
                Request::decode(code.as_u32(), payload).map_err(ClientError::Server)?;
            if let Request::SendMessages(send) = &mut request {
                mint_ids(&mut send.messages);
            }
            let mut body = BytesMut::new();
            bodies::encode_request(&request, &mut body).map_err(ClientError::Server)?;
            (Operation::for_code(code), body)
        };
        let vsr = self.vsr_state();
        if login {
            *vsr = VsrClient::new();
        }
        let header = vsr.header(operation, code, &body);
        let mut frame = BytesMut::with_capacity(HEADER_BYTES + body.len());
        let mut bytes = [0; HEADER_BYTES];
        header.encode(&mut bytes);
        frame.put_slice(&bytes);
        frame.put_slice(&body);
        let reply = self.exchange(frame).await.0?;
        self.reply_payload(code, operation, reply)
    }

    /// Sends a prepared batch in its 0.9 frame, which it keeps for the next send: only the
    /// request header and, after a new origin timestamp, the batch checksum are rewritten.
    pub(crate) async fn send_prepared_vsr(
        &mut self,
        batch: &mut PreparedBatch,
    ) -> Result<(), ClientError> {
        let code = CommandCode::SendMessages;
        let mut vsr = batch.take_vsr_frame().map_err(ClientError::Server)?;
        let operation = Operation::for_code(code);
        let header = self
            .vsr_state()
            .header(operation, code, &vsr.frame[HEADER_BYTES..]);
        let mut bytes = [0; HEADER_BYTES];
        header.encode(&mut bytes);
        vsr.frame[..HEADER_BYTES].copy_from_slice(&bytes);
        let (reply, frame) = self.exchange(vsr.frame).await;
        vsr.frame = frame;
        batch.put_vsr_frame(vsr);
        self.reply_payload(code, operation, reply?).map(drop)
    }

    /// Writes a frame and reads the whole reply frame; hands the written frame back.
    async fn exchange(&mut self, frame: BytesMut) -> (Result<BytesMut, ClientError>, BytesMut) {
        let compio::BufResult(written, frame) = self.transport_mut().write_all(frame).await;
        if let Err(error) = written {
            return (Err(error.into()), frame);
        }
        (self.read_reply().await, frame)
    }

    /// Reads one whole reply frame (an eviction is its error).
    async fn read_reply(&mut self) -> Result<BytesMut, ClientError> {
        self.fill_read(HEADER_BYTES).await?;
        let bytes: [u8; HEADER_BYTES] = self.read_buffer()[..HEADER_BYTES]
            .try_into()
            .expect("256 bytes");
        if let Some(eviction) = Eviction::decode(&bytes) {
            self.read_buffer().advance(HEADER_BYTES);
            *self.vsr_state() = VsrClient::new();
            return Err(ClientError::Server(eviction.reason.code()));
        }
        let size = header::frame_size(&bytes).ok_or(ClientError::MalformedResponse {
            command: "0.9 reply",
            code: ErrorCode::InvalidCommand,
        })? as usize;
        self.fill_read(size).await?;
        Ok(self.read_buffer().split_to(size))
    }

    /// The 0.8 payload of a reply frame, or the error it carries.
    fn reply_payload(
        &mut self,
        code: CommandCode,
        operation: Operation,
        mut reply: BytesMut,
    ) -> Result<BytesMut, ClientError> {
        let bytes: [u8; HEADER_BYTES] = reply[..HEADER_BYTES].try_into().expect("256 bytes");
        let header = ReplyHeader::decode(&bytes)
            .ok_or_else(|| malformed(code)(ErrorCode::InvalidCommand))?;
        if header.status != 0 {
            let status = ErrorCode::from_u32(header.status).unwrap_or(ErrorCode::Error);
            return Err(ClientError::Server(status));
        }
        let mut body = reply.split_off(HEADER_BYTES);
        if operation == Operation::REGISTER {
            let start = header::split_result(&body).map_err(server_code)?;
            let registered = RegisterReply::decode(&body[start..]).map_err(malformed(code))?;
            self.vsr_state().session = registered.session;
            let mut payload = BytesMut::new();
            LoginResponse {
                user_id: registered.user_id,
            }
            .encode(&mut payload);
            return Ok(payload);
        }
        if operation == Operation::LOGOUT {
            *self.vsr_state() = VsrClient::new();
        }
        if operation.is_result_framed() {
            let start = header::split_result(&body).map_err(server_code)?;
            body.advance(start);
        }
        if code == CommandCode::SendMessages {
            // Its confirmations are the 0.9 generation's own; the 0.8 answer is empty.
            return Ok(BytesMut::new());
        }
        if code == CommandCode::PollMessages {
            // Read in place by PolledMessages::iter: neither converted to the 0.8 layout nor
            // copied (a `BytesMut` made from a `Bytes` that shares the read buffer would be).
            return Ok(body);
        }
        let payload = bodies::decode_reply(code, body.freeze()).map_err(malformed(code))?;
        Ok(BytesMut::from(&payload[..]))
    }
}

/// A rejection's code as the client's error.
fn server_code(code: u32) -> ClientError {
    ClientError::Server(ErrorCode::from_u32(code).unwrap_or(ErrorCode::Error))
}
