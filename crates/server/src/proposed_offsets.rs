//! Consumer offsets an auto-commit poll proposed on a cluster node and that are not settled
//! yet (docs/architecture.md, "Consumer offsets").
//!
//! On a cluster an auto-commit poll is answered once its offset is proposed, not once the
//! offset is committed and applied: the commit would cost the poll a replication round trip.
//! The consumer's next `Next` poll (and GetConsumerOffset) through this node must still go on
//! after what it was given, so the proposed offset stands in for the stored one here until
//! the proposal settles: applied (the stored offset is then at least as far), or failed (the
//! stored offset is what it was, and the messages after it are delivered again: at least
//! once). Lives on the partition's owning shard; an entry lasts at most one proposal's wait.

use std::{cell::RefCell, collections::HashMap};

use galgo_metadata::PartitionKey;
use galgo_storage::OffsetOwner;

/// Proposed offsets by partition and consumer (or group).
#[derive(Debug, Default)]
pub struct ProposedOffsets {
    offsets: RefCell<HashMap<(PartitionKey, OffsetOwner), u64>>,
}

impl ProposedOffsets {
    /// The offset last proposed for `owner` on `key` and not settled yet.
    pub fn get(&self, key: PartitionKey, owner: OffsetOwner) -> Option<u64> {
        self.offsets.borrow().get(&(key, owner)).copied()
    }

    /// An auto-commit poll proposed `offset`.
    pub fn propose(&self, key: PartitionKey, owner: OffsetOwner, offset: u64) {
        self.offsets.borrow_mut().insert((key, owner), offset);
    }

    /// The proposal of `offset` settled: it no longer stands in for the stored offset, unless
    /// a later poll proposed another one meanwhile.
    pub fn settle(&self, key: PartitionKey, owner: OffsetOwner, offset: u64) {
        let mut offsets = self.offsets.borrow_mut();
        if offsets.get(&(key, owner)) == Some(&offset) {
            offsets.remove(&(key, owner));
        }
    }

    /// An explicit store or delete of `owner`'s offset on `key` replaces whatever a poll
    /// proposed.
    pub fn forget(&self, key: PartitionKey, owner: OffsetOwner) {
        self.offsets.borrow_mut().remove(&(key, owner));
    }
}

#[cfg(test)]
mod tests {
    use galgo_metadata::{PartitionId, StreamId, TopicId};

    use super::*;

    #[test]
    fn a_settled_proposal_goes_unless_a_later_one_replaced_it() {
        let key = PartitionKey {
            stream: StreamId(1),
            topic: TopicId(2),
            partition: PartitionId(3),
        };
        let owner = OffsetOwner::Consumer(7);
        let proposed = ProposedOffsets::default();
        proposed.propose(key, owner, 9);
        proposed.propose(key, owner, 19);
        proposed.settle(key, owner, 9);
        assert_eq!(
            proposed.get(key, owner),
            Some(19),
            "the later proposal stands"
        );
        proposed.settle(key, owner, 19);
        assert_eq!(proposed.get(key, owner), None);
        proposed.propose(key, owner, 29);
        proposed.forget(key, owner);
        assert_eq!(
            proposed.get(key, owner),
            None,
            "an explicit store replaces it"
        );
    }
}
