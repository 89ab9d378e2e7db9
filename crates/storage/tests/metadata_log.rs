//! MetadataLog on a real compio runtime and a temp directory.

use std::path::Path;

use galgo_storage::{METADATA_RECORD_HEADER_BYTES, MetadataLog};

async fn reopen(path: &Path) -> (MetadataLog, Vec<Vec<u8>>) {
    let (log, records) = MetadataLog::open(path.to_path_buf()).await.expect("open");
    (log, records.iter().map(|record| record.to_vec()).collect())
}

#[compio::test]
async fn records_round_trip_in_order() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("state").join("log");
    let (log, records) = reopen(&path).await;
    assert!(records.is_empty());
    for record in [&b"create stream"[..], b"", b"create topic"] {
        log.append(record).await.unwrap();
    }
    drop(log);
    let (log, records) = reopen(&path).await;
    assert_eq!(
        records,
        [
            b"create stream".to_vec(),
            Vec::new(),
            b"create topic".to_vec()
        ]
    );
    log.append(b"after reopen").await.unwrap();
    drop(log);
    assert_eq!(reopen(&path).await.1.len(), 4);
}

#[compio::test]
async fn a_torn_or_corrupt_tail_is_truncated() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("log");
    let (log, _) = reopen(&path).await;
    log.append(b"one").await.unwrap();
    log.append(b"two").await.unwrap();
    drop(log);
    let good = std::fs::metadata(&path).unwrap().len();

    // Torn: half a record.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&path, &bytes).unwrap();
    let (log, records) = reopen(&path).await;
    assert_eq!(records, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    log.append(b"three").await.unwrap();
    drop(log);
    assert_eq!(reopen(&path).await.1.len(), 3);

    // Corrupt: the last record's payload changed; a zero-filled tail after it.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    bytes.extend_from_slice(&[0u8; 100]);
    std::fs::write(&path, &bytes).unwrap();
    let (log, records) = reopen(&path).await;
    assert_eq!(records, [b"one".to_vec(), b"two".to_vec()]);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good,
        "cut right after the last good record"
    );
    log.append(b"four").await.unwrap();
    drop(log);
    let (_, records) = reopen(&path).await;
    assert_eq!(records.last().unwrap(), b"four");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        good + (METADATA_RECORD_HEADER_BYTES + 4) as u64
    );
}

#[compio::test]
async fn concurrent_appends_never_interleave() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("log");
    let (log, _) = reopen(&path).await;
    let log = std::rc::Rc::new(log);
    let tasks: Vec<_> = (0..20u8)
        .map(|i| {
            let log = log.clone();
            compio::runtime::spawn(async move { log.append(&vec![i; 100 + i as usize]).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    drop(log);
    let (_, mut records) = reopen(&path).await;
    records.sort();
    let expected: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
    assert_eq!(records, expected);
}
