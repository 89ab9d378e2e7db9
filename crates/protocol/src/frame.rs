//! Request and response frame headers (PROTOCOL.md §1.1, §1.2).
//!
//! ```text
//! request:  [length u32 = 4 + payload_len][code u32][payload]
//! response: [status u32][length u32 = payload_len][payload]
//! ```
//! The two `length` fields count different things: the request's includes the code, the
//! response's does not.

use bytes::{BufMut, BytesMut};

use crate::code::CommandCode;
use crate::error::ErrorCode;

/// Size of a request header: length and code.
pub const REQUEST_HEADER_BYTES: usize = 8;
/// Size of a response header: status and length.
pub const RESPONSE_HEADER_BYTES: usize = 8;
/// Iggy's largest payload of any command but SendMessages (`MAX_CONTROL_FRAME_PAYLOAD`): the
/// default of the server's `[limits] control_payload_bytes_max`, and its only source.
pub const CONTROL_PAYLOAD_BYTES_MAX: u32 = 10 * 1024 * 1024;
/// Width of the code field, which the request `length` counts.
const CODE_BYTES: u32 = 4;
/// An OK response with no payload.
pub const EMPTY_OK_RESPONSE: [u8; RESPONSE_HEADER_BYTES] = [0; RESPONSE_HEADER_BYTES];

/// The largest request payloads a server reads, by command: its `[limits]` configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadLimits {
    /// Largest payload of any command but SendMessages.
    pub control_bytes_max: u32,
    /// Largest SendMessages payload (one batch).
    pub send_bytes_max: u32,
}

impl PayloadLimits {
    /// The largest payload a request of `code` may carry.
    pub fn bytes_max(&self, code: u32) -> u32 {
        if code == CommandCode::SendMessages.as_u32() {
            self.send_bytes_max
        } else {
            self.control_bytes_max
        }
    }
}

/// The 8-byte header of a request frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// `4 + payload_len`: counts the code field, not itself.
    pub length: u32,
    /// The command code; see [`CommandCode`].
    pub code: u32,
}

impl RequestHeader {
    /// Reads a request header.
    pub fn decode(bytes: &[u8; REQUEST_HEADER_BYTES]) -> Self {
        let [l0, l1, l2, l3, c0, c1, c2, c3] = *bytes;
        Self {
            length: u32::from_le_bytes([l0, l1, l2, l3]),
            code: u32::from_le_bytes([c0, c1, c2, c3]),
        }
    }

    /// The header of a request carrying `payload_len` bytes, or `None` when the length would
    /// not fit the field.
    pub fn for_payload(code: u32, payload_len: usize) -> Option<Self> {
        let payload_len = u32::try_from(payload_len).ok()?;
        Some(Self {
            length: payload_len.checked_add(CODE_BYTES)?,
            code,
        })
    }

    /// Bytes of payload that follow the header, or `None` when `length < 4`, which the server
    /// answers with 3 `InvalidCommand`.
    pub fn payload_len(&self) -> Option<u32> {
        self.length.checked_sub(CODE_BYTES)
    }

    /// The payload length when the frame is acceptable: 3 `InvalidCommand` when `length < 4`,
    /// or when the payload is over its command's limit in `limits`. In the second case the
    /// payload is still on the wire: the caller must drain it or close the connection to stay
    /// in sync.
    pub fn checked_payload_len(&self, limits: &PayloadLimits) -> Result<u32, ErrorCode> {
        let payload_len = self.payload_len().ok_or(ErrorCode::InvalidCommand)?;
        if payload_len > limits.bytes_max(self.code) {
            return Err(ErrorCode::InvalidCommand);
        }
        Ok(payload_len)
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.length);
        out.put_u32_le(self.code);
    }
}

/// The 8-byte header of a response frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    /// 0 for OK, otherwise an [`ErrorCode`].
    pub status: u32,
    /// Payload bytes that follow (always 0 for an error).
    pub length: u32,
}

impl ResponseHeader {
    /// Reads a response header.
    pub fn decode(bytes: &[u8; RESPONSE_HEADER_BYTES]) -> Self {
        let [s0, s1, s2, s3, l0, l1, l2, l3] = *bytes;
        Self {
            status: u32::from_le_bytes([s0, s1, s2, s3]),
            length: u32::from_le_bytes([l0, l1, l2, l3]),
        }
    }

    /// `Ok(())` for status 0, otherwise the error the status names; an undefined status maps to
    /// the generic `Error`, as the SDK does.
    pub fn result(&self) -> Result<(), ErrorCode> {
        match self.status {
            0 => Ok(()),
            status => Err(ErrorCode::from_u32(status).unwrap_or(ErrorCode::Error)),
        }
    }
}

/// Appends a response header.
pub fn encode_response_header(status: u32, payload_len: u32, out: &mut BytesMut) {
    out.put_u32_le(status);
    out.put_u32_le(payload_len);
}

/// The whole frame of an error response: the code as status and no payload (§1.2).
pub fn error_response(code: ErrorCode) -> [u8; RESPONSE_HEADER_BYTES] {
    let mut frame = [0; RESPONSE_HEADER_BYTES];
    frame[..4].copy_from_slice(&code.as_u32().to_le_bytes());
    frame
}

/// Appends a whole request frame: header and payload.
///
/// Panics when the payload does not fit a u32 length, which no client should build.
pub fn encode_request(code: CommandCode, payload: &[u8], out: &mut BytesMut) {
    let header = RequestHeader::for_payload(code.as_u32(), payload.len())
        .expect("request payload fits a u32 length");
    out.reserve(REQUEST_HEADER_BYTES + payload.len());
    header.encode(out);
    out.put_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_frame_is_byte_exact() {
        let mut out = BytesMut::new();
        encode_request(CommandCode::Ping, &[], &mut out);
        assert_eq!(&out[..], [4, 0, 0, 0, 1, 0, 0, 0]);
        let header = RequestHeader::decode(out[..8].try_into().expect("8 bytes"));
        assert_eq!(header, RequestHeader { length: 4, code: 1 });
        assert_eq!(header.payload_len(), Some(0));
    }

    #[test]
    fn short_length_has_no_payload_len() {
        for length in 0..4 {
            assert_eq!(RequestHeader { length, code: 1 }.payload_len(), None);
        }
    }

    #[test]
    fn control_payloads_are_capped_but_send_messages_is_not() {
        let big = CONTROL_PAYLOAD_BYTES_MAX + 4 + 1;
        let header = |code: CommandCode, length| RequestHeader {
            length,
            code: code.as_u32(),
        };
        let limits = PayloadLimits {
            control_bytes_max: CONTROL_PAYLOAD_BYTES_MAX,
            send_bytes_max: u32::MAX,
        };
        assert_eq!(
            header(CommandCode::CreateStream, big).checked_payload_len(&limits),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            header(CommandCode::CreateStream, big - 1).checked_payload_len(&limits),
            Ok(CONTROL_PAYLOAD_BYTES_MAX)
        );
        assert_eq!(
            header(CommandCode::SendMessages, big).checked_payload_len(&limits),
            Ok(big - 4)
        );
        assert_eq!(
            header(CommandCode::Ping, 3).checked_payload_len(&limits),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(RequestHeader::for_payload(1, usize::MAX), None);
    }

    #[test]
    fn send_messages_has_a_limit_of_its_own() {
        let limits = PayloadLimits {
            control_bytes_max: 8,
            send_bytes_max: 100,
        };
        let send = |payload_len: u32| RequestHeader {
            length: payload_len + 4,
            code: CommandCode::SendMessages.as_u32(),
        };
        assert_eq!(send(100).checked_payload_len(&limits), Ok(100));
        assert_eq!(
            send(101).checked_payload_len(&limits),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(limits.bytes_max(CommandCode::Ping.as_u32()), 8);
    }

    #[test]
    fn request_header_round_trips() {
        let header = RequestHeader {
            length: 0x0102_0304,
            code: 101,
        };
        let mut out = BytesMut::new();
        header.encode(&mut out);
        assert_eq!(
            RequestHeader::decode(out[..].try_into().expect("8 bytes")),
            header
        );
    }

    #[test]
    fn error_response_carries_the_code_and_no_length() {
        let frame = error_response(ErrorCode::StreamIdNotFound);
        assert_eq!(frame, [0xF1, 0x03, 0, 0, 0, 0, 0, 0]);
        let header = ResponseHeader::decode(&frame);
        assert_eq!(
            header,
            ResponseHeader {
                status: 1009,
                length: 0
            }
        );
        assert_eq!(header.result(), Err(ErrorCode::StreamIdNotFound));
    }

    #[test]
    fn response_header_round_trips() {
        let mut out = BytesMut::new();
        encode_response_header(0, 4, &mut out);
        assert_eq!(&out[..], [0, 0, 0, 0, 4, 0, 0, 0]);
        let header = ResponseHeader::decode(out[..].try_into().expect("8 bytes"));
        assert_eq!(header.result(), Ok(()));
        assert_eq!(
            ResponseHeader {
                status: 7777,
                length: 0
            }
            .result(),
            Err(ErrorCode::Error)
        );
    }
}
