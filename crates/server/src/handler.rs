//! Command dispatch: a flat match calling one function per command, grouped by family in
//! `handler/*.rs` like the protocol's `command/*.rs`.

mod groups;
mod messages;
mod metadata_change;
mod offsets;
mod partition_calls;
mod segments;
mod streams;
mod system;
mod tokens;
mod topics;
mod users;

pub use tokens::clean_expired as clean_expired_tokens;
pub use users::{ensure_root, start_root_creation};

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use galgo_metadata::UserId;
use galgo_protocol::{ErrorCode, Request};
use galgo_shards::Shard;

use crate::{authorization, context::Context, error::CommandError, session::Session};

/// A successful answer: payload chunks sent back to back after the response header.
#[derive(Debug, Default)]
pub struct Reply(Vec<Bytes>);

impl Reply {
    /// The empty OK.
    pub fn empty() -> Self {
        Self(Vec::new())
    }
    /// One contiguous payload.
    pub fn bytes(payload: BytesMut) -> Self {
        Self(vec![payload.freeze()])
    }
    /// A payload in pieces (stored messages are sent as they are).
    pub fn chunks(chunks: Vec<Bytes>) -> Self {
        Self(chunks)
    }
    /// Encodes a response type into a reply.
    pub fn encoded(encode: impl FnOnce(&mut BytesMut)) -> Self {
        let mut payload = BytesMut::new();
        encode(&mut payload);
        Self::bytes(payload)
    }
    /// The chunks.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.0
    }
}

/// A connection ended: its client leaves every consumer group it joined.
pub async fn client_gone(shard: &Rc<Shard>, context: &Context, client_id: u32) {
    groups::leave_all(shard, context, client_id).await;
}

/// Shard 0's own periodic tasks of the command layer: timed-out group revocations.
pub fn start_shard0_tasks(shard0: &Rc<Shard>, seed: &crate::context::ContextSeed) {
    let task = groups::expire_revocations(shard0.clone(), seed.consumer_group.clone());
    compio::runtime::spawn(task).detach();
}

/// What a command ends in.
pub type Outcome = Result<Reply, CommandError>;

/// Runs one decoded request for a session. Every command but Ping and the two logins needs a
/// live login and the permission `authorization::check` derives from the request.
pub async fn handle(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    request: Request,
) -> Outcome {
    if request.code().requires_auth() {
        authorization::check(shard, session, &request)?;
    }
    // Set by the check above for every command that needs it.
    let user = || session.user().map(UserId);
    match request {
        Request::Ping => Ok(Reply::empty()),
        Request::LoginUser(login) => users::login(shard, context, session, login).await,
        Request::LoginWithPersonalAccessToken(login) => tokens::login(shard, session, login),
        Request::LogoutUser => users::logout(shard, session),
        Request::GetUser(get) => users::get(shard, get.user),
        Request::GetUsers => users::list(shard),
        Request::CreateUser(create) => users::create(shard, context, create).await,
        Request::UpdateUser(update) => users::update(shard, update).await,
        Request::UpdatePermissions(update) => users::update_permissions(shard, update).await,
        Request::DeleteUser(delete) => users::delete(shard, delete.user).await,
        Request::ChangePassword(change) => {
            users::change_password(shard, context, session, change).await
        }
        Request::GetPersonalAccessTokens => tokens::list(shard, user()?),
        Request::CreatePersonalAccessToken(create) => {
            tokens::create(shard, context, user()?, create).await
        }
        Request::DeletePersonalAccessToken(delete) => tokens::delete(shard, user()?, delete).await,
        Request::GetMe => system::get_me(shard, session),
        Request::GetStats => system::get_stats(shard, context).await,
        Request::GetClient(get) => system::get_client(shard, get).await,
        Request::GetClients => system::get_clients(shard).await,
        Request::GetClusterMetadata => system::get_cluster_metadata(context),
        Request::GetShardStats => system::get_shard_stats(shard).await,
        Request::GetStream(get) => streams::get(shard, get.stream).await,
        Request::GetStreams => streams::list(shard).await,
        Request::CreateStream(create) => streams::create(shard, create).await,
        Request::UpdateStream(update) => streams::update(shard, update).await,
        Request::DeleteStream(delete) => streams::delete(shard, delete.stream).await,
        Request::PurgeStream(purge) => streams::purge(shard, purge.stream).await,
        Request::GetTopic(get) => topics::get(shard, get).await,
        Request::GetTopics(get) => topics::list(shard, get.stream).await,
        Request::CreateTopic(create) => topics::create(shard, create).await,
        Request::UpdateTopic(update) => topics::update(shard, update).await,
        Request::DeleteTopic(delete) => topics::delete(shard, delete).await,
        Request::PurgeTopic(purge) => topics::purge(shard, purge).await,
        Request::CreatePartitions(create) => topics::create_partitions(shard, create).await,
        Request::DeletePartitions(delete) => topics::delete_partitions(shard, delete).await,
        Request::SendMessages(send) => messages::send(shard, context, session, send).await,
        Request::PollMessages(poll) => messages::poll(shard, context, session, poll).await,
        Request::FlushUnsavedBuffer(flush) => messages::flush(shard, flush).await,
        Request::GetConsumerOffset(get) => offsets::get(shard, get).await,
        Request::StoreConsumerOffset(store) => offsets::store(shard, context, session, store).await,
        Request::DeleteConsumerOffset(delete) => {
            offsets::delete(shard, context, session, delete).await
        }
        Request::DeleteSegments(delete) => segments::delete(shard, delete).await,
        Request::GetConsumerGroup(get) => groups::get(shard, get),
        Request::GetConsumerGroups(list) => groups::list(shard, list),
        Request::CreateConsumerGroup(create) => groups::create(shard, create).await,
        Request::DeleteConsumerGroup(delete) => groups::delete(shard, delete).await,
        Request::JoinConsumerGroup(join) => groups::join(shard, session, join).await,
        Request::LeaveConsumerGroup(leave) => groups::leave(shard, context, session, leave).await,
        // Snapshots (a ZIP of diagnostics) are not built; PROTOCOL.md §5.1 allows refusing
        // them with 5, after the permission check.
        Request::GetSnapshotFile(_) => Err(ErrorCode::FeatureUnavailable.into()),
    }
}
