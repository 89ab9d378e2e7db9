//! The scan of a segment's log from a proven position, message by message.

use compio::fs::File;
use galgo_protocol::message::{
    MESSAGE_HEADER_BYTES, MESSAGE_PAYLOAD_BYTES_MAX, MessageView, PAYLOAD_LENGTH_AT,
    USER_HEADERS_BYTES_MAX, USER_HEADERS_LENGTH_AT,
};

use super::{SCAN_CHUNK_BYTES, trusted_prefix::Tail};
use crate::{StorageError, disk, offset_index::IndexEntry};

/// Walks a log from a proven position, verifying each message.
pub(super) struct LogScanner<'a> {
    log: &'a File,
    log_size: u64,
    start_offset: u64,
    /// End of the last verified message.
    pub(super) position: u64,
    /// Entry of the last verified message.
    pub(super) previous: Option<IndexEntry>,
    /// Number of verified messages.
    pub(super) next_k: u32,
    /// Size of a message that did not fit the last read.
    need: usize,
    /// Why the scan stopped before the end of the log.
    pub(super) stop: Option<String>,
}

impl<'a> LogScanner<'a> {
    /// A scan of the log of the segment at `start_offset`, from the start of `tail`.
    pub(super) fn new(log: &'a File, log_size: u64, start_offset: u64, tail: &Tail) -> Self {
        Self {
            log,
            log_size,
            start_offset,
            position: tail.previous.map_or(0, |entry| u64::from(entry.position)),
            previous: tail.previous,
            next_k: tail.first_k,
            need: 0,
            stop: None,
        }
    }
    /// True once the scan reached the end of the log or stopped before it.
    pub(super) fn finished(&self) -> bool {
        self.stop.is_some() || self.position == self.log_size
    }

    /// Entries of the next verified messages, encoded; empty at the end of the scan.
    pub(super) async fn next_entries(&mut self) -> Result<Vec<u8>, StorageError> {
        let mut entries = Vec::new();
        let remaining = self.log_size - self.position;
        if self.stop.is_some() || remaining == 0 {
            return Ok(entries);
        }
        let want = (SCAN_CHUNK_BYTES.max(self.need) as u64).min(remaining) as usize;
        let buffer = disk::read_exact_at(self.log, want, self.position).await?;
        let at_end_of_log = want as u64 == remaining;
        let mut at = 0;
        while at < buffer.len() {
            match self.check(&buffer[at..], self.position + at as u64, at_end_of_log) {
                Ok(entry_size) => {
                    at += entry_size;
                    let entry = IndexEntry {
                        relative_offset: self.next_k,
                        position: (self.position + at as u64) as u32,
                        timestamp: MessageView::parse(&buffer[at - entry_size..])
                            .expect("checked")
                            .timestamp(),
                    };
                    if !entry.follows(self.previous.as_ref(), self.next_k) {
                        self.stop = Some("the message timestamp goes back".into());
                        break;
                    }
                    entries.extend_from_slice(&entry.encode());
                    self.previous = Some(entry);
                    self.next_k += 1;
                }
                Err(Incomplete::Need(size)) => {
                    self.need = size;
                    break;
                }
                Err(Incomplete::Stop(reason)) => {
                    self.stop = Some(reason);
                    break;
                }
            }
        }
        self.position += at as u64;
        if at == 0 && self.stop.is_none() && self.need <= buffer.len() {
            // Cannot happen: a short read of a complete message would loop forever.
            self.stop = Some("the scan made no progress".into());
        }
        Ok(entries)
    }

    /// Checks the message at the start of `rest`; its size when it is good.
    fn check(&self, rest: &[u8], position: u64, at_end_of_log: bool) -> Result<usize, Incomplete> {
        if rest.len() < MESSAGE_HEADER_BYTES {
            return Err(if at_end_of_log {
                Incomplete::Stop(format!("a partial header of {} bytes", rest.len()))
            } else {
                Incomplete::Need(MESSAGE_HEADER_BYTES)
            });
        }
        let payload = u32_at(rest, PAYLOAD_LENGTH_AT);
        let headers = u32_at(rest, USER_HEADERS_LENGTH_AT);
        if payload > MESSAGE_PAYLOAD_BYTES_MAX || headers > USER_HEADERS_BYTES_MAX {
            return Err(Incomplete::Stop(format!(
                "implausible lengths (payload {payload}, headers {headers})"
            )));
        }
        let size = MESSAGE_HEADER_BYTES + payload as usize + headers as usize;
        if position + size as u64 > u64::from(u32::MAX) {
            return Err(Incomplete::Stop("the log goes past 4 GiB".into()));
        }
        let Some(view) = MessageView::parse(rest) else {
            return Err(if at_end_of_log {
                Incomplete::Stop(format!(
                    "a message of {size} bytes cut after {} bytes",
                    rest.len()
                ))
            } else {
                Incomplete::Need(size)
            });
        };
        let expected = self.start_offset + u64::from(self.next_k);
        if !view.checksum_is_valid() {
            return Err(Incomplete::Stop(format!(
                "checksum mismatch at offset {expected}"
            )));
        }
        if view.offset() != expected {
            return Err(Incomplete::Stop(format!(
                "offset {} where {expected} was due",
                view.offset()
            )));
        }
        Ok(size)
    }
}

enum Incomplete {
    /// The message is larger than what was read; read this many bytes from its start.
    Need(usize),
    /// The log is not to be trusted from here.
    Stop(String),
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
