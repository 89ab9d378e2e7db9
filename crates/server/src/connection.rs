//! One connection's loop: read a whole frame, decode, handle, answer; strictly in order.
//!
//! Requests are parsed out of one growable read buffer, so a small request usually costs one
//! receive and one send, and a send_messages payload is handed to storage without a copy.
//! The whole declared payload is always consumed, even when the answer is an error, so the
//! byte stream never loses its framing.

use std::{net::SocketAddr, os::fd::AsRawFd, rc::Rc};

use bytes::{Buf, Bytes, BytesMut};
use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use galgo_protocol::{
    CommandCode, ErrorCode, Request,
    frame::{REQUEST_HEADER_BYTES, RequestHeader, encode_response_header, error_response},
};
use galgo_shards::{ClientRecord, Shard, Transport};

use crate::{context::Context, handler, session::Session};

/// Initial size of a connection's read buffer; it grows to hold the largest frame it sees.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Serves one accepted TCP connection until the peer leaves or the shard stops.
pub async fn serve_tcp(
    shard: Rc<Shard>,
    context: Rc<Context>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    if context.seed.tcp.nodelay {
        let _ = stream.set_nodelay(true);
    }
    let fd = stream.as_raw_fd();
    let mut session = Session::new(peer, Transport::Tcp);
    shard.register_socket(fd);
    shard.clients.borrow_mut().insert(ClientRecord {
        client_id: session.client_id,
        user_id: None,
        transport: Transport::Tcp,
        address: peer.to_string(),
    });
    tracing::debug!(shard = shard.id().0, %peer, client_id = session.client_id, "client connected");
    let mut connection = Connection {
        stream,
        buffer: BytesMut::with_capacity(READ_BUFFER_BYTES),
    };
    let ended = connection.run(&shard, &context, &mut session).await;
    if shard.is_stopping() {
        let _ = connection
            .write(vec![Bytes::copy_from_slice(&error_response(
                ErrorCode::Disconnected,
            ))])
            .await;
    }
    shard.unregister_socket(fd);
    shard.clients.borrow_mut().remove(session.client_id);
    handler::client_gone(&shard, &context, session.client_id).await;
    match ended {
        Ended::Closed => {
            tracing::debug!(shard = shard.id().0, %peer, client_id = session.client_id, "client disconnected")
        }
        Ended::Io(error) => {
            tracing::info!(shard = shard.id().0, %peer, client_id = session.client_id, %error, "connection failed")
        }
    }
}

/// Why a connection loop ended.
#[derive(Debug)]
enum Ended {
    /// The peer closed its side (or the shard shut our read side down).
    Closed,
    /// A socket error.
    Io(std::io::Error),
}

struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
}

impl Connection {
    async fn run(&mut self, shard: &Rc<Shard>, context: &Context, session: &mut Session) -> Ended {
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
                    tracing::warn!(shard = shard.id().0, peer = %session.peer, length = header.length, "frame length below 4");
                    Err(ErrorCode::InvalidCommand.into())
                }
                Some(len) if len > payload_limit(context, header.code) => {
                    tracing::warn!(shard = shard.id().0, peer = %session.peer, code = header.code, len, "payload over the frame limit; answering, then draining it");
                    // Answer at once (the client need not finish sending to learn its fate),
                    // then consume the payload so the next frame is read in sync.
                    let refused = encode_reply(Err(ErrorCode::InvalidCommand.into()));
                    if let Err(error) = self.write(refused).await {
                        return Ended::Io(error);
                    }
                    if let Err(ended) = self.drain(len as usize).await {
                        return ended;
                    }
                    continue;
                }
                Some(len) => {
                    if let Err(ended) = self.fill(len as usize).await {
                        return ended;
                    }
                    let payload = self.buffer.split_to(len as usize);
                    self.handle(shard, context, session, header.code, payload)
                        .await
                }
            };
            if let Err(error) = self.write(encode_reply(reply)).await {
                return Ended::Io(error);
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
        let request = match Request::decode(code, payload) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(shard = shard.id().0, peer = %session.peer, code, %error, "malformed or unknown request");
                return Err(error.into());
            }
        };
        let command = request.code();
        let outcome = handler::handle(shard, context, session, request).await;
        if let Err(error) = &outcome {
            log_failure(shard, session, command, error);
        }
        outcome
    }

    /// Reads until the buffer holds at least `wanted` bytes.
    async fn fill(&mut self, wanted: usize) -> Result<(), Ended> {
        if self.buffer.len() >= wanted {
            return Ok(());
        }
        self.buffer
            .reserve(wanted.max(READ_BUFFER_BYTES) - self.buffer.len());
        while self.buffer.len() < wanted {
            let buffer = std::mem::take(&mut self.buffer);
            let BufResult(read, buffer) = self.stream.append(buffer).await;
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

    async fn write(&mut self, chunks: Vec<Bytes>) -> std::io::Result<()> {
        let BufResult(written, _) = self.stream.write_vectored_all(chunks).await;
        written
    }
}

fn payload_limit(context: &Context, code: u32) -> u32 {
    if code == CommandCode::SendMessages.as_u32() {
        context.seed.tcp.send_payload_bytes_max
    } else {
        context.seed.tcp.control_payload_bytes_max
    }
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
        tracing::warn!(shard, %peer, command = command.name(), %code, "refused");
    } else {
        tracing::debug!(shard, %peer, command = command.name(), %code, "command refused");
    }
}
