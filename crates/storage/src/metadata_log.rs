//! The metadata log: an append-only file of checksummed records, replayed at start-up. Lives on
//! shard 0 only. Records are opaque here (the metadata crate encodes them).
//!
//! ```text
//! record: [len u32 LE][xxh3-64 of payload u64 LE][payload: len bytes]   (back to back, no header)
//! ```
//!
//! A record is acknowledged only after an fdatasync. At open the file is replayed up to the
//! first record that is incomplete or fails its checksum; everything from there is cut off.

use std::{cell::Cell, path::PathBuf};

use async_lock::Mutex;
use bytes::Bytes;
use compio::fs::File;

use crate::{StorageError, disk};

/// Size of a record's frame header (length and checksum).
pub const METADATA_RECORD_HEADER_BYTES: usize = 12;
/// Largest record payload accepted (a sanity bound: metadata records are small).
pub const METADATA_RECORD_BYTES_MAX: usize = 64 << 20;

/// The metadata log. Lives on shard 0 only.
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    /// End of the last durable record: where the next one is written.
    end: Cell<u64>,
    /// Serialises appends, so records never interleave.
    append_lock: Mutex<()>,
}

impl MetadataLog {
    /// Opens (creating) the file, replays it, truncates a torn or corrupt tail (logging what
    /// was dropped) and returns the records in order.
    pub async fn open(path: PathBuf) -> Result<(MetadataLog, Vec<Bytes>), StorageError> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            disk::create_dir_all(parent).await?;
        }
        let existed = compio::fs::metadata(&path).await.is_ok();
        let file = disk::open_read_write(&path, true).await?;
        if !existed && let Some(parent) = path.parent() {
            disk::sync_dir(if parent.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                parent
            })
            .await?;
        }
        let size = disk::file_len(&file).await?;
        let contents = Bytes::from(disk::read_exact_at(&file, size as usize, 0).await?);
        let (records, end) = replay(&contents);
        if end < size {
            tracing::warn!(path = %path.display(), records = records.len(), kept_bytes = end,
                dropped_bytes = size - end, "truncating a torn or corrupt metadata log tail");
            file.set_len(end).await?;
            file.sync_data().await?;
        }
        let log = MetadataLog {
            path,
            file,
            end: Cell::new(end),
            append_lock: Mutex::new(()),
        };
        Ok((log, records))
    }

    /// The file's path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Appends one record and fdatasyncs before returning.
    pub async fn append(&self, record: &[u8]) -> Result<(), StorageError> {
        let mut frame = Vec::with_capacity(METADATA_RECORD_HEADER_BYTES + record.len());
        push_frame(&mut frame, record)?;
        let frame_len = frame.len() as u64;
        let _turn = self.append_lock.lock().await;
        let at = self.end.get();
        // On failure `end` stays put: the next append overwrites whatever part got written.
        disk::write_all_at(&self.file, frame, at).await?;
        self.file.sync_data().await?;
        self.end.set(at + frame_len);
        Ok(())
    }

    /// Replaces the whole log with `records` (a compaction); appends then go on after them.
    /// The new image is written beside the log, fdatasynced and renamed over it, so a crash
    /// leaves either the old log or the new one, never a mix. Until the rename succeeds this
    /// log is untouched; from then on it writes to the new file, even if syncing the
    /// directory fails (that error is returned: the rename may not be durable yet).
    pub async fn rewrite(&mut self, records: &[&[u8]]) -> Result<(), StorageError> {
        let mut image = Vec::new();
        for record in records {
            push_frame(&mut image, record)?;
        }
        let end = image.len() as u64;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(disk::TMP_SUFFIX);
        let file = File::create(&tmp).await?;
        disk::write_all_at(&file, image, 0).await?;
        file.sync_data().await?;
        compio::fs::rename(&tmp, &self.path).await?;
        self.file = file;
        self.end.set(end);
        let parent = self
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty());
        disk::sync_dir(parent.unwrap_or(std::path::Path::new("."))).await?;
        Ok(())
    }
}

/// Appends one record's frame to `out`.
fn push_frame(out: &mut Vec<u8>, record: &[u8]) -> Result<(), StorageError> {
    if record.len() > METADATA_RECORD_BYTES_MAX {
        return Err(StorageError::RecordTooLarge(record.len()));
    }
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(record).to_le_bytes());
    out.extend_from_slice(record);
    Ok(())
}

/// The records of a log image and the end of the last good one.
fn replay(contents: &Bytes) -> (Vec<Bytes>, u64) {
    let mut records = Vec::new();
    let mut at = 0usize;
    while contents.len() - at >= METADATA_RECORD_HEADER_BYTES {
        let len = u32::from_le_bytes(contents[at..at + 4].try_into().expect("4 bytes")) as usize;
        let checksum = u64::from_le_bytes(contents[at + 4..at + 12].try_into().expect("8 bytes"));
        let start = at + METADATA_RECORD_HEADER_BYTES;
        if len > METADATA_RECORD_BYTES_MAX || contents.len() - start < len {
            break;
        }
        let payload = contents.slice(start..start + len);
        if xxhash_rust::xxh3::xxh3_64(&payload) != checksum {
            break;
        }
        records.push(payload);
        at = start + len;
    }
    (records, at as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame(&mut out, payload).unwrap();
        out
    }

    #[compio::test]
    async fn a_rewritten_log_holds_the_new_records_and_goes_on_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("metadata.log");
        let (log, _) = MetadataLog::open(path.clone()).await.unwrap();
        for record in [&b"a"[..], b"b", b"c"] {
            log.append(record).await.unwrap();
        }
        let mut log = log;
        log.rewrite(&[b"head", b"c"]).await.unwrap();
        log.append(b"d").await.unwrap();
        drop(log);
        let (_log, records) = MetadataLog::open(path.clone()).await.unwrap();
        let expected: Vec<Bytes> = ["head", "c", "d"].into_iter().map(Bytes::from).collect();
        assert_eq!(records, expected);
        let mut tmp = path.into_os_string();
        tmp.push(crate::disk::TMP_SUFFIX);
        assert!(
            !std::path::Path::new(&tmp).exists(),
            "nothing is left beside the log"
        );
    }

    #[test]
    fn replay_stops_at_a_torn_or_corrupt_record() {
        let mut image = frame(b"one");
        image.extend(frame(b""));
        let good = image.len() as u64;
        image.extend(frame(b"three"));
        let whole = Bytes::from(image.clone());
        assert_eq!(replay(&whole).0.len(), 3);
        let torn = Bytes::from(image[..image.len() - 1].to_vec());
        assert_eq!(
            replay(&torn),
            (vec![Bytes::from("one"), Bytes::new()], good)
        );
        let mut corrupt = image.clone();
        *corrupt.last_mut().unwrap() ^= 1;
        assert_eq!(replay(&Bytes::from(corrupt)).1, good);
        let zeros = Bytes::from(vec![0u8; 40]);
        assert_eq!(
            replay(&zeros).0.len(),
            0,
            "a zero-filled tail is not a record"
        );
    }
}
