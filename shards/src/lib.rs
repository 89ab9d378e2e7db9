//! galgo-shards: the engine.
//!
//! One OS thread per shard, each with its own compio runtime and io_uring ring, optionally
//! pinned to a core. Shards share nothing: each owns a metadata replica, the partitions placed
//! on it and the sessions of the connections it accepted. They talk only through one bounded
//! flume inbox per shard, carrying one-way messages:
//!
//! ```text
//!   shard k ── Call{from k, id, job} ──▶ inbox(j) ── shard j runs job on its state
//!   shard k ◀── Reply{id, value} ─────── inbox(k) ◀─┘  (completes k's pending slot)
//!   shard 0 ── Event{version, change} ─▶ inbox(every other shard)  (metadata replicas)
//! ```
//!
//! [`Shard::call`] is the single entry point for cross-shard work: the reply type follows from
//! the closure, and work for the calling shard itself runs in place with no hop.
#![warn(missing_docs)]

mod cleaner;
mod counters;
mod engine;
mod memory;
mod message;
mod saver;
mod settings;
mod shard;
mod uring_probe;

pub use cleaner::{clean_retention, run_retention_cleaner};
pub use counters::ShardCounters;
pub use engine::{
    Engine, EngineError, Lifecycle, MakeState, Readiness, Serve, ShardsHandle, ShutdownHandle,
};
pub use memory::{
    LOW_MEMORY_SHARE, MemoryReading, TAIL_CACHE_SHARE_OF_MEMORY, auto_tail_cache_bytes,
};
pub use saver::run_saver;
pub use settings::{INBOX_CAPACITY_MIN, ShardSettings, StorageSettings};
pub use shard::{CallError, Shard, ShardState};
pub use uring_probe::{UringUnavailable, probe_io_uring};
