//! The part of a segment's index recovery trusts before reading the log: the longest run of
//! well-formed entries, and the tail of it that is re-verified against the log anyway.

use compio::fs::File;

use super::{ACTIVE_TAIL_VERIFY_BYTES, CHECK_CHUNK_ENTRIES};
use crate::{
    StorageError, disk,
    offset_index::{self, INDEX_ENTRY_BYTES, IndexEntry},
};

/// The longest run of well-formed index entries within the log.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Trusted {
    /// Entries in the prefix.
    pub(super) count: u32,
    last: Option<IndexEntry>,
    before_last: Option<IndexEntry>,
}

/// The trusted prefix of `index`, appended to `kept` when given (the active segment's).
pub(super) async fn trusted_prefix(
    index: &File,
    index_size: u64,
    log_size: u64,
    mut kept: Option<&mut Vec<u8>>,
) -> Result<Trusted, StorageError> {
    let entries_total = index_size / INDEX_ENTRY_BYTES as u64;
    let mut trusted = Trusted::default();
    while u64::from(trusted.count) < entries_total {
        let chunk = (entries_total - u64::from(trusted.count)).min(CHECK_CHUNK_ENTRIES as u64);
        let encoded = disk::read_exact_at(
            index,
            chunk as usize * INDEX_ENTRY_BYTES,
            u64::from(trusted.count) * INDEX_ENTRY_BYTES as u64,
        )
        .await?;
        for at in 0..chunk as usize {
            let entry = offset_index::entry_at(&encoded, at);
            if !entry.follows(trusted.last.as_ref(), trusted.count)
                || u64::from(entry.position) > log_size
            {
                return Ok(trusted);
            }
            if let Some(kept) = kept.as_deref_mut() {
                kept.extend_from_slice(
                    &encoded[at * INDEX_ENTRY_BYTES..(at + 1) * INDEX_ENTRY_BYTES],
                );
            }
            trusted.before_last = trusted.last;
            trusted.last = Some(entry);
            trusted.count += 1;
        }
    }
    Ok(trusted)
}

/// The end of a trusted prefix that recovery re-verifies against the log: the last message of
/// a sealed segment, the last `ACTIVE_TAIL_VERIFY_BYTES` of the active one.
pub(super) struct Tail {
    /// First entry re-verified.
    pub(super) first_k: u32,
    /// The entry before it, where the scan starts.
    pub(super) previous: Option<IndexEntry>,
    /// Entries `first_k..` of the prefix.
    entries: Vec<IndexEntry>,
}

impl Tail {
    pub(super) fn of(prefix: &Trusted, kept: Option<&[u8]>) -> Self {
        let Some(last) = prefix.last else {
            return Self {
                first_k: 0,
                previous: None,
                entries: Vec::new(),
            };
        };
        let Some(kept) = kept else {
            return Self {
                first_k: prefix.count - 1,
                previous: prefix.before_last,
                entries: vec![last],
            };
        };
        let from = last.position.saturating_sub(ACTIVE_TAIL_VERIFY_BYTES);
        // First k whose message starts at or after `from`, but at least the last message.
        let starts_before = |k: usize| k > 0 && offset_index::entry_at(kept, k - 1).position < from;
        let (mut low, mut high) = (0usize, prefix.count as usize - 1);
        while low < high {
            let middle = low + (high - low) / 2;
            if starts_before(middle) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Self {
            first_k: low as u32,
            previous: low.checked_sub(1).map(|k| offset_index::entry_at(kept, k)),
            entries: (low..prefix.count as usize)
                .map(|k| offset_index::entry_at(kept, k))
                .collect(),
        }
    }

    /// Entry `k` (≥ `first_k`) of the prefix.
    pub(super) fn entry(&self, k: u32) -> IndexEntry {
        self.entries[(k - self.first_k) as usize]
    }
}
