//! A second server started on an address a running one serves refuses to start (exit code 1,
//! a message naming the address and its key) instead of sharing the port through SO_REUSEPORT,
//! and the running server goes on serving. Each listener is checked: TCP and WebSocket.

mod support;

use std::{
    net::SocketAddr,
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    time::Duration,
};

use support::{raw::RawConn, server::TestServer};

/// How long a refused start may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a second galgo-server with `tcp` and `websocket` as its addresses and returns its exit
/// status and stderr; panics if it is still running after [`EXIT_TIMEOUT`].
fn start_second(tcp: SocketAddr, websocket: SocketAddr) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("server.log");
    let mut child = Command::new(support::server::server_binary())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--tcp-address", &tcp.to_string()])
        .args(["--websocket-address", &websocket.to_string()])
        .args(["--set", "http.address=\"127.0.0.1:0\""])
        .args([
            "--shards",
            "2",
            "--no-pin",
            "--set",
            "shards.ring_entries=256",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn galgo-server");
    let pid = child.id();
    let (exited, exit) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let Ok(status) = exit.recv_timeout(EXIT_TIMEOUT) else {
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        panic!("the second server still runs after {EXIT_TIMEOUT:?}");
    };
    let status = status.expect("wait for the second server");
    (status, std::fs::read_to_string(&log).expect("read log"))
}

fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[test]
fn a_second_server_on_a_served_address_refuses_to_start() {
    let server = TestServer::start(&[]);
    for (tcp, websocket, key) in [
        (server.addr, any_port(), "[tcp] address"),
        (any_port(), server.ws_addr, "[websocket] address"),
    ] {
        let (status, log) = start_second(tcp, websocket);
        assert_eq!(status.code(), Some(1), "exit code; log:\n{log}");
        let taken = if key.starts_with("[tcp]") {
            tcp
        } else {
            websocket
        };
        assert!(
            log.contains(&format!("cannot listen on {taken} ({key})")),
            "names the address and its key; log:\n{log}"
        );
        assert!(!log.contains("galgo is serving"), "log:\n{log}");
    }
    // Every new connection still reaches the first server, which answers.
    for _ in 0..8 {
        RawConn::connect(server.addr).ping();
    }
}
