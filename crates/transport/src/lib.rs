//! galgo-transport: the byte transports under galgo's client and server, each written once.
//!
//! A frame loop (the server's connection.rs, the client's `Client`) is written against
//! [`ByteStream`]; each transport is an adapter that turns its own units (TLS records,
//! WebSocket messages) into bytes in and whole frames out. Adapters stack, so WSS is a
//! WebSocket stream over a TLS stream over TCP:
//!
//! ```text
//!   frame loop ──▶ ByteStream ──┬─ TcpStream                                    (TCP)
//!                               ├─ TlsStream<TcpStream, Side>                   (TCP + TLS)
//!                               ├─ WsStream<TcpStream, Side>                    (WebSocket)
//!                               └─ WsStream<TlsStream<TcpStream, Side>, Side>   (WSS)
//! ```
//!
//! `Side` is [`Client`] or [`Server`] (side.rs): what the two ends do differently is small
//! and named there. TLS differs only in who starts the handshake (rustls's client or server
//! connection); WebSocket in who masks: the client masks each frame it sends in one pass and
//! reads the server's frames through tungstenite, the server unmasks binary frames straight
//! into the frame loop's buffer and answers with unmasked frames in one vectored write.
//!
//! | file | what it holds |
//! |---|---|
//! | byte_stream.rs | the [`ByteStream`] trait and plain TCP |
//! | limits.rs | the buffer limits, one constant each |
//! | side.rs | [`Client`], [`Server`] and what each side means to TLS and WebSocket |
//! | tls_stream.rs | [`TlsStream`]: rustls over any byte stream, and its movable [`TlsState`] |
//! | tls_config.rs | rustls configurations: the client's trust, the server's identity (PEM files or self-signed) |
//! | ws_stream.rs | [`WsStream`]: WebSocket over any byte stream, and its movable [`WsState`] |
//! | ws_unframing.rs | the server's binary-frame parser, sans I/O |
//! | ws_mask.rs | RFC 6455 masking: the XOR, the client's masks, the server's unmasking copy |
//!
//! Everything lives on one compio runtime (one thread); a server moves a connection to
//! another shard by splitting an adapter into its socket and its `Send` state (`into_parts`,
//! `from_parts`).
#![warn(missing_docs)]

pub mod byte_stream;
pub mod limits;
pub mod side;
pub mod tls_config;
pub mod tls_stream;
pub mod ws_mask;
pub mod ws_stream;
pub mod ws_unframing;

pub use byte_stream::ByteStream;
pub use side::{Client, Server, Side};
pub use tls_stream::{TlsState, TlsStream};
pub use ws_stream::{WsState, WsStream};
