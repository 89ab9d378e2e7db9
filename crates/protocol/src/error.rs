//! The numeric error codes of the protocol (PROTOCOL.md §7).
//!
//! An error travels on the wire as the `status` of a response header with an empty payload, so
//! this enum is all an error ever is in galgo's codec: decoders return it directly, which keeps
//! reporting an error free of allocation.

/// Declares [`ErrorCode`] and its lookup tables from one list, so a code and its name can never
/// drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)+) => {
        /// A protocol error code, carried as a response `status` (PROTOCOL.md §7).
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name = $code,)+
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)+];

            /// The code as it travels on the wire.
            pub fn as_u32(self) -> u32 {
                self as u32
            }

            /// The code for a wire value, or `None` when the protocol does not define it.
            pub fn from_u32(code: u32) -> Option<ErrorCode> {
                match code {
                    $($code => Some(ErrorCode::$name),)+
                    _ => None,
                }
            }

            /// The name the protocol gives the code, e.g. `"StreamIdNotFound"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)+
                }
            }
        }
    };
}

error_codes! {
    /// Generic error; the SDK maps every unknown code to it.
    Error = 1,
    /// The server configuration is invalid.
    InvalidConfiguration = 2,
    /// A request could not be decoded: truncated, unknown discriminant, invalid UTF-8, unknown code.
    InvalidCommand = 3,
    /// A request decoded but failed a format check (numeric identifier length, empty name, …).
    InvalidFormat = 4,
    /// The server does not offer this feature.
    FeatureUnavailable = 5,
    /// An identifier in SendMessages is malformed.
    InvalidIdentifier = 6,
    /// Invalid version.
    InvalidVersion = 7,
    /// The connection is being closed by the server.
    Disconnected = 8,
    /// Client-side: the connection could not be established.
    CannotEstablishConnection = 9,
    /// A resource was not found (for example a personal access token).
    ResourceNotFound = 20,
    /// The client session went stale (no heartbeat).
    StaleClient = 30,
    /// Client-side TCP failure.
    TcpError = 31,
    /// The command needs a logged-in session.
    Unauthenticated = 40,
    /// The user lacks the permission for the command.
    Unauthorized = 41,
    /// Unknown user or wrong password.
    InvalidCredentials = 42,
    /// Username length out of 3..=50 bytes.
    InvalidUsername = 43,
    /// Password length out of 3..=100 bytes.
    InvalidPassword = 44,
    /// Unknown user status.
    InvalidUserStatus = 45,
    /// The username is taken.
    UserAlreadyExists = 46,
    /// The user is inactive.
    UserInactive = 47,
    /// The root user cannot be deleted.
    CannotDeleteUser = 48,
    /// The root user's permissions cannot be changed.
    CannotChangePermissions = 49,
    /// Token name length out of 3..=30 bytes.
    InvalidPersonalAccessTokenName = 50,
    /// The user already has a token with this name.
    PersonalAccessTokenAlreadyExists = 51,
    /// The user has as many tokens as allowed.
    PersonalAccessTokensLimitReached = 52,
    /// The token is invalid.
    InvalidPersonalAccessToken = 53,
    /// The token has expired.
    PersonalAccessTokenExpired = 54,
    /// No more users can be created.
    UsersLimitReached = 55,
    /// The expiry of a personal access token is not allowed (0.9 generation).
    InvalidPersonalAccessTokenExpiry = 56,
    /// 0.9: the request's outcome is not known yet; the client resends the same frame.
    TransientNotCommitted = 57,
    /// 0.9: the request was not admitted; the client resends it, possibly elsewhere.
    TransientNotAccepted = 58,
    /// 0.9: a retried request was applied, and its reply is no longer kept.
    RequestAlreadyApplied = 59,
    /// Client-side: not connected.
    NotConnected = 61,
    /// A size in bytes is invalid (payload too large for the codec).
    InvalidSizeBytes = 80,
    /// Invalid UTF-8.
    InvalidUtf8 = 81,
    /// Invalid number encoding.
    InvalidNumberEncoding = 82,
    /// The client session was not found.
    ClientNotFound = 100,
    /// Client id 0 is not a valid client id.
    InvalidClientId = 101,
    /// Client-side: the connection was closed.
    ConnectionClosed = 206,
    /// Client-side: the response was empty.
    EmptyResponse = 304,
    /// Client-side WebSocket error.
    WebSocketError = 400,
    /// Client-side WebSocket connection error.
    WebSocketConnectionError = 401,
    /// Client-side WebSocket close error.
    WebSocketCloseError = 402,
    /// Client-side WebSocket receive error.
    WebSocketReceiveError = 403,
    /// Client-side WebSocket send error.
    WebSocketSendError = 404,
    /// The streams directory could not be created.
    CannotCreateStreamsDirectory = 1000,
    /// A stream directory could not be created.
    CannotCreateStreamDirectory = 1001,
    /// No stream has this id.
    StreamIdNotFound = 1009,
    /// No stream has this name.
    StreamNameNotFound = 1010,
    /// A stream with this name exists.
    StreamNameAlreadyExists = 1012,
    /// The stream name is invalid.
    InvalidStreamName = 1013,
    /// The stream id is invalid.
    InvalidStreamId = 1014,
    /// The maximum topic size is smaller than a segment.
    InvalidTopicSize = 1019,
    /// 0.9: the server holds as many streams as it allows.
    TooManyStreams = 1020,
    /// The topic cannot be polled.
    CannotPollTopic = 2009,
    /// No topic has this id.
    TopicIdNotFound = 2010,
    /// No topic has this name.
    TopicNameNotFound = 2011,
    /// A topic with this name exists.
    TopicNameAlreadyExists = 2013,
    /// The topic name is invalid.
    InvalidTopicName = 2014,
    /// Partition count out of range.
    TooManyPartitions = 2015,
    /// The topic id is invalid.
    InvalidTopicId = 2016,
    /// The replication factor is invalid.
    InvalidReplicationFactor = 2018,
    /// The partitions count is invalid.
    InvalidPartitionsCount = 2019,
    /// 0.9: the server holds as many topics as it allows.
    TooManyTopics = 2021,
    /// A partition could not be created.
    CannotCreatePartition = 3000,
    /// No partition has this id.
    PartitionNotFound = 3007,
    /// The topic has no partitions.
    NoPartitions = 3008,
    /// The topic is full.
    TopicFull = 3009,
    /// No offset is stored for this consumer.
    ConsumerOffsetNotFound = 3021,
    /// The consumer could not be resolved to a partition.
    NotResolvedConsumer = 3022,
    /// The segment was not found.
    SegmentNotFound = 4000,
    /// A SendMessages batch has no messages.
    InvalidMessagesCount = 4009,
    /// A message's user headers exceed 100,000 bytes.
    TooBigUserHeaders = 4017,
    /// Invalid header key.
    InvalidHeaderKey = 4018,
    /// Invalid header value.
    InvalidHeaderValue = 4019,
    /// A message payload exceeds 64,000,000 bytes.
    TooBigMessagePayload = 4022,
    /// Too many messages.
    TooManyMessages = 4023,
    /// A message payload is empty.
    EmptyMessagePayload = 4024,
    /// A message payload length is invalid.
    InvalidMessagePayloadLength = 4025,
    /// A message checksum does not match.
    InvalidMessageChecksum = 4027,
    /// 0.9: a message's timestamp is too far from its batch's origin timestamp.
    InvalidMessageTimestampDelta = 4038,
    /// 0.9: a batch's checksum does not match its header and its messages' checksums.
    InvalidBatchChecksum = 4039,
    /// A SendMessages index entry has a non-zero offset.
    NonZeroOffset = 4031,
    /// A SendMessages index entry has a non-zero timestamp.
    NonZeroTimestamp = 4032,
    /// A SendMessages index entry does not bound a complete message.
    MissingIndex = 4033,
    /// The index block size is not a multiple of 16.
    InvalidIndexesByteSize = 4034,
    /// The index count does not match the message count.
    InvalidIndexesCount = 4035,
    /// The message sizes do not add up to the messages block.
    InvalidMessagesSize = 4036,
    /// A message is smaller than its 64-byte header.
    TooSmallMessage = 4037,
    /// Unknown user-header kind.
    InvalidHeaderKind = 4040,
    /// 0.9: an options block names a key the command does not take.
    UnsupportedOptionKey = 4041,
    /// 0.9: an option's value is of the wrong kind or out of range.
    InvalidOptionValue = 4042,
    /// 0.9: an options block breaks its limits (pairs, bytes, duplicate or non-string keys).
    OptionsBlockTooLarge = 4043,
    /// An offset is beyond the partition's current offset.
    InvalidOffset = 4100,
    /// A message's reserved field is not 0.
    InvalidReservedField = 4101,
    /// No consumer group has this id.
    ConsumerGroupIdNotFound = 5000,
    /// The consumer group id is invalid.
    InvalidConsumerGroupId = 5002,
    /// No consumer group has this name.
    ConsumerGroupNameNotFound = 5003,
    /// A consumer group with this name exists.
    ConsumerGroupNameAlreadyExists = 5004,
    /// The consumer group name is invalid.
    InvalidConsumerGroupName = 5005,
    /// The caller is not a member of the consumer group.
    ConsumerGroupMemberNotFound = 5006,
    /// 0.9: a group member polled or committed a partition it is not assigned.
    ConsumerGroupPartitionNotOwned = 5009,
    /// Client-side: the connection string is invalid.
    InvalidConnectionString = 8000,
    /// A file could not be read.
    CannotReadFile = 10002,
    /// A file could not be written.
    CannotWriteToFile = 10006,
    /// The shard was not found.
    ShardNotFound = 11000,
    /// A task timed out.
    TaskTimeout = 12001,
    /// An I/O error.
    IoError = 13000,
    /// 0.9: a session is already bound on this connection.
    AlreadyAuthenticated = 14000,
    /// 0.9: a session number of 0, or not the one this connection was given.
    InvalidSession = 14001,
    /// 0.9: the client's protocol version is outside what the server accepts.
    IncompatibleProtocolVersion = 14003,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u32())
    }
}

impl std::error::Error for ErrorCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_wire_value() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u32(code.as_u32()), Some(code));
        }
        // The 91 named codes of PROTOCOL.md §7 plus the five WebSocket codes 400..=404.
        assert_eq!(ErrorCode::ALL.len(), 111);
    }

    #[test]
    fn unknown_values_are_none() {
        for value in [0, 10, 39, 405, 999, 4001, 65_535, u32::MAX] {
            assert_eq!(ErrorCode::from_u32(value), None, "{value}");
        }
    }

    #[test]
    fn display_shows_name_and_code() {
        assert_eq!(
            ErrorCode::StreamIdNotFound.to_string(),
            "StreamIdNotFound (1009)"
        );
        assert_eq!(ErrorCode::InvalidCommand.as_u32(), 3);
        assert_eq!(
            ErrorCode::InvalidReservedField.name(),
            "InvalidReservedField"
        );
    }
}
