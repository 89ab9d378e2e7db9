//! PartitionLog end to end on a real compio runtime and a temp directory.

use std::{
    future::Future,
    path::{Path, PathBuf},
    pin::pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use galgo_protocol::message::{MessageIter, MessageView, encode_message};
use galgo_storage::{
    DirectIo, FsyncMode, OffsetOwner, PartitionLog, Polled, RecoveryReport, StorageConfig,
    TailCache,
    offset_index::{INDEX_ENTRY_BYTES, POSITION_AT},
};

/// No tail cache: these tests read back what the files hold (tests/tail_cache.rs covers the
/// cache, and the model test both).
const TAIL_CACHE_BYTES: u64 = 0;

fn config(
    segment_size_bytes: u64,
    journal_messages_max: u32,
    fsync: FsyncMode,
) -> Rc<StorageConfig> {
    Rc::new(StorageConfig {
        segment_size_bytes,
        journal_messages_max,
        journal_bytes_max: 1 << 20,
        fsync,
        direct_io: DirectIo::Auto,
    })
}

fn default_config() -> Rc<StorageConfig> {
    config(1 << 20, 1024, FsyncMode::Interval)
}

/// A block of messages as a client sends them; payload of message i is `{tag}-{i}`.
fn block(tag: &str, count: u32) -> BytesMut {
    let mut out = Vec::new();
    for i in 0..count {
        encode_message(0, 7, format!("{tag}-{i}").as_bytes(), b"", &mut out);
    }
    BytesMut::from(&out[..])
}

/// Every message of a poll, checked: contiguous offsets from `first_offset`, valid checksums.
fn messages(polled: &Polled) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for chunk in &polled.chunks {
        for view in MessageIter::new(chunk) {
            let view: MessageView<'_> = view.expect("chunks hold whole messages");
            assert!(
                view.checksum_is_valid(),
                "checksum of offset {}",
                view.offset()
            );
            assert_ne!(view.id(), 0, "the server generated an id");
            out.push((view.offset(), view.timestamp(), view.payload().to_vec()));
        }
    }
    assert_eq!(out.len(), polled.messages_count as usize);
    for (k, (offset, _, _)) in out.iter().enumerate() {
        assert_eq!(
            *offset,
            polled.first_offset + k as u64,
            "offsets are contiguous"
        );
    }
    out
}

fn payloads(polled: &Polled) -> Vec<String> {
    messages(polled)
        .into_iter()
        .map(|(_, _, payload)| String::from_utf8(payload).unwrap())
        .collect()
}

async fn open(dir: &Path, config: Rc<StorageConfig>) -> (Rc<PartitionLog>, RecoveryReport) {
    PartitionLog::open(dir.to_path_buf(), config, &TailCache::new(TAIL_CACHE_BYTES))
        .await
        .expect("open")
}

fn partition_dir(temp: &tempfile::TempDir) -> PathBuf {
    temp.path().join("partitions").join("0")
}

#[compio::test]
async fn append_and_poll_round_trip() {
    let temp = tempfile::tempdir().unwrap();
    let (log, report) = open(&partition_dir(&temp), default_config()).await;
    assert!(report.is_clean());
    assert_eq!((log.first_offset(), log.last_offset()), (0, None));
    assert_eq!(log.poll(0, 10).await.unwrap().messages_count, 0);

    let first = log.append(block("a", 3), 3, 1_000).await.unwrap();
    let second = log.append(block("b", 2), 2, 2_000).await.unwrap();
    assert_eq!((first.first_offset, first.last_offset), (0, 2));
    assert_eq!((second.first_offset, second.last_offset), (3, 4));
    assert_eq!(log.last_offset(), Some(4));
    assert_eq!(log.unflushed_messages(), 5);

    let polled = log.poll(0, 100).await.unwrap();
    assert_eq!(payloads(&polled), ["a-0", "a-1", "a-2", "b-0", "b-1"]);
    let timestamps: Vec<u64> = messages(&polled).iter().map(|m| m.1).collect();
    assert_eq!(timestamps, [1_000, 1_000, 1_000, 2_000, 2_000]);

    log.flush(true).await.unwrap();
    assert_eq!((log.unflushed_messages(), log.unsynced_bytes()), (0, 0));
    let from_disk = log.poll(1, 3).await.unwrap();
    assert_eq!(payloads(&from_disk), ["a-1", "a-2", "b-0"]);
    assert_eq!(from_disk.first_offset, 1);
    assert_eq!(log.poll(5, 10).await.unwrap().messages_count, 0);
    assert_eq!(log.poll(0, 0).await.unwrap().messages_count, 0);

    let stats = log.stats();
    assert_eq!((stats.messages_count, stats.segments_count), (5, 1));
    assert_eq!(stats.size_bytes, polled.size_bytes());
}

#[compio::test]
async fn a_client_id_is_kept_and_a_zero_id_generated() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), default_config()).await;
    let mut raw = Vec::new();
    encode_message(42, 0, b"x", b"", &mut raw);
    encode_message(0, 0, b"y", b"", &mut raw);
    encode_message(0, 0, b"z", b"", &mut raw);
    log.append(BytesMut::from(&raw[..]), 3, 5).await.unwrap();
    let polled = log.poll(0, 3).await.unwrap();
    let ids: Vec<u128> = MessageIter::new(&polled.chunks[0])
        .map(|view| view.unwrap().id())
        .collect();
    assert_eq!(ids[0], 42);
    assert_ne!(ids[1], ids[2], "generated ids differ");
}

#[compio::test]
async fn an_inconsistent_block_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), default_config()).await;
    assert!(log.append(block("a", 2), 3, 1).await.is_err());
    assert!(log.append(block("a", 2), 1, 1).await.is_err());
    assert_eq!(log.last_offset(), None);
}

#[compio::test]
async fn polls_cross_segment_rolls() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    // Each message is 67-68 bytes: a 300-byte segment holds four of them.
    let (log, _) = open(&dir, config(300, 2, FsyncMode::Interval)).await;
    let mut expected = Vec::new();
    for batch in 0..15u32 {
        let count = 1 + batch % 3;
        log.append(
            block(&format!("m{batch}"), count),
            count,
            100 + u64::from(batch),
        )
        .await
        .unwrap();
        expected.extend((0..count).map(|i| format!("m{batch}-{i}")));
    }
    // Journal writes past a threshold (and the rolls they make) run in the background.
    log.flush(false).await.unwrap();
    let stats = log.stats();
    assert!(stats.segments_count > 5, "{stats:?}");
    assert_eq!(stats.messages_count, expected.len() as u64);
    for (start, count) in [
        (0usize, 1000u32),
        (3, 5),
        (7, 1),
        (10, 13),
        (expected.len() - 1, 9),
    ] {
        let polled = log.poll(start as u64, count).await.unwrap();
        let end = (start + count as usize).min(expected.len());
        assert_eq!(
            payloads(&polled),
            expected[start..end],
            "poll({start}, {count})"
        );
    }
    // Every segment file respects the size limit and is named by its start offset.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    assert_eq!(names.len() as u32, stats.segments_count);
    assert_eq!(names[0], "00000000000000000000.log");
    // Sealed logs are exactly their messages (no O_DIRECT padding); the active one may carry
    // padding up to the next 4096-byte boundary until it is closed.
    let file_len = |name: &String| std::fs::metadata(dir.join(name)).unwrap().len();
    for (name, segment) in names.iter().zip(log.segments()) {
        if segment.sealed {
            assert_eq!(file_len(name), segment.size_bytes, "{name}");
        }
        assert!(segment.size_bytes <= 300, "{name}");
    }

    log.close().await.unwrap();
    for (name, segment) in names.iter().zip(log.segments()) {
        assert_eq!(file_len(name), segment.size_bytes, "{name} after close");
    }
    drop(log);
    let (log, report) = open(&dir, config(300, 2, FsyncMode::Interval)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(payloads(&log.poll(0, 1000).await.unwrap()), expected);
    assert_eq!(log.stats(), stats);
}

#[compio::test]
async fn offset_at_timestamp_searches_sealed_active_and_journal() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let config = config(300, 3, FsyncMode::Never);
    let (log, _) = open(&dir, config.clone()).await;
    // Batch b (2 messages) at time 1000 + 10 b: offsets 2b and 2b + 1.
    for b in 0..12u64 {
        log.append(block("t", 2), 2, 1_000 + 10 * b).await.unwrap();
    }
    assert!(log.stats().segments_count > 2);
    assert!(
        log.unflushed_messages() > 0,
        "the newest batch is still in the journal"
    );
    let expectations = [
        (0, Some(0)),
        (1_000, Some(0)),
        (1_001, Some(2)),
        (1_050, Some(10)),
        (1_055, Some(12)),
        (1_110, Some(22)),
        (1_111, None),
    ];
    for (timestamp, offset) in expectations {
        assert_eq!(
            log.offset_at_timestamp(timestamp).await.unwrap(),
            offset,
            "ts {timestamp}"
        );
    }
    // A clock going back does not break the order: the batch takes the previous timestamp.
    let receipt = log.append(block("late", 1), 1, 5).await.unwrap();
    let polled = log.poll(receipt.first_offset, 1).await.unwrap();
    assert_eq!(messages(&polled)[0].1, 1_110);

    log.close().await.unwrap();
    drop(log);
    let (log, _) = open(&dir, config).await;
    for (timestamp, offset) in expectations.into_iter().take(6) {
        assert_eq!(
            log.offset_at_timestamp(timestamp).await.unwrap(),
            offset,
            "ts {timestamp}"
        );
    }
}

#[compio::test]
async fn reopening_restores_messages_and_stored_offsets() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let (log, _) = open(&dir, default_config()).await;
    log.append(block("a", 4), 4, 10).await.unwrap();
    log.append(block("b", 4), 4, 20).await.unwrap();
    log.store_offset(OffsetOwner::Consumer(1), 3).await.unwrap();
    log.store_offset(OffsetOwner::Group(1), 6).await.unwrap();
    log.store_offset(OffsetOwner::Group(2), 7).await.unwrap();
    assert!(log.delete_offset(OffsetOwner::Group(2)).await.unwrap());
    assert!(!log.delete_offset(OffsetOwner::Group(2)).await.unwrap());
    let before = log.poll(0, 100).await.unwrap();
    log.close().await.unwrap();
    drop(log);

    let (log, report) = open(&dir, default_config()).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.messages_count(), 8);
    assert_eq!(log.last_offset(), Some(7));
    let after = log.poll(0, 100).await.unwrap();
    assert_eq!(messages(&after), messages(&before));
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(1)), Some(3));
    assert_eq!(log.stored_offset(OffsetOwner::Group(1)), Some(6));
    assert_eq!(log.stored_offset(OffsetOwner::Group(2)), None);
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(2)), None);
    let next = log.append(block("c", 1), 1, 30).await.unwrap();
    assert_eq!(next.first_offset, 8);
}

#[compio::test]
async fn stored_offsets_past_the_end_are_clamped_at_open() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let (log, _) = open(&dir, default_config()).await;
    log.append(block("a", 5), 5, 10).await.unwrap();
    log.store_offset(OffsetOwner::Consumer(9), 100)
        .await
        .unwrap();
    log.store_offset(OffsetOwner::Group(3), 2).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    let (log, report) = open(&dir, default_config()).await;
    assert_eq!(report.clamped_offsets.len(), 1);
    assert_eq!(report.clamped_offsets[0].clamped_to, Some(4));
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(9)), Some(4));
    assert_eq!(log.stored_offset(OffsetOwner::Group(3)), Some(2));
    drop(log);
    let (log, report) = open(&dir, default_config()).await;
    assert!(report.is_clean(), "the clamp was persisted");
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(9)), Some(4));
}

#[compio::test]
async fn purge_deletes_everything_and_restarts_at_zero() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let (log, _) = open(&dir, config(300, 2, FsyncMode::Interval)).await;
    for _ in 0..6 {
        log.append(block("x", 2), 2, 10).await.unwrap();
    }
    log.store_offset(OffsetOwner::Consumer(1), 5).await.unwrap();
    // Written out (the writes run in the background), so that there are segments to delete.
    log.flush(false).await.unwrap();
    assert!(log.stats().segments_count > 1);
    log.purge().await.unwrap();
    assert_eq!((log.first_offset(), log.last_offset()), (0, None));
    assert_eq!(log.stats().messages_count, 0);
    assert_eq!(log.stats().segments_count, 1);
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(1)), None);
    assert_eq!(log.poll(0, 10).await.unwrap().messages_count, 0);
    let receipt = log.append(block("y", 1), 1, 20).await.unwrap();
    assert_eq!(receipt.first_offset, 0);
    log.close().await.unwrap();
    drop(log);
    let (log, report) = open(&dir, config(300, 2, FsyncMode::Interval)).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(payloads(&log.poll(0, 10).await.unwrap()), ["y-0"]);
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(1)), None);
}

#[compio::test]
async fn group_commit_serves_many_concurrent_appenders() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let config = config(4_096, 1024, FsyncMode::Always);
    let (log, _) = open(&dir, config.clone()).await;
    let log = Rc::new(log);
    let tasks: Vec<_> = (0..64u32)
        .map(|task| {
            let log = log.clone();
            compio::runtime::spawn(async move {
                let count = 1 + task % 4;
                let receipt = log
                    .append(block(&format!("t{task}"), count), count, 1_000)
                    .await
                    .expect("append");
                assert_eq!(
                    receipt.last_offset - receipt.first_offset + 1,
                    u64::from(count)
                );
                // Acknowledged under fsync=always: nothing of it is left unwritten.
                assert!(
                    log.unflushed_messages() == 0 || log.last_offset() > Some(receipt.last_offset)
                );
                (receipt.first_offset, receipt.last_offset)
            })
        })
        .collect();
    let mut ranges = Vec::new();
    for task in tasks {
        ranges.push(task.await.expect("task"));
    }
    ranges.sort();
    let mut next = 0;
    for (first, last) in &ranges {
        assert_eq!(*first, next, "ranges are unique and contiguous");
        next = last + 1;
    }
    assert_eq!(log.last_offset(), Some(next - 1));
    assert_eq!(log.unsynced_bytes(), 0);
    assert!(
        log.stats().segments_count > 1,
        "the run also rolled segments"
    );
    let io = log.io_counters();
    assert!(
        io.fsyncs_count <= 8,
        "64 appends shared a few fdatasyncs: {io:?}"
    );
    assert!(io.writes_count <= 16, "and a few writes: {io:?}");
    let polled = log.poll(0, 10_000).await.unwrap();
    assert_eq!(polled.messages_count as u64, next);
    messages(&polled);
    drop(polled);

    let log = Rc::into_inner(log).expect("tasks done");
    drop(log);
    let (log, report) = open(&dir, config).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(log.last_offset(), Some(next - 1));
}

/// Polls one future once with a no-op waker.
fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

#[compio::test]
async fn a_poll_during_an_in_flight_flush_sees_the_data_being_written() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), default_config()).await;
    log.append(block("a", 3), 3, 1).await.unwrap();
    let mut flush = pin!(log.flush(true));
    assert!(
        poll_once(flush.as_mut()).is_pending(),
        "the write is in flight"
    );
    assert_eq!(
        log.unflushed_messages(),
        3,
        "batches stay in the journal until written"
    );
    let polled = log.poll(0, 10).await.unwrap();
    assert_eq!(payloads(&polled), ["a-0", "a-1", "a-2"]);
    // An append racing with the flush lands after it.
    let racing = log.append(block("b", 1), 1, 2).await.unwrap();
    assert_eq!(racing.first_offset, 3);
    flush.await.unwrap();
    assert_eq!(log.unflushed_messages(), 1);
    assert_eq!(
        payloads(&log.poll(0, 10).await.unwrap()),
        ["a-0", "a-1", "a-2", "b-0"]
    );
}

#[compio::test]
async fn a_cancelled_flush_leaves_the_journal_whole() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let (log, _) = open(&dir, default_config()).await;
    log.append(block("a", 2), 2, 1).await.unwrap();
    {
        let mut flush = pin!(log.flush(false));
        assert!(poll_once(flush.as_mut()).is_pending());
    }
    assert_eq!(log.unflushed_messages(), 2);
    log.append(block("b", 1), 1, 2).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    let (log, report) = open(&dir, default_config()).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        payloads(&log.poll(0, 10).await.unwrap()),
        ["a-0", "a-1", "b-0"]
    );
}

// ---------------------------------------------------------------------------------------------
// Recovery: damage the files of a closed partition, reopen, check what survived.

const FIRST_SEGMENT: &str = "00000000000000000000";

/// A closed partition with 10 messages ("p-0".."p-9", 67 bytes each) in one segment.
async fn ten_messages(dir: &Path) {
    let (log, _) = open(dir, default_config()).await;
    log.append(block("p", 6), 6, 10).await.unwrap();
    log.append(block("p", 4), 4, 20).await.unwrap();
    log.close().await.unwrap();
}

fn file(dir: &Path, extension: &str) -> PathBuf {
    dir.join(format!("{FIRST_SEGMENT}.{extension}"))
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Reopens, checks that `kept` messages survived, and that appends continue right after them.
async fn reopen_and_check(dir: &Path, kept: u64) -> RecoveryReport {
    let (log, report) = open(dir, default_config()).await;
    assert_eq!(report.messages_count(), kept, "{report:?}");
    assert_eq!(log.last_offset(), kept.checked_sub(1));
    let polled = log.poll(0, 100).await.unwrap();
    let expected: Vec<String> = (0..kept)
        .map(|i| format!("p-{}", if i < 6 { i } else { i - 6 }))
        .collect();
    assert_eq!(payloads(&polled), expected);
    let receipt = log.append(block("n", 2), 2, 30).await.unwrap();
    assert_eq!(receipt.first_offset, kept);
    log.close().await.unwrap();
    drop(log);
    // The repaired partition is consistent: a second open repairs nothing.
    let (log, again) = open(dir, default_config()).await;
    assert!(again.is_clean(), "{again:?}");
    assert_eq!(log.last_offset(), Some(kept + 1));
    assert_eq!(
        log.poll(0, 100).await.unwrap().messages_count as u64,
        kept + 2
    );
    report
}

const MESSAGE_BYTES: u64 = 64 + 3;

#[compio::test]
async fn recovery_truncates_a_log_torn_mid_message() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    set_len(&file(&dir, "log"), 7 * MESSAGE_BYTES + 30);
    let report = reopen_and_check(&dir, 7).await;
    assert_eq!(report.segments[0].log_bytes_truncated, 30);
    assert_eq!(
        report.segments[0].index_bytes_dropped,
        3 * INDEX_ENTRY_BYTES as u64
    );
}

#[compio::test]
async fn recovery_truncates_appended_garbage() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8).collect();
    append_bytes(&file(&dir, "log"), &garbage);
    let report = reopen_and_check(&dir, 10).await;
    assert_eq!(report.segments[0].log_bytes_truncated, 500);
    assert_eq!(report.log_bytes_dropped(), 500);
}

#[compio::test]
async fn recovery_truncates_a_zero_filled_tail() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    append_bytes(&file(&dir, "log"), &[0u8; 4096]);
    // A zero-filled index tail too: entries that would decode, but do not follow.
    append_bytes(&file(&dir, "index"), &[0u8; 64]);
    let report = reopen_and_check(&dir, 10).await;
    assert_eq!(report.segments[0].log_bytes_truncated, 4096);
    assert_eq!(report.segments[0].index_bytes_dropped, 64);
    assert_eq!(report.segments[0].index_entries_trusted, 10);
}

#[compio::test]
async fn recovery_drops_a_message_whose_checksum_fails() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    // Flip a payload byte of message 8 (inside the verified tail, the index looks healthy):
    // messages 8 and 9 go.
    let path = file(&dir, "log");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[(8 * MESSAGE_BYTES + 65) as usize] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let report = reopen_and_check(&dir, 8).await;
    assert_eq!(report.segments[0].log_bytes_truncated, 2 * MESSAGE_BYTES);
    assert_eq!(report.segments[0].index_entries_trusted, 8);
}

#[compio::test]
async fn recovery_finds_a_zeroed_hole_inside_the_tail() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    // Pages of message 3 never reached the disk; everything after it did.
    let path = file(&dir, "log");
    let mut bytes = std::fs::read(&path).unwrap();
    let hole = (3 * MESSAGE_BYTES) as usize..(4 * MESSAGE_BYTES) as usize;
    bytes[hole].fill(0);
    std::fs::write(&path, bytes).unwrap();
    let report = reopen_and_check(&dir, 3).await;
    assert_eq!(report.segments[0].log_bytes_truncated, 7 * MESSAGE_BYTES);
}

#[compio::test]
async fn recovery_rebuilds_a_missing_index() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    std::fs::remove_file(file(&dir, "index")).unwrap();
    let report = reopen_and_check(&dir, 10).await;
    assert_eq!(report.segments[0].index_entries_trusted, 0);
    assert_eq!(report.segments[0].index_entries_rebuilt, 10);
    assert_eq!(report.segments[0].log_bytes_truncated, 0);
}

#[compio::test]
async fn recovery_cuts_an_index_longer_than_its_log() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    // The log lost its last two messages; the index still describes them.
    set_len(&file(&dir, "log"), 8 * MESSAGE_BYTES);
    let report = reopen_and_check(&dir, 8).await;
    assert_eq!(report.segments[0].index_entries_trusted, 8);
    assert_eq!(
        report.segments[0].index_bytes_dropped,
        2 * INDEX_ENTRY_BYTES as u64
    );
    assert_eq!(report.segments[0].log_bytes_truncated, 0);
}

#[compio::test]
async fn recovery_completes_an_index_behind_its_log() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    // A crash between the log write and the index write.
    set_len(&file(&dir, "index"), 6 * INDEX_ENTRY_BYTES as u64 + 5);
    let report = reopen_and_check(&dir, 10).await;
    assert_eq!(report.segments[0].index_entries_trusted, 6);
    assert_eq!(report.segments[0].index_entries_rebuilt, 4);
}

#[compio::test]
async fn recovery_distrusts_an_index_whose_last_message_does_not_verify() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    ten_messages(&dir).await;
    // Well-formed entries that point into the middle of messages.
    let path = file(&dir, "index");
    let mut index = std::fs::read(&path).unwrap();
    for k in 0..10usize {
        let position = (k as u32 + 1) * 65;
        let at = k * INDEX_ENTRY_BYTES + POSITION_AT;
        index[at..at + 4].copy_from_slice(&position.to_le_bytes());
    }
    std::fs::write(&path, index).unwrap();
    let report = reopen_and_check(&dir, 10).await;
    assert_eq!(report.segments[0].index_entries_trusted, 0);
    assert_eq!(report.segments[0].index_entries_rebuilt, 10);
}

#[compio::test]
async fn recovery_drops_segments_that_do_not_follow() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let config = config(300, 1, FsyncMode::Interval);
    let (log, _) = open(&dir, config.clone()).await;
    for _ in 0..12 {
        log.append(block("s", 1), 1, 10).await.unwrap();
    }
    log.close().await.unwrap();
    let segments = log.stats().segments_count;
    drop(log);
    assert!(segments >= 3);
    // Tear the first segment: every later segment no longer follows it.
    set_len(&file(&dir, "log"), 2 * MESSAGE_BYTES + 1);
    let (log, report) = open(&dir, config).await;
    assert_eq!(report.segments.len(), 1);
    assert_eq!(report.dropped_segments.len() as u32, segments - 1);
    assert_eq!(log.last_offset(), Some(1));
    assert_eq!(log.stats().segments_count, 1);
    assert_eq!(
        log.append(block("s", 1), 1, 20).await.unwrap().first_offset,
        2
    );
    assert_eq!(log.poll(0, 100).await.unwrap().messages_count, 3);
}

#[compio::test]
async fn removing_a_partition_deletes_its_directory() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let (log, _) = open(&dir, default_config()).await;
    log.append(block("a", 1), 1, 1).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    galgo_storage::remove_partition(&dir).await.unwrap();
    assert!(!dir.exists());
    galgo_storage::remove_partition(&dir).await.unwrap();
}

#[compio::test]
async fn chunks_are_zero_copy_slices_of_the_journal() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), default_config()).await;
    log.append(block("z", 4), 4, 1).await.unwrap();
    let first = log.poll(1, 2).await.unwrap();
    let second = log.poll(1, 2).await.unwrap();
    let pointer = |polled: &Polled| polled.chunks[0].as_ptr();
    assert_eq!(
        pointer(&first),
        pointer(&second),
        "both views share the journal's bytes"
    );
    let _: &Bytes = &first.chunks[0];
}

#[compio::test]
async fn retention_removes_the_oldest_sealed_segments_only() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let config = config(300, 1, FsyncMode::Interval);
    let (log, _) = open(&dir, config.clone()).await;
    // Batch b: 2 messages at time 100 b; four messages (two batches) per segment.
    for b in 0..10u64 {
        log.append(block(&format!("r{b}"), 2), 2, 100 * b)
            .await
            .unwrap();
    }
    // Journal writes past a threshold (and the rolls they make) run in the background.
    log.flush(false).await.unwrap();
    let segments = log.segments();
    assert_eq!(segments.len(), 5);
    assert!(!segments.last().unwrap().sealed);
    assert_eq!(segments[1].start_offset, 4);
    assert_eq!(segments[1].end_timestamp, 300);

    // Nothing expired yet.
    let none = log
        .remove_expired_segments(199, Some(100), None)
        .await
        .unwrap();
    assert_eq!(none.segments_count, 0);
    // Segments ending at 100 and 300 expire at 400 with a 100 µs expiry.
    let removed = log
        .remove_expired_segments(400, Some(100), None)
        .await
        .unwrap();
    assert_eq!((removed.segments_count, removed.messages_count), (2, 8));
    assert_eq!(log.first_offset(), 8);
    assert_eq!(log.stats().messages_count, 12);
    let polled = log.poll(0, 3).await.unwrap();
    assert_eq!(polled.first_offset, 8);
    assert_eq!(payloads(&polled), ["r4-0", "r4-1", "r5-0"]);
    assert!(!dir.join("00000000000000000000.log").exists());

    // Size: keep at most two segments' worth; the active segment always stays.
    let size_max = log.stats().size_bytes - 1;
    let removed = log
        .remove_expired_segments(0, None, Some(size_max))
        .await
        .unwrap();
    assert_eq!(removed.segments_count, 1);
    let removed = log.remove_expired_segments(0, None, Some(0)).await.unwrap();
    assert_eq!(removed.segments_count, 1);
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.first_offset(), 16);
    log.close().await.unwrap();
    drop(log);

    let (log, report) = open(&dir, config).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((log.first_offset(), log.last_offset()), (16, Some(19)));
    assert_eq!(
        payloads(&log.poll(0, 10).await.unwrap()),
        ["r8-0", "r8-1", "r9-0", "r9-1"]
    );
    assert_eq!(
        log.append(block("x", 1), 1, 2_000)
            .await
            .unwrap()
            .first_offset,
        20
    );
}

#[compio::test]
async fn the_journal_is_bounded_while_a_write_is_in_flight() {
    let temp = tempfile::tempdir().unwrap();
    let config = Rc::new(StorageConfig {
        segment_size_bytes: 1 << 20,
        journal_messages_max: 1_000,
        journal_bytes_max: 1_000,
        fsync: FsyncMode::Interval,
        direct_io: DirectIo::Auto,
    });
    let (log, _) = open(&partition_dir(&temp), config).await;
    log.append(block("a", 1), 1, 1).await.unwrap();
    let mut flush = pin!(log.flush(false));
    assert!(poll_once(flush.as_mut()).is_pending());
    let mut appends: Vec<_> = (0..100)
        .map(|_| Box::pin(log.append(block("b", 1), 1, 2)))
        .collect();
    let mut done = Vec::new();
    for append in appends.iter_mut() {
        done.push(poll_once(append.as_mut()).is_ready());
    }
    assert!(done[0], "below the thresholds an append returns at once");
    let journaled = log.last_offset().unwrap() + 1;
    assert!(
        journaled < 100,
        "appenders past the bound wait before journaling"
    );
    assert!(
        journaled * MESSAGE_BYTES <= 4 * 1_000 + MESSAGE_BYTES,
        "{journaled}"
    );
    flush.await.unwrap();
    for (append, done) in appends.into_iter().zip(done) {
        if !done {
            append.await.unwrap();
        }
    }
    assert_eq!(log.last_offset(), Some(100));
    assert_eq!(log.poll(0, 1_000).await.unwrap().messages_count, 101);
}

#[compio::test]
async fn recovery_scans_messages_larger_than_its_read_chunk() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let big = |fill: u8| {
        let mut raw = Vec::new();
        encode_message(0, 0, &vec![fill; 1_500_000], b"", &mut raw);
        BytesMut::from(&raw[..])
    };
    let config = config(16 << 20, 1024, FsyncMode::Interval);
    let (log, _) = open(&dir, config.clone()).await;
    for fill in 1..=3u8 {
        log.append(big(fill), 1, u64::from(fill)).await.unwrap();
    }
    log.close().await.unwrap();
    drop(log);
    // No index, and the third message torn: two 1.5 MB messages must be found by the scan.
    std::fs::remove_file(file(&dir, "index")).unwrap();
    let size = std::fs::metadata(file(&dir, "log")).unwrap().len();
    set_len(&file(&dir, "log"), size - 1_000);
    let (log, report) = open(&dir, config).await;
    assert_eq!(report.messages_count(), 2, "{report:?}");
    assert_eq!(report.segments[0].log_bytes_truncated, size / 3 - 1_000);
    let polled = log.poll(0, 10).await.unwrap();
    let payloads: Vec<u8> = messages(&polled).iter().map(|m| m.2[0]).collect();
    assert_eq!(payloads, [1, 2]);
    assert_eq!(log.append(big(4), 1, 9).await.unwrap().first_offset, 2);
}

#[compio::test]
async fn a_wrong_index_never_cuts_a_healthy_sealed_segment() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let config = config(300, 1, FsyncMode::Interval);
    let (log, _) = open(&dir, config.clone()).await;
    for _ in 0..10 {
        log.append(block("w", 1), 1, 10).await.unwrap();
    }
    log.close().await.unwrap();
    let segments = log.segments();
    drop(log);
    assert!(segments.len() >= 3);
    // The first (sealed) segment's index: well formed, within the log, but every position is
    // one byte short, so its last entry points where no message starts.
    let path = file(&dir, "index");
    let mut index = std::fs::read(&path).unwrap();
    for entry in index.chunks_mut(INDEX_ENTRY_BYTES) {
        let position = u32::from_le_bytes(entry[4..8].try_into().unwrap()) - 1;
        entry[4..8].copy_from_slice(&position.to_le_bytes());
    }
    std::fs::write(&path, index).unwrap();
    let (log, report) = open(&dir, config).await;
    assert_eq!(report.log_bytes_dropped(), 0, "{report:?}");
    assert!(report.dropped_segments.is_empty());
    assert_eq!(report.segments[0].index_entries_trusted, 0);
    assert!(report.segments[0].index_entries_rebuilt > 0);
    assert_eq!(log.segments().len(), segments.len());
    assert_eq!(log.poll(0, 100).await.unwrap().messages_count, 10);
}

#[compio::test]
async fn broken_offset_files_are_removed_at_open() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let (log, _) = open(&dir, default_config()).await;
    log.append(block("o", 3), 3, 1).await.unwrap();
    log.store_offset(OffsetOwner::Consumer(1), 2).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    let consumers = dir.join("offsets").join("consumers");
    assert_eq!(
        std::fs::read(consumers.join("1")).unwrap(),
        2u64.to_le_bytes()
    );
    // A torn offset file and a temporary file left by a crash mid-replace.
    std::fs::write(consumers.join("5"), [1, 2, 3]).unwrap();
    std::fs::write(consumers.join("6.tmp"), 9u64.to_le_bytes()).unwrap();
    let (log, _) = open(&dir, default_config()).await;
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(1)), Some(2));
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(5)), None);
    assert_eq!(log.stored_offset(OffsetOwner::Consumer(6)), None);
    assert!(!consumers.join("5").exists());
    assert!(!consumers.join("6.tmp").exists());
}

/// Bound on the waits of the test below: its steps take microseconds.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[compio::test]
async fn a_flush_s_fdatasync_does_not_hold_up_other_writes() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), default_config()).await;
    log.append(block("a", 3), 3, 1).await.unwrap();
    let mut syncing = pin!(log.flush(true));
    // Drive the flush until its write is done; it then waits on its fdatasync.
    compio::time::timeout(STEP_TIMEOUT, async {
        while poll_once(syncing.as_mut()).is_pending() && log.unflushed_messages() > 0 {
            compio::runtime::spawn(async {}).await.unwrap();
        }
    })
    .await
    .expect("the write finishes");
    assert!(
        poll_once(syncing.as_mut()).is_pending(),
        "the fdatasync is in flight (the runtime has not run since it was submitted)"
    );
    let a_bytes = log.stats().size_bytes;
    // Another write, while the first flush is not even polled: it needs `flush_lock`.
    log.append(block("b", 2), 2, 2).await.unwrap();
    compio::time::timeout(STEP_TIMEOUT, log.flush(false))
        .await
        .expect("a write does not wait for another flush's fdatasync")
        .unwrap();
    assert_eq!(log.unflushed_messages(), 0);
    syncing.await.unwrap();
    assert_eq!(
        log.unsynced_bytes(),
        log.stats().size_bytes - a_bytes,
        "the sync vouches only for what was written when it started"
    );
    log.flush(true).await.unwrap();
    assert_eq!(log.unsynced_bytes(), 0);
}

/// With `fsync = "interval"`, the append that crosses a journal threshold is acknowledged
/// without waiting for the write it starts; the write then happens on its own, and until it
/// completes the batches are polled from the journal.
#[compio::test]
async fn a_threshold_write_runs_after_the_append_returns() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(
        &partition_dir(&temp),
        config(1 << 20, 4, FsyncMode::Interval),
    )
    .await;
    log.append(block("t", 4), 4, 1).await.unwrap();
    // No await point has let the background write run yet.
    assert_eq!(log.io_counters().writes_count, 0);
    assert_eq!(log.unflushed_messages(), 4);
    assert_eq!(
        payloads(&log.poll(0, 10).await.unwrap()),
        ["t-0", "t-1", "t-2", "t-3"]
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.io_counters().writes_count == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the background write never ran"
        );
        compio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert_eq!(log.unflushed_messages(), 0);
    assert_eq!(payloads(&log.poll(2, 10).await.unwrap()), ["t-2", "t-3"]);
}

/// A roll starts the sealed log's fdatasync without waiting for it; with `fsync = "always"`
/// every acknowledgement still comes after it (the next sync waits for it first).
#[compio::test]
async fn acknowledged_appends_wait_for_the_sealed_logs_fdatasync() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), config(300, 1024, FsyncMode::Always)).await;
    for b in 0..12u32 {
        log.append(block(&format!("s{b}"), 2), 2, 1_000)
            .await
            .unwrap();
        let sealed = log
            .segments()
            .iter()
            .filter(|segment| segment.sealed)
            .count() as u64;
        assert_eq!(
            log.io_counters().sealed_fsyncs_count,
            sealed,
            "batch {b}: every sealed log was synced before the acknowledgement"
        );
    }
    assert!(log.segments().len() > 3, "the run rolled segments");
}

#[compio::test]
async fn a_parked_long_poll_is_woken_by_the_append_that_passes_its_offset() {
    let temp = tempfile::tempdir().unwrap();
    let (log, _) = open(&partition_dir(&temp), default_config()).await;
    log.append(block("a", 2), 2, 1).await.unwrap();
    // Offsets 0 and 1 are there; a poll at 2 found nothing and parks until offset 2 exists.
    let mut waiting = pin!(log.wait_for_append(2));
    assert!(poll_once(waiting.as_mut()).is_pending(), "nothing at 2 yet");
    log.append(block("b", 1), 1, 1).await.unwrap();
    assert!(poll_once(waiting.as_mut()).is_ready(), "offset 2 arrived");
    let mut waiting = pin!(log.wait_for_append(3));
    assert!(poll_once(waiting.as_mut()).is_pending());
    // A wake with nothing new (the shard stopping) lets it go too, to answer empty.
    log.wake_waiters();
    assert!(poll_once(waiting.as_mut()).is_ready());
    // An offset already there never parks; a purge ends a wait.
    assert!(poll_once(pin!(log.wait_for_append(0)).as_mut()).is_ready());
    let mut waiting = pin!(log.wait_for_append(3));
    assert!(poll_once(waiting.as_mut()).is_pending());
    log.purge().await.unwrap();
    assert!(poll_once(waiting.as_mut()).is_ready());
}
