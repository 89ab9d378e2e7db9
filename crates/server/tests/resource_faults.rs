//! Disk faults: with the server's file-size limit (RLIMIT_FSIZE) below what the clients write,
//! a send whose bytes cannot be written gets an error (13000 IoError) and a log line, the
//! server stays up, everything acknowledged before stays readable, and other commands work.

mod support;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
};

use support::raw::{self, RawConn, SendMessages, code};

/// The server may write files of at most this size.
const FILE_SIZE_BYTES_MAX: u64 = 64 * 1024;
/// Payload of each message: 16 batches of 4 fill the limit.
const PAYLOAD_BYTES: usize = 1000;
/// Sends attempted before the test gives up waiting for the limit to bite.
const SENDS_MAX: usize = 1000;
const IO_ERROR: u32 = 13_000;

struct LimitedServer {
    child: Child,
    addr: SocketAddr,
    stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_with_file_size_limit() -> LimitedServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let stderr = dir.path().join("server.log");
    let mut command = Command::new(support::server::server_binary());
    command
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .args(["--tcp-address", "127.0.0.1:0", "--shards", "2", "--no-pin"])
        .args(["--websocket-address", "127.0.0.1:0"])
        .args(["--set", "http.address=\"127.0.0.1:0\""])
        .args(["--set", "shards.ring_entries=256"])
        .args(["--set", "storage.fsync=always"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("log file"));
    // SAFETY: only async-signal-safe setrlimit runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: FILE_SIZE_BYTES_MAX,
                rlim_max: FILE_SIZE_BYTES_MAX,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn galgo-server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let addr = line
        .split_whitespace()
        .find_map(|word| word.strip_prefix("tcp="))
        .unwrap_or_else(|| panic!("no tcp address in {line:?}"))
        .parse()
        .expect("address");
    LimitedServer {
        child,
        addr,
        stderr,
        _dir: dir,
    }
}

#[test]
fn a_write_past_the_file_size_limit_is_an_error_not_a_crash() {
    let mut server = start_with_file_size_limit();
    let mut conn = RawConn::connect_logged_in(server.addr);
    raw::create_stream(&mut conn, "faults");
    raw::create_topic(&mut conn, 0, "limited", 1);
    let payload = vec![0xA5; PAYLOAD_BYTES];
    let mut acknowledged = 0u64;
    let refused = (0..SENDS_MAX).find_map(|_| {
        let batch = [payload.as_slice(); 4];
        let send = SendMessages::new(0, 0, 0, &batch).encode();
        let response = conn.request(code::SEND_MESSAGES, &send);
        if response.status == 0 {
            acknowledged += 4;
            None
        } else {
            Some(response.status)
        }
    });
    assert_eq!(
        refused,
        Some(IO_ERROR),
        "a failed disk write is reported as 13000"
    );
    assert!(acknowledged > 0, "sends below the limit were acknowledged");
    assert!(
        server.child.try_wait().expect("status").is_none(),
        "the server is still running"
    );
    conn.ping();
    let polled = raw::poll(&mut conn, 0, 0, 0, 0, acknowledged as u32);
    assert!(
        polled.messages.len() as u64 >= acknowledged,
        "every acknowledged message is readable ({} of {acknowledged})",
        polled.messages.len()
    );
    let mut other = RawConn::connect_logged_in(server.addr);
    raw::create_stream(&mut other, "metadata-still-works");
    let logs = std::fs::read_to_string(&server.stderr).expect("logs");
    assert!(
        logs.contains("command failed") || logs.contains("flush failed"),
        "the failure is logged:\n{logs}"
    );
}
