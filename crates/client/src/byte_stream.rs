//! The byte stream under a [`Client`](crate::Client): plain TCP, or an adapter (TLS, WebSocket)
//! stacked on one. Adapters turn their own units (TLS records, WebSocket messages) into bytes in
//! and whole request frames out, so the client's frame loop is written once.
//!
//! ```text
//!   Client ──▶ ByteStream ──┬─ TcpStream                       (iggy://, iggy+tcp://)
//!                           ├─ TlsStream<TcpStream>            (… ?tls=true)
//!                           ├─ WsStream<TcpStream>             (iggy+ws://)
//!                           └─ WsStream<TlsStream<TcpStream>>  (iggy+ws://… ?tls=true)
//! ```

use std::io;

use bytes::BytesMut;
use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Free room a read into a full buffer reserves, so every socket read fetches a useful amount.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// An ordered, reliable byte transport as the client sees it. Lives on one compio runtime.
// Its futures are never Send (compio's I/O is thread-local), so the lint's concern does not apply.
#[allow(async_fn_in_trait)]
pub trait ByteStream {
    /// Appends what arrives to `buffer`: at least one byte, or `Ok(0)` when the peer has ended
    /// the stream. `buffer` may grow past its capacity.
    async fn read(&mut self, buffer: BytesMut) -> BufResult<usize, BytesMut>;

    /// Sends all of `buffer`, one whole request frame, and hands the buffer back unchanged. A
    /// message-based transport sends it as exactly one message.
    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut>;
}

impl ByteStream for TcpStream {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        // A no-op when the caller already made room (e.g. for a whole large response).
        buffer.reserve(READ_CHUNK_BYTES);
        self.append(buffer).await
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        self.write_all(buffer).await
    }
}

/// Writes out all of `outgoing` over `inner` and leaves it empty (its capacity kept for reuse).
pub(crate) async fn send_all<S: ByteStream>(
    inner: &mut S,
    outgoing: &mut BytesMut,
) -> io::Result<()> {
    if outgoing.is_empty() {
        return Ok(());
    }
    let BufResult(written, mut buffer) = inner.write(std::mem::take(outgoing)).await;
    buffer.clear();
    *outgoing = buffer;
    written
}

/// Appends what arrives over `inner` to `incoming`; `false` at the end of the stream.
pub(crate) async fn receive<S: ByteStream>(
    inner: &mut S,
    incoming: &mut BytesMut,
) -> io::Result<bool> {
    let BufResult(read, buffer) = inner.read(std::mem::take(incoming)).await;
    *incoming = buffer;
    read.map(|count| count > 0)
}
