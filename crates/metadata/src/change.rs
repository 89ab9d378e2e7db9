//! Metadata changes: what shard 0 persists in the metadata log and broadcasts to every shard.

use rkyv::{Archive, Deserialize, Serialize, rancor, util::AlignedVec};

use crate::{ClientId, GroupKey, MemberId, MetadataError, PartitionId, StreamId, TopicId, UserId};

/// A topic's settings, already resolved against the server's defaults.
#[derive(Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicSettings {
    /// Compression code (1 = none, 2 = gzip); stored, not applied.
    pub compression: u8,
    /// Message expiry in µs; `u64::MAX` = never.
    pub message_expiry_us: u64,
    /// Topic size limit in bytes; `u64::MAX` = unlimited.
    pub max_topic_size_bytes: u64,
    /// Replication factor, at least 1.
    pub replication_factor: u8,
}

/// One metadata change, by area. Ids in it were assigned by shard 0 against the state it
/// applies to. Each area is applied by its own function, and `prepare_*` return the area's
/// type (or, where the caller reads the new ids back, the creation itself), so nobody matches
/// a change of one area against the variants of another.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Streams.
    Stream(StreamChange),
    /// Topics (their partitions are created and removed with them).
    Topic(TopicChange),
    /// Partitions added to or removed from an existing topic.
    Partitions(PartitionsChange),
    /// Users. Secrets arrive hashed.
    User(UserChange),
    /// Personal access tokens. Secrets arrive hashed.
    Token(TokenChange),
    /// Consumer groups themselves, which persist.
    Group(GroupChange),
    /// Consumer-group membership: broadcast to every shard but never written to the metadata
    /// log, because the clients it names do not survive a restart.
    Membership(MembershipChange),
}

/// A change to the streams.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum StreamChange {
    /// A stream was created.
    Create(NewStream),
    /// A stream was renamed.
    Update {
        /// Its id.
        id: StreamId,
        /// The new name.
        name: String,
    },
    /// A stream and everything in it was deleted.
    Delete {
        /// Its id.
        id: StreamId,
    },
}

/// A stream was created.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewStream {
    /// Its id.
    pub id: StreamId,
    /// Its name.
    pub name: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
}

/// A change to the topics of a stream.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TopicChange {
    /// A topic was created with its partitions.
    Create(NewTopic),
    /// A topic's name or settings changed.
    Update {
        /// The stream.
        stream_id: StreamId,
        /// The topic.
        id: TopicId,
        /// The new name.
        name: String,
        /// The new settings.
        settings: TopicSettings,
    },
    /// A topic and its partitions were deleted.
    Delete {
        /// The stream.
        stream_id: StreamId,
        /// The topic.
        id: TopicId,
    },
}

/// A topic was created with `partitions_count` partitions.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewTopic {
    /// The stream.
    pub stream_id: StreamId,
    /// The new topic's id.
    pub id: TopicId,
    /// Its name.
    pub name: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    /// Partitions to create, numbered 0..n-1.
    pub partitions_count: u32,
    /// Its settings.
    pub settings: TopicSettings,
}

/// A change to the partitions of an existing topic.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum PartitionsChange {
    /// Partitions were appended to a topic.
    Create {
        /// The stream.
        stream_id: StreamId,
        /// The topic.
        topic_id: TopicId,
        /// How many.
        count: u32,
        /// Creation time, µs since the epoch.
        created_at_us: u64,
    },
    /// The highest-numbered partitions of a topic were removed.
    Delete {
        /// The stream.
        stream_id: StreamId,
        /// The topic.
        topic_id: TopicId,
        /// How many.
        count: u32,
    },
}

/// A change to the users.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum UserChange {
    /// A user was created.
    Create(NewUser),
    /// A user was renamed or (de)activated.
    Update {
        /// Its id.
        id: UserId,
        /// The new username, if it changed.
        username: Option<String>,
        /// The new status, if it changed.
        active: Option<bool>,
    },
    /// A user's permissions were replaced.
    UpdatePermissions {
        /// Its id.
        id: UserId,
        /// The new permissions in wire layout, `None` = none.
        permissions: Option<Vec<u8>>,
    },
    /// A user's password changed.
    ChangePassword {
        /// Its id.
        id: UserId,
        /// Argon2 PHC string of the new password.
        password_hash: String,
    },
    /// A user and its tokens were deleted; its sessions end.
    Delete {
        /// Its id.
        id: UserId,
    },
}

/// A user was created.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    /// Its id.
    pub id: UserId,
    /// Its unique username.
    pub username: String,
    /// Argon2 PHC string of its password.
    pub password_hash: String,
    /// Whether it may log in.
    pub active: bool,
    /// Its permissions in wire layout (PROTOCOL.md §4.7), `None` = none.
    pub permissions: Option<Vec<u8>>,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
}

/// A change to the personal access tokens.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum TokenChange {
    /// A personal access token was created.
    Create {
        /// Its owner.
        user_id: UserId,
        /// Its name, unique per owner.
        name: String,
        /// Digest of the raw token.
        token_hash: String,
        /// Expiry, µs since the epoch; `None` = never.
        expiry_at_us: Option<u64>,
    },
    /// Personal access tokens were deleted.
    Delete(DeleteTokens),
}

/// Personal access tokens were deleted: one by its owner, or every expired one by the cleaner.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct DeleteTokens {
    /// (owner, name) of each.
    pub tokens: Vec<(UserId, String)>,
}

/// A change to the consumer groups of a topic.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum GroupChange {
    /// A consumer group was created.
    Create(NewGroup),
    /// A consumer group was deleted.
    Delete {
        /// The group.
        group: GroupKey,
    },
}

/// A consumer group was created.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NewGroup {
    /// The new group's address (its id assigned by shard 0).
    pub group: GroupKey,
    /// Its name.
    pub name: String,
}

/// A change to the members of a consumer group. Never persisted.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// A client joined a group (cooperative rebalance).
    Join {
        /// The group.
        group: GroupKey,
        /// The new member's id.
        member_id: MemberId,
        /// The client that joined.
        client_id: ClientId,
        /// The cluster node it is connected to (0 on a single node).
        node: u64,
        /// When, µs since the epoch (revocations time out from here).
        at_us: u64,
    },
    /// A cluster node started: the members of its clients that joined before the start are
    /// gone (full rebalance of each group that had one).
    NodeStarted {
        /// The node.
        node: u64,
        /// When it started, µs since the epoch, by its clock: members it took in since stay.
        started_us: u64,
    },
    /// A member left or its client disconnected (full rebalance).
    Leave {
        /// The group.
        group: GroupKey,
        /// The member.
        member_id: MemberId,
    },
    /// Pending revocations completed: the partitions move to their new owners.
    CompleteRevocations {
        /// The group.
        group: GroupKey,
        /// The partitions that move.
        partitions: Vec<PartitionId>,
    },
    /// The metadata leader has not heard from a cluster node for the member timeout: the
    /// members of its clients that joined before `lost_us` are gone (full rebalance of each
    /// group that had one). Last, so that logs written before it keep their meaning.
    NodeLost {
        /// The node.
        node: u64,
        /// When the leader took it as lost, µs since the epoch, by the leader's clock.
        lost_us: u64,
    },
}

/// `From` into [`Change`] for each type a `prepare_*` returns, so the commit path takes any of
/// them.
macro_rules! into_change {
    ($($from:ty => |$value:ident| $change:expr;)*) => {
        $(impl From<$from> for Change {
            fn from($value: $from) -> Change {
                $change
            }
        })*
    };
}

into_change! {
    StreamChange => |change| Change::Stream(change);
    NewStream => |stream| Change::Stream(StreamChange::Create(stream));
    TopicChange => |change| Change::Topic(change);
    NewTopic => |topic| Change::Topic(TopicChange::Create(topic));
    PartitionsChange => |change| Change::Partitions(change);
    UserChange => |change| Change::User(change);
    NewUser => |user| Change::User(UserChange::Create(user));
    TokenChange => |change| Change::Token(change);
    DeleteTokens => |tokens| Change::Token(TokenChange::Delete(tokens));
    GroupChange => |change| Change::Group(change);
    NewGroup => |group| Change::Group(GroupChange::Create(group));
    MembershipChange => |change| Change::Membership(change);
}

impl Change {
    /// The user whose sessions this change ends: a deleted or deactivated user.
    pub fn ends_sessions_of(&self) -> Option<UserId> {
        match self {
            Change::User(
                UserChange::Delete { id }
                | UserChange::Update {
                    id,
                    active: Some(false),
                    ..
                },
            ) => Some(*id),
            _ => None,
        }
    }

    /// False for changes that are broadcast but not written to the metadata log: group
    /// membership, which names connections that a restart ends anyway.
    pub fn is_durable(&self) -> bool {
        !matches!(self, Change::Membership(_))
    }
}

impl UserChange {
    /// The user the change is about.
    pub fn user_id(&self) -> UserId {
        match self {
            UserChange::Create(NewUser { id, .. })
            | UserChange::Update { id, .. }
            | UserChange::UpdatePermissions { id, .. }
            | UserChange::ChangePassword { id, .. }
            | UserChange::Delete { id } => *id,
        }
    }
}

/// A change with its place in the global order. Versions start at 1 and have no gaps.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The position of this change in the metadata log.
    pub version: u64,
    /// The change.
    pub change: Change,
}

impl Event {
    /// Serialises the event as one metadata-log record.
    pub fn to_record(&self) -> Vec<u8> {
        rkyv::to_bytes::<rancor::Error>(self)
            .expect("serialising an event into memory cannot fail")
            .into_vec()
    }

    /// Reads an event back from a record, validating the archive.
    pub fn from_record(record: &[u8]) -> Result<Self, MetadataError> {
        // rkyv needs aligned input; records come from arbitrary buffer positions.
        let mut aligned = AlignedVec::<16>::with_capacity(record.len());
        aligned.extend_from_slice(record);
        rkyv::from_bytes::<Event, rancor::Error>(&aligned)
            .map_err(|error| MetadataError::CorruptRecord(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_rejected() {
        let event = Event {
            version: 7,
            change: Change::Topic(TopicChange::Create(NewTopic {
                stream_id: StreamId(1),
                id: TopicId(2),
                name: "orders".into(),
                created_at_us: 3,
                partitions_count: 4,
                settings: TopicSettings {
                    compression: 1,
                    message_expiry_us: u64::MAX,
                    max_topic_size_bytes: u64::MAX,
                    replication_factor: 1,
                },
            })),
        };
        let record = event.to_record();
        assert_eq!(Event::from_record(&record).expect("valid"), event);
        assert!(Event::from_record(&record[..record.len() / 2]).is_err());
    }
}
