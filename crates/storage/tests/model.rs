//! Property test: a PartitionLog behaves like a plain list of messages, through random batch
//! sizes, segment sizes, flushes, polls, and a torn tail at reopen.

use std::rc::Rc;

use bytes::BytesMut;
use galgo_protocol::message::{MessageIter, encode_message};
use galgo_storage::{DirectIo, FsyncMode, PartitionLog, StorageConfig, TailCache};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Batch {
    payload_lens: Vec<usize>,
    flush: bool,
    poll: (usize, u32),
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        prop::collection::vec(0usize..120, 1..5),
        any::<bool>(),
        (0usize..200, 0u32..20),
    )
        .prop_map(|(payload_lens, flush, poll)| Batch {
            payload_lens,
            flush,
            poll,
        })
}

fn payload(offset: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (offset * 31 + i) as u8).collect()
}

async fn poll_payloads(log: &PartitionLog, from: u64, count: u32) -> Vec<Vec<u8>> {
    let polled = log.poll(from, count).await.expect("poll");
    let mut out = Vec::new();
    let mut offset = polled.first_offset;
    for chunk in &polled.chunks {
        for view in MessageIter::new(chunk) {
            let view = view.expect("whole messages");
            assert!(view.checksum_is_valid());
            assert_eq!(view.offset(), offset);
            offset += 1;
            out.push(view.payload().to_vec());
        }
    }
    assert_eq!(out.len(), polled.messages_count as usize);
    out
}

fn run(
    cache_bytes_max: u64,
    segment_size_bytes: u64,
    journal_messages_max: u32,
    batches: Vec<Batch>,
    cut_permille: u64,
    junk: Vec<u8>,
) -> Result<(), TestCaseError> {
    let runtime = compio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("p");
        let config = Rc::new(StorageConfig {
            segment_size_bytes,
            journal_messages_max,
            journal_bytes_max: 1 << 20,
            fsync: FsyncMode::Never,
            direct_io: DirectIo::Auto,
        });
        // A small cache bound puts the edge between memory and files anywhere in the log.
        let cache = TailCache::new(cache_bytes_max);
        let (log, _) = PartitionLog::open(dir.clone(), config.clone(), &cache)
            .await
            .unwrap();
        let model = append_batches(&log, &batches).await?;
        // Journal writes past a threshold, and the rolls they make, run in the background:
        // the segments are final once `close` has written everything.
        log.close().await.unwrap();
        for segment in log.segments() {
            prop_assert!(segment.size_bytes <= segment_size_bytes.max(64 * 5 + 600));
        }
        let last = *log.segments().last().unwrap();
        drop(log);

        let path = dir.join(format!("{:020}.log", last.start_offset));
        let cut = tear(&path, cut_permille, junk);
        let kept = whole_messages_before(&model, last.start_offset as usize, cut);

        let (log, report) = PartitionLog::open(dir.clone(), config, &cache)
            .await
            .unwrap();
        prop_assert_eq!(report.messages_count(), kept as u64);
        prop_assert_eq!(log.last_offset(), (kept as u64).checked_sub(1));
        prop_assert_eq!(
            poll_payloads(&log, 0, u32::MAX).await,
            model[..kept].to_vec()
        );
        let mut raw = Vec::new();
        encode_message(0, 0, b"after", b"", &mut raw);
        let receipt = log.append(BytesMut::from(&raw[..]), 1, 0).await.unwrap();
        prop_assert_eq!(receipt.first_offset, kept as u64);
        Ok(())
    })
}

/// Appends the batches, flushing and polling as each one asks, and checks every poll against
/// the model: the payloads appended so far, in order. Returns the model.
async fn append_batches(
    log: &PartitionLog,
    batches: &[Batch],
) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut model: Vec<Vec<u8>> = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let mut raw = Vec::new();
        for &len in &batch.payload_lens {
            encode_message(0, 0, &payload(model.len(), len), b"", &mut raw);
            model.push(payload(model.len(), len));
        }
        let count = batch.payload_lens.len() as u32;
        let receipt = log
            .append(BytesMut::from(&raw[..]), count, b as u64)
            .await
            .unwrap();
        prop_assert_eq!(receipt.last_offset + 1, model.len() as u64);
        if batch.flush {
            log.flush(false).await.unwrap();
        }
        let (from, count) = batch.poll;
        let from = from.min(model.len());
        let end = (from + count as usize).min(model.len());
        prop_assert_eq!(
            poll_payloads(log, from as u64, count).await,
            model[from..end].to_vec()
        );
    }
    Ok(model)
}

/// Tears the segment log at `path` at a random point and returns the length it keeps.
fn tear(path: &std::path::Path, cut_permille: u64, junk: Vec<u8>) -> u64 {
    let original = std::fs::read(path).unwrap();
    let size = original.len() as u64;
    let cut = size * cut_permille / 1000;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(cut)
        .unwrap();
    // And leave junk after it: zeros or random bytes, as a crash might. Junk that starts
    // with the very bytes that were cut off would rebuild the message exactly (and
    // recovery rightly keeps a whole message whose checksum holds), so the first junk
    // byte always differs from the byte it replaces.
    let mut torn = std::fs::read(path).unwrap();
    let mut junk = junk;
    if let (Some(first), Some(&replaced)) = (junk.first_mut(), original.get(cut as usize))
        && *first == replaced
    {
        *first = !replaced;
    }
    torn.extend_from_slice(&junk);
    std::fs::write(path, torn).unwrap();
    cut
}

/// How many messages of the model survive a cut `cut` bytes into the log of the segment that
/// starts at offset `start`: those before it, and the ones of that segment (a 64-byte header
/// and the payload each) that end before the cut.
fn whole_messages_before(model: &[Vec<u8>], start: usize, cut: u64) -> usize {
    let mut kept = start;
    let mut end = 0u64;
    while kept < model.len() && end + 64 + model[kept].len() as u64 <= cut {
        end += 64 + model[kept].len() as u64;
        kept += 1;
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_partition_log_is_a_list_of_messages(
        cache_bytes_max in prop_oneof![Just(0u64), 1u64..3_000, Just(u64::MAX)],
        segment_size_bytes in 150u64..2_000,
        journal_messages_max in 1u32..8,
        batches in prop::collection::vec(batch(), 1..30),
        cut_permille in 0u64..=1000,
        junk in prop_oneof![
            Just(Vec::new()),
            (1usize..300).prop_map(|len| vec![0u8; len]),
            prop::collection::vec(any::<u8>(), 1..300),
        ],
    ) {
        run(cache_bytes_max, segment_size_bytes, journal_messages_max, batches, cut_permille, junk)?;
    }
}
