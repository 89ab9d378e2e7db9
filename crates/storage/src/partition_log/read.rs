//! Polls: messages in offset order from the sealed segments, the active one and the journal,
//! and the offset a timestamp falls on.

use super::{POLL_BYTES_MAX, PartitionLog, Polled};
use crate::{
    StorageError, disk,
    journal::ReadLimits,
    segment::{self, SealedSegment, SegmentFiles},
};

/// Where the next part of a poll comes from.
enum ReadPlan {
    /// Nothing more to read.
    End,
    /// Served from memory (journal or tail cache): messages and bytes already pushed.
    Served(u32, u64),
    /// A range of the active segment's log.
    Active {
        log: compio::fs::File,
        position: u32,
        len: usize,
        messages_count: u32,
    },
    /// From relative offset `k` of a sealed segment, at most this many messages (no further
    /// than the tail cache's first offset).
    Sealed(SealedSegment, u32, u32),
}

impl PartitionLog {
    /// Up to `count` messages from `start_offset`, in offset order, across segments, files,
    /// batches being written and the journal. At most `POLL_BYTES_MAX` bytes unless the first
    /// message alone is larger. An offset below the first kept one starts at the first kept one.
    pub async fn poll(&self, start_offset: u64, count: u32) -> Result<Polled, StorageError> {
        let start = start_offset.max(self.first_offset());
        let mut polled = Polled {
            first_offset: start,
            ..Polled::default()
        };
        let mut bytes = 0u64;
        while polled.messages_count < count {
            let offset = start + u64::from(polled.messages_count);
            let messages_max = count - polled.messages_count;
            let at_least_one = polled.messages_count == 0;
            let bytes_max = POLL_BYTES_MAX.saturating_sub(bytes);
            if bytes_max == 0 && !at_least_one {
                break;
            }
            let limits = ReadLimits::new(messages_max, bytes_max, at_least_one);
            let plan = self.plan_read(offset, limits, &mut polled);
            let (messages, read) = match plan {
                ReadPlan::End => break,
                ReadPlan::Served(messages, read) => (messages, read),
                ReadPlan::Active {
                    log,
                    position,
                    len,
                    messages_count,
                } => {
                    let chunk = disk::read_bytes_at(&log, len, u64::from(position)).await?;
                    polled.chunks.push(chunk);
                    (messages_count, len as u64)
                }
                ReadPlan::Sealed(segment, k, messages_max) => {
                    let read = match self.sealed_files(segment.start_offset).await {
                        Ok(files) => {
                            segment::read_sealed(&files, &segment, k, messages_max, bytes_max).await
                        }
                        Err(error) => Err(error),
                    };
                    match read {
                        Ok(read) => {
                            let len = read.bytes.len() as u64;
                            polled.chunks.push(read.bytes);
                            (read.messages_count, len)
                        }
                        // Retention removed the segment while we were reading it: start
                        // again from what is kept now, or return what was read so far.
                        Err(_) if segment.start_offset < self.first_offset() => {
                            if polled.messages_count > 0 {
                                break;
                            }
                            return Box::pin(self.poll(self.first_offset(), count)).await;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            };
            if messages == 0 {
                break;
            }
            polled.messages_count += messages;
            bytes += read;
        }
        Ok(polled)
    }

    /// Decides where `offset` is read from; serves it right away when it is in the journal.
    fn plan_read(&self, offset: u64, limits: ReadLimits, polled: &mut Polled) -> ReadPlan {
        let state = self.state.borrow();
        if offset >= state.next_offset {
            return ReadPlan::End;
        }
        if let Some(journal_first) = state.journal.first_offset()
            && offset >= journal_first
        {
            let (messages, bytes) = state.journal.read(offset, limits, polled);
            self.tail.cache().count_read(true);
            return ReadPlan::Served(messages, bytes);
        }
        // Below the journal: the tail cache, which ends where the journal begins; below the
        // cache, the files, read no further than the cache's first offset.
        let messages_max = match self.tail.first_offset() {
            Some(cache_first) if offset >= cache_first => {
                let (messages, bytes) = self.tail.read(offset, limits, polled);
                self.tail.cache().count_read(true);
                return ReadPlan::Served(messages, bytes);
            }
            Some(cache_first) => limits
                .messages_max
                .min(u32::try_from(cache_first - offset).unwrap_or(u32::MAX)),
            None => limits.messages_max,
        };
        self.tail.cache().count_read(false);
        let active = &state.active;
        if offset >= active.start_offset {
            let k = (offset - active.start_offset) as u32;
            debug_assert!(
                k < active.index.len(),
                "offsets below the journal are written"
            );
            let to = active
                .index
                .fit(k, messages_max, limits.bytes_max, limits.at_least_one);
            if to == k {
                return ReadPlan::Served(0, 0);
            }
            let position = active.index.start_position(k);
            let end = active.index.get(to - 1).position;
            return ReadPlan::Active {
                log: active.read_log.clone(),
                position,
                len: (end - position) as usize,
                messages_count: to - k,
            };
        }
        let at = state
            .sealed
            .partition_point(|segment| segment.start_offset <= offset);
        let segment = state.sealed[at.checked_sub(1).expect("offset ≥ first offset")];
        debug_assert!(offset <= segment.end_offset());
        ReadPlan::Sealed(
            segment,
            (offset - segment.start_offset) as u32,
            messages_max,
        )
    }

    /// Offset of the first message whose timestamp is ≥ `ts_us`, if any.
    pub async fn offset_at_timestamp(&self, ts_us: u64) -> Result<Option<u64>, StorageError> {
        let sealed = {
            let state = self.state.borrow();
            let at = state
                .sealed
                .partition_point(|segment| segment.end_timestamp < ts_us);
            match state.sealed.get(at) {
                Some(segment) => *segment,
                None => {
                    let active = &state.active;
                    return Ok(match active.index.first_at_or_after(ts_us) {
                        Some(k) => Some(active.start_offset + u64::from(k)),
                        None => state.journal.offset_at_timestamp(ts_us),
                    });
                }
            }
        };
        let files = self.sealed_files(sealed.start_offset).await?;
        Ok(segment::sealed_offset_at_timestamp(&files, &sealed, ts_us).await?)
    }

    /// Read handles on a sealed segment, from the one-entry cache or freshly opened.
    async fn sealed_files(&self, start_offset: u64) -> std::io::Result<SegmentFiles> {
        if let Some(files) = self.sealed_files.borrow().as_ref()
            && files.start_offset == start_offset
        {
            return Ok(files.clone());
        }
        let files = SegmentFiles::open(&self.dir, start_offset).await?;
        *self.sealed_files.borrow_mut() = Some(files.clone());
        Ok(files)
    }
}
