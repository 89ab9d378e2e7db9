//! Id newtypes with explicit widths.

use std::fmt;

use rkyv::{Archive, Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
        )]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// A stream's id: its slab key, 0-based.
    StreamId(u32)
);
id_type!(
    /// A topic's id within its stream: its slab key, 0-based.
    TopicId(u32)
);
id_type!(
    /// A partition's id within its topic: 0..n-1.
    PartitionId(u32)
);
id_type!(
    /// A user's id: its slab key, 0-based; the root user is 0.
    UserId(u32)
);
id_type!(
    /// A shard: one thread, one io_uring ring, one inbox.
    ShardId(u16)
);
id_type!(
    /// A consumer group's id within its topic: its slab key, 0-based.
    GroupId(u32)
);
id_type!(
    /// A member's id within its group: 1 + the highest existing one, 0 for the first.
    MemberId(u32)
);
id_type!(
    /// A client connection's id, unique among the connections of one server run.
    ClientId(u32)
);

/// A topic by its ids: what a request's stream and topic identifiers resolve to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicKey {
    /// The stream.
    pub stream: StreamId,
    /// The topic within it.
    pub topic: TopicId,
}

impl TopicKey {
    /// The key of partition `partition` of this topic.
    pub fn partition(self, partition: u32) -> PartitionKey {
        PartitionKey {
            stream: self.stream,
            topic: self.topic,
            partition: PartitionId(partition),
        }
    }
}

/// The full address of a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// The stream.
    pub stream: StreamId,
    /// The topic within the stream.
    pub topic: TopicId,
    /// The partition within the topic.
    pub partition: PartitionId,
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.stream, self.topic, self.partition)
    }
}
