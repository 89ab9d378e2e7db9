//! Between the replication connections (on shard 0) and the partition groups (on the shards
//! that own their partitions): a peer's message goes straight to its group's input queue, a
//! group's message to its peer's outbox. Both are flume channels, so no shard hops.

use std::{
    collections::HashMap,
    sync::{
        Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::{Bytes, BytesMut};
use futures_channel::oneshot;
use galgo_storage::{AppendReceipt, OffsetOwner};
use raft::eraftpb::Message;

use super::group::{GroupInbox, GroupInput, OffsetProposal, Proposal, ReplicaError};
use crate::{
    transport::Outboxes,
    wire::{
        ForwardedOffset, ForwardedSend, Pieces, SendOutcome, encode_call, encode_offset,
        encode_send,
    },
};

/// The partition groups of this node, by group id, the peers' outboxes, and the sends this
/// node forwarded whose outcome it waits for.
#[derive(Default)]
pub struct PartitionRouter {
    groups: Mutex<Groups>,
    outboxes: OnceLock<Outboxes>,
    calls: Mutex<HashMap<u64, oneshot::Sender<SendOutcome>>>,
    /// Calls to peers' servers waiting for their answers.
    answers: Mutex<HashMap<u64, oneshot::Sender<Bytes>>>,
    next_call: AtomicU64,
}

/// Why a call to a peer's server has no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallError {
    /// It was not sent: no connection to the peer, or its outbox is full.
    NotSent,
    /// No answer came in time (the call may have been served).
    NoAnswer,
}

/// Groups held for a group that does not run here yet, at most.
const EARLY_GROUPS_MAX: usize = 1024;
/// Messages held per such group, at most.
const EARLY_MESSAGES_MAX: usize = 16;
/// How long they are held.
const EARLY_TTL: Duration = Duration::from_secs(5);

/// The running groups, and messages for groups about to start here.
#[derive(Default)]
struct Groups {
    running: HashMap<u64, GroupInbox>,
    /// A new partition's group starts on each node as that node applies the change creating
    /// it; the first node's vote request would otherwise be dropped by the others and the
    /// group wait a whole election timeout for its first leader.
    early: HashMap<u64, (Instant, Vec<Message>)>,
}

/// Removes a forwarded send's slot when its caller is done with it.
struct ForgetCall<'a> {
    router: &'a PartitionRouter,
    call: u64,
}

impl Drop for ForgetCall<'_> {
    fn drop(&mut self) {
        self.router.lock_calls().remove(&self.call);
        self.router.lock_answers().remove(&self.call);
    }
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
            Err(error) => SendOutcome::from_error(error),
        }
    }
}

/// A consumer offset write's outcome: its entry's index as both offsets.
impl From<Result<u64, ReplicaError>> for SendOutcome {
    fn from(result: Result<u64, ReplicaError>) -> Self {
        match result {
            Ok(index) => SendOutcome::Stored {
                first_offset: index,
                last_offset: index,
            },
            Err(error) => SendOutcome::from_error(error),
        }
    }
}

impl SendOutcome {
    /// What a proposal that failed with `error` tells the node that forwarded it.
    fn from_error(error: ReplicaError) -> Self {
        match error {
            ReplicaError::NotLeader(leader) => SendOutcome::NotLeader(leader.unwrap_or(0)),
            ReplicaError::Replaced => SendOutcome::NotStored,
            ReplicaError::InvalidBatch(_) | ReplicaError::InvalidOffset => SendOutcome::Invalid,
            ReplicaError::Storage(_) | ReplicaError::Stopped | ReplicaError::Superseded => {
                SendOutcome::Unknown
            }
        }
    }
}

impl std::fmt::Debug for PartitionRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let groups = self.groups.lock().map_or(0, |groups| groups.running.len());
        f.debug_struct("PartitionRouter")
            .field("groups", &groups)
            .finish_non_exhaustive()
    }
}

impl PartitionRouter {
    /// A group started on one of this node's shards: it gets what peers sent it shortly
    /// before.
    pub fn register(&self, group: u64, inputs: GroupInbox) {
        let mut groups = self.lock();
        if let Some((since, early)) = groups.early.remove(&group)
            && since.elapsed() < EARLY_TTL
        {
            for message in early {
                let _ = inputs.try_send(GroupInput::Message(message));
            }
        }
        groups.running.insert(group, inputs);
    }

    /// A group stopped.
    pub fn unregister(&self, group: u64) {
        self.lock().running.remove(&group);
    }

    /// Hands a peer's message to its group. A group whose queue is full drops it (Raft
    /// resends); one that does not run here has a few held briefly, in case it is about to
    /// start, and the rest dropped.
    pub fn deliver(&self, group: u64, message: Message) {
        let mut groups = self.lock();
        if let Some(inputs) = groups.running.get(&group) {
            let _ = inputs.try_send(GroupInput::Message(message));
            return;
        }
        let now = Instant::now();
        if groups.early.len() >= EARLY_GROUPS_MAX {
            groups
                .early
                .retain(|_, (since, _)| now.duration_since(*since) < EARLY_TTL);
        }
        if groups.early.len() >= EARLY_GROUPS_MAX && !groups.early.contains_key(&group) {
            return;
        }
        let (_, held) = groups
            .early
            .entry(group)
            .or_insert_with(|| (now, Vec::new()));
        if held.len() < EARLY_MESSAGES_MAX {
            held.push(message);
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
    pub fn send_frame(&self, to: u64, frame: Pieces) -> bool {
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
        self.forward(leader, wait, |call| {
            encode_send(&ForwardedSend {
                call,
                group,
                count,
                messages,
            })
        })
        .await
    }

    /// Forwards a consumer offset write (`None` deletes) to `leader`, as
    /// [`PartitionRouter::forward_send`] does a send; stored, it comes back with its entry's
    /// index as both offsets.
    pub async fn forward_offset(
        &self,
        leader: u64,
        group: u64,
        owner: OffsetOwner,
        offset: Option<u64>,
        wait: Duration,
    ) -> SendOutcome {
        self.forward(leader, wait, |call| {
            encode_offset(&ForwardedOffset {
                call,
                group,
                owner,
                offset,
            })
        })
        .await
    }

    async fn forward(
        &self,
        leader: u64,
        wait: Duration,
        frame: impl FnOnce(u64) -> Pieces,
    ) -> SendOutcome {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (slot, outcome) = oneshot::channel();
        self.lock_calls().insert(call, slot);
        // The call is forgotten however this ends, the caller giving up included.
        let _forget = ForgetCall { router: self, call };
        if !self.send_frame(leader, frame(call)) {
            return SendOutcome::NotStored;
        }
        let outcome = compio::time::timeout(wait, outcome).await;
        match outcome {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) | Err(_) => SendOutcome::Unknown,
        }
    }

    /// Calls `to`'s server with `body` (galgo-server's remote partition calls) and waits at
    /// most `wait` for its answer.
    pub async fn call(&self, to: u64, body: Pieces, wait: Duration) -> Result<Bytes, CallError> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (slot, answer) = oneshot::channel();
        self.lock_answers().insert(call, slot);
        let _forget = ForgetCall { router: self, call };
        if !self.send_frame(to, encode_call(call, body)) {
            return Err(CallError::NotSent);
        }
        match compio::time::timeout(wait, answer).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) | Err(_) => Err(CallError::NoAnswer),
        }
    }

    /// The answer to a call this node made arrived.
    pub fn answered(&self, call: u64, answer: Bytes) {
        if let Some(slot) = self.lock_answers().remove(&call) {
            let _ = slot.send(answer);
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
        let inputs = self.running(send.group)?;
        let (reply, outcome) = oneshot::channel();
        let now_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as u64);
        let proposal = Proposal {
            // No copy when the frame it came in holds nothing else (what the transport reads).
            messages: BytesMut::from(send.messages),
            count: send.count,
            now_us,
            reply,
        };
        inputs
            .try_send(GroupInput::Propose(proposal))
            .map_err(|_| SendOutcome::NotStored)?;
        Ok(outcome)
    }

    /// Proposes a consumer offset write another node forwarded, as
    /// [`PartitionRouter::propose_forwarded`] does a send.
    pub fn propose_forwarded_offset(
        &self,
        write: ForwardedOffset,
    ) -> Result<oneshot::Receiver<Result<u64, ReplicaError>>, SendOutcome> {
        let inputs = self.running(write.group)?;
        let (reply, outcome) = oneshot::channel();
        let proposal = OffsetProposal {
            owner: write.owner,
            offset: write.offset,
            reply,
        };
        inputs
            .try_send(GroupInput::ProposeOffset(proposal))
            .map_err(|_| SendOutcome::NotStored)?;
        Ok(outcome)
    }

    /// The input queue of `group`, running here; "not leader" (of nothing known) otherwise.
    fn running(&self, group: u64) -> Result<GroupInbox, SendOutcome> {
        self.lock()
            .running
            .get(&group)
            .cloned()
            .ok_or(SendOutcome::NotLeader(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Groups> {
        // A panic while holding the lock leaves a map that is still whole.
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_answers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Bytes>>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<SendOutcome>>> {
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(to: u64) -> Message {
        Message {
            to,
            ..Message::default()
        }
    }

    fn delivered(queued: &flume::Receiver<(u64, GroupInput)>) -> Vec<u64> {
        queued
            .try_iter()
            .filter_map(|(_, input)| match input {
                GroupInput::Message(message) => Some(message.to),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn messages_for_a_group_about_to_start_reach_it_and_others_are_bounded() {
        let router = PartitionRouter::default();
        for to in 0..EARLY_MESSAGES_MAX as u64 + 5 {
            router.deliver(7, message(to));
        }
        let (inputs, queued) = flume::unbounded();
        router.register(7, GroupInbox::new(7, inputs));
        let early = delivered(&queued);
        assert_eq!(early, (0..EARLY_MESSAGES_MAX as u64).collect::<Vec<_>>());
        router.deliver(7, message(99));
        assert_eq!(
            delivered(&queued),
            [99],
            "a running group gets messages at once"
        );
        for group in 100..100 + EARLY_GROUPS_MAX as u64 + 10 {
            router.deliver(group, message(1));
        }
        assert!(router.lock().early.len() <= EARLY_GROUPS_MAX);
        router.unregister(7);
        router.deliver(7, message(5));
        assert!(
            delivered(&queued).is_empty(),
            "a stopped group gets nothing"
        );
    }
}
