//! Deduplication of messages by id (PROTOCOL.md §9.5 `[system.message_deduplication]`): a
//! partition remembers the ids it appended recently and drops a message whose id it has seen.
//!
//! Bounded twice: at most `ids_max` ids (the oldest is forgotten first) and each for at most
//! `expiry_us`. Memory only: after a restart every id is new again, as in Iggy. Id 0 means
//! "let the server choose", so it is never a duplicate.

use std::collections::{HashMap, VecDeque};

use bytes::BytesMut;
use galgo_protocol::message::MessageView;

/// How a partition deduplicates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeduplicationConfig {
    /// Most ids remembered per partition.
    pub ids_max: usize,
    /// How long an id is remembered, in µs.
    pub expiry_us: u64,
}

/// The ids one partition appended recently. Lives on the partition's shard.
#[derive(Debug)]
pub(crate) struct Deduplicator {
    config: DeduplicationConfig,
    /// Id → when it was appended.
    seen: HashMap<u128, u64>,
    /// Ids in the order they were appended, for eviction.
    order: VecDeque<(u128, u64)>,
}

impl Deduplicator {
    pub(crate) fn new(config: DeduplicationConfig) -> Self {
        Self {
            config,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Removes the duplicates from a block of `count` whole messages and remembers the ids of
    /// the rest. Returns the block to append (the same one when nothing was dropped) and its
    /// count; the count is 0 when every message was a duplicate.
    pub(crate) fn filter(&mut self, block: BytesMut, count: u32, now_us: u64) -> (BytesMut, u32) {
        self.filter_with(block, count, now_us, true)
    }

    /// Removes the messages whose ids are remembered, remembering nothing new: a replicated
    /// partition's leader, whose batch is not stored until it commits (its ids are remembered
    /// then, by [`Deduplicator::remember_block`]).
    pub(crate) fn filter_known(
        &mut self,
        block: BytesMut,
        count: u32,
        now_us: u64,
    ) -> (BytesMut, u32) {
        self.filter_with(block, count, now_us, false)
    }

    /// Remembers the ids of a block of `count` whole messages that was stored.
    pub(crate) fn remember_block(&mut self, block: &[u8], count: u32, now_us: u64) {
        self.expire(now_us);
        let mut at = 0;
        for _ in 0..count {
            let Some(view) = MessageView::parse(&block[at..]) else {
                return;
            };
            self.remember(view.id(), now_us);
            at += view.size();
        }
    }

    fn filter_with(
        &mut self,
        block: BytesMut,
        count: u32,
        now_us: u64,
        remember: bool,
    ) -> (BytesMut, u32) {
        self.expire(now_us);
        let mut kept: Vec<(usize, usize)> = Vec::with_capacity(count as usize);
        let mut at = 0;
        for _ in 0..count {
            let view = MessageView::parse(&block[at..]).expect("a checked block");
            let size = view.size();
            let new = if remember {
                self.remember(view.id(), now_us)
            } else {
                view.id() == 0 || !self.seen.contains_key(&view.id())
            };
            if new {
                kept.push((at, size));
            }
            at += size;
        }
        if kept.len() == count as usize {
            return (block, count);
        }
        let mut filtered = BytesMut::with_capacity(kept.iter().map(|(_, size)| size).sum());
        for (start, size) in &kept {
            filtered.extend_from_slice(&block[*start..start + size]);
        }
        (filtered, kept.len() as u32)
    }

    /// Forgets every id (the partition was purged).
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
        self.order.clear();
    }

    /// True when `id` is new (and now remembered).
    fn remember(&mut self, id: u128, now_us: u64) -> bool {
        if id == 0 {
            return true;
        }
        if self.seen.contains_key(&id) {
            return false;
        }
        if self.order.len() >= self.config.ids_max {
            self.forget_oldest();
        }
        self.seen.insert(id, now_us);
        self.order.push_back((id, now_us));
        true
    }

    fn expire(&mut self, now_us: u64) {
        while let Some(&(_, at)) = self.order.front() {
            if at.saturating_add(self.config.expiry_us) > now_us {
                break;
            }
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((id, at)) = self.order.pop_front() {
            // The map entry belongs to this queue entry only if the times match; ids are
            // unique in the map, so they always do.
            debug_assert_eq!(self.seen.get(&id), Some(&at));
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use galgo_protocol::message::{MessageView, encode_message};

    use super::*;

    fn block(ids: &[u128]) -> BytesMut {
        let mut out = Vec::new();
        for &id in ids {
            encode_message(id, 0, format!("m{id}").as_bytes(), &[], &mut out);
        }
        BytesMut::from(&out[..])
    }

    fn ids_of(block: &[u8], count: u32) -> Vec<u128> {
        let mut at = 0;
        (0..count)
            .map(|_| {
                let view = MessageView::parse(&block[at..]).expect("whole");
                at += view.size();
                view.id()
            })
            .collect()
    }

    #[test]
    fn drops_seen_ids_within_the_bounds() {
        let config = DeduplicationConfig {
            ids_max: 3,
            expiry_us: 100,
        };
        let mut dedup = Deduplicator::new(config);
        let (kept, count) = dedup.filter(block(&[1, 2, 0, 2]), 4, 0);
        assert_eq!(ids_of(&kept, count), vec![1, 2, 0]);
        let (kept, count) = dedup.filter(block(&[1, 0, 3]), 3, 10);
        assert_eq!(ids_of(&kept, count), vec![0, 3]);
        // 4 evicts the oldest (1), so 1 is new again and evicts 2; 3 is still known.
        let (kept, count) = dedup.filter(block(&[4, 1, 3]), 3, 20);
        assert_eq!(ids_of(&kept, count), vec![4, 1]);
        // Past the expiry everything is forgotten.
        let (kept, count) = dedup.filter(block(&[1, 2, 3, 4]), 4, 500);
        assert_eq!(count, 4);
        assert_eq!(ids_of(&kept, count), vec![1, 2, 3, 4]);
        let (_, count) = dedup.filter(block(&[4]), 1, 501);
        assert_eq!(count, 0);
    }

    #[test]
    fn a_leader_drops_only_what_was_stored_and_remembers_at_storing() {
        let config = DeduplicationConfig {
            ids_max: 10,
            expiry_us: 100,
        };
        let mut dedup = Deduplicator::new(config);
        // Proposed, not stored: nothing remembered, so a retry of it passes.
        let (kept, count) = dedup.filter_known(block(&[1, 2, 0]), 3, 0);
        assert_eq!(ids_of(&kept, count), vec![1, 2, 0]);
        let (kept, count) = dedup.filter_known(block(&[1, 2]), 2, 1);
        assert_eq!(ids_of(&kept, count), vec![1, 2]);
        // Stored (committed and applied): remembered from then on.
        dedup.remember_block(&block(&[1, 0]), 2, 2);
        let (kept, count) = dedup.filter_known(block(&[1, 2, 0]), 3, 3);
        assert_eq!(ids_of(&kept, count), vec![2, 0]);
        let (_, count) = dedup.filter_known(block(&[1]), 1, 200);
        assert_eq!(count, 1, "forgotten past the expiry");
    }
}
