//! Consumer groups with the official Iggy Rust SDK (`iggy` 0.10.0) against a real galgo-server
//! with 2 shards: every group command, fair assignment and rebalancing (PROTOCOL.md §8.6),
//! polling as a group (next, explicit partitions, auto-commit), group offsets, leaving on
//! disconnect, the SDK's high-level IggyConsumer, and persistence across a restart.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use iggy::prelude::*;
use support::TestServer;
use support::sdk::{self, TEST_TIMEOUT, id, name, within};

fn error_code<T: std::fmt::Debug>(result: Result<T, IggyError>) -> u32 {
    match result {
        Ok(value) => panic!("expected an error, got Ok({value:?})"),
        Err(error) => error.as_code(),
    }
}

/// How long a condition the server reaches by itself (a disconnect noticed) may take.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(20);

async fn group_details(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    group: &str,
) -> ConsumerGroupDetails {
    client
        .get_consumer_group(&id(stream), &id(topic), &name(group))
        .await
        .expect("get group")
        .expect("group exists")
}

/// Partitions per member, in member id order.
async fn assignment(client: &IggyClient, stream: u32, topic: u32, group: &str) -> Vec<Vec<u32>> {
    let details = group_details(client, stream, topic, group).await;
    assert_eq!(details.members_count as usize, details.members.len());
    details
        .members
        .into_iter()
        .map(|member| {
            assert_eq!(member.partitions_count as usize, member.partitions.len());
            member.partitions
        })
        .collect()
}

async fn poll_group(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    group: &str,
    partition: Option<u32>,
    count: u32,
    auto_commit: bool,
) -> PolledMessages {
    client
        .poll_messages(
            &id(stream),
            &id(topic),
            partition,
            &Consumer::group(name(group)),
            &PollingStrategy::next(),
            count,
            auto_commit,
        )
        .await
        .expect("poll as a group member")
}

/// Sends `count` messages `m-0..` one batch per partition, spread evenly (`count` is a
/// multiple of the topic's partition count): message `i` goes to partition `i % partitions`.
async fn send_balanced(client: &IggyClient, stream: u32, topic: u32, count: u64) {
    let partitions = client
        .get_topic(&id(stream), &id(topic))
        .await
        .expect("get topic")
        .expect("topic exists")
        .partitions_count;
    for partition in 0..partitions {
        let mut messages: Vec<IggyMessage> = (0..count)
            .filter(|i| i % u64::from(partitions) == u64::from(partition))
            .map(|i| sdk::message(format!("m-{i}")))
            .collect();
        client
            .send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(partition),
                &mut messages,
            )
            .await
            .expect("send");
    }
}

#[tokio::test]
async fn group_commands_answer_as_iggy_does() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&client, "s", "t", 3).await;
        create_get_and_list_groups(&client, stream, topic).await;
        refuse_non_members(&client, stream, topic).await;
        join_and_see_membership(&client, stream, topic).await;
        store_get_and_delete_group_offsets(&client, stream, topic).await;
        leave_group(&client, stream, topic).await;
        delete_group_and_its_offsets(&client, stream, topic).await;
    })
    .await;
}

/// Creates groups `g` (id 0) and `h` (id 1) and looks them up; missing groups and topics
/// read as none or empty, and joining a missing group is refused with 5000.
async fn create_get_and_list_groups(client: &IggyClient, stream: u32, topic: u32) {
    let created = client
        .create_consumer_group(&id(stream), &id(topic), "g")
        .await
        .expect("create group");
    assert_eq!((created.id, created.name.as_str()), (0, "g"));
    assert_eq!((created.partitions_count, created.members_count), (3, 0));
    let second = client
        .create_consumer_group(&id(stream), &id(topic), "h")
        .await
        .expect("create a second group");
    assert_eq!(second.id, 1);
    assert_eq!(
        error_code(
            client
                .create_consumer_group(&id(stream), &id(topic), "g")
                .await
        ),
        5004,
        "duplicate group name"
    );
    let listed = client
        .get_consumer_groups(&id(stream), &id(topic))
        .await
        .expect("list");
    let names: Vec<&str> = listed.iter().map(|group| group.name.as_str()).collect();
    assert_eq!(names, ["g", "h"]);
    let by_id = client
        .get_consumer_group(&id(stream), &id(topic), &id(0))
        .await
        .expect("get by id")
        .expect("exists");
    assert_eq!(by_id.name, "g");
    for missing in [id(9), name("nope")] {
        let found = client
            .get_consumer_group(&id(stream), &id(topic), &missing)
            .await
            .expect("get a missing group");
        assert!(found.is_none());
        assert_eq!(
            error_code(
                client
                    .join_consumer_group(&id(stream), &id(topic), &missing)
                    .await
            ),
            5000,
            "join a missing group"
        );
    }
    assert!(
        client
            .get_consumer_groups(&id(stream), &id(77))
            .await
            .expect("list on a missing topic")
            .is_empty()
    );
}

/// Not a member yet: polling and leaving as the group are refused with 5006.
async fn refuse_non_members(client: &IggyClient, stream: u32, topic: u32) {
    assert_eq!(
        error_code(
            client
                .poll_messages(
                    &id(stream),
                    &id(topic),
                    None,
                    &Consumer::group(name("g")),
                    &PollingStrategy::next(),
                    1,
                    false,
                )
                .await
        ),
        5006
    );
    assert_eq!(
        error_code(
            client
                .leave_consumer_group(&id(stream), &id(topic), &name("g"))
                .await
        ),
        5006
    );
}

/// Joins `g` twice (the second join is a no-op) and finds the membership in the group's
/// assignment, in get_me and in the stats.
async fn join_and_see_membership(client: &IggyClient, stream: u32, topic: u32) {
    client
        .join_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("join");
    // Joining twice is a no-op.
    client
        .join_consumer_group(&id(stream), &id(topic), &id(0))
        .await
        .expect("join again");
    assert_eq!(
        assignment(client, stream, topic, "g").await,
        vec![vec![0, 1, 2]]
    );
    let me = client.get_me().await.expect("get_me");
    assert_eq!(me.consumer_groups_count, 1);
    assert_eq!(
        (
            me.consumer_groups[0].stream_id,
            me.consumer_groups[0].topic_id,
            me.consumer_groups[0].group_id
        ),
        (stream, topic, 0)
    );
    assert_eq!(
        client
            .get_stats()
            .await
            .expect("stats")
            .consumer_groups_count,
        2
    );
}

/// Group offsets: store needs a partition the member owns (3022 otherwise) and an offset that
/// exists; a deleted offset cannot be deleted again.
async fn store_get_and_delete_group_offsets(client: &IggyClient, stream: u32, topic: u32) {
    send_balanced(client, stream, topic, 6).await;
    let group = Consumer::group(name("g"));
    client
        .store_consumer_offset(&group, &id(stream), &id(topic), Some(1), 1)
        .await
        .expect("store a group offset");
    let stored = client
        .get_consumer_offset(&group, &id(stream), &id(topic), Some(1))
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(
        (
            stored.partition_id,
            stored.stored_offset,
            stored.current_offset
        ),
        (1, 1, 1)
    );
    assert_eq!(
        error_code(
            client
                .store_consumer_offset(&group, &id(stream), &id(topic), Some(1), 5)
                .await
        ),
        4100,
        "past the partition's last offset"
    );
    client
        .delete_consumer_offset(&group, &id(stream), &id(topic), Some(1))
        .await
        .expect("delete the group offset");
    assert_eq!(
        error_code(
            client
                .delete_consumer_offset(&group, &id(stream), &id(topic), Some(1))
                .await
        ),
        3021
    );
}

/// After leaving, the client can no longer commit as the group and is no member anywhere.
async fn leave_group(client: &IggyClient, stream: u32, topic: u32) {
    client
        .leave_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("leave");
    let group = Consumer::group(name("g"));
    assert_eq!(
        error_code(
            client
                .store_consumer_offset(&group, &id(stream), &id(topic), Some(1), 1)
                .await
        ),
        5006,
        "store after leaving"
    );
    assert!(assignment(client, stream, topic, "g").await.is_empty());
    assert_eq!(
        client.get_me().await.expect("get_me").consumer_groups_count,
        0
    );
}

/// Deleting a group deletes its offsets: a new group that reuses the id starts fresh.
async fn delete_group_and_its_offsets(client: &IggyClient, stream: u32, topic: u32) {
    client
        .join_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("join");
    let polled = poll_group(client, stream, topic, "g", Some(0), 10, true).await;
    assert_eq!(polled.messages.len(), 2);
    client
        .delete_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("delete group");
    assert!(
        client
            .get_consumer_group(&id(stream), &id(topic), &name("g"))
            .await
            .expect("get")
            .is_none()
    );
    let reused = client
        .create_consumer_group(&id(stream), &id(topic), "g2")
        .await
        .expect("create");
    assert_eq!(reused.id, 0, "the freed id is reused");
    let offset = client
        .get_consumer_offset(&Consumer::group(id(0)), &id(stream), &id(topic), Some(0))
        .await
        .expect("get");
    assert!(
        offset.is_none(),
        "the deleted group's offset is gone: {offset:?}"
    );
    client
        .delete_consumer_group(&id(stream), &id(topic), &id(0))
        .await
        .expect("delete");
    assert_eq!(
        error_code(
            client
                .delete_consumer_group(&id(stream), &id(topic), &id(0))
                .await
        ),
        5000
    );
}

/// Polls as a member with Next and auto-commit until each of its partitions answered empty
/// once in a row; returns the payloads it got, with the partitions they came from.
async fn drain_member(
    client: &IggyClient,
    stream: u32,
    topic: u32,
    group: &str,
    partitions: usize,
) -> Vec<(u32, String)> {
    let mut got = Vec::new();
    let mut empty_in_a_row = 0;
    while empty_in_a_row < partitions.max(1) {
        let polled = poll_group(client, stream, topic, group, None, 7, true).await;
        if polled.messages.is_empty() {
            empty_in_a_row += 1;
            continue;
        }
        empty_in_a_row = 0;
        for message in &polled.messages {
            let payload = String::from_utf8(message.payload.to_vec()).expect("UTF-8");
            got.push((polled.partition_id, payload));
        }
    }
    got
}

#[tokio::test]
async fn two_members_split_four_partitions_and_consume_everything_once() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&admin, "s", "t", 4).await;
        admin
            .create_consumer_group(&id(stream), &id(topic), "g")
            .await
            .expect("create group");
        send_balanced(&admin, stream, topic, 200).await;
        let first = sdk::client(server.addr).await;
        let second = sdk::client(server.addr).await;
        for member in [&first, &second] {
            member
                .join_consumer_group(&id(stream), &id(topic), &name("g"))
                .await
                .expect("join");
        }
        let shares = assignment(&admin, stream, topic, "g").await;
        assert_eq!(shares, vec![vec![0, 1], vec![2, 3]], "fair: 2/2, never 3/1");

        let mut all = drain_member(&first, stream, topic, "g", 2).await;
        let from_second = drain_member(&second, stream, topic, "g", 2).await;
        let first_partitions: BTreeSet<u32> = all.iter().map(|(p, _)| *p).collect();
        let second_partitions: BTreeSet<u32> = from_second.iter().map(|(p, _)| *p).collect();
        assert_eq!(first_partitions, BTreeSet::from([0, 1]));
        assert_eq!(second_partitions, BTreeSet::from([2, 3]));
        all.extend(from_second);
        let mut payloads: Vec<String> = all.into_iter().map(|(_, payload)| payload).collect();
        payloads.sort();
        let mut expected: Vec<String> = (0..200).map(|i| format!("m-{i}")).collect();
        expected.sort();
        assert_eq!(payloads, expected, "every message exactly once");

        // The commits are the group's: each partition's stored offset is its last message.
        for partition in 0..4 {
            let offset = admin
                .get_consumer_offset(
                    &Consumer::group(name("g")),
                    &id(stream),
                    &id(topic),
                    Some(partition),
                )
                .await
                .expect("get")
                .expect("committed");
            assert_eq!(offset.stored_offset, 49);
        }
    })
    .await;
}

#[tokio::test]
async fn joins_and_leaves_rebalance_fairly_and_cooperatively() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&admin, "s", "t", 4).await;
        admin
            .create_consumer_group(&id(stream), &id(topic), "g")
            .await
            .expect("create group");
        send_balanced(&admin, stream, topic, 40).await;
        let a = sdk::client(server.addr).await;
        let b = sdk::client(server.addr).await;
        let c = sdk::client(server.addr).await;
        a.join_consumer_group(&id(stream), &id(topic), &name("g"))
            .await
            .expect("join a");
        first_member_is_served_every_partition(&a, stream, topic).await;
        second_member_waits_for_the_first_to_commit(&admin, &a, &b, stream, topic).await;
        third_member_joins_and_second_leaves(&admin, &b, &c, stream, topic).await;

        // A member that disconnects leaves its groups.
        c.disconnect().await.expect("disconnect c");
        drop(c);
        wait_for_the_disconnected_member_to_leave(&admin, stream, topic).await;
    })
    .await;
}

/// A, alone in the group, is served one message of every partition and commits nothing yet.
async fn first_member_is_served_every_partition(a: &IggyClient, stream: u32, topic: u32) {
    let mut served = Vec::new();
    for _ in 0..4 {
        let polled = poll_group(a, stream, topic, "g", None, 1, false).await;
        assert_eq!(polled.messages.len(), 1);
        served.push((polled.partition_id, polled.messages[0].header.offset));
    }
    served.sort();
    assert_eq!(served, vec![(0, 0), (1, 0), (2, 0), (3, 0)]);
}

/// B joins; the partitions it is due (2 and 3) move to it one by one as A commits them.
async fn second_member_waits_for_the_first_to_commit(
    admin: &IggyClient,
    a: &IggyClient,
    b: &IggyClient,
    stream: u32,
    topic: u32,
) {
    b.join_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("join b");
    // Partitions 2 and 3 wait for A's commit: A still owns them, B polls nothing yet.
    assert_eq!(
        assignment(admin, stream, topic, "g").await,
        vec![vec![0, 1, 2, 3], vec![]]
    );
    let idle = poll_group(b, stream, topic, "g", None, 10, true).await;
    assert_eq!(
        (idle.partition_id, idle.count, idle.current_offset),
        (0, 0, 0)
    );
    // A's round robin skips the partitions being revoked.
    for _ in 0..4 {
        let polled = poll_group(a, stream, topic, "g", None, 1, false).await;
        assert!(
            [0, 1].contains(&polled.partition_id),
            "{}",
            polled.partition_id
        );
    }
    // A commits what it was served from 2 and 3: they move to B.
    let group = Consumer::group(name("g"));
    a.store_consumer_offset(&group, &id(stream), &id(topic), Some(2), 0)
        .await
        .expect("commit 2");
    assert_eq!(
        assignment(admin, stream, topic, "g").await,
        vec![vec![0, 1, 3], vec![2]]
    );
    a.store_consumer_offset(&group, &id(stream), &id(topic), Some(3), 0)
        .await
        .expect("commit 3");
    assert_eq!(
        assignment(admin, stream, topic, "g").await,
        vec![vec![0, 1], vec![2, 3]]
    );
    // B continues where A committed.
    let next = poll_group(b, stream, topic, "g", Some(2), 1, true).await;
    assert_eq!(next.messages[0].header.offset, 1);
    // A no longer owns 2: an explicit poll of it is the empty "no partition" answer.
    let foreign = poll_group(a, stream, topic, "g", Some(2), 1, false).await;
    assert_eq!((foreign.partition_id, foreign.count), (0, 0));
}

/// C's join shares four partitions 2/1/1; B's leave then rebalances fully to 2/2.
async fn third_member_joins_and_second_leaves(
    admin: &IggyClient,
    b: &IggyClient,
    c: &IggyClient,
    stream: u32,
    topic: u32,
) {
    c.join_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("join c");
    let shares = assignment(admin, stream, topic, "g").await;
    let mut sizes: Vec<usize> = shares.iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(
        sizes,
        vec![1, 1, 2],
        "three members over four partitions: {shares:?}"
    );
    let owned: BTreeSet<u32> = shares.iter().flatten().copied().collect();
    assert_eq!(owned, BTreeSet::from([0, 1, 2, 3]));

    b.leave_consumer_group(&id(stream), &id(topic), &name("g"))
        .await
        .expect("leave b");
    assert_eq!(
        assignment(admin, stream, topic, "g").await,
        vec![vec![0, 2], vec![1, 3]],
        "a leave rebalances fully: 2/2"
    );
}

/// The server notices a disconnect by itself, so this waits (bounded) until A owns all four
/// partitions again.
async fn wait_for_the_disconnected_member_to_leave(admin: &IggyClient, stream: u32, topic: u32) {
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    loop {
        let shares = assignment(admin, stream, topic, "g").await;
        if shares == vec![vec![0, 1, 2, 3]] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the disconnected member stayed: {shares:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn members_beyond_the_partition_count_get_empty_results() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&admin, "s", "t", 1).await;
        admin
            .create_consumer_group(&id(stream), &id(topic), "g")
            .await
            .expect("create group");
        send_balanced(&admin, stream, topic, 3).await;
        let busy = sdk::client(server.addr).await;
        let idle = sdk::client(server.addr).await;
        for member in [&busy, &idle] {
            member
                .join_consumer_group(&id(stream), &id(topic), &name("g"))
                .await
                .expect("join");
        }
        for _ in 0..3 {
            let nothing = poll_group(&idle, stream, topic, "g", None, 10, true).await;
            assert_eq!((nothing.partition_id, nothing.count), (0, 0));
            assert!(nothing.messages.is_empty());
        }
        let polled = poll_group(&busy, stream, topic, "g", None, 10, true).await;
        assert_eq!(polled.messages.len(), 3);
        // Adding partitions rebalances every group of the topic fully.
        admin
            .create_partitions(&id(stream), &id(topic), 1)
            .await
            .expect("add a partition");
        assert_eq!(
            assignment(&admin, stream, topic, "g").await,
            vec![vec![0], vec![1]]
        );
    })
    .await;
}

#[tokio::test]
async fn the_sdk_high_level_consumer_works_with_a_group() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let admin = sdk::client(server.addr).await;
        let (stream, topic) = sdk::create_stream_and_topic(&admin, "orders", "created", 3).await;
        send_balanced(&admin, stream, topic, 90).await;
        let client = sdk::client(server.addr).await;
        let mut consumer = client
            .consumer_group("workers", "orders", "created")
            .expect("builder")
            .auto_commit(AutoCommit::When(AutoCommitWhen::PollingMessages))
            .create_consumer_group_if_not_exists()
            .auto_join_consumer_group()
            .polling_strategy(PollingStrategy::next())
            .poll_interval(IggyDuration::from(Duration::from_millis(1)))
            .batch_length(8)
            .build();
        consumer.init().await.expect("init the consumer");
        let mut payloads = BTreeSet::new();
        while payloads.len() < 90 {
            let received = consumer
                .next()
                .await
                .expect("the stream goes on")
                .expect("a message");
            let payload = String::from_utf8(received.message.payload.to_vec()).expect("UTF-8");
            assert!(payloads.insert(payload), "a message came twice");
        }
        let expected: BTreeSet<String> = (0..90).map(|i| format!("m-{i}")).collect();
        assert_eq!(payloads, expected);
        let details = group_details(&admin, stream, topic, "workers").await;
        assert_eq!(details.members_count, 1);
        for partition in 0..3 {
            let offset = admin
                .get_consumer_offset(
                    &Consumer::group(name("workers")),
                    &id(stream),
                    &id(topic),
                    Some(partition),
                )
                .await
                .expect("get")
                .expect("auto-committed");
            assert_eq!(offset.stored_offset, 29);
        }
    })
    .await;
}

#[tokio::test]
async fn groups_and_their_offsets_survive_a_restart_and_members_do_not() {
    let mut server = TestServer::start(&[]);
    // The first stream and topic get id 0.
    let (stream, topic) = (0, 0);
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        sdk::create_stream_and_topic(&client, "s", "t", 2).await;
        client
            .create_consumer_group(&id(stream), &id(topic), "g")
            .await
            .expect("create group");
        send_balanced(&client, stream, topic, 10).await;
        client
            .join_consumer_group(&id(stream), &id(topic), &name("g"))
            .await
            .expect("join");
        let polled = poll_group(&client, stream, topic, "g", Some(1), 3, true).await;
        assert_eq!(polled.messages.len(), 3);
    })
    .await;
    server.restart();
    within(TEST_TIMEOUT, async {
        let client = sdk::client(server.addr).await;
        let details = group_details(&client, stream, topic, "g").await;
        assert_eq!((details.id, details.members_count), (0, 0));
        let offset = client
            .get_consumer_offset(
                &Consumer::group(name("g")),
                &id(stream),
                &id(topic),
                Some(1),
            )
            .await
            .expect("get")
            .expect("persisted");
        assert_eq!(offset.stored_offset, 2);
        client
            .join_consumer_group(&id(stream), &id(topic), &name("g"))
            .await
            .expect("join again");
        let next = poll_group(&client, stream, topic, "g", Some(1), 10, true).await;
        assert_eq!(next.messages[0].header.offset, 3);
        assert_eq!(next.messages.len(), 2);
    })
    .await;
}
