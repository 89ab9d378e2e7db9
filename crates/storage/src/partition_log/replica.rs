//! What a replicated partition needs beyond a single node's log: appending a batch another
//! replica stamped, byte for byte, and cutting an uncommitted suffix that the group's leader
//! replaced (docs/architecture.md, "Raft log = partition log").
//!
//! Both keep the log's invariants: offsets stay contiguous, every offset below `next_offset`
//! is in the journal or the files, and what recovery finds after a crash at any point is a
//! prefix of what was there before the call.

use bytes::Bytes;
use galgo_protocol::message::MessageView;

use super::{AppendReceipt, PartitionLog, append::check_block};
use crate::{
    FsyncMode, StorageError, disk,
    journal::{Journal, JournalBatch},
    offset_index::{INDEX_ENTRY_BYTES, IndexEntry},
    recovery,
    segment::{self, ActiveSegment},
};

impl PartitionLog {
    /// Appends `count` messages exactly as another replica stamped them: offsets from this
    /// log's next offset on, one timestamp for all of them, not below this log's newest, ids
    /// and checksums set. Nothing is rewritten and nothing deduplicated (the leader did
    /// that). Written out and made durable as [`PartitionLog::append`] does.
    pub async fn append_stamped(
        &self,
        messages: Bytes,
        count: u32,
    ) -> Result<AppendReceipt, StorageError> {
        check_block(&messages, count)?;
        self.make_room(messages.len() as u64).await?;
        let (receipt, generation) = {
            let mut state = self.state.borrow_mut();
            let first_offset = state.next_offset;
            let size_bytes = messages.len() as u64;
            let (placement, relative_base) = self.place(&state, first_offset, size_bytes, count)?;
            let (timestamp, entries) = stamped_entries(
                &messages,
                count,
                first_offset,
                relative_base,
                placement.position,
            )?;
            if timestamp < state.last_timestamp {
                return Err(StorageError::InvalidBatch(
                    "a stamped batch older than the log's newest message",
                ));
            }
            let batch = JournalBatch {
                first_offset,
                messages_count: count,
                segment_start: placement.segment_start,
                position: placement.position as u32,
                timestamp,
                messages,
                entries,
                held_bytes: 0,
                frames: None,
            };
            self.push_journal_batch(&mut state, batch)
        };
        self.journaled(receipt, generation).await
    }

    /// Removes every message at `offset` and above, from memory and from the files; the next
    /// append gets `offset`. A replica cuts what its group's new leader replaced, which was
    /// never committed and so never read: the caller guarantees that no poll reads at or
    /// above `offset` (a poll racing with the cut may see either side of it). Stored
    /// consumer offsets past the new end are clamped, as at open. An appender still waiting
    /// for the durability of a cut batch stops waiting, as after a purge.
    ///
    /// Crash safety: later segments are removed newest first, then the segment holding
    /// `offset` is cut (log before index); recovery after a crash at any step finds a prefix
    /// of the old log that is at least as long as the cut one. Raft's log records beside the
    /// partition log say where it must end, and are cut with it.
    pub async fn truncate_from(&self, offset: u64) -> Result<(), StorageError> {
        let _turn = self.flush_lock.lock().await;
        let (next_offset, written_end, first_offset) = {
            let state = self.state.borrow();
            (
                state.next_offset,
                state.active.next_offset(),
                state.first_offset(),
            )
        };
        if offset >= next_offset {
            return Ok(());
        }
        if offset < first_offset {
            return Err(StorageError::InvalidBatch(
                "a cut below the log's first offset",
            ));
        }
        if offset >= written_end {
            self.truncate_journal(offset);
        } else {
            self.truncate_files(offset).await?;
        }
        let clamped = self.offsets.clamp(offset.checked_sub(1)).await?;
        if !clamped.is_empty() {
            tracing::warn!(dir = %self.dir.display(), offset, clamped = clamped.len(),
                "stored offsets past the cut were clamped");
        }
        self.wake_waiters();
        tracing::info!(dir = %self.dir.display(), from = offset, to = next_offset,
            "partition log cut");
        Ok(())
    }

    /// The cut lies in the journal: nothing written changes.
    fn truncate_journal(&self, offset: u64) {
        let mut state = self.state.borrow_mut();
        let size_before = state.journal.size_bytes();
        let freed = state.journal.truncate_from(offset);
        self.tail.cache().unjournaled(freed);
        if state.journal.is_empty() {
            state.journal = Journal::new(state.active.start_offset, state.active.size_bytes);
        }
        state.size_bytes -= size_before - state.journal.size_bytes();
        state.next_offset = offset;
        state.synced_next_offset = state.synced_next_offset.min(offset);
        state.last_timestamp = state
            .journal
            .last_timestamp()
            .or_else(|| state.active.index.last().map(|entry| entry.timestamp))
            .or_else(|| state.sealed.last().map(|segment| segment.end_timestamp))
            .unwrap_or(0);
        state.generation += 1;
    }

    /// The cut reaches written messages: the whole journal goes (it lies above them), the
    /// segments from `offset` on are removed, and the one holding `offset` is cut and opened
    /// as the active segment.
    async fn truncate_files(&self, offset: u64) -> Result<(), StorageError> {
        let (starts, containing) = {
            let state = self.state.borrow();
            let starts: Vec<u64> = state
                .sealed
                .iter()
                .map(|segment| segment.start_offset)
                .chain([state.active.start_offset])
                .collect();
            let containing = starts.iter().rev().copied().find(|&start| start < offset);
            (starts, containing)
        };
        self.sealed_files.borrow_mut().take();
        for &start in starts.iter().rev().take_while(|&&start| start >= offset) {
            disk::remove_file_if_exists(&segment::log_path(&self.dir, start)).await?;
            disk::remove_file_if_exists(&segment::index_path(&self.dir, start)).await?;
        }
        let active = match containing {
            // Everything from the first segment on goes: an empty log at `offset`.
            None => ActiveSegment::create(&self.dir, offset, self.config.direct_io).await?,
            Some(start) => self.cut_segment(start, (offset - start) as u32).await?,
        };
        if self.config.fsync != FsyncMode::Never {
            disk::sync_dir(&self.dir).await?;
        }
        let mut state = self.state.borrow_mut();
        state
            .sealed
            .retain(|segment| segment.start_offset < active.start_offset);
        self.tail.cache().unjournaled(state.journal.memory_bytes());
        state.journal = Journal::new(active.start_offset, active.size_bytes);
        state.active = active;
        debug_assert_eq!(state.active.next_offset(), offset);
        state.next_offset = offset;
        state.synced_next_offset = state.synced_next_offset.min(offset);
        state.size_bytes =
            state.sealed.iter().map(|s| s.size_bytes).sum::<u64>() + state.active.size_bytes;
        state.last_timestamp = state
            .active
            .index
            .last()
            .map(|entry| entry.timestamp)
            .or_else(|| state.sealed.last().map(|segment| segment.end_timestamp))
            .unwrap_or(0);
        state.generation += 1;
        drop(state);
        // Cached batches may lie above the cut; polls read the files until the cache fills
        // again (a cut is rare: a leader change that replaced an uncommitted suffix).
        self.tail.clear();
        Ok(())
    }

    /// Cuts the segment starting at `start` to its first `keep` messages (log before index)
    /// and opens it as the active segment.
    async fn cut_segment(&self, start: u64, keep: u32) -> Result<ActiveSegment, StorageError> {
        let end_position = self.end_position(start, keep).await?;
        let log = disk::open_read_write(&segment::log_path(&self.dir, start), false).await?;
        log.set_len(end_position).await?;
        let index = disk::open_read_write(&segment::index_path(&self.dir, start), false).await?;
        index
            .set_len(u64::from(keep) * INDEX_ENTRY_BYTES as u64)
            .await?;
        if self.config.fsync != FsyncMode::Never {
            log.sync_data().await?;
            index.sync_data().await?;
        }
        drop((log, index));
        let recovered = recovery::recover_segment(&self.dir, start, true).await?;
        if recovered.report.messages_count != keep {
            return Err(StorageError::Corrupt(format!(
                "segment {start} recovered {} messages after a cut to {keep}",
                recovered.report.messages_count
            )));
        }
        recovery::open_active(&self.dir, &self.config, recovered).await
    }

    /// Where message `keep` of the segment starting at `start` begins in its log: the end of
    /// the messages a cut keeps.
    async fn end_position(&self, start: u64, keep: u32) -> Result<u64, StorageError> {
        debug_assert!(keep > 0);
        let in_memory = {
            let state = self.state.borrow();
            (state.active.start_offset == start)
                .then(|| u64::from(state.active.index.get(keep - 1).position))
        };
        if let Some(position) = in_memory {
            return Ok(position);
        }
        let index = disk::open_read(&segment::index_path(&self.dir, start)).await?;
        let at = u64::from(keep - 1) * INDEX_ENTRY_BYTES as u64;
        let entry = disk::read_exact_at(&index, INDEX_ENTRY_BYTES, at).await?;
        Ok(u64::from(IndexEntry::decode(&entry).position))
    }
}

/// The index entries of a stamped batch bound for `position` of a segment where its first
/// message has relative offset `relative_base`, and the batch's timestamp. Every message must
/// carry the next offset and the first one's timestamp.
fn stamped_entries(
    messages: &[u8],
    count: u32,
    first_offset: u64,
    relative_base: u32,
    position: u64,
) -> Result<(u64, Bytes), StorageError> {
    let mut entries = Vec::with_capacity(count as usize * INDEX_ENTRY_BYTES);
    let (mut at, mut timestamp) = (0, None);
    for k in 0..count {
        let view = MessageView::parse(&messages[at..]).expect("checked by check_block");
        if view.offset() != first_offset + u64::from(k) {
            return Err(StorageError::InvalidBatch(
                "a stamped batch that does not continue the log",
            ));
        }
        if *timestamp.get_or_insert(view.timestamp()) != view.timestamp() {
            return Err(StorageError::InvalidBatch(
                "a stamped batch with more than one timestamp",
            ));
        }
        at += view.size();
        let entry = IndexEntry {
            relative_offset: relative_base + k,
            position: (position + at as u64) as u32,
            timestamp: view.timestamp(),
        };
        entries.extend_from_slice(&entry.encode());
    }
    Ok((timestamp.unwrap_or(0), Bytes::from(entries)))
}
