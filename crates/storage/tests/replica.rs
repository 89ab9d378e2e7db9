//! A replica's partition log: batches stamped elsewhere appended verbatim, uncommitted
//! suffixes cut, through the journal, the tail cache, segment rolls and reopens.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use galgo_protocol::message::{self, MessageIter, encode_message};
use galgo_storage::{
    DirectIo, FsyncMode, OffsetOwner, PartitionLog, StorageConfig, StorageError, TailCache,
};
use proptest::prelude::*;

fn config(segment_size_bytes: u64, journal_messages_max: u32) -> Rc<StorageConfig> {
    Rc::new(StorageConfig {
        segment_size_bytes,
        journal_messages_max,
        journal_bytes_max: 1 << 20,
        fsync: FsyncMode::Interval,
        direct_io: DirectIo::Auto,
    })
}

/// A batch as a leader stamped it: `payloads` from `first_offset` on, all at `timestamp`.
fn stamped(payloads: &[Vec<u8>], first_offset: u64, timestamp: u64) -> Bytes {
    let mut out = Vec::new();
    let mut at = 0;
    for (k, payload) in payloads.iter().enumerate() {
        encode_message(0, 0, payload, b"", &mut out);
        let end = out.len();
        message::stamp(
            &mut out[at..end],
            first_offset + k as u64,
            timestamp,
            || first_offset as u128 * 1_000 + k as u128 + 1,
        );
        at = end;
    }
    Bytes::from(out)
}

fn payload(tag: u64, k: usize, len: usize) -> Vec<u8> {
    let mut bytes = format!("{tag}-{k}-").into_bytes();
    bytes.resize(bytes.len() + len, b'x');
    bytes
}

/// Every message from `from` on: (offset, timestamp, payload), checked whole and contiguous.
async fn read_all(log: &PartitionLog, from: u64) -> Vec<(u64, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let polled = log.poll(next, 1_000).await.expect("poll");
        if polled.messages_count == 0 {
            return out;
        }
        for chunk in &polled.chunks {
            for view in MessageIter::new(chunk) {
                let view = view.expect("whole messages");
                assert!(view.checksum_is_valid(), "checksum at {}", view.offset());
                assert_eq!(view.offset(), next, "offsets are contiguous");
                next += 1;
                out.push((view.offset(), view.timestamp(), view.payload().to_vec()));
            }
        }
    }
}

async fn open(dir: &std::path::Path, config: Rc<StorageConfig>, cache: u64) -> Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), config, &TailCache::new(cache))
        .await
        .expect("open")
        .0
}

#[compio::test]
async fn stamped_batches_are_kept_as_the_leader_stamped_them() {
    let temp = tempfile::tempdir().unwrap();
    let leader = open(&temp.path().join("leader"), config(1 << 20, 1024), 0).await;
    let follower = open(&temp.path().join("follower"), config(1 << 20, 1024), 0).await;
    for (batch, count) in [(0u64, 3u32), (1, 1), (2, 4)] {
        let mut block = BytesMut::new();
        for k in 0..count {
            let mut raw = Vec::new();
            encode_message(0, 7, &payload(batch, k as usize, 10), b"h", &mut raw);
            block.extend_from_slice(&raw);
        }
        let receipt = leader.append(block, count, 1_000 + batch).await.unwrap();
        let polled = leader.poll(receipt.first_offset, count).await.unwrap();
        let bytes: Vec<u8> = polled.chunks.concat();
        let copied = follower
            .append_stamped(Bytes::from(bytes), count)
            .await
            .unwrap();
        assert_eq!(copied, receipt);
    }
    leader.flush(true).await.unwrap();
    let expected = leader.poll(0, 100).await.unwrap().chunks.concat();
    assert_eq!(
        follower.poll(0, 100).await.unwrap().chunks.concat(),
        expected
    );
    follower.close().await.unwrap();
    drop(follower);
    let reopened = open(&temp.path().join("follower"), config(1 << 20, 1024), 0).await;
    assert_eq!(
        reopened.poll(0, 100).await.unwrap().chunks.concat(),
        expected
    );
    assert_eq!(reopened.last_offset(), Some(7));
}

#[compio::test]
async fn a_stamped_batch_must_continue_the_log() {
    let temp = tempfile::tempdir().unwrap();
    let log = open(temp.path(), config(1 << 20, 1024), 0).await;
    let one = |first, timestamp| stamped(&[payload(0, 0, 4)], first, timestamp);
    log.append_stamped(one(0, 50), 1).await.unwrap();
    for (batch, why) in [
        (one(2, 60), "a gap"),
        (one(0, 60), "an offset already held"),
        (one(1, 40), "an older timestamp"),
    ] {
        assert!(
            matches!(
                log.append_stamped(batch, 1).await,
                Err(StorageError::InvalidBatch(_))
            ),
            "{why} is refused"
        );
    }
    let mut mixed = stamped(&[payload(1, 0, 4)], 1, 60).to_vec();
    mixed.extend_from_slice(&stamped(&[payload(1, 1, 4)], 2, 61));
    assert!(log.append_stamped(Bytes::from(mixed), 2).await.is_err());
    assert!(
        log.append_stamped(one(1, 60), 2).await.is_err(),
        "a miscount"
    );
    assert_eq!(log.last_offset(), Some(0));
    log.append_stamped(one(1, 60), 1).await.unwrap();
    assert_eq!(log.last_offset(), Some(1));
}

#[compio::test]
async fn a_cut_clamps_stored_offsets() {
    let temp = tempfile::tempdir().unwrap();
    let log = open(temp.path(), config(1 << 20, 1024), 0).await;
    let payloads: Vec<Vec<u8>> = (0..10).map(|k| payload(0, k, 3)).collect();
    log.append_stamped(stamped(&payloads, 0, 5), 10)
        .await
        .unwrap();
    let owner = OffsetOwner::Consumer(3);
    log.store_offset(owner, 8).await.unwrap();
    log.flush(true).await.unwrap();
    log.truncate_from(6).await.unwrap();
    assert_eq!(log.last_offset(), Some(5));
    assert_eq!(log.stored_offset(owner), Some(5));
    log.truncate_from(6).await.unwrap();
    log.truncate_from(60).await.unwrap();
    assert_eq!(
        log.last_offset(),
        Some(5),
        "a cut at or past the end changes nothing"
    );
    log.truncate_from(0).await.unwrap();
    assert_eq!(log.last_offset(), None);
    assert_eq!(log.stats().messages_count, 0);
    log.append_stamped(stamped(&payloads[..2], 0, 6), 2)
        .await
        .unwrap();
    assert_eq!(read_all(&log, 0).await.len(), 2);
}

#[compio::test]
async fn a_cut_below_what_retention_kept_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    // About 60-byte messages: a 200-byte segment holds three.
    let log = open(temp.path(), config(200, 1), 0).await;
    for n in 0..4u64 {
        let payloads: Vec<Vec<u8>> = (0..3).map(|k| payload(n, k, 3)).collect();
        log.append_stamped(stamped(&payloads, n * 3, 10 + n), 3)
            .await
            .unwrap();
    }
    log.flush(false).await.unwrap();
    assert!(log.segments().len() >= 3, "{:?}", log.segments());
    log.remove_oldest_segments(1, u64::MAX).await.unwrap();
    let first = log.first_offset();
    assert!(first > 0);
    assert!(matches!(
        log.truncate_from(first - 1).await,
        Err(StorageError::InvalidBatch(_))
    ));
    assert_eq!(log.last_offset(), Some(11));
    log.truncate_from(first).await.unwrap();
    assert_eq!(
        (log.first_offset(), log.last_offset()),
        (first, Some(first - 1))
    );
    assert_eq!(log.stats().messages_count, 0);
}

#[compio::test]
async fn retention_never_passes_the_retention_end() {
    let temp = tempfile::tempdir().unwrap();
    let log = open(temp.path(), config(200, 1), 0).await;
    for n in 0..5u64 {
        let payloads: Vec<Vec<u8>> = (0..3).map(|k| payload(n, k, 3)).collect();
        log.append_stamped(stamped(&payloads, n * 3, 10 + n), 3)
            .await
            .unwrap();
    }
    log.flush(false).await.unwrap();
    let sealed_ends: Vec<u64> = log
        .segments()
        .iter()
        .filter(|segment| segment.sealed)
        .map(|segment| segment.end_offset.expect("a sealed segment holds messages"))
        .collect();
    assert!(sealed_ends.len() >= 3, "{:?}", log.segments());
    // Up to the end of the second sealed segment, exclusive of its last message: only the
    // first may go.
    log.set_retention_end(sealed_ends[1]);
    log.remove_expired_segments(u64::MAX, Some(0), None)
        .await
        .unwrap();
    assert_eq!(log.first_offset(), sealed_ends[0] + 1);
    log.remove_oldest_segments(10, u64::MAX).await.unwrap();
    assert_eq!(
        log.first_offset(),
        sealed_ends[0] + 1,
        "segment deletes respect the bound too"
    );
    log.set_retention_end(sealed_ends[1] + 1);
    log.remove_oldest_segments(10, u64::MAX).await.unwrap();
    assert_eq!(log.first_offset(), sealed_ends[1] + 1);
    log.set_retention_end(0);
    log.remove_expired_segments(u64::MAX, Some(0), Some(0))
        .await
        .unwrap();
    assert_eq!(log.first_offset(), sealed_ends[1] + 1);
}

#[compio::test]
async fn a_reset_log_starts_empty_at_its_offset_and_reopens_so() {
    let temp = tempfile::tempdir().unwrap();
    let log = open(temp.path(), config(200, 1), 1 << 20).await;
    for n in 0..4u64 {
        let payloads: Vec<Vec<u8>> = (0..3).map(|k| payload(n, k, 3)).collect();
        log.append_stamped(stamped(&payloads, n * 3, 10 + n), 3)
            .await
            .unwrap();
    }
    let owner = OffsetOwner::Consumer(7);
    log.store_offset(owner, 4).await.unwrap();
    log.reset_to(1_000).await.unwrap();
    assert_eq!(
        (log.first_offset(), log.next_offset(), log.last_offset()),
        (1_000, 1_000, Some(999))
    );
    assert_eq!(log.stats().messages_count, 0);
    assert!(
        read_all(&log, 0).await.is_empty(),
        "nothing below the reset"
    );
    assert_eq!(log.stored_offset(owner), Some(4), "stored offsets stay");
    let payloads: Vec<Vec<u8>> = (0..3).map(|k| payload(9, k, 3)).collect();
    log.append_stamped(stamped(&payloads, 1_000, 20), 3)
        .await
        .unwrap();
    log.flush(true).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    let log = open(temp.path(), config(200, 1), 0).await;
    assert_eq!(log.first_offset(), 1_000);
    let read = read_all(&log, 1_000).await;
    let offsets: Vec<u64> = read.iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets, vec![1_000, 1_001, 1_002]);
    assert_eq!(read[0].2, payloads[0]);
}

/// One step of the model test.
#[derive(Clone, Debug)]
enum Step {
    /// A batch of messages with these payload lengths.
    Append(Vec<usize>),
    /// Cut at this share (per mille) of the messages above the last reopen's end.
    Cut(u64),
    /// Write the journal out.
    Flush,
    /// Close and open the log again.
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => prop::collection::vec(0usize..90, 1..6).prop_map(Step::Append),
        2 => (0u64..1_000).prop_map(Step::Cut),
        2 => Just(Step::Flush),
        1 => Just(Step::Reopen),
    ]
}

/// Runs `steps` against a log and a plain list of (offset, timestamp, payload), comparing
/// every message after each step.
fn run(steps: Vec<Step>, segment_size_bytes: u64, cache: u64) -> Result<(), TestCaseError> {
    let runtime = compio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let temp = tempfile::tempdir().unwrap();
        let config = config(segment_size_bytes, 3);
        let mut log = open(temp.path(), config.clone(), cache).await;
        let mut model: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        let mut timestamp = 1_000;
        for (n, step) in steps.into_iter().enumerate() {
            match step {
                Step::Append(lens) => {
                    let first = model.len() as u64;
                    let payloads: Vec<Vec<u8>> = lens
                        .iter()
                        .enumerate()
                        .map(|(k, &len)| payload(n as u64, k, len))
                        .collect();
                    timestamp += 1;
                    let batch = stamped(&payloads, first, timestamp);
                    let receipt = log
                        .append_stamped(batch, payloads.len() as u32)
                        .await
                        .unwrap();
                    prop_assert_eq!(receipt.first_offset, first);
                    for payload in payloads {
                        model.push((model.len() as u64, timestamp, payload));
                    }
                }
                Step::Cut(permille) => {
                    let offset = model.len() as u64 * permille / 1_000;
                    log.truncate_from(offset).await.unwrap();
                    model.truncate(offset as usize);
                }
                Step::Flush => log.flush(false).await.unwrap(),
                Step::Reopen => {
                    log.close().await.unwrap();
                    drop(log);
                    log = open(temp.path(), config.clone(), cache).await;
                }
            }
            prop_assert_eq!(log.last_offset(), (model.len() as u64).checked_sub(1));
            prop_assert_eq!(log.stats().messages_count, model.len() as u64);
            let found = read_all(&log, 0).await;
            prop_assert_eq!(&found, &model, "after step {}", n);
        }
        // Whatever the cuts left, a reopen finds exactly the model.
        log.close().await.unwrap();
        drop(log);
        let log = open(temp.path(), config, cache).await;
        prop_assert_eq!(read_all(&log, 0).await, model);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Small segments, so that cuts cross rolls, sealed segments and the journal.
    #[test]
    fn a_replica_log_behaves_like_a_list(
        steps in prop::collection::vec(step(), 1..40),
        segment_size_bytes in 200u64..1_200,
        cached in any::<bool>(),
    ) {
        run(steps, segment_size_bytes, if cached { 1 << 20 } else { 0 })?;
    }
}
