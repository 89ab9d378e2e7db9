//! The tail cache: batches already written to their segment, kept in memory so that polls of
//! recent data never touch the disk.
//!
//! A batch enters the cache when its write completes, in the same synchronous step that takes
//! it out of the journal (`Journal::commit_run`): the same `Bytes`, no copy. A partition's
//! cached batches are therefore always contiguous and end exactly where its journal begins
//! (or at its next offset), so a poll finds every offset in exactly one place: the journal,
//! then the cache, then the segment files below the cache's first offset.
//!
//! One [`TailCache`] per shard bounds the bytes of all its partitions' cached batches and
//! evicts the oldest batch of the shard first, whichever partition holds it. Eviction only
//! ever removes a partition's oldest cached batch, so what stays is still contiguous.
//! Retention and purge drop a partition's batches themselves; the shard-wide order then holds
//! stale slots, skipped when reached and compacted away once they outnumber the live ones.
//!
//! The bound covers every batch the shard holds in memory, with what it keeps allocated
//! (`JournalBatch::memory_bytes`): written ones (cached) and those appended but not yet
//! written (the journals' backlog, counted by `journaled`). A backlog
//! that grows because the disk is slower than the producers (or stalls in an fdatasync)
//! takes its room from the cache, oldest first; once unwritten batches fill the whole bound,
//! appenders wait for the disk (`PartitionLog::append`). Memory for message batches therefore
//! never exceeds the bound (beyond each partition's small fixed journal allowance), whatever
//! the producers do.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::{Rc, Weak},
    time::{Duration, Instant},
};

use crate::{
    Polled,
    journal::{self, JournalBatch, ReadLimits},
    write_pace::WritePace,
};

/// Counters of one shard's tail cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailCacheCounters {
    /// Parts of polls served from the cache.
    pub memory_reads: u64,
    /// Parts of polls read from segment files (below the cache).
    pub disk_reads: u64,
    /// Bytes evicted to stay within the bound (or to give memory back under pressure).
    pub evicted_bytes: u64,
    /// Appends that waited for the pace of the shard's writes (write_pace.rs).
    pub paced_appends: u64,
    /// Microseconds they waited, in all.
    pub paced_micros: u64,
}

/// A cached batch's place in the shard-wide eviction order.
struct Slot {
    tail: Weak<CachedTail>,
    seq: u64,
}

/// One shard's bound on the cached tails of its partitions, and their eviction order. Lives on
/// its shard (`!Send`); every `PartitionLog` of the shard holds it.
pub struct TailCache {
    bytes_max: Cell<u64>,
    bytes: Cell<u64>,
    /// Batches cached across the shard's partitions.
    batches: Cell<usize>,
    /// Bytes appended to the shard's journals and not yet written.
    unwritten: Cell<u64>,
    /// Every cached batch, oldest first (and stale slots, see the module page).
    order: RefCell<VecDeque<Slot>>,
    counters: Cell<TailCacheCounters>,
    /// The shard's write rate and the pacing of its appenders (write_pace.rs).
    pace: WritePace,
}

impl TailCache {
    /// A cache of at most `bytes_max` bytes; 0 turns caching off (every poll below the journal
    /// reads the segment files).
    pub fn new(bytes_max: u64) -> Rc<Self> {
        Rc::new(Self {
            bytes_max: Cell::new(bytes_max),
            bytes: Cell::new(0),
            batches: Cell::new(0),
            unwritten: Cell::new(0),
            order: RefCell::new(VecDeque::new()),
            counters: Cell::new(TailCacheCounters::default()),
            pace: WritePace::default(),
        })
    }

    /// The bound, in bytes.
    pub fn bytes_max(&self) -> u64 {
        self.bytes_max.get()
    }

    /// Bytes cached now (messages and their index entries).
    pub fn bytes(&self) -> u64 {
        self.bytes.get()
    }

    /// Bytes appended to the shard's journals and not yet written.
    pub fn unwritten_bytes(&self) -> u64 {
        self.unwritten.get()
    }

    /// A batch of `size` bytes was journaled: room for it is taken from the cache.
    pub(crate) fn journaled(&self, size: u64) {
        self.unwritten.set(self.unwritten.get() + size);
        self.evict_to(self.cache_limit());
    }

    /// Journaled bytes left the journal: written (and passed to the cache), purged or dropped.
    pub(crate) fn unjournaled(&self, size: u64) {
        self.unwritten.set(self.unwritten.get() - size);
    }

    /// True while the shard's unwritten batches leave part of the bound free: a journal past
    /// its own allowance may then keep growing instead of making its appender wait.
    pub(crate) fn journals_have_room(&self) -> bool {
        self.unwritten.get() < self.bytes_max.get()
    }

    /// How long an append of `bytes` waits before it is journaled: none while the shard's
    /// backlog is under half the bound, then the pace of the shard's writes (write_pace.rs).
    /// Nothing is paced without a bound (the journals then keep only their own allowance).
    pub(crate) fn admission(&self, bytes: u64) -> Option<Duration> {
        let bytes_max = self.bytes_max.get();
        if bytes_max == 0 {
            return None;
        }
        let admission = self
            .pace
            .admission(bytes, self.unwritten.get(), bytes_max, Instant::now());
        if let Some(pause) = admission {
            self.count(|counters| {
                counters.paced_appends += 1;
                counters.paced_micros += pause.as_micros() as u64;
            });
        }
        admission
    }

    /// The shard's write rate and admission clock.
    pub(crate) fn pace(&self) -> &WritePace {
        &self.pace
    }

    /// The shard's write rate in bytes per second, as the pacing measured it (0 before its
    /// first sample).
    pub fn write_rate(&self) -> f64 {
        self.pace.rate()
    }

    /// What the cache may hold: the bound less the unwritten backlog.
    fn cache_limit(&self) -> u64 {
        self.bytes_max.get().saturating_sub(self.unwritten.get())
    }

    /// Reads and evictions since the shard started.
    pub fn counters(&self) -> TailCacheCounters {
        self.counters.get()
    }

    /// Evicts oldest first until at most `bytes` are cached (memory pressure); the bound
    /// itself is unchanged, so the cache fills again once the pressure is gone. Returns the
    /// bytes freed.
    pub fn shrink_to(&self, bytes: u64) -> u64 {
        let before = self.bytes.get();
        self.evict_to(bytes);
        before - self.bytes.get()
    }

    fn evict_to(&self, limit: u64) {
        while self.bytes.get() > limit {
            let Some(slot) = self.order.borrow_mut().pop_front() else {
                break;
            };
            if let Some(tail) = slot.tail.upgrade()
                && let Some(size) = tail.evict_front(slot.seq)
            {
                self.count(|counters| counters.evicted_bytes += size);
            }
        }
    }

    fn admit(&self, tail: Weak<CachedTail>, seq: u64, size: u64) {
        self.order.borrow_mut().push_back(Slot { tail, seq });
        self.batches.set(self.batches.get() + 1);
        self.bytes.set(self.bytes.get() + size);
        self.evict_to(self.cache_limit());
        self.compact();
    }

    /// A batch left the cache (evicted, or dropped by its partition).
    fn release(&self, size: u64) {
        self.batches.set(self.batches.get() - 1);
        self.bytes.set(self.bytes.get() - size);
    }

    /// Drops stale slots once they outnumber live ones, so that the order stays proportional
    /// to what is cached however often partitions are purged or deleted.
    fn compact(&self) {
        let mut order = self.order.borrow_mut();
        if order.len() <= 2 * self.batches.get() + 64 {
            return;
        }
        order.retain(|slot| {
            slot.tail
                .upgrade()
                .is_some_and(|tail| tail.front_seq().is_some_and(|front| slot.seq >= front))
        });
    }

    fn count(&self, update: impl FnOnce(&mut TailCacheCounters)) {
        let mut counters = self.counters.get();
        update(&mut counters);
        self.counters.set(counters);
    }

    pub(crate) fn count_read(&self, from_memory: bool) {
        self.count(|counters| {
            if from_memory {
                counters.memory_reads += 1;
            } else {
                counters.disk_reads += 1;
            }
        });
    }
}

/// A cached batch: its sequence number within its partition, its size, and the batch.
struct Cached {
    seq: u64,
    size: u64,
    batch: JournalBatch,
}

impl AsRef<JournalBatch> for Cached {
    fn as_ref(&self) -> &JournalBatch {
        &self.batch
    }
}

/// One partition's cached batches, contiguous in offset order, ending where its journal
/// begins.
pub(crate) struct CachedTail {
    cache: Rc<TailCache>,
    batches: RefCell<VecDeque<Cached>>,
    next_seq: Cell<u64>,
}

impl CachedTail {
    pub fn new(cache: Rc<TailCache>) -> Rc<Self> {
        Rc::new(Self {
            cache,
            batches: RefCell::new(VecDeque::new()),
            next_seq: Cell::new(0),
        })
    }

    /// The shard's cache this tail counts against.
    pub fn cache(&self) -> &TailCache {
        &self.cache
    }

    /// Keeps a batch whose write just completed; it must follow the newest cached one.
    pub fn push(self: &Rc<Self>, batch: JournalBatch) {
        if self.cache.bytes_max() == 0 {
            return;
        }
        let mut batches = self.batches.borrow_mut();
        debug_assert!(
            batches
                .back()
                .is_none_or(|last| last.batch.end_offset_exclusive() == batch.first_offset),
            "cached batches are contiguous"
        );
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let size = batch.memory_bytes();
        batches.push_back(Cached { seq, size, batch });
        drop(batches);
        self.cache.admit(Rc::downgrade(self), seq, size);
    }

    /// Offset of the oldest cached message.
    pub fn first_offset(&self) -> Option<u64> {
        self.batches
            .borrow()
            .front()
            .map(|cached| cached.batch.first_offset)
    }

    fn front_seq(&self) -> Option<u64> {
        self.batches.borrow().front().map(|cached| cached.seq)
    }

    /// Evicts the oldest batch if it is the one slot `seq` stands for; returns its size.
    fn evict_front(&self, seq: u64) -> Option<u64> {
        let mut batches = self.batches.borrow_mut();
        if batches.front()?.seq != seq {
            return None;
        }
        let cached = batches.pop_front()?;
        self.cache.release(cached.size);
        Some(cached.size)
    }

    /// Drops the batches wholly below `offset` (retention deleted them from the log).
    pub fn drop_below(&self, offset: u64) {
        let mut batches = self.batches.borrow_mut();
        while batches
            .front()
            .is_some_and(|cached| cached.batch.end_offset_exclusive() <= offset)
        {
            let cached = batches.pop_front().expect("a front batch");
            self.cache.release(cached.size);
        }
    }

    /// Drops every batch (purge).
    pub fn clear(&self) {
        self.drop_below(u64::MAX);
    }

    /// What `Journal::read` does, from the cached batches; `offset` must not be below
    /// `first_offset`.
    pub fn read(&self, offset: u64, limits: ReadLimits, out: &mut Polled) -> (u32, u64) {
        journal::read_batches(&self.batches.borrow(), offset, limits, out)
    }
}

impl Drop for CachedTail {
    fn drop(&mut self) {
        for cached in self.batches.get_mut().drain(..) {
            self.cache.release(cached.size);
        }
    }
}
