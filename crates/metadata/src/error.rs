//! Why a metadata change or lookup was refused.

use thiserror::Error;

/// A refused metadata change or a failed lookup. The server maps each to a protocol code.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// No stream has that id or name.
    #[error("stream not found")]
    StreamNotFound,
    /// Another stream already has that name.
    #[error("stream name already exists")]
    StreamNameExists,
    /// No topic has that id or name in the stream.
    #[error("topic not found")]
    TopicNotFound,
    /// Another topic of the stream already has that name.
    #[error("topic name already exists")]
    TopicNameExists,
    /// A create asked for more than `PARTITIONS_PER_REQUEST_MAX` partitions, or for 0 to add.
    #[error("too many partitions")]
    TooManyPartitions,
    /// A delete asked for more partitions than the topic has.
    #[error("invalid partitions count")]
    InvalidPartitionsCount,
    /// No partition has that id in the topic.
    #[error("partition not found")]
    PartitionNotFound,
    /// A custom topic size below the segment size.
    #[error("invalid topic size")]
    InvalidTopicSize,
    /// No user has that id or name.
    #[error("user not found")]
    UserNotFound,
    /// Another user already has that name.
    #[error("username already exists")]
    UserNameExists,
    /// The root user cannot be deleted.
    #[error("the root user cannot be deleted")]
    CannotDeleteRoot,
    /// The root user's permissions cannot be changed.
    #[error("the root user's permissions cannot be changed")]
    CannotChangeRootPermissions,
    /// The root user cannot be deactivated (nobody could administer the server).
    #[error("the root user cannot be deactivated")]
    RootMustStayActive,
    /// The user already has a token of that name.
    #[error("personal access token name already exists")]
    TokenNameExists,
    /// The user has as many tokens as allowed.
    #[error("personal access tokens limit reached")]
    TokensLimitReached,
    /// The user has no token of that name.
    #[error("personal access token not found")]
    TokenNotFound,
    /// The user may not do what it asked.
    #[error("unauthorized")]
    Unauthorized,
    /// No consumer group has that id or name in the topic.
    #[error("consumer group not found")]
    GroupNotFound,
    /// Another group of the topic already has that name.
    #[error("consumer group name already exists")]
    GroupNameExists,
    /// The client is not a member of the group.
    #[error("not a member of the consumer group")]
    NotGroupMember,
    /// A metadata-log record that does not decode.
    #[error("corrupt metadata record: {0}")]
    CorruptRecord(String),
    /// A metadata log in a format this build does not read (written by an earlier galgo).
    /// Replaying it would misread its records, so the server refuses to start instead.
    #[error(
        "the metadata log is in format {found}, written by an earlier galgo; this galgo reads \
         format {expected} only and does not convert it (see \"Upgrading\" in \
         docs/operations.md)"
    )]
    UnsupportedLogFormat {
        /// The log's format: 1 for a log that names none (galgo before log formats).
        found: u16,
        /// The format this build reads and writes, [`crate::LOG_FORMAT_VERSION`].
        expected: u16,
    },
    /// Bytes that are not a metadata snapshot, or one whose content does not hold together.
    #[error("corrupt metadata snapshot: {0}")]
    CorruptSnapshot(String),
    /// A metadata snapshot in a format this build does not read (written by another galgo).
    #[error("the metadata snapshot is in format {found}; this galgo reads format {expected} only")]
    UnsupportedSnapshotFormat {
        /// The snapshot's format.
        found: u16,
        /// The format this build reads and writes, [`crate::SNAPSHOT_FORMAT_VERSION`].
        expected: u16,
    },
}
