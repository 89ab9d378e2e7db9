//! Storage settings, shared read-only by every partition of a shard (`Rc<StorageConfig>`).

use std::{fmt, str::FromStr};

use crate::StorageError;

/// Largest segment the format allows: index positions are u32, and Iggy caps segments at 1 GiB.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = 1 << 30;
const _: () = assert!(SEGMENT_SIZE_BYTES_MAX <= u32::MAX as u64);

/// When data reaches stable storage. Every mode means exactly what it says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsyncMode {
    /// An append is acknowledged only after an fdatasync covering it (group commit: concurrent
    /// appends share one write and one fdatasync). Stored consumer offsets are fsynced too.
    Always,
    /// Appends are acknowledged from memory; the shard's periodic saver calls
    /// `flush(fsync = true)`. A sealed segment's fdatasync starts when it is sealed, and
    /// every later sync waits for it before it reports anything durable.
    Interval,
    /// Nothing is fsynced unless a caller asks `flush(true)` or `close()`.
    Never,
}

impl FromStr for FsyncMode {
    type Err = StorageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "always" => Ok(Self::Always),
            "interval" => Ok(Self::Interval),
            "never" => Ok(Self::Never),
            other => Err(StorageError::InvalidConfig(format!(
                "fsync must be \"always\", \"interval\" or \"never\", not {other:?}"
            ))),
        }
    }
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Always => "always",
            Self::Interval => "interval",
            Self::Never => "never",
        })
    }
}

/// Whether the active segment's `.log` is written with O_DIRECT (bypassing the page cache).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirectIo {
    /// Try O_DIRECT; where the file system refuses it (EINVAL at open, e.g. tmpfs), log one
    /// warning and write through the page cache.
    Auto,
    /// O_DIRECT or nothing: opening a segment on a file system that refuses it is an error.
    On,
    /// Write through the page cache.
    Off,
}

impl FromStr for DirectIo {
    type Err = StorageError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(StorageError::InvalidConfig(format!(
                "direct_io must be \"auto\", \"on\" or \"off\", not {other:?}"
            ))),
        }
    }
}

impl fmt::Display for DirectIo {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        })
    }
}

/// Settings of every partition log on a shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// A segment is sealed, and a new one started, before an append would take its log past
    /// this size. A single batch larger than this gets a segment of its own.
    pub segment_size_bytes: u64,
    /// The journal is written out once it holds this many messages.
    pub journal_messages_max: u32,
    /// The journal is written out once it holds this many bytes.
    pub journal_bytes_max: u64,
    /// Durability mode.
    pub fsync: FsyncMode,
    /// O_DIRECT writes of the active segment's log.
    pub direct_io: DirectIo,
}

impl Default for StorageConfig {
    /// Iggy 0.8's defaults (PROTOCOL.md §9.5), with `fsync = "interval"`.
    fn default() -> Self {
        Self {
            segment_size_bytes: SEGMENT_SIZE_BYTES_MAX,
            journal_messages_max: 1024,
            journal_bytes_max: 1 << 20,
            fsync: FsyncMode::Interval,
            direct_io: DirectIo::Auto,
        }
    }
}

impl StorageConfig {
    /// Checks the values the on-disk format depends on.
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.segment_size_bytes == 0 || self.segment_size_bytes > SEGMENT_SIZE_BYTES_MAX {
            return Err(StorageError::InvalidConfig(format!(
                "segment_size_bytes must be in 1..={SEGMENT_SIZE_BYTES_MAX}, not {}",
                self.segment_size_bytes
            )));
        }
        if self.journal_messages_max == 0 || self.journal_bytes_max == 0 {
            return Err(StorageError::InvalidConfig(
                "journal_messages_max and journal_bytes_max must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_mode_parses_and_prints() {
        for mode in [FsyncMode::Always, FsyncMode::Interval, FsyncMode::Never] {
            assert_eq!(mode.to_string().parse::<FsyncMode>().unwrap(), mode);
        }
        assert!("sometimes".parse::<FsyncMode>().is_err());
    }

    #[test]
    fn direct_io_parses_and_prints() {
        for mode in [DirectIo::Auto, DirectIo::On, DirectIo::Off] {
            assert_eq!(mode.to_string().parse::<DirectIo>().unwrap(), mode);
        }
        assert!("yes".parse::<DirectIo>().is_err());
    }

    #[test]
    fn config_limits_are_checked() {
        assert!(StorageConfig::default().validate().is_ok());
        let too_big = StorageConfig {
            segment_size_bytes: SEGMENT_SIZE_BYTES_MAX + 1,
            ..StorageConfig::default()
        };
        assert!(too_big.validate().is_err());
    }
}
