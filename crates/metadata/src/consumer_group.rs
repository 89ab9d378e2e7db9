//! Consumer groups: members, the partitions each owns, and rebalancing (PROTOCOL.md §8.6).
//!
//! A group lives in its topic's metadata, so every shard's replica knows who owns which
//! partition and a member's polls are routed from whichever shard its connection is on.
//! Membership is ephemeral (clients do not survive a restart); the group itself persists.
//!
//! Two rebalances:
//! * **cooperative** (on join): every member gets a quota of `partitions / members`, and
//!   `remainder` of them one more (the members that already hold most, so that little moves).
//!   Unowned partitions go straight to members under quota; partitions of members over quota
//!   are marked *pending revocation* towards a member under quota and move once their old
//!   owner has committed what it was served (or on a timeout). Unlike Iggy 0.8, an idle member
//!   may receive several partitions, so sequential joins end fair: 4 over 2 is 2/2, never 3/1.
//! * **full** (on leave, disconnect, or a change of the partition count): partition `i` goes
//!   to the `(i % members)`-th member in id order, and pending revocations are dropped.

mod changes;

pub use changes::GroupKey;

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet},
};

use crate::{GroupId, MemberId, PartitionId};

/// One member of a group: a connected client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Id within the group.
    pub id: MemberId,
    /// The client (connection) that joined.
    pub client_id: u32,
    /// The cluster node the client is connected to (0 on a single node): its members go when
    /// that node starts again, since a start ends every connection it had.
    pub node: u64,
    /// When it joined, µs since the epoch, by that node's clock.
    pub joined_us: u64,
    /// The partitions it owns, ascending (those pending revocation from it included).
    pub partitions: Vec<u32>,
}

/// A partition on its way from one member to another, waiting for the old owner's commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// The member that owns the partition until the revocation completes.
    pub from: MemberId,
    /// The member that gets it then.
    pub to: MemberId,
    /// When the revocation began, µs since the epoch (for the timeout).
    pub since_us: u64,
}

/// A consumer group of a topic.
#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    /// Id within the topic.
    pub id: GroupId,
    /// Name, unique within the topic.
    pub name: String,
    members: BTreeMap<MemberId, Member>,
    /// Pending revocations by partition.
    pending: BTreeMap<u32, Revocation>,
}

impl ConsumerGroup {
    pub(crate) fn new(id: GroupId, name: String) -> Self {
        Self {
            id,
            name,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
        }
    }

    /// A group as a snapshot stores it; the caller checked that members own each partition
    /// at most once and that every revocation is between two of them.
    pub(crate) fn restored(
        id: GroupId,
        name: String,
        members: BTreeMap<MemberId, Member>,
        pending: BTreeMap<u32, Revocation>,
    ) -> Self {
        Self {
            id,
            name,
            members,
            pending,
        }
    }

    /// Members in id order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// How many members.
    pub fn members_count(&self) -> u32 {
        self.members.len() as u32
    }

    /// The member a client joined as.
    pub fn member_of_client(&self, client_id: u32) -> Option<&Member> {
        self.members
            .values()
            .find(|member| member.client_id == client_id)
    }

    /// The id the next member gets: 1 + the highest, or 0 for the first.
    pub fn next_member_id(&self) -> MemberId {
        self.members
            .keys()
            .next_back()
            .map_or(MemberId(0), |last| MemberId(last.0 + 1))
    }

    /// Pending revocations, by partition.
    pub fn pending_revocations(&self) -> impl Iterator<Item = (u32, &Revocation)> {
        self.pending
            .iter()
            .map(|(&partition, revocation)| (partition, revocation))
    }

    /// True when `partition` is waiting to move to another member.
    pub fn is_pending(&self, partition: u32) -> bool {
        self.pending.contains_key(&partition)
    }

    /// The partitions a member is served in round-robin order: the ones it owns that are not
    /// pending revocation.
    pub fn pollable_partitions(&self, member: MemberId) -> Vec<u32> {
        self.members.get(&member).map_or_else(Vec::new, |member| {
            member
                .partitions
                .iter()
                .copied()
                .filter(|partition| !self.is_pending(*partition))
                .collect()
        })
    }

    /// True when `member` owns `partition` (pending revocation or not): it may poll it by
    /// name and commit its offset.
    pub fn owns(&self, member: MemberId, partition: u32) -> bool {
        self.members
            .get(&member)
            .is_some_and(|member| member.partitions.contains(&partition))
    }

    /// Adds a member and rebalances cooperatively.
    pub(crate) fn join(
        &mut self,
        id: MemberId,
        (client_id, node): (u32, u64),
        partitions_count: u32,
        at_us: u64,
    ) {
        assert_eq!(
            id,
            self.next_member_id(),
            "member ids are assigned in order"
        );
        let member = Member {
            id,
            client_id,
            node,
            joined_us: at_us,
            partitions: Vec::new(),
        };
        self.members.insert(id, member);
        self.rebalance_cooperatively(partitions_count, at_us);
    }

    /// Removes a member and rebalances fully.
    pub(crate) fn leave(&mut self, id: MemberId, partitions_count: u32) {
        self.members.remove(&id).expect("member to remove");
        self.rebalance_fully(partitions_count);
    }

    /// Moves each listed partition that is still pending to its new owner.
    pub(crate) fn complete_revocations(&mut self, partitions: &[PartitionId]) {
        for PartitionId(partition) in partitions {
            let Some(revocation) = self.pending.remove(partition) else {
                continue;
            };
            if let Some(from) = self.members.get_mut(&revocation.from) {
                from.partitions.retain(|owned| owned != partition);
            }
            if let Some(to) = self.members.get_mut(&revocation.to) {
                let at = to.partitions.partition_point(|owned| owned < partition);
                to.partitions.insert(at, *partition);
            }
        }
    }

    /// Partition `i` to the `(i % members)`-th member in id order; nothing pending.
    pub(crate) fn rebalance_fully(&mut self, partitions_count: u32) {
        self.pending.clear();
        for member in self.members.values_mut() {
            member.partitions.clear();
        }
        let mut members: Vec<&mut Member> = self.members.values_mut().collect();
        if members.is_empty() {
            return;
        }
        let count = members.len();
        for partition in 0..partitions_count {
            members[partition as usize % count]
                .partitions
                .push(partition);
        }
    }

    /// Deals unowned partitions to members under their quota and marks the surplus of members
    /// over it as pending revocation towards them. Earlier pending revocations are recomputed.
    fn rebalance_cooperatively(&mut self, partitions_count: u32, at_us: u64) {
        self.pending.clear();
        let quotas = self.quotas(partitions_count);
        let owned: BTreeSet<u32> = self
            .members
            .values()
            .flat_map(|member| member.partitions.iter().copied())
            .collect();
        let mut pool: Vec<(u32, Option<MemberId>)> = (0..partitions_count)
            .filter(|partition| !owned.contains(partition))
            .map(|partition| (partition, None))
            .collect();
        for member in self.members.values() {
            let quota = quotas[&member.id];
            let surplus = member.partitions.iter().skip(quota);
            pool.extend(surplus.map(|&partition| (partition, Some(member.id))));
        }
        let mut pool = pool.into_iter();
        let ids: Vec<MemberId> = self.members.keys().copied().collect();
        for id in ids {
            let member = self.members.get_mut(&id).expect("listed member");
            let wanted = quotas[&id].saturating_sub(member.partitions.len());
            for (partition, from) in pool.by_ref().take(wanted) {
                match from {
                    None => member.partitions.push(partition),
                    Some(from) => {
                        let revocation = Revocation {
                            from,
                            to: id,
                            since_us: at_us,
                        };
                        self.pending.insert(partition, revocation);
                    }
                }
            }
            member.partitions.sort_unstable();
        }
        debug_assert!(pool.next().is_none(), "quotas add up to the partitions");
    }

    /// Each member's fair share: `partitions / members`, one more for the `remainder` members
    /// that hold most now (ties to the lower id).
    fn quotas(&self, partitions_count: u32) -> BTreeMap<MemberId, usize> {
        let count = self.members.len().max(1);
        let base = partitions_count as usize / count;
        let remainder = partitions_count as usize % count;
        let mut order: Vec<&Member> = self.members.values().collect();
        order.sort_by_key(|member| (Reverse(member.partitions.len()), member.id));
        order
            .iter()
            .enumerate()
            .map(|(rank, member)| (member.id, base + usize::from(rank < remainder)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(group: &ConsumerGroup) -> Vec<Vec<u32>> {
        group
            .members()
            .map(|member| group.pollable_partitions(member.id))
            .collect()
    }

    fn settle(group: &mut ConsumerGroup) {
        let pending: Vec<PartitionId> = group
            .pending_revocations()
            .map(|(p, _)| PartitionId(p))
            .collect();
        group.complete_revocations(&pending);
    }

    fn join(group: &mut ConsumerGroup, client_id: u32, partitions: u32) {
        let id = group.next_member_id();
        group.join(id, (client_id, 0), partitions, 0);
    }

    #[test]
    fn sequential_joins_end_fair() {
        let mut group = ConsumerGroup::new(GroupId(0), "g".into());
        join(&mut group, 10, 4);
        assert_eq!(shares(&group), vec![vec![0, 1, 2, 3]]);
        join(&mut group, 11, 4);
        // The surplus waits for the first member's commit; it never polls it meanwhile.
        assert_eq!(shares(&group), vec![vec![0, 1], vec![]]);
        assert!(group.owns(MemberId(0), 3));
        settle(&mut group);
        assert_eq!(shares(&group), vec![vec![0, 1], vec![2, 3]]);
        join(&mut group, 12, 4);
        settle(&mut group);
        let mut sizes: Vec<usize> = shares(&group).iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, vec![1, 1, 2]);
        assert_eq!(
            group.members().map(|m| m.partitions.len()).sum::<usize>(),
            4
        );
    }

    #[test]
    fn leaving_rebalances_fully_and_extra_members_get_nothing() {
        let mut group = ConsumerGroup::new(GroupId(0), "g".into());
        for client in 0..3 {
            join(&mut group, client, 2);
            settle(&mut group);
        }
        let owned: usize = group.members().map(|m| m.partitions.len()).sum();
        assert_eq!(owned, 2);
        let idle = group.members().filter(|m| m.partitions.is_empty()).count();
        assert_eq!(idle, 1);
        group.leave(MemberId(1), 2);
        assert_eq!(shares(&group), vec![vec![0], vec![1]]);
        assert_eq!(group.next_member_id(), MemberId(3));
        group.rebalance_fully(5);
        assert_eq!(shares(&group), vec![vec![0, 2, 4], vec![1, 3]]);
    }

    #[test]
    fn every_partition_has_exactly_one_owner_after_any_joins() {
        for partitions in 0..9 {
            let mut group = ConsumerGroup::new(GroupId(0), "g".into());
            for client in 0..6 {
                join(&mut group, client, partitions);
                let mut owned: Vec<u32> = group
                    .members()
                    .flat_map(|m| m.partitions.iter().copied())
                    .collect();
                owned.sort_unstable();
                assert_eq!(owned, (0..partitions).collect::<Vec<_>>());
                settle(&mut group);
                let sizes: Vec<usize> = group.members().map(|m| m.partitions.len()).collect();
                let (min, max) = (sizes.iter().min(), sizes.iter().max());
                assert!(max.zip(min).is_none_or(|(max, min)| max - min <= 1));
            }
        }
    }
}
