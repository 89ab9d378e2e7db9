//! The 256-byte headers of the 0.9 framing (PROTOCOL-0.9.md §2): the client's Request, the
//! server's Reply and Eviction, the operation byte that names a command, and the result
//! section that leads the replies of replicated operations (§6.2).
//!
//! Byte positions are absolute from the first byte of the frame. The header checksums at 0..32
//! are not part of the client protocol (§4.1): requests are not checked against them and
//! replies carry zeros.

use crate::code::CommandCode;
use crate::error::ErrorCode;

/// Size of every header, and of a header-only frame.
pub const HEADER_BYTES: usize = 256;
/// Largest frame, header included, either side accepts (the Iggy server's limit).
pub const FRAME_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// `size`: the whole frame's length, header included.
pub const SIZE_AT: usize = 48;
/// `command`: what kind of header this is.
pub const COMMAND_AT: usize = 60;
/// Request: the client id.
pub const CLIENT_AT: usize = 128;
/// Request: XXH3-64 of the body, or 0.
pub const REQUEST_CHECKSUM_AT: usize = 144;
/// Request: the client's timestamp (echoed).
pub const TIMESTAMP_AT: usize = 160;
/// Request: the request number.
pub const REQUEST_AT: usize = 168;
/// Request: the operation.
pub const OPERATION_AT: usize = 176;
/// Request: the session number.
pub const SESSION_AT: usize = 184;
/// Request: the user id (overwritten by servers, never trusted).
pub const USER_ID_AT: usize = 192;
/// Request, operation NonReplicated: the 0.8 command code.
pub const CODE_AT: usize = 196;
/// Reply: the echoed request checksum.
pub const REPLY_REQUEST_CHECKSUM_AT: usize = 128;
/// Reply: the echoed client id.
pub const REPLY_CLIENT_AT: usize = 160;
/// Reply: the committed op (the session, for a single node).
pub const REPLY_OP_AT: usize = 176;
/// Reply: the server's commit number.
pub const REPLY_COMMIT_AT: usize = 184;
/// Reply: the echoed timestamp.
pub const REPLY_TIMESTAMP_AT: usize = 192;
/// Reply: the echoed request number.
pub const REPLY_REQUEST_AT: usize = 200;
/// Reply: the echoed operation; clients strip a result section by it.
pub const REPLY_OPERATION_AT: usize = 208;
/// Reply: 0, or an error code with an empty body.
pub const REPLY_STATUS_AT: usize = 216;
/// Eviction: the highest protocol version accepted (reason 14 only).
pub const EVICTION_VERSION_AT: usize = 144;
/// Eviction: the lowest protocol version accepted (reason 14 only).
pub const EVICTION_VERSION_MIN_AT: usize = 148;
/// Eviction: the reason.
pub const EVICTION_REASON_AT: usize = 255;

/// The `command` byte of a client's request.
pub const COMMAND_REQUEST: u8 = 5;
/// The `command` byte of a server's reply.
pub const COMMAND_REPLY: u8 = 8;
/// The `command` byte of an eviction.
pub const COMMAND_EVICTION: u8 = 13;

/// The byte that names a command (§3.1): login, logout, "read the code at 196", or one
/// operation per replicated command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Operation(u8);

/// The replicated operations and the command each one carries (§3.2).
const REPLICATED: [(u8, CommandCode); 25] = [
    (128, CommandCode::CreateStream),
    (129, CommandCode::UpdateStream),
    (130, CommandCode::DeleteStream),
    (131, CommandCode::PurgeStream),
    (132, CommandCode::CreateTopic),
    (133, CommandCode::UpdateTopic),
    (134, CommandCode::DeleteTopic),
    (135, CommandCode::PurgeTopic),
    (136, CommandCode::CreatePartitions),
    (137, CommandCode::DeletePartitions),
    (138, CommandCode::DeleteSegments),
    (139, CommandCode::CreateConsumerGroup),
    (140, CommandCode::DeleteConsumerGroup),
    (141, CommandCode::CreateUser),
    (142, CommandCode::UpdateUser),
    (143, CommandCode::DeleteUser),
    (144, CommandCode::ChangePassword),
    (145, CommandCode::UpdatePermissions),
    (146, CommandCode::CreatePersonalAccessToken),
    (147, CommandCode::DeletePersonalAccessToken),
    (148, CommandCode::JoinConsumerGroup),
    (149, CommandCode::LeaveConsumerGroup),
    (160, CommandCode::SendMessages),
    (161, CommandCode::StoreConsumerOffset),
    (162, CommandCode::DeleteConsumerOffset),
];

impl Operation {
    /// Login: Register a session (LoginRegister 40 or LoginRegisterWithPat 45 by body shape).
    pub const REGISTER: Operation = Operation(1);
    /// Every command that changes nothing replicated: its code is at [`CODE_AT`].
    pub const NON_REPLICATED: Operation = Operation(2);
    /// LogoutUser.
    pub const LOGOUT: Operation = Operation(3);
    /// The first operation of the partition plane.
    const PARTITION_START: u8 = 160;

    /// The operation for a wire byte, or `None` for 0 and bytes no client may send (the
    /// servers' internal operations 64–68 among them).
    pub fn from_u8(byte: u8) -> Option<Operation> {
        let known = matches!(byte, 1..=3) || REPLICATED.iter().any(|(op, _)| *op == byte);
        known.then_some(Operation(byte))
    }

    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self.0
    }

    /// The operation a client sends `code` with: its replicated operation, Logout, or
    /// NonReplicated (the code then travels at [`CODE_AT`]). Logins are [`Self::REGISTER`]
    /// and are not looked up here.
    pub fn for_code(code: CommandCode) -> Operation {
        if code == CommandCode::LogoutUser {
            return Operation::LOGOUT;
        }
        REPLICATED
            .iter()
            .find(|(_, replicated)| *replicated == code)
            .map_or(Operation::NON_REPLICATED, |(op, _)| Operation(*op))
    }

    /// The command a replicated operation carries; `None` for Register, NonReplicated and
    /// Logout, whose command is not implied by the byte alone.
    pub fn replicated_command(self) -> Option<CommandCode> {
        REPLICATED
            .iter()
            .find(|(op, _)| *op == self.0)
            .map(|(_, code)| *code)
    }

    /// True for the operations numbered per session (everything but Register and
    /// NonReplicated): a retry of one must be answered, not applied twice.
    pub fn is_numbered(self) -> bool {
        self != Operation::REGISTER && self != Operation::NON_REPLICATED
    }

    /// True when a reply to this operation starts with a result section (§6.2): the metadata
    /// operations and the consumer-offset writes. DeleteSegments is not among them: the SDK
    /// counts it neither a metadata nor a partition operation. A successful Register reply
    /// is result-framed too, which [`Operation::REGISTER`]'s callers handle themselves.
    pub fn is_result_framed(self) -> bool {
        let metadata = (128..=149).contains(&self.0) && self.0 != 138;
        metadata || self.0 == 161 || self.0 == 162
    }

    /// True for the partition plane (SendMessages and the offset writes).
    pub fn is_partition(self) -> bool {
        self.0 >= Self::PARTITION_START
    }
}

fn u32_at(bytes: &[u8; HEADER_BYTES], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8; HEADER_BYTES], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn u128_at(bytes: &[u8; HEADER_BYTES], at: usize) -> u128 {
    u128::from_le_bytes(bytes[at..at + 16].try_into().expect("16 bytes"))
}

/// The size a header declares for its whole frame, if it is in `[256, FRAME_BYTES_MAX]`; a
/// frame outside that range cannot be framed at all.
pub fn frame_size(bytes: &[u8; HEADER_BYTES]) -> Option<u32> {
    let size = u32_at(bytes, SIZE_AT);
    (HEADER_BYTES as u32..=FRAME_BYTES_MAX)
        .contains(&size)
        .then_some(size)
}

/// Why a request header (whose size is valid) was refused (§2.3). The frame's bytes are still
/// delimited, so the connection can answer and go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The `command` byte is not 5 (a reply, an eviction or a replica's message).
    #[error("command {0} is not a request")]
    NotARequest(u8),
    /// The client id is 0.
    #[error("client id 0")]
    NoClient,
    /// The operation is 0, internal, or unknown.
    #[error("unknown operation {0}")]
    UnknownOperation(u8),
    /// Register with a session or request number, or another numbered operation without.
    #[error("operation {operation} with session {session} and request {request}")]
    Numbering {
        /// The operation.
        operation: u8,
        /// The session sent.
        session: u64,
        /// The request number sent.
        request: u64,
    },
    /// Bytes every client leaves zero are not.
    #[error("reserved bytes are not zero")]
    Reserved,
}

impl HeaderError {
    /// The status the refusal is answered with.
    pub fn code(self) -> ErrorCode {
        ErrorCode::InvalidCommand
    }
}

/// A client's request header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// The whole frame's size, header included.
    pub size: u32,
    /// The cluster id (echoed).
    pub cluster: u128,
    /// The client id: random per registration, never 0.
    pub client: u128,
    /// XXH3-64 of the body zero-extended, or 0 for "unstamped".
    pub request_checksum: u128,
    /// Echoed.
    pub timestamp: u64,
    /// The request number.
    pub request: u64,
    /// What the request is.
    pub operation: Operation,
    /// The session number, 0 before login.
    pub session: u64,
    /// The 0.8 command code, for [`Operation::NON_REPLICATED`] (0 otherwise).
    pub code: u32,
}

impl RequestHeader {
    /// Decodes and validates a request header whose size [`frame_size`] accepted.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Result<RequestHeader, HeaderError> {
        if bytes[COMMAND_AT] != COMMAND_REQUEST {
            return Err(HeaderError::NotARequest(bytes[COMMAND_AT]));
        }
        let client = u128_at(bytes, CLIENT_AT);
        if client == 0 {
            return Err(HeaderError::NoClient);
        }
        let byte = bytes[OPERATION_AT];
        let operation = Operation::from_u8(byte).ok_or(HeaderError::UnknownOperation(byte))?;
        let (session, request) = (u64_at(bytes, SESSION_AT), u64_at(bytes, REQUEST_AT));
        let numbering_ok = match operation {
            Operation::REGISTER => session == 0 && request == 0,
            Operation::NON_REPLICATED => true,
            _ => session > 0 && request > 0,
        };
        if !numbering_ok {
            return Err(HeaderError::Numbering {
                operation: byte,
                session,
                request,
            });
        }
        let code = u32_at(bytes, CODE_AT);
        let code_ok = operation == Operation::NON_REPLICATED || code == 0;
        let padding = &bytes[OPERATION_AT + 1..SESSION_AT];
        if !code_ok || !reserved_are_zero(bytes) || padding.iter().any(|&b| b != 0) {
            return Err(HeaderError::Reserved);
        }
        Ok(RequestHeader {
            size: u32_at(bytes, SIZE_AT),
            cluster: u128_at(bytes, 32),
            client,
            request_checksum: u128_at(bytes, REQUEST_CHECKSUM_AT),
            timestamp: u64_at(bytes, TIMESTAMP_AT),
            request,
            operation,
            session,
            code,
        })
    }

    /// The body's length.
    pub fn body_len(&self) -> usize {
        self.size as usize - HEADER_BYTES
    }

    /// True when `request_checksum` is 0 or matches `body` (§4.2).
    pub fn body_checksum_matches(&self, body: &[u8]) -> bool {
        self.request_checksum == 0 || self.request_checksum == body_checksum(body)
    }

    /// Writes the header as a client sends it (checksums at 0..32, view, release and replica
    /// all 0).
    pub fn encode(&self, out: &mut [u8; HEADER_BYTES]) {
        out.fill(0);
        out[32..48].copy_from_slice(&self.cluster.to_le_bytes());
        out[SIZE_AT..SIZE_AT + 4].copy_from_slice(&self.size.to_le_bytes());
        out[COMMAND_AT] = COMMAND_REQUEST;
        out[CLIENT_AT..CLIENT_AT + 16].copy_from_slice(&self.client.to_le_bytes());
        out[REQUEST_CHECKSUM_AT..REQUEST_CHECKSUM_AT + 16]
            .copy_from_slice(&self.request_checksum.to_le_bytes());
        out[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&self.timestamp.to_le_bytes());
        out[REQUEST_AT..REQUEST_AT + 8].copy_from_slice(&self.request.to_le_bytes());
        out[OPERATION_AT] = self.operation.as_u8();
        out[SESSION_AT..SESSION_AT + 8].copy_from_slice(&self.session.to_le_bytes());
        out[CODE_AT..CODE_AT + 4].copy_from_slice(&self.code.to_le_bytes());
    }
}

/// True when the bytes no client fills are zero: `view`, `release`, `replica`, the rest of the
/// frame part after `command`, `user_id` aside (servers ignore it), and everything after the
/// code slot.
fn reserved_are_zero(bytes: &[u8; HEADER_BYTES]) -> bool {
    let view_release = &bytes[52..COMMAND_AT];
    let frame_rest = &bytes[COMMAND_AT + 1..CLIENT_AT];
    let tail = &bytes[CODE_AT + 4..];
    [view_release, frame_rest, tail]
        .iter()
        .all(|part| part.iter().all(|&b| b == 0))
}

/// XXH3-64 of a body, zero-extended: the `request_checksum` a client stamps (§4.2).
pub fn body_checksum(body: &[u8]) -> u128 {
    u128::from(crate::message::xxh3_64(body))
}

/// What a reply says besides its echoes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyHeader {
    /// The whole frame's size, header included.
    pub size: u32,
    /// The echoed cluster id.
    pub cluster: u128,
    /// The echoed request checksum.
    pub request_checksum: u128,
    /// The echoed client id.
    pub client: u128,
    /// The committed op; the session for a single node.
    pub op: u64,
    /// The server's commit number, at least `op`.
    pub commit: u64,
    /// The echoed timestamp.
    pub timestamp: u64,
    /// The echoed request number.
    pub request: u64,
    /// The echoed operation.
    pub operation: Operation,
    /// 0, or an error code (the body is then empty).
    pub status: u32,
}

impl ReplyHeader {
    /// The reply to `request`, for a body of `body_len` bytes.
    pub fn answering(request: &RequestHeader, body_len: usize, status: u32) -> ReplyHeader {
        ReplyHeader {
            size: (HEADER_BYTES + body_len) as u32,
            cluster: request.cluster,
            request_checksum: request.request_checksum,
            client: request.client,
            op: 0,
            commit: 0,
            timestamp: request.timestamp,
            request: request.request,
            operation: request.operation,
            status,
        }
    }

    /// Writes the header.
    pub fn encode(&self, out: &mut [u8; HEADER_BYTES]) {
        out.fill(0);
        out[32..48].copy_from_slice(&self.cluster.to_le_bytes());
        out[SIZE_AT..SIZE_AT + 4].copy_from_slice(&self.size.to_le_bytes());
        out[COMMAND_AT] = COMMAND_REPLY;
        let at = REPLY_REQUEST_CHECKSUM_AT;
        out[at..at + 16].copy_from_slice(&self.request_checksum.to_le_bytes());
        out[REPLY_CLIENT_AT..REPLY_CLIENT_AT + 16].copy_from_slice(&self.client.to_le_bytes());
        out[REPLY_OP_AT..REPLY_OP_AT + 8].copy_from_slice(&self.op.to_le_bytes());
        out[REPLY_COMMIT_AT..REPLY_COMMIT_AT + 8].copy_from_slice(&self.commit.to_le_bytes());
        let at = REPLY_TIMESTAMP_AT;
        out[at..at + 8].copy_from_slice(&self.timestamp.to_le_bytes());
        out[REPLY_REQUEST_AT..REPLY_REQUEST_AT + 8].copy_from_slice(&self.request.to_le_bytes());
        out[REPLY_OPERATION_AT] = self.operation.as_u8();
        out[REPLY_STATUS_AT..REPLY_STATUS_AT + 4].copy_from_slice(&self.status.to_le_bytes());
    }

    /// Decodes a reply header (the client side); `None` when `command` is not 8 or the
    /// operation is unknown.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Option<ReplyHeader> {
        if bytes[COMMAND_AT] != COMMAND_REPLY {
            return None;
        }
        Some(ReplyHeader {
            size: frame_size(bytes)?,
            cluster: u128_at(bytes, 32),
            request_checksum: u128_at(bytes, REPLY_REQUEST_CHECKSUM_AT),
            client: u128_at(bytes, REPLY_CLIENT_AT),
            op: u64_at(bytes, REPLY_OP_AT),
            commit: u64_at(bytes, REPLY_COMMIT_AT),
            timestamp: u64_at(bytes, REPLY_TIMESTAMP_AT),
            request: u64_at(bytes, REPLY_REQUEST_AT),
            operation: Operation::from_u8(bytes[REPLY_OPERATION_AT])?,
            status: u32_at(bytes, REPLY_STATUS_AT),
        })
    }
}

/// Why a session ends (§2.5), as the Eviction's last byte.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionReason {
    /// No session for this client id (the SDK reports 40).
    NoSession = 1,
    /// The request's operation is not valid here (3).
    InvalidRequestOperation = 4,
    /// The request's body is not valid (3).
    InvalidRequestBody = 5,
    /// The session number is not the connection's (40).
    SessionTooLow = 7,
    /// Wrong username or password at login (42).
    InvalidCredentials = 9,
    /// An unknown or expired personal access token at login (53).
    InvalidToken = 10,
    /// The user is inactive (40).
    UserInactive = 11,
    /// The session could not be opened (40).
    SessionError = 12,
    /// The client was silent too long (30).
    StaleClient = 13,
    /// The client's protocol version is outside the server's window (14003).
    IncompatibleProtocol = 14,
    /// A login without a readable version prefix, or a 0.8 login code (4).
    MalformedLogin = 15,
}

impl EvictionReason {
    /// The reason for a wire byte.
    pub fn from_u8(byte: u8) -> Option<EvictionReason> {
        use EvictionReason::*;
        [
            NoSession,
            InvalidRequestOperation,
            InvalidRequestBody,
            SessionTooLow,
            InvalidCredentials,
            InvalidToken,
            UserInactive,
            SessionError,
            StaleClient,
            IncompatibleProtocol,
            MalformedLogin,
        ]
        .into_iter()
        .find(|reason| *reason as u8 == byte)
    }

    /// The error code the official SDK reports for this reason.
    pub fn code(self) -> ErrorCode {
        use EvictionReason::*;
        match self {
            InvalidRequestOperation | InvalidRequestBody => ErrorCode::InvalidCommand,
            InvalidCredentials => ErrorCode::InvalidCredentials,
            InvalidToken => ErrorCode::InvalidPersonalAccessToken,
            StaleClient => ErrorCode::StaleClient,
            IncompatibleProtocol => ErrorCode::IncompatibleProtocolVersion,
            MalformedLogin => ErrorCode::InvalidFormat,
            NoSession | SessionTooLow | UserInactive | SessionError => ErrorCode::Unauthenticated,
        }
    }
}

/// An eviction: the end of a session, sent as a header-only frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Eviction {
    /// The evicted client id (never 0 on the wire).
    pub client: u128,
    /// Why.
    pub reason: EvictionReason,
    /// For [`EvictionReason::IncompatibleProtocol`]: the window of versions accepted,
    /// `(lowest, highest)`.
    pub window: Option<(u32, u32)>,
}

impl Eviction {
    /// Writes the frame.
    pub fn encode(&self, out: &mut [u8; HEADER_BYTES]) {
        out.fill(0);
        out[SIZE_AT..SIZE_AT + 4].copy_from_slice(&(HEADER_BYTES as u32).to_le_bytes());
        out[COMMAND_AT] = COMMAND_EVICTION;
        // A client that sent id 0 was refused before it had a session; 1 keeps the field
        // valid for the SDK's decoder.
        let client = self.client.max(1);
        out[CLIENT_AT..CLIENT_AT + 16].copy_from_slice(&client.to_le_bytes());
        if let Some((lowest, highest)) = self.window {
            let at = EVICTION_VERSION_AT;
            out[at..at + 4].copy_from_slice(&highest.to_le_bytes());
            let at = EVICTION_VERSION_MIN_AT;
            out[at..at + 4].copy_from_slice(&lowest.to_le_bytes());
        }
        out[EVICTION_REASON_AT] = self.reason as u8;
    }

    /// Decodes an eviction (the client side); `None` when `command` is not 13 or the reason
    /// is unknown.
    pub fn decode(bytes: &[u8; HEADER_BYTES]) -> Option<Eviction> {
        if bytes[COMMAND_AT] != COMMAND_EVICTION {
            return None;
        }
        let reason = EvictionReason::from_u8(bytes[EVICTION_REASON_AT])?;
        let window = (reason == EvictionReason::IncompatibleProtocol).then(|| {
            (
                u32_at(bytes, EVICTION_VERSION_MIN_AT),
                u32_at(bytes, EVICTION_VERSION_AT),
            )
        });
        Some(Eviction {
            client: u128_at(bytes, CLIENT_AT),
            reason,
            window,
        })
    }
}

/// The result section of a successful result-framed reply: no results.
pub const RESULT_OK: [u8; 4] = [0; 4];

/// The result section of a refused result-framed reply: one result, index 0, `code`.
pub fn result_rejection(code: ErrorCode) -> [u8; 12] {
    let mut out = [0; 12];
    out[0..4].copy_from_slice(&1u32.to_le_bytes());
    out[8..12].copy_from_slice(&code.as_u32().to_le_bytes());
    out
}

/// Splits a result-framed body (the client side): `Ok(payload position)` on success, the
/// first result's code on rejection, `Err(InvalidCommand)` when the section is cut short.
pub fn split_result(body: &[u8]) -> Result<usize, u32> {
    let invalid = ErrorCode::InvalidCommand.as_u32();
    let count = body
        .get(..4)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
        .ok_or(invalid)?;
    if count == 0 {
        return Ok(4);
    }
    body.get(8..12)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
        .ok_or(invalid)
        .and_then(Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// §12.4: a Ping after login, request 1, session 1.
    fn ping_after_login() -> [u8; HEADER_BYTES] {
        let mut bytes = [0; HEADER_BYTES];
        bytes[0x30] = 0x00;
        bytes[0x31] = 0x01;
        bytes[COMMAND_AT] = COMMAND_REQUEST;
        for (i, byte) in bytes[CLIENT_AT..CLIENT_AT + 16].iter_mut().enumerate() {
            *byte = i as u8;
        }
        bytes[REQUEST_AT] = 1;
        bytes[OPERATION_AT] = 2;
        bytes[SESSION_AT] = 1;
        bytes[CODE_AT] = 1;
        bytes
    }

    #[test]
    fn decodes_the_worked_ping() {
        let bytes = ping_after_login();
        assert_eq!(frame_size(&bytes), Some(256));
        let header = RequestHeader::decode(&bytes).expect("valid");
        assert_eq!(header.client, 0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100);
        assert_eq!(
            (
                header.operation,
                header.request,
                header.session,
                header.code
            ),
            (Operation::NON_REPLICATED, 1, 1, 1)
        );
        let mut again = [0; HEADER_BYTES];
        header.encode(&mut again);
        assert_eq!(again, bytes);
    }

    #[test]
    fn encodes_the_worked_ping_reply() {
        let request = RequestHeader::decode(&ping_after_login()).expect("valid");
        let mut reply = ReplyHeader::answering(&request, 0, 0);
        (reply.op, reply.commit) = (1, 1);
        let mut bytes = [0; HEADER_BYTES];
        reply.encode(&mut bytes);
        let mut want = [0u8; HEADER_BYTES];
        want[0x31] = 1;
        want[COMMAND_AT] = COMMAND_REPLY;
        for (i, byte) in want[0xA0..0xB0].iter_mut().enumerate() {
            *byte = i as u8;
        }
        (want[0xB0], want[0xB8], want[0xC8], want[0xD0]) = (1, 1, 1, 2);
        assert_eq!(bytes, want);
        assert_eq!(ReplyHeader::decode(&bytes), Some(reply));
    }

    #[test]
    fn encodes_the_worked_wrong_password_eviction() {
        let client = 0x0F0E_0D0C_0B0A_0908_0706_0504_0302_0100;
        let mut bytes = [0; HEADER_BYTES];
        let eviction = Eviction {
            client,
            reason: EvictionReason::InvalidCredentials,
            window: None,
        };
        eviction.encode(&mut bytes);
        assert_eq!(&bytes[0x30..0x32], &[0x00, 0x01]);
        assert_eq!(bytes[COMMAND_AT], 13);
        assert_eq!(bytes[0xFF], 9);
        assert_eq!(Eviction::decode(&bytes), Some(eviction));
    }

    #[test]
    fn refuses_what_the_sdk_never_sends() {
        let good = ping_after_login();
        let mut reply = good;
        reply[COMMAND_AT] = COMMAND_REPLY;
        assert_eq!(
            RequestHeader::decode(&reply),
            Err(HeaderError::NotARequest(8))
        );
        let mut internal = good;
        internal[OPERATION_AT] = 66;
        assert_eq!(
            RequestHeader::decode(&internal),
            Err(HeaderError::UnknownOperation(66))
        );
        let mut reserved = good;
        reserved[250] = 1;
        assert_eq!(RequestHeader::decode(&reserved), Err(HeaderError::Reserved));
        let mut register = good;
        register[OPERATION_AT] = 1;
        register[CODE_AT] = 0;
        assert!(matches!(
            RequestHeader::decode(&register),
            Err(HeaderError::Numbering { .. })
        ));
        let mut no_client = good;
        no_client[CLIENT_AT..CLIENT_AT + 16].fill(0);
        assert_eq!(
            RequestHeader::decode(&no_client),
            Err(HeaderError::NoClient)
        );
        let mut small = good;
        small[SIZE_AT..SIZE_AT + 4].copy_from_slice(&255u32.to_le_bytes());
        assert_eq!(frame_size(&small), None);
    }

    #[test]
    fn operations_map_to_commands_both_ways() {
        for (byte, code) in REPLICATED {
            let operation = Operation::for_code(code);
            assert_eq!(operation.as_u8(), byte);
            assert_eq!(operation.replicated_command(), Some(code));
        }
        assert_eq!(
            Operation::for_code(CommandCode::Ping),
            Operation::NON_REPLICATED
        );
        assert_eq!(
            Operation::for_code(CommandCode::LogoutUser),
            Operation::LOGOUT
        );
        assert!(!Operation(138).is_result_framed());
        assert!(Operation(161).is_result_framed() && Operation(128).is_result_framed());
        assert!(!Operation(160).is_result_framed());
    }

    #[test]
    fn result_sections() {
        assert_eq!(split_result(&RESULT_OK), Ok(4));
        assert_eq!(
            split_result(&result_rejection(ErrorCode::StreamIdNotFound)),
            Err(1009)
        );
        assert_eq!(split_result(&[1, 0, 0, 0, 0]), Err(3));
    }

    proptest! {
        #[test]
        fn decoding_any_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), HEADER_BYTES)) {
            let bytes: [u8; HEADER_BYTES] = bytes.try_into().expect("256 bytes");
            let _ = frame_size(&bytes);
            let _ = RequestHeader::decode(&bytes);
            let _ = ReplyHeader::decode(&bytes);
            let _ = Eviction::decode(&bytes);
        }

        #[test]
        fn request_headers_round_trip(
            client in 1u128..,
            checksum in any::<u64>(),
            request in 1u64..,
            session in 1u64..,
            index in 0usize..REPLICATED.len(),
            body in 0u32..1_000_000,
        ) {
            let header = RequestHeader {
                size: HEADER_BYTES as u32 + body,
                cluster: 0,
                client,
                request_checksum: u128::from(checksum),
                timestamp: 0,
                request,
                operation: Operation(REPLICATED[index].0),
                session,
                code: 0,
            };
            let mut bytes = [0; HEADER_BYTES];
            header.encode(&mut bytes);
            prop_assert_eq!(RequestHeader::decode(&bytes), Ok(header));
        }
    }
}
