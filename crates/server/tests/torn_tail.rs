//! Recovery from a damaged last segment (ARCHITECTURE.md "Recovery at start-up"): between two
//! runs the test truncates, extends, de-indexes or zero-fills the tail of the last `.log`, then
//! checks that every message before the damage is served intact, nothing damaged is served, and
//! new sends continue at the next offset.

mod support;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use bytes::Bytes;
use galgo_protocol::message::{MessageIter, checksum, encode_message};
use iggy::prelude::*;
use support::TestServer;
use support::sdk::{self, TEST_TIMEOUT, id, within};

const MESSAGES: u64 = 60;

/// A server with one partition of `MESSAGES` messages over several 4 KiB segments, stopped
/// gracefully. Returns the server and the wire bytes of every message.
async fn written_and_stopped() -> (TestServer, Vec<Bytes>) {
    let mut server = TestServer::start(&["--set", "storage.segment_size_bytes=4096"]);
    let messages = within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        sdk::create_stream_and_topic(&client, "torn", "t", 1).await;
        for batch in 0..MESSAGES / 5 {
            let mut messages: Vec<IggyMessage> = (batch * 5..batch * 5 + 5)
                .map(|n| {
                    // Non-zero payload bytes all the way, so zero-filling is detectable.
                    let payload: Vec<u8> = (0..100)
                        .map(|i| 1 + ((n as u8).wrapping_mul(31) ^ i) % 250)
                        .collect();
                    sdk::message(payload)
                })
                .collect();
            client
                .send_messages(
                    &id(0),
                    &id(0),
                    &Partitioning::partition_id(0),
                    &mut messages,
                )
                .await
                .expect("send");
        }
        // A stored offset on the last message, which the damage will remove.
        client
            .store_consumer_offset(&Consumer::new(id(1)), &id(0), &id(0), Some(0), MESSAGES - 1)
            .await
            .unwrap();
        let all = sdk::poll_all(&client, 0, 0, 0).await;
        assert_eq!(all.len() as u64, MESSAGES);
        all.iter().map(|m| m.to_bytes()).collect::<Vec<Bytes>>()
    })
    .await;
    server.stop();
    (server, messages)
}

/// The last segment of partition 0: its start offset and `.log` / `.index` paths.
fn last_segment(server: &TestServer) -> (u64, PathBuf, PathBuf) {
    let dir = server.partition_dir(0, 0, 0);
    let start = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            entry
                .unwrap()
                .file_name()
                .into_string()
                .unwrap()
                .strip_suffix(".log")
                .map(|s| s.parse::<u64>().unwrap())
        })
        .max()
        .expect("a segment");
    assert!(start > 0, "the test needs several segments");
    (
        start,
        dir.join(format!("{start:020}.log")),
        dir.join(format!("{start:020}.index")),
    )
}

/// Byte range `[start, end)` of each message in a segment file.
fn message_ranges(log: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut iter = MessageIter::new(log);
    let mut at = 0;
    while let Some(view) = iter.next() {
        let view = view.expect("intact segment before the damage");
        ranges.push((at, at + view.size()));
        at = iter.position();
    }
    ranges
}

/// Restarts, then checks that exactly the first `intact` messages are served (byte for byte),
/// that stored offsets point at existing messages, and that a new send gets offset `intact`.
///
/// `start` is the first offset of the damaged segment, which must keep at least one message.
async fn assert_recovered(server: &mut TestServer, original: &[Bytes], start: u64, intact: u64) {
    assert!(
        start < intact,
        "the damaged segment keeps at least one message"
    );
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let served = assert_intact_served(&client, original, intact).await;
        assert_reads_agree(&client, &served, start, intact).await;
        assert_stored_offset_clamped(&client, intact).await;
        assert_sends_continue(&client, intact).await;
    })
    .await;

    // And the repaired partition survives one more clean cycle.
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let served = sdk::poll_all(&client, 0, 0, 0).await;
        assert_eq!(served.len() as u64, intact + 2);
        let served_bytes: Vec<Bytes> = served[..intact as usize]
            .iter()
            .map(|m| m.to_bytes())
            .collect();
        assert_eq!(served_bytes, original[..intact as usize]);
    })
    .await;
}

/// Polls the whole partition and checks that every served message has a valid checksum and
/// that they are exactly the first `intact` original messages. Returns what was served.
async fn assert_intact_served(
    client: &IggyClient,
    original: &[Bytes],
    intact: u64,
) -> Vec<IggyMessage> {
    let served = sdk::poll_all(client, 0, 0, 0).await;
    for message in &served {
        assert_eq!(
            message.header.checksum,
            checksum(&message.to_bytes()),
            "offset {} served corrupted",
            message.header.offset
        );
    }
    let served_bytes: Vec<Bytes> = served.iter().map(|m| m.to_bytes()).collect();
    assert_eq!(
        served_bytes.len() as u64,
        intact,
        "messages served after recovery"
    );
    assert_eq!(
        served_bytes,
        original[..intact as usize],
        "messages before the damage are intact"
    );
    served
}

/// Reads by offset in the damaged segment, by timestamp, and Last all agree on where the
/// recovered data ends.
async fn assert_reads_agree(client: &IggyClient, served: &[IggyMessage], start: u64, intact: u64) {
    let tail = sdk::poll_offset(client, 0, 0, 0, start, 1000).await;
    assert_eq!(tail.messages.len() as u64, intact - start);
    assert_eq!(tail.current_offset, intact - 1);
    let last = client
        .poll_messages(
            &id(0),
            &id(0),
            Some(0),
            &Consumer::new(id(2)),
            &PollingStrategy::last(),
            1,
            false,
        )
        .await
        .unwrap();
    assert_eq!(sdk::offsets(&last.messages), vec![intact - 1]);
    let t = served[start as usize].header.timestamp;
    let by_time = client
        .poll_messages(
            &id(0),
            &id(0),
            Some(0),
            &Consumer::new(id(2)),
            &PollingStrategy::timestamp(t.into()),
            1000,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        by_time.messages.last().map(|m| m.header.offset),
        Some(intact - 1)
    );
    assert!(
        by_time
            .messages
            .first()
            .is_some_and(|m| m.header.offset <= start)
    );
}

/// The consumer offset stored on the last original message must not point past the data.
async fn assert_stored_offset_clamped(client: &IggyClient, intact: u64) {
    let stored = client
        .get_consumer_offset(&Consumer::new(id(1)), &id(0), &id(0), Some(0))
        .await
        .unwrap()
        .map(|info| info.stored_offset);
    assert!(
        stored.is_some_and(|offset| offset < intact),
        "a stored offset past the data is clamped to it: {stored:?} with {intact} messages"
    );
}

/// Two new messages are accepted and land at offsets `intact` and `intact + 1`.
async fn assert_sends_continue(client: &IggyClient, intact: u64) {
    client
        .send_messages(
            &id(0),
            &id(0),
            &Partitioning::partition_id(0),
            &mut sdk::messages("after-recovery", 0..2),
        )
        .await
        .expect("send after recovery");
    let fresh = sdk::poll_offset(client, 0, 0, 0, intact, 10).await;
    assert_eq!(
        sdk::offsets(&fresh.messages),
        vec![intact, intact + 1],
        "new sends continue at the next offset"
    );
    assert_eq!(
        sdk::payload_strings(&fresh.messages),
        vec!["after-recovery-0", "after-recovery-1"]
    );
}

#[tokio::test]
async fn log_truncated_inside_the_last_message() {
    let (mut server, original) = written_and_stopped().await;
    let (start, log_path, _) = last_segment(&server);
    let log = std::fs::read(&log_path).unwrap();
    let (last_start, last_end) = *message_ranges(&log).last().unwrap();
    let cut = last_start + (last_end - last_start) / 2;
    OpenOptions::new()
        .write(true)
        .open(&log_path)
        .unwrap()
        .set_len(cut as u64)
        .unwrap();
    assert_recovered(&mut server, &original, start, MESSAGES - 1).await;
}

#[tokio::test]
async fn log_truncated_inside_the_last_header() {
    let (mut server, original) = written_and_stopped().await;
    let (start, log_path, _) = last_segment(&server);
    let log = std::fs::read(&log_path).unwrap();
    let (last_start, _) = *message_ranges(&log).last().unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log_path)
        .unwrap()
        .set_len(last_start as u64 + 20)
        .unwrap();
    assert_recovered(&mut server, &original, start, MESSAGES - 1).await;
}

#[tokio::test]
async fn garbage_appended_to_the_log() {
    let (mut server, original) = written_and_stopped().await;
    let (start, log_path, _) = last_segment(&server);
    let mut file = OpenOptions::new().append(true).open(&log_path).unwrap();
    // A complete message for the next offset whose checksum is wrong, then random-looking bytes.
    let mut fake = Vec::new();
    encode_message(7, 7, b"never acknowledged", b"", &mut fake);
    fake[24..32].copy_from_slice(&MESSAGES.to_le_bytes());
    fake[0..8].copy_from_slice(&0xBAD_C0DEu64.to_le_bytes());
    file.write_all(&fake).unwrap();
    file.write_all(
        &(0..77u32)
            .map(|i| (i * 97 % 251) as u8)
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    drop(file);
    assert_recovered(&mut server, &original, start, MESSAGES).await;
}

#[tokio::test]
async fn index_deleted() {
    let (mut server, original) = written_and_stopped().await;
    let (start, _, index_path) = last_segment(&server);
    let expected = std::fs::read(&index_path).unwrap();
    std::fs::remove_file(&index_path).unwrap();
    // The first segment's index goes too: every index must be rebuildable from its log.
    let first_index = server
        .partition_dir(0, 0, 0)
        .join(format!("{:020}.index", 0));
    std::fs::remove_file(&first_index).unwrap();
    assert_recovered(&mut server, &original, start, MESSAGES).await;
    server.stop();
    let rebuilt = std::fs::read(&index_path).expect("the index is rebuilt");
    assert!(
        rebuilt.len() >= expected.len(),
        "the rebuilt index covers the old messages"
    );
    assert_eq!(
        rebuilt[..expected.len()],
        expected[..],
        "the rebuilt index equals the original one"
    );
}

#[tokio::test]
async fn log_tail_zero_filled() {
    let (mut server, original) = written_and_stopped().await;
    let (start, log_path, _) = last_segment(&server);
    let log = std::fs::read(&log_path).unwrap();
    let (last_start, last_end) = *message_ranges(&log).last().unwrap();
    let mut file = OpenOptions::new().write(true).open(&log_path).unwrap();
    // The last message's payload half zeroed in place (length unchanged)...
    let zero_from = last_start + 64 + (last_end - last_start - 64) / 2;
    file.seek(SeekFrom::Start(zero_from as u64)).unwrap();
    file.write_all(&vec![0u8; last_end - zero_from]).unwrap();
    // ...and a preallocated-looking zero tail after it.
    file.write_all(&[0u8; 4096]).unwrap();
    drop(file);
    assert_recovered(&mut server, &original, start, MESSAGES - 1).await;
}
