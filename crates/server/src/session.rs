//! The state of one connection: who it is, which generation of the protocol it speaks, who
//! is logged in on it, and how much it may still write to the server's log.

use std::{
    cell::Cell,
    net::SocketAddr,
    time::{Duration, Instant},
};

use galgo_metadata::{Metadata, ShardId, User, UserId};
use galgo_protocol::ErrorCode;

use crate::{clients::Transport, connection::vsr::VsrSession};

/// The protocol generation a connection speaks, decided by its first bytes and kept for its
/// life (a connection that moves to another shard keeps it).
#[derive(Debug, Default)]
pub enum Generation {
    /// Nothing read yet.
    #[default]
    Undecided,
    /// The 0.8 framing (PROTOCOL.md).
    Classic,
    /// The 0.9 framing (PROTOCOL-0.9.md), with its session state.
    Vsr(Box<VsrSession>),
}

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
    /// The protocol generation.
    pub generation: Generation,
    /// What this connection may still write to the server's log.
    pub log_budget: LogBudget,
}

impl Session {
    /// A new, anonymous session of a connection to cluster node `node` (0 on a single node).
    pub fn new(peer: SocketAddr, transport: Transport, node: u64) -> Self {
        Self {
            client_id: client_id(&peer, node),
            peer,
            transport,
            user_id: None,
            user_generation: 0,
            partition_owner: Cell::new(None),
            generation: Generation::Undecided,
            log_budget: LogBudget::new(),
        }
    }

    /// True when the connection speaks the 0.9 framing.
    pub fn is_vsr(&self) -> bool {
        matches!(self.generation, Generation::Vsr(_))
    }

    /// A 0.9 connection's bound session (Register's client id, the session number).
    pub fn vsr_session(&self) -> Option<(u128, u64)> {
        match &self.generation {
            Generation::Vsr(state) => state.bound(),
            _ => None,
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

/// Iggy's client id on a single node (`node` 0): XXH32 with seed 0 over the peer address as
/// text. A cluster node seeds the hash with its node id: one machine's clients of two nodes
/// may have the same address (a port is reused towards another destination), and their ids
/// name consumer-group members on every node, so they must not clash.
pub fn client_id(peer: &SocketAddr, node: u64) -> u32 {
    let seed = (node ^ (node >> 32)) as u32;
    xxhash_rust::xxh32::xxh32(peer.to_string().as_bytes(), seed)
}

/// Log lines one connection may cause per [`LOG_WINDOW`]; beyond them lines are counted, not
/// written, so no client can fill the server's log (one line per bad request from a client
/// that sends nothing else would be a flood).
pub const LOG_LINES_PER_WINDOW: u32 = 10;
/// The window [`LOG_LINES_PER_WINDOW`] applies to.
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The log lines a connection may still cause: [`LOG_LINES_PER_WINDOW`] per [`LOG_WINDOW`].
/// Cells, because handlers hold the session shared; it lives in its connection's task.
#[derive(Debug)]
pub struct LogBudget {
    window_start: Cell<Instant>,
    used: Cell<u32>,
    suppressed: Cell<u64>,
}

impl LogBudget {
    fn new() -> Self {
        Self {
            window_start: Cell::new(Instant::now()),
            used: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    /// True when one more line may be written for `peer`. A new window first reports how many
    /// lines the last one suppressed.
    pub fn allow(&self, peer: &SocketAddr) -> bool {
        let now = Instant::now();
        if now.duration_since(self.window_start.get()) >= LOG_WINDOW {
            self.report_suppressed(peer);
            self.window_start.set(now);
            self.used.set(0);
        }
        if self.used.get() < LOG_LINES_PER_WINDOW {
            self.used.set(self.used.get() + 1);
            return true;
        }
        self.suppressed.set(self.suppressed.get() + 1);
        false
    }

    /// Writes how many lines were suppressed since the last report, if any (at the end of a
    /// window, and when the connection ends).
    pub fn report_suppressed(&self, peer: &SocketAddr) {
        let suppressed = self.suppressed.replace(0);
        if suppressed > 0 {
            tracing::warn!(%peer, suppressed, "log lines of this connection suppressed (at most {LOG_LINES_PER_WINDOW} per {} s)", LOG_WINDOW.as_secs());
        }
    }
}

/// A log line caused by a connection's request (`session_log!(session, warn, fields…)`),
/// written within its session's [`LogBudget`].
#[macro_export]
macro_rules! session_log {
    ($session:expr, $level:ident, $($field:tt)+) => {
        if $session.log_budget.allow(&$session.peer) {
            tracing::$level!($($field)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_iggys_on_a_single_node_and_differ_between_cluster_nodes() {
        let peer: SocketAddr = "127.0.0.1:50000".parse().expect("address");
        assert_eq!(
            client_id(&peer, 0),
            xxhash_rust::xxh32::xxh32(b"127.0.0.1:50000", 0)
        );
        assert_ne!(client_id(&peer, 1), client_id(&peer, 2));
        assert_ne!(client_id(&peer, 1), client_id(&peer, 0));
    }
}
