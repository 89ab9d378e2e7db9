//! galgo-metadata: the metadata state machine.
//!
//! Streams, topics and partitions (with the shard that owns each partition), consumer groups
//! (with their members and the partitions each owns), kept as a replica
//! on every shard. Shard 0 is the only writer: it *prepares* a [`Change`] against its replica
//! (validation, id assignment), persists it, and broadcasts it as an [`Event`]; every replica
//! then [`Metadata::apply`]s events in version order. `apply` is pure and deterministic, so
//! replaying the metadata log at start-up rebuilds the same state on every shard, partition
//! placement included.
//!
//! ```text
//!  shard 0:  prepare(request) ─▶ Change ─▶ log ─▶ apply ─▶ Event ─▶ every other shard: apply
//! ```
//!
//! No I/O happens here.
#![warn(missing_docs)]

mod change;
mod consumer_group;
mod error;
mod groups;
mod ids;
mod metadata;
mod slab;

pub use change::{Change, Event, TopicSettings};
pub use consumer_group::{ConsumerGroup, Member, Revocation};
pub use error::MetadataError;
pub use groups::GroupKey;
pub use ids::{GroupId, MemberId, PartitionId, PartitionKey, ShardId, StreamId, TopicId};
pub use metadata::{Metadata, Partition, Stream, Topic, TopicDefaults};

/// Largest number of partitions one CreateTopic or CreatePartitions may ask for.
pub const PARTITIONS_PER_REQUEST_MAX: u32 = 1000;
