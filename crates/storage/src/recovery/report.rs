//! What recovery reports: per segment, what it trusted, rebuilt and cut.

use crate::consumer_offsets::ClampedOffset;

/// What recovery found and did, for the operator's log and for tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Every kept segment, in offset order.
    pub segments: Vec<SegmentRecovery>,
    /// Segments removed because they did not follow the previous one.
    pub dropped_segments: Vec<DroppedSegment>,
    /// Start offsets of `.index` files that had no `.log` and were removed.
    pub orphan_indexes_removed: Vec<u64>,
    /// Stored consumer offsets that pointed past the last message.
    pub clamped_offsets: Vec<ClampedOffset>,
}

impl RecoveryReport {
    /// True when nothing had to be repaired.
    pub fn is_clean(&self) -> bool {
        self.segments.iter().all(SegmentRecovery::is_clean)
            && self.dropped_segments.is_empty()
            && self.orphan_indexes_removed.is_empty()
            && self.clamped_offsets.is_empty()
    }

    /// Messages kept.
    pub fn messages_count(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| u64::from(segment.messages_count))
            .sum()
    }

    /// Bytes cut from logs, dropped segments included.
    pub fn log_bytes_dropped(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| segment.log_bytes_truncated)
            .chain(
                self.dropped_segments
                    .iter()
                    .map(|segment| segment.log_bytes),
            )
            .sum()
    }
}

/// What recovery did to one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SegmentRecovery {
    /// The segment's start offset.
    pub start_offset: u64,
    /// Messages kept.
    pub messages_count: u32,
    /// Size of the log after recovery.
    pub size_bytes: u64,
    /// Index entries trusted as found.
    pub index_entries_trusted: u32,
    /// Index entries written from a scan of the log.
    pub index_entries_rebuilt: u32,
    /// Index bytes dropped: entries beyond the log, malformed or unproven, and partial entries.
    pub index_bytes_dropped: u64,
    /// Bytes cut from the end of the log (torn, corrupt, zero-filled or garbage tail).
    pub log_bytes_truncated: u64,
    /// Zero padding of an O_DIRECT log cut from its end (less than a block, up to a block
    /// boundary): what a log written with O_DIRECT and not closed leaves, not damage.
    pub padding_bytes_cut: u64,
}

impl SegmentRecovery {
    /// True when the segment was consistent as found.
    pub fn is_clean(&self) -> bool {
        self.index_entries_rebuilt == 0
            && self.index_bytes_dropped == 0
            && self.log_bytes_truncated == 0
    }
}

/// A segment removed whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DroppedSegment {
    /// Its start offset.
    pub start_offset: u64,
    /// Size of its log.
    pub log_bytes: u64,
}
