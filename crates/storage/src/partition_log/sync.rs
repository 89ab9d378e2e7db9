//! fdatasyncs: of the active log (on which every promise of durability rests) and of the
//! sealed logs, which run in tasks of their own from their roll until a sync waits for them.

use compio::runtime::JoinHandle;

use super::PartitionLog;
use crate::StorageError;

impl PartitionLog {
    /// fdatasyncs the active log; everything written before the call is then durable.
    ///
    /// Writes may complete while it runs (when the caller does not hold `flush_lock`): the
    /// sync vouches only for what was written when it started, a segment may have rolled
    /// (the roll starts the old log's sync, which the next sync waits for) and a purge may
    /// have replaced the log, so the marks only ever move forward, and only on the log and
    /// generation that were synced.
    pub(super) async fn sync_active(&self) -> Result<(), StorageError> {
        let _sync = self.sync_lock.lock().await;
        self.sync_active_locked().await
    }

    /// [`Self::sync_active`] for a caller that holds `sync_lock`. Syncs are serialised so that
    /// one waiting for a sealed log's fdatasync (see `roll`) cannot be overtaken by another
    /// that reports offsets durable in the meantime.
    pub(super) async fn sync_active_locked(&self) -> Result<(), StorageError> {
        // Segments sealed before this sync must be durable when it reports its offsets.
        // Rolls may seal more segments while this waits: loop until none is pending, then
        // read the active segment's marks with no await in between.
        loop {
            let mut pending = std::mem::take(&mut *self.sealed_syncs.borrow_mut()).into_iter();
            if pending.len() == 0 {
                break;
            }
            while let Some(sealed_sync) = pending.next() {
                if let Err(error) = sealed_sync.wait().await {
                    // Failed syncs, and those not waited for, are tried again by the next sync.
                    let mut queue = self.sealed_syncs.borrow_mut();
                    queue.push(SealedSync::start(error.log));
                    queue.extend(pending);
                    return Err(error.error.into());
                }
                let mut counters = self.io_counters.get();
                counters.sealed_fsyncs_count += 1;
                self.io_counters.set(counters);
            }
        }
        let (log, start_offset, generation, size_bytes, written_next_offset) = {
            let state = self.state.borrow();
            let active = &state.active;
            (
                active.log.clone(),
                active.start_offset,
                state.generation,
                active.size_bytes,
                active.next_offset(),
            )
        };
        let started = std::time::Instant::now();
        log.sync_data().await?;
        let mut counters = self.io_counters.get();
        counters.fsyncs_count += 1;
        counters.fsyncs_time_us += started.elapsed().as_micros() as u64;
        self.io_counters.set(counters);
        let mut state = self.state.borrow_mut();
        if state.generation != generation {
            return Ok(());
        }
        if state.active.start_offset == start_offset {
            state.active.synced_bytes = state.active.synced_bytes.max(size_bytes);
        }
        state.synced_next_offset = state.synced_next_offset.max(written_next_offset);
        Ok(())
    }
}

/// The fdatasync of a sealed log, running in a task of its own since its roll.
pub(super) struct SealedSync {
    task: JoinHandle<Result<(), FailedSync>>,
}

impl SealedSync {
    /// Lets the fdatasync finish on its own (its log is being dropped).
    pub(super) fn detach(self) {
        self.task.detach();
    }
}

/// A failed sealed-log fdatasync, with the log to try again.
struct FailedSync {
    log: compio::fs::File,
    error: std::io::Error,
}

impl SealedSync {
    pub(super) fn start(log: compio::fs::File) -> Self {
        let task = compio::runtime::spawn(async move {
            match log.sync_data().await {
                Ok(()) => Ok(()),
                Err(error) => Err(FailedSync { log, error }),
            }
        });
        Self { task }
    }

    async fn wait(self) -> Result<(), FailedSync> {
        match self.task.await {
            Ok(synced) => synced,
            Err(_) => panic!("the fdatasync task of a sealed log panicked"),
        }
    }
}
