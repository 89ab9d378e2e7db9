//! WebSocket over any [`ByteStream`]: tungstenite's protocol state machine over in-memory
//! buffers, with the socket I/O done by us.
//!
//! tungstenite reads from and writes to a blocking-style `Read + Write` object. Here that object
//! is [`Buffers`]: reads take bytes that already arrived (or say `WouldBlock`, and we await the
//! inner stream for more), writes append to an outgoing buffer that we then hand to the inner
//! stream. Both buffers grow to whatever a message needs and are reused, so a 16 MB message
//! costs a few large socket operations, not thousands of small ones.
//!
//! Each request frame leaves as exactly one masked binary message, as Iggy's SDK sends it,
//! framed here: the header and the masked payload are written straight into `outgoing`, one
//! pass over the payload (tungstenite would copy it three times). Binary messages from the
//! server are read through tungstenite as one byte stream (a response may span messages, or
//! share one), as the server reads requests (PROTOCOL.md §2.1).

use std::{
    hash::{BuildHasher, RandomState},
    io::{self, Read, Write},
};

use bytes::{Buf, BufMut, BytesMut};
use compio::BufResult;
use tungstenite::{
    HandshakeError, Message, WebSocket,
    client::IntoClientRequest,
    error::ProtocolError,
    handshake::client::ClientHandshake,
    protocol::{
        CloseFrame, WebSocketConfig,
        frame::{
            FrameHeader,
            coding::{CloseCode, Data, OpCode},
        },
    },
};

use galgo_protocol::websocket::apply_mask;

use crate::byte_stream::{ByteStream, receive, send_all};

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

/// The client's WebSocket settings. The server is the peer this client chose to trust with its
/// credentials, and every response answers a request this client sized, so incoming messages
/// and frames are not capped here (tungstenite's defaults would refuse a 16 MiB+ poll).
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// A client-side WebSocket over `S`, after the upgrade. Lives on one compio runtime.
pub struct WsStream<S> {
    inner: S,
    ws: WebSocket<Buffers>,
    masks: Masks,
}

/// Frame masks: SipHash of a counter, keyed with the process's random keys (std seeds them
/// from the OS), so masks are unpredictable to a peer as RFC 6455 §5.3 asks, without a
/// random-number crate or a system call per frame.
struct Masks {
    keys: RandomState,
    count: u64,
}

impl Masks {
    fn new() -> Self {
        Self {
            keys: RandomState::new(),
            count: 0,
        }
    }

    fn next(&mut self) -> [u8; 4] {
        self.count += 1;
        (self.keys.hash_one(self.count) as u32).to_ne_bytes()
    }
}

impl<S: ByteStream> WsStream<S> {
    /// Runs the RFC 6455 client handshake for `url` (`ws://host:port` or `wss://…`; the URL
    /// only names the Host header and path, `inner` is already connected) over `inner`.
    pub async fn connect(mut inner: S, url: &str) -> io::Result<Self> {
        let request = url.into_client_request().map_err(invalid_data)?;
        let mut handshake =
            ClientHandshake::start(Buffers::default(), request, Some(websocket_config()))
                .map_err(invalid_data)?;
        loop {
            match handshake.handshake() {
                Ok((ws, _response)) => {
                    let masks = Masks::new();
                    let mut stream = Self { inner, ws, masks };
                    stream.send_pending().await?;
                    return Ok(stream);
                }
                Err(HandshakeError::Interrupted(waiting)) => {
                    handshake = waiting;
                    let buffers = handshake.get_mut().get_mut();
                    send_all(&mut inner, &mut buffers.outgoing).await?;
                    if !receive(&mut inner, &mut buffers.incoming).await? {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the server left during the WebSocket handshake",
                        ));
                    }
                }
                Err(HandshakeError::Failure(error)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("WebSocket upgrade refused: {error}"),
                    ));
                }
            }
        }
    }

    async fn send_pending(&mut self) -> io::Result<()> {
        send_all(&mut self.inner, &mut self.ws.get_mut().outgoing).await
    }

    /// Closes with a protocol error after the server broke the WebSocket protocol.
    async fn refuse(&mut self, error: tungstenite::Error) -> io::Error {
        let reason = error.to_string();
        let frame = CloseFrame {
            code: CloseCode::Protocol,
            reason: reason.clone().into(),
        };
        let _ = self.ws.close(Some(frame));
        let _ = self.send_pending().await;
        io::Error::new(io::ErrorKind::InvalidData, reason)
    }

    /// Sends `frame` as one masked binary message, after anything tungstenite queued (a Pong).
    async fn send_message(&mut self, frame: &[u8]) -> io::Result<()> {
        if !self.ws.can_write() {
            let error = tungstenite::Error::Protocol(ProtocolError::SendAfterClosing);
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, error));
        }
        // An error only means the session is closing; what was queued is in `outgoing`.
        let _ = self.ws.flush();
        let mask = self.masks.next();
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            mask: Some(mask),
            ..FrameHeader::default()
        };
        let outgoing = &mut self.ws.get_mut().outgoing;
        header
            .format(frame.len() as u64, &mut outgoing.writer())
            .expect("formatting into memory cannot fail");
        let start = outgoing.len();
        outgoing.extend_from_slice(frame);
        apply_mask(&mut outgoing[start..], mask);
        self.send_pending().await
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
                // Pings are answered by tungstenite (the Pong goes out before the next wait);
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
                Err(error) => return BufResult(Err(self.refuse(error).await), buffer),
            }
        }
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        let sent = self.send_message(&buffer).await;
        BufResult(sent, buffer)
    }
}

fn invalid_data(error: tungstenite::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_differ_from_frame_to_frame() {
        let mut masks = Masks::new();
        let first = masks.next();
        assert!((0..16).any(|_| masks.next() != first));
    }
}
