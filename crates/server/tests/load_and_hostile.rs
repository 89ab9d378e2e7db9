//! Load and hostile clients: a thousand concurrent clients, slow-loris half frames, idle
//! connections, a client that pipelines requests and never reads, and a storm of connects and
//! disconnects. Through all of it other clients are served, and the server's memory stays
//! bounded. The figures (RSS before and after) are printed for docs/reliability.md.

mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::{
    TestServer,
    raw::{self, RawConn, SendMessages, code},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const CLIENTS: usize = 1000;
const PARTITIONS: u32 = 8;
/// Generous ceiling for the server's RSS under these loads; a leak per connection or per
/// request would cross it.
const RSS_BYTES_MAX: u64 = 256 * 1024 * 1024;
const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);
/// Password logins in the memory test: each is an Argon2 verification (19 MiB, tens of ms).
const PASSWORD_LOGINS: usize = 100;
const CREATE_TOKEN: u32 = 42;
const LOGIN_WITH_TOKEN: u32 = 44;

async fn request(stream: &mut TcpStream, code: u32, payload: &[u8]) -> (u32, Vec<u8>) {
    stream
        .write_all(&raw::frame(code, payload))
        .await
        .expect("write request");
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await.expect("read header");
    let status = u32::from_le_bytes(header[0..4].try_into().expect("4"));
    let len = u32::from_le_bytes(header[4..8].try_into().expect("4"));
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await.expect("read body");
    (status, body)
}

/// How a load client logs in.
#[derive(Clone)]
enum Login {
    /// LoginUser iggy/iggy: an Argon2 verification on the server.
    Password,
    /// LoginWithPersonalAccessToken: a digest lookup.
    Token(Vec<u8>),
}

async fn log_in(stream: &mut TcpStream, login: &Login) {
    let (code, payload) = match login {
        Login::Password => (code::LOGIN_USER, raw::login_payload("iggy", "iggy")),
        Login::Token(token) => (LOGIN_WITH_TOKEN, raw::str8(token)),
    };
    assert_eq!(request(stream, code, &payload).await.0, 0, "login");
}

/// One client's life: connect, log in, send one message, poll it back.
async fn client(addr: SocketAddr, index: usize, login: Login) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    log_in(&mut stream, &login).await;
    let partition = (index % PARTITIONS as usize) as u32;
    let text = format!("client {index}");
    let send = SendMessages::new(0, 0, partition, &[text.as_bytes()]).encode();
    assert_eq!(
        request(&mut stream, code::SEND_MESSAGES, &send).await.0,
        0,
        "send"
    );
    let poll = raw::poll_payload(0, 0, partition, 0, 1);
    let (status, body) = request(&mut stream, code::POLL_MESSAGES, &poll).await;
    assert_eq!(status, 0, "poll");
    assert_eq!(
        raw::decode_polled(&body).messages.len(),
        1,
        "one message polled"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn setup(server: &TestServer) -> RawConn {
    let mut conn = RawConn::connect_logged_in(server.addr);
    raw::create_stream(&mut conn, "load");
    raw::create_topic(&mut conn, 0, "many", PARTITIONS);
    conn
}

fn clients_count(conn: &mut RawConn) -> u32 {
    let stats = conn.request(code::GET_STATS, &[]).ok();
    u32::from_le_bytes(stats[100..104].try_into().expect("clients_count at 100"))
}

fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_thousand_concurrent_clients_are_served_and_memory_stays_bounded() {
    let server = TestServer::start(&[]);
    let mut bystander = setup(&server);
    // A thousand Argon2 verifications would make this a test of password hashing (the next
    // test covers it); the clients log in with a personal access token instead.
    let mut create = raw::str8(b"load-token");
    create.extend_from_slice(&0u64.to_le_bytes());
    let token = bystander.request(CREATE_TOKEN, &create).ok()[1..].to_vec();
    let rss_before = server.rss_bytes();
    let addr = server.addr;
    runtime().block_on(async move {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|index| tokio::spawn(client(addr, index, Login::Token(token.clone()))))
            .collect();
        for task in tasks {
            task.await.expect("client task");
        }
    });
    bystander.ping();
    let rss_after = server.rss_bytes();
    eprintln!(
        "{CLIENTS} clients: server RSS {} KiB before, {} KiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < RSS_BYTES_MAX,
        "RSS {rss_after} bytes after {CLIENTS} clients"
    );
    let mut total = 0;
    for partition in 0..PARTITIONS {
        total += raw::poll(&mut bystander, 0, 0, partition, 0, CLIENTS as u32)
            .messages
            .len();
    }
    assert_eq!(total, CLIENTS, "every client's message was stored");
}

#[test]
fn password_logins_keep_memory_bounded() {
    let server = TestServer::start(&[]);
    let _bystander = setup(&server);
    let rss_before = server.rss_bytes();
    let addr = server.addr;
    runtime().block_on(async move {
        let tasks: Vec<_> = (0..PASSWORD_LOGINS)
            .map(|index| tokio::spawn(client(addr, index, Login::Password)))
            .collect();
        for task in tasks {
            task.await.expect("client task");
        }
    });
    let rss_after = server.rss_bytes();
    eprintln!(
        "{PASSWORD_LOGINS} password logins: server RSS {} KiB before, {} KiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "Argon2's memory is returned after each login"
    );
}

#[test]
fn slow_loris_and_idle_connections_do_not_block_others() {
    let server = TestServer::start(&[]);
    let mut bystander = setup(&server);
    let mut hostile = Vec::new();
    for index in 0..100 {
        let mut conn = RawConn::connect(server.addr);
        if index % 2 == 0 {
            // Half a header, then nothing.
            conn.send_bytes(&[0x10, 0x00, 0x00]);
        }
        hostile.push(conn);
    }
    bystander.ping();
    raw::create_stream(&mut bystander, "still-served");
    let mut fresh = RawConn::connect_logged_in(server.addr);
    fresh.ping();
    drop(hostile);
    wait_for("the hostile connections to be gone", || {
        clients_count(&mut bystander) == 2
    });
}

#[test]
fn a_client_that_never_reads_holds_bounded_memory_and_is_cut_off() {
    let server = TestServer::start(&["--set", "limits.write_timeout_ms=500"]);
    let mut bystander = setup(&server);
    let payload = vec![0x42u8; 100_000];
    let send = SendMessages::new(0, 0, 0, &[payload.as_slice(); 10]).encode();
    bystander.request(code::SEND_MESSAGES, &send).ok();
    let rss_before = server.rss_bytes();
    // Pipelines polls of ~1 MB each and never reads a byte of the answers. The server must
    // stop reading from it once the socket is full instead of buffering answers.
    let mut greedy = RawConn::connect_logged_in(server.addr);
    let poll = raw::frame(code::POLL_MESSAGES, &raw::poll_payload(0, 0, 0, 0, 10));
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && sent < 2000 {
        if greedy.try_send_bytes(&poll).is_err() {
            break;
        }
        sent += 1;
    }
    bystander.ping();
    let rss_after = server.rss_bytes();
    eprintln!(
        "non-reading client pipelined {sent} polls of ~1 MB: server RSS {} KiB before, {} KiB after",
        rss_before / 1024,
        rss_after / 1024
    );
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "memory held for a client that never reads grows with what it asked for"
    );
    // Once a response has waited write_timeout_ms, the server ends that connection.
    wait_for("the non-reading client to be cut off", || {
        clients_count(&mut bystander) == 1
    });
    assert!(
        server.logs().contains("did not read its response in time"),
        "the cut is logged"
    );
    drop(greedy);
}

#[test]
fn a_storm_of_connects_and_disconnects_leaves_nothing_behind() {
    let server = TestServer::start(&[]);
    let mut bystander = setup(&server);
    for index in 0..2000 {
        let mut conn = RawConn::connect(server.addr);
        if index % 3 == 0 {
            conn.ping();
        }
    }
    bystander.ping();
    wait_for("every stormy connection to be forgotten", || {
        clients_count(&mut bystander) == 1
    });
}
