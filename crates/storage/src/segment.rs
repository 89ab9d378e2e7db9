//! Segments: a `.log` of messages back to back and its `.index`, both named by the 20-digit
//! start offset. The active segment holds its writers and its whole index in memory; a sealed
//! segment is a few numbers, its files are opened only while a read needs them.

use std::{
    io,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use compio::fs::File;

use crate::{
    DirectIo, StorageError, direct_io, disk,
    offset_index::{self, INDEX_ENTRY_BYTES, IndexEntry, OffsetIndex},
};

/// Extension of a segment's message file.
pub(crate) const LOG_EXTENSION: &str = "log";
/// Extension of a segment's index file.
pub(crate) const INDEX_EXTENSION: &str = "index";
/// Digits of a segment file stem (the zero-padded start offset).
pub(crate) const SEGMENT_NAME_DIGITS: usize = 20;
/// Most index entries one read of a sealed segment loads (1 MiB): bounds the memory of a poll
/// with a huge `count`; the poll simply continues with another read.
pub(crate) const READ_INDEX_ENTRIES_MAX: u32 = 65_536;
/// Entries read at once at the end of an on-disk binary search (4 KiB).
const SEARCH_WINDOW_ENTRIES: u64 = 256;

/// Path of the `.log` of the segment starting at `start_offset`.
pub(crate) fn log_path(dir: &Path, start_offset: u64) -> PathBuf {
    dir.join(format!("{start_offset:020}.{LOG_EXTENSION}"))
}

/// Path of the `.index` of the segment starting at `start_offset`.
pub(crate) fn index_path(dir: &Path, start_offset: u64) -> PathBuf {
    dir.join(format!("{start_offset:020}.{INDEX_EXTENSION}"))
}

/// Which file of a segment a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegmentFile {
    /// `{start:020}.log`
    Log,
    /// `{start:020}.index`
    Index,
}

/// Parses `{start:020}.log` / `{start:020}.index`; anything else is not a segment file.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(u64, SegmentFile)> {
    let (stem, extension) = name.split_once('.')?;
    let kind = match extension {
        LOG_EXTENSION => SegmentFile::Log,
        INDEX_EXTENSION => SegmentFile::Index,
        _ => return None,
    };
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, kind))
}

/// A segment that takes no more messages. Holds no file handle and no index buffer, so memory
/// stays flat however many segments a partition keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SealedSegment {
    /// Offset of its first message.
    pub start_offset: u64,
    /// Number of messages (at least 1).
    pub messages_count: u32,
    /// Size of its `.log`.
    pub size_bytes: u64,
    /// Timestamp of its last message.
    pub end_timestamp: u64,
}

impl SealedSegment {
    /// Offset of its last message.
    pub fn end_offset(&self) -> u64 {
        self.start_offset + u64::from(self.messages_count) - 1
    }
}

/// The segment appends go to. Lives on the partition's shard.
pub(crate) struct ActiveSegment {
    /// Offset of its first message.
    pub start_offset: u64,
    /// Its `.log`, open for positional writes (with O_DIRECT when `direct`).
    pub log: File,
    /// Its `.log`, buffered, for the reads of polls: O_DIRECT reads would need alignment.
    /// Mixing the two is safe: Linux invalidates the cached pages over a direct write's range,
    /// and a reader only reads bytes written before it planned the read, which a later rewrite
    /// of the tail block rewrites with the same values.
    pub read_log: File,
    /// True when `log` was opened with O_DIRECT: writes then go through
    /// `direct_io::write_direct`, starting with `tail`.
    pub direct: bool,
    /// With `direct`: the bytes of the log's partial last block (`size_bytes % 4096` of them).
    pub tail: Vec<u8>,
    /// Its `.index`, open for positional reads and writes.
    pub index_file: File,
    /// Entries of every message written to `log`.
    pub index: OffsetIndex,
    /// Bytes written to `log` (== the last entry's position).
    pub size_bytes: u64,
    /// Bytes of `log` covered by an fdatasync.
    pub synced_bytes: u64,
}

impl ActiveSegment {
    /// Creates the files of a new, empty segment (truncating leftovers of a crashed roll).
    pub async fn create(
        dir: &Path,
        start_offset: u64,
        direct_io: DirectIo,
    ) -> Result<Self, StorageError> {
        let log = direct_io::open_log(&log_path(dir, start_offset), true, direct_io).await?;
        log.writer.set_len(0).await?;
        let index_file = create_truncated(&index_path(dir, start_offset)).await?;
        Ok(Self {
            start_offset,
            log: log.writer,
            read_log: log.reader,
            direct: log.direct,
            tail: Vec::new(),
            index_file,
            index: OffsetIndex::default(),
            size_bytes: 0,
            synced_bytes: 0,
        })
    }

    /// Offset the next written message will have.
    pub fn next_offset(&self) -> u64 {
        self.start_offset + u64::from(self.index.len())
    }

    /// Turns this segment into a sealed one; the file handles close when dropped.
    pub fn seal(self) -> SealedSegment {
        let last = self
            .index
            .last()
            .expect("only a segment with messages is sealed");
        debug_assert_eq!(u64::from(last.position), self.size_bytes);
        SealedSegment {
            start_offset: self.start_offset,
            messages_count: self.index.len(),
            size_bytes: self.size_bytes,
            end_timestamp: last.timestamp,
        }
    }
}

async fn create_truncated(path: &Path) -> io::Result<File> {
    let file = disk::open_read_write(path, true).await?;
    file.set_len(0).await?;
    Ok(file)
}

/// Read-only handles on a sealed segment's files, opened for a read and cached for the next
/// one (a consumer catching up reads the same segment many times in a row).
#[derive(Clone)]
pub(crate) struct SegmentFiles {
    /// Start offset of the segment.
    pub start_offset: u64,
    /// Its `.log`.
    pub log: File,
    /// Its `.index`.
    pub index: File,
}

impl SegmentFiles {
    /// Opens the files of the segment starting at `start_offset`.
    pub async fn open(dir: &Path, start_offset: u64) -> io::Result<Self> {
        Ok(Self {
            start_offset,
            log: disk::open_read(&log_path(dir, start_offset)).await?,
            index: disk::open_read(&index_path(dir, start_offset)).await?,
        })
    }
}

/// Messages read from a sealed segment.
pub(crate) struct SealedRead {
    /// The stored bytes of `messages_count` messages.
    pub bytes: Bytes,
    /// Number of whole messages in `bytes` (at least 1).
    pub messages_count: u32,
}

/// Reads up to `messages_max` messages from relative offset `k` of a sealed segment, stopping
/// before `bytes_max` unless that would return nothing (one message always fits).
pub(crate) async fn read_sealed(
    files: &SegmentFiles,
    segment: &SealedSegment,
    k: u32,
    messages_max: u32,
    bytes_max: u64,
) -> io::Result<SealedRead> {
    assert!(k < segment.messages_count);
    let wanted = messages_max
        .min(segment.messages_count - k)
        .min(READ_INDEX_ENTRIES_MAX);
    assert!(wanted > 0);
    // Entry k-1 gives where message k starts; entries k.. give where each message ends.
    let first_entry = k.saturating_sub(1);
    let entries_count = (k + wanted - first_entry) as usize;
    let encoded = disk::read_exact_at(
        &files.index,
        entries_count * INDEX_ENTRY_BYTES,
        u64::from(first_entry) * INDEX_ENTRY_BYTES as u64,
    )
    .await?;
    let entries: Vec<IndexEntry> = (0..entries_count)
        .map(|at| offset_index::entry_at(&encoded, at))
        .collect();
    check_read_back(&entries, first_entry, segment)?;
    let (start, ends) = if k == 0 {
        (0, &entries[..])
    } else {
        (entries[0].position, &entries[1..])
    };
    let mut taken = 1;
    while taken < ends.len() && u64::from(ends[taken].position - start) <= bytes_max {
        taken += 1;
    }
    let end = ends[taken - 1].position;
    let bytes = disk::read_bytes_at(&files.log, (end - start) as usize, u64::from(start)).await?;
    Ok(SealedRead {
        bytes,
        messages_count: taken as u32,
    })
}

/// Index entries read back from disk must still describe consecutive messages of this segment;
/// a file changed under us is an error, never a wrong answer.
fn check_read_back(
    entries: &[IndexEntry],
    first_entry: u32,
    segment: &SealedSegment,
) -> io::Result<()> {
    let mut previous: Option<IndexEntry> = None;
    for (at, entry) in entries.iter().enumerate() {
        let k = first_entry + at as u32;
        let follows = match previous {
            Some(previous) => entry.follows(Some(&previous), k),
            None => entry.relative_offset == k,
        };
        if !follows || u64::from(entry.position) > segment.size_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "index of segment {} disagrees at entry {k}: {entry:?}",
                    segment.start_offset
                ),
            ));
        }
        previous = Some(*entry);
    }
    Ok(())
}

/// The first message of a sealed segment with timestamp ≥ `timestamp`: a binary search over
/// the `.index` on disk (16-byte reads, then one small window), never loading the whole index.
pub(crate) async fn sealed_offset_at_timestamp(
    files: &SegmentFiles,
    segment: &SealedSegment,
    timestamp: u64,
) -> io::Result<Option<u64>> {
    if segment.end_timestamp < timestamp {
        return Ok(None);
    }
    let index = &files.index;
    let (mut low, mut high) = (0u64, u64::from(segment.messages_count));
    while high - low > SEARCH_WINDOW_ENTRIES {
        let middle = low + (high - low) / 2;
        let encoded =
            disk::read_exact_at(index, INDEX_ENTRY_BYTES, middle * INDEX_ENTRY_BYTES as u64)
                .await?;
        let entry = IndexEntry::decode(&encoded);
        debug_assert_eq!(u64::from(entry.relative_offset), middle);
        if entry.timestamp < timestamp {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    let window = disk::read_exact_at(
        index,
        ((high - low) as usize) * INDEX_ENTRY_BYTES,
        low * INDEX_ENTRY_BYTES as u64,
    )
    .await?;
    Ok(match offset_index::first_at_or_after(&window, timestamp) {
        Some(at) => Some(segment.start_offset + low + at as u64),
        // The search ended on the first entry after the window: it qualifies by the loop's
        // invariant because end_timestamp ≥ timestamp.
        None => Some(segment.start_offset + high).filter(|&o| o <= segment.end_offset()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_20_digit_start_offsets() {
        let dir = Path::new("/p");
        assert_eq!(log_path(dir, 42), Path::new("/p/00000000000000000042.log"));
        assert_eq!(
            parse_segment_file_name("00000000000000000042.index"),
            Some((42, SegmentFile::Index))
        );
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log"),
            Some((42, SegmentFile::Log))
        );
        assert_eq!(parse_segment_file_name("42.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
    }
}
