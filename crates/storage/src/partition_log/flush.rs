//! Writes of the journal to the active segment, and rolls to a new segment. Every write holds
//! `flush_lock`; a batch stays in the journal, readable, until its write completes.

use std::{cell::RefCell, time::Instant};

use compio::fs::File;
use futures_util::future::join;

use super::{LogState, PartitionLog, sync::SealedSync};
use crate::{
    FsyncMode, StorageError,
    direct_io::{self, DIRECT_IO_BLOCK_BYTES},
    disk,
    journal::Run,
    offset_index::INDEX_ENTRY_BYTES,
    segment::ActiveSegment,
};

impl PartitionLog {
    /// Writes the journal out; fdatasyncs the log when `fsync` is set.
    ///
    /// The fdatasync runs after `flush_lock` is released: after a second of writes it can take
    /// hundreds of milliseconds, and appends that must write their journal out meanwhile would
    /// otherwise wait for all of it (measured: 230–380 ms producer stalls at the saver's
    /// interval sync). It covers everything written before it starts, which is all this
    /// call promises.
    ///
    /// The write lock is taken once per run, so an appender at the journal's bound waits for
    /// one run, not for the whole journal (see `write_until_room`).
    pub async fn flush(&self, fsync: bool) -> Result<(), StorageError> {
        let end_offset = self.state.borrow().next_offset;
        loop {
            let _turn = self.flush_lock.lock().await;
            if !self.write_one_run(end_offset, false).await? {
                break;
            }
        }
        if fsync {
            self.sync_active().await?;
        }
        Ok(())
    }

    /// Graceful shutdown: writes the journal out, cuts the log's O_DIRECT padding and
    /// fdatasyncs the log and its index.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.wake_waiters();
        let _turn = self.flush_lock.lock().await;
        self.flush_locked(false).await?;
        self.cut_padding().await?;
        self.sync_active().await?;
        let index_file = self.state.borrow().active.index_file.clone();
        index_file.sync_data().await?;
        Ok(())
    }

    /// Writes every batch journaled before the call; holds `flush_lock`.
    pub(super) async fn flush_locked(&self, fsync: bool) -> Result<(), StorageError> {
        let end_offset = self.state.borrow().next_offset;
        while self.write_one_run(end_offset, fsync).await? {}
        if fsync {
            self.sync_active().await?;
        }
        Ok(())
    }

    /// Writes runs from the front of the journal until it is back within its bound: an
    /// appender at the bound waits for that much of the disk, not for a whole backlog (which
    /// took one appender 5.6 s to write in a 10 GB run). Holds `flush_lock`.
    pub(super) async fn write_until_room(&self) -> Result<(), StorageError> {
        while self.journal_is_full() {
            let end_offset = self.state.borrow().next_offset;
            if !self.write_one_run(end_offset, false).await? {
                break;
            }
        }
        Ok(())
    }

    /// Writes the journal's next run below `end_offset`, rolling first if it starts a new
    /// segment; false when there was none. Holds `flush_lock`.
    pub(super) async fn write_one_run(
        &self,
        end_offset: u64,
        fsync: bool,
    ) -> Result<bool, StorageError> {
        let Some(run) = self.state.borrow_mut().journal.take_run(end_offset) else {
            return Ok(false);
        };
        let mut in_flight = InFlight {
            state: &self.state,
            committed: false,
        };
        let active_start = self.state.borrow().active.start_offset;
        if run.segment_start != active_start {
            self.roll(run.segment_start, fsync).await?;
        }
        self.write_run(&run).await?;
        in_flight.committed = true;
        Ok(true)
    }

    /// Cuts the active log back to its logical size: an O_DIRECT log ends with the zero
    /// padding of its last block. Holds `flush_lock` (or the log takes no more writes).
    async fn cut_padding(&self) -> Result<(), StorageError> {
        let (log, size_bytes) = {
            let state = self.state.borrow();
            if !state.active.direct {
                return Ok(());
            }
            (state.active.log.clone(), state.active.size_bytes)
        };
        log.set_len(size_bytes).await?;
        Ok(())
    }

    /// Writes one run to the active segment (one write to the log and one to the index, side
    /// by side), then moves it from the journal to the segment's index.
    async fn write_run(&self, run: &Run) -> Result<(), StorageError> {
        let (log, index_file, index_position, direct_tail) = self.run_target(run);
        let position = u64::from(run.position);
        let pace = self.tail.cache().pace();
        pace.write_started(Instant::now());
        // The log and the index are written side by side: recovery trusts neither beyond what
        // the other proves (an index entry past the log's end, or over bytes that fail their
        // checks, is cut), so neither has to land first.
        let log_written = async {
            match direct_tail {
                Some(tail) => Ok(Some(
                    direct_io::write_direct(&log, &tail, &run.messages, position).await?,
                )),
                None => {
                    disk::write_vectored_all_at(&log, run.messages.clone(), position).await?;
                    Ok::<_, StorageError>(None)
                }
            }
        };
        let index_written =
            disk::write_vectored_all_at(&index_file, run.entries.clone(), index_position);
        let (log_written, index_written) = join(log_written, index_written).await;
        let written = index_written.map_err(StorageError::from).and(log_written);
        pace.write_finished(
            if written.is_ok() { run.size_bytes } else { 0 },
            Instant::now(),
        );
        let new_tail = written?;
        let mut counters = self.io_counters.get();
        counters.writes_count += 1;
        self.io_counters.set(counters);
        let mut state = self.state.borrow_mut();
        for entries in &run.entries {
            state.active.index.extend_encoded(entries);
        }
        state.active.size_bytes += run.size_bytes;
        if let Some(new_tail) = new_tail {
            debug_assert_eq!(
                new_tail.len() as u64,
                state.active.size_bytes % DIRECT_IO_BLOCK_BYTES as u64
            );
            state.active.tail = new_tail;
        }
        // Written batches move from the journal to the tail cache in this one synchronous
        // step: every offset stays readable from memory or the file, never from neither.
        let cache = self.tail.cache();
        state.journal.commit_run(run, |batch| {
            cache.unjournaled(batch.memory_bytes());
            self.tail.push(batch);
        });
        debug_assert_eq!(state.active.next_offset(), run.end_offset_exclusive);
        Ok(())
    }

    /// Where `run` goes: the active segment's log and index files, the index position, and
    /// (direct I/O) the log's partial last block. Checks that the run follows the segment.
    fn run_target(&self, run: &Run) -> (File, File, u64, Option<Vec<u8>>) {
        let state = self.state.borrow();
        let active = &state.active;
        assert_eq!(active.start_offset, run.segment_start);
        assert_eq!(
            active.next_offset(),
            run.first_offset,
            "runs are written in order"
        );
        assert_eq!(
            active.size_bytes,
            u64::from(run.position),
            "runs are written back to back"
        );
        debug_assert!(
            run.entries
                .first()
                .is_none_or(|first| active.index.accepts(&first[..INDEX_ENTRY_BYTES])),
            "the run's first index entry follows the segment's last"
        );
        (
            active.log.clone(),
            active.index_file.clone(),
            u64::from(active.index.len()) * INDEX_ENTRY_BYTES as u64,
            active.direct.then(|| active.tail.clone()),
        )
    }

    /// Seals the active segment and starts a new one at `start_offset`. The sealed segment's
    /// fdatasync is started (not awaited: the next `sync_active` waits for it) unless running
    /// with `fsync = "never"` and no fsync was asked.
    async fn roll(&self, start_offset: u64, fsync: bool) -> Result<(), StorageError> {
        let sync = fsync || self.config.fsync != FsyncMode::Never;
        // A sealed segment has no padding: its readers and recovery take the file's end for
        // the end of its messages.
        self.cut_padding().await?;
        let (log, index_file) = {
            let state = self.state.borrow();
            assert_eq!(
                state.active.next_offset(),
                start_offset,
                "a segment is sealed only once all its messages are written"
            );
            (state.active.log.clone(), state.active.index_file.clone())
        };
        if sync {
            // Both fdatasyncs run off the write path: at each roll they held the partition's
            // writes (and so its appenders, once the journal was full) for 30–170 ms in 10 GB
            // runs, the sealed index being ~16 MB of buffered entries for a 1 GiB segment.
            // The sealed log's sync is awaited by the next `sync_active`, which every promise
            // of durability goes through (group commit, the interval sync, flush with fsync),
            // so nothing is reported durable before it is. Nothing depends on the index being
            // durable: recovery trusts it only as far as it agrees with the log.
            self.sealed_syncs.borrow_mut().push(SealedSync::start(log));
            let dir = self.dir.clone();
            compio::runtime::spawn(async move {
                if let Err(error) = index_file.sync_data().await {
                    tracing::warn!(dir = %dir.display(), %error,
                        "fdatasync of a sealed index failed; recovery rebuilds it from the log if it must");
                }
            })
            .detach();
        }
        let next = ActiveSegment::create(&self.dir, start_offset, self.config.direct_io).await?;
        if self.config.fsync != FsyncMode::Never {
            disk::sync_dir(&self.dir).await?;
        }
        let mut state = self.state.borrow_mut();
        let sealed = std::mem::replace(&mut state.active, next).seal();
        tracing::debug!(dir = %self.dir.display(), start = sealed.start_offset,
            end = sealed.end_offset(), size = sealed.size_bytes, "segment sealed");
        state.sealed.push(sealed);
        Ok(())
    }
}

/// Returns a run's batches to the journal's pending set unless its write was committed (on an
/// error, or when the flushing task is dropped mid-write).
struct InFlight<'a> {
    state: &'a RefCell<LogState>,
    committed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.state.borrow_mut().journal.abort_run();
        }
    }
}
