//! Metadata snapshots: the whole state at one version, so that a metadata log can be compacted
//! and a replica rebuilt without replaying every event since the first.
//!
//! ```text
//! "galgo-metadata-snapshot" (23 bytes) | format u16 LE | rkyv MetadataImage
//! ```
//!
//! The archive holds *images*: plain types of this module that mirror the state field by field,
//! so the stored layout changes only when an image does, not when an in-memory type grows an
//! index. Every slab is stored with its free list and end, so a restored state hands out the
//! same next ids as the original.
//!
//! What a snapshot leaves out, because it is not state: the configuration (segment size, topic
//! defaults, shard count), which the restoring node brings; the name and token-digest indexes,
//! which restore rebuilds; and partition owners, which are one node's placement over its own
//! shards. Restore keeps the owner of every partition the node already has (same key, same
//! birth) and places the others on the least-loaded shards, in key order.
//!
//! Formats so far:
//! * 1: the images below.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Display,
};

use galgo_protocol::{Permissions, Reader};
use rkyv::{Archive, Deserialize, Serialize, rancor, util::AlignedVec};

use crate::{
    ConsumerGroup, GroupId, Member, MemberId, Metadata, MetadataError, Partition, PartitionId,
    PartitionKey, PersonalAccessToken, Revocation, ShardId, Stream, StreamId, Topic, TopicId,
    TopicKey, TopicSettings, User, UserId, metadata::place, slab::Slab, users::Users,
    users::permissions_record,
};

/// The snapshot format this build reads and writes.
pub const SNAPSHOT_FORMAT_VERSION: u16 = 1;

const SNAPSHOT_MAGIC: &[u8; 23] = b"galgo-metadata-snapshot";

/// A slab: its entries in key order (each entry's key is its id), freed keys (most recently
/// freed last) and one past the highest key ever handed out.
#[derive(Archive, Serialize, Deserialize)]
struct SlabImage<T> {
    entries: Vec<T>,
    free: Vec<u32>,
    end: u32,
}

/// The whole state.
#[derive(Archive, Serialize, Deserialize)]
struct MetadataImage {
    version: u64,
    streams: SlabImage<StreamImage>,
    users: SlabImage<UserImage>,
}

#[derive(Archive, Serialize, Deserialize)]
struct StreamImage {
    id: StreamId,
    name: String,
    created_at_us: u64,
    topics: SlabImage<TopicImage>,
}

#[derive(Archive, Serialize, Deserialize)]
struct TopicImage {
    id: TopicId,
    name: String,
    created_at_us: u64,
    settings: TopicSettings,
    partitions: Vec<PartitionImage>,
    groups: SlabImage<GroupImage>,
}

/// A partition without its owner, which is a node's placement, not state.
#[derive(Archive, Serialize, Deserialize)]
struct PartitionImage {
    id: PartitionId,
    created_at_us: u64,
}

#[derive(Archive, Serialize, Deserialize)]
struct GroupImage {
    id: GroupId,
    name: String,
    members: Vec<MemberImage>,
    pending: Vec<RevocationImage>,
}

#[derive(Archive, Serialize, Deserialize)]
struct MemberImage {
    id: MemberId,
    client_id: u32,
    node: u64,
    joined_us: u64,
    partitions: Vec<u32>,
}

#[derive(Archive, Serialize, Deserialize)]
struct RevocationImage {
    partition: u32,
    from: MemberId,
    to: MemberId,
    since_us: u64,
}

#[derive(Archive, Serialize, Deserialize)]
struct UserImage {
    id: UserId,
    username: String,
    password_hash: String,
    active: bool,
    created_at_us: u64,
    /// In wire layout (PROTOCOL.md §4.7), as the metadata log stores them.
    permissions: Option<Vec<u8>>,
    generation: u64,
    tokens: Vec<TokenImage>,
}

#[derive(Archive, Serialize, Deserialize)]
#[cfg_attr(test, derive(Clone))]
struct TokenImage {
    name: String,
    token_hash: String,
    expiry_at_us: Option<u64>,
}

impl Metadata {
    /// The whole state at [`Metadata::version`], for compacting the metadata log: restoring
    /// it with [`Metadata::from_snapshot`] gives back the same streams, topics, partitions,
    /// groups, users and tokens, and the same next ids. Deterministic: equal states give equal
    /// bytes, whatever their configuration and partition owners.
    pub fn snapshot(&self) -> Vec<u8> {
        write_image(&self.image())
    }

    fn image(&self) -> MetadataImage {
        MetadataImage {
            version: self.version,
            streams: slab_image(&self.streams, stream_image),
            users: slab_image(self.users.slab(), user_image),
        }
    }

    /// Rebuilds the state a [`Metadata::snapshot`] holds, configured as `like` (segment size,
    /// topic defaults, shard count). A partition `like` also has, with the same key and birth,
    /// keeps `like`'s owner; the others go to the least-loaded shard in key order. So at a
    /// node's start `like` is a fresh [`Metadata::new`] and everything is placed anew, and at a
    /// runtime install `like` is the current replica and open partitions stay where they are.
    ///
    /// Refuses bytes that are not a snapshot, a snapshot in another format, and one whose
    /// content does not hold together (an archive that validates but names a key twice).
    pub fn from_snapshot(bytes: &[u8], like: &Metadata) -> Result<Metadata, MetadataError> {
        let image = read_image(bytes)?;
        let streams = restore_slab(image.streams, |stream| stream.id.0, restore_stream)?;
        let stream_names = names(streams.values().map(|stream| (&stream.name, stream.id.0)))?;
        let users = restore_slab(image.users, |user| user.id.0, restore_user)?;
        let mut restored = Metadata {
            version: image.version,
            segment_size_bytes: like.segment_size_bytes,
            streams,
            stream_names,
            topic_defaults: like.topic_defaults,
            shard_loads: vec![0; like.shard_loads.len()],
            users: Users::restored(users).map_err(corrupt)?,
        };
        restored.place_restored(like);
        Ok(restored)
    }

    /// Gives every partition its owner: `like`'s when `like` has the same partition, else the
    /// least-loaded shard once the kept ones are counted, visiting partitions in key order.
    fn place_restored(&mut self, like: &Metadata) {
        let kept: Vec<Option<ShardId>> = self
            .partitions()
            .map(|(key, partition)| kept_owner(like, key, partition.created_at_us))
            .collect();
        let mut loads = vec![0; like.shard_loads.len()];
        for owner in kept.iter().flatten() {
            loads[usize::from(owner.0)] += 1;
        }
        let mut kept = kept.into_iter();
        for stream in self.streams.values_mut() {
            for topic in stream.topics.values_mut() {
                for partition in &mut topic.partitions {
                    let owner = kept.next().expect("one entry per partition");
                    partition.owner = owner.unwrap_or_else(|| place(&mut loads));
                }
            }
        }
        debug_assert!(kept.next().is_none(), "one entry per partition");
        self.shard_loads = loads;
    }
}

/// `like`'s owner of the partition at `key`, if it is the same partition: one born at the same
/// time (a topic deleted and recreated under the same ids is another partition).
fn kept_owner(like: &Metadata, key: PartitionKey, created_at_us: u64) -> Option<ShardId> {
    let topic_key = TopicKey {
        stream: key.stream,
        topic: key.topic,
    };
    let topic = like.topic_by_key(topic_key).ok()?;
    let partition = topic.partitions.get(key.partition.0 as usize)?;
    debug_assert_eq!(partition.id, key.partition, "partition ids are indexes");
    (partition.created_at_us == created_at_us).then_some(partition.owner)
}

fn slab_image<T, I>(slab: &Slab<T>, image: impl Fn(&T) -> I) -> SlabImage<I> {
    SlabImage {
        entries: slab.values().map(image).collect(),
        free: slab.free_keys().to_vec(),
        end: slab.end(),
    }
}

fn stream_image(stream: &Stream) -> StreamImage {
    StreamImage {
        id: stream.id,
        name: stream.name.clone(),
        created_at_us: stream.created_at_us,
        topics: slab_image(&stream.topics, topic_image),
    }
}

fn topic_image(topic: &Topic) -> TopicImage {
    let partitions = topic.partitions.iter().map(|partition| PartitionImage {
        id: partition.id,
        created_at_us: partition.created_at_us,
    });
    TopicImage {
        id: topic.id,
        name: topic.name.clone(),
        created_at_us: topic.created_at_us,
        settings: topic.settings,
        partitions: partitions.collect(),
        groups: slab_image(&topic.groups, group_image),
    }
}

fn group_image(group: &ConsumerGroup) -> GroupImage {
    let members = group.members().map(|member| MemberImage {
        id: member.id,
        client_id: member.client_id,
        node: member.node,
        joined_us: member.joined_us,
        partitions: member.partitions.clone(),
    });
    let pending = group
        .pending_revocations()
        .map(|(partition, revocation)| RevocationImage {
            partition,
            from: revocation.from,
            to: revocation.to,
            since_us: revocation.since_us,
        });
    GroupImage {
        id: group.id,
        name: group.name.clone(),
        members: members.collect(),
        pending: pending.collect(),
    }
}

fn user_image(user: &User) -> UserImage {
    let tokens = user.tokens().map(|token| TokenImage {
        name: token.name.clone(),
        token_hash: token.token_hash.clone(),
        expiry_at_us: token.expiry_at_us,
    });
    UserImage {
        id: user.id,
        username: user.username.clone(),
        password_hash: user.password_hash.clone(),
        active: user.active,
        created_at_us: user.created_at_us,
        permissions: permissions_record(user.permissions.as_ref()),
        generation: user.generation,
        tokens: tokens.collect(),
    }
}

/// The header, then the archive.
fn write_image(image: &MetadataImage) -> Vec<u8> {
    let archive = rkyv::to_bytes::<rancor::Error>(image)
        .expect("serialising a snapshot into memory cannot fail");
    let mut bytes = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 2 + archive.len());
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&archive);
    bytes
}

fn corrupt(why: impl Display) -> MetadataError {
    MetadataError::CorruptSnapshot(why.to_string())
}

/// Checks the header and validates the archive.
fn read_image(bytes: &[u8]) -> Result<MetadataImage, MetadataError> {
    let body = bytes
        .strip_prefix(SNAPSHOT_MAGIC.as_slice())
        .ok_or_else(|| corrupt("not a metadata snapshot"))?;
    let (format, archive) = body
        .split_first_chunk::<2>()
        .ok_or_else(|| corrupt("no format version"))?;
    let found = u16::from_le_bytes(*format);
    if found != SNAPSHOT_FORMAT_VERSION {
        return Err(MetadataError::UnsupportedSnapshotFormat {
            found,
            expected: SNAPSHOT_FORMAT_VERSION,
        });
    }
    // rkyv needs aligned input; the archive sits right after the 25-byte header.
    let mut aligned = AlignedVec::<16>::with_capacity(archive.len());
    aligned.extend_from_slice(archive);
    rkyv::from_bytes::<MetadataImage, rancor::Error>(&aligned).map_err(corrupt)
}

/// A slab from its image, each entry restored by `restore` and keyed by `key_of`.
fn restore_slab<I, T>(
    image: SlabImage<I>,
    key_of: impl Fn(&I) -> u32,
    mut restore: impl FnMut(I) -> Result<T, MetadataError>,
) -> Result<Slab<T>, MetadataError> {
    let mut entries = BTreeMap::new();
    for entry in image.entries {
        let key = key_of(&entry);
        if entries.insert(key, restore(entry)?).is_some() {
            return Err(corrupt(format!("slab key {key} twice")));
        }
    }
    Slab::from_parts(entries, image.free, image.end).map_err(corrupt)
}

/// A name index, refusing a name given twice.
fn names<'a>(
    entries: impl Iterator<Item = (&'a String, u32)>,
) -> Result<HashMap<String, u32>, MetadataError> {
    let mut index = HashMap::new();
    for (name, key) in entries {
        if index.insert(name.clone(), key).is_some() {
            return Err(corrupt(format!("the name {name:?} twice")));
        }
    }
    Ok(index)
}

fn restore_stream(image: StreamImage) -> Result<Stream, MetadataError> {
    let topics = restore_slab(image.topics, |topic| topic.id.0, restore_topic)?;
    let topic_names = names(topics.values().map(|topic| (&topic.name, topic.id.0)))?;
    Ok(Stream {
        id: image.id,
        name: image.name,
        created_at_us: image.created_at_us,
        topics,
        topic_names,
    })
}

fn restore_topic(image: TopicImage) -> Result<Topic, MetadataError> {
    let mut partitions = Vec::with_capacity(image.partitions.len());
    for (index, partition) in image.partitions.into_iter().enumerate() {
        if partition.id.0 as usize != index {
            return Err(corrupt(format!("partition {} at {index}", partition.id)));
        }
        partitions.push(Partition {
            id: partition.id,
            created_at_us: partition.created_at_us,
            // Placed once every partition is known (`place_restored`).
            owner: ShardId(0),
        });
    }
    let count = partitions.len() as u32;
    let groups = restore_slab(
        image.groups,
        |group| group.id.0,
        |group| restore_group(group, count),
    )?;
    let group_names = names(groups.values().map(|group| (&group.name, group.id.0)))?;
    Ok(Topic {
        id: image.id,
        name: image.name,
        created_at_us: image.created_at_us,
        settings: image.settings,
        partitions,
        groups,
        group_names,
    })
}

/// A group, checked as rebalancing leaves one: each partition below the count and owned by at
/// most one member, in ascending order; each revocation from its owner to another member.
fn restore_group(image: GroupImage, partitions_count: u32) -> Result<ConsumerGroup, MetadataError> {
    let members = restore_members(image.id, image.members, partitions_count)?;
    let pending = restore_pending(image.id, image.pending, &members)?;
    Ok(ConsumerGroup::restored(
        image.id, image.name, members, pending,
    ))
}

fn restore_members(
    group: GroupId,
    images: Vec<MemberImage>,
    partitions_count: u32,
) -> Result<BTreeMap<MemberId, Member>, MetadataError> {
    let mut owned = BTreeSet::new();
    let mut members = BTreeMap::new();
    for image in images {
        let partitions = &image.partitions;
        let ascending = partitions.is_sorted_by(|a, b| a < b);
        let inside = partitions
            .last()
            .is_none_or(|&last| last < partitions_count);
        let unshared = partitions.iter().all(|&partition| owned.insert(partition));
        if !(ascending && inside && unshared) {
            let why = format!("group {group}: member {}'s partitions", image.id);
            return Err(corrupt(why));
        }
        let member = Member {
            id: image.id,
            client_id: image.client_id,
            node: image.node,
            joined_us: image.joined_us,
            partitions: image.partitions,
        };
        if members.insert(image.id, member).is_some() {
            return Err(corrupt(format!("group {group}: member {} twice", image.id)));
        }
    }
    Ok(members)
}

fn restore_pending(
    group: GroupId,
    images: Vec<RevocationImage>,
    members: &BTreeMap<MemberId, Member>,
) -> Result<BTreeMap<u32, Revocation>, MetadataError> {
    let mut pending = BTreeMap::new();
    for image in images {
        let partition = image.partition;
        let owner = members.get(&image.from);
        let owned = owner.is_some_and(|from| from.partitions.contains(&partition));
        if !owned || image.from == image.to || !members.contains_key(&image.to) {
            return Err(corrupt(format!("group {group}: revocation of {partition}")));
        }
        let revocation = Revocation {
            from: image.from,
            to: image.to,
            since_us: image.since_us,
        };
        if pending.insert(partition, revocation).is_some() {
            return Err(corrupt(format!("group {group}: {partition} revoked twice")));
        }
    }
    Ok(pending)
}

fn restore_user(image: UserImage) -> Result<User, MetadataError> {
    let permissions = match image.permissions {
        None => None,
        Some(record) => Some(decode_permissions(&record, image.id)?),
    };
    let mut tokens = BTreeMap::new();
    for token in image.tokens {
        let name = token.name.clone();
        let restored = PersonalAccessToken {
            name: token.name,
            token_hash: token.token_hash,
            expiry_at_us: token.expiry_at_us,
        };
        if tokens.insert(name.clone(), restored).is_some() {
            return Err(corrupt(format!("user {}: token {name:?} twice", image.id)));
        }
    }
    Ok(User {
        id: image.id,
        username: image.username,
        password_hash: image.password_hash,
        active: image.active,
        created_at_us: image.created_at_us,
        permissions,
        generation: image.generation,
        tokens,
    })
}

/// Permissions in wire layout, all of the bytes and nothing else.
fn decode_permissions(record: &[u8], user: UserId) -> Result<Permissions, MetadataError> {
    let mut reader = Reader::new(record);
    match Permissions::decode(&mut reader) {
        Ok(permissions) if reader.is_empty() => Ok(permissions),
        _ => Err(corrupt(format!("user {user}: permissions"))),
    }
}

#[cfg(test)]
mod tests {
    use galgo_protocol::identifier::Identifier;

    use super::*;
    use crate::test_support::{commit, settings};

    const SEGMENT_SIZE_BYTES: u64 = 1 << 20;

    fn name(name: &str) -> Identifier {
        Identifier::Name(name.into())
    }

    fn create_topic(metadata: &mut Metadata, stream: &str, topic: &str, count: u32, at_us: u64) {
        let change = metadata
            .prepare_create_topic(&name(stream), topic, count, settings(), at_us)
            .expect("new topic");
        commit(metadata, change);
    }

    /// Two streams with topics of 1, 3 and 5 partitions, a group with two members, a user with
    /// a token, and a freed stream id and topic id.
    fn sample(shard_count: u16) -> Metadata {
        let mut metadata = Metadata::new(shard_count, SEGMENT_SIZE_BYTES);
        for (stream, at_us) in [("gone", 1), ("a", 2), ("b", 3)] {
            let change = metadata.prepare_create_stream(stream, at_us).expect("new");
            commit(&mut metadata, change);
        }
        create_topic(&mut metadata, "a", "t1", 1, 4);
        create_topic(&mut metadata, "a", "gone", 2, 5);
        create_topic(&mut metadata, "a", "t2", 3, 6);
        create_topic(&mut metadata, "b", "t3", 5, 7);
        let change = metadata.prepare_delete_topic(&name("a"), &name("gone"));
        commit(&mut metadata, change.expect("exists"));
        let change = metadata
            .prepare_delete_stream(&name("gone"))
            .expect("exists");
        commit(&mut metadata, change);
        let (b, t3) = (name("b"), name("t3"));
        let change = metadata.prepare_create_group(&b, &t3, "g").expect("new");
        commit(&mut metadata, change);
        for client in [10, 11] {
            let change = metadata.prepare_join_group(&b, &t3, &name("g"), (client, 0), 8);
            commit(&mut metadata, change.expect("joins").expect("new member"));
        }
        let change = metadata.prepare_create_user("ann", "h".into(), true, None, 9);
        let ann = change.as_ref().expect("new").id;
        commit(&mut metadata, change.expect("new"));
        let change = metadata.prepare_create_token(ann, "ci", "digest".into(), None, 5);
        commit(&mut metadata, change.expect("new"));
        metadata
    }

    fn owners(metadata: &Metadata) -> Vec<(PartitionKey, ShardId)> {
        let partitions = metadata.partitions();
        partitions
            .map(|(key, partition)| (key, partition.owner))
            .collect()
    }

    /// Partitions each shard owns, counted from the partitions themselves.
    fn counted_loads(metadata: &Metadata) -> Vec<u32> {
        let mut loads = vec![0; usize::from(metadata.shard_count())];
        for (_, owner) in owners(metadata) {
            loads[usize::from(owner.0)] += 1;
        }
        loads
    }

    #[test]
    fn a_snapshot_restores_the_same_state() {
        let metadata = sample(3);
        let bytes = metadata.snapshot();
        assert!(bytes.starts_with(b"galgo-metadata-snapshot\x01\x00"));
        let restored = Metadata::from_snapshot(&bytes, &metadata).expect("restores");
        assert_eq!(restored.snapshot(), bytes);
        assert_eq!(owners(&restored), owners(&metadata));
        assert_eq!(restored.shard_loads(), metadata.shard_loads());
        assert_eq!(restored.version(), metadata.version());
        let (_, group) = restored
            .group(&name("b"), &name("t3"), &name("g"))
            .expect("g");
        assert_eq!(group.members_count(), 2);
        assert_eq!(
            restored.token_by_hash("digest").expect("found").0.username,
            "ann"
        );
        assert_eq!(
            restored.prepare_create_stream("c", 1).expect("new").id,
            StreamId(0)
        );
    }

    #[test]
    fn another_magic_or_format_is_refused() {
        let metadata = sample(1);
        let mut bytes = metadata.snapshot();
        bytes[SNAPSHOT_MAGIC.len()..SNAPSHOT_MAGIC.len() + 2].copy_from_slice(&2u16.to_le_bytes());
        let refused = Metadata::from_snapshot(&bytes, &metadata).expect_err("format 2");
        assert_eq!(
            refused,
            MetadataError::UnsupportedSnapshotFormat {
                found: 2,
                expected: SNAPSHOT_FORMAT_VERSION
            }
        );
        assert!(refused.to_string().contains("format 2"));
        let mut bytes = metadata.snapshot();
        bytes[0] = b'G';
        assert!(matches!(
            Metadata::from_snapshot(&bytes, &metadata),
            Err(MetadataError::CorruptSnapshot(_))
        ));
        let log_record = crate::format_record();
        assert!(Metadata::from_snapshot(&log_record, &metadata).is_err());
    }

    #[test]
    fn truncated_snapshots_are_refused() {
        let metadata = sample(2);
        let bytes = metadata.snapshot();
        for len in 0..bytes.len() {
            let truncated = Metadata::from_snapshot(&bytes[..len], &metadata);
            assert!(truncated.is_err(), "{len} of {} bytes", bytes.len());
        }
    }

    /// xorshift64: garbage that is the same on every run.
    fn garbage(seed: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect()
    }

    #[test]
    fn garbage_is_an_error_and_flipped_bytes_never_panic() {
        let metadata = sample(2);
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 24, 25, 26, 100, 1000, 5000] {
            let random = garbage(&mut seed, len);
            assert!(Metadata::from_snapshot(&random, &metadata).is_err());
            let mut headed = metadata.snapshot()[..SNAPSHOT_MAGIC.len() + 2].to_vec();
            headed.extend(garbage(&mut seed, len));
            assert!(
                Metadata::from_snapshot(&headed, &metadata).is_err(),
                "{len}"
            );
        }
        // A flipped byte may land in a name or a time and still restore; it must never panic.
        let bytes = metadata.snapshot();
        for at in SNAPSHOT_MAGIC.len() + 2..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut flipped = bytes.clone();
                flipped[at] ^= flip;
                if let Ok(restored) = Metadata::from_snapshot(&flipped, &metadata) {
                    assert_eq!(restored.shard_loads(), counted_loads(&restored));
                }
            }
        }
    }

    fn refused(image: &MetadataImage, like: &Metadata) -> bool {
        let bytes = write_image(image);
        matches!(
            Metadata::from_snapshot(&bytes, like),
            Err(MetadataError::CorruptSnapshot(_))
        )
    }

    #[test]
    fn content_that_does_not_hold_together_is_refused() {
        let metadata = sample(2);
        let mut image = metadata.image();
        image.streams.entries[1].name = "a".into();
        assert!(refused(&image, &metadata), "two streams named a");
        let mut image = metadata.image();
        image.streams.free.push(1);
        assert!(refused(&image, &metadata), "a live stream id freed");
        let mut image = metadata.image();
        image.streams.entries[0].topics.entries[1]
            .partitions
            .swap(0, 1);
        assert!(refused(&image, &metadata), "partitions out of order");
        let mut image = metadata.image();
        let group = &mut image.streams.entries[1].topics.entries[0].groups.entries[0];
        group.members[0].partitions.push(5);
        assert!(refused(&image, &metadata), "a partition beyond the count");
        let mut image = metadata.image();
        let group = &mut image.streams.entries[1].topics.entries[0].groups.entries[0];
        let taken = group.members[0].partitions[0];
        group.members[1].partitions.push(taken);
        assert!(refused(&image, &metadata), "a partition owned twice");
        let mut image = metadata.image();
        let group = &mut image.streams.entries[1].topics.entries[0].groups.entries[0];
        group.pending[0].from = group.pending[0].to;
        assert!(
            refused(&image, &metadata),
            "a revocation from a member that does not own it"
        );
        let mut image = metadata.image();
        image.users.entries[0].permissions = Some(vec![1, 2]);
        assert!(refused(&image, &metadata), "permissions cut short");
        let mut image = metadata.image();
        let token = image.users.entries[0].tokens.pop().expect("ci");
        image.users.entries[0].tokens.extend([token.clone(), token]);
        assert!(refused(&image, &metadata), "a token twice");
    }

    #[test]
    fn a_fresh_node_places_every_partition_evenly() {
        let metadata = sample(3);
        let mut like = Metadata::new(4, SEGMENT_SIZE_BYTES);
        like.set_topic_defaults(crate::TopicDefaults {
            message_expiry_us: 60_000_000,
            max_topic_size_bytes: u64::MAX,
        });
        let restored = Metadata::from_snapshot(&metadata.snapshot(), &like).expect("restores");
        assert_eq!(restored.shard_count(), 4);
        let loads = restored.shard_loads();
        assert_eq!(loads, counted_loads(&restored));
        assert_eq!(loads.iter().sum::<u32>(), 9);
        let (min, max) = (loads.iter().min(), loads.iter().max());
        assert!(
            max.zip(min).is_some_and(|(max, min)| max - min <= 1),
            "{loads:?}"
        );
        assert_eq!(restored.snapshot(), metadata.snapshot());
        let new = restored.prepare_create_topic(&name("a"), "t4", 1, settings(), 10);
        assert_eq!(new.expect("new").settings.message_expiry_us, 60_000_000);
    }

    #[test]
    fn a_runtime_install_keeps_the_owners_of_partitions_that_still_exist() {
        let older = sample(2);
        let bytes = older.snapshot();
        // The replica went on: t2 was deleted and created again under the same id, later.
        let mut replica = older.clone();
        let change = replica.prepare_delete_topic(&name("a"), &name("t2"));
        commit(&mut replica, change.expect("exists"));
        create_topic(&mut replica, "b", "x", 2, 20);
        create_topic(&mut replica, "a", "t2", 3, 21);
        let restored = Metadata::from_snapshot(&bytes, &replica).expect("restores");
        let t2 = replica.resolve_topic(&name("a"), &name("t2")).expect("t2");
        for (key, partition) in restored.partitions() {
            let kept = replica.topic_by_key(TopicKey {
                stream: key.stream,
                topic: key.topic,
            });
            if (key.stream, key.topic) != (t2.stream, t2.topic) {
                let kept = kept.expect("still there").partitions[key.partition.0 as usize];
                assert_eq!(partition.owner, kept.owner, "{key}");
            }
        }
        // Kept: t1 on shard 0, t3 on 0, 1, 0, 1, 0, so loads of 4 and 2 before the old t2's
        // three partitions are placed: 1, 1, then 0 on the tie.
        let old_t2 = restored.topic(&name("a"), &name("t2")).expect("t2");
        let placed: Vec<u16> = old_t2.partitions.iter().map(|p| p.owner.0).collect();
        assert_eq!(placed, vec![1, 1, 0]);
        assert_eq!(restored.shard_loads(), &[5, 4]);
        assert_eq!(restored.shard_loads(), counted_loads(&restored));
    }
}
