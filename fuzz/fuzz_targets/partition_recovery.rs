//! Arbitrary bytes after a valid segment, or in place of its index: recovery never panics,
//! never serves a message whose checksum fails, keeps every intact message, and the partition
//! keeps accepting appends at the next offset.
#![no_main]

use std::rc::Rc;

use bytes::BytesMut;
use galgo_protocol::message::{MessageIter, encode_message};
use galgo_storage::{DirectIo, FsyncMode, PartitionLog, StorageConfig, TailCache};
use libfuzzer_sys::fuzz_target;

const INTACT_MESSAGES: u64 = 3;

fn config() -> Rc<StorageConfig> {
    Rc::new(StorageConfig {
        segment_size_bytes: 1 << 20,
        journal_messages_max: 1,
        journal_bytes_max: 1 << 20,
        fsync: FsyncMode::Never,
        direct_io: DirectIo::Auto,
    })
}

fn batch(count: u64) -> BytesMut {
    let mut block = Vec::new();
    for index in 0..count {
        encode_message(0, 0, format!("message {index}").as_bytes(), b"", &mut block);
    }
    BytesMut::from(&block[..])
}

fn run(tail: &[u8], damage_index: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("partition");
    let runtime = compio::runtime::Runtime::new().expect("io_uring runtime");
    runtime.block_on(async {
        // No tail cache: polls after the reopen read what recovery left in the files.
        let cache = TailCache::new(0);
        let (log, _) = PartitionLog::open(path.clone(), config(), &cache).await.expect("open");
        log.append(batch(INTACT_MESSAGES), INTACT_MESSAGES as u32, 1).await.expect("append");
        log.close().await.expect("close");
        drop(log);
        let segment = path.join(format!("{:020}.log", 0));
        let index = path.join(format!("{:020}.index", 0));
        if damage_index {
            std::fs::write(&index, tail).expect("overwrite index");
        } else {
            let mut bytes = std::fs::read(&segment).expect("read log");
            bytes.extend_from_slice(tail);
            std::fs::write(&segment, bytes).expect("damage log");
        }
        let (log, _) = PartitionLog::open(path.clone(), config(), &cache).await.expect("recover");
        let last = log.last_offset().expect("the intact messages survive");
        assert!(last >= INTACT_MESSAGES - 1);
        let polled = log.poll(0, u32::MAX).await.expect("poll");
        let mut offsets = Vec::new();
        for chunk in &polled.chunks {
            for message in MessageIter::new(chunk) {
                let message = message.expect("whole messages only");
                assert!(message.checksum_is_valid(), "a corrupted message was served");
                offsets.push(message.offset());
            }
        }
        assert_eq!(offsets, (0..=last).collect::<Vec<_>>());
        let receipt = log.append(batch(1), 1, 2).await.expect("append after recovery");
        assert_eq!(receipt.first_offset, last + 1);
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, tail)) = data.split_first() else {
        return;
    };
    run(tail, mode % 2 == 1);
});
