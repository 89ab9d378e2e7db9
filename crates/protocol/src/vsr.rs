//! The 0.9-generation envelope of Iggy's protocol ("VSR framing", PROTOCOL-0.9.md): a second
//! envelope around the same requests and responses as the 0.8 framing.
//!
//! ```text
//! frame     [256-byte header][body: size - 256 bytes]          size = u32 at offset 48
//! request   header: command 5, client u128 @128, request_checksum @144, request u64 @168,
//!           operation u8 @176, session u64 @184, 0.8 command code u32 @196 (operation 2)
//! reply     header: command 8, echoes of client, request, operation, request_checksum;
//!           status u32 @216 (an error code, empty body); result-framed bodies for the
//!           replicated operations: [count u32][(index u32, code u32) × count][payload]
//! eviction  header only: command 13, client u128 @128, reason u8 @255
//! ```
//!
//! * [`header`]: the 256-byte headers, operations and evictions.
//! * [`register`]: the login (Register) request and its reply.
//! * [`options`]: the options blocks of streams, topics and users.
//! * [`batch`]: the message batch format of SendMessages and PollMessages (§8.8).
//! * [`routing`]: the poll routing commands of a multi-node roster (14, 103, 104, 123).
//! * [`bodies`]: every other body that differs from 0.8, converted to and from the shared
//!   [`Request`](crate::Request) and the 0.8 response payloads, so one set of handlers serves
//!   both generations.
//!
//! Like the rest of the crate: no I/O, and decoders never panic on arbitrary bytes.

pub mod batch;
pub mod bodies;
pub mod header;
pub mod options;
pub mod register;
pub mod routing;
