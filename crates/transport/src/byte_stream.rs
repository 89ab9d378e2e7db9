//! The byte stream a frame loop reads and writes: plain TCP, or an adapter (TLS, WebSocket)
//! stacked on one. Adapters turn their own units (TLS records, WebSocket messages) into bytes
//! in and whole frames out, so each frame loop is written once.

use std::io;

use bytes::{Bytes, BytesMut};
use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::limits::{IOVECS_MAX, READ_CHUNK_BYTES};

/// An ordered, reliable byte transport as a frame loop sees it. Lives on one compio runtime.
///
/// A frame goes out whole through one call: [`write`](ByteStream::write) for one buffer the
/// caller wants back (the client's request frames, the adapters' own output),
/// [`write_vectored`](ByteStream::write_vectored) for chunks sent as they are (the server's
/// responses: a header and payloads shared with storage, never copied together).
// Its futures are never Send (compio's I/O is thread-local), so the lint's concern does not apply.
#[allow(async_fn_in_trait)]
pub trait ByteStream {
    /// Appends what arrives to `buffer`: at least one byte, or `Ok(0)` when the peer has ended
    /// the stream. Reads into the free room the caller left, reserving
    /// [`READ_CHUNK_BYTES`] only when there is none; `buffer` may grow past its capacity.
    async fn read(&mut self, buffer: BytesMut) -> BufResult<usize, BytesMut>;

    /// Sends all of `buffer`, one whole frame, and hands the buffer back unchanged. A
    /// message-based transport sends it as exactly one message.
    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut>;

    /// Sends one whole frame made of `chunks`, in order. A message-based transport sends it as
    /// exactly one message.
    async fn write_vectored(&mut self, chunks: Vec<Bytes>) -> io::Result<()>;

    /// Ends the stream politely at this layer (TLS close_notify, WebSocket Close) before the
    /// socket is dropped. Plain TCP has nothing to say.
    async fn close(&mut self) -> io::Result<()>;
}

impl ByteStream for TcpStream {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        // Callers make room for what they expect (a whole large frame); growing a buffer that
        // still has room would only risk copying it.
        if buffer.capacity() == buffer.len() {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        self.append(buffer).await
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        self.write_all(buffer).await
    }

    async fn write_vectored(&mut self, mut chunks: Vec<Bytes>) -> io::Result<()> {
        // One operation takes at most IOV_MAX iovecs (EINVAL beyond).
        while chunks.len() > IOVECS_MAX {
            let rest = chunks.split_off(IOVECS_MAX);
            let BufResult(written, _) = self.write_vectored_all(chunks).await;
            written?;
            chunks = rest;
        }
        let BufResult(written, _) = self.write_vectored_all(chunks).await;
        written
    }

    async fn close(&mut self) -> io::Result<()> {
        Ok(())
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

/// Appends what arrives over `inner` to `incoming`, with room for `room` bytes; `false` at the
/// end of the stream.
pub(crate) async fn receive<S: ByteStream>(
    inner: &mut S,
    incoming: &mut BytesMut,
    room: usize,
) -> io::Result<bool> {
    incoming.reserve(room);
    let BufResult(read, buffer) = inner.read(std::mem::take(incoming)).await;
    *incoming = buffer;
    read.map(|count| count > 0)
}
