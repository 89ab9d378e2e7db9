//! Settings shared by the engine tests: small rings and inboxes, unpinned shards, storage in
//! a temporary directory with the default thresholds and no cleaner.

use std::path::Path;

use galgo_metadata::TopicDefaults;
use galgo_shards::{ShardSettings, StorageSettings};
use galgo_storage::{DirectIo, FsyncMode};

/// `count` unpinned shards with 64-entry rings and 16-message inboxes.
pub fn shards(count: usize) -> Vec<ShardSettings> {
    vec![
        ShardSettings {
            cpu: None,
            ring_entries: 64,
            coop_taskrun: true,
            sqpoll_idle_ms: 0,
            inbox_capacity: 16,
            tail_cache_bytes_max: 16 << 20,
        };
        count
    ]
}

/// Storage under `dir`: 1 MiB segments and journal, `fsync = "interval"`, no cleaner.
pub fn storage(dir: &Path) -> StorageSettings {
    StorageSettings {
        data_dir: dir.to_path_buf(),
        segment_size_bytes: 1 << 20,
        journal_messages_max: 1024,
        journal_bytes_max: 1 << 20,
        fsync: FsyncMode::Interval,
        direct_io: DirectIo::Auto,
        flush_interval_ms: 1000,
        fsync_interval_ms: 1000,
        topic_defaults: TopicDefaults::default(),
        cleaner_interval_ms: 0,
        deduplication: None,
    }
}
