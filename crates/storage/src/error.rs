//! The one error type of this crate.

/// What can go wrong in storage. The server maps each variant to a protocol status code in one
/// place; nothing here knows about the wire.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file system refused an operation (full disk, permissions, a vanished file…).
    #[error("storage I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes on disk that recovery could not repair by truncation, e.g. a stored offset file
    /// of the wrong size that could not be removed.
    #[error("corrupt storage: {0}")]
    Corrupt(String),
    /// A message block handed to `append` does not hold exactly the declared messages. The
    /// server validates batches before appending, so this signals a caller bug; it is still a
    /// `Result` so one bad request cannot take the shard down.
    #[error("invalid message batch: {0}")]
    InvalidBatch(&'static str),
    /// A `StorageConfig` value outside what the on-disk format can represent.
    #[error("invalid storage config: {0}")]
    InvalidConfig(String),
    /// A metadata record larger than `METADATA_RECORD_BYTES_MAX`.
    #[error("metadata record of {0} bytes is larger than the limit")]
    RecordTooLarge(usize),
}
