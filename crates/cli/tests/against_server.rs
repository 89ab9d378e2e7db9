//! The `galgo` binary against a real galgo-server: every subcommand family, its table and
//! JSON output, and its failures with their exit codes (2 usage, 3 server, 4 connection).

mod support {
    pub mod galgo;
    // Shared with the client's and the bench's tests: one harness for crates that cannot
    // depend on the server crate.
    #[path = "../../../client/tests/support/galgo_server.rs"]
    #[allow(dead_code)]
    pub mod galgo_server;
}

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;
use support::galgo::{Galgo, fails, ok, run};

/// How long a followed message may take to show up.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn system_commands() {
    let galgo = Galgo::start();
    assert!(
        galgo
            .ok(&["ping", "--count", "3"])
            .starts_with("pong: 3 ping(s)")
    );
    // Ping needs no login: a new user with no flags, no environment and no session gets a pong,
    // while a command that needs a login still says what is missing.
    let anonymous = ok(galgo.anonymous().arg("ping"), None);
    assert!(anonymous.starts_with("pong: 1 ping(s)"), "{anonymous}");
    let stderr = fails(galgo.anonymous().args(["stream", "list"]), 2);
    assert!(stderr.contains("no credentials"), "{stderr}");
    let me = galgo.json(&["me"]);
    assert_eq!(me["user_id"], 0, "{me}");
    assert_eq!(me["transport"], "tcp");
    let stats = galgo.json(&["stats"]);
    assert!(!stats["server_version"].as_str().unwrap().is_empty());
    assert!(galgo.ok(&["stats"]).contains("uptime"));
    // A single node lists itself, leading and healthy, at the address the CLI reached.
    let cluster = galgo.json(&["cluster"]);
    assert_eq!(cluster["name"], "single-node", "{cluster}");
    let node = &cluster["nodes"][0];
    assert_eq!(node["tcp_port"], galgo.server.addr.port(), "{cluster}");
    assert_eq!(
        (&node["role"], &node["status"]),
        (&"leader".into(), &"healthy".into())
    );
    assert!(galgo.ok(&["cluster"]).contains("leader"));
    let clients = galgo.json(&["client", "list"]);
    assert!(!clients.as_array().unwrap().is_empty(), "{clients}");
    let id = clients[0]["client_id"].as_u64().unwrap().to_string();
    // The listed connection has closed by now, or is another one: either is a real answer.
    let output = galgo.run(&["client", "get", &id]);
    assert!(matches!(output.status.code(), Some(0) | Some(3)));
    let stderr = galgo.fails(&["client", "get", "4000000000"], 3);
    assert!(stderr.contains("not found: client 4000000000"), "{stderr}");
}

/// The same commands in the 0.9 generation (`--protocol 0.9`): the server serves both, and
/// what one generation wrote the other reads.
#[test]
fn either_protocol_generation() {
    let galgo = Galgo::start();
    let anonymous = ok(galgo.anonymous().args(["--protocol", "0.9", "ping"]), None);
    assert!(anonymous.starts_with("pong: 1 ping(s)"), "{anonymous}");
    let created = galgo.json(&["--protocol", "0.9", "stream", "create", "gen"]);
    assert_eq!(created["name"], "gen");
    galgo.ok(&[
        "--protocol",
        "0.9",
        "topic",
        "create",
        "gen",
        "t",
        "--partitions",
        "2",
    ]);
    galgo.ok(&[
        "--protocol",
        "0.8",
        "message",
        "send",
        "gen",
        "t",
        "--partition",
        "1",
        "old",
    ]);
    galgo.ok(&[
        "--protocol",
        "0.9",
        "message",
        "send",
        "gen",
        "t",
        "--partition",
        "1",
        "new",
    ]);
    for protocol in ["0.8", "0.9"] {
        let polled = galgo.json(&[
            "--protocol",
            protocol,
            "message",
            "poll",
            "gen",
            "t",
            "--partition",
            "1",
            "--offset",
            "0",
        ]);
        assert_eq!(payloads(&polled), ["old", "new"], "{protocol}: {polled}");
    }
    let stderr = galgo.fails(&["--protocol", "0.7", "stream", "list"], 2);
    assert!(stderr.contains("0.7"), "{stderr}");
}

#[test]
fn streams_topics_partitions_and_segments() {
    let galgo = Galgo::start();
    let created = galgo.json(&["stream", "create", "orders"]);
    assert_eq!(created["name"], "orders");
    let stderr = galgo.fails(&["stream", "create", "orders"], 3);
    assert!(
        stderr.contains("StreamNameAlreadyExists (code 1012)"),
        "{stderr}"
    );
    galgo.ok(&["stream", "update", "orders", "sales"]);
    assert_eq!(galgo.json(&["stream", "list"])[0]["name"], "sales");

    let topic = galgo.json(&[
        "topic",
        "create",
        "sales",
        "created",
        "--partitions",
        "2",
        "--expiry",
        "1h",
        "--max-size",
        "1GiB",
        "--compression",
        "gzip",
    ]);
    assert_eq!(topic["partitions_count"], 2);
    assert_eq!(topic["message_expiry_us"], 3_600_000_000u64);
    assert_eq!(topic["max_topic_size_bytes"], 1u64 << 30);
    assert_eq!(topic["compression"], "gzip");
    // An update changes what it names and keeps the rest.
    let updated = galgo.json(&["topic", "update", "sales", "created", "--expiry", "2h"]);
    assert_eq!(updated["message_expiry_us"], 7_200_000_000u64);
    assert_eq!(updated["compression"], "gzip");
    galgo.ok(&["topic", "update", "sales", "created", "--name", "placed"]);
    let table = galgo.ok(&["topic", "list", "sales"]);
    assert!(table.contains("placed") && table.contains("2h") && table.contains("1.0 GiB"));

    let added = galgo.json(&["partition", "create", "sales", "placed", "3"]);
    assert_eq!(added["partitions_count"], 5);
    let removed = galgo.json(&["partition", "delete", "sales", "placed", "4"]);
    assert_eq!(removed["partitions_count"], 1);
    let topic = galgo.json(&["topic", "get", "sales", "placed"]);
    assert_eq!(topic["partitions"].as_array().unwrap().len(), 1);
    // One open segment and no sealed one: deleting segments deletes nothing and succeeds.
    galgo.ok(&["segment", "delete", "sales", "placed", "0", "--count", "1"]);
    galgo.fails(&["segment", "delete", "sales", "placed", "9"], 3);

    galgo.ok(&["message", "send", "sales", "placed", "x"]);
    galgo.ok(&["topic", "purge", "sales", "placed"]);
    assert_eq!(
        galgo.json(&["topic", "get", "sales", "placed"])["messages_count"],
        0
    );
    galgo.ok(&["stream", "purge", "sales"]);
    let stderr = galgo.fails(&["topic", "get", "sales", "missing"], 3);
    assert!(stderr.contains("not found"), "{stderr}");
    galgo.ok(&["topic", "delete", "sales", "placed"]);
    galgo.ok(&["stream", "delete", "sales"]);
    assert_eq!(galgo.json(&["stream", "list"]), Value::Array(vec![]));
    assert_eq!(galgo.ok(&["stream", "list"]).trim(), "(none)");
    galgo.fails(&["stream", "get", "sales"], 3);
    galgo.fails(&["topic", "create", "s", "t", "--expiry", "soon"], 2);
}

#[test]
fn a_topic_gets_the_replication_factor_asked_or_the_servers() {
    let galgo = Galgo::start();
    // Not given: the server's default (1 on a single node).
    galgo.ok(&["stream", "create", "factors"]);
    let unset = galgo.json(&["topic", "create", "factors", "unset"]);
    assert_eq!(unset["replication_factor"], 1);
    let two = galgo.json(&[
        "topic",
        "create",
        "factors",
        "two",
        "--replication-factor",
        "2",
    ]);
    assert_eq!(two["replication_factor"], 2);
    galgo.fails(
        &[
            "topic",
            "create",
            "factors",
            "none",
            "--replication-factor",
            "0",
        ],
        2,
    );
}

fn payloads(polled: &Value) -> Vec<&str> {
    polled["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["payload"].as_str().unwrap())
        .collect()
}

#[test]
fn messages_send_and_poll() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t", "--partitions", "2"]);
    send_from_arguments_stdin_and_a_file(&galgo);
    let polled = poll_by_offset_and_last(&galgo);
    poll_by_timestamp_and_as_a_table(&galgo, &polled);
    poll_next_as_a_consumer(&galgo);
    keyed_messages_share_a_partition(&galgo);
    bad_sends_and_polls_fail(&galgo);
}

/// Sends one, two (with headers), three to five (from stdin) and a binary blob (from a file)
/// to partition 1 of s/t.
fn send_from_arguments_stdin_and_a_file(galgo: &Galgo) {
    let sent = galgo.json(&[
        "message",
        "send",
        "s",
        "t",
        "one",
        "two",
        "--partition",
        "1",
        "-H",
        "zone=eu",
        "-H",
        "n:u32=7",
    ]);
    assert_eq!(sent["messages_count"], 2);
    let stdin = ok(
        galgo.root().args([
            "message",
            "send",
            "s",
            "t",
            "--partition",
            "1",
            "--batch",
            "2",
        ]),
        Some(b"three\nfour\nfive\n"),
    );
    assert!(stdin.starts_with("sent 3 message(s)"), "{stdin}");
    let file = galgo.config.path().join("blob.bin");
    std::fs::write(&file, [0u8, 1, 2, 255]).unwrap();
    let file = file.to_str().unwrap();
    galgo.ok(&[
        "message",
        "send",
        "s",
        "t",
        "--partition",
        "1",
        "--file",
        file,
    ]);
}

/// Polls partition 1 from offset 0, from offset 5 (the blob, in hex) and its last two
/// messages; returns the first poll.
fn poll_by_offset_and_last(galgo: &Galgo) -> Value {
    let polled = galgo.json(&[
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "1",
        "--count",
        "5",
    ]);
    assert_eq!(payloads(&polled), ["one", "two", "three", "four", "five"]);
    assert_eq!(polled["messages"][0]["headers"]["zone"], "eu");
    assert_eq!(polled["messages"][0]["headers"]["n"], "7");
    let hex = galgo.json(&[
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "1",
        "--offset",
        "5",
        "--payload",
        "hex",
    ]);
    assert_eq!(payloads(&hex), ["000102ff"]);
    let last = galgo.json(&[
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "1",
        "--last",
        "-n",
        "2",
    ]);
    assert_eq!(last["messages"][0]["offset"], 4);
    polled
}

/// Polls partition 1 from the timestamp of its third message, and shows its first message
/// as a table.
fn poll_by_timestamp_and_as_a_table(galgo: &Galgo, polled: &Value) {
    let after = polled["messages"][2]["timestamp_us"]
        .as_u64()
        .unwrap()
        .to_string();
    let since = galgo.json(&[
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "1",
        "--timestamp",
        &after,
    ]);
    assert_eq!(since["messages"][0]["offset"], 2);
    let table = galgo.ok(&["message", "poll", "s", "t", "--partition", "1", "-n", "1"]);
    assert!(
        table.contains("n=7, zone=eu") && table.contains("one"),
        "{table}"
    );
}

/// --next with --auto-commit walks forward as a consumer.
fn poll_next_as_a_consumer(galgo: &Galgo) {
    let next = [
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "1",
        "--next",
        "--consumer",
        "9",
        "--auto-commit",
        "-n",
        "2",
    ];
    assert_eq!(payloads(&galgo.json(&next)), ["one", "two"]);
    assert_eq!(payloads(&galgo.json(&next)), ["three", "four"]);
}

/// Equal keys land in one partition.
fn keyed_messages_share_a_partition(galgo: &Galgo) {
    for _ in 0..2 {
        galgo.ok(&["message", "send", "s", "t", "--key", "user-1", "k"]);
    }
    let p0 = galgo.json(&["message", "poll", "s", "t", "--partition", "0"]);
    let p1 = galgo.json(&[
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "1",
        "--offset",
        "6",
    ]);
    let keyed = payloads(&p0).len() + payloads(&p1).len();
    assert_eq!(keyed, 2);
    assert!(
        payloads(&p0).len() != 1,
        "both keyed messages share a partition"
    );
}

/// Bad arguments are usage errors (2), a missing topic or partition a server error (3) and a
/// missing file a plain failure (1).
fn bad_sends_and_polls_fail(galgo: &Galgo) {
    galgo.fails(&["message", "send", "s", "t", "x", "-H", "bad"], 2);
    galgo.fails(
        &[
            "message",
            "send",
            "s",
            "t",
            "x",
            "--partition",
            "1",
            "--key",
            "k",
        ],
        2,
    );
    galgo.fails(&["message", "poll", "s", "t", "--first", "--last"], 2);
    galgo.fails(&["message", "poll", "s", "missing"], 3);
    galgo.fails(&["message", "send", "s", "t", "--partition", "9", "x"], 3);
    let missing = galgo.config.path().join("missing.bin");
    galgo.fails(
        &[
            "message",
            "send",
            "s",
            "t",
            "--file",
            missing.to_str().unwrap(),
        ],
        1,
    );
}

#[test]
fn poll_follow_tails_new_messages() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t"]);
    galgo.ok(&["message", "send", "s", "t", "old"]);
    let mut child = galgo
        .root()
        .args([
            "-o",
            "json",
            "message",
            "poll",
            "s",
            "t",
            "--follow",
            // The server holds each empty poll until the next message: were it not, the CLI
            // would sleep for this long after it and the test would time out.
            "--interval",
            "10m",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let payload = |line: String| -> String {
        let message: Value = serde_json::from_str(&line).unwrap();
        message["payload"].as_str().unwrap().to_owned()
    };
    let first = lines
        .recv_timeout(FOLLOW_TIMEOUT)
        .expect("the stored message");
    assert_eq!(payload(first), "old");
    galgo.ok(&["message", "send", "s", "t", "new-1", "new-2"]);
    for expected in ["new-1", "new-2"] {
        let line = lines
            .recv_timeout(FOLLOW_TIMEOUT)
            .expect("a followed message");
        assert_eq!(payload(line), expected);
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Messages sent between the two refreshes of `galgo top`.
const TOP_NEW_MESSAGES: u64 = 7;

#[test]
fn top_shows_counts_rates_and_group_lag() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t", "--partitions", "2"]);
    galgo.ok(&[
        "message",
        "send",
        "s",
        "t",
        "--partition",
        "0",
        "a",
        "b",
        "c",
    ]);
    galgo.ok(&["message", "send", "s", "t", "--partition", "1", "d", "e"]);
    galgo.ok(&["group", "create", "s", "t", "billing"]);
    // billing reads and commits 2 messages of one of the partitions, both of which hold 2 or
    // more: 3 messages are left to it.
    let poll = [
        "message", "poll", "s", "t", "--group", "billing", "--next", "--count", "2",
    ];
    galgo.ok(&[&poll[..], &["--auto-commit"]].concat());
    let (mut stored, mut lag) = (5, 3);
    // The messages are sent after top's first refresh, by another process: on a loaded machine
    // they may land after the second refresh too, so a longer interval is tried then.
    for interval_ms in [200, 1_000, 5_000] {
        let (first, second) = top_twice(&galgo, interval_ms);
        assert_eq!(
            topic_row(&first),
            ["s", "t", "2", &stored.to_string(), "-", "-"]
        );
        // The member count is not checked: the poll's connection may still be leaving.
        assert_eq!(group_row(&first)[4], lag.to_string(), "{first:?}");
        let row = topic_row(&second);
        let new: u64 = row[4].parse().unwrap();
        stored += TOP_NEW_MESSAGES;
        lag += TOP_NEW_MESSAGES;
        if new == 0 {
            assert_eq!(
                row[3],
                (stored - TOP_NEW_MESSAGES).to_string(),
                "{second:?}"
            );
            continue;
        }
        assert_eq!(new, TOP_NEW_MESSAGES, "{second:?}");
        assert_eq!(row[3], stored.to_string(), "{second:?}");
        // At least the interval passed between the refreshes, so the rate is at most N over it.
        let rate: f64 = row[5].parse().unwrap();
        let rate_max = TOP_NEW_MESSAGES as f64 * 1000.0 / interval_ms as f64;
        assert!(rate > 0.0 && rate <= rate_max + 0.05, "{rate} > {rate_max}");
        assert_eq!(group_row(&second)[4], lag.to_string(), "{second:?}");
        return;
    }
    panic!("the messages never landed between two refreshes of galgo top");
}

/// Runs `galgo top --iterations 2` with stdout a pipe, sends TOP_NEW_MESSAGES messages once the
/// first refresh is printed, and returns both refreshes' lines.
fn top_twice(galgo: &Galgo, interval_ms: u64) -> (Vec<String>, Vec<String>) {
    let interval = interval_ms.to_string();
    let mut child = galgo
        .root()
        .args(["top", "--iterations", "2", "--interval-ms", &interval])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // A refresh ends with its group table, whose one row names billing.
    let mut first = Vec::new();
    while !first
        .last()
        .is_some_and(|line: &String| line.contains("billing"))
    {
        first.push(
            lines
                .recv_timeout(FOLLOW_TIMEOUT)
                .expect("the first refresh"),
        );
    }
    let payloads: Vec<String> = (0..TOP_NEW_MESSAGES).map(|i| format!("m{i}")).collect();
    let mut send = vec!["message", "send", "s", "t", "--partition", "1"];
    send.extend(payloads.iter().map(String::as_str));
    galgo.ok(&send);
    let mut second = Vec::new();
    // The sender drops when top exits after its second refresh.
    while let Ok(line) = lines.recv_timeout(FOLLOW_TIMEOUT) {
        second.push(line);
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(first[0].starts_with("galgo top  refresh 1"), "{first:?}");
    assert!(second[1].starts_with("galgo top  refresh 2"), "{second:?}");
    (first, second)
}

/// The cells of the row of topic t in a refresh of `galgo top`.
fn topic_row(refresh: &[String]) -> Vec<String> {
    row(refresh, |cells| cells.len() == 6 && cells[1] == "t")
}

/// The cells of the row of group billing in a refresh of `galgo top`.
fn group_row(refresh: &[String]) -> Vec<String> {
    row(refresh, |cells| cells.len() == 5 && cells[2] == "billing")
}

fn row(refresh: &[String], wanted: impl Fn(&[String]) -> bool) -> Vec<String> {
    refresh
        .iter()
        .map(|line| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cells| wanted(cells))
        .unwrap_or_else(|| panic!("no such row in {refresh:?}"))
}

/// (partition, payload) of each message of a poll, in the order printed.
fn labelled(polled: &Value) -> Vec<(u64, String)> {
    polled["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let partition = m["partition_id"].as_u64().unwrap();
            (partition, m["payload"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Keys sent to the three-partition topic s/t of the tests below, one message each, payload
/// `m-KEY`.
const KEYS: [&str; 6] = ["user-1", "user-2", "user-3", "user-4", "user-42", "user-7"];

#[test]
fn poll_without_a_partition_merges_every_partition() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t", "--partitions", "3"]);
    for key in KEYS {
        galgo.ok(&[
            "message",
            "send",
            "s",
            "t",
            "--key",
            key,
            &format!("m-{key}"),
        ]);
    }
    // One send after another: the server's timestamps order them as they were sent.
    let polled = galgo.json(&["message", "poll", "s", "t", "--first"]);
    let merged = labelled(&polled);
    let sent: Vec<String> = KEYS.iter().map(|key| format!("m-{key}")).collect();
    let payloads: Vec<&String> = merged.iter().map(|(_, payload)| payload).collect();
    assert_eq!(payloads, sent.iter().collect::<Vec<_>>(), "{polled}");
    assert_eq!(
        polled["partitions"].as_array().unwrap().len(),
        3,
        "{polled}"
    );
    // Each label names the partition the message is in.
    for (partition, payload) in &merged {
        let alone = galgo.json(&[
            "message",
            "poll",
            "s",
            "t",
            "--partition",
            &partition.to_string(),
        ]);
        assert!(
            payloads_of(&alone).contains(payload),
            "{payload} in {partition}"
        );
    }
    let mut partitions: Vec<u64> = merged.iter().map(|(partition, _)| *partition).collect();
    partitions.sort_unstable();
    partitions.dedup();
    assert!(
        partitions.len() >= 2,
        "the keys spread over partitions: {merged:?}"
    );
    let table = galgo.ok(&["message", "poll", "s", "t", "--first"]);
    assert!(
        table.contains("partition") && table.contains("m-user-42"),
        "{table}"
    );
    poll_counts_apply_to_the_merged_list(&galgo, &sent);
}

fn payloads_of(polled: &Value) -> Vec<String> {
    payloads(polled).into_iter().map(str::to_owned).collect()
}

/// --count keeps the earliest messages of the merged list (the latest with --last), and
/// --auto-commit commits only what was shown, partition by partition.
fn poll_counts_apply_to_the_merged_list(galgo: &Galgo, sent: &[String]) {
    let first = galgo.json(&["message", "poll", "s", "t", "--first", "-n", "2"]);
    assert_eq!(payloads_of(&first), sent[..2]);
    let last = galgo.json(&["message", "poll", "s", "t", "--last", "-n", "2"]);
    assert_eq!(payloads_of(&last), sent[4..]);
    let next = [
        "message",
        "poll",
        "s",
        "t",
        "--next",
        "--consumer",
        "5",
        "--auto-commit",
        "-n",
        "4",
    ];
    assert_eq!(payloads_of(&galgo.json(&next)), sent[..4]);
    assert_eq!(payloads_of(&galgo.json(&next)), sent[4..]);
    assert_eq!(payloads_of(&galgo.json(&next)), Vec::<String>::new());
}

#[test]
fn poll_follow_without_a_partition_follows_every_partition() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t", "--partitions", "3"]);
    galgo.ok(&["message", "send", "s", "t", "--partition", "1", "old"]);
    let mut child = galgo
        .root()
        .args([
            "-o",
            "json",
            "message",
            "poll",
            "s",
            "t",
            "--follow",
            "--interval",
            "20ms",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let labelled = |line: String| -> (u64, String) {
        let message: Value = serde_json::from_str(&line).unwrap();
        let partition = message["partition_id"].as_u64().unwrap();
        (partition, message["payload"].as_str().unwrap().to_owned())
    };
    let first = lines
        .recv_timeout(FOLLOW_TIMEOUT)
        .expect("the stored message");
    assert_eq!(labelled(first), (1, "old".to_owned()));
    galgo.ok(&["message", "send", "s", "t", "--partition", "0", "new-0"]);
    galgo.ok(&["message", "send", "s", "t", "--partition", "2", "new-2"]);
    let mut followed: Vec<(u64, String)> = (0..2)
        .map(|_| {
            labelled(
                lines
                    .recv_timeout(FOLLOW_TIMEOUT)
                    .expect("a followed message"),
            )
        })
        .collect();
    // Two rounds of polls may see them in either order; each is shown once, with its partition.
    followed.sort();
    assert_eq!(followed, [(0, "new-0".to_owned()), (2, "new-2".to_owned())]);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The lines `stdout` prints, as they come.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

#[test]
fn consumer_offsets_and_groups() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t", "--partitions", "2"]);
    galgo.ok(&[
        "message",
        "send",
        "s",
        "t",
        "--partition",
        "1",
        "a",
        "b",
        "c",
    ]);
    consumer_offsets(&galgo);
    consumer_groups(&galgo);
}

/// Stores, reads and deletes the offset of consumer 1 on partition 1 (which holds a, b, c).
fn consumer_offsets(galgo: &Galgo) {
    let stderr = galgo.fails(&["offset", "get", "s", "t", "--partition", "1"], 3);
    assert!(
        stderr.contains("no stored offset for consumer 1"),
        "{stderr}"
    );
    galgo.ok(&["offset", "set", "s", "t", "1", "--partition", "1"]);
    let stored = galgo.json(&["offset", "get", "s", "t", "--partition", "1"]);
    assert_eq!(
        (
            stored["stored_offset"].as_u64(),
            stored["current_offset"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert!(
        galgo
            .ok(&["offset", "get", "s", "t", "--partition", "1"])
            .contains("lag             1")
    );
    galgo.ok(&["offset", "delete", "s", "t", "--partition", "1"]);
    galgo.fails(&["offset", "get", "s", "t", "--partition", "1"], 3);
    galgo.fails(
        &[
            "offset",
            "set",
            "s",
            "t",
            "1",
            "--consumer",
            "1",
            "--group",
            "g",
        ],
        2,
    );
}

/// Creates the group billing on s/t (two partitions), polls through it and deletes it.
fn consumer_groups(galgo: &Galgo) {
    let group = galgo.json(&["group", "create", "s", "t", "billing"]);
    assert_eq!(group["name"], "billing");
    galgo.fails(&["group", "create", "s", "t", "billing"], 3);
    let groups = galgo.json(&["group", "list", "s", "t"]);
    assert_eq!(groups[0]["partitions_count"], 2, "{groups}");
    let details = galgo.json(&["group", "get", "s", "t", "billing"]);
    assert_eq!(details["members_count"], 0);
    let lag = || galgo.json(&["group", "list", "s", "t"])[0]["lag"].as_u64();
    // a, b, c in partition 1 and nothing committed; partition 0 is empty.
    assert_eq!(lag(), Some(3));
    // A CLI poll joins the group for its one connection, reads and commits; with messages in
    // both partitions, whichever partition the group hands out has some.
    galgo.ok(&["message", "send", "s", "t", "--partition", "0", "x", "y"]);
    assert_eq!(lag(), Some(5));
    let table = galgo.ok(&["group", "list", "s", "t"]);
    assert!(table.contains("lag") && table.contains(" 5 "), "{table}");
    let polled = galgo.json(&[
        "message",
        "poll",
        "s",
        "t",
        "--group",
        "billing",
        "--next",
        "--auto-commit",
    ]);
    let partition = polled["partition_id"].as_u64().unwrap().to_string();
    let last = polled["messages"].as_array().unwrap().last().unwrap()["offset"].clone();
    let offsets = galgo.json(&[
        "offset",
        "get",
        "s",
        "t",
        "--group",
        "billing",
        "--partition",
        &partition,
    ]);
    assert_eq!(offsets["stored_offset"], last, "{offsets}");
    let committed = polled["messages"].as_array().unwrap().len() as u64;
    assert_eq!(lag(), Some(5 - committed), "{polled}");
    galgo.ok(&["group", "delete", "s", "t", "billing"]);
    galgo.fails(&["group", "get", "s", "t", "billing"], 3);
}

#[test]
fn users_permissions_and_tokens() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    users_and_permissions(&galgo);
    tokens(&galgo);
}

/// Creates alice, checks what her permissions allow as they change, then renames,
/// deactivates and deletes her.
fn users_and_permissions(galgo: &Galgo) {
    let alice = galgo.json(&[
        "user",
        "create",
        "alice",
        "--user-password",
        "secret1",
        "--global",
        "read-streams",
        "--stream",
        "0:poll-messages",
        "--topic",
        "0/0:send-messages",
    ]);
    assert_eq!(
        alice["permissions"]["global"],
        serde_json::json!(["read-streams"])
    );
    assert_eq!(
        alice["permissions"]["streams"]["0"]["topics"]["0"],
        serde_json::json!(["send-messages"])
    );
    galgo.fails(
        &["user", "create", "alice", "--user-password", "secret1"],
        3,
    );
    galgo.fails(
        &[
            "user",
            "create",
            "bob",
            "--user-password",
            "x1",
            "--global",
            "fly",
        ],
        2,
    );
    let as_alice = |args: &[&str]| {
        let mut command = galgo.anonymous();
        command.args(["-u", "alice", "-p", "secret1"]).args(args);
        command
    };
    ok(&mut as_alice(&["stream", "list"]), None);
    let stderr = fails(&mut as_alice(&["stream", "create", "mine"]), 3);
    assert!(stderr.contains("Unauthorized (code 41)"), "{stderr}");
    galgo.ok(&["user", "permissions", "alice", "--global", "manage-streams"]);
    ok(&mut as_alice(&["stream", "create", "mine"]), None);
    galgo.ok(&[
        "user",
        "password",
        "alice",
        "--current",
        "secret1",
        "--new",
        "secret2",
    ]);
    let stderr = fails(&mut as_alice(&["ping"]), 3);
    assert!(stderr.contains("InvalidCredentials (code 42)"), "{stderr}");
    galgo.ok(&[
        "user", "update", "alice", "--name", "alicia", "--status", "inactive",
    ]);
    let user = galgo.json(&["user", "get", "alicia"]);
    assert_eq!(
        (user["username"].as_str(), user["status"].as_str()),
        (Some("alicia"), Some("inactive"))
    );
    assert_eq!(galgo.json(&["user", "list"]).as_array().unwrap().len(), 2);
    galgo.fails(&["user", "update", "alicia"], 2);
    galgo.ok(&["user", "delete", "alicia"]);
    galgo.fails(&["user", "get", "alicia"], 3);
}

/// A personal access token logs in by flag and in a connection URL until it is deleted.
fn tokens(galgo: &Galgo) {
    let token = galgo.json(&["token", "create", "ci-token", "--expiry", "1h"]);
    let token = token["token"].as_str().unwrap().to_owned();
    let tokens = galgo.json(&["token", "list"]);
    assert_eq!(tokens[0]["name"], "ci-token");
    assert!(tokens[0]["expiry_at_us"].as_u64().unwrap() > 0);
    ok(galgo.anonymous().args(["--token", &token, "ping"]), None);
    let url = format!("iggy://{token}@{}", galgo.server.addr);
    ok(
        galgo.anonymous().args(["--url", &url, "stream", "list"]),
        None,
    );
    galgo.ok(&["token", "delete", "ci-token"]);
    let stderr = fails(galgo.anonymous().args(["--token", &token, "ping"]), 3);
    assert!(stderr.contains("server error: "), "{stderr}");
    galgo.fails(&["token", "delete", "ci-token"], 3);
}

#[test]
fn login_saves_a_token_session_and_logout_revokes_it() {
    let galgo = Galgo::start();
    fails(galgo.anonymous().arg("stream").arg("list"), 2);
    let login = ok(
        galgo
            .anonymous()
            .args(["login", "-u", "iggy", "--expiry", "1h"]),
        Some(b"iggy\n"),
    );
    assert!(login.starts_with("logged in as iggy"), "{login}");
    let file = galgo.config.path().join("session.json");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        !saved.contains("\"iggy\"\n") && saved.contains("galgo-cli-"),
        "{saved}"
    );
    let session: Value = serde_json::from_str(&saved).unwrap();
    assert_ne!(session["token"], "iggy");

    // No credentials given: the saved session logs in, even with another address flag absent.
    let mut anonymous = galgo.anonymous();
    anonymous.env_remove("GALGO_ADDRESS");
    ok(anonymous.args(["stream", "create", "via-session"]), None);
    let tokens = galgo.json(&["token", "list"]);
    assert!(
        tokens[0]["name"]
            .as_str()
            .unwrap()
            .starts_with("galgo-cli-")
    );

    let logout = ok(galgo.anonymous().arg("logout"), None);
    assert!(logout.starts_with("logged out iggy"), "{logout}");
    assert!(!file.exists());
    assert_eq!(galgo.json(&["token", "list"]), Value::Array(vec![]));
    fails(galgo.anonymous().args(["stream", "list"]), 2);
    assert!(ok(galgo.anonymous().arg("logout"), None).contains("not logged in"));
    // A wrong password saves nothing.
    let output = run(
        galgo
            .anonymous()
            .args(["login", "-u", "iggy", "-p", "nope"]),
        None,
    );
    assert_eq!(output.status.code(), Some(3));
    assert!(!file.exists());
    fails(galgo.anonymous().args(["login", "--token", "t"]), 2);
}

#[test]
fn usage_and_connection_failures_have_their_own_exit_codes() {
    let galgo = Galgo::start();
    fails(galgo.root().arg("bogus"), 2);
    fails(galgo.root().args(["stream", "create"]), 2);
    fails(galgo.anonymous().args(["--url", "http://x", "ping"]), 2);
    fails(galgo.anonymous().args(["-p", "x", "ping"]), 2);
    let stderr = fails(galgo.root().args(["--address", "127.0.0.1:1", "ping"]), 4);
    assert!(stderr.contains("connection failed"), "{stderr}");
    fails(galgo.root().args(["--transport", "quic", "ping"]), 4);
    let stderr = fails(
        galgo
            .anonymous()
            .args(["-u", "iggy", "-p", "wrong", "ping"]),
        3,
    );
    assert!(stderr.contains("InvalidCredentials (code 42)"), "{stderr}");
}

#[test]
fn websocket_and_tls_connections() {
    // TLS on the TCP port with a certificate the server makes for itself; plain WebSocket.
    let config = tempfile::tempdir().expect("config dir");
    let cert_file = config.path().join("cert.pem");
    let key_file = config.path().join("key.pem");
    let flags: Vec<String> = [
        "tcp.tls.enabled=true".to_owned(),
        "tcp.tls.self_signed=true".to_owned(),
        format!("tcp.tls.cert_file={:?}", cert_file.display().to_string()),
        format!("tcp.tls.key_file={:?}", key_file.display().to_string()),
    ]
    .into_iter()
    .flat_map(|flag| ["--set".to_owned(), flag])
    .collect();
    let galgo = Galgo {
        server: support::galgo_server::GalgoServer::start_with(&flags),
        config,
    };
    let websocket = galgo.server.websocket_addr.to_string();
    let over_ws = |args: &[&str]| {
        let mut command = galgo.root();
        command.args([
            "--transport",
            "ws",
            "--address",
            &websocket,
            "--output",
            "json",
        ]);
        let stdout = ok(command.args(args), None);
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
    };
    assert_eq!(over_ws(&["me"])["transport"], "ws");
    over_ws(&["stream", "create", "s"]);
    over_ws(&["topic", "create", "s", "t"]);
    over_ws(&["message", "send", "s", "t", "over-ws", "--partition", "0"]);

    let url = format!(
        "iggy+tcp://iggy:iggy@{}?tls=true&tls_domain=localhost&tls_ca_file={}",
        galgo.server.addr,
        cert_file.display()
    );
    let mut command = galgo.anonymous();
    command.args([
        "--url", &url, "--output", "json", "message", "poll", "s", "t",
    ]);
    let polled: Value =
        serde_json::from_str(&ok(command.args(["--partition", "0"]), None)).expect("json");
    assert_eq!(payloads(&polled), ["over-ws"]);
    // Without the CA the self-signed certificate is refused: a connection failure.
    let untrusted = format!("iggy+tcp://iggy:iggy@{}?tls=true", galgo.server.addr);
    let stderr = fails(galgo.anonymous().args(["--url", &untrusted, "ping"]), 4);
    assert!(stderr.contains("certificate"), "{stderr}");
}

/// Every subcommand, so that each one's help is checked for examples.
const SUBCOMMANDS: &[&[&str]] = &[
    &["ping"],
    &["me"],
    &["stats"],
    &["cluster"],
    &["client", "list"],
    &["client", "get"],
    &["stream", "list"],
    &["stream", "get"],
    &["stream", "create"],
    &["stream", "update"],
    &["stream", "delete"],
    &["stream", "purge"],
    &["topic", "list"],
    &["topic", "get"],
    &["topic", "create"],
    &["topic", "update"],
    &["topic", "delete"],
    &["topic", "purge"],
    &["partition", "create"],
    &["partition", "delete"],
    &["segment", "delete"],
    &["message", "send"],
    &["message", "poll"],
    &["offset", "get"],
    &["offset", "set"],
    &["offset", "delete"],
    &["group", "list"],
    &["group", "get"],
    &["group", "create"],
    &["group", "delete"],
    &["user", "list"],
    &["user", "get"],
    &["user", "create"],
    &["user", "update"],
    &["user", "permissions"],
    &["user", "password"],
    &["user", "delete"],
    &["token", "list"],
    &["token", "create"],
    &["token", "delete"],
    &["login"],
    &["logout"],
    &["completions"],
    &["top"],
    &[],
];

#[test]
fn every_subcommand_has_help_with_examples_and_completions_exist() {
    let galgo_binary = env!("CARGO_BIN_EXE_galgo");
    for path in SUBCOMMANDS {
        let output = std::process::Command::new(galgo_binary)
            .args(*path)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{path:?}");
        assert!(
            help.contains("Examples:\n  galgo"),
            "{path:?} help has no examples:\n{help}"
        );
    }
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = std::process::Command::new(galgo_binary)
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && script.contains("galgo"),
            "{shell}"
        );
        assert!(script.contains("stream"), "{shell} completes subcommands");
    }
}

/// Single consumers' lag comes from the server's /metrics (the protocol cannot list
/// consumers): consumer 7 stored offset 0 of a partition holding 4 messages, so 3 are left.
#[test]
fn top_shows_single_consumers_lag_from_metrics() {
    let galgo = Galgo::start();
    galgo.ok(&["stream", "create", "s"]);
    galgo.ok(&["topic", "create", "s", "t", "--partitions", "1"]);
    galgo.ok(&["message", "send", "s", "t", "a", "b", "c", "d"]);
    galgo.ok(&[
        "offset",
        "set",
        "s",
        "t",
        "0",
        "--partition",
        "0",
        "--consumer",
        "7",
    ]);
    let http = galgo.server.http_addr.expect("the server's HTTP endpoint");
    let url = format!("http://{http}/metrics");
    let top = galgo.ok(&["top", "--iterations", "1", "--metrics-url", &url]);
    let row: Vec<&str> = top
        .lines()
        .skip_while(|line| !line.starts_with("STREAM") || !line.contains("CONSUMER"))
        .nth(1)
        .unwrap_or_else(|| panic!("a consumer row in\n{top}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["s", "t", "7", "3"], "{top}");
    let without = galgo.ok(&["top", "--iterations", "1"]);
    assert!(!without.contains("CONSUMER"), "{without}");
    let unreachable = galgo.ok(&[
        "top",
        "--iterations",
        "1",
        "--metrics-url",
        "http://127.0.0.1:1/metrics",
    ]);
    assert!(
        unreachable.contains("consumers: http://127.0.0.1:1/metrics:"),
        "{unreachable}"
    );
}
