//! Index entries of a segment (PROTOCOL.md §9.3) and the in-memory index of the active segment.
//!
//! ```text
//! entry k (16 bytes, LE):  0 relative_offset u32 = k | 4 position u32 = end of message k in .log
//!                          8 timestamp u64 (server-assigned µs)
//! message k occupies .log bytes [position(k-1), position(k)), with position(-1) = 0
//! ```

use galgo_protocol::message::MESSAGE_HEADER_BYTES;

/// Size of one index entry on disk and in memory.
pub const INDEX_ENTRY_BYTES: usize = 16;
/// Where an entry's `relative_offset` (u32) starts.
pub const RELATIVE_OFFSET_AT: usize = 0;
/// Where an entry's `position` (u32) starts.
pub const POSITION_AT: usize = 4;
/// Where an entry's `timestamp` (u64) starts.
pub const TIMESTAMP_AT: usize = 8;
const _: () = assert!(RELATIVE_OFFSET_AT + 4 == POSITION_AT);
const _: () = assert!(POSITION_AT + 4 == TIMESTAMP_AT);
const _: () = assert!(TIMESTAMP_AT + 8 == INDEX_ENTRY_BYTES);

/// One decoded index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Message offset minus the segment's start offset.
    pub relative_offset: u32,
    /// Byte position in the segment's `.log` just after the message.
    pub position: u32,
    /// The server-assigned timestamp of the message, µs.
    pub timestamp: u64,
}

impl IndexEntry {
    /// The `INDEX_ENTRY_BYTES` stored for this entry.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_BYTES] {
        let mut out = [0u8; INDEX_ENTRY_BYTES];
        out[RELATIVE_OFFSET_AT..POSITION_AT].copy_from_slice(&self.relative_offset.to_le_bytes());
        out[POSITION_AT..TIMESTAMP_AT].copy_from_slice(&self.position.to_le_bytes());
        out[TIMESTAMP_AT..INDEX_ENTRY_BYTES].copy_from_slice(&self.timestamp.to_le_bytes());
        out
    }

    /// Decodes the entry at the start of `bytes` (at least `INDEX_ENTRY_BYTES`).
    pub fn decode(bytes: &[u8]) -> Self {
        let relative_offset = &bytes[RELATIVE_OFFSET_AT..POSITION_AT];
        let position = &bytes[POSITION_AT..TIMESTAMP_AT];
        let timestamp = &bytes[TIMESTAMP_AT..INDEX_ENTRY_BYTES];
        Self {
            relative_offset: u32::from_le_bytes(relative_offset.try_into().expect("4 bytes")),
            position: u32::from_le_bytes(position.try_into().expect("4 bytes")),
            timestamp: u64::from_le_bytes(timestamp.try_into().expect("8 bytes")),
        }
    }

    /// True when this entry may be entry `k` of a segment right after `previous` (entry k-1):
    /// relative offset k, a message of at least a header's size, timestamps never going back.
    /// Zero-filled entries fail this for every k > 0, and so do entries of another segment.
    pub fn follows(&self, previous: Option<&IndexEntry>, k: u32) -> bool {
        let (start, previous_timestamp) = previous.map_or((0, 0), |p| (p.position, p.timestamp));
        self.relative_offset == k
            && u64::from(self.position) >= u64::from(start) + MESSAGE_HEADER_BYTES as u64
            && self.timestamp >= previous_timestamp
    }
}

/// Number of whole entries in an encoded block.
pub fn entries_count(encoded: &[u8]) -> usize {
    encoded.len() / INDEX_ENTRY_BYTES
}

/// Entry `k` of an encoded block.
pub fn entry_at(encoded: &[u8], k: usize) -> IndexEntry {
    IndexEntry::decode(&encoded[k * INDEX_ENTRY_BYTES..(k + 1) * INDEX_ENTRY_BYTES])
}

/// The first entry (by index) whose timestamp is ≥ `timestamp`, if any. Timestamps within a
/// segment never decrease (the log assigns them monotonically), so a binary search is valid.
pub fn first_at_or_after(encoded: &[u8], timestamp: u64) -> Option<usize> {
    let (mut low, mut high) = (0, entries_count(encoded));
    while low < high {
        let middle = low + (high - low) / 2;
        if entry_at(encoded, middle).timestamp < timestamp {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    (low < entries_count(encoded)).then_some(low)
}

/// How many messages from entry `from` to read: the largest `to` in `from..=to_max` such that
/// messages `[from, to)` span at most `bytes_max` bytes, message `from` starting at
/// `start_position`; `from + 1` at least when `at_least_one` and `to_max > from`.
/// A binary search: end positions only grow.
pub fn fit(
    encoded: &[u8],
    start_position: u32,
    from: usize,
    to_max: usize,
    bytes_max: u64,
    at_least_one: bool,
) -> usize {
    debug_assert!(to_max <= entries_count(encoded));
    let fits =
        |to: usize| u64::from(entry_at(encoded, to - 1).position - start_position) <= bytes_max;
    let (mut low, mut high) = (from, to_max);
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if fits(middle) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    if low == from && at_least_one && to_max > from {
        from + 1
    } else {
        low
    }
}

/// The in-memory index of the active segment: its entries encoded exactly as in the `.index`
/// file, so a flush appends the same bytes to both. Sealed segments keep no such buffer.
#[derive(Debug, Default)]
pub struct OffsetIndex {
    encoded: Vec<u8>,
}

impl OffsetIndex {
    /// An index over already checked entries (recovery proves them before handing them over).
    pub fn from_encoded(encoded: Vec<u8>) -> Self {
        assert_eq!(encoded.len() % INDEX_ENTRY_BYTES, 0, "whole entries only");
        Self { encoded }
    }

    /// Number of entries.
    pub fn len(&self) -> u32 {
        u32::try_from(entries_count(&self.encoded)).expect("a segment holds < 2^32 messages")
    }

    /// True when the segment has no written message.
    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Entry `k`.
    pub fn get(&self, k: u32) -> IndexEntry {
        let entry = entry_at(&self.encoded, k as usize);
        debug_assert_eq!(
            entry.relative_offset, k,
            "entry k describes relative offset k"
        );
        entry
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<IndexEntry> {
        self.len().checked_sub(1).map(|k| self.get(k))
    }

    /// Byte position where message `k` starts in the log.
    pub fn start_position(&self, k: u32) -> u32 {
        k.checked_sub(1)
            .map_or(0, |previous| self.get(previous).position)
    }

    /// True when `encoded` may be appended: each entry follows the one before it. Checked
    /// before the entries are written to the `.index` (a `debug_assert!` on the flush path).
    pub fn accepts(&self, encoded: &[u8]) -> bool {
        let mut previous = self.last();
        for (k, at) in (self.len()..).zip(0..entries_count(encoded)) {
            let entry = entry_at(encoded, at);
            if !entry.follows(previous.as_ref(), k) {
                return false;
            }
            previous = Some(entry);
        }
        encoded.len().is_multiple_of(INDEX_ENTRY_BYTES)
    }

    /// Appends entries encoded the same way (a flushed batch, already written and checked).
    pub fn extend_encoded(&mut self, encoded: &[u8]) {
        debug_assert!(self.accepts(encoded), "index entries do not follow");
        self.encoded.extend_from_slice(encoded);
    }

    /// The first entry whose timestamp is ≥ `timestamp`.
    pub fn first_at_or_after(&self, timestamp: u64) -> Option<u32> {
        first_at_or_after(&self.encoded, timestamp).map(|k| k as u32)
    }

    /// How many messages from `k` fit the limits (see [`fit`]).
    pub fn fit(&self, k: u32, messages_max: u32, bytes_max: u64, at_least_one: bool) -> u32 {
        let to_max = u64::from(k) + u64::from(messages_max);
        let to_max = to_max.min(u64::from(self.len())) as usize;
        let start = self.start_position(k);
        fit(
            &self.encoded,
            start,
            k as usize,
            to_max,
            bytes_max,
            at_least_one,
        ) as u32
    }

    /// The encoded entries.
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relative_offset: u32, position: u32, timestamp: u64) -> IndexEntry {
        IndexEntry {
            relative_offset,
            position,
            timestamp,
        }
    }

    #[test]
    fn entry_round_trips_through_its_16_bytes() {
        let original = entry(7, 0x0102_0304, 0x1122_3344_5566_7788);
        let bytes = original.encode();
        assert_eq!(bytes.len(), 16, "PROTOCOL.md §9.3");
        assert_eq!(&bytes[0..4], &7u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &0x0102_0304u32.to_le_bytes());
        assert_eq!(IndexEntry::decode(&bytes), original);
    }

    #[test]
    fn follows_rejects_zero_fill_gaps_and_time_going_back() {
        let first = entry(0, 64, 10);
        assert!(first.follows(None, 0));
        assert!(entry(1, 128, 10).follows(Some(&first), 1));
        assert!(
            !entry(0, 0, 0).follows(Some(&first), 1),
            "zero-filled entry"
        );
        assert!(
            !entry(2, 128, 10).follows(Some(&first), 1),
            "wrong relative offset"
        );
        assert!(
            !entry(1, 100, 10).follows(Some(&first), 1),
            "message shorter than a header"
        );
        assert!(
            !entry(1, 128, 9).follows(Some(&first), 1),
            "timestamp went back"
        );
        assert!(!entry(0, 63, 0).follows(None, 0));
    }

    #[test]
    fn in_memory_index_looks_up_positions_and_timestamps() {
        let mut index = OffsetIndex::default();
        let mut encoded = Vec::new();
        for (k, timestamp) in [5u64, 5, 7, 9].into_iter().enumerate() {
            encoded.extend_from_slice(&entry(k as u32, (k as u32 + 1) * 100, timestamp).encode());
        }
        index.extend_encoded(&encoded);
        assert_eq!(index.len(), 4);
        assert_eq!(index.start_position(0), 0);
        assert_eq!(index.start_position(2), 200);
        assert_eq!(index.last(), Some(entry(3, 400, 9)));
        assert_eq!(index.first_at_or_after(0), Some(0));
        assert_eq!(index.first_at_or_after(6), Some(2));
        assert_eq!(index.first_at_or_after(9), Some(3));
        assert_eq!(index.first_at_or_after(10), None);
        assert_eq!(index.fit(0, 10, u64::MAX, true), 4);
        assert_eq!(index.fit(1, 2, u64::MAX, true), 3);
        assert_eq!(index.fit(1, 10, 250, true), 3);
        assert_eq!(index.fit(1, 10, 99, true), 2);
        assert_eq!(index.fit(1, 10, 99, false), 1);
        assert_eq!(index.fit(1, 0, 99, true), 1);
    }

    #[test]
    #[should_panic(expected = "do not follow")]
    #[cfg(debug_assertions)]
    fn extending_with_a_broken_entry_panics_in_debug() {
        let mut index = OffsetIndex::default();
        assert!(index.accepts(&entry(0, 64, 0).encode()));
        assert!(!index.accepts(&entry(1, 64, 0).encode()));
        index.extend_encoded(&entry(1, 64, 0).encode());
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        fn index_of(steps: &[(u32, u64)]) -> Vec<u8> {
            let (mut position, mut timestamp, mut encoded) = (0u32, 0u64, Vec::new());
            for (k, &(size, tick)) in steps.iter().enumerate() {
                position += 64 + size;
                timestamp += tick;
                let entry = IndexEntry {
                    relative_offset: k as u32,
                    position,
                    timestamp,
                };
                encoded.extend_from_slice(&entry.encode());
            }
            encoded
        }

        proptest! {
            #[test]
            fn entries_round_trip(relative_offset: u32, position: u32, timestamp: u64) {
                let entry = IndexEntry { relative_offset, position, timestamp };
                prop_assert_eq!(IndexEntry::decode(&entry.encode()), entry);
            }

            #[test]
            fn searches_agree_with_a_linear_scan(
                steps in prop::collection::vec((0u32..200, 0u64..3), 0..60),
                timestamp in 0u64..150,
                from in 0usize..60,
                messages_max in 0u32..70,
                bytes_max in 0u64..5_000,
                at_least_one: bool,
            ) {
                let encoded = index_of(&steps);
                let entries: Vec<IndexEntry> =
                    (0..steps.len()).map(|k| entry_at(&encoded, k)).collect();
                let linear = entries.iter().position(|entry| entry.timestamp >= timestamp);
                prop_assert_eq!(first_at_or_after(&encoded, timestamp), linear);

                let index = OffsetIndex::from_encoded(encoded.clone());
                prop_assert!(OffsetIndex::default().accepts(&encoded));
                let from = from.min(steps.len()) as u32;
                let start = index.start_position(from);
                let mut to = from;
                let to_max = (from + messages_max).min(index.len());
                while to < to_max && u64::from(index.get(to).position - start) <= bytes_max {
                    to += 1;
                }
                if to == from && at_least_one && to_max > from {
                    to += 1;
                }
                prop_assert_eq!(index.fit(from, messages_max, bytes_max, at_least_one), to);
            }
        }
    }
}
