//! Arbitrary bytes after valid metadata records: opening never panics, the valid records
//! (the format record, then an event) come back first and in order, and the log as returned
//! reads as events or is refused with an error (never a panic).
#![no_main]

use galgo_metadata::{Change, Event, NewStream, StreamChange, StreamId, format_record, read_log};
use galgo_storage::MetadataLog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|tail: &[u8]| {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("metadata.log");
    let runtime = compio::runtime::Runtime::new().expect("io_uring runtime");
    runtime.block_on(async {
        let event = Event {
            version: 1,
            change: Change::Stream(StreamChange::Create(NewStream {
                id: StreamId(0),
                name: "fuzz".into(),
                created_at_us: 1,
            })),
        };
        let (log, _) = MetadataLog::open(path.clone()).await.expect("open");
        log.append(&format_record()).await.expect("append");
        log.append(&event.to_record()).await.expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(tail);
        std::fs::write(&path, bytes).expect("damage");
        let (_, records) = MetadataLog::open(path.clone()).await.expect("recover");
        assert!(records.len() >= 2, "the valid records survive");
        assert_eq!(read_log(&records[..2]).expect("valid"), [event]);
        let _ = read_log(&records);
    });
});
