//! The replica: the whole metadata state of the server, one copy per shard.

use std::collections::HashMap;

use galgo_protocol::{Permissions, identifier::Identifier};

use crate::{
    Change, ConsumerGroup, DeleteTokens, Event, MetadataError, NewStream, NewTopic, NewUser,
    PARTITIONS_PER_REQUEST_MAX, PartitionId, PartitionKey, PartitionsChange, PersonalAccessToken,
    ShardId, StreamChange, StreamId, TokenChange, TopicChange, TopicId, TopicKey, TopicSettings,
    User, UserChange, UserId, slab::Slab, users::Users,
};

/// A partition as metadata knows it: its id, its birth and the shard that owns its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// Id within the topic.
    pub id: PartitionId,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    /// The shard that owns the log; every other shard forwards work for it there.
    pub owner: ShardId,
}

/// A topic: settings and partitions 0..n-1.
#[derive(Clone, Debug)]
pub struct Topic {
    /// Id within the stream.
    pub id: TopicId,
    /// Name, unique within the stream.
    pub name: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    /// Resolved settings.
    pub settings: TopicSettings,
    /// Partitions, index = partition id.
    pub partitions: Vec<Partition>,
    pub(crate) groups: Slab<ConsumerGroup>,
    pub(crate) group_names: HashMap<String, u32>,
}

impl Topic {
    /// Consumer groups in id order.
    pub fn groups(&self) -> impl Iterator<Item = &ConsumerGroup> {
        self.groups.values()
    }

    /// The consumer group an identifier names.
    pub fn group(&self, id: &Identifier) -> Result<&ConsumerGroup, MetadataError> {
        let key = match id {
            Identifier::Numeric(key) => *key,
            Identifier::Name(name) => *self
                .group_names
                .get(name)
                .ok_or(MetadataError::GroupNotFound)?,
        };
        self.groups.get(key).ok_or(MetadataError::GroupNotFound)
    }

    /// Partitions count, as groups deal them.
    pub fn partitions_count(&self) -> u32 {
        self.partitions.len() as u32
    }
}

/// A stream and its topics.
#[derive(Clone, Debug)]
pub struct Stream {
    /// Id.
    pub id: StreamId,
    /// Name, unique on the server.
    pub name: String,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    pub(crate) topics: Slab<Topic>,
    pub(crate) topic_names: HashMap<String, u32>,
}

impl Stream {
    /// Topics in id order.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }
    /// How many topics the stream has.
    pub fn topics_count(&self) -> u32 {
        self.topics.len() as u32
    }
    /// The topic an identifier names.
    pub fn topic(&self, id: &Identifier) -> Result<&Topic, MetadataError> {
        let key = match id {
            Identifier::Numeric(key) => *key,
            Identifier::Name(name) => *self
                .topic_names
                .get(name)
                .ok_or(MetadataError::TopicNotFound)?,
        };
        self.topics.get(key).ok_or(MetadataError::TopicNotFound)
    }
}

/// What a topic created or updated with "server default" (0) expiry or size gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicDefaults {
    /// Message expiry in µs; `u64::MAX` = never.
    pub message_expiry_us: u64,
    /// Topic size limit in bytes; `u64::MAX` = unlimited.
    pub max_topic_size_bytes: u64,
}

impl Default for TopicDefaults {
    /// Iggy's defaults: messages never expire, topics are unlimited.
    fn default() -> Self {
        Self {
            message_expiry_us: u64::MAX,
            max_topic_size_bytes: u64::MAX,
        }
    }
}

/// The metadata replica. Lives on every shard, each with its own copy; only shard 0 prepares
/// changes, every shard applies them.
#[derive(Clone, Debug)]
pub struct Metadata {
    pub(crate) version: u64,
    pub(crate) segment_size_bytes: u64,
    pub(crate) streams: Slab<Stream>,
    pub(crate) stream_names: HashMap<String, u32>,
    pub(crate) topic_defaults: TopicDefaults,
    /// Partitions owned by each shard, the input of placement.
    pub(crate) shard_loads: Vec<u32>,
    pub(crate) users: Users,
}

impl Metadata {
    /// An empty state for a server of `shard_count` shards whose segments hold
    /// `segment_size_bytes` (custom topic sizes must not be smaller).
    pub fn new(shard_count: u16, segment_size_bytes: u64) -> Self {
        assert!(shard_count > 0, "a server has at least one shard");
        Self {
            version: 0,
            segment_size_bytes,
            streams: Slab::default(),
            stream_names: HashMap::new(),
            topic_defaults: TopicDefaults::default(),
            shard_loads: vec![0; usize::from(shard_count)],
            users: Users::default(),
        }
    }

    /// Sets what "server default" expiry and size resolve to. They are resolved when a topic is
    /// created or updated, and the resolved values are what the change records, so replicas and
    /// replays never depend on the configuration.
    pub fn set_topic_defaults(&mut self, defaults: TopicDefaults) {
        self.topic_defaults = defaults;
    }

    /// The version of the last applied event (0 before any).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Number of shards partitions are spread over.
    pub fn shard_count(&self) -> u16 {
        self.shard_loads.len() as u16
    }

    /// Streams in id order.
    pub fn streams(&self) -> impl Iterator<Item = &Stream> {
        self.streams.values()
    }

    /// The stream an identifier names.
    pub fn stream(&self, id: &Identifier) -> Result<&Stream, MetadataError> {
        let key = match id {
            Identifier::Numeric(key) => *key,
            Identifier::Name(name) => *self
                .stream_names
                .get(name)
                .ok_or(MetadataError::StreamNotFound)?,
        };
        self.streams.get(key).ok_or(MetadataError::StreamNotFound)
    }

    /// The topic two identifiers name.
    pub fn topic(&self, stream: &Identifier, topic: &Identifier) -> Result<&Topic, MetadataError> {
        self.stream(stream)?.topic(topic)
    }

    /// The ids of the topic two identifiers name: a request resolves them once, then looks
    /// the topic up by key ([`Metadata::topic_by_key`]).
    pub fn resolve_topic(
        &self,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<TopicKey, MetadataError> {
        let found = self.stream(stream)?;
        Ok(TopicKey {
            stream: found.id,
            topic: found.topic(topic)?.id,
        })
    }

    /// The stream with id `id`.
    pub fn stream_by_id(&self, id: StreamId) -> Result<&Stream, MetadataError> {
        self.streams.get(id.0).ok_or(MetadataError::StreamNotFound)
    }

    /// The topic a key names (it may have been deleted since the key was resolved).
    pub fn topic_by_key(&self, key: TopicKey) -> Result<&Topic, MetadataError> {
        let stream = self.stream_by_id(key.stream)?;
        stream
            .topics
            .get(key.topic.0)
            .ok_or(MetadataError::TopicNotFound)
    }

    /// Every partition with its key, in key order.
    pub fn partitions(&self) -> impl Iterator<Item = (PartitionKey, &Partition)> {
        self.streams.values().flat_map(|stream| {
            stream.topics().flat_map(move |topic| {
                topic.partitions.iter().map(move |partition| {
                    let key = PartitionKey {
                        stream: stream.id,
                        topic: topic.id,
                        partition: partition.id,
                    };
                    (key, partition)
                })
            })
        })
    }

    /// Partitions each shard owns, indexed by shard id.
    pub fn shard_loads(&self) -> &[u32] {
        &self.shard_loads
    }

    /// The owners that `count` new partitions will get, in order: each goes to the least-loaded
    /// shard at that moment, ties to the lowest shard id. `apply` uses the same rule, so every
    /// replica agrees without the owners being written down.
    pub fn plan_placement(&self, count: u32) -> Vec<ShardId> {
        let mut loads = self.shard_loads.clone();
        (0..count).map(|_| place(&mut loads)).collect()
    }

    /// Validates a new stream and gives it an id.
    pub fn prepare_create_stream(
        &self,
        name: &str,
        now_us: u64,
    ) -> Result<NewStream, MetadataError> {
        if self.stream_names.contains_key(name) {
            return Err(MetadataError::StreamNameExists);
        }
        Ok(NewStream {
            id: StreamId(self.streams.next_key()),
            name: name.to_owned(),
            created_at_us: now_us,
        })
    }

    /// Validates a rename.
    pub fn prepare_update_stream(
        &self,
        stream: &Identifier,
        name: &str,
    ) -> Result<StreamChange, MetadataError> {
        let id = self.stream(stream)?.id;
        if self
            .stream_names
            .get(name)
            .is_some_and(|&other| other != id.0)
        {
            return Err(MetadataError::StreamNameExists);
        }
        Ok(StreamChange::Update {
            id,
            name: name.to_owned(),
        })
    }

    /// Validates a stream deletion.
    pub fn prepare_delete_stream(
        &self,
        stream: &Identifier,
    ) -> Result<StreamChange, MetadataError> {
        Ok(StreamChange::Delete {
            id: self.stream(stream)?.id,
        })
    }

    /// Validates a new topic, resolves its settings and gives it an id.
    pub fn prepare_create_topic(
        &self,
        stream: &Identifier,
        name: &str,
        partitions_count: u32,
        settings: TopicSettings,
        now_us: u64,
    ) -> Result<NewTopic, MetadataError> {
        let stream = self.stream(stream)?;
        if stream.topic_names.contains_key(name) {
            return Err(MetadataError::TopicNameExists);
        }
        if partitions_count > PARTITIONS_PER_REQUEST_MAX {
            return Err(MetadataError::TooManyPartitions);
        }
        Ok(NewTopic {
            stream_id: stream.id,
            id: TopicId(stream.topics.next_key()),
            name: name.to_owned(),
            created_at_us: now_us,
            partitions_count,
            settings: self.resolve_settings(settings)?,
        })
    }

    /// Validates a topic update.
    pub fn prepare_update_topic(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        name: &str,
        settings: TopicSettings,
    ) -> Result<TopicChange, MetadataError> {
        let stream = self.stream(stream)?;
        let id = stream.topic(topic)?.id;
        if stream
            .topic_names
            .get(name)
            .is_some_and(|&other| other != id.0)
        {
            return Err(MetadataError::TopicNameExists);
        }
        Ok(TopicChange::Update {
            stream_id: stream.id,
            id,
            name: name.to_owned(),
            settings: self.resolve_settings(settings)?,
        })
    }

    /// Validates a topic deletion.
    pub fn prepare_delete_topic(
        &self,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<TopicChange, MetadataError> {
        let stream = self.stream(stream)?;
        Ok(TopicChange::Delete {
            stream_id: stream.id,
            id: stream.topic(topic)?.id,
        })
    }

    /// Validates adding `count` partitions (1..=1000).
    pub fn prepare_create_partitions(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        count: u32,
        now_us: u64,
    ) -> Result<PartitionsChange, MetadataError> {
        let topic_ref = self.topic(stream, topic)?;
        if count == 0 || count > PARTITIONS_PER_REQUEST_MAX {
            return Err(MetadataError::TooManyPartitions);
        }
        Ok(PartitionsChange::Create {
            stream_id: self.stream(stream)?.id,
            topic_id: topic_ref.id,
            count,
            created_at_us: now_us,
        })
    }

    /// Validates removing the `count` highest-numbered partitions.
    pub fn prepare_delete_partitions(
        &self,
        stream: &Identifier,
        topic: &Identifier,
        count: u32,
    ) -> Result<PartitionsChange, MetadataError> {
        let topic_ref = self.topic(stream, topic)?;
        if count == 0 {
            return Err(MetadataError::TooManyPartitions);
        }
        if count as usize > topic_ref.partitions.len() {
            return Err(MetadataError::InvalidPartitionsCount);
        }
        Ok(PartitionsChange::Delete {
            stream_id: self.stream(stream)?.id,
            topic_id: topic_ref.id,
            count,
        })
    }

    fn resolve_settings(&self, settings: TopicSettings) -> Result<TopicSettings, MetadataError> {
        let max_topic_size_bytes = match settings.max_topic_size_bytes {
            0 => self.topic_defaults.max_topic_size_bytes,
            u64::MAX => u64::MAX,
            custom if custom < self.segment_size_bytes => {
                return Err(MetadataError::InvalidTopicSize);
            }
            custom => custom,
        };
        Ok(TopicSettings {
            compression: settings.compression,
            message_expiry_us: match settings.message_expiry_us {
                0 => self.topic_defaults.message_expiry_us,
                expiry => expiry,
            },
            max_topic_size_bytes,
            replication_factor: settings.replication_factor.max(1),
        })
    }

    /// The partitions a change removes (with their owners), computed before applying it so
    /// the caller knows which logs to delete.
    pub fn partitions_removed_by(&self, change: &Change) -> Vec<(PartitionKey, ShardId)> {
        let in_topic = |stream: &Stream, topic: &Topic, skip: usize| {
            topic
                .partitions
                .iter()
                .skip(skip)
                .map(|partition| {
                    let key = PartitionKey {
                        stream: stream.id,
                        topic: topic.id,
                        partition: partition.id,
                    };
                    (key, partition.owner)
                })
                .collect::<Vec<_>>()
        };
        match change {
            Change::Stream(StreamChange::Delete { id }) => self
                .streams
                .get(id.0)
                .map(|stream| {
                    stream
                        .topics()
                        .flat_map(|topic| in_topic(stream, topic, 0))
                        .collect()
                })
                .unwrap_or_default(),
            Change::Topic(TopicChange::Delete { stream_id, id }) => self
                .streams
                .get(stream_id.0)
                .and_then(|stream| Some(in_topic(stream, stream.topics.get(id.0)?, 0)))
                .unwrap_or_default(),
            Change::Partitions(PartitionsChange::Delete {
                stream_id,
                topic_id,
                count,
            }) => self
                .streams
                .get(stream_id.0)
                .and_then(|stream| {
                    let topic = stream.topics.get(topic_id.0)?;
                    let keep = topic.partitions.len().saturating_sub(*count as usize);
                    Some(in_topic(stream, topic, keep))
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Applies the next event. Panics on a version gap or on a change that does not fit the
    /// state: both mean the replicas diverged, and going on would corrupt data.
    pub fn apply(&mut self, event: &Event) {
        assert_eq!(
            event.version,
            self.version + 1,
            "metadata events must be applied in order without gaps"
        );
        match &event.change {
            Change::Stream(change) => self.apply_stream(change),
            Change::Topic(change) => self.apply_topic(change),
            Change::Partitions(change) => self.apply_partitions(change),
            Change::User(change) => self.users.apply_user(change, event.version),
            Change::Token(change) => self.users.apply_token(change),
            Change::Group(change) => self.apply_group(change),
            Change::Membership(change) => self.apply_membership(change),
        }
        self.version = event.version;
    }

    fn apply_stream(&mut self, change: &StreamChange) {
        match change {
            StreamChange::Create(NewStream {
                id,
                name,
                created_at_us,
            }) => {
                let stream = Stream {
                    id: *id,
                    name: name.clone(),
                    created_at_us: *created_at_us,
                    topics: Slab::default(),
                    topic_names: HashMap::new(),
                };
                self.streams.insert(id.0, stream);
                self.stream_names.insert(name.clone(), id.0);
            }
            StreamChange::Update { id, name } => {
                let stream = self.streams.get_mut(id.0).expect("stream to rename");
                self.stream_names.remove(&stream.name);
                stream.name = name.clone();
                self.stream_names.insert(name.clone(), id.0);
            }
            StreamChange::Delete { id } => {
                let stream = self.streams.remove(id.0).expect("stream to delete");
                self.stream_names.remove(&stream.name);
                for topic in stream.topics.values() {
                    self.release(&topic.partitions);
                }
            }
        }
    }

    fn apply_topic(&mut self, change: &TopicChange) {
        match change {
            TopicChange::Create(topic) => self.create_topic(topic),
            TopicChange::Update {
                stream_id,
                id,
                name,
                settings,
            } => {
                let stream = self.streams.get_mut(stream_id.0).expect("topic's stream");
                let topic = stream.topics.get_mut(id.0).expect("topic to update");
                stream.topic_names.remove(&topic.name);
                topic.name = name.clone();
                topic.settings = *settings;
                stream.topic_names.insert(name.clone(), id.0);
            }
            TopicChange::Delete { stream_id, id } => {
                let stream = self.streams.get_mut(stream_id.0).expect("topic's stream");
                let topic = stream.topics.remove(id.0).expect("topic to delete");
                stream.topic_names.remove(&topic.name);
                self.release(&topic.partitions);
            }
        }
    }

    fn create_topic(&mut self, new: &NewTopic) {
        let partitions = self.place_new(0, new.partitions_count, new.created_at_us);
        let stream = self
            .streams
            .get_mut(new.stream_id.0)
            .expect("topic's stream");
        let topic = Topic {
            id: new.id,
            name: new.name.clone(),
            created_at_us: new.created_at_us,
            settings: new.settings,
            partitions,
            groups: Slab::default(),
            group_names: HashMap::new(),
        };
        stream.topics.insert(new.id.0, topic);
        stream.topic_names.insert(new.name.clone(), new.id.0);
    }

    fn apply_partitions(&mut self, change: &PartitionsChange) {
        match change {
            PartitionsChange::Create {
                stream_id,
                topic_id,
                count,
                created_at_us,
            } => {
                let first = self.topic_mut(*stream_id, *topic_id).partitions.len() as u32;
                let mut added = self.place_new(first, *count, *created_at_us);
                let topic = self.topic_mut(*stream_id, *topic_id);
                topic.partitions.append(&mut added);
                topic.rebalance_groups_fully();
            }
            PartitionsChange::Delete {
                stream_id,
                topic_id,
                count,
            } => {
                let topic = self.topic_mut(*stream_id, *topic_id);
                let keep = topic.partitions.len() - *count as usize;
                let removed = topic.partitions.split_off(keep);
                topic.rebalance_groups_fully();
                self.release(&removed);
            }
        }
    }

    pub(crate) fn topic_mut(&mut self, stream_id: StreamId, topic_id: TopicId) -> &mut Topic {
        self.streams
            .get_mut(stream_id.0)
            .and_then(|stream| stream.topics.get_mut(topic_id.0))
            .expect("topic of a partition change")
    }

    fn place_new(&mut self, first: u32, count: u32, created_at_us: u64) -> Vec<Partition> {
        (first..first + count)
            .map(|id| Partition {
                id: PartitionId(id),
                created_at_us,
                owner: place(&mut self.shard_loads),
            })
            .collect()
    }

    fn release(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            self.shard_loads[usize::from(partition.owner.0)] -= 1;
        }
    }

    /// Every user, by id.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.all()
    }

    /// The user an identifier names.
    pub fn user(&self, user: &Identifier) -> Result<&User, MetadataError> {
        self.users.find(user)
    }

    /// The user with this id.
    pub fn user_by_id(&self, id: UserId) -> Option<&User> {
        self.users.by_id(id)
    }

    /// The user logging in with `username`: by name, or, when no user has that name and it is
    /// all digits, by numeric id (Iggy's "string or number" login quirk, kept for clients that
    /// rely on it without hiding users whose names are digits).
    pub fn user_for_login(&self, username: &str) -> Option<&User> {
        self.users.by_name(username).or_else(|| {
            let id = username.parse::<u32>().ok()?;
            self.users.by_id(UserId(id))
        })
    }

    /// The token with this digest and its owner.
    pub fn token_by_hash(&self, hash: &str) -> Option<(&User, &PersonalAccessToken)> {
        self.users.by_token_hash(hash)
    }

    /// Validates a new user and gives it an id. The password arrives hashed.
    pub fn prepare_create_user(
        &self,
        username: &str,
        password_hash: String,
        active: bool,
        permissions: Option<&Permissions>,
        now_us: u64,
    ) -> Result<NewUser, MetadataError> {
        self.users
            .prepare_create(username, password_hash, active, permissions, now_us)
    }

    /// Validates a rename or status change (the root user stays active).
    pub fn prepare_update_user(
        &self,
        user: &Identifier,
        username: Option<&str>,
        active: Option<bool>,
    ) -> Result<UserChange, MetadataError> {
        self.users.prepare_update(user, username, active)
    }

    /// Validates new permissions (never for the root user).
    pub fn prepare_update_permissions(
        &self,
        user: &Identifier,
        permissions: Option<&Permissions>,
    ) -> Result<UserChange, MetadataError> {
        self.users.prepare_update_permissions(user, permissions)
    }

    /// Validates a new password hash for the user of that id and generation.
    pub fn prepare_change_password(
        &self,
        user: UserId,
        generation: u64,
        password_hash: String,
    ) -> Result<UserChange, MetadataError> {
        self.users
            .prepare_change_password(user, generation, password_hash)
    }

    /// Validates a user deletion (never the root user).
    pub fn prepare_delete_user(&self, user: &Identifier) -> Result<UserChange, MetadataError> {
        self.users.prepare_delete(user)
    }

    /// Validates a new token of `user` (unique name, at most `tokens_per_user_max`).
    pub fn prepare_create_token(
        &self,
        user: UserId,
        name: &str,
        token_hash: String,
        expiry_at_us: Option<u64>,
        tokens_per_user_max: u32,
    ) -> Result<TokenChange, MetadataError> {
        self.users
            .prepare_create_token(user, name, token_hash, expiry_at_us, tokens_per_user_max)
    }

    /// Validates deleting one of `user`'s tokens.
    pub fn prepare_delete_token(
        &self,
        user: UserId,
        name: &str,
    ) -> Result<DeleteTokens, MetadataError> {
        self.users.prepare_delete_token(user, name)
    }

    /// The change that deletes every token expired at `now_us`, if any.
    pub fn prepare_delete_expired_tokens(&self, now_us: u64) -> Option<DeleteTokens> {
        self.users.prepare_delete_expired_tokens(now_us)
    }

    /// Counts for statistics: streams, topics, partitions.
    pub fn counts(&self) -> (u32, u32, u32) {
        let streams = self.streams.len() as u32;
        let topics = self.streams.values().map(Stream::topics_count).sum();
        let partitions = self.shard_loads.iter().sum();
        (streams, topics, partitions)
    }

    /// Changes every topic's partition owners to a new shard count (the count changed between
    /// runs). The disk layout does not depend on shards, so nothing moves on disk.
    pub fn reshard(&mut self, shard_count: u16) {
        assert!(shard_count > 0, "a server has at least one shard");
        self.shard_loads = vec![0; usize::from(shard_count)];
        let loads = &mut self.shard_loads;
        for stream in self.streams.values_mut() {
            for topic in stream.topics.values_mut() {
                for partition in &mut topic.partitions {
                    partition.owner = place(loads);
                }
            }
        }
    }
}

/// The least-loaded shard, ties to the lowest id; counts the new partition in.
pub(crate) fn place(loads: &mut [u32]) -> ShardId {
    let (index, load) = loads
        .iter_mut()
        .enumerate()
        .min_by_key(|(index, load)| (**load, *index))
        .expect("at least one shard");
    *load += 1;
    ShardId(index as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{commit, settings};

    #[test]
    fn partitions_spread_over_shards_and_replicas_agree() {
        let mut shard0 = Metadata::new(4, 1 << 20);
        let change = shard0.prepare_create_stream("s", 1).expect("new stream");
        commit(&mut shard0, change);
        let s = Identifier::Numeric(0);
        let change = shard0
            .prepare_create_topic(&s, "t", 8, settings(), 2)
            .expect("new topic");
        let planned = shard0.plan_placement(8);
        let mut replica = Metadata::new(4, 1 << 20);
        replica.apply(&Event {
            version: 1,
            change: Change::Stream(StreamChange::Create(NewStream {
                id: StreamId(0),
                name: "s".into(),
                created_at_us: 1,
            })),
        });
        commit(&mut shard0, change.clone());
        replica.apply(&Event {
            version: 2,
            change: change.into(),
        });
        let owners: Vec<_> = shard0.partitions().map(|(_, p)| p.owner).collect();
        assert_eq!(owners, planned);
        assert_eq!(shard0.shard_loads(), &[2, 2, 2, 2]);
        let replica_owners: Vec<_> = replica.partitions().map(|(_, p)| p.owner).collect();
        assert_eq!(owners, replica_owners);
        let topic = shard0
            .topic(&s, &Identifier::Name("t".into()))
            .expect("topic");
        assert_eq!(topic.settings.message_expiry_us, u64::MAX);
        assert_eq!(topic.settings.replication_factor, 1);
    }

    #[test]
    fn a_node_start_or_loss_removes_the_members_that_joined_through_it_before() {
        let mut metadata = Metadata::new(2, 1 << 20);
        let change = metadata.prepare_create_stream("s", 1).expect("new");
        commit(&mut metadata, change);
        let (s, t, g) = (
            Identifier::Name("s".into()),
            Identifier::Name("t".into()),
            Identifier::Name("g".into()),
        );
        let change = metadata
            .prepare_create_topic(&s, "t", 4, settings(), 1)
            .expect("new");
        commit(&mut metadata, change);
        let change = metadata.prepare_create_group(&s, &t, "g").expect("new");
        commit(&mut metadata, change);
        // Client 10 through node 1, clients 20 and 21 through node 2, 21 after its start.
        for (client, node, at_us) in [(10, 1, 100), (20, 2, 100), (21, 2, 300)] {
            let change = metadata
                .prepare_join_group(&s, &t, &g, (client, node), at_us)
                .expect("joins")
                .expect("a new member");
            commit(&mut metadata, change);
        }
        assert_eq!(
            metadata.prepare_node_started(3, 200),
            None,
            "no member of node 3"
        );
        let change = metadata
            .prepare_node_started(2, 200)
            .expect("client 20 joined through node 2 before");
        commit(&mut metadata, change);
        let (_, group) = metadata.group(&s, &t, &g).expect("group");
        let clients: Vec<u32> = group.members().map(|member| member.client_id).collect();
        assert_eq!(clients, vec![10, 21]);
        let owned: usize = group.members().map(|member| member.partitions.len()).sum();
        assert_eq!(owned, 4, "every partition has an owner again");
        assert_eq!(metadata.prepare_node_started(2, 200), None, "applied once");
        // Node 1 taken as lost: its client's member goes the same way.
        assert_eq!(
            metadata.prepare_node_lost(2, 200),
            None,
            "none of node 2's left"
        );
        let change = metadata
            .prepare_node_lost(1, 400)
            .expect("client 10 joined through node 1 before");
        commit(&mut metadata, change);
        let (_, group) = metadata.group(&s, &t, &g).expect("group");
        let clients: Vec<u32> = group.members().map(|member| member.client_id).collect();
        assert_eq!(clients, vec![21]);
        assert_eq!(group.members().next().expect("21").partitions.len(), 4);
    }

    #[test]
    fn deletes_release_partitions_and_names() {
        let mut metadata = Metadata::new(2, 1 << 20);
        let change = metadata.prepare_create_stream("s", 1).expect("new");
        commit(&mut metadata, change);
        let s = Identifier::Name("s".into());
        let change = metadata
            .prepare_create_topic(&s, "t", 3, settings(), 1)
            .expect("new");
        commit(&mut metadata, change);
        let t = Identifier::Name("t".into());
        let change = metadata.prepare_delete_partitions(&s, &t, 2).expect("fits");
        let change = Change::Partitions(change);
        assert_eq!(metadata.partitions_removed_by(&change).len(), 2);
        commit(&mut metadata, change);
        assert_eq!(metadata.counts(), (1, 1, 1));
        assert_eq!(
            metadata.prepare_delete_partitions(&s, &t, 2),
            Err(MetadataError::InvalidPartitionsCount)
        );
        let change = metadata.prepare_delete_stream(&s).expect("exists");
        commit(&mut metadata, change);
        assert_eq!(metadata.counts(), (0, 0, 0));
        assert!(metadata.prepare_create_stream("s", 2).is_ok());
    }

    #[test]
    fn duplicate_names_and_small_topic_sizes_are_refused() {
        let mut metadata = Metadata::new(1, 1 << 20);
        let change = metadata.prepare_create_stream("s", 1).expect("new");
        commit(&mut metadata, change);
        assert_eq!(
            metadata.prepare_create_stream("s", 1),
            Err(MetadataError::StreamNameExists)
        );
        let mut small = settings();
        small.max_topic_size_bytes = 1024;
        assert_eq!(
            metadata.prepare_create_topic(&Identifier::Numeric(0), "t", 1, small, 1),
            Err(MetadataError::InvalidTopicSize)
        );
    }

    #[test]
    fn users_tokens_and_generations_follow_the_log() {
        let mut metadata = Metadata::new(1, 1 << 20);
        let root = Permissions::root();
        let change = metadata
            .prepare_create_user("iggy", "h0".into(), true, Some(&root), 1)
            .expect("root");
        commit(&mut metadata, change);
        let change = metadata
            .prepare_create_user("ann", "h1".into(), true, None, 2)
            .expect("ann");
        commit(&mut metadata, change);
        assert_eq!(
            metadata.prepare_create_user("ann", "h".into(), true, None, 3),
            Err(MetadataError::UserNameExists)
        );
        let ann = metadata.user(&Identifier::Name("ann".into())).expect("ann");
        let (ann_id, first_generation) = (ann.id, ann.generation);
        let change = metadata
            .prepare_create_token(ann_id, "ci", "digest".into(), Some(10), 1)
            .expect("token");
        commit(&mut metadata, change);
        assert_eq!(
            metadata.prepare_create_token(ann_id, "cd", "d2".into(), None, 1),
            Err(MetadataError::TokensLimitReached)
        );
        assert_eq!(
            metadata.token_by_hash("digest").expect("found").0.id,
            ann_id
        );
        assert!(metadata.prepare_delete_expired_tokens(9).is_none());
        let expired = metadata.prepare_delete_expired_tokens(10).expect("expired");
        commit(&mut metadata, expired);
        assert!(metadata.token_by_hash("digest").is_none());
        let change = metadata
            .prepare_create_token(ann_id, "ci", "digest".into(), None, 1)
            .expect("token again");
        commit(&mut metadata, change);
        let root_id = Identifier::Numeric(0);
        assert_eq!(
            metadata.prepare_delete_user(&root_id),
            Err(MetadataError::CannotDeleteRoot)
        );
        assert_eq!(
            metadata.prepare_update_permissions(&root_id, None),
            Err(MetadataError::CannotChangeRootPermissions)
        );
        let change = metadata
            .prepare_delete_user(&Identifier::Numeric(ann_id.0))
            .expect("delete ann");
        commit(&mut metadata, change);
        assert!(metadata.token_by_hash("digest").is_none());
        let change = metadata
            .prepare_create_user("bob", "h2".into(), true, None, 4)
            .expect("bob");
        commit(&mut metadata, change);
        let bob = metadata.user_by_id(ann_id).expect("the id is reused");
        assert_eq!(bob.username, "bob");
        assert_ne!(bob.generation, first_generation);
        assert_eq!(
            metadata.prepare_change_password(ann_id, first_generation, "h".into()),
            Err(MetadataError::UserNotFound)
        );
        assert_eq!(metadata.user_for_login("1").expect("by id").username, "bob");
    }

    #[test]
    #[should_panic(expected = "without gaps")]
    fn a_version_gap_panics() {
        let mut metadata = Metadata::new(1, 1 << 20);
        metadata.apply(&Event {
            version: 2,
            change: Change::Stream(StreamChange::Delete { id: StreamId(0) }),
        });
    }
}
