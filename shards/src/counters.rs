//! Per-shard counters, read by gathering them from every shard (never shared memory).

use std::cell::Cell;

/// Counters of one shard. Lives on its shard; copied out by value when gathered.
#[derive(Debug, Default)]
pub struct ShardCounters {
    /// Calls this shard sent to other shards.
    pub calls_sent: Cell<u64>,
    /// Calls other shards sent to this one.
    pub calls_received: Cell<u64>,
    /// Metadata events this shard applied (shard 0 counts its own commits).
    pub events_applied: Cell<u64>,
}

impl ShardCounters {
    pub(crate) fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }
}
