//! What every shard may read about the cluster without a call: the metadata group's leader as
//! this node knows it, and when each peer was last heard from. Written by shard 0's driver and
//! replication readers, read by GetClusterMetadata on any shard.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use crate::settings::ClusterSettings;

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
}

impl ClusterView {
    /// A view of a cluster nobody has been heard from yet.
    pub fn new(settings: ClusterSettings) -> Self {
        let heard = settings.peers.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            settings,
            started: Instant::now(),
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            heard,
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
        if let Some(index) = self.settings.peers.iter().position(|peer| peer.id == node) {
            let now = self.started.elapsed().as_millis() as u64 + 1;
            self.heard[index].store(now, Ordering::Relaxed);
        }
    }

    /// Whether `node` is reachable: this node, or a peer heard within an election timeout.
    pub fn is_healthy(&self, node: u64) -> bool {
        if node == self.settings.node_id {
            return true;
        }
        let Some(index) = self.settings.peers.iter().position(|peer| peer.id == node) else {
            return false;
        };
        match self.heard[index].load(Ordering::Relaxed) {
            0 => false,
            at => {
                let now = self.started.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(at) <= self.settings.election_timeout().as_millis() as u64
            }
        }
    }
}
