//! The in-memory journal: batches appended but not yet written to the log, in offset order.
//!
//! A batch is one `append` call: its stamped messages as one `Bytes` and its index entries
//! (already relative to the segment and position the batch will be written at) as another. No
//! per-message allocation. A batch stays here, visible to polls, until the write that carries
//! it has completed; only then does it move to the segment's index.

use std::collections::VecDeque;

use bytes::Bytes;
use galgo_protocol::vsr::batch::{KeptRecord, SentFrames};

use crate::{
    Polled,
    disk::WRITE_BUFFERS_MAX,
    offset_index::{self, INDEX_ENTRY_BYTES, IndexEntry},
};

/// Most bytes one run takes (at least one batch, however large): a run is written under the
/// partition's write lock, and an appender waiting at the journal's bound waits for at most
/// one run in flight, not for a whole backlog.
pub(crate) const RUN_BYTES_MAX: u64 = 8 << 20;

/// How much one read of in-memory batches may return: at most `messages_max` messages in at
/// most `bytes_max` bytes, but at least one message when `at_least_one` (a poll's first read,
/// whatever the message's size).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadLimits {
    pub messages_max: u32,
    pub bytes_max: u64,
    pub at_least_one: bool,
}

impl ReadLimits {
    pub(crate) fn new(messages_max: u32, bytes_max: u64, at_least_one: bool) -> Self {
        Self {
            messages_max,
            bytes_max,
            at_least_one,
        }
    }
}

/// One appended batch.
#[derive(Debug)]
pub(crate) struct JournalBatch {
    /// Offset of its first message.
    pub first_offset: u64,
    /// Number of messages.
    pub messages_count: u32,
    /// Start offset of the segment it will be written to.
    pub segment_start: u64,
    /// Byte position in that segment's log where it will be written.
    pub position: u32,
    /// The timestamp all its messages carry.
    pub timestamp: u64,
    /// The stamped messages, back to back.
    pub messages: Bytes,
    /// Their index entries, encoded, one per message.
    pub entries: Bytes,
    /// Memory it keeps allocated besides those two: the bytes of the request its messages
    /// were split off without a copy (a 0.8 request's metadata and index block).
    pub held_bytes: u64,
    /// The messages as the 0.9 producer sent them, served to 0.9 polls as they are.
    pub frames: Option<SentFrames>,
}

impl AsRef<JournalBatch> for JournalBatch {
    fn as_ref(&self) -> &JournalBatch {
        self
    }
}

/// What a batch costs in memory besides its bytes: its record in the queues that hold it,
/// its place in the cache's eviction order, and the allocator's headers and shared counts of
/// its buffers (about 310 bytes). Small against a batch of 1 MB, but not against a batch of
/// one 100-byte message: without it, 1-message batches took 2.4 times the memory the bound
/// counted (measured: 565 bytes of RSS each, 230 counted; with it, 540 counted).
pub const BATCH_OVERHEAD_BYTES: u64 = size_of::<JournalBatch>() as u64 + 128;

impl JournalBatch {
    /// Bytes it holds in memory: its messages, their index entries, what it keeps allocated
    /// with them, and its own overhead.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let frames = self.frames.as_ref().map_or(0, SentFrames::memory_bytes);
        (self.messages.len() + self.entries.len()) as u64
            + self.held_bytes
            + frames
            + BATCH_OVERHEAD_BYTES
    }

    /// The kept frames of messages `[from, to)`, which lie at `range` of `messages`, for
    /// chunk `chunk` of a read.
    fn kept_record(
        &self,
        from: u32,
        to: u32,
        range: (usize, usize),
        chunk: usize,
    ) -> Option<KeptRecord> {
        let sent = self.frames.as_ref()?;
        sent.record((from, to), range, chunk, self.first_offset, self.timestamp)
    }

    pub(crate) fn end_offset_exclusive(&self) -> u64 {
        self.first_offset + u64::from(self.messages_count)
    }

    fn entry(&self, k: u32) -> IndexEntry {
        offset_index::entry_at(&self.entries, k as usize)
    }

    /// Byte range of messages `[from, to)` within `messages`.
    fn byte_range(&self, from: u32, to: u32) -> (usize, usize) {
        let base = self.position;
        let start = from.checked_sub(1).map_or(base, |k| self.entry(k).position);
        let end = self.entry(to - 1).position;
        ((start - base) as usize, (end - base) as usize)
    }
}

/// Batches taken from the front of the journal to be written together, to one segment.
#[derive(Debug)]
pub(crate) struct Run {
    /// The segment they go to.
    pub segment_start: u64,
    /// Where in its log the first batch goes.
    pub position: u32,
    /// Offset of the first message.
    pub first_offset: u64,
    /// Offset after the last message.
    pub end_offset_exclusive: u64,
    /// Total size of `messages`.
    pub size_bytes: u64,
    /// The batches' messages, for one vectored write to the log.
    pub messages: Vec<Bytes>,
    /// The batches' index entries, for one vectored write to the index.
    pub entries: Vec<Bytes>,
    /// Number of batches taken.
    pub batches_count: usize,
}

/// The journal of one partition. Lives on the partition's shard.
#[derive(Debug)]
pub(crate) struct Journal {
    batches: VecDeque<JournalBatch>,
    messages_count: u64,
    size_bytes: u64,
    /// Front batches currently being written (0 when no write is in flight).
    in_flight_batches: usize,
    in_flight_messages: u64,
    in_flight_bytes: u64,
    /// Segment the next batch goes to and where in its log.
    tail_segment_start: u64,
    tail_position: u64,
}

/// Where the next batch of a given size will be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// Start offset of its segment.
    pub segment_start: u64,
    /// Byte position in that segment's log.
    pub position: u64,
}

impl Journal {
    /// An empty journal whose next batch goes at `position` of segment `segment_start`.
    pub fn new(segment_start: u64, position: u64) -> Self {
        Self {
            batches: VecDeque::new(),
            messages_count: 0,
            size_bytes: 0,
            in_flight_batches: 0,
            in_flight_messages: 0,
            in_flight_bytes: 0,
            tail_segment_start: segment_start,
            tail_position: position,
        }
    }

    /// Where a batch of `size_bytes` starting at `first_offset` goes: at the tail of the current
    /// segment, or at position 0 of a new segment starting at `first_offset` when it would take
    /// a non-empty segment past `segment_size_bytes`.
    pub fn place(&self, first_offset: u64, size_bytes: u64, segment_size_bytes: u64) -> Placement {
        if self.tail_position > 0 && self.tail_position + size_bytes > segment_size_bytes {
            Placement {
                segment_start: first_offset,
                position: 0,
            }
        } else {
            Placement {
                segment_start: self.tail_segment_start,
                position: self.tail_position,
            }
        }
    }

    /// Appends a batch placed by `place`.
    pub fn push(&mut self, batch: JournalBatch) {
        debug_assert!(
            self.batches
                .back()
                .is_none_or(|last| last.end_offset_exclusive() == batch.first_offset),
            "journal batches are contiguous"
        );
        debug_assert_eq!(
            batch.entries.len(),
            batch.messages_count as usize * INDEX_ENTRY_BYTES
        );
        self.tail_segment_start = batch.segment_start;
        self.tail_position = u64::from(batch.position) + batch.messages.len() as u64;
        self.messages_count += u64::from(batch.messages_count);
        self.size_bytes += batch.messages.len() as u64;
        self.batches.push_back(batch);
    }

    /// Bytes of every batch held, index entries included (what the shard's bound counts).
    pub fn memory_bytes(&self) -> u64 {
        self.batches.iter().map(JournalBatch::memory_bytes).sum()
    }

    /// Messages held, in flight included.
    pub fn messages_count(&self) -> u64 {
        self.messages_count
    }

    /// Bytes held, in flight included.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Messages not yet taken by a write.
    pub fn pending_messages(&self) -> u64 {
        self.messages_count - self.in_flight_messages
    }

    /// Bytes not yet taken by a write.
    pub fn pending_bytes(&self) -> u64 {
        self.size_bytes - self.in_flight_bytes
    }

    /// The segment the newest batch goes to.
    pub fn tail_segment_start(&self) -> u64 {
        self.tail_segment_start
    }

    /// Offset of the oldest message held.
    pub fn first_offset(&self) -> Option<u64> {
        self.batches.front().map(|batch| batch.first_offset)
    }

    /// Takes front batches below `end_offset_exclusive`, all bound for the same segment, to be
    /// written together. They stay readable until `commit_run`.
    pub fn take_run(&mut self, end_offset_exclusive: u64) -> Option<Run> {
        assert_eq!(self.in_flight_batches, 0, "one write in flight at a time");
        let first = self.batches.front()?;
        if first.first_offset >= end_offset_exclusive {
            return None;
        }
        let mut run = Run {
            segment_start: first.segment_start,
            position: first.position,
            first_offset: first.first_offset,
            end_offset_exclusive: first.first_offset,
            size_bytes: 0,
            messages: Vec::new(),
            entries: Vec::new(),
            batches_count: 0,
        };
        for batch in self.batches.iter().take(WRITE_BUFFERS_MAX) {
            if batch.segment_start != run.segment_start
                || batch.first_offset >= end_offset_exclusive
                || run.size_bytes >= RUN_BYTES_MAX
            {
                break;
            }
            debug_assert_eq!(
                u64::from(batch.position),
                u64::from(run.position) + run.size_bytes
            );
            run.end_offset_exclusive = batch.end_offset_exclusive();
            run.size_bytes += batch.messages.len() as u64;
            run.messages.push(batch.messages.clone());
            run.entries.push(batch.entries.clone());
        }
        run.batches_count = run.messages.len();
        self.in_flight_batches = run.batches_count;
        self.in_flight_messages = run.end_offset_exclusive - run.first_offset;
        self.in_flight_bytes = run.size_bytes;
        Some(run)
    }

    /// Forgets that a run is in flight (its write failed or was cancelled); its batches stay
    /// and the next write starts from them again.
    pub fn abort_run(&mut self) {
        self.in_flight_batches = 0;
        self.in_flight_messages = 0;
        self.in_flight_bytes = 0;
    }

    /// Appends to `out`'s chunks the stored bytes of the messages from `offset` that `limits`
    /// allow, and to its kept records the frames a 0.9 producer sent of them, where a batch
    /// has them. Zero-copy: the chunks are slices of the batches. Returns the number of
    /// messages and bytes.
    pub fn read(&self, offset: u64, limits: ReadLimits, out: &mut Polled) -> (u32, u64) {
        read_batches(&self.batches, offset, limits, out)
    }

    /// Drops the batches of a run whose write completed and hands them, oldest first, to
    /// `keep` (the tail cache), in the same synchronous step.
    pub fn commit_run(&mut self, run: &Run, mut keep: impl FnMut(JournalBatch)) {
        assert_eq!(self.in_flight_batches, run.batches_count);
        for batch in self.batches.drain(..self.in_flight_batches) {
            keep(batch);
        }
        debug_assert!(
            self.batches
                .front()
                .is_none_or(|batch| batch.first_offset == run.end_offset_exclusive)
        );
        self.messages_count -= self.in_flight_messages;
        self.size_bytes -= self.in_flight_bytes;
        self.abort_run();
    }

    /// Drops every message at `offset` and above (a batch that straddles it keeps its front),
    /// with no write in flight; `offset` must not be below the journal's first message.
    /// Returns the memory bytes given up (what the shard's bound counted for them).
    pub fn truncate_from(&mut self, offset: u64) -> u64 {
        assert_eq!(self.in_flight_batches, 0, "no write in flight");
        debug_assert!(self.first_offset().is_none_or(|first| first <= offset));
        let mut freed = 0;
        while let Some(last) = self.batches.back_mut() {
            if last.end_offset_exclusive() <= offset {
                break;
            }
            let before = last.memory_bytes();
            let (messages_before, size_before) =
                (u64::from(last.messages_count), last.messages.len() as u64);
            if last.first_offset >= offset {
                self.batches.pop_back();
                freed += before;
                self.messages_count -= messages_before;
                self.size_bytes -= size_before;
                continue;
            }
            let keep = (offset - last.first_offset) as u32;
            let (_, end) = last.byte_range(0, keep);
            last.frames = last
                .frames
                .take()
                .and_then(|frames| frames.prefix(keep, end));
            last.messages = last.messages.slice(..end);
            last.entries = last.entries.slice(..keep as usize * INDEX_ENTRY_BYTES);
            last.messages_count = keep;
            freed += before - last.memory_bytes();
            self.messages_count -= messages_before - u64::from(keep);
            self.size_bytes -= size_before - end as u64;
        }
        if let Some(last) = self.batches.back() {
            self.tail_segment_start = last.segment_start;
            self.tail_position = u64::from(last.position) + last.messages.len() as u64;
        }
        freed
    }

    /// Whether the journal holds no batch.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Timestamp of the newest batch.
    pub fn last_timestamp(&self) -> Option<u64> {
        self.batches.back().map(|batch| batch.timestamp)
    }

    /// The first message with timestamp ≥ `timestamp` (all of a batch share its timestamp).
    pub fn offset_at_timestamp(&self, timestamp: u64) -> Option<u64> {
        let at = self
            .batches
            .partition_point(|batch| batch.timestamp < timestamp);
        self.batches.get(at).map(|batch| batch.first_offset)
    }
}

/// What `Journal::read` does, over any contiguous batches in offset order (the journal's, or
/// the tail cache's): `offset` must not be below the first batch.
pub(crate) fn read_batches<B: AsRef<JournalBatch>>(
    batches: &VecDeque<B>,
    offset: u64,
    limits: ReadLimits,
    out: &mut Polled,
) -> (u32, u64) {
    let ReadLimits {
        messages_max,
        bytes_max,
        at_least_one,
    } = limits;
    let mut at = batches.partition_point(|batch| batch.as_ref().end_offset_exclusive() <= offset);
    let (mut messages, mut bytes) = (0u32, 0u64);
    let mut offset = offset;
    while let Some(batch) = batches.get(at).map(AsRef::as_ref) {
        if messages == messages_max {
            break;
        }
        debug_assert!(batch.first_offset <= offset && offset < batch.end_offset_exclusive());
        let from = (offset - batch.first_offset) as u32;
        let to = fit(
            batch,
            from,
            messages_max - messages,
            bytes_max.saturating_sub(bytes),
            at_least_one && messages == 0,
        );
        if to == from {
            break;
        }
        let (start, end) = batch.byte_range(from, to);
        out.chunks.push(batch.messages.slice(start..end));
        if let Some(record) = batch.kept_record(from, to, (start, end), out.chunks.len() - 1) {
            out.kept.push(record);
        }
        messages += to - from;
        bytes += (end - start) as u64;
        offset += u64::from(to - from);
        if to < batch.messages_count {
            break;
        }
        at += 1;
    }
    (messages, bytes)
}

/// The end (exclusive) of the longest run of messages from `from` in `batch` that respects
/// both limits; `from + 1` at least when `at_least_one`.
fn fit(
    batch: &JournalBatch,
    from: u32,
    messages_max: u32,
    bytes_max: u64,
    at_least_one: bool,
) -> u32 {
    let start = from
        .checked_sub(1)
        .map_or(batch.position, |k| batch.entry(k).position);
    let to_max = (u64::from(from) + u64::from(messages_max)).min(u64::from(batch.messages_count));
    offset_index::fit(
        &batch.entries,
        start,
        from as usize,
        to_max as usize,
        bytes_max,
        at_least_one,
    ) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `sizes.len()` fake messages (contents are irrelevant to the journal).
    fn batch(first_offset: u64, position: u32, timestamp: u64, sizes: &[u32]) -> JournalBatch {
        let mut entries = Vec::new();
        let mut end = position;
        for (k, size) in sizes.iter().enumerate() {
            end += size;
            let relative_offset = (first_offset + k as u64) as u32;
            entries.extend_from_slice(
                &IndexEntry {
                    relative_offset,
                    position: end,
                    timestamp,
                }
                .encode(),
            );
        }
        let messages: Vec<u8> = (0..end - position).map(|byte| byte as u8).collect();
        JournalBatch {
            first_offset,
            messages_count: sizes.len() as u32,
            segment_start: 0,
            position,
            timestamp,
            messages: Bytes::from(messages),
            entries: Bytes::from(entries),
            held_bytes: 0,
            frames: None,
        }
    }

    fn journal() -> Journal {
        let mut journal = Journal::new(0, 0);
        journal.push(batch(0, 0, 10, &[64, 100]));
        journal.push(batch(2, 164, 20, &[70, 80, 90]));
        journal
    }

    #[test]
    fn read_crosses_batches_without_copying() {
        let journal = journal();
        let mut out = Polled::default();
        assert_eq!(
            journal.read(1, ReadLimits::new(3, u64::MAX, true), &mut out),
            (3, 250)
        );
        assert_eq!(
            out.chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            vec![100, 150]
        );
        out = Polled::default();
        assert_eq!(
            journal.read(4, ReadLimits::new(10, u64::MAX, true), &mut out),
            (1, 90)
        );
    }

    #[test]
    fn read_respects_the_byte_budget_but_returns_one_message() {
        let journal = journal();
        let mut out = Polled::default();
        assert_eq!(
            journal.read(0, ReadLimits::new(10, 170, true), &mut out),
            (2, 164)
        );
        out = Polled::default();
        assert_eq!(
            journal.read(1, ReadLimits::new(10, 1, true), &mut out),
            (1, 100)
        );
        out = Polled::default();
        assert_eq!(
            journal.read(1, ReadLimits::new(10, 1, false), &mut out),
            (0, 0)
        );
    }

    #[test]
    fn runs_stay_readable_until_committed() {
        let mut journal = journal();
        let run = journal.take_run(u64::MAX).expect("a run");
        assert_eq!(
            (run.first_offset, run.end_offset_exclusive, run.size_bytes),
            (0, 5, 404)
        );
        assert_eq!(journal.pending_messages(), 0);
        let mut out = Polled::default();
        assert_eq!(
            journal
                .read(0, ReadLimits::new(5, u64::MAX, true), &mut out)
                .0,
            5
        );
        journal.commit_run(&run, drop);
        assert_eq!(
            (journal.messages_count(), journal.first_offset()),
            (0, None)
        );
    }

    #[test]
    fn placement_rolls_only_a_non_empty_segment() {
        let journal = Journal::new(7, 0);
        assert_eq!(journal.place(7, 5_000, 1_000).position, 0);
        assert_eq!(journal.place(7, 5_000, 1_000).segment_start, 7);
        let journal = journal_at(7, 900);
        assert_eq!(
            journal.place(12, 200, 1_000),
            Placement {
                segment_start: 12,
                position: 0
            }
        );
        assert_eq!(journal.place(12, 100, 1_000).position, 900);
    }

    fn journal_at(segment_start: u64, position: u64) -> Journal {
        Journal::new(segment_start, position)
    }

    #[test]
    fn timestamps_find_the_first_batch_at_or_after() {
        let journal = journal();
        assert_eq!(journal.offset_at_timestamp(5), Some(0));
        assert_eq!(journal.offset_at_timestamp(11), Some(2));
        assert_eq!(journal.offset_at_timestamp(21), None);
    }
}
