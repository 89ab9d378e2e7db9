//! Every error a command can end in, mapped to the protocol's numeric code in one place.

use galgo_metadata::MetadataError;
use galgo_protocol::ErrorCode;
use galgo_shards::CallError;
use galgo_storage::StorageError;
use thiserror::Error;

/// Why a command failed.
#[derive(Debug, Error)]
pub enum CommandError {
    /// A protocol-level refusal with its code (bad input, missing login, not found, …).
    #[error("{0}")]
    Protocol(ErrorCode),
    /// Metadata refused the change or the lookup failed.
    #[error("{0}")]
    Metadata(#[from] MetadataError),
    /// The disk failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// Another shard could not be reached (the server is stopping).
    #[error("{0}")]
    Call(#[from] CallError),
    /// The cluster did not take a metadata change.
    #[error("cluster: {0}")]
    Cluster(galgo_cluster::ProposeError),
}

impl From<ErrorCode> for CommandError {
    fn from(code: ErrorCode) -> Self {
        Self::Protocol(code)
    }
}

impl CommandError {
    /// The status code the client receives.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Protocol(code) => *code,
            Self::Metadata(error) => metadata_code(error),
            Self::Storage(_) => ErrorCode::IoError,
            Self::Call(CallError::ShardStopped(_)) => ErrorCode::ShardNotFound,
            Self::Cluster(galgo_cluster::ProposeError::Stopped) => ErrorCode::ShardNotFound,
            // No quorum, or changes from other nodes kept coming first: try again later.
            Self::Cluster(_) => ErrorCode::TaskTimeout,
        }
    }

    /// True for errors an operator should see (the disk, the engine), false for a client's
    /// own mistakes, which are logged at debug level only.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, Self::Storage(_) | Self::Call(_) | Self::Cluster(_))
    }
}

fn metadata_code(error: &MetadataError) -> ErrorCode {
    match error {
        MetadataError::StreamNotFound => ErrorCode::StreamIdNotFound,
        MetadataError::StreamNameExists => ErrorCode::StreamNameAlreadyExists,
        MetadataError::TopicNotFound => ErrorCode::TopicIdNotFound,
        MetadataError::TopicNameExists => ErrorCode::TopicNameAlreadyExists,
        MetadataError::TooManyPartitions => ErrorCode::TooManyPartitions,
        MetadataError::InvalidPartitionsCount => ErrorCode::InvalidPartitionsCount,
        MetadataError::PartitionNotFound => ErrorCode::PartitionNotFound,
        MetadataError::InvalidTopicSize => ErrorCode::InvalidTopicSize,
        MetadataError::UserNotFound => ErrorCode::ResourceNotFound,
        MetadataError::UserNameExists => ErrorCode::UserAlreadyExists,
        MetadataError::CannotDeleteRoot => ErrorCode::CannotDeleteUser,
        MetadataError::CannotChangeRootPermissions => ErrorCode::CannotChangePermissions,
        MetadataError::RootMustStayActive => ErrorCode::InvalidUserStatus,
        MetadataError::TokenNameExists => ErrorCode::PersonalAccessTokenAlreadyExists,
        MetadataError::TokensLimitReached => ErrorCode::PersonalAccessTokensLimitReached,
        MetadataError::TokenNotFound => ErrorCode::ResourceNotFound,
        MetadataError::Unauthorized => ErrorCode::Unauthorized,
        MetadataError::GroupNotFound => ErrorCode::ConsumerGroupIdNotFound,
        MetadataError::GroupNameExists => ErrorCode::ConsumerGroupNameAlreadyExists,
        MetadataError::NotGroupMember => ErrorCode::ConsumerGroupMemberNotFound,
        MetadataError::CorruptRecord(_)
        | MetadataError::UnsupportedLogFormat { .. }
        | MetadataError::CorruptSnapshot(_)
        | MetadataError::UnsupportedSnapshotFormat { .. } => ErrorCode::Error,
    }
}
