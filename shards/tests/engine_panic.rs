//! A panicking shard stops the whole engine with a clear message. (A test binary of its own:
//! a panic is fatal to every engine of the process.)

use std::path::Path;

use galgo_metadata::{ShardId, TopicDefaults};
use galgo_shards::{Engine, EngineError, Serve, ShardSettings, StorageSettings};
use galgo_storage::{DirectIo, FsyncMode};

fn shards(count: usize) -> Vec<ShardSettings> {
    vec![
        ShardSettings {
            cpu: None,
            ring_entries: 64,
            coop_taskrun: true,
            sqpoll_idle_ms: 0,
            inbox_capacity: 16,
        };
        count
    ]
}

fn storage(dir: &Path) -> StorageSettings {
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

#[test]
fn a_panicking_shard_stops_the_engine_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve: Serve = Box::new(|shard0| {
        Box::pin(async move {
            let _ = shard0
                .call(ShardId(1), |_| async move {
                    panic!("deliberate test panic");
                })
                .await;
            Ok(())
        })
    });
    let mut engine = Engine::start(shards(2), storage(dir.path()), serve).expect("start");
    match engine.wait_ready() {
        Err(EngineError::Panicked(message)) => {
            assert!(message.contains("galgo-shard-1"), "{message}");
            assert!(message.contains("deliberate test panic"), "{message}");
        }
        other => panic!("expected a panic report, got {other:?}"),
    }
}
