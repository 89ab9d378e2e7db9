//! The state of one connection: who it is and who is logged in on it.

use std::net::SocketAddr;

use galgo_protocol::ErrorCode;
use galgo_shards::Transport;

/// One connection's session. Lives in its connection task on the accepting shard.
#[derive(Debug)]
pub struct Session {
    /// XXH32 (seed 0) of the peer address text, as Iggy computes client ids.
    pub client_id: u32,
    /// The peer.
    pub peer: SocketAddr,
    /// How it connected.
    pub transport: Transport,
    /// The logged-in user.
    pub user_id: Option<u32>,
}

impl Session {
    /// A new, anonymous session.
    pub fn new(peer: SocketAddr, transport: Transport) -> Self {
        Self {
            client_id: client_id(&peer),
            peer,
            transport,
            user_id: None,
        }
    }

    /// The logged-in user, or 40 Unauthenticated.
    pub fn user(&self) -> Result<u32, ErrorCode> {
        self.user_id.ok_or(ErrorCode::Unauthenticated)
    }
}

/// Iggy's client id: XXH32 with seed 0 over the peer address as text.
pub fn client_id(peer: &SocketAddr) -> u32 {
    xxhash_rust::xxh32::xxh32(peer.to_string().as_bytes(), 0)
}
