//! One shard's state and its typed cross-shard calls.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::Future,
    os::fd::RawFd,
    path::PathBuf,
    rc::Rc,
    sync::Arc,
};

use futures_channel::oneshot;
use galgo_metadata::{Change, Event, Metadata, PartitionKey, ShardId};
use galgo_storage::{MetadataLog, PartitionLog, StorageConfig, StorageError, TailCache};
use thiserror::Error;

use crate::{
    ShardCounters, StorageSettings,
    counters::ShardCounters as Counters,
    message::{Job, ReplyValue, ShardMessage},
};

/// A cross-shard call that could not complete.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The target shard's inbox is closed: the server is stopping.
    #[error("shard {0} is stopped")]
    ShardStopped(ShardId),
}

/// What the layer above the engine keeps on each shard (the server's clients, sessions and
/// counters), like Seastar's `sharded<T>`: one value per shard, built on the shard's own thread
/// and reached only there, through [`Shard::state`]. The engine tells it what it must know.
pub trait ShardState: 'static {
    /// A metadata event was just applied to this shard's replica.
    fn on_event(&self, _event: &Event) {}

    /// This shard's replica was just replaced by `new` (a snapshot); `old` is what it was.
    fn on_replace(&self, _old: &Metadata, _new: &Metadata) {}

    /// Connections still open on this shard: a graceful shutdown waits (a bounded time) for
    /// them to finish before closing the partitions.
    fn open_connections(&self) -> usize {
        0
    }
}

/// An engine with nothing above it (its own tests).
impl ShardState for () {}

/// The state of one shard. Lives on its own thread (it is `!Send`); other shards reach it only
/// through its inbox.
pub struct Shard<S: ShardState = ()> {
    id: ShardId,
    inboxes: Vec<flume::Sender<ShardMessage<S>>>,
    pending: RefCell<HashMap<u64, oneshot::Sender<ReplyValue>>>,
    next_call_id: Cell<u64>,
    /// This shard's metadata replica. Never borrowed across an `.await`.
    pub metadata: RefCell<Metadata>,
    partitions: RefCell<HashMap<PartitionKey, Rc<PartitionLog>>>,
    /// Counters for GetShardStats.
    pub counters: ShardCounters,
    storage: StorageSettings,
    storage_config: Rc<StorageConfig>,
    /// The recent batches of this shard's partitions, in memory within one bound.
    tail_cache: Rc<TailCache>,
    /// Shard 0 only: the metadata log, behind the lock that serialises metadata changes.
    writer: Option<async_lock::Mutex<MetadataLog>>,
    /// Sockets (listeners and connections) whose reads end when the shard stops.
    sockets: RefCell<HashMap<RawFd, ()>>,
    stopping: Cell<bool>,
    state: S,
}

impl<S: ShardState> Shard<S> {
    pub(crate) fn new(
        id: ShardId,
        inboxes: Vec<flume::Sender<ShardMessage<S>>>,
        storage: StorageSettings,
        tail_cache_bytes_max: u64,
        writer: Option<MetadataLog>,
        state: S,
    ) -> Self {
        let shard_count = inboxes.len() as u16;
        let mut metadata = Metadata::new(shard_count, storage.segment_size_bytes);
        metadata.set_topic_defaults(storage.topic_defaults);
        let storage_config = Rc::new(StorageConfig {
            segment_size_bytes: storage.segment_size_bytes,
            journal_messages_max: storage.journal_messages_max,
            journal_bytes_max: storage.journal_bytes_max,
            fsync: storage.fsync,
            direct_io: storage.direct_io,
        });
        Self {
            id,
            inboxes,
            pending: RefCell::default(),
            next_call_id: Cell::new(0),
            metadata: RefCell::new(metadata),
            partitions: RefCell::default(),
            counters: Counters::default(),
            storage,
            storage_config,
            tail_cache: TailCache::new(tail_cache_bytes_max),
            writer: writer.map(async_lock::Mutex::new),
            sockets: RefCell::default(),
            stopping: Cell::new(false),
            state,
        }
    }

    /// What the layer above keeps on this shard.
    pub fn state(&self) -> &S {
        &self.state
    }

    /// This shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// How many shards the server runs.
    pub fn shard_count(&self) -> u16 {
        self.inboxes.len() as u16
    }

    /// Every shard id, this one included.
    pub fn all_shards(&self) -> impl Iterator<Item = ShardId> + use<S> {
        (0..self.shard_count()).map(ShardId)
    }

    /// The storage settings every shard shares.
    pub fn storage(&self) -> &StorageSettings {
        &self.storage
    }

    /// The shard's tail cache (its bound, what it holds, how polls were served).
    pub fn tail_cache(&self) -> &TailCache {
        &self.tail_cache
    }

    /// True once the shard has begun to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Runs `job` on shard `target` and returns what it produced. The reply type follows from
    /// the closure. On the calling shard itself the job runs in place, with no hop.
    pub async fn call<T, F, Fut>(self: &Rc<Self>, target: ShardId, job: F) -> Result<T, CallError>
    where
        F: FnOnce(Rc<Shard<S>>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        if target == self.id {
            return Ok(job(self.clone()).await);
        }
        let call_id = self.next_call_id.get();
        self.next_call_id.set(call_id + 1);
        let (slot, reply) = oneshot::channel();
        self.pending.borrow_mut().insert(call_id, slot);
        let job: Job<S> = Box::new(move |shard| {
            Box::pin(async move { Box::new(job(shard).await) as ReplyValue })
        });
        let message = ShardMessage::Call {
            from: self.id,
            call_id,
            job,
        };
        if self.send(target, message).await.is_err() {
            self.pending.borrow_mut().remove(&call_id);
            return Err(CallError::ShardStopped(target));
        }
        ShardCounters::bump(&self.counters.calls_sent);
        let value = reply.await.map_err(|_| CallError::ShardStopped(target))?;
        Ok(*value
            .downcast::<T>()
            .expect("a reply has the type of the call that made it"))
    }

    /// Sends into `target`'s inbox, waiting while it is full.
    pub(crate) async fn send(&self, target: ShardId, message: ShardMessage<S>) -> Result<(), ()> {
        self.inboxes[usize::from(target.0)]
            .send_async(message)
            .await
            .map_err(|_| ())
    }

    /// Completes a pending call. A reply nobody waits for (the caller gave up) is dropped.
    pub(crate) fn complete(&self, call_id: u64, value: ReplyValue) {
        if let Some(slot) = self.pending.borrow_mut().remove(&call_id) {
            let _ = slot.send(value);
        }
    }

    /// Applies a metadata event from shard 0.
    pub(crate) fn apply_event(&self, event: &Event) {
        self.metadata.borrow_mut().apply(event);
        self.state.on_event(event);
        ShardCounters::bump(&self.counters.events_applied);
    }

    /// Takes `metadata` instead of this shard's replica (from shard 0, in order with events).
    pub(crate) fn replace_metadata_here(&self, metadata: &Metadata) {
        let old = std::mem::replace(&mut *self.metadata.borrow_mut(), metadata.clone());
        self.state.on_replace(&old, metadata);
        ShardCounters::bump(&self.counters.events_applied);
    }

    /// Shard 0 only: replaces the metadata replica of every shard with `metadata` (a cluster
    /// node restoring a snapshot of the metadata group), this one first, in order with the
    /// events broadcast before and after it.
    pub async fn replace_metadata(&self, metadata: Metadata) {
        let metadata = Arc::new(metadata);
        self.replace_metadata_here(&metadata);
        for target in self.all_shards().filter(|&shard| shard != self.id) {
            // A closed inbox means that shard already stopped; it needs no more metadata.
            let _ = self
                .send(target, ShardMessage::Replace(metadata.clone()))
                .await;
        }
    }

    /// Shard 0 only: takes the metadata-change lock. Hold it from `prepare_*` to `commit`, so
    /// that what was validated is what gets applied.
    pub async fn lock_metadata(&self) -> async_lock::MutexGuard<'_, MetadataLog> {
        self.writer
            .as_ref()
            .expect("only shard 0 writes metadata")
            .lock()
            .await
    }

    /// Shard 0 only: persists `change` (fsynced; membership changes are not persisted, see
    /// [`Change::is_durable`]), applies it here and broadcasts it to every other shard before
    /// returning, so the caller's shard applies it before it sees the reply.
    pub async fn commit(
        &self,
        log: &MetadataLog,
        change: impl Into<Change>,
    ) -> Result<Arc<Event>, StorageError> {
        let change = change.into();
        if change.is_durable() {
            let event = Event {
                version: self.metadata.borrow().version() + 1,
                change,
            };
            log.append(&event.to_record()).await?;
            return Ok(self.publish(event.change).await);
        }
        Ok(self.publish(change).await)
    }

    /// Shard 0 only: applies `change` here and broadcasts it to every other shard, without
    /// the metadata log: for a change made durable elsewhere (a cluster's committed entry).
    pub async fn publish(&self, change: impl Into<Change>) -> Arc<Event> {
        let event = Event {
            version: self.metadata.borrow().version() + 1,
            change: change.into(),
        };
        self.apply_event(&event);
        let event = Arc::new(event);
        self.broadcast(&event).await;
        event
    }

    pub(crate) async fn broadcast(&self, event: &Arc<Event>) {
        for target in self.all_shards().filter(|&shard| shard != self.id) {
            // A closed inbox means that shard already stopped; it needs no more events.
            let _ = self.send(target, ShardMessage::Event(event.clone())).await;
        }
    }

    /// The directory of a partition's log.
    pub fn partition_dir(&self, key: &PartitionKey) -> PathBuf {
        self.storage.data_dir.join(format!(
            "streams/{}/topics/{}/partitions/{}",
            key.stream, key.topic, key.partition
        ))
    }

    /// A partition this shard owns.
    pub fn partition(&self, key: &PartitionKey) -> Option<Rc<PartitionLog>> {
        self.partitions.borrow().get(key).cloned()
    }

    /// Every partition this shard owns.
    pub fn owned_partitions(&self) -> Vec<(PartitionKey, Rc<PartitionLog>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(key, log)| (*key, log.clone()))
            .collect()
    }

    /// Opens (recovering) a partition's log and takes ownership of it. With `fresh`, whatever
    /// sits in its directory is an orphan of an unfinished change and is removed first.
    pub async fn open_partition(&self, key: PartitionKey, fresh: bool) -> Result<(), StorageError> {
        let dir = self.partition_dir(&key);
        if fresh {
            galgo_storage::remove_partition(&dir).await?;
        }
        let (log, report) =
            PartitionLog::open(dir, self.storage_config.clone(), &self.tail_cache).await?;
        if let Some(deduplication) = self.storage.deduplication {
            log.enable_deduplication(deduplication);
        }
        tracing::debug!(shard = self.id.0, partition = %key, ?report, "partition opened");
        self.partitions.borrow_mut().insert(key, log);
        Ok(())
    }

    /// Closes a partition this shard owns and deletes its files.
    pub async fn remove_partition(&self, key: PartitionKey) -> Result<(), StorageError> {
        let removed = self.partitions.borrow_mut().remove(&key);
        if let Some(log) = removed {
            log.close().await?;
        }
        galgo_storage::remove_partition(&self.partition_dir(&key)).await
    }

    /// Registers a socket whose reads are shut down when the shard stops.
    pub fn register_socket(&self, fd: RawFd) {
        self.sockets.borrow_mut().insert(fd, ());
    }

    /// Forgets a socket (before it is closed).
    pub fn unregister_socket(&self, fd: RawFd) {
        self.sockets.borrow_mut().remove(&fd);
    }

    /// Stops accepting and reading: every registered socket's read side is shut down, so
    /// pending accepts and reads end and their loops see `is_stopping()`.
    pub fn begin_stopping(&self) {
        self.stopping.set(true);
        // Long polls parked on this shard's partitions answer now, so their connections can
        // close within the drain.
        for log in self.partitions.borrow().values() {
            log.wake_waiters();
        }
        for &fd in self.sockets.borrow().keys() {
            // SAFETY: the fd is registered only while its owner keeps the socket open.
            unsafe { libc_shutdown_read(fd) };
        }
    }
}

/// shutdown(fd, SHUT_RD): ends pending reads and accepts without closing the fd.
unsafe fn libc_shutdown_read(fd: RawFd) {
    // SAFETY: shutdown(2) on a valid fd has no memory effects; errors are harmless here.
    unsafe { libc::shutdown(fd, libc::SHUT_RD) };
}
