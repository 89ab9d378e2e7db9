//! Partition groups: a partition's replicas on the nodes that hold it, one Raft group each,
//! living on the shard that owns the partition (docs/architecture.md, "Partition groups").
//! The group's Raft log is the partition log: one copy of each batch on disk, with a
//! `raft.records` record per entry and the group's `raft_state` beside it (galgo-storage).

mod group;
mod router;
mod storage;

pub use group::{
    GroupConfig, GroupHandle, GroupInbox, GroupInput, GroupView, NotQueued, OffsetProposal,
    Proposal, ReplicaError, Sink, groups_driven_here, start_group,
};

pub use router::{CallError, PartitionRouter, ProposalOutcome};
pub use storage::{
    ENTRY_CONTEXT_BYTES, EntryMeta, Fetch, PartitionStorage, SnapshotContent, decode_snapshot,
};
