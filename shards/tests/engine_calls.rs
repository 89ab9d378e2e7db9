//! The engine end to end: typed calls between real shard threads and graceful shutdown.

mod support;

use std::sync::{Arc, Mutex};

use galgo_metadata::ShardId;
use galgo_shards::{Engine, Readiness, Serve};
use support::{shards, storage};

#[test]
fn calls_reach_their_shard_and_local_calls_do_not_hop() {
    let dir = tempfile::tempdir().expect("temp dir");
    let seen: Arc<Mutex<Vec<(u16, u64, u64)>>> = Arc::default();
    let report = seen.clone();
    let serve: Serve<()> = Box::new(move |shard0| {
        Box::pin(async move {
            for target in [ShardId(2), ShardId(1), ShardId(0)] {
                let ran_on = shard0
                    .call(target, |shard| async move { shard.id().0 })
                    .await
                    .map_err(|error| error.to_string())?;
                let counters = (
                    shard0.counters.calls_sent.get(),
                    shard0.counters.calls_received.get(),
                );
                report
                    .lock()
                    .expect("lock")
                    .push((ran_on, counters.0, counters.1));
            }
            Ok(())
        })
    });
    let mut engine = Engine::start(
        shards(3),
        storage(dir.path()),
        std::sync::Arc::new(|_| ()),
        serve,
    )
    .expect("start");
    assert_eq!(engine.wait_ready().expect("ready"), Readiness::Serving);
    // Start-up itself calls every shard (open partitions, start savers); what matters is
    // that a call to shard 0 from shard 0 does not count as sent.
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen.iter().map(|entry| entry.0).collect::<Vec<_>>(),
        [2, 1, 0]
    );
    assert_eq!(seen[1].1, seen[0].1 + 1, "a call to another shard is sent");
    assert_eq!(
        seen[2].1, seen[1].1,
        "a call to the shard itself runs in place"
    );
    engine.shutdown_handle().shutdown();
    engine.wait_stopped().expect("graceful stop");
    assert!(dir.path().join("state/metadata.log").exists());
}

/// A shutdown asked while shard 0 is still starting (a SIGTERM right after the process
/// starts) stops every shard; waiting for readiness then returns instead of waiting forever.
#[test]
fn a_shutdown_during_startup_ends_the_wait_for_readiness() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (asked, asked_rx) = std::sync::mpsc::channel::<()>();
    let serve: Serve<()> = Box::new(move |_shard0| {
        Box::pin(async move {
            // Start-up is under way: tell the test, then never finish.
            asked.send(()).expect("test waits");
            std::future::pending::<()>().await;
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
    asked_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("serve started");
    engine.shutdown_handle().shutdown();
    assert_eq!(
        engine.wait_ready().expect("no failure"),
        Readiness::StoppedDuringStartup
    );
    engine.wait_stopped().expect("graceful stop");
}
