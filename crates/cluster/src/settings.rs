//! What a node knows about its cluster: who it is, who the others are, where they listen.

use std::{net::SocketAddr, time::Duration};

/// One node of the cluster, this one included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its node id: its Raft id in every group (at least 1).
    pub id: u64,
    /// Where it accepts replication connections.
    pub replication_address: SocketAddr,
    /// The TCP (or TCP+TLS) address it advertises to clients.
    pub tcp: Option<SocketAddr>,
    /// The WebSocket (or WSS) address it advertises to clients.
    pub websocket: Option<SocketAddr>,
}

/// When a send is acknowledged (docs/reliability.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Once a majority of the partition's replicas hold the batch.
    Majority,
    /// Once the partition's leader holds it.
    Leader,
}

/// A node's view of its cluster, from `[cluster]`.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    /// The cluster's name, checked in every replication handshake.
    pub cluster_id: String,
    /// This node's id.
    pub node_id: u64,
    /// Where this node accepts replication connections.
    pub replication_address: SocketAddr,
    /// When sends are acknowledged.
    pub ack: Ack,
    /// The Raft tick.
    pub tick: Duration,
    /// How long a node may stay unheard before the members that joined consumer groups
    /// through it leave them (their partitions go to members that can consume them).
    pub member_timeout: Duration,
    /// Applied entries after which the metadata group's log is compacted into a snapshot.
    pub metadata_snapshot_entries: u64,
    /// Every node, this one included, by id.
    pub peers: Vec<Peer>,
}

/// Heartbeats every this many ticks.
pub const HEARTBEAT_TICKS: usize = 2;
/// An election starts after a random 1×–2× this many ticks without a leader.
pub const ELECTION_TICKS: usize = 10;
/// The fewest applied metadata entries between two snapshots: fewer would rewrite the log for
/// every few changes.
pub const METADATA_SNAPSHOT_ENTRIES_MIN: u64 = 16;

impl ClusterSettings {
    /// Checks the roster: ids at least 1 and distinct, this node among them, at most one
    /// replication address per node.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster_id.is_empty() || self.cluster_id.len() > 255 {
            return Err("cluster.id must be 1..=255 bytes".into());
        }
        if self.tick.is_zero() {
            return Err("cluster.tick_ms must be positive".into());
        }
        if self.member_timeout < self.election_timeout() {
            return Err(format!(
                "cluster.member_timeout_ms must be at least the longest election timeout ({} ms)",
                self.election_timeout().as_millis()
            ));
        }
        if self.metadata_snapshot_entries < METADATA_SNAPSHOT_ENTRIES_MIN {
            return Err(format!(
                "cluster.metadata_snapshot_entries must be at least {METADATA_SNAPSHOT_ENTRIES_MIN}"
            ));
        }
        let mut ids: Vec<u64> = self.peers.iter().map(|peer| peer.id).collect();
        ids.sort_unstable();
        if ids.first() == Some(&0) {
            return Err("cluster.peers: node ids start at 1".into());
        }
        if ids.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err("cluster.peers: a node id appears twice".into());
        }
        if !ids.contains(&self.node_id) {
            return Err(format!(
                "cluster.node_id {} is not one of cluster.peers",
                self.node_id
            ));
        }
        let mut addresses: Vec<SocketAddr> = self
            .peers
            .iter()
            .map(|peer| peer.replication_address)
            .collect();
        addresses.sort_unstable();
        if addresses.windows(2).any(|pair| pair[0] == pair[1]) {
            return Err("cluster.peers: two nodes share a replication address".into());
        }
        Ok(())
    }

    /// The other nodes.
    pub fn others(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(|peer| peer.id != self.node_id)
    }

    /// A node by id.
    pub fn peer(&self, id: u64) -> Option<&Peer> {
        self.peers.iter().find(|peer| peer.id == id)
    }

    /// Every node id, ascending.
    pub fn voters(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.peers.iter().map(|peer| peer.id).collect();
        ids.sort_unstable();
        ids
    }

    /// The replicas of partition group `group` with `factor` of them (0, or more than the
    /// nodes: every node): consecutive node ids from a start the group id picks, so that
    /// groups spread evenly over the nodes; the first is the preferred leader. Every node
    /// derives the same set from what the metadata entry replicated (the partition's key and
    /// creation time make the group id, the topic holds the factor), and the roster is fixed
    /// (docs/architecture.md, "Partition groups").
    pub fn replicas(&self, group: u64, factor: u8) -> Vec<u64> {
        let voters = self.voters();
        let count = voters.len();
        if count == 0 {
            return voters;
        }
        let factor = match usize::from(factor) {
            0 => count,
            factor => factor.min(count),
        };
        let start = (group % count as u64) as usize;
        (0..factor).map(|i| voters[(start + i) % count]).collect()
    }

    /// Whether `node` is one of [`ClusterSettings::replicas`]`(group, factor)`, found without
    /// building the set (what every send and poll through a node asks).
    pub fn holds(&self, group: u64, factor: u8, node: u64) -> bool {
        let count = self.peers.len();
        if count == 0 || self.peer(node).is_none() {
            return false;
        }
        let factor = match usize::from(factor) {
            0 => count,
            factor => factor.min(count),
        };
        let rank = self.peers.iter().filter(|peer| peer.id < node).count();
        let start = (group % count as u64) as usize;
        (rank + count - start) % count < factor
    }

    /// The replication factor of a topic created with `asked` (0: not set): min(3, nodes).
    /// More than the nodes is an error for the caller to report.
    pub fn default_factor(&self, asked: u8) -> u8 {
        match asked {
            0 => u8::try_from(self.peers.len().min(3)).unwrap_or(3),
            asked => asked,
        }
    }

    /// How long a follower waits for a leader before it campaigns, at most.
    pub fn election_timeout(&self) -> Duration {
        self.tick * (2 * ELECTION_TICKS) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(node_id: u64, ids: &[u64]) -> ClusterSettings {
        ClusterSettings {
            cluster_id: "test".into(),
            node_id,
            replication_address: "127.0.0.1:1".parse().unwrap(),
            ack: Ack::Majority,
            tick: Duration::from_millis(100),
            member_timeout: Duration::from_secs(30),
            metadata_snapshot_entries: 10_000,
            peers: ids
                .iter()
                .map(|&id| Peer {
                    id,
                    replication_address: SocketAddr::from(([127, 0, 0, 1], 9000 + id as u16)),
                    tcp: None,
                    websocket: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_roster_must_name_this_node_once_and_no_id_zero() {
        assert!(settings(1, &[1, 2, 3]).validate().is_ok());
        assert!(settings(4, &[1, 2, 3]).validate().is_err());
        assert!(settings(1, &[1, 2, 2]).validate().is_err());
        assert!(settings(1, &[0, 1]).validate().is_err());
        let mut shared = settings(1, &[1, 2]);
        shared.peers[1].replication_address = shared.peers[0].replication_address;
        assert!(shared.validate().is_err());
    }

    #[test]
    fn the_member_timeout_outlasts_an_election() {
        let mut short = settings(1, &[1, 2, 3]);
        short.member_timeout = short.election_timeout() - Duration::from_millis(1);
        assert!(short.validate().is_err());
        short.member_timeout = short.election_timeout();
        assert!(short.validate().is_ok());
    }

    #[test]
    fn replica_sets_spread_over_the_nodes_and_start_at_the_group() {
        let five = settings(1, &[5, 1, 4, 2, 3]);
        assert_eq!(five.replicas(7, 3), [3, 4, 5]);
        assert_eq!(five.replicas(9, 2), [5, 1]);
        assert_eq!(five.replicas(10, 0), [1, 2, 3, 4, 5]);
        assert_eq!(five.replicas(10, 9), [1, 2, 3, 4, 5]);
        // Over many groups each node holds about as many replicas, and leads as many first.
        let (mut held, mut first) = ([0_u32; 6], [0_u32; 6]);
        for group in 0..1_000_u64 {
            let replicas = five.replicas(group.wrapping_mul(0x9e37_79b9_7f4a_7c15), 3);
            first[replicas[0] as usize] += 1;
            for node in replicas {
                held[node as usize] += 1;
            }
        }
        assert!(
            held[1..].iter().all(|&n| (540..=660).contains(&n)),
            "{held:?}"
        );
        assert!(
            first[1..].iter().all(|&n| (160..=240).contains(&n)),
            "{first:?}"
        );
        for group in 0..20 {
            for factor in 0..7 {
                let replicas = five.replicas(group, factor);
                for node in 0..7 {
                    assert_eq!(
                        five.holds(group, factor, node),
                        replicas.contains(&node),
                        "group {group} factor {factor} node {node}"
                    );
                }
            }
        }
        assert_eq!(five.default_factor(0), 3);
        assert_eq!(settings(1, &[1, 2]).default_factor(0), 2);
        assert_eq!(five.default_factor(4), 4);
    }
}
