//! The state of one connection: who it is and who is logged in on it.

use std::{cell::Cell, net::SocketAddr};

use galgo_metadata::{Metadata, ShardId, User, UserId};
use galgo_protocol::ErrorCode;

use crate::clients::Transport;

/// One connection's session. Lives in its connection task, on the accepting shard or the
/// shard the connection moved to.
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
    /// The generation of the logged-in user (see [`User::generation`]): a user deleted and
    /// replaced by another with the same id does not inherit this session.
    user_generation: u64,
    /// The shard that owned the partition of the last send or poll, taken by the frame loop
    /// after each request (see migration.rs).
    partition_owner: Cell<Option<ShardId>>,
}

impl Session {
    /// A new, anonymous session.
    pub fn new(peer: SocketAddr, transport: Transport) -> Self {
        Self {
            client_id: client_id(&peer),
            peer,
            transport,
            user_id: None,
            user_generation: 0,
            partition_owner: Cell::new(None),
        }
    }

    /// Notes the shard that owned the partition a send or poll went to.
    pub fn note_partition_owner(&self, owner: ShardId) {
        self.partition_owner.set(Some(owner));
    }

    /// The owner noted by the last request, if it was a send or poll; clears it.
    pub fn take_partition_owner(&self) -> Option<ShardId> {
        self.partition_owner.take()
    }

    /// The logged-in user's id, or 40 Unauthenticated.
    pub fn user(&self) -> Result<u32, ErrorCode> {
        self.user_id.ok_or(ErrorCode::Unauthenticated)
    }

    /// Logs `user` in (whoever was logged in before is logged out).
    pub fn log_in(&mut self, user: &User) {
        self.user_id = Some(user.id.0);
        self.user_generation = user.generation;
    }

    /// The session is anonymous again.
    pub fn log_out(&mut self) {
        self.user_id = None;
        self.user_generation = 0;
    }

    /// The logged-in user as the replica knows it now, or `None` when nobody is logged in or
    /// the user was deleted or deactivated since: that session has ended.
    pub fn current_user<'a>(&self, metadata: &'a Metadata) -> Option<&'a User> {
        let user = metadata.user_by_id(UserId(self.user_id?))?;
        (user.generation == self.user_generation && user.active).then_some(user)
    }
}

/// Iggy's client id: XXH32 with seed 0 over the peer address as text.
pub fn client_id(peer: &SocketAddr) -> u32 {
    xxhash_rust::xxh32::xxh32(peer.to_string().as_bytes(), 0)
}
