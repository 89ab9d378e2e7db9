//! galgo-bench runs tiny workloads against a real galgo-server and its JSON report holds the
//! expected counts; its HTML report is self-contained.

#[path = "../../crates/client/tests/support/galgo_server.rs"]
#[allow(dead_code)]
mod galgo_server;

use std::path::Path;
use std::process::Command;

use galgo_server::GalgoServer;
use serde_json::Value;

/// Runs the bench binary with `args` plus the server and report paths; returns the JSON report.
fn bench(server: &GalgoServer, dir: &Path, args: &[&str]) -> Value {
    bench_at(&server.connection_string(), dir, args)
}

/// Runs the bench binary against the server `connection_string` names.
fn bench_at(connection_string: &str, dir: &Path, args: &[&str]) -> Value {
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let output = Command::new(env!("CARGO_BIN_EXE_galgo-bench"))
        .args(["--server", connection_string])
        .args(["--baseline-secs", "0.2", "--idle-timeout-secs", "20"])
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .args(args)
        .output()
        .expect("run galgo-bench");
    assert!(
        output.status.success(),
        "galgo-bench failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(&html).expect("html report");
    assert!(page.contains("<svg") && page.contains("Latency by percentile"));
    for fetches in ["<script", "src=", "<link", "@import", "url("] {
        assert!(
            !page.contains(fetches),
            "the HTML report must not fetch anything: {fetches}"
        );
    }
    serde_json::from_str(&std::fs::read_to_string(&json).expect("json report")).expect("json")
}

fn count(report: &Value, group: &str, field: &str) -> u64 {
    report[group][field]
        .as_u64()
        .unwrap_or_else(|| panic!("{group}.{field} in {report}"))
}

#[test]
fn producer_and_consumer_counts_are_exact() {
    let server = GalgoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let report = bench(
        &server,
        dir.path(),
        &[
            "--mode",
            "pinned-producer-and-consumer",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--partitions",
            "2",
            "--message-size",
            "64",
            "--messages-per-batch",
            "10",
            "--batches",
            "20",
            "--durability",
            "test",
        ],
    );
    // 2 producers × 20 batches × 10 messages; each pinned consumer reads its whole stream.
    assert_eq!(count(&report, "producers", "messages"), 400);
    assert_eq!(count(&report, "producers", "requests"), 40);
    assert_eq!(count(&report, "producers", "bytes"), 400 * (64 + 64));
    assert_eq!(count(&report, "consumers", "messages"), 400);
    assert_eq!(report["producers"]["latency"]["samples"].as_u64(), Some(40));
    assert!(report["producers"]["megabytes_per_sec"].as_f64().unwrap() > 0.0);
    assert_eq!(report["server"]["durability"], "test");
    assert!(report["errors"].as_array().unwrap().is_empty());
    let ratios = report["ratios"].as_array().unwrap();
    assert!(ratios.iter().any(|ratio| ratio["name"] == "producers MB/s"));
    let series: u64 = report["producers"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|second| second["messages"].as_u64().unwrap())
        .sum();
    assert_eq!(series, 400, "the per-second series adds up to the total");
}

#[test]
fn in_the_0_9_generation() {
    let server = GalgoServer::start();
    let dir = tempfile::tempdir().unwrap();
    for mode in ["pinned-producer-and-consumer", "balanced-consumer-group"] {
        let report = bench(
            &server,
            dir.path(),
            &[
                "--protocol",
                "0.9",
                "--mode",
                mode,
                "--producers",
                "2",
                "--consumers",
                "2",
                "--partitions",
                "2",
                "--message-size",
                "100",
                "--messages-per-batch",
                "10",
                "--batches",
                "10",
            ],
        );
        assert_eq!(report["server"]["protocol"], "0.9", "{mode}");
        assert!(
            report["errors"].as_array().unwrap().is_empty(),
            "{mode}: {report}"
        );
        // 2 producers (or, for the group, a fill for 2 members) × 10 batches × 10 messages,
        // each read exactly once.
        assert_eq!(count(&report, "consumers", "messages"), 200, "{mode}");
        if mode != "balanced-consumer-group" {
            assert_eq!(count(&report, "producers", "messages"), 200, "{mode}");
        }
    }
}

#[test]
fn over_websocket() {
    let server = GalgoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let connection_string = format!("iggy+ws://iggy:iggy@{}", server.websocket_addr);
    let report = bench_at(
        &connection_string,
        dir.path(),
        &[
            "--mode",
            "pinned-producer-and-consumer",
            "--producers",
            "1",
            "--consumers",
            "1",
            "--message-size",
            "1000",
            "--messages-per-batch",
            "10",
            "--batches",
            "10",
        ],
    );
    assert_eq!(report["server"]["transport"], "ws");
    assert_eq!(count(&report, "producers", "messages"), 100);
    assert_eq!(count(&report, "consumers", "messages"), 100);
    assert!(report["errors"].as_array().unwrap().is_empty());
}

#[test]
fn consumer_only_and_fixed_rate_end_to_end() {
    let server = GalgoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let report = bench(
        &server,
        dir.path(),
        &[
            "--mode",
            "pinned-consumer",
            "--consumers",
            "1",
            "--partitions",
            "3",
            "--message-size",
            "10",
            "--messages-per-batch",
            "7",
            "--batches",
            "5",
        ],
    );
    assert_eq!(count(&report, "consumers", "messages"), 35);
    assert!(report["producers"].is_null());

    let report = bench(
        &server,
        dir.path(),
        &[
            "--mode",
            "end-to-end",
            "--producers",
            "1",
            "--consumers",
            "1",
            "--message-size",
            "10",
            "--messages-per-batch",
            "5",
            "--batches",
            "10",
            "--rate-msgs-per-sec",
            "500",
        ],
    );
    assert_eq!(count(&report, "producers", "messages"), 50);
    assert_eq!(count(&report, "consumers", "messages"), 50);
    assert_eq!(
        report["end_to_end"]["latency"]["samples"].as_u64(),
        Some(50)
    );
    // 10 batches of 5 at 500 msg/s are due over 90 ms: the run cannot be shorter.
    assert!(report["producers"]["elapsed_secs"].as_f64().unwrap() >= 0.09);
}
