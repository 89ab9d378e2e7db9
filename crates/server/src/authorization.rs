//! From a request to the [`Action`] it asks for, and the check every authenticated command
//! passes before its handler runs. The rules themselves are `galgo_metadata::authorize`.
//!
//! Identifiers are resolved in this shard's replica. When one names nothing, no action is
//! checked and the handler gives its usual answer (empty, or a not-found code), as Iggy does;
//! nothing is created, changed or read in that case, so nothing is allowed that should not be.

use galgo_metadata::{Action, Metadata, StreamId, TopicId, authorize};
use galgo_protocol::{ErrorCode, Identifier, Request};
use galgo_shards::Shard;

use crate::{error::CommandError, session::Session};

/// Checks that the session is logged in as a user who still exists and is active (else 40,
/// and the session is logged out), and that this user may perform `request` (else 41).
pub fn check(shard: &Shard, session: &mut Session, request: &Request) -> Result<(), CommandError> {
    session.user()?;
    let metadata = shard.metadata.borrow();
    let Some(user) = session.current_user(&metadata) else {
        tracing::info!(shard = shard.id().0, peer = %session.peer, user_id = session.user_id, "session ended: its user was deleted or deactivated");
        session.log_out();
        shard.clients.borrow_mut().set_user(session.client_id, None);
        return Err(ErrorCode::Unauthenticated.into());
    };
    match action_of(&metadata, request) {
        Some(action) => authorize(user, action).map_err(CommandError::from),
        None => Ok(()),
    }
}

fn stream(metadata: &Metadata, stream: &Identifier) -> Option<StreamId> {
    metadata.stream(stream).ok().map(|found| found.id)
}

fn topic(metadata: &Metadata, s: &Identifier, t: &Identifier) -> Option<(StreamId, TopicId)> {
    let found = metadata.stream(s).ok()?;
    Some((found.id, found.topic(t).ok()?.id))
}

/// The action a request asks for, or `None` when an identifier in it names nothing (or the
/// command needs no login at all).
pub fn action_of(metadata: &Metadata, request: &Request) -> Option<Action> {
    use Action as A;
    use Request as R;
    let on_topic = |s: &Identifier, t: &Identifier, make: fn(StreamId, TopicId) -> Action| {
        topic(metadata, s, t).map(|(stream, topic)| make(stream, topic))
    };
    let on_stream = |s: &Identifier, make: fn(StreamId) -> Action| stream(metadata, s).map(make);
    Some(match request {
        R::Ping | R::LoginUser(_) | R::LoginWithPersonalAccessToken(_) => return None,
        R::GetStats => A::GetStats,
        R::GetSnapshotFile(_) => A::GetSnapshotFile,
        R::GetClusterMetadata => A::GetClusterMetadata,
        R::GetMe => A::GetMe,
        R::GetClient(_) => A::GetClient,
        R::GetClients => A::GetClients,
        R::GetShardStats => A::GetShardStats,
        R::GetUser(get) => A::GetUser {
            target: metadata.user(&get.user).ok().map(|user| user.id),
        },
        R::GetUsers => A::GetUsers,
        R::CreateUser(_) => A::CreateUser,
        R::DeleteUser(_) => A::DeleteUser,
        R::UpdateUser(_) => A::UpdateUser,
        R::UpdatePermissions(_) => A::UpdatePermissions,
        R::ChangePassword(change) => A::ChangePassword {
            target: metadata.user(&change.user).ok().map(|user| user.id),
        },
        R::LogoutUser => A::LogoutUser,
        R::GetPersonalAccessTokens => A::GetPersonalAccessTokens,
        R::CreatePersonalAccessToken(_) => A::CreatePersonalAccessToken,
        R::DeletePersonalAccessToken(_) => A::DeletePersonalAccessToken,
        R::GetStreams => A::GetStreams,
        R::CreateStream(_) => A::CreateStream,
        R::GetStream(get) => on_stream(&get.stream, |stream| A::GetStream { stream })?,
        R::UpdateStream(update) => on_stream(&update.stream, |stream| A::UpdateStream { stream })?,
        R::DeleteStream(delete) => on_stream(&delete.stream, |stream| A::DeleteStream { stream })?,
        R::PurgeStream(purge) => on_stream(&purge.stream, |stream| A::PurgeStream { stream })?,
        R::GetTopics(get) => on_stream(&get.stream, |stream| A::GetTopics { stream })?,
        R::CreateTopic(create) => on_stream(&create.stream, |stream| A::CreateTopic { stream })?,
        R::GetTopic(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::GetTopic {
            stream,
            topic,
        })?,
        R::UpdateTopic(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::UpdateTopic {
            stream,
            topic,
        })?,
        R::DeleteTopic(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::DeleteTopic {
            stream,
            topic,
        })?,
        R::PurgeTopic(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::PurgeTopic {
            stream,
            topic,
        })?,
        R::CreatePartitions(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::CreatePartitions { stream, topic }
        })?,
        R::DeletePartitions(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::DeletePartitions { stream, topic }
        })?,
        R::DeleteSegments(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::DeleteSegments {
            stream,
            topic,
        })?,
        R::PollMessages(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::PollMessages {
            stream,
            topic,
        })?,
        R::SendMessages(r) => on_topic(&r.stream, &r.topic, |stream, topic| A::SendMessages {
            stream,
            topic,
        })?,
        R::FlushUnsavedBuffer(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::FlushUnsavedBuffer { stream, topic }
        })?,
        R::GetConsumerOffset(r) => on_topic(&r.target.stream, &r.target.topic, |stream, topic| {
            A::GetConsumerOffset { stream, topic }
        })?,
        R::StoreConsumerOffset(r) => {
            on_topic(&r.target.stream, &r.target.topic, |stream, topic| {
                A::StoreConsumerOffset { stream, topic }
            })?
        }
        R::DeleteConsumerOffset(r) => {
            on_topic(&r.target.stream, &r.target.topic, |stream, topic| {
                A::DeleteConsumerOffset { stream, topic }
            })?
        }
        R::GetConsumerGroup(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::GetConsumerGroup { stream, topic }
        })?,
        R::GetConsumerGroups(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::GetConsumerGroups { stream, topic }
        })?,
        R::CreateConsumerGroup(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::CreateConsumerGroup { stream, topic }
        })?,
        R::DeleteConsumerGroup(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::DeleteConsumerGroup { stream, topic }
        })?,
        R::JoinConsumerGroup(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::JoinConsumerGroup { stream, topic }
        })?,
        R::LeaveConsumerGroup(r) => on_topic(&r.stream, &r.topic, |stream, topic| {
            A::LeaveConsumerGroup { stream, topic }
        })?,
    })
}
