//! O_DIRECT writes of the active segment's log (`storage.direct_io`): byte-exact round trips
//! across 4096-byte block boundaries, the zero padding while a segment is active, what a crash
//! leaves, sealing, and buffered writes with "off".
//!
//! On a file system that refuses O_DIRECT (tmpfs on older kernels) the "on" cases cannot run:
//! they print why and return; the "off" case runs everywhere.

use std::{
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    rc::Rc,
};

use bytes::BytesMut;
use galgo_protocol::message::{MessageIter, encode_message};
use galgo_storage::{DirectIo, FsyncMode, PartitionLog, RecoveryReport, StorageConfig, TailCache};

/// No tail cache: these tests read back what the files hold.
const TAIL_CACHE_BYTES: u64 = 0;

const BLOCK_BYTES: u64 = 4096;

fn config(direct_io: DirectIo, fsync: FsyncMode, segment_size_bytes: u64) -> Rc<StorageConfig> {
    Rc::new(StorageConfig {
        segment_size_bytes,
        // Every append starts the write of its batch: each one is a separate O_DIRECT write.
        journal_messages_max: 1,
        journal_bytes_max: 1 << 20,
        fsync,
        direct_io,
    })
}

/// True when the file system of `dir` accepts O_DIRECT; otherwise says why the test stops.
fn direct_io_supported(dir: &Path) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    let probe = dir.join("probe");
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe);
    std::fs::remove_file(&probe).unwrap();
    match opened {
        Ok(_) => true,
        Err(error) => {
            println!(
                "SKIPPED: {} refuses O_DIRECT ({error}); the direct_io = \"on\" case cannot run",
                dir.display()
            );
            false
        }
    }
}

/// Payload of message `offset`: `len` bytes that differ from message to message.
fn payload(offset: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (offset as usize * 131 + i * 7 + 1) as u8)
        .collect()
}

/// A partition and the payloads it must hold, in offset order.
struct Checked {
    log: Rc<PartitionLog>,
    model: Vec<Vec<u8>>,
}

impl Checked {
    /// Appends one batch of messages with payloads of `lens` bytes.
    async fn append(&mut self, lens: &[usize]) {
        let mut raw = Vec::new();
        for &len in lens {
            let payload = payload(self.model.len() as u64, len);
            encode_message(0, 0, &payload, b"", &mut raw);
            self.model.push(payload);
        }
        let receipt = self
            .log
            .append(BytesMut::from(&raw[..]), lens.len() as u32, 1)
            .await
            .unwrap();
        assert_eq!(receipt.last_offset + 1, self.model.len() as u64);
    }

    /// Polls everything and compares it with the model byte for byte; no byte beyond the
    /// messages (padding) is served.
    async fn check(&self) {
        let polled = self.log.poll(0, u32::MAX).await.unwrap();
        let mut payloads = Vec::new();
        let mut message_bytes = 0;
        for chunk in &polled.chunks {
            for view in MessageIter::new(chunk) {
                let view = view.expect("chunks hold whole messages");
                assert!(view.checksum_is_valid(), "offset {}", view.offset());
                assert_eq!(view.offset(), payloads.len() as u64);
                message_bytes += view.size() as u64;
                payloads.push(view.payload().to_vec());
            }
        }
        assert_eq!(polled.size_bytes(), message_bytes, "only whole messages");
        assert_eq!(polled.messages_count as usize, payloads.len());
        assert!(
            payloads == self.model,
            "payloads differ from what was appended"
        );
    }
}

/// Payload sizes that make messages (64-byte header + payload) end all over the blocks,
/// some batches smaller than a block, some spanning several.
const ODD_BATCHES: &[&[usize]] = &[
    &[1],
    &[3000],
    &[1031, 17],
    &[4032],
    &[0, 0, 5],
    &[9000, 4095, 4097],
    &[4000 - 64],
    &[123; 40],
    &[65_537],
];

fn partition_dir(temp: &tempfile::TempDir) -> PathBuf {
    temp.path().join("partitions").join("0")
}

fn log_file(dir: &Path, start_offset: u64) -> PathBuf {
    dir.join(format!("{start_offset:020}.log"))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

async fn open(dir: &Path, config: Rc<StorageConfig>) -> (Rc<PartitionLog>, RecoveryReport) {
    PartitionLog::open(dir.to_path_buf(), config, &TailCache::new(TAIL_CACHE_BYTES))
        .await
        .expect("open")
}

/// Appends `ODD_BATCHES`, checking after each that everything reads back and that the log
/// file is the logical size rounded up to a block (direct) or exactly it (buffered).
async fn append_odd_batches(checked: &mut Checked, dir: &Path, direct: bool) {
    for lens in ODD_BATCHES {
        checked.append(lens).await;
        checked.check().await;
        // Writes past a threshold run in the background: wait for them before looking at
        // the file.
        checked.log.flush(false).await.unwrap();
        let active = *checked.log.segments().last().unwrap();
        let on_disk = file_len(&log_file(dir, active.start_offset));
        let expected = if direct {
            active.size_bytes.next_multiple_of(BLOCK_BYTES)
        } else {
            active.size_bytes
        };
        assert_eq!(on_disk, expected, "log of {} bytes", active.size_bytes);
    }
}

#[compio::test]
async fn odd_appends_across_blocks_read_back_byte_exact_with_direct_io() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    if !direct_io_supported(&dir) {
        return;
    }
    let (log, _) = open(&dir, config(DirectIo::On, FsyncMode::Interval, 1 << 30)).await;
    let mut checked = Checked {
        log,
        model: Vec::new(),
    };
    append_odd_batches(&mut checked, &dir, true).await;
    // A run larger than one O_DIRECT write (4 MiB) is written in several.
    checked.append(&[1_500_001, 2_999_999, 700_003]).await;
    checked.check().await;
    checked.log.flush(true).await.unwrap();
    assert_eq!(checked.log.unsynced_bytes(), 0);

    checked.log.close().await.unwrap();
    let size_bytes = checked.log.segments()[0].size_bytes;
    assert_eq!(
        file_len(&log_file(&dir, 0)),
        size_bytes,
        "close cuts the padding"
    );
    let model = checked.model;
    drop(checked.log);
    let (log, report) = open(&dir, config(DirectIo::On, FsyncMode::Interval, 1 << 30)).await;
    assert!(report.is_clean(), "{report:?}");
    let checked = Checked { log, model };
    checked.check().await;
}

#[compio::test]
async fn a_crash_leaves_padding_that_reopening_cuts_without_losing_a_message() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    if !direct_io_supported(&dir) {
        return;
    }
    let config = || config(DirectIo::On, FsyncMode::Always, 1 << 30);
    let (log, _) = open(&dir, config()).await;
    let mut checked = Checked {
        log,
        model: Vec::new(),
    };
    append_odd_batches(&mut checked, &dir, true).await;
    let size_bytes = checked.log.segments()[0].size_bytes;
    assert_ne!(
        size_bytes % BLOCK_BYTES,
        0,
        "the test wants a partial last block"
    );
    // The crash: every append was acknowledged after its fdatasync; nothing is closed.
    let model = std::mem::take(&mut checked.model);
    drop(checked);
    let padded = file_len(&log_file(&dir, 0));
    assert_eq!(padded, size_bytes.next_multiple_of(BLOCK_BYTES));

    let (log, report) = open(&dir, config()).await;
    let segment = &report.segments[0];
    assert_eq!(segment.padding_bytes_cut, padded - size_bytes, "{report:?}");
    assert_eq!(segment.log_bytes_truncated, 0);
    assert!(report.is_clean(), "padding is not damage: {report:?}");
    assert_eq!(report.messages_count(), model.len() as u64);
    let mut checked = Checked { log, model };
    checked.check().await;

    // Appends continue from the reloaded tail block, byte-exact.
    append_odd_batches(&mut checked, &dir, true).await;
    let model = std::mem::take(&mut checked.model);
    drop(checked);
    let (log, report) = open(&dir, config()).await;
    assert!(report.is_clean(), "{report:?}");
    Checked { log, model }.check().await;
}

#[compio::test]
async fn a_sealed_segment_has_no_padding() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    if !direct_io_supported(&dir) {
        return;
    }
    for fsync in [FsyncMode::Never, FsyncMode::Interval] {
        let _ = std::fs::remove_dir_all(&dir);
        let (log, _) = open(&dir, config(DirectIo::On, fsync, 10_000)).await;
        let mut checked = Checked {
            log,
            model: Vec::new(),
        };
        for _ in 0..12 {
            checked.append(&[1000, 333, 2500]).await;
        }
        // Writes past a threshold (and the rolls they make) run in the background: wait for
        // them, so the drop below leaves every batch written but nothing closed.
        checked.log.flush(false).await.unwrap();
        checked.check().await;
        let segments = checked.log.segments();
        assert!(segments.len() > 3, "{segments:?}");
        for segment in segments.iter().filter(|segment| segment.sealed) {
            assert_eq!(
                file_len(&log_file(&dir, segment.start_offset)),
                segment.size_bytes,
                "fsync = {fsync}, segment {}",
                segment.start_offset
            );
        }
        let model = std::mem::take(&mut checked.model);
        drop(checked);
        let (log, report) = open(&dir, config(DirectIo::On, fsync, 10_000)).await;
        assert!(report.is_clean(), "{report:?}");
        Checked { log, model }.check().await;
    }
}

#[compio::test]
async fn buffered_writes_with_direct_io_off_leave_no_padding() {
    let temp = tempfile::tempdir().unwrap();
    let dir = partition_dir(&temp);
    let config = || config(DirectIo::Off, FsyncMode::Interval, 1 << 30);
    let (log, _) = open(&dir, config()).await;
    let mut checked = Checked {
        log,
        model: Vec::new(),
    };
    append_odd_batches(&mut checked, &dir, false).await;
    let model = std::mem::take(&mut checked.model);
    drop(checked);
    let (log, report) = open(&dir, config()).await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.segments[0].padding_bytes_cut, 0);
    // A log written buffered reopens with O_DIRECT (and back): the format is the same.
    drop(log);
    let (log, report) = open(&dir, config_direct_or_off(&dir)).await;
    assert!(report.is_clean(), "{report:?}");
    let mut checked = Checked { log, model };
    checked.append(&[77, 4444]).await;
    checked.check().await;
}

/// "on" where the file system takes O_DIRECT, "off" elsewhere.
fn config_direct_or_off(dir: &Path) -> Rc<StorageConfig> {
    let mode = if direct_io_supported(dir) {
        DirectIo::On
    } else {
        DirectIo::Off
    };
    config(mode, FsyncMode::Interval, 1 << 30)
}
