//! The operators' HTTP endpoint: /metrics after known traffic, parsed with an independent
//! parser of the Prometheus text format (the `prometheus-parse` crate) and checked for exact
//! values (messages per partition, a group's and a consumer's lag after known commits);
//! /health while starting, serving, stopping and after a graceful stop; bad input (unknown path 404, malformed 400,
//! other methods 405, a request that never ends cut); a taken HTTP port fails the start
//! naming its key; and /metrics names no user.

mod support;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use iggy::prelude::*;
use support::TestServer;
use support::raw::{self, RawConn, SendMessages, code};
use support::sdk::{self, id, name};

/// How long one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends `request` as it is and returns the whole response (the server closes after it).
fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the HTTP endpoint");
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream.write_all(request).expect("send the request");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8(response).expect("a text response")
}

fn get(address: SocketAddr, path: &str) -> String {
    exchange(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: galgo\r\n\r\n").as_bytes(),
    )
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or_default()
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn http_address(server: &TestServer) -> SocketAddr {
    server
        .http_addr
        .expect("the ready line names the HTTP endpoint")
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape.samples.iter().find(|sample| {
        sample.metric == name
            && labels
                .iter()
                .all(|(key, value)| sample.labels.get(key) == Some(*value))
    });
    match found.map(|sample| &sample.value) {
        Some(prometheus_parse::Value::Gauge(value))
        | Some(prometheus_parse::Value::Counter(value))
        | Some(prometheus_parse::Value::Untyped(value)) => *value,
        other => panic!("no sample {name} {labels:?}: {other:?}"),
    }
}

/// The sum of every sample `name` whose labels include every pair of `labels` (a figure
/// counted per shard).
fn total(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|sample| {
            sample.metric == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| match &sample.value {
            prometheus_parse::Value::Gauge(value)
            | prometheus_parse::Value::Counter(value)
            | prometheus_parse::Value::Untyped(value) => *value,
            other => panic!("{name}: not a plain value: {other:?}"),
        })
        .sum()
}

fn scrape(address: SocketAddr) -> prometheus_parse::Scrape {
    let response = get(address, "/metrics");
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK", "{response}");
    let lines = body(&response).lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("parse the exposition")
}

/// Known traffic: stream "metrics", topic "t" of 2 partitions; 5 messages to partition 0 and
/// 3 to partition 1; group "g" committed offset 1 of partition 0 (3 left); consumer 7
/// committed offset 0 of partition 1 (2 left).
async fn known_traffic(client: &IggyClient) {
    let (stream_id, topic_id) = sdk::create_stream_and_topic(client, "metrics", "t", 2).await;
    let (stream, topic) = (id(stream_id), id(topic_id));
    for (partition, count) in [(0, 5), (1, 3)] {
        let mut messages = sdk::messages("m", 0..count);
        let to = Partitioning::partition_id(partition);
        let sent = client.send_messages(&stream, &topic, &to, &mut messages);
        sent.await.expect("send");
    }
    client
        .create_consumer_group(&stream, &topic, "g")
        .await
        .expect("create group");
    client
        .join_consumer_group(&stream, &topic, &name("g"))
        .await
        .expect("join");
    let group = Consumer::group(name("g"));
    let store = client.store_consumer_offset(&group, &stream, &topic, Some(0), 1);
    store.await.expect("store the group offset");
    let consumer = Consumer::new(id(7));
    let store = client.store_consumer_offset(&consumer, &stream, &topic, Some(1), 0);
    store.await.expect("store the consumer offset");
    let polled = sdk::poll_offset(client, stream_id, topic_id, 1, 0, 10).await;
    assert_eq!(polled.messages.len(), 3, "partition 1 holds 3 messages");
    let mut messages = sdk::messages("x", 0..1);
    let to = Partitioning::partition_id(0);
    let missing_stream = name("missing");
    let missing = client.send_messages(&missing_stream, &topic, &to, &mut messages);
    assert!(
        missing.await.is_err(),
        "a send to a missing stream fails (1009)"
    );
}

#[tokio::test]
async fn metrics_after_known_traffic_hold_exact_values() {
    let server = TestServer::start(&[]);
    let client = sdk::client(server.addr).await;
    known_traffic(&client).await;
    let scrape = scrape(http_address(&server));
    let p0 = [("stream", "metrics"), ("topic", "t"), ("partition", "0")];
    let p1 = [("stream", "metrics"), ("topic", "t"), ("partition", "1")];
    assert_partitions(&scrape, &p0, &p1);
    assert_traffic(&scrape, &p0, &p1);
    assert_requests(&scrape);
    let text = body(&get(http_address(&server), "/metrics")).to_owned();
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    assert!(!text.contains("iggy"), "no user name (root is iggy)");
    dashboard_uses_only_served_metrics(&text);
}

/// configs/grafana-dashboard.json names only metrics /metrics serves.
fn dashboard_uses_only_served_metrics(exposition: &str) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/grafana-dashboard.json"
    );
    let dashboard = std::fs::read_to_string(path).expect("read the dashboard");
    let names: std::collections::BTreeSet<&str> = dashboard
        .match_indices("galgo_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(names.len() >= 8, "the dashboard's metrics: {names:?}");
    for name in names {
        let served = exposition
            .lines()
            .any(|line| line.starts_with(name) && !line.starts_with('#'));
        assert!(
            served,
            "the dashboard uses {name}, which /metrics does not serve"
        );
    }
}

type Labels<'a> = [(&'a str, &'a str)];

/// Messages, offsets, segments, lags and connections of the known traffic.
fn assert_partitions(scrape: &prometheus_parse::Scrape, p0: &Labels, p1: &Labels) {
    assert_eq!(sample(scrape, "galgo_partition_messages", p0), 5.0);
    assert_eq!(sample(scrape, "galgo_partition_messages", p1), 3.0);
    assert_eq!(sample(scrape, "galgo_partition_log_end_offset", p0), 5.0);
    assert_eq!(sample(scrape, "galgo_partition_segments", p1), 1.0);
    let group = [("partition", "0"), ("group", "g")];
    assert_eq!(
        sample(scrape, "galgo_consumer_group_lag_messages", &group),
        3.0
    );
    let consumer = [("partition", "1"), ("consumer", "7")];
    assert_eq!(
        sample(scrape, "galgo_consumer_lag_messages", &consumer),
        2.0
    );
    let tcp = [("transport", "tcp")];
    assert_eq!(
        total(scrape, "galgo_connections", &tcp),
        1.0,
        "the one SDK connection"
    );
    // The one poll read the newest messages: from memory, never from a file.
    let reads = |source| total(scrape, "galgo_poll_reads_total", &[("source", source)]);
    assert_eq!((reads("memory"), reads("disk")), (1.0, 0.0));
    assert!(total(scrape, "galgo_tail_cache_bytes_max", &[]) > 0.0);
}

/// Messages in and out of each partition of the known traffic.
fn assert_traffic(scrape: &prometheus_parse::Scrape, p0: &Labels, p1: &Labels) {
    let figure = |name: &str, partition: &Labels| total(scrape, name, partition);
    assert_eq!(figure("galgo_partition_messages_in_total", p0), 5.0);
    assert_eq!(figure("galgo_partition_messages_in_total", p1), 3.0);
    assert_eq!(figure("galgo_partition_messages_out_total", p1), 3.0);
    assert_eq!(figure("galgo_partition_messages_out_total", p0), 0.0);
    assert!(figure("galgo_partition_bytes_out_total", p1) > 0.0);
    assert!(figure("galgo_partition_bytes_in_total", p0) > 0.0);
}

/// Requests, error answers and a latency histogram of the known traffic.
fn assert_requests(scrape: &prometheus_parse::Scrape) {
    let sends = [("command", "SendMessages")];
    let requests = total(scrape, "galgo_requests_total", &sends);
    assert_eq!(requests, 3.0, "two sends, one refused");
    let missing = [("code", "1009"), ("error", "StreamIdNotFound")];
    assert_eq!(total(scrape, "galgo_error_responses_total", &missing), 1.0);
    let histogram = scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == "galgo_request_duration_seconds"
                && sample.labels.get("command") == Some("StoreConsumerOffset")
        })
        .map(|sample| sample.value.clone());
    let Some(prometheus_parse::Value::Histogram(buckets)) = histogram else {
        panic!("a latency histogram of StoreConsumerOffset: {histogram:?}");
    };
    let observed = buckets.last().expect("an +Inf bucket").count;
    assert_eq!(observed, 2.0, "two offsets stored, on whichever shards");
}

#[test]
fn bad_requests_get_their_status_and_the_endpoint_goes_on() {
    let server = TestServer::start(&[]);
    let address = http_address(&server);
    assert_eq!(
        status_line(&get(address, "/nope")),
        "HTTP/1.1 404 Not Found"
    );
    let malformed = exchange(address, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    assert_eq!(status_line(&malformed), "HTTP/1.1 400 Bad Request");
    let post = exchange(address, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_line(&post), "HTTP/1.1 405 Method Not Allowed");
    let head = exchange(address, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_line(&head), "HTTP/1.1 200 OK");
    assert_eq!(body(&head), "", "HEAD has no body");
    assert_eq!(status_line(&get(address, "/health")), "HTTP/1.1 200 OK");
}

#[test]
fn a_request_that_never_ends_is_cut_by_the_timeout() {
    let server = TestServer::start(&["--set", "http.request_timeout_ms=300"]);
    let mut stream = TcpStream::connect(http_address(&server)).expect("connect");
    stream
        .set_read_timeout(Some(HTTP_TIMEOUT))
        .expect("timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .expect("send a part");
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    assert!(
        matches!(read, Ok(0)),
        "closed with no answer: {read:?} {rest:?}"
    );
    assert!(
        started.elapsed() < HTTP_TIMEOUT,
        "closed by the server's timeout"
    );
    assert_eq!(
        status_line(&get(http_address(&server), "/health")),
        "HTTP/1.1 200 OK"
    );
}

#[test]
fn health_is_200_while_serving_and_gone_after_a_graceful_stop() {
    let mut server = TestServer::start(&[]);
    let address = http_address(&server);
    let response = get(address, "/health");
    assert_eq!(status_line(&response), "HTTP/1.1 200 OK");
    assert_eq!(body(&response), "serving\n");
    // 503 while starting and stopping is the endpoint's own unit test (http.rs): here the
    // windows are too short to hit without timing. After the stop nothing answers.
    server.stop();
    assert!(
        TcpStream::connect(address).is_err(),
        "the endpoint ended with the server"
    );
}

/// A free port on loopback, for a server whose HTTP address a test must know before the
/// ready line (the kernel may hand it out again, rarely: the server then fails to start and
/// the test says so).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// From the moment the endpoint answers until the server is ready, /health says 503
/// starting, then 200, and never goes back: checked on every answer of a first start (whose
/// root password hash keeps it starting for tens of milliseconds).
#[test]
fn health_is_503_starting_until_every_shard_serves() {
    let port = free_port();
    let http = format!("http.address=\"127.0.0.1:{port}\"");
    let mut server = TestServer::launch(&["--set", &http]);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let mut answers = Vec::new();
    while answers.last().map(String::as_str) != Some("HTTP/1.1 200 OK") {
        assert!(
            Instant::now() < deadline,
            "no 200 from /health: {answers:?}"
        );
        let Ok(mut stream) = TcpStream::connect(address) else {
            continue;
        };
        stream
            .write_all(b"GET /health HTTP/1.1\r\n\r\n")
            .expect("send");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = status_line(&response).to_owned();
        if status != "HTTP/1.1 200 OK" {
            assert_eq!(
                (status.as_str(), body(&response)),
                ("HTTP/1.1 503 Service Unavailable", "starting\n")
            );
        }
        answers.push(status);
    }
    server.wait_ready();
    assert_eq!(status_line(&get(address, "/health")), "HTTP/1.1 200 OK");
    let starting = answers.len() - 1;
    eprintln!("/health answered 503 starting {starting} times before 200");
}

/// A client that asks for ~1 MB answers and never reads them: its connection stays stuck in
/// a write until `limits.write_timeout_ms`, which holds a graceful stop's drain that long.
fn hold_a_connection_in_a_write(server: &TestServer) -> RawConn {
    let mut admin = RawConn::connect_logged_in(server.addr);
    raw::create_stream(&mut admin, "drain");
    raw::create_topic(&mut admin, 0, "t", 1);
    let payload = vec![0x42u8; 100_000];
    let send = SendMessages::new(0, 0, 0, &[payload.as_slice(); 10]).encode();
    admin.request(code::SEND_MESSAGES, &send).ok();
    let mut greedy = RawConn::connect_logged_in(server.addr);
    let poll = raw::frame(code::POLL_MESSAGES, &raw::poll_payload(0, 0, 0, 0, 10));
    // More answers than the socket buffers hold; the sends stop once the server, stuck
    // writing, stops reading.
    for _ in 0..64 {
        if greedy.try_send_bytes(&poll).is_err() {
            break;
        }
    }
    greedy
}

#[test]
fn health_is_503_while_a_graceful_stop_drains() {
    let mut server = TestServer::start(&["--set", "limits.write_timeout_ms=8000"]);
    let address = http_address(&server);
    let _greedy = hold_a_connection_in_a_write(&server);
    assert_eq!(body(&get(address, "/health")), "serving\n");
    server.signal_terminate();
    // The drain waits for the stuck connection (5 s at most), so the endpoint answers 503
    // for that long before the process ends.
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let stopping = loop {
        let response = get(address, "/health");
        if status_line(&response) != "HTTP/1.1 200 OK" {
            break response;
        }
        assert!(Instant::now() < deadline, "/health never left 200");
    };
    assert_eq!(status_line(&stopping), "HTTP/1.1 503 Service Unavailable");
    assert_eq!(body(&stopping), "stopping\n");
    server.wait_stopped();
}

#[test]
fn a_taken_http_port_fails_the_start_naming_the_key() {
    let first = TestServer::start(&[]);
    let taken = format!("http.address=\"{}\"", http_address(&first));
    let mut second = TestServer::launch(&["--set", &taken]);
    let status = second.wait_exit();
    assert_eq!(status.code(), Some(1));
    let logs = second.logs();
    assert!(
        logs.contains(&format!(
            "cannot listen on {} ([http] address)",
            http_address(&first)
        )),
        "{logs}"
    );
}
