//! The one place a session's login and permissions are checked. The rules themselves are
//! `galgo_metadata::authorize`; the grant each command needs is declared beside its handler
//! ([`Handler::need`](crate::handler::Handler::need)).
//!
//! The login is checked before a request is decoded: as in Iggy, an anonymous client gets 40
//! for every command but Ping and the two logins, whatever its payload. The permission is
//! checked after, once the request's identifiers are resolved.

use galgo_metadata::{Need, authorize as decide};
use galgo_protocol::{CommandCode, ErrorCode};

use crate::{context::Shard, error::CommandError, session::Session};

/// Before decoding a frame of command `code`: a command that needs a login must come from a
/// session logged in as a user who still exists and is active (else 40, and a session whose
/// user was deleted or deactivated is logged out). Unknown codes pass: decoding refuses them.
pub fn authenticate(shard: &Shard, session: &mut Session, code: u32) -> Result<(), CommandError> {
    if !CommandCode::from_u32(code).is_some_and(CommandCode::requires_auth) {
        return Ok(());
    }
    if session.user().is_err() {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, code, "refused: not logged in");
        return Err(ErrorCode::Unauthenticated.into());
    }
    let metadata = shard.metadata.borrow();
    if session.current_user(&metadata).is_none() {
        crate::session_log!(session, info, shard = shard.id().0, peer = %session.peer, user_id = session.user_id, "session ended: its user was deleted or deactivated");
        session.log_out();
        shard
            .state()
            .clients
            .borrow_mut()
            .set_user(session.client_id, None);
        return Err(ErrorCode::Unauthenticated.into());
    }
    Ok(())
}

/// Checks that the session's user holds `need` (else 41). `None` (the request names nothing
/// that exists) checks nothing.
pub fn authorize(shard: &Shard, session: &Session, need: Option<Need>) -> Result<(), CommandError> {
    let Some(need) = need else {
        return Ok(());
    };
    let metadata = shard.metadata.borrow();
    // Nothing awaits between `authenticate` and this check, so the user is still there.
    let user = session
        .current_user(&metadata)
        .ok_or(ErrorCode::Unauthenticated)?;
    decide(user, need).map_err(CommandError::from)
}

#[cfg(test)]
mod tests {
    use galgo_metadata::{Event, Metadata, Need, User};
    use galgo_protocol::command::{
        groups::*, messages::*, offsets::*, streams::*, system::*, tokens::*, topics::*, users::*,
    };
    use galgo_protocol::{CommandCode, GlobalPermissions, Permissions};

    use crate::handler::Handler;

    /// The scope every sample request resolves to: stream 0, topic 0, and user 0 (not the
    /// caller, who is user 1).
    trait Sample {
        fn sample() -> Self;
    }

    impl Sample for () {
        fn sample() {}
    }

    impl Sample for Result<galgo_metadata::StreamId, galgo_metadata::MetadataError> {
        fn sample() -> Self {
            Ok(galgo_metadata::StreamId(0))
        }
    }

    impl Sample for Result<galgo_metadata::TopicKey, galgo_metadata::MetadataError> {
        fn sample() -> Self {
            Ok(galgo_metadata::TopicKey {
                stream: galgo_metadata::StreamId(0),
                topic: galgo_metadata::TopicId(0),
            })
        }
    }

    impl Sample for Result<galgo_metadata::UserId, galgo_metadata::MetadataError> {
        fn sample() -> Self {
            Ok(galgo_metadata::UserId(0))
        }
    }

    /// What command `C` declares it needs on the sample scope.
    fn need_of<C: Handler>() -> (CommandCode, Option<Need>)
    where
        C::Scope: Sample,
    {
        (C::CODE, C::need(&C::Scope::sample()))
    }

    /// A command's declared need, and the single global permissions that allow it.
    type Row = ((CommandCode, Option<Need>), &'static [&'static str]);

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
            streams: Default::default(),
        }
    }

    /// A replica holding user 0 and the caller, user 1, with `permissions`.
    fn with_user(permissions: Option<Permissions>) -> Metadata {
        let mut metadata = Metadata::new(1, 1 << 20);
        for (version, (name, permissions)) in [("other", None), ("holder", permissions.as_ref())]
            .into_iter()
            .enumerate()
        {
            let change = metadata
                .prepare_create_user(name, String::new(), true, permissions, 0)
                .expect("a valid user");
            metadata.apply(&Event {
                version: version as u64 + 1,
                change: change.into(),
            });
        }
        assert_eq!(holder(&metadata).id, galgo_metadata::UserId(1));
        metadata
    }

    fn holder(metadata: &Metadata) -> &User {
        metadata.user_for_login("holder").expect("created")
    }

    /// The single global permissions that allow each kind of need (PROTOCOL.md §5, with
    /// manage ⊇ read ⊇ poll).
    const SERVER_READERS: &[&str] = &["manage_servers", "read_servers"];
    const USER_READERS: &[&str] = &["manage_users", "read_users"];
    const USER_MANAGERS: &[&str] = &["manage_users"];
    const STREAM_READERS: &[&str] = &["manage_streams", "read_streams"];
    const STREAM_MANAGERS: &[&str] = &["manage_streams"];
    const TOPIC_READERS: &[&str] = &[
        "manage_streams",
        "read_streams",
        "manage_topics",
        "read_topics",
    ];
    const TOPIC_MANAGERS: &[&str] = &["manage_streams", "manage_topics"];
    const POLLERS: &[&str] = &[
        "poll_messages",
        "manage_streams",
        "read_streams",
        "manage_topics",
        "read_topics",
    ];
    const SENDERS: &[&str] = &["send_messages", "manage_streams", "manage_topics"];

    /// The rows of the matrix below: every command that needs a login, with the single
    /// global permissions that allow it.
    fn matrix() -> Vec<Row> {
        vec![
            (need_of::<GetStats>(), SERVER_READERS),
            (need_of::<GetSnapshotFile>(), SERVER_READERS),
            (need_of::<GetClusterMetadata>(), ANY),
            (need_of::<GetMe>(), ANY),
            (need_of::<GetClient>(), SERVER_READERS),
            (need_of::<GetClients>(), SERVER_READERS),
            (need_of::<GetShardStats>(), SERVER_READERS),
            (need_of::<GetUser>(), USER_READERS),
            (need_of::<GetUsers>(), USER_READERS),
            (need_of::<CreateUser>(), USER_MANAGERS),
            (need_of::<DeleteUser>(), USER_MANAGERS),
            (need_of::<UpdateUser>(), USER_MANAGERS),
            (need_of::<UpdatePermissions>(), USER_MANAGERS),
            (need_of::<ChangePassword>(), USER_MANAGERS),
            (need_of::<LogoutUser>(), ANY),
            (need_of::<GetPersonalAccessTokens>(), ANY),
            (need_of::<CreatePersonalAccessToken>(), ANY),
            (need_of::<DeletePersonalAccessToken>(), ANY),
            (need_of::<GetStream>(), STREAM_READERS),
            (need_of::<GetStreams>(), STREAM_READERS),
            (need_of::<CreateStream>(), STREAM_MANAGERS),
            (need_of::<UpdateStream>(), STREAM_MANAGERS),
            (need_of::<DeleteStream>(), STREAM_MANAGERS),
            (need_of::<PurgeStream>(), STREAM_MANAGERS),
            (need_of::<GetTopic>(), TOPIC_READERS),
            (need_of::<GetTopics>(), TOPIC_READERS),
            (need_of::<CreateTopic>(), TOPIC_MANAGERS),
            (need_of::<UpdateTopic>(), TOPIC_MANAGERS),
            (need_of::<DeleteTopic>(), TOPIC_MANAGERS),
            (need_of::<PurgeTopic>(), TOPIC_MANAGERS),
            (need_of::<CreatePartitions>(), TOPIC_MANAGERS),
            (need_of::<DeletePartitions>(), TOPIC_MANAGERS),
            (need_of::<DeleteSegments>(), TOPIC_MANAGERS),
            (need_of::<PollMessages>(), POLLERS),
            (need_of::<SendMessages>(), SENDERS),
            (need_of::<FlushUnsavedBuffer>(), SENDERS),
            (need_of::<GetConsumerOffset>(), POLLERS),
            (need_of::<StoreConsumerOffset>(), POLLERS),
            (need_of::<DeleteConsumerOffset>(), POLLERS),
            (need_of::<GetConsumerGroup>(), TOPIC_READERS),
            (need_of::<GetConsumerGroups>(), TOPIC_READERS),
            (need_of::<CreateConsumerGroup>(), TOPIC_READERS),
            (need_of::<DeleteConsumerGroup>(), TOPIC_READERS),
            (need_of::<JoinConsumerGroup>(), TOPIC_READERS),
            (need_of::<LeaveConsumerGroup>(), TOPIC_READERS),
            (need_of::<SyncConsumerGroup>(), TOPIC_READERS),
        ]
    }

    /// The matrix: every command that needs a login (on stream 0, topic 0, another user)
    /// against a user with no permissions, root-like permissions, and a user holding exactly
    /// one global permission. The expected column is the single global permissions that allow
    /// each command (PROTOCOL.md §5, with manage ⊇ read ⊇ poll); per-stream and per-topic
    /// grants are the metadata crate's tests.
    #[test]
    fn every_command_against_every_single_global_permission() {
        let matrix = matrix();
        let mut covered: Vec<CommandCode> = matrix.iter().map(|((code, _), _)| *code).collect();
        covered.sort_by_key(|code| code.as_u32());
        let needing_login: Vec<CommandCode> = CommandCode::ALL
            .iter()
            .copied()
            .filter(|code| code.requires_auth())
            .collect();
        assert_eq!(
            covered, needing_login,
            "every command that needs a login, once"
        );
        for ((code, need), allowed_by) in &matrix {
            let need = need.unwrap_or_else(|| panic!("{code}: the sample scope resolves"));
            let anyone = *allowed_by == ANY;
            let nobody = with_user(None);
            let decided = |metadata: &Metadata| galgo_metadata::authorize(holder(metadata), need);
            assert_eq!(decided(&nobody).is_ok(), anyone, "nobody: {code}");
            let root = with_user(Some(Permissions::root()));
            assert_eq!(decided(&root), Ok(()), "root: {code}");
            for flag in GLOBAL_FLAGS {
                let expected = anyone || allowed_by.contains(&flag);
                let single = with_user(Some(only_global(flag)));
                assert_eq!(decided(&single).is_ok(), expected, "{flag} alone: {code}");
            }
        }
    }

    /// Ping and the two logins need nothing: they run before any login.
    #[test]
    fn open_commands_need_nothing() {
        for (code, need) in [
            need_of::<Ping>(),
            need_of::<LoginUser>(),
            need_of::<LoginWithPersonalAccessToken>(),
        ] {
            assert!(!code.requires_auth(), "{code}");
            assert_eq!(need, None, "{code}");
        }
    }
}
