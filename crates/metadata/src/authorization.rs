//! Who may do what: the [`Need`]s commands declare, and the one function that decides,
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

/// The grant a command needs, at its scope, with the ids it names already resolved. Each
/// command declares its need beside its handler in the server; this is the whole vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any logged-in user.
    LoggedIn,
    /// The caller itself, or global read_users; `None` when no such user exists.
    SelfOrReadUsers(Option<UserId>),
    /// The caller itself, or global manage_users; `None` when no such user exists.
    SelfOrManageUsers(Option<UserId>),
    /// Read the server's state (stats, clients).
    ReadServers,
    /// Read every user.
    ReadUsers,
    /// Create, change and delete users.
    ManageUsers,
    /// List every stream.
    ReadAllStreams,
    /// Create a stream.
    CreateStream,
    /// Read one stream.
    ReadStream(StreamId),
    /// Change, delete or purge one stream.
    ManageStream(StreamId),
    /// Read every topic of a stream.
    ReadTopics(StreamId),
    /// Create topics in a stream.
    ManageTopics(StreamId),
    /// Read one topic (and its consumer groups).
    ReadTopic(StreamId, TopicId),
    /// Change, delete or purge one topic, its partitions and segments.
    ManageTopic(StreamId, TopicId),
    /// Poll a topic's messages and keep consumer offsets.
    Poll(StreamId, TopicId),
    /// Send messages to a topic.
    Send(StreamId, TopicId),
}

/// Decides whether `user` holds what `need` asks for: `Ok` or [`MetadataError::Unauthorized`]
/// (41). The only place galgo decides a permission.
pub fn authorize(user: &User, need: Need) -> Result<(), MetadataError> {
    let granted = match need {
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
            Need::Poll(S0, T0),
            Need::ReadStream(S0),
            Need::ReadTopic(S0, T0),
            Need::Poll(S0, T0),
            Need::ReadTopic(S0, T0),
            Need::LoggedIn,
            Need::LoggedIn,
            Need::SelfOrReadUsers(Some(UserId(5))),
        ];
        for need in allowed {
            assert_eq!(authorize(&limited, need), Ok(()), "{need:?}");
        }
        let refused = [
            Need::Send(S0, T0),
            Need::Poll(S1, T0),
            Need::ReadStream(S1),
            Need::ReadAllStreams,
            Need::ManageTopics(S0),
            Need::ManageStream(S0),
            Need::ManageTopic(S0, T0),
            Need::ReadServers,
            Need::ReadUsers,
            Need::SelfOrReadUsers(Some(UserId(0))),
            Need::SelfOrManageUsers(Some(UserId(0))),
        ];
        for need in refused {
            assert_eq!(
                authorize(&limited, need),
                Err(MetadataError::Unauthorized),
                "{need:?}"
            );
        }
    }

    #[test]
    fn grants_nest_from_global_to_topic() {
        let root = user(0, Some(Permissions::root()));
        assert_eq!(authorize(&root, Need::CreateStream), Ok(()));
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
        let send = |topic| Need::Send(S1, topic);
        assert_eq!(authorize(&sender, send(T0)), Ok(()));
        assert!(authorize(&sender, send(TopicId(1))).is_err());
        assert!(authorize(&sender, Need::Poll(S1, T0)).is_err());
        let manager = Permissions {
            global: GlobalPermissions {
                manage_topics: true,
                ..GlobalPermissions::default()
            },
            streams: BTreeMap::new(),
        };
        let manager = user(4, Some(manager));
        assert_eq!(authorize(&manager, send(TopicId(9))), Ok(()));
        assert_eq!(authorize(&manager, Need::ManageTopics(S0)), Ok(()));
        assert!(authorize(&manager, Need::CreateStream).is_err());
        let nobody = user(6, None);
        assert!(authorize(&nobody, Need::ReadAllStreams).is_err());
        assert_eq!(authorize(&nobody, Need::LoggedIn), Ok(()));
    }
}
