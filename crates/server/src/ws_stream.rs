//! WebSocket over any [`ByteStream`]: binary frames are unframed here, everything else goes
//! through tungstenite's protocol state machine over in-memory buffers; the socket I/O is ours.
//!
//! A producer's bytes cross this adapter once: socket reads land in `incoming`, and a binary
//! frame's payload is unmasked while it is appended to the frame loop's buffer, piece by piece as
//! it arrives (requests are a byte stream, PROTOCOL.md §2.1, so a frame need not be whole first).
//! Every other frame (Ping, Pong, Close, Text, and anything malformed) is lent to tungstenite,
//! which reads exactly that frame's bytes out of `incoming` through [`Buffers`] and keeps its
//! answers, close codes and errors as they were. tungstenite never sees a binary frame, so its
//! fragmentation state covers Text only, and ours covers Binary only.
//!
//! ```text
//!   socket ─▶ incoming ─┬─ binary frame payload ── unmask+copy ──▶ frame loop buffer
//!                       └─ any other frame ── lent ──▶ tungstenite ─▶ Pong / Close / error
//! ```
//!
//! Each response leaves as exactly one binary frame: a header and the response's own chunks in
//! one vectored write, no copy (a server does not mask).

use std::io::{self, Cursor, Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compio::BufResult;
use tungstenite::{
    HandshakeError, Message, WebSocket,
    error::{CapacityError, ProtocolError},
    handshake::server::{NoCallback, ServerHandshake},
    protocol::{
        CloseFrame, WebSocketConfig,
        frame::{
            FrameHeader,
            coding::{CloseCode, Data, OpCode},
        },
    },
};

use galgo_protocol::websocket::apply_mask;

use crate::byte_stream::{ByteStream, READ_CHUNK_BYTES};

/// The answer to an HTTP request that is not a WebSocket upgrade, before the connection closes.
const NOT_AN_UPGRADE_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n\
this port serves WebSocket upgrades only.\n";

/// Largest room one socket read into `incoming` reserves while a binary frame's payload is
/// arriving: a 1 MB request arrives in a few reads, and an idle connection does not keep more.
const RECEIVE_BYTES_MAX: usize = 1024 * 1024;
const _: () = assert!(RECEIVE_BYTES_MAX >= READ_CHUNK_BYTES);

/// What tungstenite reads from and writes to: bytes received but not yet parsed, how many of
/// them it may take, and bytes it produced but we have not sent yet.
#[derive(Debug, Default)]
pub struct Buffers {
    incoming: BytesMut,
    /// The bytes at the front of `incoming` that belong to tungstenite: the frame lent to it
    /// (unlimited during the handshake). Never more than it should read, so it never swallows
    /// the binary frame after it.
    lent: usize,
    outgoing: BytesMut,
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
        self.lent -= count;
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

/// Where the input stands between two reads: inside a binary frame or message, or not.
#[derive(Debug, Default)]
pub struct Unframing {
    /// The binary frame whose payload is being passed on.
    frame: Option<PayloadFrame>,
    /// Payload bytes of the binary message begun and not finished yet (fragmented).
    message_bytes: Option<usize>,
    /// tungstenite holds the start of a fragmented Text message.
    text_open: bool,
}

#[derive(Debug)]
struct PayloadFrame {
    remaining: usize,
    /// The client's mask (`None` only with `accept_unmasked_frames`), and the payload offset of
    /// the next byte, which selects the mask byte it starts at.
    mask: Option<[u8; 4]>,
    offset: usize,
    is_final: bool,
}

/// What the input holds next.
enum Next {
    /// This many payload bytes were appended to the caller's buffer.
    Delivered(usize),
    /// Nothing until more bytes arrive.
    Receive,
    /// A frame is lent to tungstenite.
    Lent,
    /// A protocol violation or an oversized frame: close with this code.
    Refuse(CloseCode, tungstenite::Error),
}

/// A server-side WebSocket over `S`, after the upgrade. Lives in one connection task, on one
/// shard at a time: a plain one moves with its connection (migration.rs) as [`WsState`].
pub struct WsStream<S> {
    inner: S,
    ws: WebSocket<Buffers>,
    unframing: Unframing,
}

/// Everything of a [`WsStream`] but its inner stream, to rebuild it on another shard.
pub struct WsState {
    ws: WebSocket<Buffers>,
    unframing: Unframing,
}

impl<S: ByteStream> WsStream<S> {
    /// Runs the RFC 6455 server handshake over `inner`: any path, no subprotocol. A request
    /// that is not a WebSocket upgrade is answered with 400 Bad Request and refused here.
    pub async fn accept(mut inner: S, config: WebSocketConfig) -> io::Result<Self> {
        let buffers = Buffers {
            lent: usize::MAX,
            ..Buffers::default()
        };
        let mut handshake = ServerHandshake::start(buffers, NoCallback, Some(config));
        loop {
            match handshake.handshake() {
                Ok(mut ws) => {
                    // Frames after the upgrade are read by us first.
                    ws.get_mut().lent = 0;
                    let mut stream = Self {
                        inner,
                        ws,
                        unframing: Unframing::default(),
                    };
                    stream.send_pending().await?;
                    return Ok(stream);
                }
                Err(HandshakeError::Interrupted(waiting)) => {
                    handshake = waiting;
                    let buffers = handshake.get_mut().get_mut();
                    send(&mut inner, &mut buffers.outgoing).await?;
                    if !receive(&mut inner, &mut buffers.incoming, READ_CHUNK_BYTES).await? {
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

    /// Splits the stream into its inner stream and the WebSocket state; nothing is lost as
    /// long as no read or write is in progress.
    pub fn into_parts(self) -> (S, WsState) {
        let state = WsState {
            ws: self.ws,
            unframing: self.unframing,
        };
        (self.inner, state)
    }

    /// Rebuilds a stream from [`Self::into_parts`]'s state over `inner`, a copy of the socket.
    pub fn from_parts(inner: S, state: WsState) -> Self {
        Self {
            inner,
            ws: state.ws,
            unframing: state.unframing,
        }
    }

    /// Sends what tungstenite queued (a Pong, a Close reply) and anything already framed.
    async fn send_pending(&mut self) -> io::Result<()> {
        // An error only means the session is closing; what was queued is in `outgoing`.
        let _ = self.ws.flush();
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

    /// Passes on what `incoming` holds of the current binary frame, or reads the next header.
    fn next(&mut self, buffer: &mut BytesMut) -> Next {
        loop {
            let buffers = self.ws.get_mut();
            if buffers.lent > 0 {
                return Next::Lent;
            }
            let Some(frame) = &mut self.unframing.frame else {
                match self.begin_frame() {
                    Some(next) => return next,
                    None => continue,
                }
            };
            let count = frame.remaining.min(buffers.incoming.len());
            if count > 0 {
                unmask_into(buffer, &buffers.incoming[..count], frame.mask, frame.offset);
                buffers.incoming.advance(count);
                frame.remaining -= count;
                frame.offset += count;
            }
            if frame.remaining == 0 {
                if frame.is_final {
                    self.unframing.message_bytes = None;
                }
                self.unframing.frame = None;
            }
            if count > 0 {
                return Next::Delivered(count);
            }
            if self.unframing.frame.is_some() {
                return Next::Receive;
            }
        }
    }

    /// Reads the next frame's header: a binary frame becomes the current frame (`None`: go on
    /// passing it), any other is lent to tungstenite.
    fn begin_frame(&mut self) -> Option<Next> {
        let can_read = self.ws.can_read();
        let config = *self.ws.get_config();
        let buffers = self.ws.get_mut();
        let mut cursor = Cursor::new(&buffers.incoming[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Some(Next::Receive),
            Err(error) => return Some(Next::Refuse(CloseCode::Protocol, error)),
        };
        let header_bytes = cursor.position() as usize;
        let unframing = &mut self.unframing;
        let binary = match (header.opcode, unframing.message_bytes) {
            (OpCode::Data(data @ (Data::Binary | Data::Text)), Some(_)) => {
                let error = ProtocolError::ExpectedFragment(data);
                return Some(Next::Refuse(CloseCode::Protocol, error.into()));
            }
            (OpCode::Data(Data::Binary), None) => !unframing.text_open,
            (OpCode::Data(Data::Continue), Some(_)) => true,
            _ => false,
        };
        let well_formed = can_read
            && !(header.rsv1 || header.rsv2 || header.rsv3)
            && (header.mask.is_some() || config.accept_unmasked_frames);
        if !(binary && well_formed) {
            // tungstenite answers it, or refuses it with the error it always gave.
            if let OpCode::Data(data) = header.opcode {
                let starts_text = data == Data::Text && !unframing.text_open;
                let ends_text = data == Data::Continue && unframing.text_open;
                if (starts_text && !header.is_final) || (ends_text && header.is_final) {
                    unframing.text_open = !unframing.text_open;
                }
            }
            buffers.lent = (header_bytes as u64).saturating_add(len) as usize;
            return Some(Next::Lent);
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let message_bytes = unframing.message_bytes.unwrap_or(0).saturating_add(len);
        let too_long = |size, max_size| {
            let error = CapacityError::MessageTooLong { size, max_size };
            Some(Next::Refuse(CloseCode::Size, error.into()))
        };
        match (config.max_frame_size, config.max_message_size) {
            (Some(max_size), _) if len > max_size => return too_long(len, max_size),
            (_, Some(max_size)) if message_bytes > max_size => {
                return too_long(message_bytes, max_size);
            }
            _ => {}
        }
        buffers.incoming.advance(header_bytes);
        unframing.message_bytes = Some(message_bytes);
        unframing.frame = Some(PayloadFrame {
            remaining: len,
            mask: header.mask,
            offset: 0,
            is_final: header.is_final,
        });
        None
    }

    /// Lets tungstenite read the frame lent to it. `Some` ends the caller's read with it;
    /// `None` means go on (the frame was consumed, or more of it arrived).
    async fn read_lent(&mut self, buffer: &mut BytesMut) -> Option<io::Result<usize>> {
        match self.ws.read() {
            // Only with a configuration that lends binary frames; kept for completeness.
            Ok(Message::Binary(data)) if !data.is_empty() => {
                buffer.extend_from_slice(&data);
                Some(Ok(data.len()))
            }
            Ok(Message::Close(_)) => {
                // tungstenite queued the Close reply; it goes out now.
                Some(self.send_pending().await.map(|()| 0))
            }
            // Pings are answered by tungstenite (the Pong goes out before the next wait or
            // with the next response); Text, Pong and empty messages carry nothing.
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

    /// Sends anything pending, then waits for more bytes (room for `wanted` of them).
    /// `Err(Ok(0))` at the end of the stream.
    async fn receive_more(&mut self, wanted: usize) -> Result<(), io::Result<usize>> {
        self.send_pending().await.map_err(Err)?;
        let incoming = &mut self.ws.get_mut().incoming;
        let room = wanted.clamp(READ_CHUNK_BYTES, RECEIVE_BYTES_MAX);
        match receive(&mut self.inner, incoming, room).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Ok(0)),
            Err(error) => Err(Err(error)),
        }
    }
}

impl<S: ByteStream> ByteStream for WsStream<S> {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        loop {
            let ended = match self.next(&mut buffer) {
                Next::Delivered(count) => Some(Ok(count)),
                Next::Receive => {
                    let remaining = self.unframing.frame.as_ref().map_or(0, |f| f.remaining);
                    self.receive_more(remaining).await.err()
                }
                Next::Lent => self.read_lent(&mut buffer).await,
                Next::Refuse(code, error) => Some(Err(self.refuse(code, error).await)),
            };
            if let Some(result) = ended {
                return BufResult(result, buffer);
            }
        }
    }

    async fn write(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        if !self.ws.can_write() {
            let error = tungstenite::Error::Protocol(ProtocolError::SendAfterClosing);
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, error));
        }
        // A Pong tungstenite queued leaves first, in the same write.
        let _ = self.ws.flush();
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let outgoing = &mut self.ws.get_mut().outgoing;
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Binary),
            ..FrameHeader::default()
        };
        header
            .format(len as u64, &mut outgoing.writer())
            .expect("formatting into memory cannot fail");
        let mut frame = Vec::with_capacity(1 + chunks.len());
        frame.push(outgoing.split().freeze());
        frame.extend(chunks);
        self.inner.write(frame).await
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

/// Appends `masked` to `out`, unmasked: its first byte is the payload's byte `offset`.
fn unmask_into(out: &mut BytesMut, masked: &[u8], mask: Option<[u8; 4]>, offset: usize) {
    let start = out.len();
    out.extend_from_slice(masked);
    if let Some(mask) = mask {
        let mut phased = mask;
        phased.rotate_left(offset % 4);
        apply_mask(&mut out[start..], phased);
    }
}

/// Writes out everything in `outgoing`.
async fn send<S: ByteStream>(inner: &mut S, outgoing: &mut BytesMut) -> io::Result<()> {
    if outgoing.is_empty() {
        return Ok(());
    }
    inner.write(vec![outgoing.split().freeze()]).await
}

/// Appends what arrives to `incoming`, with room for `room` bytes; `false` at the end of the
/// stream.
async fn receive<S: ByteStream>(
    inner: &mut S,
    incoming: &mut BytesMut,
    room: usize,
) -> io::Result<bool> {
    incoming.reserve(room);
    let BufResult(read, buffer) = inner.read(std::mem::take(incoming)).await;
    *incoming = buffer;
    read.map(|count| count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmasking_in_pieces_matches_unmasking_at_once() {
        let mask = [0x6d, 0xb6, 0xb2, 0x80];
        let plain: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let masked: Vec<u8> = plain
            .iter()
            .enumerate()
            .map(|(index, byte)| byte ^ mask[index % 4])
            .collect();
        for split in [0, 1, 2, 3, 5, 8, 13, 999, 1000] {
            let mut out = BytesMut::from(&b"kept"[..]);
            unmask_into(&mut out, &masked[..split], Some(mask), 0);
            unmask_into(&mut out, &masked[split..], Some(mask), split);
            assert_eq!(&out[..4], b"kept");
            assert_eq!(&out[4..], &plain[..], "split at {split}");
        }
    }

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
