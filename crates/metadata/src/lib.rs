//! galgo-metadata: the metadata state machine.
//!
//! Streams, topics and partitions (with the shard that owns each partition), users with their
//! permissions and personal access tokens, consumer groups (with their members and the
//! partitions each owns), kept as a replica
//! on every shard. Shard 0 is the only writer: it *prepares* a [`Change`] against its replica
//! (validation, id assignment), persists it, and broadcasts it as an [`Event`]; every replica
//! then [`Metadata::apply`]s events in version order. `apply` is pure and deterministic, so
//! replaying the metadata log at start-up rebuilds the same state on every shard, partition
//! placement included. A [`Metadata::snapshot`] images the whole state at one version and
//! [`Metadata::from_snapshot`] rebuilds it, so a metadata log can be compacted up to a snapshot.
//!
//! ```text
//!  shard 0:  prepare(request) ─▶ Change ─▶ log ─▶ apply ─▶ Event ─▶ every other shard: apply
//! ```
//!
//! Permission checks live here too ([`authorize`] over the [`Need`] each command declares), so every
//! shard decides them against its own replica, with no hop. No I/O happens here, and no
//! secret: passwords and tokens arrive already hashed.
#![warn(missing_docs)]

mod authorization;
mod change;
mod consumer_group;
mod error;
mod ids;
mod log_format;
mod metadata;
mod slab;
mod snapshot;
#[cfg(test)]
mod test_support;
mod users;

pub use authorization::{Need, authorize};
pub use change::{
    Change, DeleteTokens, Event, GroupChange, MembershipChange, NewGroup, NewStream, NewTopic,
    NewUser, PartitionsChange, StreamChange, TokenChange, TopicChange, TopicSettings, UserChange,
};
pub use consumer_group::{ConsumerGroup, GroupKey, Member, Revocation};
pub use error::MetadataError;
pub use ids::{
    ClientId, GroupId, MemberId, PartitionId, PartitionKey, ShardId, StreamId, TopicId, TopicKey,
    UserId,
};
pub use log_format::{LOG_FORMAT_VERSION, format_record, read_log};
pub use metadata::{Metadata, Partition, Stream, Topic, TopicDefaults};
pub use snapshot::SNAPSHOT_FORMAT_VERSION;
pub use users::{PersonalAccessToken, ROOT_USER_ID, User};

/// Largest number of partitions one CreateTopic or CreatePartitions may ask for.
pub const PARTITIONS_PER_REQUEST_MAX: u32 = 1000;
