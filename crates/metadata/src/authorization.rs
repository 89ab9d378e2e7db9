//! Who may do what: one [`Action`] per command, and the one function that decides,
//! [`authorize`].
//!
//! Grants nest, as the Iggy SDK documents them (`iggy_common` `GlobalPermissions`):
//!
//! ```text
//! global  manage_servers ⊇ read_servers          manage_users ⊇ read_users
//!         manage_streams ⊇ read_streams, manage_topics
//!         read_streams ⊇ read_topics    manage_topics ⊇ read_topics    read_topics ⊇ poll_messages
//! stream  the same below the stream: manage_stream ⊇ read_stream, manage_topics; …
//! topic   manage_topic ⊇ read_topic ⊇ poll_messages
//! ```
//!
//! A grant at a wider scope covers every narrower one (global ⊇ stream ⊇ topic). Sending
//! needs `send_messages` or a manage grant (manage_streams, manage_topics, manage_stream,
//! manage_topic) at a scope that covers the topic; reading a topic's messages needs
//! `poll_messages` or any read or manage grant that covers it. Where PROTOCOL.md §5 spells a
//! rule out (system, streams, users), this is that rule.

use galgo_protocol::{Permissions, StreamPermissions, TopicPermissions};

use crate::{MetadataError, StreamId, TopicId, User, UserId};

/// What a command asks to do, with the ids it names already resolved. One variant per command
/// that needs a logged-in user; Ping and the two logins need none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Action {
    // System.
    GetStats,
    GetSnapshotFile,
    GetClusterMetadata,
    GetMe,
    GetClient,
    GetClients,
    /// galgo's own shard counters (code 9000).
    GetShardStats,
    // Users.
    /// `target` is `None` when no such user exists.
    GetUser {
        target: Option<UserId>,
    },
    GetUsers,
    CreateUser,
    DeleteUser,
    UpdateUser,
    UpdatePermissions,
    /// `target` is `None` when no such user exists.
    ChangePassword {
        target: Option<UserId>,
    },
    LogoutUser,
    // Personal access tokens (always the caller's own).
    GetPersonalAccessTokens,
    CreatePersonalAccessToken,
    DeletePersonalAccessToken,
    // Streams.
    GetStream {
        stream: StreamId,
    },
    GetStreams,
    CreateStream,
    UpdateStream {
        stream: StreamId,
    },
    DeleteStream {
        stream: StreamId,
    },
    PurgeStream {
        stream: StreamId,
    },
    // Topics, partitions, segments.
    GetTopic {
        stream: StreamId,
        topic: TopicId,
    },
    GetTopics {
        stream: StreamId,
    },
    CreateTopic {
        stream: StreamId,
    },
    UpdateTopic {
        stream: StreamId,
        topic: TopicId,
    },
    DeleteTopic {
        stream: StreamId,
        topic: TopicId,
    },
    PurgeTopic {
        stream: StreamId,
        topic: TopicId,
    },
    CreatePartitions {
        stream: StreamId,
        topic: TopicId,
    },
    DeletePartitions {
        stream: StreamId,
        topic: TopicId,
    },
    DeleteSegments {
        stream: StreamId,
        topic: TopicId,
    },
    // Messages and offsets.
    PollMessages {
        stream: StreamId,
        topic: TopicId,
    },
    SendMessages {
        stream: StreamId,
        topic: TopicId,
    },
    FlushUnsavedBuffer {
        stream: StreamId,
        topic: TopicId,
    },
    GetConsumerOffset {
        stream: StreamId,
        topic: TopicId,
    },
    StoreConsumerOffset {
        stream: StreamId,
        topic: TopicId,
    },
    DeleteConsumerOffset {
        stream: StreamId,
        topic: TopicId,
    },
    // Consumer groups.
    GetConsumerGroup {
        stream: StreamId,
        topic: TopicId,
    },
    GetConsumerGroups {
        stream: StreamId,
        topic: TopicId,
    },
    CreateConsumerGroup {
        stream: StreamId,
        topic: TopicId,
    },
    DeleteConsumerGroup {
        stream: StreamId,
        topic: TopicId,
    },
    JoinConsumerGroup {
        stream: StreamId,
        topic: TopicId,
    },
    LeaveConsumerGroup {
        stream: StreamId,
        topic: TopicId,
    },
}

/// The grant an action needs, at its scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// Any logged-in user.
    LoggedIn,
    /// The caller itself, or global read_users.
    SelfOrReadUsers(Option<UserId>),
    /// The caller itself, or global manage_users.
    SelfOrManageUsers(Option<UserId>),
    ReadServers,
    ReadUsers,
    ManageUsers,
    ReadAllStreams,
    CreateStream,
    ReadStream(StreamId),
    ManageStream(StreamId),
    ReadTopics(StreamId),
    ManageTopics(StreamId),
    ReadTopic(StreamId, TopicId),
    ManageTopic(StreamId, TopicId),
    Poll(StreamId, TopicId),
    Send(StreamId, TopicId),
}

impl Action {
    fn need(self) -> Need {
        use Action::*;
        match self {
            GetClusterMetadata | GetMe | LogoutUser => Need::LoggedIn,
            GetPersonalAccessTokens | CreatePersonalAccessToken | DeletePersonalAccessToken => {
                Need::LoggedIn
            }
            GetStats | GetSnapshotFile | GetClient | GetClients | GetShardStats => {
                Need::ReadServers
            }
            GetUser { target } => Need::SelfOrReadUsers(target),
            ChangePassword { target } => Need::SelfOrManageUsers(target),
            GetUsers => Need::ReadUsers,
            CreateUser | DeleteUser | UpdateUser | UpdatePermissions => Need::ManageUsers,
            GetStreams => Need::ReadAllStreams,
            CreateStream => Need::CreateStream,
            GetStream { stream } => Need::ReadStream(stream),
            UpdateStream { stream } | DeleteStream { stream } | PurgeStream { stream } => {
                Need::ManageStream(stream)
            }
            GetTopics { stream } => Need::ReadTopics(stream),
            CreateTopic { stream } => Need::ManageTopics(stream),
            GetTopic { stream, topic }
            | GetConsumerGroup { stream, topic }
            | GetConsumerGroups { stream, topic }
            | CreateConsumerGroup { stream, topic }
            | DeleteConsumerGroup { stream, topic }
            | JoinConsumerGroup { stream, topic }
            | LeaveConsumerGroup { stream, topic } => Need::ReadTopic(stream, topic),
            UpdateTopic { stream, topic }
            | DeleteTopic { stream, topic }
            | PurgeTopic { stream, topic }
            | CreatePartitions { stream, topic }
            | DeletePartitions { stream, topic }
            | DeleteSegments { stream, topic } => Need::ManageTopic(stream, topic),
            PollMessages { stream, topic }
            | GetConsumerOffset { stream, topic }
            | StoreConsumerOffset { stream, topic }
            | DeleteConsumerOffset { stream, topic } => Need::Poll(stream, topic),
            SendMessages { stream, topic } | FlushUnsavedBuffer { stream, topic } => {
                Need::Send(stream, topic)
            }
        }
    }
}

/// Decides whether `user` may perform `action`: `Ok` or [`MetadataError::Unauthorized`]
/// (41). The only place galgo decides a permission.
pub fn authorize(user: &User, action: Action) -> Result<(), MetadataError> {
    let granted = match action.need() {
        Need::LoggedIn => true,
        Need::SelfOrReadUsers(Some(target)) | Need::SelfOrManageUsers(Some(target))
            if target == user.id =>
        {
            true
        }
        need => user
            .permissions
            .as_ref()
            .is_some_and(|permissions| grants(permissions, need)),
    };
    if granted {
        Ok(())
    } else {
        Err(MetadataError::Unauthorized)
    }
}

fn grants(permissions: &Permissions, need: Need) -> bool {
    let global = &permissions.global;
    let stream = |id: StreamId| permissions.streams.get(&id.0);
    let topic = |s: StreamId, t: TopicId| stream(s).and_then(|grant| grant.topics.get(&t.0));
    match need {
        Need::LoggedIn => true,
        Need::ReadServers => global.manage_servers || global.read_servers,
        Need::SelfOrReadUsers(_) | Need::ReadUsers => global.manage_users || global.read_users,
        Need::SelfOrManageUsers(_) | Need::ManageUsers => global.manage_users,
        Need::ReadAllStreams => global.manage_streams || global.read_streams,
        Need::CreateStream => global.manage_streams,
        Need::ReadStream(s) => {
            global.manage_streams
                || global.read_streams
                || stream(s).is_some_and(|grant| grant.manage_stream || grant.read_stream)
        }
        Need::ManageStream(s) => {
            global.manage_streams || stream(s).is_some_and(|grant| grant.manage_stream)
        }
        Need::ReadTopics(s) => reads_topics(permissions, s),
        Need::ManageTopics(s) => manages_topics(permissions, s),
        Need::ReadTopic(s, t) => {
            reads_topics(permissions, s)
                || topic(s, t).is_some_and(|grant| grant.manage_topic || grant.read_topic)
        }
        Need::ManageTopic(s, t) => {
            manages_topics(permissions, s) || topic(s, t).is_some_and(|grant| grant.manage_topic)
        }
        Need::Poll(s, t) => {
            global.poll_messages
                || reads_topics(permissions, s)
                || stream(s).is_some_and(|grant| grant.poll_messages)
                || topic(s, t).is_some_and(polls_topic)
        }
        Need::Send(s, t) => {
            global.send_messages
                || manages_topics(permissions, s)
                || stream(s).is_some_and(|grant| grant.send_messages)
                || topic(s, t).is_some_and(|grant| grant.send_messages || grant.manage_topic)
        }
    }
}

/// Read every topic of stream `s`: a read or manage grant over all its topics.
fn reads_topics(permissions: &Permissions, s: StreamId) -> bool {
    let global = &permissions.global;
    global.manage_streams
        || global.read_streams
        || global.manage_topics
        || global.read_topics
        || permissions
            .streams
            .get(&s.0)
            .is_some_and(stream_reads_topics)
}

fn stream_reads_topics(grant: &StreamPermissions) -> bool {
    grant.manage_stream || grant.read_stream || grant.manage_topics || grant.read_topics
}

/// Manage every topic of stream `s` (create, update, delete, purge them).
fn manages_topics(permissions: &Permissions, s: StreamId) -> bool {
    let global = &permissions.global;
    global.manage_streams
        || global.manage_topics
        || permissions
            .streams
            .get(&s.0)
            .is_some_and(|grant| grant.manage_stream || grant.manage_topics)
}

fn polls_topic(grant: &TopicPermissions) -> bool {
    grant.manage_topic || grant.read_topic || grant.poll_messages
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use galgo_protocol::GlobalPermissions;

    use super::*;

    fn user(id: u32, permissions: Option<Permissions>) -> User {
        User::for_tests(UserId(id), permissions)
    }

    fn reader_of_stream(stream: u32) -> Permissions {
        let grant = StreamPermissions {
            read_stream: true,
            ..StreamPermissions::default()
        };
        Permissions {
            global: GlobalPermissions::default(),
            streams: BTreeMap::from([(stream, grant)]),
        }
    }

    const S0: StreamId = StreamId(0);
    const S1: StreamId = StreamId(1);
    const T0: TopicId = TopicId(0);

    #[test]
    fn a_stream_reader_polls_it_and_nothing_else() {
        let limited = user(5, Some(reader_of_stream(0)));
        let allowed = [
            Action::PollMessages {
                stream: S0,
                topic: T0,
            },
            Action::GetStream { stream: S0 },
            Action::GetTopic {
                stream: S0,
                topic: T0,
            },
            Action::StoreConsumerOffset {
                stream: S0,
                topic: T0,
            },
            Action::JoinConsumerGroup {
                stream: S0,
                topic: T0,
            },
            Action::GetMe,
            Action::CreatePersonalAccessToken,
            Action::GetUser {
                target: Some(UserId(5)),
            },
        ];
        for action in allowed {
            assert_eq!(authorize(&limited, action), Ok(()), "{action:?}");
        }
        let refused = [
            Action::SendMessages {
                stream: S0,
                topic: T0,
            },
            Action::PollMessages {
                stream: S1,
                topic: T0,
            },
            Action::GetStream { stream: S1 },
            Action::GetStreams,
            Action::CreateTopic { stream: S0 },
            Action::DeleteStream { stream: S0 },
            Action::DeleteSegments {
                stream: S0,
                topic: T0,
            },
            Action::GetStats,
            Action::GetUsers,
            Action::GetUser {
                target: Some(UserId(0)),
            },
            Action::ChangePassword {
                target: Some(UserId(0)),
            },
        ];
        for action in refused {
            assert_eq!(
                authorize(&limited, action),
                Err(MetadataError::Unauthorized),
                "{action:?}"
            );
        }
    }

    #[test]
    fn grants_nest_from_global_to_topic() {
        let root = user(0, Some(Permissions::root()));
        assert_eq!(authorize(&root, Action::CreateStream), Ok(()));
        let mut topic_sender = Permissions::default();
        let mut stream = StreamPermissions::default();
        stream.topics.insert(
            0,
            TopicPermissions {
                send_messages: true,
                ..TopicPermissions::default()
            },
        );
        topic_sender.streams.insert(1, stream);
        let sender = user(3, Some(topic_sender));
        let send = |topic| Action::SendMessages { stream: S1, topic };
        assert_eq!(authorize(&sender, send(T0)), Ok(()));
        assert!(authorize(&sender, send(TopicId(1))).is_err());
        assert!(
            authorize(
                &sender,
                Action::PollMessages {
                    stream: S1,
                    topic: T0
                }
            )
            .is_err()
        );
        let manager = Permissions {
            global: GlobalPermissions {
                manage_topics: true,
                ..GlobalPermissions::default()
            },
            streams: BTreeMap::new(),
        };
        let manager = user(4, Some(manager));
        assert_eq!(authorize(&manager, send(TopicId(9))), Ok(()));
        assert_eq!(
            authorize(&manager, Action::CreateTopic { stream: S0 }),
            Ok(())
        );
        assert!(authorize(&manager, Action::CreateStream).is_err());
        let nobody = user(6, None);
        assert!(authorize(&nobody, Action::GetStreams).is_err());
        assert_eq!(authorize(&nobody, Action::LogoutUser), Ok(()));
    }

    /// Which action a variant is: an exhaustive match, so a new command's action cannot be
    /// left out of the matrix below without this failing to compile.
    fn variant_index(action: &Action) -> usize {
        match action {
            Action::GetStats => 0,
            Action::GetSnapshotFile => 1,
            Action::GetClusterMetadata => 2,
            Action::GetMe => 3,
            Action::GetClient => 4,
            Action::GetClients => 5,
            Action::GetShardStats => 6,
            Action::GetUser { .. } => 7,
            Action::GetUsers => 8,
            Action::CreateUser => 9,
            Action::DeleteUser => 10,
            Action::UpdateUser => 11,
            Action::UpdatePermissions => 12,
            Action::ChangePassword { .. } => 13,
            Action::LogoutUser => 14,
            Action::GetPersonalAccessTokens => 15,
            Action::CreatePersonalAccessToken => 16,
            Action::DeletePersonalAccessToken => 17,
            Action::GetStream { .. } => 18,
            Action::GetStreams => 19,
            Action::CreateStream => 20,
            Action::UpdateStream { .. } => 21,
            Action::DeleteStream { .. } => 22,
            Action::PurgeStream { .. } => 23,
            Action::GetTopic { .. } => 24,
            Action::GetTopics { .. } => 25,
            Action::CreateTopic { .. } => 26,
            Action::UpdateTopic { .. } => 27,
            Action::DeleteTopic { .. } => 28,
            Action::PurgeTopic { .. } => 29,
            Action::CreatePartitions { .. } => 30,
            Action::DeletePartitions { .. } => 31,
            Action::DeleteSegments { .. } => 32,
            Action::PollMessages { .. } => 33,
            Action::SendMessages { .. } => 34,
            Action::FlushUnsavedBuffer { .. } => 35,
            Action::GetConsumerOffset { .. } => 36,
            Action::StoreConsumerOffset { .. } => 37,
            Action::DeleteConsumerOffset { .. } => 38,
            Action::GetConsumerGroup { .. } => 39,
            Action::GetConsumerGroups { .. } => 40,
            Action::CreateConsumerGroup { .. } => 41,
            Action::DeleteConsumerGroup { .. } => 42,
            Action::JoinConsumerGroup { .. } => 43,
            Action::LeaveConsumerGroup { .. } => 44,
        }
    }

    const ACTIONS_COUNT: usize = 45;
    /// Allowed for every logged-in user, whatever the permissions.
    const ANY: &[&str] = &["*"];
    const GLOBAL_FLAGS: [&str; 10] = [
        "manage_servers",
        "read_servers",
        "manage_users",
        "read_users",
        "manage_streams",
        "read_streams",
        "manage_topics",
        "read_topics",
        "poll_messages",
        "send_messages",
    ];

    fn only_global(flag: &str) -> Permissions {
        let mut global = GlobalPermissions::default();
        let slot = match flag {
            "manage_servers" => &mut global.manage_servers,
            "read_servers" => &mut global.read_servers,
            "manage_users" => &mut global.manage_users,
            "read_users" => &mut global.read_users,
            "manage_streams" => &mut global.manage_streams,
            "read_streams" => &mut global.read_streams,
            "manage_topics" => &mut global.manage_topics,
            "read_topics" => &mut global.read_topics,
            "poll_messages" => &mut global.poll_messages,
            "send_messages" => &mut global.send_messages,
            other => panic!("no global permission {other}"),
        };
        *slot = true;
        Permissions {
            global,
            streams: BTreeMap::new(),
        }
    }

    /// The matrix: every action (on stream 0, topic 0, another user) against a user with no
    /// permissions, root, and a user holding exactly one global permission. The expected
    /// column is the single global permissions that allow each action (PROTOCOL.md §5, with
    /// manage ⊇ read ⊇ poll); per-stream and per-topic grants are the other tests' job.
    #[test]
    fn every_action_against_every_single_global_permission() {
        let matrix: Vec<(Action, &[&str])> = vec![
            (Action::GetStats, &["manage_servers", "read_servers"]),
            (Action::GetSnapshotFile, &["manage_servers", "read_servers"]),
            (Action::GetClusterMetadata, ANY),
            (Action::GetMe, ANY),
            (Action::GetClient, &["manage_servers", "read_servers"]),
            (Action::GetClients, &["manage_servers", "read_servers"]),
            (Action::GetShardStats, &["manage_servers", "read_servers"]),
            (
                Action::GetUser {
                    target: Some(UserId(0)),
                },
                &["manage_users", "read_users"],
            ),
            (Action::GetUsers, &["manage_users", "read_users"]),
            (Action::CreateUser, &["manage_users"]),
            (Action::DeleteUser, &["manage_users"]),
            (Action::UpdateUser, &["manage_users"]),
            (Action::UpdatePermissions, &["manage_users"]),
            (
                Action::ChangePassword {
                    target: Some(UserId(0)),
                },
                &["manage_users"],
            ),
            (Action::LogoutUser, ANY),
            (Action::GetPersonalAccessTokens, ANY),
            (Action::CreatePersonalAccessToken, ANY),
            (Action::DeletePersonalAccessToken, ANY),
            (
                Action::GetStream { stream: S0 },
                &["manage_streams", "read_streams"],
            ),
            (Action::GetStreams, &["manage_streams", "read_streams"]),
            (Action::CreateStream, &["manage_streams"]),
            (Action::UpdateStream { stream: S0 }, &["manage_streams"]),
            (Action::DeleteStream { stream: S0 }, &["manage_streams"]),
            (Action::PurgeStream { stream: S0 }, &["manage_streams"]),
            (
                Action::GetTopic {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::GetTopics { stream: S0 },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::CreateTopic { stream: S0 },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::UpdateTopic {
                    stream: S0,
                    topic: T0,
                },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::DeleteTopic {
                    stream: S0,
                    topic: T0,
                },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::PurgeTopic {
                    stream: S0,
                    topic: T0,
                },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::CreatePartitions {
                    stream: S0,
                    topic: T0,
                },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::DeletePartitions {
                    stream: S0,
                    topic: T0,
                },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::DeleteSegments {
                    stream: S0,
                    topic: T0,
                },
                &["manage_streams", "manage_topics"],
            ),
            (
                Action::PollMessages {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "poll_messages",
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::SendMessages {
                    stream: S0,
                    topic: T0,
                },
                &["send_messages", "manage_streams", "manage_topics"],
            ),
            (
                Action::FlushUnsavedBuffer {
                    stream: S0,
                    topic: T0,
                },
                &["send_messages", "manage_streams", "manage_topics"],
            ),
            (
                Action::GetConsumerOffset {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "poll_messages",
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::StoreConsumerOffset {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "poll_messages",
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::DeleteConsumerOffset {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "poll_messages",
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::GetConsumerGroup {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::GetConsumerGroups {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::CreateConsumerGroup {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::DeleteConsumerGroup {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::JoinConsumerGroup {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
            (
                Action::LeaveConsumerGroup {
                    stream: S0,
                    topic: T0,
                },
                &[
                    "manage_streams",
                    "read_streams",
                    "manage_topics",
                    "read_topics",
                ],
            ),
        ];
        let mut covered: Vec<usize> = matrix
            .iter()
            .map(|(action, _)| variant_index(action))
            .collect();
        covered.sort_unstable();
        assert_eq!(
            covered,
            (0..ACTIONS_COUNT).collect::<Vec<_>>(),
            "every action once"
        );
        let nobody = user(7, None);
        let root = user(0, Some(Permissions::root()));
        for (action, allowed_by) in &matrix {
            let anyone = *allowed_by == ANY;
            assert_eq!(
                authorize(&nobody, *action).is_ok(),
                anyone,
                "nobody: {action:?}"
            );
            assert_eq!(authorize(&root, *action), Ok(()), "root: {action:?}");
            for flag in GLOBAL_FLAGS {
                let holder = user(7, Some(only_global(flag)));
                let expected = anyone || allowed_by.contains(&flag);
                assert_eq!(
                    authorize(&holder, *action).is_ok(),
                    expected,
                    "{flag} alone: {action:?}"
                );
            }
        }
    }
}
