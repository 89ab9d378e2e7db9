//! Metadata changes: what shard 0 persists in the metadata log and broadcasts to every shard.

use rkyv::{Archive, Deserialize, Serialize, rancor, util::AlignedVec};

use crate::MetadataError;

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

/// One metadata change. Ids in it were assigned by shard 0 against the state it applies to.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A stream was created.
    CreateStream {
        /// Its id.
        id: u32,
        /// Its name.
        name: String,
        /// Creation time, µs since the epoch.
        created_at_us: u64,
    },
    /// A stream was renamed.
    UpdateStream {
        /// Its id.
        id: u32,
        /// The new name.
        name: String,
    },
    /// A stream and everything in it was deleted.
    DeleteStream {
        /// Its id.
        id: u32,
    },
    /// A topic was created with `partitions_count` partitions.
    CreateTopic {
        /// The stream.
        stream_id: u32,
        /// The new topic's id.
        id: u32,
        /// Its name.
        name: String,
        /// Creation time, µs since the epoch.
        created_at_us: u64,
        /// Partitions to create, numbered 0..n-1.
        partitions_count: u32,
        /// Its settings.
        settings: TopicSettings,
    },
    /// A topic's name or settings changed.
    UpdateTopic {
        /// The stream.
        stream_id: u32,
        /// The topic.
        id: u32,
        /// The new name.
        name: String,
        /// The new settings.
        settings: TopicSettings,
    },
    /// A topic and its partitions were deleted.
    DeleteTopic {
        /// The stream.
        stream_id: u32,
        /// The topic.
        id: u32,
    },
    /// Partitions were appended to a topic.
    CreatePartitions {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// How many.
        count: u32,
        /// Creation time, µs since the epoch.
        created_at_us: u64,
    },
    /// The highest-numbered partitions of a topic were removed.
    DeletePartitions {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// How many.
        count: u32,
    },

    // Users and personal access tokens (issue 4, users half). Secrets arrive hashed.
    /// A user was created.
    CreateUser {
        /// Its id.
        id: u32,
        /// Its unique username.
        username: String,
        /// Argon2 PHC string of its password.
        password_hash: String,
        /// Whether it may log in.
        active: bool,
        /// Its permissions in wire layout (PROTOCOL.md §4.7), `None` = none.
        permissions: Option<Vec<u8>>,
        /// Creation time, µs since the epoch.
        created_at_us: u64,
    },
    /// A user was renamed or (de)activated.
    UpdateUser {
        /// Its id.
        id: u32,
        /// The new username, if it changed.
        username: Option<String>,
        /// The new status, if it changed.
        active: Option<bool>,
    },
    /// A user's permissions were replaced.
    UpdatePermissions {
        /// Its id.
        id: u32,
        /// The new permissions in wire layout, `None` = none.
        permissions: Option<Vec<u8>>,
    },
    /// A user's password changed.
    ChangePassword {
        /// Its id.
        id: u32,
        /// Argon2 PHC string of the new password.
        password_hash: String,
    },
    /// A user and its tokens were deleted; its sessions end.
    DeleteUser {
        /// Its id.
        id: u32,
    },
    /// A personal access token was created.
    CreatePersonalAccessToken {
        /// Its owner.
        user_id: u32,
        /// Its name, unique per owner.
        name: String,
        /// Digest of the raw token.
        token_hash: String,
        /// Expiry, µs since the epoch; `None` = never.
        expiry_at_us: Option<u64>,
    },
    /// Personal access tokens were deleted (one by its owner, or every expired one by the
    /// cleaner).
    DeletePersonalAccessTokens {
        /// (owner, name) of each.
        tokens: Vec<(u32, String)>,
    },
    // Consumer groups. The groups persist; membership (join, leave, revocations) is
    // broadcast to every shard but never written to the metadata log, because the clients it
    // names do not survive a restart.
    /// A consumer group was created.
    CreateConsumerGroup {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// The new group's id.
        id: u32,
        /// Its name.
        name: String,
    },
    /// A consumer group was deleted.
    DeleteConsumerGroup {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// The group.
        id: u32,
    },
    /// A client joined a group (cooperative rebalance). Not persisted.
    JoinConsumerGroup {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// The group.
        group_id: u32,
        /// The new member's id.
        member_id: u32,
        /// The client that joined.
        client_id: u32,
        /// When, µs since the epoch (revocations time out from here).
        at_us: u64,
    },
    /// A member left or its client disconnected (full rebalance). Not persisted.
    LeaveConsumerGroup {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// The group.
        group_id: u32,
        /// The member.
        member_id: u32,
    },
    /// Pending revocations completed: the partitions move to their new owners. Not persisted.
    CompleteRevocations {
        /// The stream.
        stream_id: u32,
        /// The topic.
        topic_id: u32,
        /// The group.
        group_id: u32,
        /// The partitions that move.
        partitions: Vec<u32>,
    },
}

impl Change {
    /// The user whose sessions this change ends: a deleted or deactivated user.
    pub fn ends_sessions_of(&self) -> Option<crate::UserId> {
        match self {
            Change::DeleteUser { id }
            | Change::UpdateUser {
                id,
                active: Some(false),
                ..
            } => Some(crate::UserId(*id)),
            _ => None,
        }
    }

    /// False for changes that are broadcast but not written to the metadata log: group
    /// membership, which names connections that a restart ends anyway.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            Self::JoinConsumerGroup { .. }
                | Self::LeaveConsumerGroup { .. }
                | Self::CompleteRevocations { .. }
        )
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
            change: Change::CreateTopic {
                stream_id: 1,
                id: 2,
                name: "orders".into(),
                created_at_us: 3,
                partitions_count: 4,
                settings: TopicSettings {
                    compression: 1,
                    message_expiry_us: u64::MAX,
                    max_topic_size_bytes: u64::MAX,
                    replication_factor: 1,
                },
            },
        };
        let record = event.to_record();
        assert_eq!(Event::from_record(&record).expect("valid"), event);
        assert!(Event::from_record(&record[..record.len() / 2]).is_err());
    }
}
