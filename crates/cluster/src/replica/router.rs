//! Between the replication connections (on shard 0) and the partition groups (on the shards
//! that own their partitions): a peer's message goes straight to its group's input queue, a
//! group's message to its peer's outbox. Both are flume channels, so no shard hops.

use std::{
    collections::HashMap,
    sync::{
        Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use galgo_storage::AppendReceipt;
use raft::eraftpb::Message;

use super::group::{GroupInput, Proposal, ReplicaError};
use crate::{
    transport::Outboxes,
    wire::{ForwardedSend, SendOutcome, encode_send},
};

/// The partition groups of this node, by group id, the peers' outboxes, and the sends this
/// node forwarded whose outcome it waits for.
#[derive(Default)]
pub struct PartitionRouter {
    groups: Mutex<HashMap<u64, flume::Sender<GroupInput>>>,
    outboxes: OnceLock<Outboxes>,
    calls: Mutex<HashMap<u64, oneshot::Sender<SendOutcome>>>,
    next_call: AtomicU64,
}

/// What a forwarded proposal's outcome comes as.
pub type ProposalOutcome = oneshot::Receiver<Result<AppendReceipt, ReplicaError>>;

impl From<Result<AppendReceipt, ReplicaError>> for SendOutcome {
    fn from(result: Result<AppendReceipt, ReplicaError>) -> Self {
        match result {
            Ok(receipt) => SendOutcome::Stored {
                first_offset: receipt.first_offset,
                last_offset: receipt.last_offset,
            },
            Err(ReplicaError::NotLeader(leader)) => SendOutcome::NotLeader(leader.unwrap_or(0)),
            Err(ReplicaError::Replaced) => SendOutcome::NotStored,
            Err(ReplicaError::InvalidBatch(_)) => SendOutcome::Invalid,
            Err(ReplicaError::Storage(_) | ReplicaError::Stopped) => SendOutcome::Unknown,
        }
    }
}

impl std::fmt::Debug for PartitionRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.groups.lock().map_or(0, |groups| groups.len());
        f.debug_struct("PartitionRouter")
            .field("groups", &groups)
            .finish_non_exhaustive()
    }
}

impl PartitionRouter {
    /// A group started on one of this node's shards.
    pub fn register(&self, group: u64, inputs: flume::Sender<GroupInput>) {
        self.lock().insert(group, inputs);
    }

    /// A group stopped.
    pub fn unregister(&self, group: u64) {
        self.lock().remove(&group);
    }

    /// Hands a peer's message to its group. A group this node does not run (not created
    /// here yet, or deleted) or whose queue is full drops it: Raft resends.
    pub fn deliver(&self, group: u64, message: Message) {
        let inputs = self.lock().get(&group).cloned();
        if let Some(inputs) = inputs {
            let _ = inputs.try_send(GroupInput::Message(message));
        }
    }

    /// The peers' outboxes, once the replication transport has them (shard 0 at start-up).
    pub fn set_outboxes(&self, outboxes: Outboxes) {
        let _ = self.outboxes.set(outboxes);
    }

    /// Queues a group's message for its peer; false when dropped.
    pub fn send(&self, group: u64, message: Message) -> bool {
        self.outboxes
            .get()
            .is_some_and(|outboxes| outboxes.send(group, message))
    }

    /// Queues an encoded frame for a peer; false when dropped.
    pub fn send_frame(&self, to: u64, frame: Vec<u8>) -> bool {
        self.outboxes
            .get()
            .is_some_and(|outboxes| outboxes.send_frame(to, frame))
    }

    /// Forwards a send to `leader`, the node leading `group`, and waits at most `wait` for
    /// its outcome (then it is unknown). Sent once: the leader never forwards it further.
    pub async fn forward_send(
        &self,
        leader: u64,
        group: u64,
        messages: Bytes,
        count: u32,
        wait: Duration,
    ) -> SendOutcome {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (slot, outcome) = oneshot::channel();
        self.lock_calls().insert(call, slot);
        let frame = encode_send(&ForwardedSend {
            call,
            group,
            count,
            messages,
        });
        if !self.send_frame(leader, frame) {
            self.lock_calls().remove(&call);
            return SendOutcome::NotStored;
        }
        let outcome = compio::time::timeout(wait, outcome).await;
        self.lock_calls().remove(&call);
        match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => SendOutcome::Unknown,
        }
    }

    /// A forwarded send's outcome arrived.
    pub fn complete(&self, call: u64, outcome: SendOutcome) {
        if let Some(slot) = self.lock_calls().remove(&call) {
            let _ = slot.send(outcome);
        }
    }

    /// Proposes a send another node forwarded; `Err` with its outcome when it was not even
    /// proposed (the group does not run here, or its queue is full).
    pub fn propose_forwarded(&self, send: ForwardedSend) -> Result<ProposalOutcome, SendOutcome> {
        let inputs = self
            .lock()
            .get(&send.group)
            .cloned()
            .ok_or(SendOutcome::NotLeader(0))?;
        let (reply, outcome) = oneshot::channel();
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        let proposal = Proposal {
            messages: BytesMut::from(&send.messages[..]),
            count: send.count,
            now_us,
            reply,
        };
        inputs
            .try_send(GroupInput::Propose(proposal))
            .map_err(|_| SendOutcome::NotStored)?;
        Ok(outcome)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, flume::Sender<GroupInput>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<SendOutcome>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
