//! galgo-cluster: replication between galgo nodes on raft-rs (docs/architecture.md,
//! "Cluster").
//!
//! Every node runs one Raft group for cluster metadata on its shard 0 ([`MetadataGroup`]); its
//! committed entries are the metadata changes every node applies, in one order, as a single
//! node applies its metadata log. Every partition has a Raft group of its own on the shard
//! that owns it ([`replica`]), whose log is the partition log. The replication transport
//! ([`transport`]) carries their messages between nodes, and forwarded sends;
//! [`ClusterView`] tells any shard who leads and who was heard from, and routes partition
//! groups' messages.
#![warn(missing_docs)]

pub mod disks;
mod group;
mod group_log;
mod log_bridge;
mod proposal;
pub mod replica;
mod send_reports;
mod settings;
pub mod transport;
mod view;
pub mod wire;

pub use group::{Applier, Input, MetadataGroup, ProposeError};
pub use proposal::MetadataProposal;
pub use settings::{Ack, ClusterSettings, ELECTION_TICKS, HEARTBEAT_TICKS, Peer};
pub use view::ClusterView;
