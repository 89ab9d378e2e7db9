//! A real `galgo-server` child process for tests of crates that cannot depend on the server
//! crate (the client, the bench and the CLI include this file): bound to 127.0.0.1:0, a temp
//! data dir, unpinned, two shards; killed on drop.
//!
//! The binary is `GALGO_SERVER_BIN` when set (to test against another build or another server
//! of the protocol), otherwise the `galgo-server` cargo built beside this test in the same
//! target dir, which `cargo test --workspace` always builds.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

/// How long a server may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const READY_PREFIX: &str = "galgo-server ready";

/// One running server.
pub struct GalgoServer {
    /// Its TCP address (TCP+TLS when started with `tcp.tls.enabled=true`).
    pub addr: SocketAddr,
    /// Its WebSocket address (WSS when started with `websocket.tls.enabled=true`).
    pub websocket_addr: SocketAddr,
    /// Its HTTP endpoint's address (/metrics, /health), if the ready line names one.
    pub http_addr: Option<SocketAddr>,
    child: Child,
    _dir: TempDir,
}

impl GalgoServer {
    /// Starts a server and waits for its ready line.
    pub fn start() -> GalgoServer {
        Self::start_with(&[])
    }

    /// Starts a server with `extra` command-line arguments (e.g. `--set` flags) and waits for
    /// its ready line.
    pub fn start_with(extra: &[String]) -> GalgoServer {
        let dir = tempfile::Builder::new()
            .prefix("galgo-client-test-")
            .tempdir()
            .expect("create temp dir");
        let binary = server_binary();
        let mut child = Command::new(&binary)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--tcp-address", "127.0.0.1:0", "--no-pin", "--shards", "2"])
            .args(["--websocket-address", "127.0.0.1:0"])
            // Every test server has its own HTTP endpoint on a free port.
            .args(["--set", "http.address=\"127.0.0.1:0\""])
            // Small rings: io_uring charges ring memory to the user's RLIMIT_MEMLOCK, and the
            // suite runs several servers at once.
            .args(["--set", "shards.ring_entries=256"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (ready_tx, ready_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // `galgo-server ready tcp=ADDR websocket=ADDR`: the fields may grow.
                if let Some(fields) = line.strip_prefix(READY_PREFIX)
                    && let Some(tcp) = ready_field(fields, "tcp=")
                    && let Some(websocket) = ready_field(fields, "websocket=")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send((tcp, websocket, ready_field(fields, "http=")));
                }
            }
        });
        let (addr, websocket_addr, http_addr) = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(addrs) => addrs,
            Err(error) => {
                let _ = child.kill();
                panic!("galgo-server gave no ready line within {READY_TIMEOUT:?}: {error}");
            }
        };
        GalgoServer {
            addr,
            websocket_addr,
            http_addr,
            child,
            _dir: dir,
        }
    }

    /// `iggy://iggy:iggy@ADDR`, the default root credentials.
    pub fn connection_string(&self) -> String {
        format!("iggy://iggy:iggy@{}", self.addr)
    }
}

impl Drop for GalgoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ready_field(fields: &str, key: &str) -> Option<SocketAddr> {
    let value = fields
        .split_whitespace()
        .find_map(|field| field.strip_prefix(key))?;
    Some(value.parse().expect("ready address"))
}

fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GALGO_SERVER_BIN") {
        return PathBuf::from(path);
    }
    // This test runs as target/<profile>/deps/<test>-<hash>; the binary is target/<profile>/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let binary = profile_dir.join("galgo-server");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p galgo-server` (cargo test --workspace builds it) \
         or set GALGO_SERVER_BIN",
        binary.display()
    );
    binary
}
