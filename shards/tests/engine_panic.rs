//! A panicking shard stops the whole engine with a clear message. (A test binary of its own:
//! a panic is fatal to every engine of the process.)

mod support;

use galgo_metadata::ShardId;
use galgo_shards::{Engine, EngineError, Serve};
use support::{shards, storage};

#[test]
fn a_panicking_shard_stops_the_engine_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve: Serve<()> = Box::new(|shard0| {
        Box::pin(async move {
            let _ = shard0
                .call(ShardId(1), |_| async move {
                    panic!("deliberate test panic");
                })
                .await;
            Ok(())
        })
    });
    let mut engine = Engine::start(
        shards(2),
        storage(dir.path()),
        std::sync::Arc::new(|_| ()),
        serve,
    )
    .expect("start");
    match engine.wait_ready() {
        Err(EngineError::Panicked(message)) => {
            assert!(message.contains("galgo-shard-1"), "{message}");
            assert!(message.contains("deliberate test panic"), "{message}");
        }
        other => panic!("expected a panic report, got {other:?}"),
    }
}
