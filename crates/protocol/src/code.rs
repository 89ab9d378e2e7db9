//! Command codes (PROTOCOL.md §3) and the one table of commands.
//!
//! [`for_each_command!`](crate::for_each_command) lists every command once: its name (the name of
//! its request type in `command/*.rs`) and its wire code. [`CommandCode`] here, [`Request`] with
//! its decoder and encoder, and the server's dispatch and authorization are all generated from
//! it, so adding a command is one line in this table, its request and response types in their
//! family's `command/*.rs`, and its handler in the server.
//!
//! [`Request`]: crate::Request

/// Calls the macro `$then` with the table of every command, in code order. Each line is
/// `Name = code`, with doc comments; `owned` marks the one command whose decoder takes the
/// payload buffer by value (SendMessages splits its messages off without copying).
#[macro_export]
macro_rules! for_each_command {
    ($then:path) => {
        $then! {
            /// Keep-alive; also refreshes the client's heartbeat.
            Ping = 1,
            /// Server statistics.
            GetStats = 10,
            /// Diagnostics snapshot (a ZIP archive).
            GetSnapshotFile = 11,
            /// Cluster name and nodes.
            GetClusterMetadata = 12,
            /// The calling connection's client record.
            GetMe = 20,
            /// One client record.
            GetClient = 21,
            /// Every client record.
            GetClients = 22,
            /// One user with permissions.
            GetUser = 31,
            /// Every user.
            GetUsers = 32,
            /// Creates a user.
            CreateUser = 33,
            /// Deletes a user.
            DeleteUser = 34,
            /// Renames a user or changes its status.
            UpdateUser = 35,
            /// Replaces a user's permissions.
            UpdatePermissions = 36,
            /// Changes a user's password.
            ChangePassword = 37,
            /// Logs in with username and password.
            LoginUser = 38,
            /// Logs the session's user out.
            LogoutUser = 39,
            /// The caller's personal access tokens.
            GetPersonalAccessTokens = 41,
            /// Creates a personal access token.
            CreatePersonalAccessToken = 42,
            /// Deletes a personal access token.
            DeletePersonalAccessToken = 43,
            /// Logs in with a personal access token.
            LoginWithPersonalAccessToken = 44,
            /// Reads messages from a partition.
            PollMessages = 100,
            /// Appends a batch of messages.
            SendMessages = 101 owned,
            /// Writes a partition's in-memory journal to disk.
            FlushUnsavedBuffer = 102,
            /// Reads a stored consumer offset.
            GetConsumerOffset = 120,
            /// Stores a consumer offset.
            StoreConsumerOffset = 121,
            /// Deletes a stored consumer offset.
            DeleteConsumerOffset = 122,
            /// One stream with its topics.
            GetStream = 200,
            /// Every stream.
            GetStreams = 201,
            /// Creates a stream.
            CreateStream = 202,
            /// Deletes a stream.
            DeleteStream = 203,
            /// Renames a stream.
            UpdateStream = 204,
            /// Deletes every message of a stream.
            PurgeStream = 205,
            /// One topic with its partitions.
            GetTopic = 300,
            /// Every topic of a stream.
            GetTopics = 301,
            /// Creates a topic.
            CreateTopic = 302,
            /// Deletes a topic.
            DeleteTopic = 303,
            /// Changes a topic's settings.
            UpdateTopic = 304,
            /// Deletes every message of a topic.
            PurgeTopic = 305,
            /// Appends partitions to a topic.
            CreatePartitions = 402,
            /// Removes the highest-numbered partitions of a topic.
            DeletePartitions = 403,
            /// Deletes a partition's oldest sealed segments.
            DeleteSegments = 503,
            /// One consumer group with its members.
            GetConsumerGroup = 600,
            /// Every consumer group of a topic.
            GetConsumerGroups = 601,
            /// Creates a consumer group.
            CreateConsumerGroup = 602,
            /// Deletes a consumer group.
            DeleteConsumerGroup = 603,
            /// Joins a consumer group.
            JoinConsumerGroup = 604,
            /// Leaves a consumer group.
            LeaveConsumerGroup = 605,
            /// The caller's partitions in a consumer group (the 0.9 generation assigns them on
            /// the client side; 0.8 clients never send it).
            SyncConsumerGroup = 606,
            /// galgo's own extension, not an Iggy command: per-shard counters (calls sent and received,
            /// events applied, connections, partitions). Official SDKs never send it.
            GetShardStats = 9000,
        }
    };
}

/// Declares [`CommandCode`] and its lookup tables from the table.
macro_rules! command_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal $($owned:ident)?,)+) => {
        /// A command code, the second field of a request frame.
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum CommandCode {
            $($(#[$doc])* $name = $code,)+
        }

        impl CommandCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [CommandCode] = &[$(CommandCode::$name,)+];

            /// The code as it travels on the wire.
            pub fn as_u32(self) -> u32 {
                self as u32
            }

            /// The command for a wire value, or `None` for an unknown code.
            pub fn from_u32(code: u32) -> Option<CommandCode> {
                match code {
                    $($code => Some(CommandCode::$name),)+
                    _ => None,
                }
            }

            /// The command's name, e.g. `"SendMessages"`.
            pub fn name(self) -> &'static str {
                match self {
                    $(CommandCode::$name => stringify!($name),)+
                }
            }
        }
    };
}

crate::for_each_command!(command_codes);

impl CommandCode {
    /// Whether the command needs a logged-in session; the server answers 40 `Unauthenticated`
    /// otherwise. Only the commands that establish a session, and Ping, are open.
    pub fn requires_auth(self) -> bool {
        !matches!(
            self,
            CommandCode::Ping | CommandCode::LoginUser | CommandCode::LoginWithPersonalAccessToken
        )
    }
}

impl std::fmt::Display for CommandCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u32())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for &code in CommandCode::ALL {
            assert_eq!(CommandCode::from_u32(code.as_u32()), Some(code));
        }
        // 47 Iggy commands plus galgo's GetShardStats.
        assert_eq!(CommandCode::ALL.len(), 49);
    }

    #[test]
    fn unused_codes_are_unknown() {
        for value in [0, 2, 30, 40, 103, 400, 401, 500, 9001] {
            assert_eq!(CommandCode::from_u32(value), None, "{value}");
        }
    }

    #[test]
    fn only_ping_and_logins_are_open() {
        let open: Vec<_> = CommandCode::ALL
            .iter()
            .filter(|code| !code.requires_auth())
            .collect();
        assert_eq!(
            open,
            [
                &CommandCode::Ping,
                &CommandCode::LoginUser,
                &CommandCode::LoginWithPersonalAccessToken
            ]
        );
    }
}
