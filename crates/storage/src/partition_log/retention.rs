//! Deleting messages: retention's expired and oldest sealed segments, and purge.

use super::{LogState, PartitionLog, RemovedSegments};
use crate::{
    FsyncMode, StorageError, disk,
    segment::{self, ActiveSegment, SealedSegment},
};

impl PartitionLog {
    /// Retention (PROTOCOL.md §9.5): deletes the oldest sealed segments that expired
    /// (`end_timestamp + expiry_us ≤ now_us`) and, while the partition is larger than
    /// `size_bytes_max`, the oldest sealed ones left. The active segment is never deleted, nor
    /// one reaching the retention end (`set_retention_end`). Polls of deleted offsets continue
    /// from the new first offset.
    pub async fn remove_expired_segments(
        &self,
        now_us: u64,
        expiry_us: Option<u64>,
        size_bytes_max: Option<u64>,
    ) -> Result<RemovedSegments, StorageError> {
        let removed: Vec<SealedSegment> = {
            let mut state = self.state.borrow_mut();
            let mut size_bytes = state.size_bytes;
            let expired = |segment: &SealedSegment, size_bytes: u64| {
                expiry_us
                    .is_some_and(|expiry| segment.end_timestamp.saturating_add(expiry) <= now_us)
                    || size_bytes_max.is_some_and(|max| size_bytes > max)
            };
            let retention_end = self.retention_end.get();
            let mut count = 0;
            for segment in &state.sealed {
                if !expired(segment, size_bytes) || segment.end_offset() >= retention_end {
                    break;
                }
                size_bytes -= segment.size_bytes;
                count += 1;
            }
            state.size_bytes = size_bytes;
            let removed = state.sealed.drain(..count).collect();
            self.tail.drop_below(state.first_offset());
            removed
        };
        self.delete_segment_files(removed).await
    }

    /// Deletes up to `count_max` of the oldest sealed segments, stopping at the first whose end
    /// offset is past `end_offset_max`: the delete_segments command (which keeps what a
    /// consumer has not committed yet) and a topic's size limit (which names the last segment
    /// to go). The active segment is never deleted, nor one reaching the retention end.
    pub async fn remove_oldest_segments(
        &self,
        count_max: u32,
        end_offset_max: u64,
    ) -> Result<RemovedSegments, StorageError> {
        let removed: Vec<SealedSegment> = {
            let mut state = self.state.borrow_mut();
            let retention_end = self.retention_end.get();
            let count = state
                .sealed
                .iter()
                .take(count_max as usize)
                .take_while(|segment| {
                    segment.end_offset() <= end_offset_max && segment.end_offset() < retention_end
                })
                .count();
            let removed: Vec<SealedSegment> = state.sealed.drain(..count).collect();
            state.size_bytes -= removed.iter().map(|s| s.size_bytes).sum::<u64>();
            self.tail.drop_below(state.first_offset());
            removed
        };
        self.delete_segment_files(removed).await
    }

    /// Removes the files of segments already taken out of the state.
    async fn delete_segment_files(
        &self,
        removed: Vec<SealedSegment>,
    ) -> Result<RemovedSegments, StorageError> {
        let mut report = RemovedSegments::default();
        for segment in &removed {
            let cached = self
                .sealed_files
                .borrow()
                .as_ref()
                .is_some_and(|files| files.start_offset == segment.start_offset);
            if cached {
                self.sealed_files.borrow_mut().take();
            }
            disk::remove_file_if_exists(&segment::log_path(&self.dir, segment.start_offset))
                .await?;
            disk::remove_file_if_exists(&segment::index_path(&self.dir, segment.start_offset))
                .await?;
            report.segments_count += 1;
            report.messages_count += u64::from(segment.messages_count);
            report.size_bytes += segment.size_bytes;
            tracing::info!(dir = %self.dir.display(), start = segment.start_offset,
                end = segment.end_offset(), size = segment.size_bytes, "segment removed");
        }
        Ok(report)
    }

    /// Deletes every message (journal included) and every stored offset; the next message
    /// gets offset 0. Appends racing with a purge are purged too.
    pub async fn purge(&self) -> Result<(), StorageError> {
        self.restart_at(0, true).await?;
        tracing::info!(dir = %self.dir.display(), "partition purged");
        Ok(())
    }

    /// Deletes every message (journal included) and starts an empty log whose next message
    /// gets `offset`; stored consumer offsets stay. A replica installing its group's snapshot
    /// does this: the leader's retention removed what this replica lacks (docs/architecture.md,
    /// "Snapshots and retention"). Crash safety: the old segments are removed before the new
    /// empty one is created, so a crash leaves a prefix of the old log or the new one; the
    /// replica's `raft_state`, saved first, says which it must be.
    pub async fn reset_to(&self, offset: u64) -> Result<(), StorageError> {
        self.restart_at(offset, false).await?;
        tracing::info!(dir = %self.dir.display(), offset, "partition log restarted at an offset");
        Ok(())
    }

    async fn restart_at(&self, offset: u64, purge_offsets: bool) -> Result<(), StorageError> {
        let _turn = self.flush_lock.lock().await;
        let starts: Vec<u64> = {
            let state = self.state.borrow();
            let sealed = state.sealed.iter().map(|segment| segment.start_offset);
            sealed.chain([state.active.start_offset]).collect()
        };
        // Newest first: a crash part-way leaves a prefix of the old log.
        for start in starts.into_iter().rev() {
            disk::remove_file_if_exists(&segment::log_path(&self.dir, start)).await?;
            disk::remove_file_if_exists(&segment::index_path(&self.dir, start)).await?;
        }
        let active = ActiveSegment::create(&self.dir, offset, self.config.direct_io).await?;
        if self.config.fsync != FsyncMode::Never {
            disk::sync_dir(&self.dir).await?;
        }
        if purge_offsets {
            self.offsets.purge().await?;
        }
        self.sealed_files.borrow_mut().take();
        if let Some(deduplicator) = self.deduplicator.borrow_mut().as_mut() {
            deduplicator.clear();
        }
        let mut state = self.state.borrow_mut();
        self.tail.cache().unjournaled(state.journal.memory_bytes());
        let generation = state.generation + 1;
        *state = LogState::new(Vec::new(), active, 0);
        state.generation = generation;
        self.tail.clear();
        drop(state);
        self.wake_waiters();
        Ok(())
    }
}
