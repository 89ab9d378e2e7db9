//! galgo-storage: what galgo keeps on disk.
//!
//! * [`PartitionLog`]: a partition's messages, in segments of a `.log` (messages exactly in
//!   wire layout, PROTOCOL.md §6.1, so polls send stored bytes unchanged) and a `.index`
//!   (16-byte entries, §9.3); an in-memory journal in front of them; recovery at open; stored
//!   consumer and group offsets.
//! * [`MetadataLog`]: the append-only, checksummed log of metadata changes (shard 0 only).
//! * For a replicated partition (a cluster's partition group): [`RaftRecords`], one record
//!   per Raft entry beside the partition log that holds the entries' messages, and
//!   [`ReplicaStateFile`], the group's term, vote, commit and log start; the partition log's
//!   `append_stamped` and `truncate_from` keep the messages in step with them.
//!
//! It is not the broker: no wire codec beyond the message layout of `galgo_protocol`, no shard
//! routing, no retention policy decisions. Every object here lives on one shard thread and is
//! `!Send`; all file I/O goes through compio (io_uring) with positional reads and writes.
//!
//! ```text
//! streams/{s}/topics/{t}/partitions/{p}/        (the directory handed to PartitionLog::open)
//! ├── 00000000000000000000.log     messages 0..n, back to back, server fields stamped
//! ├── 00000000000000000000.index   n × [relative_offset u32 | end position u32 | timestamp u64]
//! ├── 00000000000000004711.log     next segment: starts at the previous end offset + 1
//! ├── 00000000000000004711.index
//! └── offsets/
//!     ├── consumers/{consumer_id}  u64 LE stored offset
//!     └── groups/{group_id}        u64 LE stored offset
//!
//! append ─▶ journal (Bytes batches, in memory, polled from memory)
//!              │ flush: ≥ journal_messages_max | ≥ journal_bytes_max | segment roll | saver
//!              ▼
//!           active segment: one write to .log (O_DIRECT: whole 4 KiB blocks, the partial
//!           last one kept in memory), one to .index (+ fdatasync per mode)
//!              │ roll before a batch would take the log past segment_size_bytes
//!              ▼
//!           sealed segments: start/end offsets, end timestamp, size; no open file, no index
//! ```
//!
//! Durability is [`FsyncMode`]: `always` acknowledges an append only after an fdatasync that
//! covers it (group commit), `interval` leaves fsync to the shard's periodic saver, `never`
//! leaves it to the kernel.

#![warn(missing_docs)]

mod config;
mod consumer_offsets;
mod deduplication;
mod direct_io;
mod disk;
mod error;
mod journal;
mod metadata_log;
pub mod offset_index;
mod partition_log;
mod read_buffers;
mod recovery;
mod replica_records;
mod replica_state;
mod segment;
mod tail_cache;
mod write_pace;

pub use config::{DirectIo, FsyncMode, SEGMENT_SIZE_BYTES_MAX, StorageConfig};
pub use consumer_offsets::{ClampedOffset, OffsetOwner};
pub use deduplication::DeduplicationConfig;
pub use disk::replace_file;
pub use error::StorageError;
pub use journal::BATCH_OVERHEAD_BYTES;
pub use metadata_log::{METADATA_RECORD_BYTES_MAX, METADATA_RECORD_HEADER_BYTES, MetadataLog};
pub use partition_log::{
    AppendReceipt, IoCounters, JOURNAL_BACKLOG_FACTOR, POLL_BYTES_MAX, PartitionLog,
    PartitionStats, Polled, RemovedSegments, SegmentInfo, remove_partition,
};
pub use recovery::{DroppedSegment, RecoveryReport, SegmentRecovery};
pub use replica_records::{
    RAFT_RECORD_BYTES, RAFT_RECORDS_FILE, RaftRecord, RaftRecords, RecordKind,
};
pub use replica_state::{
    LogStart, REPLICA_STATE_FILE, REPLICA_VOTERS_MAX, ReplicaState, ReplicaStateFile,
    SNAPSHOT_INTENT_FILE, SnapshotIntent,
};
pub use tail_cache::{TailCache, TailCacheCounters};
