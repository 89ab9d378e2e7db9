//! One connection's loop: read a whole frame, decode, handle, answer; strictly in order.
//!
//! Requests are parsed out of one growable read buffer, so a small request usually costs one
//! receive and one send, and a send_messages payload is handed to storage without a copy.
//! The whole declared payload is always consumed, even when the answer is an error, so the
//! byte stream never loses its framing.
//!
//! The loop is written once, over [`ByteStream`]; [`serve`] first wraps the accepted socket in
//! the adapters its listener calls for (TLS, WebSocket, both, or none), galgo-transport's on
//! the server side.
//!
//! Two generations of clients share every listener (docs/architecture.md, "Two protocol
//! generations"). The first four bytes of a connection decide, once, which envelope it speaks:
//! a 0.8 frame starts with its length, which counts the 4-byte code and is never 0; a 0.9
//! frame starts with a header checksum every client leaves 0. The 0.8 loop is here, the 0.9
//! one in [`vsr`]; both hand the same [`Request`] to the same handlers.

pub mod vsr;

use std::{io, net::SocketAddr, os::fd::AsRawFd, rc::Rc, time::Duration};

use bytes::{Buf, Bytes, BytesMut};
use compio::{BufResult, net::TcpStream};
use galgo_metadata::ShardId;
use galgo_protocol::{
    CommandCode, ErrorCode, Request,
    frame::{REQUEST_HEADER_BYTES, RequestHeader, encode_response_header, error_response},
};
use galgo_transport::{ByteStream, TlsStream, WsStream};

use crate::{
    authorization,
    clients::{ClientRecord, Transport},
    context::Context,
    context::Shard,
    handler,
    migration::{self, Follower, Movable, Stay},
    session::{Generation, Session},
};

/// Initial size of a connection's read buffer; it grows to hold the largest frame it sees.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Frames shorter than a read buffer are copied out of it; longer ones are split off it
/// without a copy. A frame split off keeps the allocation it was read into alive for as long
/// as it lives, and a sent batch lives on in the journal and the tail cache: a 200-byte batch
/// split off a 64 KiB buffer kept all of it (and at least one resident page), and the next
/// read allocated a fresh buffer. A frame of a buffer's size or more is read into an
/// allocation of exactly its size (`grow_for`), so splitting it off wastes nothing.
const FRAME_COPY_BELOW: usize = READ_BUFFER_BYTES;
/// The bytes that tell a 0.9 connection from a 0.8 one: four zeros, or a 0.8 length.
const GENERATION_PROBE_BYTES: usize = 4;

/// The listener that accepted a connection, which decides the adapters it is served through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// `[tcp]`: plain TCP, or TLS when `[tcp.tls]` is enabled.
    Tcp,
    /// `[websocket]`: WebSocket, or WSS when `[websocket.tls]` is enabled.
    WebSocket,
}

impl Listener {
    /// The transport code client records report.
    pub fn transport(self) -> Transport {
        match self {
            Listener::Tcp => Transport::Tcp,
            Listener::WebSocket => Transport::WebSocket,
        }
    }
}

/// Serves one accepted socket until the peer leaves or the shard stops: handshakes first
/// (TLS, WebSocket upgrade), then the frame loop. A failed handshake ends only this socket.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream, peer: SocketAddr, listener: Listener) {
    let nodelay = match listener {
        Listener::Tcp => shard.state().seed.tcp.nodelay,
        Listener::WebSocket => shard.state().seed.websocket.nodelay,
    };
    if nodelay {
        let _ = stream.set_nodelay(true);
    }
    // Registered for the whole life of the socket, handshakes included, so that a shutdown
    // (which shuts every registered socket's read side) also ends a pending handshake.
    let fd = stream.as_raw_fd();
    shard.register_socket(fd);
    let served = handshake_and_serve(&shard, stream, peer, listener).await;
    // The socket was closed when its stream was dropped, just before this point, with no await
    // in between: no other task of this shard can have reused the fd number yet.
    shard.unregister_socket(fd);
    match served {
        Ok(()) => {}
        // A shutdown ends pending handshakes by shutting their sockets' read side down.
        Err(error) if shard.is_stopping() => {
            tracing::debug!(shard = shard.id().0, %peer, ?listener, %error, "handshake ended by shutdown")
        }
        Err(error) => {
            tracing::warn!(shard = shard.id().0, %peer, ?listener, %error, "handshake failed; connection closed")
        }
    }
}

/// Wraps `stream` in the adapters of `listener`, each handshake bounded by its section's
/// `handshake_timeout_ms` (so silent or stalled peers do not hold sockets), then runs the
/// session; an error means a handshake failed.
async fn handshake_and_serve(
    shard: &Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Listener,
) -> io::Result<()> {
    let seed = &shard.state().seed;
    let websocket = &seed.websocket;
    let shard = shard.clone();
    match (listener, &seed.tcp_tls, &seed.websocket_tls) {
        (Listener::Tcp, None, _) => run_session(shard, stream, peer, listener).await,
        (Listener::Tcp, Some(tls), _) => {
            let limit = seed.tcp.tls.handshake_timeout_ms;
            let tls = in_time(limit, TlsStream::accept(stream, tls.clone())).await?;
            run_session(shard, tls, peer, listener).await
        }
        (Listener::WebSocket, _, None) => {
            let upgrade = WsStream::accept(stream, websocket_config(websocket));
            let ws = in_time(websocket.handshake_timeout_ms, upgrade).await?;
            run_session(shard, ws, peer, listener).await
        }
        (Listener::WebSocket, _, Some(tls)) => {
            let limit = websocket.tls.handshake_timeout_ms;
            let tls = in_time(limit, TlsStream::accept(stream, tls.clone())).await?;
            let upgrade = WsStream::accept(tls, websocket_config(websocket));
            let wss = in_time(websocket.handshake_timeout_ms, upgrade).await?;
            run_session(shard, wss, peer, listener).await
        }
    }
    Ok(())
}

/// A handshake, bounded by `limit_ms`.
async fn in_time<T>(
    limit_ms: u64,
    handshake: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    compio::time::timeout(Duration::from_millis(limit_ms), handshake)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("handshake not finished within {limit_ms} ms"),
            ))
        })
}

/// tungstenite's limits from `[websocket]`.
fn websocket_config(
    websocket: &crate::config::WebSocketConfigFile,
) -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(websocket.read_buffer_bytes)
        .max_message_size(Some(websocket.message_bytes_max))
        .max_frame_size(Some(websocket.frame_bytes_max))
        .accept_unmasked_frames(websocket.accept_unmasked_frames)
}

/// A new session for a connection accepted from `peer`, registered with the shard's clients.
fn open_session(shard: &Shard, peer: SocketAddr, listener: Listener) -> Session {
    let transport = listener.transport();
    let session = Session::new(peer, transport, shard.state().node_id());
    shard.state().clients.borrow_mut().insert(ClientRecord {
        client_id: session.client_id,
        user_id: None,
        transport,
        address: peer.to_string(),
        vsr_session: None,
    });
    tracing::debug!(shard = shard.id().0, %peer, ?transport, client_id = session.client_id, "client connected");
    session
}

/// Opens the session of a new connection and serves it (it may move, see [`serve_movable`]).
async fn run_session<S: Movable>(
    shard: Rc<Shard>,
    stream: S,
    peer: SocketAddr,
    listener: Listener,
) {
    let session = open_session(&shard, peer, listener);
    let buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
    serve_movable(shard, stream, buffer, session).await
}

/// Serves a session over any transport (new, or moved here from another shard) until it
/// ends or moves on to the shard that owns its partitions (migration.rs).
pub async fn serve_movable<S: Movable>(
    shard: Rc<Shard>,
    stream: S,
    buffer: BytesMut,
    session: Session,
) {
    let context = shard.state();
    let follower = (shard.shard_count() > 1).then(|| Follower::new(shard.id()));
    let mut connection = Connection::new(stream, buffer, context, follower);
    let mut session = session;
    loop {
        let target = match connection.run(&shard, context, &mut session).await {
            Ended::Moving(target) => target,
            ended => return end_session(&shard, context, connection, session, ended).await,
        };
        // Reads and responses are all done: nothing of this session is in flight.
        let Connection { stream, buffer, .. } = connection;
        match migration::depart(&shard, stream, buffer, session, target).await {
            // The target serves its own copy of the socket; this one was closed on return.
            Ok(()) => return,
            Err(Stay::Ended) => return,
            Err(Stay::Refused(stream, buffer, kept)) => {
                // Served here from now on: a refused move is not retried at every request.
                connection = Connection::new(stream, buffer, context, None);
                session = kept;
            }
        }
    }
}

/// Says goodbye (on shutdown, or in answer to a peer that ended the stream), removes the
/// client and logs how the connection ended.
async fn end_session<S: ByteStream>(
    shard: &Rc<Shard>,
    context: &Context,
    mut connection: Connection<S>,
    session: Session,
    ended: Ended,
) {
    let peer = session.peer;
    if shard.is_stopping() {
        let _ = connection
            .write(vec![Bytes::copy_from_slice(&error_response(
                ErrorCode::Disconnected,
            ))])
            .await;
        let _ = connection.stream.close().await;
    } else if matches!(ended, Ended::Closed) {
        // The peer ended the stream (a TLS close_notify, a WebSocket Close, a TCP FIN): answer
        // in kind where the transport has a word for it (RFC 8446 §6.1: each side sends
        // close_notify before closing its write side). A peer already gone makes it fail.
        let _ = connection.stream.close().await;
    }
    shard.state().clients.borrow_mut().remove(session.client_id);
    handler::client_gone(shard, context, session.client_id).await;
    session.log_budget.report_suppressed(&peer);
    match ended {
        Ended::Closed => {
            tracing::debug!(shard = shard.id().0, %peer, client_id = session.client_id, "client disconnected")
        }
        Ended::Io(error) => {
            tracing::info!(shard = shard.id().0, %peer, client_id = session.client_id, %error, "connection failed")
        }
        Ended::Broken(why) => {
            tracing::warn!(shard = shard.id().0, %peer, client_id = session.client_id, %why, "framing broken; connection closed")
        }
        Ended::Moving(_) => unreachable!("only serve_movable moves, and it hands over instead"),
    }
}

/// Why a connection loop ended.
#[derive(Debug)]
enum Ended {
    /// The peer closed its side (or the shard shut our read side down).
    Closed,
    /// A socket error.
    Io(std::io::Error),
    /// The client's bytes can no longer be split into frames: the connection is closed at
    /// the first broken frame, with one log line saying why.
    Broken(String),
    /// The session's requests go to another shard's partitions: it moves there.
    Moving(ShardId),
}

struct Connection<S> {
    stream: S,
    buffer: BytesMut,
    /// How long one response may take to leave before the client counts as gone.
    write_timeout: Duration,
    /// Present when this connection may move to the shard of its partitions.
    follower: Option<Follower>,
}

impl<S: ByteStream> Connection<S> {
    fn new(stream: S, buffer: BytesMut, context: &Context, follower: Option<Follower>) -> Self {
        Self {
            stream,
            buffer,
            write_timeout: Duration::from_millis(context.seed.limits.write_timeout_ms),
            follower,
        }
    }

    /// Serves requests until the connection ends or moves: the generation is decided by the
    /// first four bytes (no round trip: a 0.8 Ping is only 8 bytes long, and a 0.9 frame is
    /// at least 256) and kept for the connection's life.
    async fn run(&mut self, shard: &Rc<Shard>, context: &Context, session: &mut Session) -> Ended {
        if matches!(session.generation, Generation::Undecided) {
            if let Err(ended) = self.fill(GENERATION_PROBE_BYTES).await {
                return ended;
            }
            session.generation = if self.buffer[..GENERATION_PROBE_BYTES] == [0; 4] {
                Generation::Vsr(Box::default())
            } else {
                Generation::Classic
            };
        }
        match session.generation {
            Generation::Vsr(_) => self.run_vsr(shard, context, session).await,
            _ => self.run_classic(shard, context, session).await,
        }
    }

    /// The 0.8 loop (PROTOCOL.md §1): `[length][code][payload]`, answered `[status][length]`.
    async fn run_classic(
        &mut self,
        shard: &Rc<Shard>,
        context: &Context,
        session: &mut Session,
    ) -> Ended {
        loop {
            if let Err(ended) = self.fill(REQUEST_HEADER_BYTES).await {
                return ended;
            }
            let header = RequestHeader::decode(
                self.buffer[..REQUEST_HEADER_BYTES]
                    .try_into()
                    .expect("8 bytes"),
            );
            self.buffer.advance(REQUEST_HEADER_BYTES);
            let reply = match header.payload_len() {
                None => {
                    // The length counts the code: below 4, nothing after it can be framed.
                    return Ended::Broken(format!("0.8 frame length {} below 4", header.length));
                }
                Some(len) if len > context.seed.limits.payload().bytes_max(header.code) => {
                    crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, code = header.code, len, "payload over the frame limit; answering, then draining it");
                    context.requests.record_error(ErrorCode::InvalidCommand);
                    let refused = encode_reply(Err(ErrorCode::InvalidCommand.into()));
                    if let Err(ended) = self.refuse_and_drain(refused, len as usize).await {
                        return ended;
                    }
                    continue;
                }
                Some(len) => {
                    if let Err(ended) = self.fill(len as usize).await {
                        return ended;
                    }
                    let payload = take_frame(&mut self.buffer, len as usize);
                    self.handle(shard, context, session, header.code, payload)
                        .await
                }
            };
            if let Err(error) = &reply {
                context.requests.record_error(error.code());
            }
            if let Err(ended) = self.answer(session, encode_reply(reply)).await {
                return ended;
            }
        }
    }

    async fn handle(
        &mut self,
        shard: &Rc<Shard>,
        context: &Context,
        session: &mut Session,
        code: u32,
        payload: BytesMut,
    ) -> handler::Outcome {
        authorization::authenticate(shard, session, code)?;
        let request = match Request::decode(code, payload) {
            Ok(request) => request,
            Err(error) => {
                crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, code, %error, "malformed or unknown request");
                return Err(error.into());
            }
        };
        execute(shard, context, session, request).await
    }

    /// Sends a request's reply, then asks whether the session should move to the shard of the
    /// partition that request went to (migration.rs): `Err` ends this loop either way.
    async fn answer(&mut self, session: &Session, reply: Vec<Bytes>) -> Result<(), Ended> {
        self.write(reply).await.map_err(Ended::Io)?;
        let owner = session.take_partition_owner();
        match self.follower.as_mut().and_then(|f| f.observe(owner)) {
            Some(target) => Err(Ended::Moving(target)),
            None => Ok(()),
        }
    }

    /// Answers a frame over its size limit at once (the client need not finish sending to
    /// learn its fate), then consumes its `len` bytes so the next frame is read in sync.
    async fn refuse_and_drain(&mut self, refused: Vec<Bytes>, len: usize) -> Result<(), Ended> {
        self.write(refused).await.map_err(Ended::Io)?;
        self.drain(len).await
    }

    /// Reads until the buffer holds at least `wanted` bytes.
    async fn fill(&mut self, wanted: usize) -> Result<(), Ended> {
        if self.buffer.len() >= wanted {
            return Ok(());
        }
        grow_for(&mut self.buffer, wanted);
        while self.buffer.len() < wanted {
            let buffer = std::mem::take(&mut self.buffer);
            let BufResult(read, buffer) = self.stream.read(buffer).await;
            self.buffer = buffer;
            match read {
                Ok(0) => return Err(Ended::Closed),
                Ok(_) => {}
                Err(error) => return Err(Ended::Io(error)),
            }
        }
        Ok(())
    }

    /// Consumes `len` payload bytes without keeping them.
    async fn drain(&mut self, mut len: usize) -> Result<(), Ended> {
        loop {
            let take = len.min(self.buffer.len());
            self.buffer.advance(take);
            len -= take;
            if len == 0 {
                return Ok(());
            }
            self.fill(len.min(READ_BUFFER_BYTES)).await?;
        }
    }

    /// Writes one response, or fails with TimedOut when the client does not take it in time
    /// (the write is cancelled and the connection ends).
    async fn write(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        match compio::time::timeout(self.write_timeout, self.stream.write_vectored(chunks)).await {
            Ok(written) => written,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read its response in time",
            )),
        }
    }
}

/// Makes room in a read buffer for a frame of `wanted` bytes: a buffer's worth at least,
/// reclaiming the buffer's own allocation when it can; a frame longer than a buffer gets an
/// allocation of exactly its size (growing the buffer could double it), since it will be
/// split off and may live on in the tail cache.
fn grow_for(buffer: &mut BytesMut, wanted: usize) {
    if wanted <= READ_BUFFER_BYTES {
        buffer.reserve(READ_BUFFER_BYTES.saturating_sub(buffer.len()));
    } else if buffer.capacity() < wanted {
        let mut exact = BytesMut::with_capacity(wanted);
        prefault(&mut exact, wanted);
        exact.extend_from_slice(buffer);
        *buffer = exact;
    }
}

/// Faults in the pages of a fresh buffer about to be filled with `len` bytes, in one
/// `madvise(MADV_POPULATE_WRITE)` instead of a page fault per 4 KiB as the receive copies
/// into it. A large frame's buffer is fresh memory as long as the tail cache is filling (the
/// batches before it are still held), and those faults were 40% of the server's CPU in a 1 GB
/// producer run; populating them at once made that run 9% faster (six alternated pairs).
/// Pages already present are left as they are; a kernel without it (before 5.14) refuses
/// the advice, which changes nothing. Only the whole pages inside the buffer are advised, in
/// the machine's page size (4 KiB on x86-64, up to 64 KiB on some arm64 kernels).
fn prefault(buffer: &mut BytesMut, len: usize) {
    // SAFETY: sysconf only reads a value (glibc keeps the page size from the auxiliary vector).
    let page_bytes = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        bytes if bytes > 0 => bytes as usize,
        _ => return,
    };
    let start = buffer.as_mut_ptr() as usize;
    let (first, end) = (
        start.next_multiple_of(page_bytes),
        (start + len) / page_bytes * page_bytes,
    );
    if end > first {
        // SAFETY: [first, end) lies within the buffer's allocation (capacity >= len), which it
        // owns; MADV_POPULATE_WRITE only faults its pages in, it neither moves nor changes
        // any byte of them.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                end - first,
                libc::MADV_POPULATE_WRITE,
            );
        }
    }
}

/// Takes a read buffer's first `len` bytes (already read) as a frame of their own: copied
/// when short (`FRAME_COPY_BELOW`), so the buffer's allocation is reused for the next reads,
/// split off without a copy when long.
fn take_frame(buffer: &mut BytesMut, len: usize) -> BytesMut {
    if len < FRAME_COPY_BELOW {
        let frame = BytesMut::from(&buffer[..len]);
        buffer.advance(len);
        frame
    } else {
        buffer.split_to(len)
    }
}

/// Runs one decoded request, from either generation, through the handlers: counted in the
/// request figures, its failure logged.
async fn execute(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    request: Request,
) -> handler::Outcome {
    let command = request.code();
    let cx = handler::Cx {
        shard,
        context,
        session,
    };
    let started = std::time::Instant::now();
    let outcome = handler::handle(cx, request).await;
    context.requests.record(command, started.elapsed());
    if let Err(error) = &outcome {
        log_failure(shard, session, command, error);
    }
    outcome
}

/// The response frame: status and length, then the payload chunks as they are.
pub fn encode_reply(outcome: handler::Outcome) -> Vec<Bytes> {
    match outcome {
        Ok(reply) => {
            let mut header = BytesMut::with_capacity(8);
            let chunks = reply.into_chunks();
            let len: usize = chunks.iter().map(Bytes::len).sum();
            debug_assert!(
                len != 1,
                "a 1-byte OK payload is never read by the Rust SDK"
            );
            encode_response_header(0, len as u32, &mut header);
            let mut frame = Vec::with_capacity(1 + chunks.len());
            frame.push(header.freeze());
            frame.extend(chunks);
            frame
        }
        Err(error) => vec![Bytes::copy_from_slice(&error_response(error.code()))],
    }
}

fn log_failure(
    shard: &Shard,
    session: &Session,
    command: CommandCode,
    error: &crate::error::CommandError,
) {
    let code = error.code();
    let shard = shard.id().0;
    let peer = &session.peer;
    if error.is_server_fault() {
        tracing::error!(shard, %peer, command = command.name(), %error, "command failed");
    } else if matches!(
        code,
        ErrorCode::Unauthenticated | ErrorCode::Unauthorized | ErrorCode::InvalidCredentials
    ) {
        crate::session_log!(session, warn, shard, %peer, command = command.name(), %code, "refused");
    } else {
        tracing::debug!(shard, %peer, command = command.name(), %code, "command refused");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_are_copied_and_long_ones_split_off_the_read_buffer() {
        let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
        let start = buffer.as_ptr();
        buffer.extend_from_slice(&[7; 300]);
        let short = take_frame(&mut buffer, 200);
        assert_eq!(&short[..], &[7; 200][..]);
        assert!(short.capacity() < FRAME_COPY_BELOW, "a copy of its own");
        // While the short frame lives on (in a journal, in the tail cache), the buffer still
        // holds its allocation alone: the next read reuses it.
        buffer.clear();
        buffer.reserve(READ_BUFFER_BYTES);
        assert_eq!(buffer.as_ptr(), start, "the same allocation");

        buffer.extend_from_slice(&vec![9; FRAME_COPY_BELOW + 10]);
        let at = buffer.as_ptr();
        let long = take_frame(&mut buffer, FRAME_COPY_BELOW);
        assert_eq!(long.as_ptr(), at, "split off without a copy");
        assert_eq!(long.len(), FRAME_COPY_BELOW);
        assert_eq!(&buffer[..], &[9; 10][..]);
        drop(short);
    }

    #[test]
    fn a_frame_longer_than_a_buffer_gets_an_allocation_of_its_size() {
        let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
        buffer.extend_from_slice(&[1; 100]);
        let wanted = READ_BUFFER_BYTES + 4096;
        grow_for(&mut buffer, wanted);
        assert_eq!(buffer.capacity(), wanted, "not doubled");
        assert_eq!(&buffer[..], &[1; 100][..], "what was read is kept");
        // A short frame reclaims the buffer's own room.
        let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES);
        let start = buffer.as_ptr();
        buffer.extend_from_slice(&[2; 1000]);
        let _ = take_frame(&mut buffer, 1000);
        grow_for(&mut buffer, 8);
        assert_eq!(buffer.as_ptr(), start);
        assert!(buffer.capacity() >= READ_BUFFER_BYTES);
    }
}
