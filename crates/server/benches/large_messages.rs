//! Round trip of one large message (send it, then poll it back) over each transport: plain TCP
//! (the reference), TCP+TLS, WebSocket and WSS, against a real `galgo-server` built with the
//! bench profile. Not a test: it prints figures for docs/benchmarks.md.
//!
//! ```sh
//! CARGO_TARGET_DIR=... cargo bench -p galgo-server --bench large_messages
//! GALGO_BENCH_ROUNDS=20 GALGO_BENCH_MESSAGE_BYTES=16000000 cargo bench ...   # optional
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use iggy::prelude::*;
use support::{
    TestServer,
    certs::TestCertificates,
    sdk::{self, Via, id},
};

const ROUNDS_DEFAULT: usize = 10;
const MESSAGE_BYTES_DEFAULT: usize = 16_000_000;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// One send of a `payload`-sized message plus the poll that reads it back.
async fn round_trip(client: &IggyClient, stream: u32, topic: u32, offset: u64, payload: &Bytes) {
    client
        .send_messages(
            &id(stream),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut [sdk::message(payload.clone())],
        )
        .await
        .expect("send");
    let polled = sdk::poll_offset(client, stream, topic, 0, offset, 1).await;
    assert_eq!(polled.messages[0].payload.len(), payload.len());
}

/// Round-trip times over `via`, after one warm-up round.
async fn measure(
    name: &str,
    addr: std::net::SocketAddr,
    via: &Via,
    payload: &Bytes,
    rounds: usize,
) -> Vec<Duration> {
    let client = sdk::client_via(addr, via).await;
    let (stream, topic) = sdk::create_stream_and_topic(&client, name, "t", 1).await;
    round_trip(&client, stream, topic, 0, payload).await;
    let mut times = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let started = Instant::now();
        round_trip(&client, stream, topic, round as u64, payload).await;
        times.push(started.elapsed());
    }
    times.sort();
    times
}

fn main() {
    let rounds = setting("GALGO_BENCH_ROUNDS", ROUNDS_DEFAULT);
    let message_bytes = setting("GALGO_BENCH_MESSAGE_BYTES", MESSAGE_BYTES_DEFAULT);
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = TestCertificates::generate(dir.path());
    let plain = TestServer::start(&[]);
    let mut flags = certs.server_flags("tcp");
    flags.extend(certs.server_flags("websocket"));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let secure = TestServer::start(&flags);
    let payload: Bytes = (0..message_bytes)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let ca_file = certs.ca_file.clone();
    let transports = [
        ("tcp", plain.addr, Via::Tcp),
        (
            "tcp+tls",
            secure.addr,
            Via::TcpTls {
                ca_file: ca_file.clone(),
            },
        ),
        ("websocket", plain.ws_addr, Via::WebSocket),
        ("wss", secure.ws_addr, Via::Wss { ca_file }),
    ];
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    println!(
        "round trip of one {message_bytes}-byte message (send + poll), {rounds} rounds, 2 shards, fsync = interval"
    );
    println!("| transport | median ms | min ms | max ms | median / tcp |");
    println!("|---|---|---|---|---|");
    let mut reference = None;
    for (name, addr, via) in &transports {
        let times = runtime.block_on(measure(name, *addr, via, &payload, rounds));
        let median = times[times.len() / 2];
        let reference = *reference.get_or_insert(median);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.2} |",
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3,
            median.as_secs_f64() / reference.as_secs_f64()
        );
    }
}
