//! Consumer-group changes: validation on shard 0 (`prepare_*`) and `apply` on every replica.
//! The membership rules themselves are the parent module's.

use galgo_protocol::identifier::Identifier;
use rkyv::{Archive, Deserialize, Serialize};

use crate::{
    ClientId, ConsumerGroup, GroupChange, GroupId, Member, MemberId, MembershipChange, Metadata,
    MetadataError, NewGroup, PartitionId, StreamId, Topic, TopicId, TopicKey,
};

/// A group's full address: stream, topic, group.
#[derive(
    Archive, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub struct GroupKey {
    /// The stream.
    pub stream: StreamId,
    /// The topic.
    pub topic: TopicId,
    /// The group.
    pub group: GroupId,
}

impl Metadata {
    /// The group three identifiers name, with its address.
    pub fn group(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
    ) -> Result<(GroupKey, &ConsumerGroup), MetadataError> {
        let stream_id = self.stream(stream)?.id;
        let topic = self.topic(stream, topic)?;
        let group = topic.group(group)?;
        let key = GroupKey {
            stream: stream_id,
            topic: topic.id,
            group: group.id,
        };
        Ok((key, group))
    }

    /// The group an identifier names in a topic already resolved, with its address.
    pub fn group_in(
        &self,
        topic: TopicKey,
        group: &Identifier,
    ) -> Result<(GroupKey, &ConsumerGroup), MetadataError> {
        let group = self.topic_by_key(topic)?.group(group)?;
        let key = GroupKey {
            stream: topic.stream,
            topic: topic.topic,
            group: group.id,
        };
        Ok((key, group))
    }

    /// The group at an address, if it still exists.
    pub fn group_at(&self, key: GroupKey) -> Option<(&Topic, &ConsumerGroup)> {
        let topic = self.streams.get(key.stream.0)?.topics.get(key.topic.0)?;
        Some((topic, topic.groups.get(key.group.0)?))
    }

    /// Every group a client is a member of, with its member id.
    pub fn memberships_of(&self, client_id: u32) -> Vec<(GroupKey, MemberId)> {
        self.groups_by_key()
            .filter_map(|(key, group)| Some((key, group.member_of_client(client_id)?.id)))
            .collect()
    }

    /// Every group of every topic, with its address.
    fn groups_by_key(&self) -> impl Iterator<Item = (GroupKey, &ConsumerGroup)> {
        self.streams().flat_map(|stream| {
            stream.topics().flat_map(move |topic| {
                topic.groups().map(move |group| {
                    let key = GroupKey {
                        stream: stream.id,
                        topic: topic.id,
                        group: group.id,
                    };
                    (key, group)
                })
            })
        })
    }

    /// How many consumer groups exist, over all topics.
    pub fn groups_count(&self) -> u32 {
        let topics = self.streams().flat_map(|stream| stream.topics());
        topics.map(|topic| topic.groups.len() as u32).sum()
    }

    /// Validates a new group and gives it an id.
    pub fn prepare_create_group(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        name: &str,
    ) -> Result<NewGroup, MetadataError> {
        let stream_id = self.stream(stream)?.id;
        let topic = self.topic(stream, topic)?;
        if topic.group_names.contains_key(name) {
            return Err(MetadataError::GroupNameExists);
        }
        let group = GroupKey {
            stream: stream_id,
            topic: topic.id,
            group: GroupId(topic.groups.next_key()),
        };
        Ok(NewGroup {
            group,
            name: name.to_owned(),
        })
    }

    /// Validates a group deletion.
    pub fn prepare_delete_group(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
    ) -> Result<GroupChange, MetadataError> {
        let (group, _) = self.group(stream, topic, group)?;
        Ok(GroupChange::Delete { group })
    }

    /// Validates a join; `None` when the client is a member already (joining twice is a no-op).
    pub fn prepare_join_group(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
        (client_id, node): (u32, u64),
        now_us: u64,
    ) -> Result<Option<MembershipChange>, MetadataError> {
        let (key, found) = self.group(stream, topic, group)?;
        if found.member_of_client(client_id).is_some() {
            return Ok(None);
        }
        Ok(Some(MembershipChange::Join {
            group: key,
            member_id: found.next_member_id(),
            client_id: ClientId(client_id),
            node,
            at_us: now_us,
        }))
    }

    /// A cluster node's start at `started_us`, as a change: `None` when no group has a member
    /// that joined through it before.
    pub fn prepare_node_started(&self, node: u64, started_us: u64) -> Option<MembershipChange> {
        (!self.members_of_node(node, started_us).is_empty())
            .then_some(MembershipChange::NodeStarted { node, started_us })
    }

    /// A cluster node taken as lost at `lost_us`, as a change: `None` when no group has a
    /// member that joined through it before.
    pub fn prepare_node_lost(&self, node: u64, lost_us: u64) -> Option<MembershipChange> {
        (!self.members_of_node(node, lost_us).is_empty())
            .then_some(MembershipChange::NodeLost { node, lost_us })
    }

    /// Every member that joined through `node` before `before_us`, by group.
    fn members_of_node(&self, node: u64, before_us: u64) -> Vec<(GroupKey, MemberId)> {
        let gone = move |member: &&Member| member.node == node && member.joined_us < before_us;
        self.groups_by_key()
            .flat_map(|(key, group)| {
                group
                    .members()
                    .filter(gone)
                    .map(move |member| (key, member.id))
            })
            .collect()
    }

    /// Validates a leave: the client must be a member.
    pub fn prepare_leave_group(
        &self,
        key: GroupKey,
        client_id: u32,
    ) -> Result<MembershipChange, MetadataError> {
        let (_, group) = self.group_at(key).ok_or(MetadataError::GroupNotFound)?;
        let member = group
            .member_of_client(client_id)
            .ok_or(MetadataError::NotGroupMember)?;
        Ok(MembershipChange::Leave {
            group: key,
            member_id: member.id,
        })
    }

    /// The listed partitions whose revocation is still pending, as a change; `None` if none is.
    pub fn prepare_complete_revocations(
        &self,
        key: GroupKey,
        partitions: &[u32],
    ) -> Option<MembershipChange> {
        let (_, group) = self.group_at(key)?;
        let pending: Vec<PartitionId> = partitions
            .iter()
            .copied()
            .filter(|partition| group.is_pending(*partition))
            .map(PartitionId)
            .collect();
        (!pending.is_empty()).then_some(MembershipChange::CompleteRevocations {
            group: key,
            partitions: pending,
        })
    }

    /// Every group with a revocation that began at or before `before_us`, with those partitions.
    pub fn revocations_begun_before(&self, before_us: u64) -> Vec<(GroupKey, Vec<u32>)> {
        let mut found = Vec::new();
        for stream in self.streams() {
            for topic in stream.topics() {
                for group in topic.groups() {
                    let late: Vec<u32> = group
                        .pending_revocations()
                        .filter(|(_, revocation)| revocation.since_us <= before_us)
                        .map(|(partition, _)| partition)
                        .collect();
                    if !late.is_empty() {
                        let key = GroupKey {
                            stream: stream.id,
                            topic: topic.id,
                            group: group.id,
                        };
                        found.push((key, late));
                    }
                }
            }
        }
        found
    }

    /// Applies a consumer-group change (called by `apply`).
    pub(crate) fn apply_group(&mut self, change: &GroupChange) {
        match change {
            GroupChange::Create(NewGroup { group, name }) => {
                let topic = self.topic_mut(group.stream, group.topic);
                let created = ConsumerGroup::new(group.group, name.clone());
                topic.groups.insert(group.group.0, created);
                topic.group_names.insert(name.clone(), group.group.0);
            }
            GroupChange::Delete { group } => {
                let topic = self.topic_mut(group.stream, group.topic);
                let deleted = topic.groups.remove(group.group.0).expect("group to delete");
                topic.group_names.remove(&deleted.name);
            }
        }
    }

    /// Applies a membership change (called by `apply`).
    pub(crate) fn apply_membership(&mut self, change: &MembershipChange) {
        match change {
            MembershipChange::Join {
                group,
                member_id,
                client_id,
                node,
                at_us,
            } => {
                let (count, group) = self.group_mut(*group);
                group.join(*member_id, (client_id.0, *node), count, *at_us);
            }
            MembershipChange::NodeStarted {
                node,
                started_us: before_us,
            }
            | MembershipChange::NodeLost {
                node,
                lost_us: before_us,
            } => {
                for (key, member_id) in self.members_of_node(*node, *before_us) {
                    let (count, group) = self.group_mut(key);
                    group.leave(member_id, count);
                }
            }
            MembershipChange::Leave { group, member_id } => {
                let (count, group) = self.group_mut(*group);
                group.leave(*member_id, count);
            }
            MembershipChange::CompleteRevocations { group, partitions } => {
                let (_, group) = self.group_mut(*group);
                group.complete_revocations(partitions);
            }
        }
    }

    fn group_mut(&mut self, key: GroupKey) -> (u32, &mut ConsumerGroup) {
        let topic = self.topic_mut(key.stream, key.topic);
        let count = topic.partitions_count();
        let group = topic
            .groups
            .get_mut(key.group.0)
            .expect("group of a change");
        (count, group)
    }
}

impl Topic {
    /// After a change of the partition count: every group starts over.
    pub(crate) fn rebalance_groups_fully(&mut self) {
        let count = self.partitions_count();
        for group in self.groups.values_mut() {
            group.rebalance_fully(count);
        }
    }
}
