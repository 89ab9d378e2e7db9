//! A partition's log: segments on disk, the journal in memory, and the stored consumer offsets.
//!
//! Concurrency: a `PartitionLog` lives on its owning shard and is `!Send`; many tasks of that
//! shard call it at once and interleave at every `.await`. Offsets, timestamps and the journal
//! change only in synchronous sections (no `.await` while the state is borrowed), so the journal
//! is always in offset order. All disk writes (flush, roll, purge) hold `flush_lock`, so one
//! write is in flight at a time (a requested fdatasync of `flush` runs after the lock is
//! released, so a long sync never holds up appends); batches being written stay in the journal, readable, until
//! their write completes and they move into the active segment's index in one step. Every
//! offset below `next_offset` is therefore always either in the journal or written to a file.
//!
//! Group commit (`fsync = "always"`): an appender pushes its batch and then waits until
//! `synced_next_offset` passes its last offset. Whoever takes `flush_lock` first writes
//! everything in the journal; then whoever takes `sync_lock` first fdatasyncs everything
//! written so far. The appenders queued behind either find themselves written, or covered,
//! and skip that stage; writes of the next group proceed while the current group's fdatasync
//! runs.

//!
//! The code follows the paths through the log, one file each: `append` (journaling a batch and
//! waiting for its group commit), `flush` (writing the journal to the active segment, rolling
//! to the next), `sync` (the fdatasyncs of active and sealed logs), `read` (polls) and
//! `retention` (deleting segments, purge). This file holds the state they share, `open`, and
//! the counters and stored offsets.

mod append;
mod flush;
mod read;
mod replica;
mod retention;
mod sync;

use std::{
    cell::{Cell, RefCell},
    path::{Path, PathBuf},
    rc::{Rc, Weak},
};

use async_lock::Mutex;
use bytes::Bytes;
use galgo_protocol::vsr::batch::KeptRecord;

use crate::{
    DeduplicationConfig, OffsetOwner, RecoveryReport, StorageConfig, StorageError,
    consumer_offsets::ConsumerOffsets,
    deduplication::Deduplicator,
    disk,
    journal::Journal,
    recovery,
    segment::{ActiveSegment, SealedSegment, SegmentFiles},
    tail_cache::{CachedTail, TailCache},
};
use sync::SealedSync;

/// How many times `journal_bytes_max` (and `journal_messages_max`) the journal may hold before
/// an appender must first write it out itself, waiting for any write in flight: the journal's
/// bound while the disk is slower than the appenders, or failing.
pub const JOURNAL_BACKLOG_FACTOR: u64 = 4;

/// Most bytes one poll returns (at least one message is always returned, however large). Bounds
/// the memory a poll with a huge `count` can take; clients continue from the next offset.
pub const POLL_BYTES_MAX: u64 = 32 << 20;

/// Offsets given to an appended batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendReceipt {
    /// Offset of the batch's first message.
    pub first_offset: u64,
    /// Offset of the batch's last message; `first_offset - 1` (an empty range) when
    /// deduplication dropped every message.
    pub last_offset: u64,
    /// Messages deduplication dropped.
    pub duplicates_count: u32,
}

/// Messages returned by a poll: stored bytes, exactly as they are sent to clients.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Polled {
    /// Offset of the first message returned (the requested offset, or the first kept one).
    pub first_offset: u64,
    /// Number of messages in `chunks`.
    pub messages_count: u32,
    /// Whole messages back to back, in offset order, split into chunks at batch and read
    /// boundaries.
    pub chunks: Vec<Bytes>,
    /// The chunks whose messages a 0.9 producer sent, in its layout (their `chunk` indexes
    /// `chunks`), for 0.9 polls to send as they are.
    pub kept: Vec<KeptRecord>,
}

impl Polled {
    /// Total size of the returned messages.
    pub fn size_bytes(&self) -> u64 {
        self.chunks.iter().map(|chunk| chunk.len() as u64).sum()
    }
}

/// Counters of one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Messages kept (journal included).
    pub messages_count: u64,
    /// Bytes of messages kept (journal included).
    pub size_bytes: u64,
    /// Segments, the active one included.
    pub segments_count: u32,
}

/// How hard the partition works its disk: evidence that group commit groups.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Journal runs written (one vectored write to the log and one to the index each).
    pub writes_count: u64,
    /// fdatasyncs of the active log by flushes (sealing a segment not included).
    pub fsyncs_count: u64,
    /// Time those fdatasyncs took, µs (their average latency is this over their count).
    pub fsyncs_time_us: u64,
    /// fdatasyncs of sealed logs that a later sync has waited for.
    pub sealed_fsyncs_count: u64,
}

/// One segment, as retention and operators see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of its first message.
    pub start_offset: u64,
    /// Offset of its last message; `None` for an empty active segment.
    pub end_offset: Option<u64>,
    /// Timestamp of its last message (0 when empty).
    pub end_timestamp: u64,
    /// Bytes of its log written so far (the journal not included).
    pub size_bytes: u64,
    /// False for the active segment, which never expires.
    pub sealed: bool,
}

/// What `remove_expired_segments` deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemovedSegments {
    /// Sealed segments deleted.
    pub segments_count: u32,
    /// Messages they held.
    pub messages_count: u64,
    /// Bytes they held.
    pub size_bytes: u64,
}

/// Mutable state, borrowed only in synchronous sections.
struct LogState {
    sealed: Vec<SealedSegment>,
    active: ActiveSegment,
    journal: Journal,
    /// Offset the next appended message gets.
    next_offset: u64,
    /// Every offset below this is covered by an fdatasync.
    synced_next_offset: u64,
    /// Timestamp of the newest message: timestamps never go back, which keeps every index
    /// sorted by time for the binary searches of `offset_at_timestamp`.
    last_timestamp: u64,
    /// Bytes of all kept messages, journal included.
    size_bytes: u64,
    /// Bumped by `purge`, so that appenders waiting for durability of purged data stop waiting.
    generation: u64,
}

impl LogState {
    fn new(sealed: Vec<SealedSegment>, active: ActiveSegment, last_timestamp: u64) -> Self {
        let next_offset = active.next_offset();
        let size_bytes = sealed.iter().map(|s| s.size_bytes).sum::<u64>() + active.size_bytes;
        Self {
            journal: Journal::new(active.start_offset, active.size_bytes),
            sealed,
            active,
            next_offset,
            synced_next_offset: next_offset,
            last_timestamp,
            size_bytes,
            generation: 0,
        }
    }

    fn first_offset(&self) -> u64 {
        self.sealed
            .first()
            .map_or(self.active.start_offset, |segment| segment.start_offset)
    }
}

/// A partition's log. Lives on the partition's owning shard (`!Send`); call it from any task
/// of that shard.
pub struct PartitionLog {
    dir: PathBuf,
    config: Rc<StorageConfig>,
    state: RefCell<LogState>,
    /// Serialises writes to the partition's segment files (flush, roll, purge).
    flush_lock: Mutex<()>,
    /// Serialises the group-commit fdatasyncs of `fsync = "always"` (see `wait_durable`).
    sync_lock: Mutex<()>,
    /// fdatasyncs of sealed logs that rolls started and no sync has waited for yet.
    sealed_syncs: RefCell<Vec<SealedSync>>,
    /// This log, for the background journal writes `append` starts.
    me: Weak<PartitionLog>,
    /// True while a background journal write is queued or running.
    writing: Cell<bool>,
    offsets: ConsumerOffsets,
    io_counters: Cell<IoCounters>,
    /// Ids appended recently, when deduplication is on.
    deduplicator: RefCell<Option<Deduplicator>>,
    /// Read handles on the sealed segment read last (at most one, so memory and open files
    /// stay flat however many segments there are).
    sealed_files: RefCell<Option<SegmentFiles>>,
    /// Batches already written, kept in memory below the journal (tail_cache.rs).
    tail: Rc<CachedTail>,
    /// Notified by every append, purge and close: what long polls park on.
    appended: event_listener::Event,
    /// Retention and segment deletes never remove a message at or above this offset
    /// ([`PartitionLog::set_retention_end`]).
    retention_end: Cell<u64>,
}

impl PartitionLog {
    /// Opens the partition in `dir` (creating the directory if absent) and recovers it: see
    /// the `recovery` module for what is checked and repaired. What it writes from now on is
    /// kept in memory within the bounds of `cache`, its shard's tail cache.
    pub async fn open(
        dir: PathBuf,
        config: Rc<StorageConfig>,
        cache: &Rc<TailCache>,
    ) -> Result<(Rc<PartitionLog>, RecoveryReport), StorageError> {
        config.validate()?;
        disk::create_dir_all(&dir).await?;
        let mut report = RecoveryReport::default();
        let (sealed, active, last_timestamp) =
            recovery::recover_segments(&dir, &config, &mut report).await?;
        let state = LogState::new(sealed, active, last_timestamp);
        let last_offset = state.next_offset.checked_sub(1);
        let offsets = ConsumerOffsets::open(&dir, config.fsync).await?;
        report.clamped_offsets = offsets.clamp(last_offset).await?;
        if !report.is_clean() {
            tracing::warn!(dir = %dir.display(), messages = report.messages_count(),
                dropped_bytes = report.log_bytes_dropped(), "partition recovered with repairs");
        }
        let log = Rc::new_cyclic(|me| PartitionLog {
            dir,
            config,
            state: RefCell::new(state),
            flush_lock: Mutex::new(()),
            sync_lock: Mutex::new(()),
            sealed_syncs: RefCell::new(Vec::new()),
            me: me.clone(),
            writing: Cell::new(false),
            offsets,
            sealed_files: RefCell::new(None),
            deduplicator: RefCell::new(None),
            io_counters: Cell::new(IoCounters::default()),
            tail: CachedTail::new(cache.clone()),
            appended: event_listener::Event::new(),
            retention_end: Cell::new(u64::MAX),
        });
        Ok((log, report))
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Turns on deduplication by message id: from now on a message whose id this partition
    /// appended within the configured bounds is dropped from its batch.
    pub fn enable_deduplication(&self, config: DeduplicationConfig) {
        *self.deduplicator.borrow_mut() = Some(Deduplicator::new(config));
    }

    /// The segments, oldest first, the active one last.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let state = self.state.borrow();
        let sealed = state.sealed.iter().map(|segment| SegmentInfo {
            start_offset: segment.start_offset,
            end_offset: Some(segment.end_offset()),
            end_timestamp: segment.end_timestamp,
            size_bytes: segment.size_bytes,
            sealed: true,
        });
        let active = &state.active;
        let active = SegmentInfo {
            start_offset: active.start_offset,
            end_offset: active
                .next_offset()
                .checked_sub(1)
                .filter(|_| !active.index.is_empty()),
            end_timestamp: active.index.last().map_or(0, |entry| entry.timestamp),
            size_bytes: active.size_bytes,
            sealed: false,
        };
        sealed.chain([active]).collect()
    }

    /// Bounds what retention and segment deletes may remove: only sealed segments whose
    /// messages are all below `offset`. A replicated partition's group keeps it at the end of
    /// its durably committed entries, so that no replica deletes what Raft may still need to
    /// read back (docs/architecture.md, "Snapshots and retention"). Unbounded by default.
    pub fn set_retention_end(&self, offset: u64) {
        self.retention_end.set(offset);
    }

    /// Start offset of the first segment.
    pub fn first_offset(&self) -> u64 {
        self.state.borrow().first_offset()
    }

    /// Timestamp of the newest message (0 when none was ever appended).
    pub fn last_timestamp(&self) -> u64 {
        self.state.borrow().last_timestamp
    }

    /// The durability mode the log was opened with.
    pub fn fsync_mode(&self) -> crate::FsyncMode {
        self.config.fsync
    }

    /// The offset the next appended message gets.
    pub fn next_offset(&self) -> u64 {
        self.state.borrow().next_offset
    }

    /// The last assigned offset; `None` if the partition never had a message.
    pub fn last_offset(&self) -> Option<u64> {
        self.state.borrow().next_offset.checked_sub(1)
    }

    /// Waits until the partition holds a message at `end` or beyond (`end` is the next offset
    /// a caller saw before it polled and found nothing), or until it is purged, closed or
    /// woken by [`PartitionLog::wake_waiters`]: a long poll then polls again. Costs nothing
    /// while it waits: no timer, no task; the append on this shard wakes it.
    pub async fn wait_for_append(&self, end: u64) {
        let generation = self.state.borrow().generation;
        let changed = || {
            let state = self.state.borrow();
            state.next_offset > end || state.generation != generation
        };
        if changed() {
            return;
        }
        let listener = self.appended.listen();
        // An append between the check and the listener's registration is seen here.
        if changed() {
            return;
        }
        listener.await;
    }

    /// Wakes every long poll parked on this partition (an append, a purge, a close, or the
    /// shard stopping): each polls again, and answers or waits on.
    pub fn wake_waiters(&self) {
        self.appended.notify(usize::MAX);
    }

    /// Messages, bytes and segments kept.
    pub fn stats(&self) -> PartitionStats {
        let state = self.state.borrow();
        PartitionStats {
            messages_count: state.next_offset - state.first_offset(),
            size_bytes: state.size_bytes,
            segments_count: state.sealed.len() as u32 + 1,
        }
    }

    /// Writes and fdatasyncs done since open.
    pub fn io_counters(&self) -> IoCounters {
        self.io_counters.get()
    }

    /// Messages in the journal (not yet written, or being written).
    pub fn unflushed_messages(&self) -> u32 {
        u32::try_from(self.state.borrow().journal.messages_count()).unwrap_or(u32::MAX)
    }

    /// Bytes written to the active segment's log but not yet covered by an fdatasync.
    pub fn unsynced_bytes(&self) -> u64 {
        let state = self.state.borrow();
        state.active.size_bytes - state.active.synced_bytes
    }

    /// The stored offset of a consumer or group.
    pub fn stored_offset(&self, owner: OffsetOwner) -> Option<u64> {
        self.offsets.get(owner)
    }

    /// Every stored consumer and group offset of this partition (for lag figures).
    pub fn stored_offsets(&self) -> Vec<(OffsetOwner, u64)> {
        self.offsets.all()
    }

    /// Stores a consumer's or group's offset and persists it (`offsets/consumers/{id}` or
    /// `offsets/groups/{id}`, replaced atomically; fsynced with `fsync = "always"`). The caller
    /// validates the value against `last_offset`.
    pub async fn store_offset(&self, owner: OffsetOwner, offset: u64) -> Result<(), StorageError> {
        self.offsets.store(owner, offset).await
    }

    /// The lowest offset stored for any consumer or group, if any is.
    pub fn min_stored_offset(&self) -> Option<u64> {
        self.offsets.min()
    }

    /// Removes a stored offset; false if nothing was stored.
    pub async fn delete_offset(&self, owner: OffsetOwner) -> Result<bool, StorageError> {
        self.offsets.delete(owner).await
    }
}

impl Drop for PartitionLog {
    /// A dropped handle would cancel the tasks of pending sealed-log fdatasyncs: they are let
    /// finish instead. Batches still unwritten (a log not closed, or whose writes failed) give
    /// their share of the shard's bound back.
    fn drop(&mut self) {
        for sealed_sync in self.sealed_syncs.get_mut().drain(..) {
            sealed_sync.detach();
        }
        let unwritten = self.state.get_mut().journal.memory_bytes();
        self.tail.cache().unjournaled(unwritten);
    }
}

/// Deletes a partition's directory with everything in it (partition, topic or stream
/// deletion). A missing directory is not an error.
pub async fn remove_partition(dir: &Path) -> Result<(), StorageError> {
    disk::remove_dir_all(dir).await?;
    Ok(())
}
