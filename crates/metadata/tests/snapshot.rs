//! Snapshots against replay: a state built from random valid changes, restored from its
//! snapshot, answers every question as the original does and goes on in step with it.

use galgo_metadata::{
    Change, Event, GroupKey, Metadata, PartitionKey, ShardId, TopicDefaults, TopicKey,
    TopicSettings,
};
use galgo_protocol::{GlobalPermissions, Identifier, Permissions, StreamPermissions};
use proptest::prelude::*;

const SEGMENT_SIZE_BYTES: u64 = 1 << 20;
const SHARD_COUNT: u16 = 3;

/// One step of the history. Small numbers pick among what exists (modulo its count: every
/// topic of every stream, every group of every topic) or name things from a small pool, so
/// names collide, deletes find something and ids get reused.
#[derive(Clone, Debug)]
enum Op {
    CreateStream(u8),
    RenameStream(u8, u8),
    DeleteStream(u8),
    CreateTopic(u8, u8, u8),
    UpdateTopic(u8, u8),
    DeleteTopic(u8),
    CreatePartitions(u8, u8),
    DeletePartitions(u8, u8),
    CreateUser(u8, Option<u16>, bool),
    UpdateUser(u8, Option<u8>, Option<bool>),
    UpdatePermissions(u8, Option<u16>),
    ChangePassword(u8),
    DeleteUser(u8),
    CreateToken(u8, u8, Option<u8>),
    DeleteToken(u8, u8),
    DeleteExpiredTokens,
    CreateGroup(u8, u8),
    DeleteGroup(u8),
    Join(u8, u8, u8),
    Leave(u8, u8),
    CompleteRevocations(u8),
    NodeStarted(u8),
    NodeLost(u8),
}

fn any_op() -> impl Strategy<Value = Op> {
    let n = any::<u8>;
    prop_oneof![
        3 => n().prop_map(Op::CreateStream),
        1 => (n(), n()).prop_map(|(s, name)| Op::RenameStream(s, name)),
        1 => n().prop_map(Op::DeleteStream),
        4 => (n(), n(), n()).prop_map(|(s, name, count)| Op::CreateTopic(s, name, count)),
        1 => (n(), n()).prop_map(|(t, name)| Op::UpdateTopic(t, name)),
        1 => n().prop_map(Op::DeleteTopic),
        2 => (n(), n()).prop_map(|(t, count)| Op::CreatePartitions(t, count)),
        1 => (n(), n()).prop_map(|(t, count)| Op::DeletePartitions(t, count)),
        3 => (n(), any::<Option<u16>>(), any::<bool>())
            .prop_map(|(name, mask, active)| Op::CreateUser(name, mask, active)),
        1 => (n(), any::<Option<u8>>(), any::<Option<bool>>())
            .prop_map(|(u, name, active)| Op::UpdateUser(u, name, active)),
        1 => (n(), any::<Option<u16>>()).prop_map(|(u, mask)| Op::UpdatePermissions(u, mask)),
        1 => n().prop_map(Op::ChangePassword),
        1 => n().prop_map(Op::DeleteUser),
        3 => (n(), n(), any::<Option<u8>>())
            .prop_map(|(u, name, expiry)| Op::CreateToken(u, name, expiry)),
        1 => (n(), n()).prop_map(|(u, token)| Op::DeleteToken(u, token)),
        1 => Just(Op::DeleteExpiredTokens),
        3 => (n(), n()).prop_map(|(t, name)| Op::CreateGroup(t, name)),
        1 => n().prop_map(Op::DeleteGroup),
        8 => (n(), n(), n()).prop_map(|(g, client, node)| Op::Join(g, client, node)),
        2 => (n(), n()).prop_map(|(g, member)| Op::Leave(g, member)),
        1 => n().prop_map(Op::CompleteRevocations),
        1 => n().prop_map(Op::NodeStarted),
        1 => n().prop_map(Op::NodeLost),
    ]
}

fn settings() -> TopicSettings {
    TopicSettings {
        compression: 1,
        message_expiry_us: 0,
        max_topic_size_bytes: 0,
        replication_factor: 0,
    }
}

/// What a node starts from: no state, the configuration only.
fn fresh(shard_count: u16) -> Metadata {
    let mut metadata = Metadata::new(shard_count, SEGMENT_SIZE_BYTES);
    metadata.set_topic_defaults(TopicDefaults {
        message_expiry_us: 3_600_000_000,
        max_topic_size_bytes: 1 << 30,
    });
    metadata
}

fn commit(metadata: &mut Metadata, change: Change) {
    let event = Event {
        version: metadata.version() + 1,
        change,
    };
    metadata.apply(&event);
}

/// Permissions of some global flags and, for odd masks, grants on one stream.
fn permissions(mask: Option<u16>) -> Option<Permissions> {
    let mask = mask?;
    let bit = |at: u16| mask & (1 << at) != 0;
    let mut permissions = Permissions {
        global: GlobalPermissions {
            read_streams: bit(1),
            manage_topics: bit(2),
            poll_messages: bit(3),
            send_messages: bit(4),
            ..GlobalPermissions::default()
        },
        ..Permissions::default()
    };
    if bit(0) {
        let stream = StreamPermissions {
            read_stream: bit(5),
            send_messages: bit(6),
            ..StreamPermissions::default()
        };
        permissions.streams.insert(u32::from(mask >> 8), stream);
    }
    Some(permissions)
}

fn pick<T>(items: impl Iterator<Item = T>, at: u8) -> Option<T> {
    let items: Vec<T> = items.collect();
    let count = items.len();
    items.into_iter().nth(usize::from(at) % count.max(1))
}

fn stream_of(metadata: &Metadata, s: u8) -> Option<Identifier> {
    pick(metadata.streams(), s).map(|stream| Identifier::Numeric(stream.id.0))
}

fn topic_of(metadata: &Metadata, t: u8) -> Option<(Identifier, Identifier)> {
    let topics = metadata
        .streams()
        .flat_map(|stream| stream.topics().map(move |topic| (stream.id.0, topic.id.0)));
    let (stream, topic) = pick(topics, t)?;
    Some((Identifier::Numeric(stream), Identifier::Numeric(topic)))
}

fn group_of(metadata: &Metadata, g: u8) -> Option<GroupKey> {
    let groups = metadata.streams().flat_map(|stream| {
        stream.topics().flat_map(move |topic| {
            topic.groups().map(move |group| GroupKey {
                stream: stream.id,
                topic: topic.id,
                group: group.id,
            })
        })
    });
    pick(groups, g)
}

fn user_of(metadata: &Metadata, u: u8) -> Option<galgo_metadata::UserId> {
    pick(metadata.users(), u).map(|user| user.id)
}

/// The change an op makes against `metadata` at `now_us`, or `None` when it does not apply.
fn change_for(metadata: &Metadata, op: &Op, now_us: u64) -> Option<Change> {
    match *op {
        Op::CreateStream(..) | Op::RenameStream(..) | Op::DeleteStream(..) => {
            stream_change(metadata, op, now_us)
        }
        Op::CreateTopic(..)
        | Op::UpdateTopic(..)
        | Op::DeleteTopic(..)
        | Op::CreatePartitions(..)
        | Op::DeletePartitions(..) => topic_change(metadata, op, now_us),
        Op::CreateUser(..)
        | Op::UpdateUser(..)
        | Op::UpdatePermissions(..)
        | Op::ChangePassword(..)
        | Op::DeleteUser(..) => user_change(metadata, op, now_us),
        Op::CreateToken(..) | Op::DeleteToken(..) | Op::DeleteExpiredTokens => {
            token_change(metadata, op, now_us)
        }
        _ => group_change(metadata, op, now_us),
    }
}

fn stream_change(metadata: &Metadata, op: &Op, now_us: u64) -> Option<Change> {
    let change: Change = match *op {
        Op::CreateStream(name) => metadata
            .prepare_create_stream(&format!("s{}", name % 6), now_us)
            .ok()?
            .into(),
        Op::RenameStream(s, name) => metadata
            .prepare_update_stream(&stream_of(metadata, s)?, &format!("s{}", name % 6))
            .ok()?
            .into(),
        Op::DeleteStream(s) => metadata
            .prepare_delete_stream(&stream_of(metadata, s)?)
            .ok()?
            .into(),
        _ => unreachable!("not a stream op"),
    };
    Some(change)
}

fn topic_change(metadata: &Metadata, op: &Op, now_us: u64) -> Option<Change> {
    let change: Change = match *op {
        Op::CreateTopic(s, name, count) => {
            let stream = stream_of(metadata, s)?;
            let (name, count) = (format!("t{}", name % 5), u32::from(count % 5));
            let topic = metadata.prepare_create_topic(&stream, &name, count, settings(), now_us);
            topic.ok()?.into()
        }
        Op::UpdateTopic(t, name) => {
            let (stream, topic) = topic_of(metadata, t)?;
            let name = format!("t{}", name % 5);
            let update = metadata.prepare_update_topic(&stream, &topic, &name, settings());
            update.ok()?.into()
        }
        Op::DeleteTopic(t) => {
            let (stream, topic) = topic_of(metadata, t)?;
            metadata.prepare_delete_topic(&stream, &topic).ok()?.into()
        }
        Op::CreatePartitions(t, count) => {
            let (stream, topic) = topic_of(metadata, t)?;
            let count = u32::from(count % 3) + 1;
            let create = metadata.prepare_create_partitions(&stream, &topic, count, now_us);
            create.ok()?.into()
        }
        Op::DeletePartitions(t, count) => {
            let (stream, topic) = topic_of(metadata, t)?;
            let count = u32::from(count % 3) + 1;
            let delete = metadata.prepare_delete_partitions(&stream, &topic, count);
            delete.ok()?.into()
        }
        _ => unreachable!("not a topic op"),
    };
    Some(change)
}

fn user_change(metadata: &Metadata, op: &Op, now_us: u64) -> Option<Change> {
    let change: Change = match *op {
        Op::CreateUser(name, mask, active) => {
            let (name, hash) = (format!("u{}", name % 6), format!("h{now_us}"));
            let permissions = permissions(mask);
            let user =
                metadata.prepare_create_user(&name, hash, active, permissions.as_ref(), now_us);
            user.ok()?.into()
        }
        Op::UpdateUser(u, name, active) => {
            let user = Identifier::Numeric(user_of(metadata, u)?.0);
            let name = name.map(|name| format!("u{}", name % 6));
            let update = metadata.prepare_update_user(&user, name.as_deref(), active);
            update.ok()?.into()
        }
        Op::UpdatePermissions(u, mask) => {
            let user = Identifier::Numeric(user_of(metadata, u)?.0);
            let permissions = permissions(mask);
            let update = metadata.prepare_update_permissions(&user, permissions.as_ref());
            update.ok()?.into()
        }
        Op::ChangePassword(u) => {
            let user = metadata.user_by_id(user_of(metadata, u)?)?;
            let change =
                metadata.prepare_change_password(user.id, user.generation, format!("p{now_us}"));
            change.ok()?.into()
        }
        Op::DeleteUser(u) => {
            let user = Identifier::Numeric(user_of(metadata, u)?.0);
            metadata.prepare_delete_user(&user).ok()?.into()
        }
        _ => unreachable!("not a user op"),
    };
    Some(change)
}

fn token_change(metadata: &Metadata, op: &Op, now_us: u64) -> Option<Change> {
    let change: Change = match *op {
        Op::CreateToken(u, name, expiry) => {
            let user = user_of(metadata, u)?;
            let (name, hash) = (format!("k{}", name % 4), format!("digest{now_us}"));
            let expiry_at_us = expiry.map(|ahead| now_us + u64::from(ahead));
            let token = metadata.prepare_create_token(user, &name, hash, expiry_at_us, 3);
            token.ok()?.into()
        }
        Op::DeleteToken(u, token) => {
            let user = metadata.user_by_id(user_of(metadata, u)?)?;
            let name = pick(user.tokens(), token)?.name.clone();
            metadata.prepare_delete_token(user.id, &name).ok()?.into()
        }
        Op::DeleteExpiredTokens => metadata.prepare_delete_expired_tokens(now_us)?.into(),
        _ => unreachable!("not a token op"),
    };
    Some(change)
}

fn group_change(metadata: &Metadata, op: &Op, now_us: u64) -> Option<Change> {
    let numeric = |key: GroupKey| {
        let ids = (key.stream.0, key.topic.0, key.group.0);
        let numeric = Identifier::Numeric;
        (numeric(ids.0), numeric(ids.1), numeric(ids.2))
    };
    let change: Change = match *op {
        Op::CreateGroup(t, name) => {
            let (stream, topic) = topic_of(metadata, t)?;
            let name = format!("g{}", name % 4);
            metadata
                .prepare_create_group(&stream, &topic, &name)
                .ok()?
                .into()
        }
        Op::DeleteGroup(g) => {
            let (stream, topic, group) = numeric(group_of(metadata, g)?);
            metadata
                .prepare_delete_group(&stream, &topic, &group)
                .ok()?
                .into()
        }
        Op::Join(g, client, node) => {
            let (stream, topic, group) = numeric(group_of(metadata, g)?);
            let who = (u32::from(client % 8), u64::from(node % 3));
            let join = metadata.prepare_join_group(&stream, &topic, &group, who, now_us);
            join.ok()??.into()
        }
        Op::Leave(g, member) => {
            let key = group_of(metadata, g)?;
            let (_, group) = metadata.group_at(key)?;
            let client = pick(group.members(), member)?.client_id;
            metadata.prepare_leave_group(key, client).ok()?.into()
        }
        Op::CompleteRevocations(g) => {
            let key = group_of(metadata, g)?;
            let (_, group) = metadata.group_at(key)?;
            let pending: Vec<u32> = group.pending_revocations().map(|(p, _)| p).collect();
            metadata.prepare_complete_revocations(key, &pending)?.into()
        }
        Op::NodeStarted(node) => metadata
            .prepare_node_started(u64::from(node % 3), now_us)?
            .into(),
        Op::NodeLost(node) => metadata
            .prepare_node_lost(u64::from(node % 3), now_us)?
            .into(),
        _ => unreachable!("not a group op"),
    };
    Some(change)
}

/// A state from the root user and `ops`, each at its own time.
fn replay(ops: &[Op]) -> Metadata {
    let mut metadata = fresh(SHARD_COUNT);
    let root = Permissions::root();
    let change = metadata.prepare_create_user("iggy", "h".into(), true, Some(&root), 1);
    commit(&mut metadata, change.expect("root").into());
    for (step, op) in ops.iter().enumerate() {
        if let Some(change) = change_for(&metadata, op, 10 + step as u64 * 10) {
            commit(&mut metadata, change);
        }
    }
    metadata
}

fn owners(metadata: &Metadata) -> Vec<(PartitionKey, u64, ShardId)> {
    let partitions = metadata.partitions();
    partitions
        .map(|(key, p)| (key, p.created_at_us, p.owner))
        .collect()
}

/// The ids the next stream, topic, group and user would get.
fn next_ids(metadata: &Metadata) -> Vec<u32> {
    let mut ids = vec![metadata.prepare_create_stream("new", 0).expect("new").id.0];
    ids.push(
        metadata
            .prepare_create_user("new", String::new(), true, None, 0)
            .expect("new")
            .id
            .0,
    );
    for stream in metadata.streams() {
        let s = Identifier::Numeric(stream.id.0);
        let topic = metadata.prepare_create_topic(&s, "new", 0, settings(), 0);
        ids.push(topic.expect("new").id.0);
        for topic in stream.topics() {
            let t = Identifier::Numeric(topic.id.0);
            ids.push(
                metadata
                    .prepare_create_group(&s, &t, "new")
                    .expect("new")
                    .group
                    .group
                    .0,
            );
        }
    }
    ids
}

fn assert_same_names(original: &Metadata, restored: &Metadata) {
    for stream in original.streams() {
        let s = Identifier::Name(stream.name.clone());
        assert_eq!(restored.stream(&s).map(|found| found.id), Ok(stream.id));
        for topic in stream.topics() {
            let t = Identifier::Name(topic.name.clone());
            let key = TopicKey {
                stream: stream.id,
                topic: topic.id,
            };
            assert_eq!(restored.resolve_topic(&s, &t), Ok(key));
            for group in topic.groups() {
                let g = Identifier::Name(group.name.clone());
                let (_, found) = restored.group(&s, &t, &g).expect("group by name");
                let members: Vec<_> = found.members().collect();
                assert_eq!(members, group.members().collect::<Vec<_>>());
                let pending: Vec<_> = found.pending_revocations().collect();
                assert_eq!(pending, group.pending_revocations().collect::<Vec<_>>());
            }
        }
    }
}

fn assert_same_users(original: &Metadata, restored: &Metadata) {
    assert_eq!(restored.users().count(), original.users().count());
    for user in original.users() {
        let found = restored
            .user_for_login(&user.username)
            .expect("user by name");
        assert_eq!(found.id, user.id);
        assert_eq!(found.password_hash, user.password_hash);
        assert_eq!(found.active, user.active);
        assert_eq!(found.created_at_us, user.created_at_us);
        assert_eq!(found.permissions, user.permissions);
        assert_eq!(found.generation, user.generation);
        for token in user.tokens() {
            let (owner, found) = restored.token_by_hash(&token.token_hash).expect("token");
            assert_eq!((owner.id, found), (user.id, token));
        }
        assert_eq!(found.tokens().count(), user.tokens().count());
    }
}

/// Everything a caller can ask of a replica gets the same answer from both.
fn assert_same_answers(original: &Metadata, restored: &Metadata) {
    assert_eq!(restored.version(), original.version());
    assert_eq!(owners(restored), owners(original));
    assert_eq!(restored.shard_loads(), original.shard_loads());
    assert_eq!(restored.counts(), original.counts());
    assert_eq!(restored.groups_count(), original.groups_count());
    assert_eq!(next_ids(restored), next_ids(original));
    assert_same_names(original, restored);
    assert_same_users(original, restored);
}

fn assert_evenly_placed(metadata: &Metadata) {
    let mut counted = vec![0; usize::from(metadata.shard_count())];
    for (_, _, owner) in owners(metadata) {
        counted[usize::from(owner.0)] += 1;
    }
    assert_eq!(metadata.shard_loads(), counted);
    let (min, max) = (counted.iter().min(), counted.iter().max());
    assert!(
        max.zip(min).is_some_and(|(max, min)| max - min <= 1),
        "{counted:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_restored_state_answers_and_goes_on_as_the_original(
        history in prop::collection::vec(any_op(), 0..120),
        further in prop::collection::vec(any_op(), 0..40),
    ) {
        let mut original = replay(&history);
        let bytes = original.snapshot();
        let mut restored = Metadata::from_snapshot(&bytes, &original).expect("restores");
        prop_assert_eq!(&restored.snapshot(), &bytes);
        assert_same_answers(&original, &restored);

        let elsewhere = Metadata::from_snapshot(&bytes, &fresh(4)).expect("restores");
        prop_assert_eq!(&elsewhere.snapshot(), &bytes);
        assert_evenly_placed(&elsewhere);

        for (step, op) in further.iter().enumerate() {
            let now_us = 100_000 + step as u64 * 10;
            let change = change_for(&original, op, now_us);
            prop_assert_eq!(&change_for(&restored, op, now_us), &change);
            if let Some(change) = change {
                commit(&mut original, change.clone());
                commit(&mut restored, change);
            }
        }
        prop_assert_eq!(restored.snapshot(), original.snapshot());
        assert_same_answers(&original, &restored);
    }
}
