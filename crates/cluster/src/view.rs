//! What every shard may read about the cluster without a call: the metadata group's leader as
//! this node knows it, and when each peer was last heard from. Written by shard 0's driver and
//! replication readers, read by GetClusterMetadata on any shard.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU16, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use crate::{replica::PartitionRouter, settings::ClusterSettings};

/// The cluster as this node sees it now.
#[derive(Debug)]
pub struct ClusterView {
    /// The settings the node started with.
    pub settings: ClusterSettings,
    started: Instant,
    /// The metadata group's leader; 0 while none is known.
    leader: AtomicU64,
    /// The metadata group's term.
    term: AtomicU64,
    /// Per peer (in `settings.peers` order): ms after `started` it was last heard, plus one
    /// (0: never).
    heard: Vec<AtomicU64>,
    /// Per peer: the ports of its TCP and WebSocket client listeners as its handshake said
    /// (0: not known), this node's own included once bound.
    client_ports: Vec<[AtomicU16; 2]>,
    /// This node's partition groups and the way to their peers.
    pub partitions: PartitionRouter,
}

impl ClusterView {
    /// A view of a cluster nobody has been heard from yet.
    pub fn new(settings: ClusterSettings) -> Self {
        let heard = settings.peers.iter().map(|_| AtomicU64::new(0)).collect();
        let client_ports = settings
            .peers
            .iter()
            .map(|_| [AtomicU16::new(0), AtomicU16::new(0)])
            .collect();
        Self {
            settings,
            started: Instant::now(),
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            heard,
            client_ports,
            partitions: PartitionRouter::default(),
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.settings.node_id
    }

    /// The metadata group's leader, if one is known.
    pub fn leader(&self) -> Option<u64> {
        match self.leader.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// The metadata group's current term.
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }

    pub(crate) fn set_leader(&self, leader: u64, term: u64) {
        self.leader.store(leader, Ordering::Relaxed);
        self.term.store(term, Ordering::Relaxed);
    }

    pub(crate) fn heard_from(&self, node: u64) {
        if let Some(index) = self.index_of(node) {
            self.heard[index].store(self.now_ms(), Ordering::Relaxed);
        }
    }

    /// Ms since the view was made, plus one (0 stands for never in `heard`).
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    fn index_of(&self, node: u64) -> Option<usize> {
        self.settings.peers.iter().position(|peer| peer.id == node)
    }

    /// Records the ports of `node`'s TCP and WebSocket client listeners (0: none); the server
    /// calls it for this node once its listeners are bound, a peer's handshake for the peer.
    pub fn set_client_ports(&self, node: u64, tcp: u16, websocket: u16) {
        if let Some(index) = self.index_of(node) {
            self.client_ports[index][0].store(tcp, Ordering::Relaxed);
            self.client_ports[index][1].store(websocket, Ordering::Relaxed);
        }
    }

    /// The ports of `node`'s client listeners as last recorded (0: not known).
    pub fn client_ports(&self, node: u64) -> (u16, u16) {
        self.index_of(node).map_or((0, 0), |index| {
            let [tcp, websocket] = &self.client_ports[index];
            (
                tcp.load(Ordering::Relaxed),
                websocket.load(Ordering::Relaxed),
            )
        })
    }

    /// The TCP and WebSocket addresses `node` gives clients: the roster's, or else the port
    /// its listener reported at the IP of its replication address.
    pub fn client_addresses(&self, node: u64) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let Some(peer) = self.settings.peer(node) else {
            return (None, None);
        };
        let (tcp_port, websocket_port) = self.client_ports(node);
        let learned =
            |port: u16| (port != 0).then(|| SocketAddr::new(peer.replication_address.ip(), port));
        (
            peer.tcp.or_else(|| learned(tcp_port)),
            peer.websocket.or_else(|| learned(websocket_port)),
        )
    }

    /// Whether `node` is reachable: this node, or a peer heard within an election timeout.
    pub fn is_healthy(&self, node: u64) -> bool {
        if node == self.settings.node_id {
            return true;
        }
        self.index_of(node).is_some_and(|index| {
            self.heard[index].load(Ordering::Relaxed) != 0
                && self.silent_for(node) <= self.settings.election_timeout()
        })
    }

    /// How long this node has not heard from peer `node`: since it last did, or since this
    /// view was made if it never did. Zero for this node and for a node not in the roster.
    pub fn silent_for(&self, node: u64) -> Duration {
        if node == self.settings.node_id {
            return Duration::ZERO;
        }
        self.index_of(node).map_or(Duration::ZERO, |index| {
            let at = self.heard[index].load(Ordering::Relaxed).max(1);
            Duration::from_millis(self.now_ms().saturating_sub(at))
        })
    }
}
