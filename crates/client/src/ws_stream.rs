//! WebSocket over any [`ByteStream`]: tungstenite's protocol state machine over in-memory
//! buffers, with the socket I/O done by us.
//!
//! tungstenite reads from and writes to a blocking-style `Read + Write` object. Here that object
//! is [`Buffers`]: reads take bytes that already arrived (or say `WouldBlock`, and we await the
//! inner stream for more), writes append to an outgoing buffer that we then hand to the inner
//! stream. Both buffers grow to whatever a message needs and are reused, so a 16 MB message
//! costs a few large socket operations, not thousands of small ones.
//!
//! Each request frame leaves as exactly one masked binary message, as Iggy's SDK sends it;
//! binary messages from the server are read as one byte stream (a response may span messages,
//! or share one), as the server reads requests (PROTOCOL.md §2.1).

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes, BytesMut};
use compio::BufResult;
use tungstenite::{
    HandshakeError, Message, WebSocket,
    client::IntoClientRequest,
    handshake::client::ClientHandshake,
    protocol::{CloseFrame, WebSocketConfig, frame::coding::CloseCode},
};

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
                    let mut stream = Self { inner, ws };
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

    async fn send_message(&mut self, frame: &[u8]) -> io::Result<()> {
        // tungstenite masks the payload as it frames it, so it needs its own copy.
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(frame)))
            .map_err(|error| io::Error::new(io::ErrorKind::BrokenPipe, error))?;
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
