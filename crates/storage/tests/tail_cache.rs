//! The tail cache: polls across its edge return every message once and in order, before and
//! after restarts; its bound holds across a shard's partitions, oldest evicted first; purge
//! and retention drop what they delete.

use std::{path::Path, rc::Rc};

use bytes::BytesMut;
use galgo_protocol::{
    Identifier,
    command::messages::PolledMessagesHeader,
    message::{MessageIter, encode_message},
    partitioning::Partitioning,
    vsr::batch::{self, KeptRecord, OutgoingMessage, SentFrames},
};
use galgo_storage::{
    BATCH_OVERHEAD_BYTES, DirectIo, FsyncMode, PartitionLog, StorageConfig, TailCache,
};

/// 100-byte payloads: a stored message is 64 + 100 bytes, and its index entry 16.
const PAYLOAD_BYTES: usize = 100;
const CACHED_MESSAGE_BYTES: u64 = 64 + 100 + 16;

/// What a batch of `messages` such messages counts against the bound: its bytes and the
/// batch's own overhead.
fn batch_bytes(messages: u64) -> u64 {
    messages * CACHED_MESSAGE_BYTES + BATCH_OVERHEAD_BYTES
}

fn config(segment_size_bytes: u64) -> Rc<StorageConfig> {
    config_with_journal(segment_size_bytes, 4)
}

fn config_with_journal(segment_size_bytes: u64, journal_messages_max: u32) -> Rc<StorageConfig> {
    Rc::new(StorageConfig {
        segment_size_bytes,
        journal_messages_max,
        journal_bytes_max: 1 << 20,
        fsync: FsyncMode::Never,
        direct_io: DirectIo::Auto,
    })
}

fn block(first: u64, count: u32) -> BytesMut {
    let mut out = Vec::new();
    for k in 0..u64::from(count) {
        let mut payload = format!("m{}-", first + k).into_bytes();
        payload.resize(PAYLOAD_BYTES, b'.');
        encode_message(0, 0, &payload, b"", &mut out);
    }
    BytesMut::from(&out[..])
}

/// Polls `[from, from + count)` in polls of `step` and checks each message: its offset, its
/// payload, its checksum.
async fn check_range(log: &PartitionLog, from: u64, count: u64, step: u32) {
    let mut next = from;
    while next < from + count {
        let polled = log.poll(next, step).await.expect("poll");
        assert_eq!(polled.first_offset, next);
        assert!(polled.messages_count > 0, "offset {next} is readable");
        for chunk in &polled.chunks {
            for view in MessageIter::new(chunk) {
                let view = view.expect("whole messages");
                assert!(view.checksum_is_valid());
                assert_eq!(view.offset(), next, "every offset once, in order");
                assert!(view.payload().starts_with(format!("m{next}-").as_bytes()));
                next += 1;
            }
        }
    }
    assert_eq!(next, from + count);
}

async fn open(dir: &Path, segment_size_bytes: u64, cache: &Rc<TailCache>) -> Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), config(segment_size_bytes), cache)
        .await
        .expect("open")
        .0
}

/// Appends `batches` batches of `per_batch` messages, writing each out (so that it is cached).
async fn fill(log: &PartitionLog, batches: u64, per_batch: u32) {
    for _ in 0..batches {
        let first = log.last_offset().map_or(0, |last| last + 1);
        log.append(block(first, per_batch), per_batch, 1)
            .await
            .unwrap();
        log.flush(false).await.unwrap();
    }
}

#[compio::test]
async fn polls_across_the_cache_edge_return_every_message_once_in_order() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("p");
    // Room for 10 batches of 3: the older ones are evicted, read back from the files.
    let cache = TailCache::new(10 * batch_bytes(3));
    let log = open(&dir, 4096, &cache).await;
    fill(&log, 40, 3).await;
    assert!(cache.bytes() <= cache.bytes_max());
    assert_eq!(cache.bytes(), 10 * batch_bytes(3), "the newest 10 batches");
    // One message past the write: in the journal, above the cache.
    log.append(block(120, 1), 1, 1).await.unwrap();
    for step in [1, 2, 3, 5, 7, 64, 1000] {
        check_range(&log, 0, 121, step).await;
    }
    // Polls that start just below, at and just above the cache's first offset (90).
    for from in [88, 89, 90, 91] {
        check_range(&log, from, 121 - from, 4).await;
    }
    let counters = cache.counters();
    assert!(counters.memory_reads > 0 && counters.disk_reads > 0);
    // Whatever was written and is not cached was evicted (the last message may have been
    // written too: it starts a new segment, which writes the journal out at once).
    let written = log.segments().iter().map(|s| s.size_bytes).sum::<u64>() / 164;
    assert!(written == 120 || written == 121);
    assert_eq!(
        counters.evicted_bytes + cache.bytes(),
        40 * batch_bytes(3) + (written - 120) * batch_bytes(1)
    );

    // After a restart the cache starts empty: the files serve everything, then what is
    // written from now on is cached again.
    log.close().await.unwrap();
    drop(log);
    assert_eq!(cache.bytes(), 0, "a closed partition gives its memory back");
    let log = open(&dir, 4096, &cache).await;
    check_range(&log, 0, 121, 10).await;
    fill(&log, 5, 3).await;
    check_range(&log, 0, 136, 9).await;
    check_range(&log, 118, 18, 2).await;
}

#[compio::test]
async fn the_bound_holds_across_a_shards_partitions_oldest_first() {
    let temp = tempfile::tempdir().unwrap();
    let cache = TailCache::new(10 * batch_bytes(2));
    let a = open(&temp.path().join("a"), 1 << 20, &cache).await;
    let b = open(&temp.path().join("b"), 1 << 20, &cache).await;
    fill(&a, 5, 2).await; // a: offsets 0..10, all cached
    fill(&b, 8, 2).await; // b: 0..16; the shard holds 13 batches' worth: a's 3 oldest go
    assert_eq!(cache.bytes(), 10 * batch_bytes(2));
    let before = cache.counters();
    check_range(&a, 6, 4, 10).await;
    check_range(&b, 0, 16, 100).await;
    let after = cache.counters();
    assert_eq!(
        after.disk_reads, before.disk_reads,
        "a's newest four and all of b come from memory"
    );
    check_range(&a, 0, 10, 100).await;
    assert_eq!(cache.counters().disk_reads, after.disk_reads + 1);

    // A deleted partition gives its share back; the other keeps what it had.
    drop(b);
    assert_eq!(cache.bytes(), 2 * batch_bytes(2));
    fill(&a, 10, 2).await;
    assert_eq!(cache.bytes(), 10 * batch_bytes(2));
    check_range(&a, 0, 30, 7).await;
}

#[compio::test]
async fn purge_retention_and_pressure_drop_what_they_must() {
    let temp = tempfile::tempdir().unwrap();
    let cache = TailCache::new(u64::MAX);
    // Segments of about 3 batches of 3: retention then deletes whole cached batches.
    let log = open(&temp.path().join("p"), 3 * 3 * 164, &cache).await;
    fill(&log, 12, 3).await;
    assert_eq!(cache.bytes(), 12 * batch_bytes(3));
    let removed = log.remove_oldest_segments(2, u64::MAX).await.unwrap();
    assert_eq!(removed.segments_count, 2);
    let first = log.first_offset();
    assert_eq!(first, removed.messages_count);
    assert_eq!(first % 3, 0, "whole batches");
    assert_eq!(cache.bytes(), (36 - first) / 3 * batch_bytes(3));
    check_range(&log, first, 36 - first, 5).await;

    // Memory pressure gives back the oldest half; polls still see everything.
    let freed = cache.shrink_to(cache.bytes() / 2);
    assert!(freed > 0 && cache.bytes() <= (36 - first) / 3 * batch_bytes(3) / 2);
    check_range(&log, first, 36 - first, 5).await;

    log.purge().await.unwrap();
    assert_eq!(cache.bytes(), 0);
    assert_eq!(log.poll(0, 10).await.unwrap().messages_count, 0);
    fill(&log, 2, 3).await;
    check_range(&log, 0, 6, 4).await;
    assert_eq!(cache.bytes(), 2 * batch_bytes(3));
}

#[compio::test]
async fn unwritten_batches_take_their_room_from_the_cache_and_give_it_back() {
    let temp = tempfile::tempdir().unwrap();
    let bound = 10 * batch_bytes(3);
    let cache = TailCache::new(bound);
    let dir = temp.path().join("p");
    // Thresholds far above what the test appends: nothing is written until it flushes.
    let open_deep = || PartitionLog::open(dir.clone(), config_with_journal(1 << 20, 1000), &cache);
    let (log, _) = open_deep().await.unwrap();
    fill(&log, 10, 3).await;
    assert_eq!((cache.bytes(), cache.unwritten_bytes()), (bound, 0));
    for _ in 0..4 {
        let first = log.last_offset().unwrap() + 1;
        log.append(block(first, 3), 3, 1).await.unwrap();
    }
    // 12 messages unwritten: the cache made room for them, oldest first.
    assert_eq!(cache.unwritten_bytes(), 4 * batch_bytes(3));
    assert_eq!(cache.bytes(), 6 * batch_bytes(3));
    check_range(&log, 0, 42, 5).await;
    log.flush(false).await.unwrap();
    assert_eq!((cache.bytes(), cache.unwritten_bytes()), (bound, 0));
    check_range(&log, 0, 42, 8).await;

    // Purged or dropped unwritten batches give their share back too.
    log.append(block(42, 3), 3, 1).await.unwrap();
    log.purge().await.unwrap();
    assert_eq!((cache.bytes(), cache.unwritten_bytes()), (0, 0));
    log.append(block(0, 3), 3, 1).await.unwrap();
    assert_eq!(cache.unwritten_bytes(), batch_bytes(3));
    drop(log);
    assert_eq!(cache.unwritten_bytes(), 0);
}

#[compio::test]
async fn what_a_batch_keeps_allocated_counts_against_the_bound() {
    let temp = tempfile::tempdir().unwrap();
    // Each batch of 2 keeps as much again allocated (the request it was split off).
    let held = 2 * CACHED_MESSAGE_BYTES;
    let batch = batch_bytes(2) + held;
    let cache = TailCache::new(5 * batch);
    let log = open(temp.path(), 1 << 20, &cache).await;
    for _ in 0..3 {
        let first = log.last_offset().map_or(0, |last| last + 1);
        log.append_holding(block(first, 2), 2, 1, held, None)
            .await
            .unwrap();
        assert_eq!(
            cache.unwritten_bytes(),
            batch,
            "journaled, it counts with what it holds"
        );
        log.flush(false).await.unwrap();
    }
    assert_eq!(cache.bytes(), 3 * batch);
    // Three more exceed the bound of 5 such batches: the oldest batch goes, and what it
    // held with it.
    for _ in 0..3 {
        let first = log.last_offset().map_or(0, |last| last + 1);
        log.append_holding(block(first, 2), 2, 1, held, None)
            .await
            .unwrap();
        log.flush(false).await.unwrap();
    }
    assert_eq!(cache.bytes(), 5 * batch);
    assert_eq!(cache.counters().evicted_bytes, batch);
    check_range(&log, 0, 12, 3).await;
}

/// A batch as a 0.9 producer sends it, decoded as the server decodes it: the stored block
/// and the frames it keeps. Payloads as `block` makes them; ids from 1.
fn sent_0_9(first: u64, count: u32) -> (BytesMut, SentFrames) {
    let payloads: Vec<Vec<u8>> = MessageIter::new(&block(first, count))
        .map(|view| view.expect("whole").payload().to_vec())
        .collect();
    let outgoing: Vec<OutgoingMessage<'_>> = payloads
        .iter()
        .enumerate()
        .map(|(k, payload)| OutgoingMessage {
            id: u128::from(first) + k as u128 + 1,
            origin_timestamp: 1_000 + first + k as u64,
            payload,
            user_headers: b"",
        })
        .collect();
    let zero = Identifier::Numeric(0);
    let mut body = BytesMut::new();
    batch::encode_send(
        &zero,
        &zero,
        &Partitioning::PartitionId(0),
        &outgoing,
        &mut body,
    )
    .expect("encoded");
    let send = batch::decode_send(body).expect("valid");
    (send.messages, send.frames.expect("ids are set"))
}

/// A poll of `[from, from + count)`, served to a 0.9 consumer: every message once and in
/// order, and how many of them went out as the producer's own frames.
async fn poll_0_9(log: &PartitionLog, from: u64, count: u32) -> u32 {
    let polled = log.poll(from, count).await.expect("poll");
    assert_eq!(polled.messages_count, count);
    let mut head = BytesMut::new();
    PolledMessagesHeader {
        partition_id: 0,
        current_offset: 0,
        messages_count: count,
    }
    .encode(&mut head);
    let mut chunks = vec![head.clone().freeze()];
    chunks.extend(polled.chunks.iter().cloned());
    let kept: Vec<KeptRecord> = polled
        .kept
        .iter()
        .map(|record| KeptRecord {
            chunk: record.chunk + 1,
            ..record.clone()
        })
        .collect();
    let reply = batch::encode_polled_keeping(&chunks, &kept).expect("encoded");
    let as_0_8 = batch::decode_polled(&reply).expect("a valid 0.9 reply");
    assert_eq!(
        &as_0_8[..],
        &chunks.concat()[..],
        "the same messages as the 0.8 reply"
    );
    polled
        .kept
        .iter()
        .map(|record| record.message_count() as u32)
        .sum()
}

#[compio::test]
async fn batches_sent_in_the_0_9_layout_serve_their_frames_while_in_memory() {
    let temp = tempfile::tempdir().unwrap();
    // Room for about 4 batches of 3 with their frames (each held twice).
    let cache = TailCache::new(8 * 3 * CACHED_MESSAGE_BYTES + 4 * BATCH_OVERHEAD_BYTES);
    let log = open(temp.path(), 1 << 20, &cache).await;
    let mut each = 0;
    for k in 0..10u64 {
        let (messages, frames) = sent_0_9(3 * k, 3);
        let held = frames.memory_bytes();
        each = batch_bytes(3) + held;
        log.append_holding(messages, 3, 1, 0, Some(frames))
            .await
            .unwrap();
        if k == 0 {
            assert_eq!(
                cache.unwritten_bytes(),
                each,
                "the frames count against the bound"
            );
        }
        if k < 9 {
            log.flush(false).await.unwrap();
        }
    }
    check_range(&log, 0, 30, 4).await;
    // The newest batch is in the journal, some before it in the cache: whole batches and
    // slices of them go out as sent.
    assert_eq!(poll_0_9(&log, 27, 3).await, 3);
    assert_eq!(poll_0_9(&log, 25, 4).await, 4);
    assert_eq!(poll_0_9(&log, 28, 1).await, 1);
    // The oldest were evicted: what the files serve is converted.
    assert_eq!(cache.bytes() % each, 0, "batches of one size");
    let first_cached = 27 - cache.bytes() / each * 3;
    assert!(first_cached > 3, "the bound evicted the oldest batches");
    assert_eq!(poll_0_9(&log, 0, 30).await as u64, 30 - first_cached);
    assert_eq!(poll_0_9(&log, 1, 2).await, 0);
}
