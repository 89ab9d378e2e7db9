//! galgo-protocol: the codec of Apache Iggy's binary protocol, both generations, as galgo
//! speaks it: the 0.8 framing here, the 0.9 one in [`vsr`]. The official Rust SDKs `iggy`
//! 0.10.0 and 0.11.0 must work against it unchanged.
//!
//! What it is: frame headers, command and error codes, and a typed request and response for
//! every command, each with an encoder (the client side) and a decoder (the server side), plus
//! the message layout shared by the wire, memory and disk. The byte-level reference is
//! `shared/design/PROTOCOL.md`; where it and the SDK disagree, the SDK wins.
//!
//! What it is not: no I/O, no async, no server logic. It does not resolve identifiers, check
//! permissions or know a stream from a topic; decoding only checks what the wire format and the
//! server's own request validation demand, and reports failure as the protocol's numeric
//! [`ErrorCode`].
//!
//! ```text
//! request   [length u32 = 4 + N][code u32][payload N bytes]     all integers little-endian
//! response  [status u32][length u32 = N][payload N bytes]       error: status = code, N = 0
//!
//! SendMessages payload
//!   [metadata_length u32][stream Id][topic Id][partitioning][count u32]
//!   [index: count x (0 u32 | end position u32 | 0 u64)]
//!   [message: checksum u64 | id u128 | offset u64 | timestamp u64 | origin_timestamp u64
//!             | headers_len u32 | payload_len u32 | reserved u64 | payload | user headers] x count
//! ```
//!
//! Decoders never panic on arbitrary bytes and never allocate to report an error: an error is
//! a `Copy` code. Server side, a frame goes [`RequestHeader::decode`] → read `payload_len` bytes
//! → [`Request::decode`]; the response is a header from [`encode_response_header`] (or
//! [`error_response`]) followed by a response type's `encode`.
#![warn(missing_docs)]

pub mod code;
pub mod command;
pub mod consumer;
pub mod error;
pub mod frame;
pub mod identifier;
pub mod message;
pub mod partition_flag;
pub mod partitioning;
pub mod permissions;
pub mod polling;
pub mod reader;
pub mod request;
pub mod vsr;
pub mod writer;

pub use code::CommandCode;
pub use command::Command;
pub use command::messages::{PollMessages, PolledMessagesHeader, SendMessages};
pub use consumer::{Consumer, consumer_key};
pub use error::ErrorCode;
pub use frame::{
    CONTROL_PAYLOAD_BYTES_MAX, EMPTY_OK_RESPONSE, PayloadLimits, REQUEST_HEADER_BYTES,
    RESPONSE_HEADER_BYTES, RequestHeader, ResponseHeader, encode_request, encode_response_header,
    error_response,
};
pub use identifier::Identifier;
pub use partitioning::{Partitioning, partition_for_key};
pub use permissions::{GlobalPermissions, Permissions, StreamPermissions, TopicPermissions};
pub use polling::PollingStrategy;
pub use reader::Reader;
pub use request::Request;
