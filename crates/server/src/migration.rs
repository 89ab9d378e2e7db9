//! Connections follow their partitions: a connection whose sends and polls keep
//! going to partitions of one other shard moves to that shard, so its requests stop paying a
//! cross-shard hop each (two thread wake-ups through the inboxes).
//!
//! The kernel spreads connections over the shards' listeners (SO_REUSEPORT) without knowing
//! which partitions they will use, so with N shards most connections start on the wrong one.
//! Measured on 2 cores, one 100-byte message per request: with every partition on one shard
//! (no hop possible) p50 was 1.5× the raw round trip against 2.9× with 2 shards
//! (docs/benchmarks.md).
//!
//! A move happens only between requests (the response is written, nothing is in flight):
//! the socket is duplicated, the copy, the session, any bytes already read and the transport's
//! own state (a WebSocket's unparsed input and where it stands in a frame: [`WsState`]; a TLS
//! session's rustls connection with its keys, sequence numbers and undecrypted input:
//! [`TlsState`]) are sent to the target shard in a call, and the target serves the connection
//! from its next frame on. Every transport moves: TCP, TCP+TLS, WebSocket and WSS.

use std::{
    net::SocketAddr,
    os::fd::{AsFd, AsRawFd, RawFd},
    rc::Rc,
};

use bytes::BytesMut;
use compio::net::TcpStream;
use galgo_metadata::ShardId;
use galgo_transport::{ByteStream, Server, TlsState, TlsStream, WsState, WsStream};

use crate::{clients::ClientRecord, connection, context::Shard, handler, session::Session};

/// Consecutive sends or polls served by one other shard before the connection moves there.
/// More than one, so a client that spreads its requests over the shards' partitions (balanced
/// partitioning, polls of many partitions) is not moved back and forth.
pub const HOPS_BEFORE_MOVE: u32 = 3;

/// Watches where a connection's partition requests go and says when to move.
#[derive(Debug)]
pub struct Follower {
    /// The shard serving the connection now.
    here: ShardId,
    /// The other shard the recent requests went to, and how many in a row.
    streak: Option<(ShardId, u32)>,
}

impl Follower {
    /// A follower for a connection served by `here`.
    pub fn new(here: ShardId) -> Self {
        Self { here, streak: None }
    }

    /// Takes the owner of the last request's partition (`None`: it touched no partition) and
    /// returns the shard to move to, once `HOPS_BEFORE_MOVE` requests in a row went there.
    pub fn observe(&mut self, owner: Option<ShardId>) -> Option<ShardId> {
        let owner = owner?;
        if owner == self.here {
            self.streak = None;
            return None;
        }
        let count = match self.streak {
            Some((shard, count)) if shard == owner => count + 1,
            _ => 1,
        };
        self.streak = Some((owner, count));
        (count >= HOPS_BEFORE_MOVE).then_some(owner)
    }
}

/// A transport over a TCP socket, which can move with its connection: the socket is
/// duplicated, and the transport's state (`Send`, unlike the stream) goes along.
pub trait Movable: ByteStream + Sized + 'static {
    /// Everything of the transport but its socket.
    type State: Send + 'static;

    /// Separates the socket from the state; nothing is in flight.
    fn split(self) -> (TcpStream, Self::State);

    /// Puts a socket (the original, or a copy on another shard) and a state back together.
    fn join(socket: TcpStream, state: Self::State) -> Self;
}

impl Movable for TcpStream {
    type State = ();

    fn split(self) -> (TcpStream, ()) {
        (self, ())
    }

    fn join(socket: TcpStream, (): ()) -> Self {
        socket
    }
}

impl<S: Movable> Movable for WsStream<S, Server> {
    type State = (WsState<Server>, S::State);

    fn split(self) -> (TcpStream, Self::State) {
        let (inner, ws) = self.into_parts();
        let (socket, state) = inner.split();
        (socket, (ws, state))
    }

    fn join(socket: TcpStream, (ws, state): Self::State) -> Self {
        WsStream::from_parts(S::join(socket, state), ws)
    }
}

impl<S: Movable> Movable for TlsStream<S, Server> {
    type State = (TlsState<Server>, S::State);

    fn split(self) -> (TcpStream, Self::State) {
        let (inner, tls) = self.into_parts();
        let (socket, state) = inner.split();
        (socket, (tls, state))
    }

    fn join(socket: TcpStream, (tls, state): Self::State) -> Self {
        TlsStream::from_parts(S::join(socket, state), tls)
    }
}

/// Why a connection stays where it is.
pub enum Stay<S> {
    /// The target refused it (full, or not serving); the session goes on here over `S`.
    Refused(S, BytesMut, Session),
    /// The target is gone (shutdown): the session has ended.
    Ended,
}

/// What the target gives back when it refuses a connection.
/// A move the target refused: what the origin gets back to keep serving (boxed: a cold path,
/// and the session is large).
type Refusal<T> = Box<(T, BytesMut, Session, &'static str)>;

/// Hands the session on `stream` to `target`. On success the target serves a duplicate of
/// the socket and this shard has forgotten the client (`stream` is dropped on return); a
/// target at `connections_per_shard_max` refuses, and the session goes on here.
pub async fn depart<S: Movable>(
    shard: &Rc<Shard>,
    stream: S,
    buffer: BytesMut,
    session: Session,
    target: ShardId,
) -> Result<(), Stay<S>> {
    let context = shard.state();
    let client_id = session.client_id;
    let (socket, state) = stream.split();
    let copy = match socket.as_fd().try_clone_to_owned() {
        Ok(copy) => std::net::TcpStream::from(copy),
        Err(error) => {
            tracing::warn!(shard = shard.id().0, client_id, %error, "cannot duplicate a socket to move it; it stays");
            return Err(Stay::Refused(S::join(socket, state), buffer, session));
        }
    };
    let moved = shard
        .call(target, move |shard| async move {
            arrive::<S>(shard, copy, state, buffer, session)
        })
        .await;
    match moved {
        Ok(Ok(())) => {
            shard.state().clients.borrow_mut().remove(client_id);
            context.groups.forget_client(client_id);
            tracing::debug!(
                from = shard.id().0,
                to = target.0,
                client_id,
                "connection moved to its partitions' shard"
            );
            Ok(())
        }
        Ok(Err(refused)) => {
            let (state, buffer, session, reason) = *refused;
            tracing::debug!(
                from = shard.id().0,
                to = target.0,
                client_id,
                reason,
                "connection not moved; it stays"
            );
            Err(Stay::Refused(S::join(socket, state), buffer, session))
        }
        Err(error) => {
            tracing::debug!(from = shard.id().0, to = target.0, client_id, %error, "connection not moved: shard stopping");
            shard.state().clients.borrow_mut().remove(client_id);
            handler::client_gone(shard, context, client_id).await;
            Err(Stay::Ended)
        }
    }
}

/// On the target shard: registers the moved connection and serves it in a task of its own,
/// or gives the session back with the reason it cannot take it.
fn arrive<S: Movable>(
    shard: Rc<Shard>,
    socket: std::net::TcpStream,
    state: S::State,
    buffer: BytesMut,
    session: Session,
) -> Result<(), Refusal<S::State>> {
    let connections_max = shard.state().seed.limits.connections_per_shard_max;
    if shard.is_stopping() {
        return Err(Box::new((state, buffer, session, "shard stopping")));
    }
    if shard.state().clients.borrow().len() >= connections_max {
        return Err(Box::new((state, buffer, session, "shard is full")));
    }
    let socket = match TcpStream::from_std(socket) {
        Ok(socket) => socket,
        Err(_) => {
            return Err(Box::new((
                state,
                buffer,
                session,
                "cannot register the socket",
            )));
        }
    };
    let fd = socket.as_raw_fd();
    let stream = S::join(socket, state);
    shard.state().clients.borrow_mut().insert(ClientRecord {
        client_id: session.client_id,
        user_id: session.user_id,
        transport: session.transport,
        address: session.peer.to_string(),
        vsr_session: session.vsr_session(),
    });
    let task = serve_arrived(shard, fd, stream, buffer, session);
    compio::runtime::spawn(task).detach();
    Ok(())
}

/// Serves a moved connection until it ends or moves again; the socket is registered for
/// shutdown like an accepted one.
async fn serve_arrived<S: Movable>(
    shard: Rc<Shard>,
    fd: RawFd,
    stream: S,
    buffer: BytesMut,
    session: Session,
) {
    let peer: SocketAddr = session.peer;
    shard.register_socket(fd);
    connection::serve_movable(shard.clone(), stream, buffer, session).await;
    // As in connection::serve: the stream was dropped just before, with no await in between.
    shard.unregister_socket(fd);
    tracing::trace!(shard = shard.id().0, %peer, "moved connection done");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_after_enough_hops_in_a_row_to_one_shard() {
        let mut follower = Follower::new(ShardId(0));
        for _ in 1..HOPS_BEFORE_MOVE {
            assert_eq!(follower.observe(Some(ShardId(1))), None);
            assert_eq!(follower.observe(None), None, "other commands do not count");
        }
        assert_eq!(follower.observe(Some(ShardId(1))), Some(ShardId(1)));
    }

    #[test]
    fn a_local_or_different_owner_restarts_the_count() {
        let mut follower = Follower::new(ShardId(0));
        for _ in 0..10 {
            assert_eq!(follower.observe(Some(ShardId(1))), None);
            assert_eq!(follower.observe(Some(ShardId(2))), None);
            follower.observe(Some(ShardId(0)));
        }
    }
}
