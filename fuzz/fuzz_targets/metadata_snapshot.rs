//! Arbitrary bytes as a metadata snapshot, which a cluster node restores from its log at
//! start-up and from its leader when it is behind: restoring never panics, and a state that
//! restores snapshots to bytes that restore to the same state again. The input is tried as it
//! is, behind a valid header, and XORed into a valid snapshot of a small state (so that the
//! fuzzer reaches the archive's fields, not only its framing).
#![no_main]

use galgo_metadata::{
    Change, Event, Metadata, NewStream, NewTopic, StreamChange, StreamId, TopicChange, TopicId,
    TopicSettings,
};
use libfuzzer_sys::fuzz_target;

/// The snapshot's magic and format: 23 + 2 bytes.
const HEADER_BYTES: usize = 25;

/// A stream with a topic of two partitions.
fn sample() -> Metadata {
    let mut metadata = Metadata::new(2, 1 << 20);
    let changes = [
        Change::Stream(StreamChange::Create(NewStream {
            id: StreamId(0),
            name: "fuzz".into(),
            created_at_us: 1,
        })),
        Change::Topic(TopicChange::Create(NewTopic {
            stream_id: StreamId(0),
            id: TopicId(0),
            name: "t".into(),
            created_at_us: 2,
            partitions_count: 2,
            settings: TopicSettings {
                compression: 1,
                message_expiry_us: u64::MAX,
                max_topic_size_bytes: u64::MAX,
                replication_factor: 1,
            },
        })),
    ];
    for (version, change) in changes.into_iter().enumerate() {
        metadata.apply(&Event {
            version: version as u64 + 1,
            change,
        });
    }
    metadata
}

fuzz_target!(|data: &[u8]| {
    let like = Metadata::new(2, 1 << 20);
    let mut headed = like.snapshot()[..HEADER_BYTES].to_vec();
    headed.extend_from_slice(data);
    let mut flipped = sample().snapshot();
    let len = flipped.len();
    for (at, byte) in data.iter().enumerate() {
        flipped[HEADER_BYTES + at % (len - HEADER_BYTES)] ^= byte;
    }
    for bytes in [data, &headed[..], &flipped[..]] {
        if let Ok(restored) = Metadata::from_snapshot(bytes, &like) {
            let again = restored.snapshot();
            let twice = Metadata::from_snapshot(&again, &like).expect("a restored state's snapshot");
            assert_eq!(twice.snapshot(), again);
        }
    }
});
