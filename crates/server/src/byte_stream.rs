//! The byte transport under a connection's frame loop: plain TCP, TLS, WebSocket or WSS.
//!
//! The frame loop (connection.rs) is written once against [`ByteStream`]; each transport is an
//! adapter that turns its own units (TLS records, WebSocket messages) into bytes in and whole
//! responses out. Adapters stack: WSS is a WebSocket stream over a TLS stream over TCP.
//!
//! ```text
//!   frame loop ──▶ ByteStream ──┬─ TcpStream                       (TCP)
//!                               ├─ TlsStream<TcpStream>            (TCP + TLS)
//!                               ├─ WsStream<TcpStream>             (WebSocket)
//!                               └─ WsStream<TlsStream<TcpStream>>  (WSS)
//! ```

use std::io;

use bytes::{Bytes, BytesMut};
use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// An ordered, reliable byte transport as the frame loop sees it. Lives in one connection task.
pub trait ByteStream {
    /// Appends what arrives to `buffer`: at least one byte, or `Ok(0)` when the peer has ended
    /// the stream. `buffer` may grow past its capacity.
    async fn read(&mut self, buffer: BytesMut) -> BufResult<usize, BytesMut>;

    /// Sends one whole response made of `chunks`, in order. A message-based transport sends it
    /// as exactly one message.
    async fn write(&mut self, chunks: Vec<Bytes>) -> io::Result<()>;

    /// Ends the stream politely at this layer (TLS close_notify, WebSocket Close) before the
    /// socket is dropped. Plain TCP has nothing to say.
    async fn close(&mut self) -> io::Result<()>;
}

/// Free room a read into a full buffer reserves, so every socket read can fetch a useful amount.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

impl ByteStream for TcpStream {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        if buffer.capacity() == buffer.len() {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        self.append(buffer).await
    }

    async fn write(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        let BufResult(written, _) = self.write_vectored_all(chunks).await;
        written
    }

    async fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}
