//! galgo-client: a client of Apache Iggy's binary protocol on compio, in either generation
//! (the 0.8 framing by default, the 0.9 one with `?protocol=0.9` or [`Client::with_protocol`]).
//!
//! What it is: a connection to any server of the protocol (galgo or Apache Iggy), opened from an
//! SDK-style connection string (`iggy://user:pass@host:port`, `iggy+tcp://…`, `iggy+ws://…`,
//! or a personal access token in place of the credentials), with one typed call per command
//! of the protocol the bench and the CLI use, and a raw frame path for prepared message batches. Every byte
//! goes through galgo-protocol's encoders and decoders; this crate only moves frames.
//!
//! What it is not: thread-safe or shared. A [`Client`] lives on one compio runtime (one
//! thread), sends one request at a time and waits for its answer, as the protocol requires.
//! It does not reconnect on its own; a caller that wants a new connection makes a new client.
//!
//! ```text
//! Client ──request frame──▶ Transport (TCP, TCP+TLS, WebSocket or WSS; see transport.rs)
//!        ◀─response frame── [status u32][length u32][payload]
//! ```
#![warn(missing_docs)]

pub mod client;
pub mod connection_string;
pub mod error;
pub mod groups;
pub mod messages;
pub mod offsets;
pub mod segments;
pub mod streams;
pub mod system;
pub mod tokens;
pub mod topics;
pub mod transport;
pub mod users;
mod vsr;

pub use client::{Client, LongPolls};
pub use connection_string::{ConnectionString, Credentials, Protocol, TransportKind};
pub use error::ClientError;
pub use messages::{PolledMessage, PolledMessages, PreparedBatch};
pub use transport::Transport;

pub use galgo_protocol as protocol;
