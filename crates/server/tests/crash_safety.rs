//! Crash safety under `storage.fsync=always`: producers record every acknowledged batch while
//! the server is killed with SIGKILL at a varying moment, several rounds in a row on the same
//! data directory. After every restart each partition must hold every acknowledged message, in
//! order, with valid checksums and contiguous offsets (at most the one batch that was in flight
//! may also have landed), and must keep accepting writes.
//!
//! The kill moment is a number of acknowledgements drawn from a seeded generator
//! (`GALGO_CRASH_SEED` to replay a run); waiting for it is waiting on a counter, not on time.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use support::{
    TestServer,
    raw::{self, RawConn, SendMessages, code},
};

const ROUNDS: usize = 5;
const PARTITIONS: u32 = 3;
const BATCH_MESSAGES: usize = 4;
/// Acknowledgements (over all producers) before the kill: at least this many…
const KILL_AFTER_ACKS_MIN: u64 = 5;
/// …plus up to this many more, drawn per round.
const KILL_AFTER_ACKS_SPREAD: u64 = 120;
const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_BATCH: u32 = 500;

/// xorshift64*: enough to vary kill moments reproducibly without a dependency.
struct Moments(u64);

impl Moments {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Sends batches to one partition until the connection breaks; returns the payloads whose
/// batches were acknowledged, in order. The kill may come before this producer is even
/// connected or logged in: then nothing was acknowledged.
fn produce(
    addr: std::net::SocketAddr,
    partition: u32,
    round: usize,
    acks: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> Vec<Vec<u8>> {
    let mut acked = Vec::new();
    let Ok(mut conn) = RawConn::try_connect_logged_in(addr) else {
        return acked;
    };
    for batch in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let payloads: Vec<Vec<u8>> = (0..BATCH_MESSAGES)
            .map(|message| format!("p{partition}-r{round}-b{batch}-m{message}").into_bytes())
            .collect();
        let borrowed: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let send = SendMessages::new(0, 0, partition, &borrowed).encode();
        if conn
            .try_send_bytes(&raw::frame(code::SEND_MESSAGES, &send))
            .is_err()
        {
            break;
        }
        match conn.try_read_response() {
            Ok(response) if response.status == 0 => {
                acked.extend(payloads);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(response) => panic!("send refused with status {}", response.status),
            Err(_) => break,
        }
    }
    acked
}

/// Every message of a partition, from offset 0.
fn read_all(addr: std::net::SocketAddr, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let mut conn = RawConn::connect_logged_in(addr);
    let mut messages = Vec::new();
    loop {
        let polled = raw::poll(
            &mut conn,
            0,
            0,
            partition,
            messages.len() as u64,
            POLL_BATCH,
        );
        if polled.messages.is_empty() {
            return messages;
        }
        messages.extend(polled.messages);
    }
}

fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Re-check often without spinning a core the server and producers need.
        thread::sleep(Duration::from_millis(1));
    }
}

/// Runs one round of producers, one per partition, and kills the server once `kill_after`
/// batches have been acknowledged. Returns what each partition's producer saw acknowledged.
fn produce_until_killed(
    server: &mut TestServer,
    round: usize,
    kill_after: u64,
) -> Vec<Vec<Vec<u8>>> {
    let acks = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PARTITIONS)
        .map(|partition| {
            let (addr, acks, stop) = (server.addr, acks.clone(), stop.clone());
            thread::spawn(move || produce(addr, partition, round, acks, stop))
        })
        .collect();
    wait_for("acknowledgements before the kill", || {
        acks.load(Ordering::SeqCst) as u64 >= kill_after
    });
    server.kill();
    stop.store(true, Ordering::Relaxed);
    producers
        .into_iter()
        .map(|producer| producer.join().expect("producer thread"))
        .collect()
}

/// Checks one partition after a restart: offsets contiguous from 0, and every message known to
/// be durable (`durable`, extended by this round's `acked`) stored in order. Afterwards
/// `durable` holds what the partition stores, since the batch in flight may have landed too.
fn check_partition(
    addr: std::net::SocketAddr,
    round: usize,
    partition: usize,
    durable: &mut Vec<Vec<u8>>,
    acked: Vec<Vec<u8>>,
) {
    durable.extend(acked);
    let stored = read_all(addr, partition as u32);
    let offsets: Vec<u64> = stored.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        offsets,
        (0..stored.len() as u64).collect::<Vec<_>>(),
        "round {round}, partition {partition}: offsets contiguous from 0"
    );
    let payloads: Vec<Vec<u8>> = stored.into_iter().map(|(_, payload)| payload).collect();
    let expected: &[Vec<u8>] = durable;
    assert!(
        payloads.len() >= expected.len()
            && payloads.len() - expected.len() <= BATCH_MESSAGES
            && payloads[..expected.len()] == expected[..],
        "round {round}, partition {partition}: {} acknowledged messages, {} stored; \
         every acknowledged message must be there, in order",
        expected.len(),
        payloads.len()
    );
    // The batch in flight at the kill may have landed; from now on it is history.
    *durable = payloads;
}

#[test]
fn sigkill_at_varying_moments_loses_nothing_acknowledged() {
    let seed = std::env::var("GALGO_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x6A1_60C4_u64);
    eprintln!("crash-safety seed {seed} (GALGO_CRASH_SEED to replay)");
    let mut moments = Moments(seed.max(1));
    let mut server = TestServer::start(&[
        "--set",
        "storage.fsync=always",
        "--set",
        "storage.segment_size_bytes=16384",
    ]);
    {
        let mut conn = RawConn::connect_logged_in(server.addr);
        raw::create_stream(&mut conn, "crash");
        raw::create_topic(&mut conn, 0, "acked", PARTITIONS);
    }
    let mut durable: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PARTITIONS as usize];
    for round in 0..ROUNDS {
        let kill_after = KILL_AFTER_ACKS_MIN + moments.next() % KILL_AFTER_ACKS_SPREAD;
        let acked = produce_until_killed(&mut server, round, kill_after);
        server.restart();
        for (partition, acked) in acked.into_iter().enumerate() {
            check_partition(
                server.addr,
                round,
                partition,
                &mut durable[partition],
                acked,
            );
        }
    }
    let mut conn = RawConn::connect_logged_in(server.addr);
    let after = SendMessages::new(0, 0, 0, &[b"after the last crash"]).encode();
    conn.request(code::SEND_MESSAGES, &after).ok();
    let stored = read_all(server.addr, 0);
    assert_eq!(
        stored.len(),
        durable[0].len() + 1,
        "writes continue after recovery"
    );
    server.stop();
}
