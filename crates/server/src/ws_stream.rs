//! WebSocket over any [`ByteStream`]: tungstenite's protocol state machine over in-memory
//! buffers, with the socket I/O done by us.
//!
//! tungstenite reads from and writes to a blocking-style `Read + Write` object. Here that object
//! is [`Buffers`]: reads take bytes that already arrived (or say `WouldBlock`, and we await the
//! inner stream for more), writes append to an outgoing buffer that we then hand to the inner
//! stream. Both buffers grow to whatever a message needs, so a 16 MB message costs a few large
//! socket reads, not thousands of small ones (compio-ws once used a fixed 8 KiB buffer).
//!
//! Binary messages are a byte stream on input (a request may span messages, or share one);
//! each response leaves as exactly one binary message (PROTOCOL.md §2.1).

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use compio::BufResult;
use tungstenite::{
    HandshakeError, Message, WebSocket,
    handshake::server::{NoCallback, ServerHandshake},
    protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
};

use crate::byte_stream::ByteStream;

/// The answer to an HTTP request that is not a WebSocket upgrade, before the connection closes.
const NOT_AN_UPGRADE_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n\
this port serves WebSocket upgrades only.\n";

/// What tungstenite reads from and writes to: bytes received but not yet parsed, and bytes it
/// produced but we have not sent yet.
#[derive(Debug, Default)]
struct Buffers {
    incoming: BytesMut,
    outgoing: BytesMut,
}

impl Read for Buffers {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            // Not an end of stream: the caller awaits the socket and asks again.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let count = out.len().min(self.incoming.len());
        out[..count].copy_from_slice(&self.incoming[..count]);
        self.incoming.advance(count);
        Ok(count)
    }
}

impl Write for Buffers {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A server-side WebSocket over `S`, after the upgrade. Lives in one connection task.
pub struct WsStream<S> {
    inner: S,
    ws: WebSocket<Buffers>,
}

impl<S: ByteStream> WsStream<S> {
    /// Runs the RFC 6455 server handshake over `inner`: any path, no subprotocol. A request
    /// that is not a WebSocket upgrade is answered with 400 Bad Request and refused here.
    pub async fn accept(mut inner: S, config: WebSocketConfig) -> io::Result<Self> {
        let mut handshake = ServerHandshake::start(Buffers::default(), NoCallback, Some(config));
        loop {
            match handshake.handshake() {
                Ok(ws) => {
                    let mut stream = Self { inner, ws };
                    stream.send_pending().await?;
                    return Ok(stream);
                }
                Err(HandshakeError::Interrupted(waiting)) => {
                    handshake = waiting;
                    let buffers = handshake.get_mut().get_mut();
                    send(&mut inner, &mut buffers.outgoing).await?;
                    if !receive(&mut inner, &mut buffers.incoming).await? {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer left during the WebSocket handshake",
                        ));
                    }
                }
                Err(HandshakeError::Failure(error)) => {
                    let refused = vec![Bytes::from_static(NOT_AN_UPGRADE_RESPONSE)];
                    if inner.write(refused).await.is_ok() {
                        let _ = inner.close().await;
                    }
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not a WebSocket upgrade: {error}"),
                    ));
                }
            }
        }
    }

    async fn send_pending(&mut self) -> io::Result<()> {
        send(&mut self.inner, &mut self.ws.get_mut().outgoing).await
    }

    /// Closes with `code` after a protocol violation or an oversized message, then reports it.
    async fn refuse(&mut self, code: CloseCode, error: tungstenite::Error) -> io::Error {
        let reason = error.to_string();
        let frame = CloseFrame {
            code,
            reason: reason.clone().into(),
        };
        let _ = self.ws.close(Some(frame));
        let _ = self.send_pending().await;
        io::Error::new(io::ErrorKind::InvalidData, reason)
    }
}

impl<S: ByteStream> ByteStream for WsStream<S> {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        loop {
            match self.ws.read() {
                Ok(Message::Binary(data)) if !data.is_empty() => {
                    buffer.extend_from_slice(&data);
                    return BufResult(Ok(data.len()), buffer);
                }
                Ok(Message::Close(_)) => {
                    // tungstenite queued the Close reply; a flush writes it into our buffers
                    // (an error only means the reply was already out), then we send it.
                    let _ = self.ws.flush();
                    let sent = self.send_pending().await;
                    return BufResult(sent.map(|()| 0), buffer);
                }
                // Pings are answered by tungstenite (the Pong goes out with the next send);
                // Text, Pong and empty messages carry nothing for the protocol.
                Ok(_) => {}
                Err(tungstenite::Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(error) = self.send_pending().await {
                        return BufResult(Err(error), buffer);
                    }
                    match receive(&mut self.inner, &mut self.ws.get_mut().incoming).await {
                        Ok(true) => {}
                        Ok(false) => return BufResult(Ok(0), buffer),
                        Err(error) => return BufResult(Err(error), buffer),
                    }
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return BufResult(Ok(0), buffer);
                }
                Err(error @ tungstenite::Error::Capacity(_)) => {
                    return BufResult(Err(self.refuse(CloseCode::Size, error).await), buffer);
                }
                Err(error) => {
                    return BufResult(Err(self.refuse(CloseCode::Protocol, error).await), buffer);
                }
            }
        }
    }

    async fn write(&mut self, mut chunks: Vec<Bytes>) -> io::Result<()> {
        let message = if chunks.len() == 1 {
            chunks.pop().expect("one chunk")
        } else {
            let total = chunks.iter().map(Bytes::len).sum();
            let mut joined = BytesMut::with_capacity(total);
            chunks
                .iter()
                .for_each(|chunk| joined.extend_from_slice(chunk));
            joined.freeze()
        };
        self.ws
            .send(Message::Binary(message))
            .map_err(|error| io::Error::new(io::ErrorKind::BrokenPipe, error))?;
        self.send_pending().await
    }

    async fn close(&mut self) -> io::Result<()> {
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "server shutting down".into(),
        };
        if self.ws.can_write() {
            let _ = self.ws.close(Some(frame));
        }
        self.send_pending().await?;
        self.inner.close().await
    }
}

/// Writes out everything in `outgoing`.
async fn send<S: ByteStream>(inner: &mut S, outgoing: &mut BytesMut) -> io::Result<()> {
    if outgoing.is_empty() {
        return Ok(());
    }
    inner.write(vec![outgoing.split().freeze()]).await
}

/// Appends what arrives to `incoming`; `false` at the end of the stream.
async fn receive<S: ByteStream>(inner: &mut S, incoming: &mut BytesMut) -> io::Result<bool> {
    let BufResult(read, buffer) = inner.read(std::mem::take(incoming)).await;
    *incoming = buffer;
    read.map(|count| count > 0)
}
