//! WebSocket over any [`ByteStream`]: tungstenite's handshakes and protocol state machine over
//! in-memory buffers, with the socket I/O and the binary framing done by us.
//!
//! tungstenite reads from and writes to a blocking-style `Read + Write` object. Here that object
//! is [`Buffers`]: reads take bytes that already arrived (or say `WouldBlock`, and we await the
//! inner stream for more), writes append to an outgoing buffer that we then hand to the inner
//! stream. Both buffers grow to whatever a message needs and are reused, so a 16 MB message
//! costs a few large socket operations, not thousands of small ones.
//!
//! Binary data, the protocol's bytes, is framed by us on both sides; what differs is the
//! direction of the mask (RFC 6455 §5.3):
//!
//! ```text
//!   Client  sends  one masked binary message per request frame: the header and the masked
//!                  payload written straight into `outgoing`, one pass over the payload
//!                  (tungstenite would copy it three times)
//!           reads  through tungstenite, binary messages as one byte stream (a response may
//!                  span messages, or share one)
//!   Server  reads  binary frames unmasked straight into the frame loop's buffer; every other
//!                  frame is lent to tungstenite (ws_unframing.rs)
//!           sends  one binary frame per response: a header and the response's own chunks in
//!                  one vectored write, no copy (a server does not mask)
//! ```

use std::io::{self, Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compio::BufResult;
use tungstenite::{
    HandshakeError, Message, WebSocket,
    client::IntoClientRequest,
    error::ProtocolError,
    handshake::{
        HandshakeRole, MidHandshake,
        client::ClientHandshake,
        server::{NoCallback, ServerHandshake},
    },
    protocol::{
        CloseFrame, WebSocketConfig,
        frame::{
            FrameHeader,
            coding::{CloseCode, Data, OpCode},
        },
    },
};

use crate::{
    byte_stream::{ByteStream, receive, send_all},
    limits::{READ_CHUNK_BYTES, WS_RECEIVE_BYTES_MAX},
    side::{Client, Server, Side},
    ws_mask::{Masks, mask_into},
    ws_unframing::{Next, Unframing},
};

/// The answer to an HTTP request that is not a WebSocket upgrade, before the connection closes.
const NOT_AN_UPGRADE_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n\
this port serves WebSocket upgrades only.\n";

/// What tungstenite reads from and writes to: bytes received but not yet parsed, how many of
/// them it may take, and bytes it produced but we have not sent yet.
#[derive(Debug)]
pub struct Buffers {
    pub(crate) incoming: BytesMut,
    /// The bytes at the front of `incoming` that belong to tungstenite: all of them
    /// ([`Buffers::ALL`]) on a client and during a handshake, only the frame lent to it on a
    /// server. Never more than it should read, so it never swallows the binary frame after it.
    pub(crate) lent: usize,
    outgoing: BytesMut,
}

impl Buffers {
    /// `lent` when all input is tungstenite's, however much arrives.
    const ALL: usize = usize::MAX;

    /// Buffers whose input is all tungstenite's.
    fn new() -> Self {
        Self {
            incoming: BytesMut::new(),
            lent: Self::ALL,
            outgoing: BytesMut::new(),
        }
    }
}

impl Read for Buffers {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let count = out.len().min(self.incoming.len()).min(self.lent);
        if count == 0 {
            // Not an end of stream: the caller awaits the socket (or takes the frame back).
            return Err(io::ErrorKind::WouldBlock.into());
        }
        out[..count].copy_from_slice(&self.incoming[..count]);
        self.incoming.advance(count);
        if self.lent != Self::ALL {
            self.lent -= count;
        }
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
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
}

/// A WebSocket over `S`, after the upgrade, on the client or the server side. Lives on one
/// compio runtime; a server's moves between shards with its connection as a [`WsState`].
pub struct WsStream<S, Si: Side> {
    inner: S,
    ws: WebSocket<Buffers>,
    framing: Si::WsFraming,
}

/// Everything of a [`WsStream`] but its inner stream, to rebuild it on another thread.
pub struct WsState<Si: Side> {
    ws: WebSocket<Buffers>,
    framing: Si::WsFraming,
}

impl<S: ByteStream> WsStream<S, Client> {
    /// Runs the RFC 6455 client handshake for `url` (`ws://host:port` or `wss://…`; the URL
    /// only names the Host header and path, `inner` is already connected) over `inner`.
    pub async fn connect(mut inner: S, url: &str) -> io::Result<Self> {
        let request = url.into_client_request().map_err(invalid_data)?;
        let handshake = ClientHandshake::start(Buffers::new(), request, Some(client_config()))
            .map_err(invalid_data)?;
        match upgrade::<S, Client, _>(&mut inner, handshake).await? {
            Ok((ws, _response)) => Self::upgraded(inner, ws, Masks::new()).await,
            Err(error) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("WebSocket upgrade refused: {error}"),
            )),
        }
    }
}

impl<S: ByteStream> WsStream<S, Server> {
    /// Runs the RFC 6455 server handshake over `inner`: any path, no subprotocol. A request
    /// that is not a WebSocket upgrade is answered with 400 Bad Request and refused here.
    pub async fn accept(mut inner: S, config: WebSocketConfig) -> io::Result<Self> {
        let handshake = ServerHandshake::start(Buffers::new(), NoCallback, Some(config));
        match upgrade::<S, Server, _>(&mut inner, handshake).await? {
            Ok(mut ws) => {
                // Frames after the upgrade are read by us first.
                ws.get_mut().lent = 0;
                Self::upgraded(inner, ws, Unframing::default()).await
            }
            Err(error) => {
                let refused = vec![Bytes::from_static(NOT_AN_UPGRADE_RESPONSE)];
                if inner.write_vectored(refused).await.is_ok() {
                    let _ = inner.close().await;
                }
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("not a WebSocket upgrade: {error}"),
                ))
            }
        }
    }
}

/// Drives a tungstenite handshake over `inner` until it is done (`Ok(Ok)`) or tungstenite
/// refuses it (`Ok(Err)`); an error when the socket fails or the peer leaves.
async fn upgrade<S: ByteStream, Si: Side, R: HandshakeRole<InternalStream = Buffers>>(
    inner: &mut S,
    mut handshake: MidHandshake<R>,
) -> io::Result<Result<R::FinalResult, tungstenite::Error>> {
    loop {
        match handshake.handshake() {
            Ok(done) => return Ok(Ok(done)),
            Err(HandshakeError::Interrupted(waiting)) => {
                handshake = waiting;
                let buffers = handshake.get_mut().get_mut();
                send_all(inner, &mut buffers.outgoing).await?;
                if !receive(inner, &mut buffers.incoming, READ_CHUNK_BYTES).await? {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} left during the WebSocket handshake", Si::PEER),
                    ));
                }
            }
            Err(HandshakeError::Failure(error)) => return Ok(Err(error)),
        }
    }
}

impl<S: ByteStream, Si: Side> WsStream<S, Si> {
    /// The stream over `inner` once the handshake made `ws`; sends what it left queued.
    async fn upgraded(
        inner: S,
        ws: WebSocket<Buffers>,
        framing: Si::WsFraming,
    ) -> io::Result<Self> {
        let mut stream = Self { inner, ws, framing };
        stream.send_pending().await?;
        Ok(stream)
    }

    /// Splits the stream into its inner stream and the WebSocket state; nothing is lost as
    /// long as no read or write is in progress.
    pub fn into_parts(self) -> (S, WsState<Si>) {
        let state = WsState {
            ws: self.ws,
            framing: self.framing,
        };
        (self.inner, state)
    }

    /// Rebuilds a stream from [`Self::into_parts`]'s state over `inner`, a copy of the socket.
    pub fn from_parts(inner: S, state: WsState<Si>) -> Self {
        Self {
            inner,
            ws: state.ws,
            framing: state.framing,
        }
    }

    /// Sends what tungstenite queued (a Pong, a Close reply) and anything already framed.
    async fn send_pending(&mut self) -> io::Result<()> {
        // An error only means the session is closing; what was queued is in `outgoing`.
        let _ = self.ws.flush();
        send_all(&mut self.inner, &mut self.ws.get_mut().outgoing).await
    }

    /// Sends anything pending, then waits for more bytes (room for `wanted` of them, within
    /// the limits). `Err(Ok(0))` at the end of the stream.
    async fn receive_more(&mut self, wanted: usize) -> Result<(), io::Result<usize>> {
        self.send_pending().await.map_err(Err)?;
        let incoming = &mut self.ws.get_mut().incoming;
        let room = wanted.clamp(READ_CHUNK_BYTES, WS_RECEIVE_BYTES_MAX);
        match receive(&mut self.inner, incoming, room).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Ok(0)),
            Err(error) => Err(Err(error)),
        }
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

    /// Lets tungstenite read what is lent to it (all input on a client, one frame on a
    /// server). `Some` ends the caller's read with it; `None` means go on (a server's frame
    /// was consumed).
    async fn read_through_tungstenite(
        &mut self,
        buffer: &mut BytesMut,
    ) -> Option<io::Result<usize>> {
        match self.ws.read() {
            // A client's input; on a server only with a configuration that lends binary
            // frames, kept for completeness.
            Ok(Message::Binary(data)) if !data.is_empty() => {
                buffer.extend_from_slice(&data);
                Some(Ok(data.len()))
            }
            Ok(Message::Close(_)) => {
                // tungstenite queued the Close reply; it goes out now.
                Some(self.send_pending().await.map(|()| 0))
            }
            // Pings are answered by tungstenite (the Pong goes out before the next wait or
            // with the next frame sent); Text, Pong and empty messages carry nothing.
            Ok(_) => None,
            Err(tungstenite::Error::Io(error)) if error.kind() == io::ErrorKind::WouldBlock => {
                if self.ws.get_ref().lent == 0 {
                    return None;
                }
                self.receive_more(READ_CHUNK_BYTES).await.err()
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Some(Ok(0))
            }
            Err(error @ tungstenite::Error::Capacity(_)) => {
                Some(Err(self.refuse(CloseCode::Size, error).await))
            }
            Err(error) => Some(Err(self.refuse(CloseCode::Protocol, error).await)),
        }
    }

    /// Starts one binary frame of `len` payload bytes in `outgoing`, after anything
    /// tungstenite queued (a Pong): the payload is the caller's to add.
    fn begin_binary(&mut self, len: usize, mask: Option<[u8; 4]>) -> io::Result<&mut BytesMut> {
        if !self.ws.can_write() {
            let error = tungstenite::Error::Protocol(ProtocolError::SendAfterClosing);
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, error));
        }
        // An error only means the session is closing; what was queued is in `outgoing`.
        let _ = self.ws.flush();
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            mask,
            ..FrameHeader::default()
        };
        let outgoing = &mut self.ws.get_mut().outgoing;
        header
            .format(len as u64, &mut outgoing.writer())
            .expect("formatting into memory cannot fail");
        Ok(outgoing)
    }

    /// Sends a Close frame with `code` and `reason` unless one was already exchanged, then
    /// closes the inner stream.
    async fn close_with(&mut self, code: CloseCode, reason: &'static str) -> io::Result<()> {
        if self.ws.can_write() {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = self.ws.close(Some(frame));
        }
        self.send_pending().await?;
        self.inner.close().await
    }
}

impl<S: ByteStream> WsStream<S, Client> {
    /// Sends `chunks` as one masked binary message, masked as they are copied into
    /// `outgoing` (one pass over the payload).
    async fn send_masked(&mut self, chunks: &[&[u8]]) -> io::Result<()> {
        let len = chunks.iter().map(|chunk| chunk.len()).sum();
        let mask = self.framing.next_mask();
        let outgoing = self.begin_binary(len, Some(mask))?;
        let mut offset = 0;
        for chunk in chunks {
            mask_into(outgoing, chunk, Some(mask), offset);
            offset += chunk.len();
        }
        self.send_pending().await
    }
}

impl<S: ByteStream> ByteStream for WsStream<S, Client> {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        loop {
            if let Some(result) = self.read_through_tungstenite(&mut buffer).await {
                return BufResult(result, buffer);
            }
        }
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        let sent = self.send_masked(&[&buffer]).await;
        BufResult(sent, buffer)
    }

    async fn write_vectored(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        let slices: Vec<&[u8]> = chunks.iter().map(|chunk| &chunk[..]).collect();
        self.send_masked(&slices).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.close_with(CloseCode::Normal, "").await
    }
}

impl<S: ByteStream> ByteStream for WsStream<S, Server> {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        loop {
            let ended = match self.framing.next(&mut self.ws, &mut buffer) {
                Next::Delivered(count) => Some(Ok(count)),
                Next::Receive => self.receive_more(self.framing.remaining()).await.err(),
                Next::Lent => self.read_through_tungstenite(&mut buffer).await,
                Next::Refuse(code, error) => Some(Err(self.refuse(code, error).await)),
            };
            if let Some(result) = ended {
                return BufResult(result, buffer);
            }
        }
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        // Not the response path (that is `write_vectored`, without a copy): one frame, copied
        // behind its header so that the buffer can be handed back.
        let sent = match self.begin_binary(buffer.len(), None) {
            Ok(outgoing) => {
                outgoing.extend_from_slice(&buffer);
                self.send_pending().await
            }
            Err(error) => Err(error),
        };
        BufResult(sent, buffer)
    }

    async fn write_vectored(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        let len = chunks.iter().map(Bytes::len).sum();
        let outgoing = self.begin_binary(len, None)?;
        // A queued Pong and the header, then the response's chunks as they are.
        let mut frame = Vec::with_capacity(1 + chunks.len());
        frame.push(outgoing.split().freeze());
        frame.extend(chunks);
        self.inner.write_vectored(frame).await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.close_with(CloseCode::Away, "server shutting down")
            .await
    }
}

fn invalid_data(error: tungstenite::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_bytes_bound_what_tungstenite_reads() {
        let mut buffers = Buffers {
            incoming: BytesMut::from(&b"abcdef"[..]),
            lent: 4,
            outgoing: BytesMut::new(),
        };
        let mut out = [0u8; 8];
        assert_eq!(buffers.read(&mut out).expect("lent bytes"), 4);
        assert_eq!(&out[..4], b"abcd");
        let error = buffers.read(&mut out).expect_err("nothing more lent");
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(&buffers.incoming[..], b"ef");
    }
}
