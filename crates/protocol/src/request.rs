//! A decoded request of any command: the server's entry point from a frame to a typed value.

use bytes::BytesMut;

use crate::code::CommandCode;
use crate::command::groups::*;
use crate::command::messages::*;
use crate::command::offsets::*;
use crate::command::streams::*;
use crate::command::system::*;
use crate::command::tokens::*;
use crate::command::topics::*;
use crate::command::users::*;
use crate::error::ErrorCode;

/// Declares [`Request`] with its decoder, encoder and code from one table. Unit variants are the
/// commands without payload; the others carry their request type of the same name.
macro_rules! requests {
    (
        units { $($unit:ident),+ $(,)? }
        payloads { $($name:ident),+ $(,)? }
        hot { $hot:ident }
    ) => {
        /// One decoded request, one variant per [`CommandCode`].
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Request {
            $($unit,)+
            $($name($name),)+
            $hot($hot),
        }

        impl Request {
            /// Decodes the payload of a frame with command `code`. An unknown code is
            /// 3 `InvalidCommand`. Only SendMessages keeps `payload` (it splits its messages
            /// off without copying); the others read it and drop it.
            pub fn decode(code: u32, payload: BytesMut) -> Result<Request, ErrorCode> {
                let code = CommandCode::from_u32(code).ok_or(ErrorCode::InvalidCommand)?;
                match code {
                    $(CommandCode::$unit => $unit::decode(&payload).map(|_| Request::$unit),)+
                    $(CommandCode::$name => $name::decode(&payload).map(Request::$name),)+
                    CommandCode::$hot => $hot::decode(payload).map(Request::$hot),
                }
            }

            /// The command code of the request.
            pub fn code(&self) -> CommandCode {
                match self {
                    $(Request::$unit => CommandCode::$unit,)+
                    $(Request::$name(_) => CommandCode::$name,)+
                    Request::$hot(_) => CommandCode::$hot,
                }
            }

            /// Appends the request's payload (without the frame header), as a client sends it.
            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    $(Request::$unit => $unit.encode(out),)+
                    $(Request::$name(request) => request.encode(out),)+
                    Request::$hot(request) => request.encode(out),
                }
            }
        }
    };
}

requests! {
    units {
        Ping, GetStats, GetMe, GetClients, GetClusterMetadata, GetUsers, LogoutUser,
        GetPersonalAccessTokens, GetStreams, GetShardStats,
    }
    payloads {
        GetSnapshotFile, GetClient,
        GetUser, CreateUser, DeleteUser, UpdateUser, UpdatePermissions, ChangePassword, LoginUser,
        CreatePersonalAccessToken, DeletePersonalAccessToken, LoginWithPersonalAccessToken,
        PollMessages, FlushUnsavedBuffer,
        GetConsumerOffset, StoreConsumerOffset, DeleteConsumerOffset,
        GetStream, CreateStream, DeleteStream, UpdateStream, PurgeStream,
        GetTopic, GetTopics, CreateTopic, DeleteTopic, UpdateTopic, PurgeTopic,
        CreatePartitions, DeletePartitions, DeleteSegments,
        GetConsumerGroup, GetConsumerGroups, CreateConsumerGroup, DeleteConsumerGroup,
        JoinConsumerGroup, LeaveConsumerGroup,
    }
    hot { SendMessages }
}
