//! The per-shard saver: writes out journals that did not reach a flush threshold, and with
//! `fsync = "interval"` syncs what was written, so that data never waits long in memory.

use std::{
    cell::RefCell,
    collections::HashSet,
    rc::Rc,
    time::{Duration, Instant},
};

use galgo_storage::FsyncMode;

use crate::{MemoryReading, Shard, ShardState};

/// Runs until the shard stops. Each partition is flushed in a task of its own, so one slow
/// disk operation never holds up the others, and at most one at a time: a partition whose
/// flush outlasts a tick (a backlog the disk has not caught up with) is skipped until it
/// ends, rather than queueing another flush behind it at every tick. Start one on every
/// shard.
pub async fn run_saver<S: ShardState>(shard: Rc<Shard<S>>) {
    let settings = shard.storage().clone();
    let period = Duration::from_millis(settings.flush_interval_ms.max(1));
    let fsync_every = Duration::from_millis(settings.fsync_interval_ms.max(1));
    let mut last_sync = Instant::now();
    let mut ticks = compio::time::interval(period);
    let in_flight = Rc::new(RefCell::new(HashSet::new()));
    // Partitions whose interval sync fell on a tick that skipped them: synced at the next.
    let mut sync_owed = HashSet::new();
    loop {
        ticks.tick().await;
        if shard.is_stopping() {
            return;
        }
        let sync_now = settings.fsync == FsyncMode::Interval && last_sync.elapsed() >= fsync_every;
        if sync_now {
            last_sync = Instant::now();
        }
        give_memory_back(&shard);
        for (key, log) in shard.owned_partitions() {
            let needs_write = log.unflushed_messages() > 0;
            let needs_sync = (sync_now || sync_owed.contains(&key)) && log.unsynced_bytes() > 0;
            if !needs_write && !needs_sync {
                continue;
            }
            if !in_flight.borrow_mut().insert(key) {
                if needs_sync {
                    sync_owed.insert(key);
                }
                continue;
            }
            sync_owed.remove(&key);
            let shard_id = shard.id().0;
            let in_flight = in_flight.clone();
            compio::runtime::spawn(async move {
                if let Err(error) = log.flush(needs_sync).await {
                    tracing::error!(shard = shard_id, partition = %key, %error, "periodic flush failed");
                }
                in_flight.borrow_mut().remove(&key);
            })
            .detach();
        }
    }
}

/// Under memory pressure the tail cache goes first: half of what it holds, oldest first, at
/// every tick while memory stays short. Its bound is unchanged, so it fills again after.
fn give_memory_back<S: ShardState>(shard: &Shard<S>) {
    let cache = shard.tail_cache();
    if cache.bytes() == 0 {
        return;
    }
    let Some(reading) = MemoryReading::now() else {
        return;
    };
    if reading.is_low() {
        let freed = cache.shrink_to(cache.bytes() / 2);
        tracing::warn!(
            shard = shard.id().0,
            freed,
            available = reading.available,
            limit = reading.limit,
            "memory is short: tail cache halved"
        );
    }
}
