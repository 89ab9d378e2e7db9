//! Command dispatch: a flat match, generated from the protocol's one command table, calling
//! each request type's [`Handler`]; the handlers are grouped by family in `handler/*.rs` like
//! the protocol's `command/*.rs`.

/// `impl Handler` for requests that name no stream, topic or user, one line each:
/// `Request: need => |cx, request| handler call;`, where `need` is `Some(Need::…)`, or `None`
/// for the commands that need no login.
macro_rules! unscoped_handlers {
    ($($name:ident: $need:expr => |$cx:tt, $request:tt| $run:expr;)+) => {$(
        impl $crate::handler::Handler for $name {
            type Scope = ();
            fn resolve(&self, _: &galgo_metadata::Metadata) {}
            fn need(_: &()) -> Option<galgo_metadata::Need> {
                $need
            }
            async fn handle(self, $cx: $crate::handler::Cx<'_>, _: ()) -> $crate::handler::Outcome {
                let $request = self;
                $run
            }
        }
    )+};
}

/// The `impl Handler` of a request that names a stream or a topic: its scope type, how a
/// request (`this`) resolves it, the `on_*` that builds its need, and its handler. Written
/// once for [`stream_handlers!`] and [`topic_handlers!`].
macro_rules! scoped_handler {
    (
        $name:ident, $scope_type:ty, |$this:ident, $metadata:ident| $resolve:expr,
        $on:path, $need:path, |$cx:tt, $request:tt, $scope:tt| $run:expr
    ) => {
        impl $crate::handler::Handler for $name {
            type Scope = $scope_type;
            fn resolve(&self, $metadata: &galgo_metadata::Metadata) -> Self::Scope {
                let $this = self;
                $resolve
            }
            fn need(scope: &Self::Scope) -> Option<galgo_metadata::Need> {
                $on(scope, $need)
            }
            async fn handle(
                self,
                $cx: $crate::handler::Cx<'_>,
                $scope: Self::Scope,
            ) -> $crate::handler::Outcome {
                let $request = self;
                $run
            }
        }
    };
}

/// `impl Handler` for requests that name one stream (their `stream` field), one line each:
/// `Request: Need::Variant => |cx, request, scope| handler call;`.
macro_rules! stream_handlers {
    ($($name:ident: $need:path => |$cx:tt, $request:tt, $scope:tt| $run:expr;)+) => {$(
        scoped_handler!(
            $name,
            $crate::handler::StreamScope,
            |this, metadata| $crate::handler::stream_scope(metadata, &this.stream),
            $crate::handler::on_stream,
            $need,
            |$cx, $request, $scope| $run
        );
    )+};
}

/// `impl Handler` for requests that name one topic (their `stream` and `topic` fields, or
/// those of their field `in field`), one line each:
/// `Request: Need::Variant => |cx, request, scope| handler call;`.
macro_rules! topic_handlers {
    ($($name:ident $(in $field:ident)?: $need:path => |$cx:tt, $request:tt, $scope:tt| $run:expr;)+) => {$(
        scoped_handler!(
            $name,
            $crate::handler::TopicScope,
            |this, metadata| $crate::handler::topic_scope(
                metadata,
                &this$(.$field)?.stream,
                &this$(.$field)?.topic,
            ),
            $crate::handler::on_topic,
            $need,
            |$cx, $request, $scope| $run
        );
    )+};
}

mod groups;
mod messages;
mod metadata_change;
mod offsets;
mod partition_calls;
mod remote;
mod segments;
mod streams;
mod system;
mod tokens;
mod topics;
mod users;

pub use groups::{GroupServing, expire_revocations as expire_group_revocations};
pub(crate) use metadata_change::{change_metadata, partitions_created_by};
pub(crate) use partition_calls::{PartitionOp, on_owners};
pub(crate) use remote::Calls as RemoteCalls;
pub(crate) use system::this_node;
pub use tokens::clean_expired as clean_expired_tokens;
pub(crate) use users::{PendingRoot, create_root};
pub use users::{ensure_root, start_root_creation};

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use galgo_metadata::{Metadata, MetadataError, Need, StreamId, TopicId, TopicKey};
use galgo_protocol::{Command, Identifier, Request, vsr::batch::KeptRecord};

use crate::{
    authorization,
    context::{Context, Shard},
    error::CommandError,
    session::Session,
};

/// A successful answer: payload chunks sent back to back after the response header (the
/// 0.8 payload; the 0.9 envelope converts it at the edge).
#[derive(Debug, Default)]
pub struct Reply {
    chunks: Vec<Bytes>,
    appended: Option<Appended>,
    /// A poll's chunks that a 0.9 producer sent, in its layout, for a 0.9 reply to send as
    /// they are (their `chunk` indexes `chunks`).
    kept: Vec<KeptRecord>,
}

/// Where a send's messages went, which the 0.9 generation confirms (PROTOCOL-0.9.md §8.8)
/// and the 0.8 one does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The stream's numeric id.
    pub stream_id: u32,
    /// The topic's numeric id.
    pub topic_id: u32,
    /// The partition.
    pub partition_id: u32,
    /// The offset of the batch's first message.
    pub base_offset: u64,
}

impl Reply {
    /// The empty OK.
    pub fn empty() -> Self {
        Self::chunks(Vec::new())
    }
    /// One contiguous payload.
    pub fn bytes(payload: BytesMut) -> Self {
        Self::chunks(vec![payload.freeze()])
    }
    /// A payload in pieces (stored messages are sent as they are).
    pub fn chunks(chunks: Vec<Bytes>) -> Self {
        Self {
            chunks,
            appended: None,
            kept: Vec::new(),
        }
    }
    /// A poll's reply: the head and the stored messages, with the frames kept for some of
    /// them.
    pub fn polled(chunks: Vec<Bytes>, kept: Vec<KeptRecord>) -> Self {
        Self {
            chunks,
            appended: None,
            kept,
        }
    }
    /// The empty OK of a send, with where its messages went.
    pub fn appended(appended: Appended) -> Self {
        Self {
            chunks: Vec::new(),
            appended: Some(appended),
            kept: Vec::new(),
        }
    }
    /// Where a send's messages went, for a send.
    pub fn appended_to(&self) -> Option<Appended> {
        self.appended
    }
    /// Encodes a response type into a reply.
    pub fn encoded(encode: impl FnOnce(&mut BytesMut)) -> Self {
        let mut payload = BytesMut::new();
        encode(&mut payload);
        Self::bytes(payload)
    }
    /// The chunks.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }
    /// The chunks, and the frames kept for some of them.
    pub fn into_polled(self) -> (Vec<Bytes>, Vec<KeptRecord>) {
        (self.chunks, self.kept)
    }
}

/// A connection ended: its client leaves every consumer group it joined.
pub async fn client_gone(shard: &Rc<Shard>, context: &Context, client_id: u32) {
    groups::leave_all(shard, context, client_id).await;
}

/// What a command ends in.
pub type Outcome = Result<Reply, CommandError>;

/// What a handler runs with: its shard, the server's state on that shard, and the session of
/// the connection that sent the request. Lives on the shard serving the connection.
pub struct Cx<'a> {
    /// The shard serving the connection.
    pub shard: &'a Rc<Shard>,
    /// The server's state on that shard.
    pub context: &'a Context,
    /// The connection's session.
    pub session: &'a mut Session,
}

/// How the server runs one command, implemented once per request type beside its handler in
/// `handler/*.rs`. Dispatch is generated from the protocol's one command table, so a request
/// type without this impl does not compile.
///
/// A request's identifiers are resolved once, against this shard's replica, into its
/// [`Handler::Scope`]; the permission check and the handler both use that scope. A scope that
/// names nothing (a resolution error) needs no permission: the handler gives its usual
/// answer, the empty one or a not-found code, as Iggy does, and nothing is created, changed or
/// read in that case.
pub trait Handler: Command + Sized {
    /// The ids the request names, resolved (or why they could not be).
    type Scope;

    /// Resolves the request's identifiers against the replica.
    fn resolve(&self, metadata: &Metadata) -> Self::Scope;

    /// The grant the command needs in `scope`; `None` when the scope names nothing. Ignored
    /// for the commands that need no login ([`CommandCode::requires_auth`]).
    ///
    /// [`CommandCode::requires_auth`]: galgo_protocol::CommandCode::requires_auth
    fn need(scope: &Self::Scope) -> Option<Need>;

    /// Runs the command.
    async fn handle(self, cx: Cx<'_>, scope: Self::Scope) -> Outcome;
}

/// Resolves, checks and runs one request of type `C`. The login itself was checked before the
/// request was decoded ([`authorization::authenticate`]).
async fn run<C: Handler>(cx: Cx<'_>, request: C) -> Outcome {
    let scope = request.resolve(&cx.shard.metadata.borrow());
    if C::CODE.requires_auth() {
        authorization::authorize(cx.shard, cx.session, C::need(&scope))?;
    }
    request.handle(cx, scope).await
}

/// Generates [`handle`] from the protocol's command table.
macro_rules! dispatch {
    ($($(#[$doc:meta])* $name:ident = $code:literal $($owned:ident)?,)+) => {
        /// Runs one decoded request for a session: a flat match calling each request type's
        /// [`Handler`].
        pub async fn handle(cx: Cx<'_>, request: Request) -> Outcome {
            match request {
                $(Request::$name(request) => run(cx, request).await,)+
            }
        }
    };
}

galgo_protocol::for_each_command!(dispatch);

/// A stream named by a request, resolved.
pub type StreamScope = Result<StreamId, MetadataError>;

/// A topic named by a request, resolved.
pub type TopicScope = Result<TopicKey, MetadataError>;

/// Resolves a stream identifier.
pub fn stream_scope(metadata: &Metadata, stream: &Identifier) -> StreamScope {
    metadata.stream(stream).map(|found| found.id)
}

/// Resolves a stream and a topic identifier.
pub fn topic_scope(metadata: &Metadata, stream: &Identifier, topic: &Identifier) -> TopicScope {
    metadata.resolve_topic(stream, topic)
}

/// The need `make` builds from a resolved stream, if it resolved.
pub fn on_stream(scope: &StreamScope, make: fn(StreamId) -> Need) -> Option<Need> {
    scope.as_ref().ok().map(|&stream| make(stream))
}

/// The need `make` builds from a resolved topic, if it resolved.
pub fn on_topic(scope: &TopicScope, make: fn(StreamId, TopicId) -> Need) -> Option<Need> {
    scope.as_ref().ok().map(|key| make(key.stream, key.topic))
}
