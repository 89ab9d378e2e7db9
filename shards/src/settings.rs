//! What a shard is built from. The server resolves configuration into one of these per shard.

use std::path::PathBuf;

use galgo_metadata::TopicDefaults;
use galgo_storage::{DeduplicationConfig, DirectIo, FsyncMode};

/// The smallest inbox a shard may have: a metadata broadcast sends one event to every
/// inbox, and a call needs room for its reply.
pub const INBOX_CAPACITY_MIN: usize = 16;

/// Settings of one shard: its ring and its inbox.
#[derive(Clone, Debug)]
pub struct ShardSettings {
    /// CPU to pin the thread to, or `None` to leave it to the scheduler (tests and CI).
    pub cpu: Option<usize>,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// IORING_SETUP_COOP_TASKRUN (with TASKRUN_FLAG): fewer interrupts on a busy shard.
    pub coop_taskrun: bool,
    /// SQPOLL idle time in ms, or 0 for no kernel polling thread.
    pub sqpoll_idle_ms: u32,
    /// Bound of the shard's inbox; a sender waits when it is full.
    pub inbox_capacity: usize,
    /// Bound of the shard's tail cache in bytes (recent batches of its partitions kept in
    /// memory); 0 turns it off.
    pub tail_cache_bytes_max: u64,
}

/// Where and how partitions are stored; the same on every shard.
#[derive(Clone, Debug)]
pub struct StorageSettings {
    /// Root of the data directory.
    pub data_dir: PathBuf,
    /// A segment is sealed once it holds this many bytes.
    pub segment_size_bytes: u64,
    /// Journal flush threshold in messages.
    pub journal_messages_max: u32,
    /// Journal flush threshold in bytes.
    pub journal_bytes_max: u64,
    /// When data reaches stable storage.
    pub fsync: FsyncMode,
    /// O_DIRECT writes of the active segments' logs.
    pub direct_io: DirectIo,
    /// How often each shard writes out journals that did not reach a threshold.
    pub flush_interval_ms: u64,
    /// With `fsync = "interval"`: how often written data is fsynced.
    pub fsync_interval_ms: u64,
    /// What "server default" message expiry and topic size resolve to.
    pub topic_defaults: TopicDefaults,
    /// How often each shard's retention cleaner runs; 0 = never.
    pub cleaner_interval_ms: u64,
    /// Deduplication of messages by id, or `None` (the default) for none.
    pub deduplication: Option<DeduplicationConfig>,
}
