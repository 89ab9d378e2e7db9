//! The metadata log's format: which layout of [`Event`] its records hold.
//!
//! Events are stored as rkyv archives, and rkyv does not describe the types it stores: an
//! archive is only readable by the layout that wrote it, and one written by another layout may
//! fail to validate or, worse, validate and be misread. So the first record of every log names
//! the format its events are in, and a log in any other format is refused at start-up rather
//! than replayed.
//!
//! ```text
//! record 0:   "galgo-metadata-log" (18 bytes) [format version u16 LE]      exactly 20 bytes
//! record 1..: rkyv Event, in version order
//! ```
//!
//! Formats so far:
//! * 1: no format record; `Change` was one flat enum with raw `u32` ids. Written by galgo
//!   0.1.0 before issue 15. Not read by this build.
//! * 2: the format record above; `Change` is nested per area with typed ids.
//!
//! A new format gets a new version whenever the archived layout of [`Event`] changes.

use crate::{Event, MetadataError};

/// The format this build reads and writes.
pub const LOG_FORMAT_VERSION: u16 = 2;

/// What a log without a format record is in: the layout from before formats were recorded.
const LOG_FORMAT_UNNAMED: u16 = 1;

const LOG_FORMAT_MAGIC: &[u8; 18] = b"galgo-metadata-log";

/// The record every metadata log starts with.
pub fn format_record() -> Vec<u8> {
    let mut record = LOG_FORMAT_MAGIC.to_vec();
    record.extend_from_slice(&LOG_FORMAT_VERSION.to_le_bytes());
    record
}

/// The events of a metadata log, given its records in order. An empty log has no format
/// yet: the caller starts it with [`format_record`] before appending any event.
pub fn read_log<R: AsRef<[u8]>>(records: &[R]) -> Result<Vec<Event>, MetadataError> {
    let Some((first, events)) = records.split_first() else {
        return Ok(Vec::new());
    };
    let found = format_of(first.as_ref());
    if found != LOG_FORMAT_VERSION {
        return Err(MetadataError::UnsupportedLogFormat {
            found,
            expected: LOG_FORMAT_VERSION,
        });
    }
    events
        .iter()
        .map(|record| Event::from_record(record.as_ref()))
        .collect()
}

/// The format a log's first record names. The length is checked exactly, so an old log whose
/// first event happens to begin with the magic bytes (a root user named after them) is still
/// told apart: an archived event is never just 20 bytes.
fn format_of(first: &[u8]) -> u16 {
    match first.strip_prefix(LOG_FORMAT_MAGIC.as_slice()) {
        Some(&[low, high]) => u16::from_le_bytes([low, high]),
        _ => LOG_FORMAT_UNNAMED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Change, NewStream, StreamChange, StreamId};

    /// The first record of a log written by galgo before log formats: `Event { version: 1,
    /// change: Change::CreateUser { id: 0, username: "iggy", .. } }` in the flat layout, as
    /// that build archived it (the root user is every such log's first event).
    const FORMAT_1_FIRST_RECORD: &str = "246172676f6e32696424763d3139246d3d31393435362c743d32\
        2c703d3124633246736441246147467a61410101010101010101010100000100000000000000080000000000\
        000069676779ffffffffac000000b0ffffff0100000001000000ccffffff0b00000000401e18240a060000\
        0000000000000000000000000000000000000000000000";

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
            .collect()
    }

    fn event() -> Event {
        Event {
            version: 1,
            change: Change::Stream(StreamChange::Create(NewStream {
                id: StreamId(0),
                name: "orders".into(),
                created_at_us: 1,
            })),
        }
    }

    #[test]
    fn a_log_starts_with_its_format_and_reads_back() {
        let empty: [Vec<u8>; 0] = [];
        assert_eq!(read_log(&empty), Ok(Vec::new()));
        assert_eq!(read_log(&[format_record()]), Ok(Vec::new()));
        let log = [format_record(), event().to_record()];
        assert_eq!(read_log(&log), Ok(vec![event()]));
    }

    #[test]
    fn a_log_of_the_flat_layout_is_refused() {
        let old = [unhex(FORMAT_1_FIRST_RECORD)];
        let refused = read_log(&old).expect_err("format 1 is not read");
        assert_eq!(
            refused,
            MetadataError::UnsupportedLogFormat {
                found: 1,
                expected: LOG_FORMAT_VERSION
            }
        );
        assert!(refused.to_string().contains("docs/operations.md"));
        // Without the format record, the new layout is refused the same way: nothing is
        // replayed on a guess.
        assert!(read_log(&[event().to_record()]).is_err());
    }

    #[test]
    fn another_format_version_or_a_longer_first_record_is_refused() {
        let mut future = format_record();
        future[LOG_FORMAT_MAGIC.len()..].copy_from_slice(&3u16.to_le_bytes());
        assert_eq!(
            read_log(&[future]),
            Err(MetadataError::UnsupportedLogFormat {
                found: 3,
                expected: LOG_FORMAT_VERSION
            })
        );
        let mut longer = format_record();
        longer.push(0);
        assert!(read_log(&[longer]).is_err());
    }
}
