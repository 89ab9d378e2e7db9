//! Disk faults: with the server's file-size limit (RLIMIT_FSIZE) below what the clients write,
//! a send whose bytes cannot be written gets an error (13000 IoError) and a log line, the
//! server stays up, everything acknowledged before stays readable, and other commands work.

mod support;

use support::{
    TestServer,
    raw::{self, RawConn, SendMessages, code},
};

/// The server may write files of at most this size.
const FILE_SIZE_BYTES_MAX: u64 = 64 * 1024;
/// Payload of each message: 16 batches of 4 fill the limit.
const PAYLOAD_BYTES: usize = 1000;
/// Sends attempted before the test gives up waiting for the limit to bite.
const SENDS_MAX: usize = 1000;
const IO_ERROR: u32 = 13_000;

/// A server whose files may not grow past [`FILE_SIZE_BYTES_MAX`] (RLIMIT_FSIZE), fsyncing
/// every send.
fn start_with_file_size_limit() -> TestServer {
    let mut server = TestServer::launch_with_file_size_max(
        &["--set", "storage.fsync=always"],
        FILE_SIZE_BYTES_MAX,
    );
    server.wait_ready();
    server
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
    assert!(server.is_running(), "the server is still running");
    conn.ping();
    let polled = raw::poll(&mut conn, 0, 0, 0, 0, acknowledged as u32);
    assert!(
        polled.messages.len() as u64 >= acknowledged,
        "every acknowledged message is readable ({} of {acknowledged})",
        polled.messages.len()
    );
    let mut other = RawConn::connect_logged_in(server.addr);
    raw::create_stream(&mut other, "metadata-still-works");
    let logs = server.logs();
    assert!(
        logs.contains("command failed") || logs.contains("flush failed"),
        "the failure is logged:\n{logs}"
    );
}
