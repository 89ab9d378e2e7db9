//! The 0.9 envelope (PROTOCOL-0.9.md): 256-byte headers, sessions opened by Register,
//! numbered requests, result-framed replies and evictions, around the same [`Request`]s and
//! handlers as the 0.8 loop. Bodies that changed between the generations are converted at
//! this edge by galgo-protocol's `vsr::bodies`.
//!
//! A connection is lock-step (one request in flight), so a retry can only be of the last
//! numbered request: its reply frame is kept, and the same `(client, request)` is answered
//! from it instead of being applied twice. An older number gets 59 RequestAlreadyApplied.
//!
//! Refusals follow the SDK: a header that cannot be framed (a size outside
//! `[256, 64 MiB]`) closes the connection with one log line; a framed header that breaks a
//! rule (command, client id, operation, numbering, reserved bytes) is answered with status 3;
//! a body whose checksum does not match, 4; anything but Ping before Register, 40; a session
//! that is not the connection's, an eviction; a failed login, the eviction the SDK maps to its
//! error.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use galgo_protocol::{
    CommandCode, ErrorCode, Request,
    vsr::{
        batch::{self, SendConfirmation},
        bodies,
        header::{
            self, Eviction, EvictionReason, FRAME_BYTES_MAX, HEADER_BYTES, Operation, RESULT_OK,
            ReplyHeader, RequestHeader,
        },
        register::{self, Register, RegisterError, RegisterReply},
        routing,
    },
};

mod route;

use super::{Connection, Ended, execute};
use crate::{
    authorization,
    context::{Context, Shard},
    handler::{self, Reply},
    session::{Generation, Session},
};

/// A 0.9 connection's session: what Register bound and what the last numbered request got.
/// Moves with its connection between shards.
#[derive(Debug, Default)]
pub struct VsrSession {
    /// The client id of the registration.
    client: u128,
    /// The session number Register gave; 0 when none is bound.
    session: u64,
    /// The highest numbered request applied in the session.
    last_request: u64,
    /// The frame that answered it, for a retry of the same request.
    last_reply: Option<KeptReply>,
    /// The buffer a poll reply's headers (and short message bodies) are written into, reused
    /// from one poll to the next; the stored message bodies go out as they are.
    poll_buffer: BytesMut,
    /// That buffer as the last poll reply froze it, taken back into `poll_buffer` once the
    /// reply is written.
    poll_reply: Option<Bytes>,
    /// On a data connection of the poll routing: the client id of the main connection it
    /// attached to (AttachConsumerSession), whose consumer-group memberships its polls and
    /// offset writes act for.
    attached: Option<u32>,
}

impl VsrSession {
    /// The bound session: Register's client id and the session number.
    pub fn bound(&self) -> Option<(u128, u64)> {
        (self.session != 0).then_some((self.client, self.session))
    }
}

/// The largest poll buffer a connection keeps between polls; a larger one (an unusually
/// large poll) is freed once written.
const POLL_BUFFER_KEPT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A reply kept for a retry.
#[derive(Debug)]
struct KeptReply {
    request_checksum: u128,
    frame: Vec<Bytes>,
}

/// The connection's 0.9 state. Only the 0.9 loop calls it, on a session it marked 0.9.
fn state(session: &mut Session) -> &mut VsrSession {
    match &mut session.generation {
        Generation::Vsr(state) => state,
        _ => unreachable!("the 0.9 loop serves only sessions it marked 0.9"),
    }
}

impl<S: galgo_transport::ByteStream> Connection<S> {
    /// The 0.9 loop: a header, its body, one reply frame, strictly in order.
    pub(super) async fn run_vsr(
        &mut self,
        shard: &Rc<Shard>,
        context: &Context,
        session: &mut Session,
    ) -> Ended {
        loop {
            if let Err(ended) = self.fill(HEADER_BYTES).await {
                return ended;
            }
            let bytes: [u8; HEADER_BYTES] =
                self.buffer[..HEADER_BYTES].try_into().expect("256 bytes");
            let Some(size) = header::frame_size(&bytes) else {
                let size = u32::from_le_bytes(bytes[48..52].try_into().expect("4 bytes"));
                return Ended::Broken(format!(
                    "0.9 frame size {size} outside [{HEADER_BYTES}, {FRAME_BYTES_MAX}]"
                ));
            };
            let decoded = RequestHeader::decode(&bytes);
            let body_len = size as usize - HEADER_BYTES;
            let code = decoded.as_ref().map_or(0, command_of);
            if body_len > context.seed.limits.payload().bytes_max(code) as usize {
                crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, code, body_len, "0.9 body over the frame limit; answering, then draining it");
                context.requests.record_error(ErrorCode::InvalidCommand);
                let refused = refusal(&bytes, ErrorCode::InvalidCommand);
                if let Err(ended) = self.refuse_and_drain(refused, size as usize).await {
                    return ended;
                }
                continue;
            }
            if let Err(ended) = self.fill(size as usize).await {
                return ended;
            }
            let mut frame = super::take_frame(&mut self.buffer, size as usize);
            let body = frame.split_off(HEADER_BYTES);
            let reply = match decoded {
                Ok(header) => answer(shard, context, session, header, body).await,
                Err(error) => {
                    crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, %error, "0.9 request header refused");
                    context.requests.record_error(error.code());
                    refusal(&bytes, error.code())
                }
            };
            let answered = self.answer(session, reply).await;
            // The write has dropped its copy of the frame, moved or not.
            reclaim_poll_buffer(state(session));
            if let Err(ended) = answered {
                return ended;
            }
        }
    }
}

/// Takes the written poll reply's buffer back for the next poll: the write has dropped its
/// copy of the frame, so this one is the only reference left.
fn reclaim_poll_buffer(state: &mut VsrSession) {
    if let Some(reply) = state.poll_reply.take()
        && let Ok(buffer) = reply.try_into_mut()
        && buffer.capacity() <= POLL_BUFFER_KEPT_BYTES_MAX
    {
        state.poll_buffer = buffer;
    }
}

/// The 0.8 command code a header carries (0 when it carries none). PollMessagesOnPrimary is
/// a poll, on the data connection of the poll routing.
fn command_of(header: &RequestHeader) -> u32 {
    match header.operation {
        Operation::NON_REPLICATED if header.code == routing::POLL_MESSAGES_ON_PRIMARY => {
            CommandCode::PollMessages.as_u32()
        }
        Operation::NON_REPLICATED => header.code,
        Operation::LOGOUT => CommandCode::LogoutUser.as_u32(),
        Operation::REGISTER => CommandCode::LoginUser.as_u32(),
        operation => operation
            .replicated_command()
            .map_or(0, CommandCode::as_u32),
    }
}

/// Answers one request whose header is valid: the whole reply frame.
async fn answer(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    header: RequestHeader,
    body: BytesMut,
) -> Vec<Bytes> {
    if header.operation == Operation::REGISTER {
        return register(shard, context, session, &header, &body).await;
    }
    if let Err(refused) = admit(shard, session, &header, &body) {
        if let Refused::Status(code) = refused {
            context.requests.record_error(code);
        }
        return refused.frame(shard, session, &header);
    }
    if header.operation == Operation::NON_REPLICATED
        && let Some(frame) = route::answer(shard, context, session, &header, &body).await
    {
        return frame;
    }
    let outcome = if header.operation == Operation::LOGOUT {
        execute(
            shard,
            context,
            session,
            Request::LogoutUser(Default::default()),
        )
        .await
    } else {
        run(shard, context, session, &header, body).await
    };
    let frame = match outcome {
        Ok(reply) => success(shard, session, &header, reply),
        Err(error) => {
            context.requests.record_error(error.code());
            status(shard, session, &header, error.code())
        }
    };
    if header.operation == Operation::LOGOUT {
        *state(session) = VsrSession::default();
        let clients = &shard.state().clients;
        clients
            .borrow_mut()
            .set_vsr_session(session.client_id, None);
    } else if header.operation.is_numbered() {
        let state = state(session);
        state.last_request = header.request;
        state.last_reply = Some(KeptReply {
            request_checksum: header.request_checksum,
            frame: frame.clone(),
        });
    }
    frame
}

/// Why a request was answered without running.
enum Refused {
    /// A reply with this status.
    Status(ErrorCode),
    /// The kept reply of the same request, sent again.
    Replay(Vec<Bytes>),
    /// The session ends.
    Evict(EvictionReason),
}

impl Refused {
    fn frame(self, shard: &Shard, session: &mut Session, header: &RequestHeader) -> Vec<Bytes> {
        match self {
            Refused::Status(code) => status(shard, session, header, code),
            Refused::Replay(frame) => frame,
            Refused::Evict(reason) => evict(shard, session, header.client, reason, None),
        }
    }
}

/// The checks between a valid header and the handlers: the body checksum, the session, the
/// request number, and the commands this envelope does not carry.
fn admit(
    shard: &Shard,
    session: &mut Session,
    header: &RequestHeader,
    body: &[u8],
) -> Result<(), Refused> {
    if !header.body_checksum_matches(body) {
        return Err(Refused::Status(ErrorCode::InvalidFormat));
    }
    let logins = [
        CommandCode::LoginUser,
        CommandCode::LoginWithPersonalAccessToken,
    ];
    if header.operation == Operation::NON_REPLICATED
        && logins.iter().any(|login| login.as_u32() == header.code)
    {
        // The 0.8 logins do not exist in this envelope: the SDK expects MalformedLogin.
        return Err(Refused::Evict(EvictionReason::MalformedLogin));
    }
    let bound = state(session).session;
    if header.session == 0 {
        let ping = header.code == CommandCode::Ping.as_u32();
        return if ping {
            Ok(())
        } else {
            Err(Refused::Status(ErrorCode::Unauthenticated))
        };
    }
    if bound == 0 {
        return Err(Refused::Status(ErrorCode::Unauthenticated));
    }
    if header.session != bound || header.client != state(session).client {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, sent = header.session, bound, "0.9 request of another session; evicting");
        return Err(Refused::Evict(EvictionReason::SessionTooLow));
    }
    if header.operation.is_numbered() {
        check_number(state(session), header)?;
    }
    Ok(())
}

/// A numbered request must be new (any number above the last: gaps are allowed), or a retry
/// of the last one, which gets its kept reply.
fn check_number(state: &VsrSession, header: &RequestHeader) -> Result<(), Refused> {
    if header.request > state.last_request {
        return Ok(());
    }
    match &state.last_reply {
        Some(kept)
            if header.request == state.last_request
                && kept.request_checksum == header.request_checksum =>
        {
            Err(Refused::Replay(kept.frame.clone()))
        }
        _ => Err(Refused::Status(ErrorCode::RequestAlreadyApplied)),
    }
}

/// Decodes and runs a request other than Register and Logout.
async fn run(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    header: &RequestHeader,
    body: BytesMut,
) -> handler::Outcome {
    let code = command_of(header);
    authorization::authenticate(shard, session, code)?;
    let command = CommandCode::from_u32(code).ok_or(ErrorCode::InvalidCommand)?;
    let request = match bodies::decode_request(command, body) {
        Ok(request) => request,
        Err(error) => {
            crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, code, %error, "malformed 0.9 request");
            return Err(error.into());
        }
    };
    // A data connection's polls and offset writes act for the main connection's memberships.
    let acts_for_parent = matches!(
        command,
        CommandCode::PollMessages
            | CommandCode::StoreConsumerOffset
            | CommandCode::DeleteConsumerOffset
    );
    match state(session).attached.filter(|_| acts_for_parent) {
        Some(parent) => {
            let own = std::mem::replace(&mut session.client_id, parent);
            let outcome = execute(shard, context, session, request).await;
            session.client_id = own;
            outcome
        }
        None => execute(shard, context, session, request).await,
    }
}

/// The frame of a successful reply: the body converted to its 0.9 form, behind a result
/// section where the operation has one.
fn success(
    shard: &Shard,
    session: &mut Session,
    header: &RequestHeader,
    reply: Reply,
) -> Vec<Bytes> {
    let code = CommandCode::from_u32(command_of(header));
    let body = match (code, reply.appended_to()) {
        (Some(CommandCode::SendMessages), Some(appended)) => {
            let confirmation = SendConfirmation {
                stream_id: appended.stream_id,
                topic_id: appended.topic_id,
                partition_id: appended.partition_id,
                base_offset: appended.base_offset,
            };
            let mut out = BytesMut::new();
            SendConfirmation::encode_list(&[confirmation], &mut out);
            Ok(vec![out.freeze()])
        }
        (Some(CommandCode::PollMessages), _) => {
            let state = state(session);
            let scratch = std::mem::take(&mut state.poll_buffer);
            let (chunks, kept) = reply.into_polled();
            batch::encode_polled_pieces(&chunks, &kept, scratch).map(|(pieces, whole)| {
                state.poll_reply = Some(whole);
                pieces
            })
        }
        (Some(code), _) => bodies::encode_reply(code, reply.into_chunks()),
        (None, _) => Ok(reply.into_chunks()),
    };
    match body {
        Ok(mut body) => {
            if header.operation.is_result_framed() {
                body.insert(0, Bytes::from_static(&RESULT_OK));
            }
            frame(shard, session, header, 0, body)
        }
        Err(code) => status(shard, session, header, code),
    }
}

/// A reply frame: the header answering `header`, then `body`.
fn frame(
    shard: &Shard,
    session: &mut Session,
    header: &RequestHeader,
    status: u32,
    body: Vec<Bytes>,
) -> Vec<Bytes> {
    let body_len = body.iter().map(Bytes::len).sum();
    let mut reply = ReplyHeader::answering(header, body_len, status);
    let bound = state(session).session;
    reply.op = bound;
    reply.commit = shard.metadata.borrow().version().max(bound);
    let mut bytes = [0; HEADER_BYTES];
    reply.encode(&mut bytes);
    if body_len > SMALL_REPLY_BODY_BYTES_MAX {
        let mut frame = Vec::with_capacity(1 + body.len());
        frame.push(Bytes::copy_from_slice(&bytes));
        frame.extend(body);
        return frame;
    }
    // A small reply (most of them: confirmations, records, statuses) leaves as one buffer:
    // one allocation and one iovec instead of one per piece.
    let mut whole = BytesMut::with_capacity(HEADER_BYTES + body_len);
    whole.extend_from_slice(&bytes);
    for chunk in &body {
        whole.extend_from_slice(chunk);
    }
    vec![whole.freeze()]
}

/// The largest reply body copied behind its header into one buffer; larger ones (polls) are
/// sent as their own chunks.
const SMALL_REPLY_BODY_BYTES_MAX: usize = 4 * 1024;

/// A refusal with an empty body.
fn status(
    shard: &Shard,
    session: &mut Session,
    header: &RequestHeader,
    code: ErrorCode,
) -> Vec<Bytes> {
    frame(shard, session, header, code.as_u32(), Vec::new())
}

/// The answer to a header that broke a rule but can be framed: status `code`, with what can
/// be echoed of it, and NonReplicated as the operation (the operation byte may be unknown).
fn refusal(bytes: &[u8; HEADER_BYTES], code: ErrorCode) -> Vec<Bytes> {
    let at = |from: usize| u128::from_le_bytes(bytes[from..from + 16].try_into().expect("16"));
    let at64 = |from: usize| u64::from_le_bytes(bytes[from..from + 8].try_into().expect("8"));
    let reply = ReplyHeader {
        size: HEADER_BYTES as u32,
        cluster: at(32),
        request_checksum: at(header::REQUEST_CHECKSUM_AT),
        client: at(header::CLIENT_AT),
        op: 0,
        commit: 0,
        timestamp: at64(header::TIMESTAMP_AT),
        request: at64(header::REQUEST_AT),
        operation: Operation::NON_REPLICATED,
        status: code.as_u32(),
    };
    let mut out = [0; HEADER_BYTES];
    reply.encode(&mut out);
    vec![Bytes::copy_from_slice(&out)]
}

/// Ends the connection's session (its user is logged out, as at disconnect in 0.8) and
/// answers with an eviction.
fn evict(
    shard: &Shard,
    session: &mut Session,
    client: u128,
    reason: EvictionReason,
    window: Option<(u32, u32)>,
) -> Vec<Bytes> {
    *state(session) = VsrSession::default();
    let clients = &shard.state().clients;
    clients
        .borrow_mut()
        .set_vsr_session(session.client_id, None);
    if session.user_id.is_some() {
        session.log_out();
        clients.borrow_mut().set_user(session.client_id, None);
    }
    let mut out = [0; HEADER_BYTES];
    Eviction {
        client,
        reason,
        window,
    }
    .encode(&mut out);
    vec![Bytes::copy_from_slice(&out)]
}

/// Register: the login of the 0.9 generation. The version gate first, then the same login
/// handlers as 0.8's LoginUser and LoginWithPersonalAccessToken; a new session on success,
/// an eviction on failure.
async fn register(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    header: &RequestHeader,
    body: &[u8],
) -> Vec<Bytes> {
    if !header.body_checksum_matches(body) {
        return status(shard, session, header, ErrorCode::InvalidFormat);
    }
    // The version gate comes first: a client of another protocol version may well send a
    // body this one cannot read, and must learn the window rather than "malformed".
    let (version, login) = match Register::decode(body) {
        Ok(login) => (login.protocol_version, Some(login)),
        Err(RegisterError::MalformedBody { protocol_version }) => (protocol_version, None),
        Err(RegisterError::MalformedVersion) => (0, None),
    };
    if version != 0 && !register::accepts(version) {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, version, "0.9 login with an incompatible protocol version");
        let window = Some(register::accepted_window());
        return evict(
            shard,
            session,
            header.client,
            EvictionReason::IncompatibleProtocol,
            window,
        );
    }
    let Some(login) = login else {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, "malformed 0.9 login");
        return evict(
            shard,
            session,
            header.client,
            EvictionReason::MalformedLogin,
            None,
        );
    };
    match execute(shard, context, session, login.into_request()).await {
        Ok(_) => registered(shard, session, header),
        Err(error) => {
            context.requests.record_error(error.code());
            let reason = login_eviction(error.code());
            evict(shard, session, header.client, reason, None)
        }
    }
}

/// A session bound after a successful login, and its result-framed reply.
fn registered(shard: &Shard, session: &mut Session, header: &RequestHeader) -> Vec<Bytes> {
    let user_id = session.user_id.unwrap_or_default();
    let number = shard.state().next_session(shard.id());
    *state(session) = VsrSession {
        client: header.client,
        session: number,
        ..VsrSession::default()
    };
    let clients = &shard.state().clients;
    clients
        .borrow_mut()
        .set_vsr_session(session.client_id, Some((header.client, number)));
    let reply = RegisterReply {
        user_id,
        session: number,
        server_protocol_version: register::PROTOCOL_VERSION,
        server_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut body = BytesMut::from(&RESULT_OK[..]);
    reply.encode(&mut body);
    frame(shard, session, header, 0, vec![body.freeze()])
}

/// The eviction a failed login is answered with, so the SDK reports the error it would get
/// from Iggy.
fn login_eviction(code: ErrorCode) -> EvictionReason {
    match code {
        ErrorCode::InvalidCredentials => EvictionReason::InvalidCredentials,
        ErrorCode::ResourceNotFound
        | ErrorCode::PersonalAccessTokenExpired
        | ErrorCode::InvalidPersonalAccessToken => EvictionReason::InvalidToken,
        ErrorCode::UserInactive => EvictionReason::UserInactive,
        _ => EvictionReason::SessionError,
    }
}
