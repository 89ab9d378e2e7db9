//! Recovery of a partition's segments at open. Never trusts bytes that were not proven written.
//!
//! For each segment, in offset order:
//! 1. **Trusted prefix of the index**: the longest run of entries that are well formed (entry k
//!    has relative offset k, each message is at least a header long, timestamps never go back)
//!    and lie within the log. Zero-filled entries fail this at k = 1.
//! 2. **Tail check and scan**: the end of that prefix is read back from the log and verified
//!    message by message (checksum, offset `start + k`, exact size and timestamp of the entry):
//!    the last message of a sealed segment, the last `ACTIVE_TAIL_VERIFY_BYTES` of the active
//!    one. The scan then goes on past the prefix to the end of the log, verifying every further
//!    message. The log is truncated at the first message that is incomplete, fails its
//!    checksum or carries the wrong offset (torn, zero-filled, garbage); from the first entry
//!    that disagrees with the scan, the index is rewritten from the log; entries beyond the
//!    kept messages are cut.
//!
//! A log written with O_DIRECT (see `direct_io`) and not closed ends with the zero padding of
//! its last block: zeros from the last message to the next 4096-byte boundary. They are cut
//! like any unproven tail, but reported as `padding_bytes_cut` and logged at debug level only.
//!
//! A healthy sealed segment therefore costs one index read and one message read; a missing
//! index costs one scan. A segment that does not start where the previous one ended, and
//! every segment after it, is removed: offsets stay contiguous.

//!
//! `trusted_prefix` finds the prefix and its tail, `log_scanner` verifies messages, and
//! `report` holds what is reported.

mod log_scanner;
mod report;
mod trusted_prefix;

use std::path::Path;

use compio::fs::File;

use crate::{
    FsyncMode, StorageConfig, StorageError,
    direct_io::{self, DIRECT_IO_BLOCK_BYTES},
    disk,
    offset_index::{self, INDEX_ENTRY_BYTES, IndexEntry, OffsetIndex},
    segment::{self, ActiveSegment, SealedSegment, SegmentFile},
};
use log_scanner::LogScanner;
pub use report::{DroppedSegment, RecoveryReport, SegmentRecovery};
use trusted_prefix::{Tail, Trusted, trusted_prefix};

/// Bytes of log read at once while scanning (a larger message is read whole).
const SCAN_CHUNK_BYTES: usize = 1 << 20;
/// Index entries read at once while checking an index (1 MiB).
const CHECK_CHUNK_ENTRIES: usize = 65_536;
/// Bytes at the end of the active segment whose every message is re-verified at open, however
/// healthy its index looks: the last flushes before a crash land there (the default journal
/// writes out every 1 MiB), and a crash can leave holes inside them, not only a torn end.
/// Sealed segments were fsynced when sealed; for them the last message is verified.
const ACTIVE_TAIL_VERIFY_BYTES: u32 = 1 << 20;

/// One recovered segment.
pub(crate) struct RecoveredSegment {
    pub report: SegmentRecovery,
    /// Timestamp of the last message (0 when empty).
    pub end_timestamp: u64,
    /// The whole index, when asked for (the active segment's).
    pub index: Option<OffsetIndex>,
}

/// Recovers the segments of `dir`: returns the sealed ones, the active one and the newest
/// timestamp. Creates segment 0 in an empty directory.
pub(crate) async fn recover_segments(
    dir: &Path,
    config: &StorageConfig,
    report: &mut RecoveryReport,
) -> Result<(Vec<SealedSegment>, ActiveSegment, u64), StorageError> {
    let starts = list_segments(dir, report).await?;
    let mut sealed = Vec::new();
    let mut last: Option<RecoveredSegment> = None;
    for (at, &start) in starts.iter().enumerate() {
        if let Some(previous) = &last {
            let expected = previous.report.start_offset + u64::from(previous.report.messages_count);
            if start != expected {
                for &later in &starts[at..] {
                    let reason = format!("segments must continue at offset {expected}");
                    drop_segment(dir, later, &reason, report).await?;
                }
                break;
            }
        }
        let is_last = at + 1 == starts.len();
        let recovered = recover_segment(dir, start, is_last).await?;
        report.segments.push(recovered.report.clone());
        if let Some(previous) = last.replace(recovered) {
            assert!(
                previous.report.messages_count > 0,
                "an empty segment is followed by none"
            );
            sealed.push(SealedSegment {
                start_offset: previous.report.start_offset,
                messages_count: previous.report.messages_count,
                size_bytes: previous.report.size_bytes,
                end_timestamp: previous.end_timestamp,
            });
        }
    }
    let Some(mut last) = last else {
        let active = ActiveSegment::create(dir, 0, config.direct_io).await?;
        disk::sync_dir(dir).await?;
        return Ok((sealed, active, 0));
    };
    if last.index.is_none() {
        // Later segments were dropped: this one becomes the active one after all. It was just
        // recovered, so this second pass only loads its index.
        last = recover_segment(dir, last.report.start_offset, true).await?;
    }
    let last_timestamp = last
        .end_timestamp
        .max(sealed.last().map_or(0, |s| s.end_timestamp));
    let active = open_active(dir, config, last).await?;
    Ok((sealed, active, last_timestamp))
}

/// Opens the last recovered segment for writing, as the active segment.
pub(crate) async fn open_active(
    dir: &Path,
    config: &StorageConfig,
    last: RecoveredSegment,
) -> Result<ActiveSegment, StorageError> {
    let start = last.report.start_offset;
    let log = direct_io::open_log(&segment::log_path(dir, start), false, config.direct_io).await?;
    let index_file = disk::open_read_write(&segment::index_path(dir, start), false).await?;
    let synced = config.fsync != FsyncMode::Never;
    if synced {
        // What survived may still sit in the page cache only (a process crash, not a machine
        // crash): make it durable before acknowledging anything after it.
        log.writer.sync_data().await?;
    }
    let size_bytes = last.report.size_bytes;
    let tail = if log.direct {
        direct_io::read_tail(&log.reader, size_bytes).await?
    } else {
        Vec::new()
    };
    Ok(ActiveSegment {
        start_offset: start,
        log: log.writer,
        read_log: log.reader,
        direct: log.direct,
        tail,
        index_file,
        index: last.index.expect("kept"),
        size_bytes,
        synced_bytes: if synced { size_bytes } else { 0 },
    })
}

/// Start offsets of the segments in `dir` that have a log, ascending. Indexes without a log
/// are removed (nothing they describe exists).
pub(crate) async fn list_segments(
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Vec<u64>, StorageError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for name in disk::list_dir(dir).await? {
        match segment::parse_segment_file_name(&name) {
            Some((start, SegmentFile::Log)) => logs.push(start),
            Some((start, SegmentFile::Index)) => indexes.push(start),
            None => {}
        }
    }
    logs.sort_unstable();
    for start in indexes {
        if logs.binary_search(&start).is_err() {
            tracing::warn!(dir = %dir.display(), start, "removing an index without its log");
            disk::remove_file_if_exists(&segment::index_path(dir, start)).await?;
            report.orphan_indexes_removed.push(start);
        }
    }
    Ok(logs)
}

/// Removes a segment's files, recording it as dropped.
pub(crate) async fn drop_segment(
    dir: &Path,
    start_offset: u64,
    reason: &str,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    let log_path = segment::log_path(dir, start_offset);
    let log_bytes = match compio::fs::metadata(&log_path).await {
        Ok(metadata) => metadata.len(),
        Err(_) => 0,
    };
    tracing::warn!(dir = %dir.display(), start_offset, log_bytes, reason, "dropping a segment");
    disk::remove_file_if_exists(&log_path).await?;
    disk::remove_file_if_exists(&segment::index_path(dir, start_offset)).await?;
    report.dropped_segments.push(DroppedSegment {
        start_offset,
        log_bytes,
    });
    Ok(())
}

/// Recovers one segment (see the module page). `is_active` verifies the last
/// `ACTIVE_TAIL_VERIFY_BYTES` of the log rather than its last message only, and returns the
/// whole index.
pub(crate) async fn recover_segment(
    dir: &Path,
    start_offset: u64,
    is_active: bool,
) -> Result<RecoveredSegment, StorageError> {
    let log = disk::open_read_write(&segment::log_path(dir, start_offset), false).await?;
    let index = disk::open_read_write(&segment::index_path(dir, start_offset), true).await?;
    let files = Files {
        log: &log,
        index: &index,
        log_size: disk::file_len(&log).await?,
        index_size: disk::file_len(&index).await?,
        start_offset,
    };
    let mut kept = is_active.then(Vec::new);
    let scan = scan_segment(dir, &files, &mut kept).await?;
    let final_bytes = u64::from(scan.next_k) * INDEX_ENTRY_BYTES as u64;
    if scan.index_len != final_bytes {
        index.set_len(final_bytes).await?;
    }
    if let Some(kept) = kept.as_mut() {
        kept.truncate(final_bytes as usize);
    }
    let trusted = if scan.diverged {
        scan.agreed
    } else {
        scan.next_k
    };
    let padding = scan.stop.is_some() && is_padding(&log, scan.position, files.log_size).await?;
    let cut_bytes = files.log_size - scan.position;
    let report = SegmentRecovery {
        start_offset,
        messages_count: scan.next_k,
        size_bytes: scan.position,
        index_entries_trusted: trusted,
        index_entries_rebuilt: scan.next_k - trusted,
        index_bytes_dropped: files.index_size - u64::from(trusted) * INDEX_ENTRY_BYTES as u64,
        log_bytes_truncated: if padding { 0 } else { cut_bytes },
        padding_bytes_cut: if padding { cut_bytes } else { 0 },
    };
    if let Some(reason) = &scan.stop {
        if padding {
            tracing::debug!(dir = %dir.display(), start_offset, kept_bytes = scan.position,
                padding_bytes = cut_bytes, "cutting the O_DIRECT padding of a segment log");
        } else {
            tracing::warn!(dir = %dir.display(), start_offset, kept_bytes = scan.position,
                dropped_bytes = cut_bytes, reason = %reason,
                "truncating a segment log at its first unproven message");
        }
        log.set_len(scan.position).await?;
        log.sync_data().await?;
    }
    if report.index_bytes_dropped > 0 || report.index_entries_rebuilt > 0 {
        tracing::warn!(dir = %dir.display(), start_offset, trusted,
            rebuilt = report.index_entries_rebuilt, dropped_bytes = report.index_bytes_dropped,
            "rebuilt part of a segment index from its log");
        index.sync_data().await?;
    }
    Ok(RecoveredSegment {
        report,
        end_timestamp: scan.previous.map_or(0, |entry| entry.timestamp),
        index: kept.map(OffsetIndex::from_encoded),
    })
}

/// Finds the trusted prefix of the segment's index and scans its log from the prefix's tail;
/// when the index points where no valid message starts, scans the whole log instead.
async fn scan_segment(
    dir: &Path,
    files: &Files<'_>,
    kept: &mut Option<Vec<u8>>,
) -> Result<Scan, StorageError> {
    let prefix =
        trusted_prefix(files.index, files.index_size, files.log_size, kept.as_mut()).await?;
    let tail = Tail::of(&prefix, kept.as_deref());
    let mut scan = scan_log(files, prefix.count, &tail, kept.as_mut()).await?;
    if scan.next_k == tail.first_k && tail.first_k > 0 && scan.stop.is_some() {
        // No valid message starts where the index says the tail starts: the index, not the
        // log, is wrong there. Trust none of it (the log must not be cut at a position only
        // the index vouches for) and scan the whole log.
        tracing::warn!(dir = %dir.display(), start_offset = files.start_offset, k = tail.first_k,
            "segment index points where no valid message starts; rescanning the whole log");
        if let Some(kept) = kept.as_mut() {
            kept.clear();
        }
        scan = scan_log(
            files,
            0,
            &Tail::of(&Trusted::default(), None),
            kept.as_mut(),
        )
        .await?;
    }
    Ok(scan)
}

/// True when the bytes of the log from `position` to its end `log_size` are the zero padding
/// of an O_DIRECT write: fewer than a block, all zero, ending at a block boundary.
async fn is_padding(log: &File, position: u64, log_size: u64) -> Result<bool, StorageError> {
    let block = DIRECT_IO_BLOCK_BYTES as u64;
    if position.is_multiple_of(block) || log_size != position.next_multiple_of(block) {
        return Ok(false);
    }
    let bytes = disk::read_exact_at(log, (log_size - position) as usize, position).await?;
    Ok(bytes.iter().all(|&byte| byte == 0))
}

/// The two files of a segment being recovered.
struct Files<'a> {
    log: &'a File,
    index: &'a File,
    log_size: u64,
    index_size: u64,
    start_offset: u64,
}

/// Where a scan of a segment's log ended.
struct Scan {
    /// End of the last verified message: the log's size after recovery.
    position: u64,
    /// Number of verified messages.
    next_k: u32,
    /// Entry of the last verified message.
    previous: Option<IndexEntry>,
    /// Why the scan stopped before the end of the log.
    stop: Option<String>,
    /// Entries of the index confirmed by the scan (and the prefix before the tail).
    agreed: u32,
    /// True once an entry of the scan differed from the index (or went past it).
    diverged: bool,
    /// Length of the index file now.
    index_len: u64,
}

/// Verifies the log from the tail of a trusted prefix of `prefix_count` entries to its end.
/// Entries the scan produces must equal the index's; from the first that differs (or goes
/// past the prefix), the index file and `kept` are rewritten with the scan's entries.
async fn scan_log(
    files: &Files<'_>,
    prefix_count: u32,
    tail: &Tail,
    mut kept: Option<&mut Vec<u8>>,
) -> Result<Scan, StorageError> {
    let mut scanner = LogScanner::new(files.log, files.log_size, files.start_offset, tail);
    let mut index_len = files.index_size;
    let mut agreed = tail.first_k;
    let mut diverged = false;
    while !scanner.finished() {
        let first_k = scanner.next_k;
        let entries = scanner.next_entries().await?;
        let mut fresh = 0;
        while !diverged && fresh < entries.len() {
            let k = first_k + (fresh / INDEX_ENTRY_BYTES) as u32;
            if k >= prefix_count || tail.entry(k) != offset_index::entry_at(&entries[fresh..], 0) {
                diverged = true;
                index_len = u64::from(agreed) * INDEX_ENTRY_BYTES as u64;
                files.index.set_len(index_len).await?;
                if let Some(kept) = kept.as_deref_mut() {
                    kept.truncate(index_len as usize);
                }
                break;
            }
            agreed = k + 1;
            fresh += INDEX_ENTRY_BYTES;
        }
        let entries = &entries[fresh..];
        if entries.is_empty() {
            continue;
        }
        disk::write_all_at(files.index, entries.to_vec(), index_len).await?;
        index_len += entries.len() as u64;
        if let Some(kept) = kept.as_deref_mut() {
            kept.extend_from_slice(entries);
        }
    }
    Ok(Scan {
        position: scanner.position,
        next_k: scanner.next_k,
        previous: scanner.previous,
        stop: scanner.stop,
        agreed: agreed.min(scanner.next_k),
        diverged,
        index_len,
    })
}
