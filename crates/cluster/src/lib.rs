//! galgo-cluster: replication between galgo nodes on raft-rs (docs/architecture.md,
//! "Cluster").
//!
//! Built so far: the metadata group. Every node runs one Raft group for cluster metadata on
//! its shard 0 ([`MetadataGroup`]); its committed entries are the metadata changes every node
//! applies, in one order, as a single node applies its metadata log. The replication transport
//! ([`transport`]) carries its messages between nodes, and [`ClusterView`] tells any shard who
//! leads and who was heard from.
#![warn(missing_docs)]

mod group;
mod group_log;
mod log_bridge;
mod proposal;
pub mod replica;
mod settings;
pub mod transport;
mod view;
pub mod wire;

pub use group::{Applier, Input, MetadataGroup, ProposeError};
pub use proposal::MetadataProposal;
pub use settings::{Ack, ClusterSettings, ELECTION_TICKS, HEARTBEAT_TICKS, Peer};
pub use view::ClusterView;
