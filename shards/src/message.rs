//! What travels through a shard's inbox. Every message is one-way.

use std::{any::Any, future::Future, pin::Pin, rc::Rc, sync::Arc};

use galgo_metadata::{Event, Metadata, ShardId};

use crate::{Shard, ShardState};

/// The boxed value a call produced; its type is fixed by the call that made it.
pub(crate) type ReplyValue = Box<dyn Any + Send>;

/// Work sent to another shard: runs there, on that shard's state, and yields the reply.
pub(crate) type Job<S> =
    Box<dyn FnOnce(Rc<Shard<S>>) -> Pin<Box<dyn Future<Output = ReplyValue>>> + Send>;

/// Work sent from a thread that is not a shard (see `ShardsHandle`): runs on the target
/// shard as a task of its own, which hands its value back itself.
pub(crate) type ExternalJob<S> =
    Box<dyn FnOnce(Rc<Shard<S>>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// One inbox message.
pub(crate) enum ShardMessage<S: ShardState> {
    /// Run `job` here and send its value back to `from` as a `Reply` with `call_id`.
    Call {
        from: ShardId,
        call_id: u64,
        job: Job<S>,
    },
    /// The result of a call this shard made.
    Reply { call_id: u64, value: ReplyValue },
    /// A metadata change to apply, in version order.
    Event(Arc<Event>),
    /// A whole metadata state to take instead of this shard's (a cluster node's metadata
    /// snapshot), in order with the events around it.
    Replace(Arc<Metadata>),
    /// Run work for a thread that is not a shard.
    External(ExternalJob<S>),
    /// Leave the inbox loop: the shard is done.
    Stop,
    /// Shard 0 only: stop the whole server gracefully.
    Shutdown,
}
