//! Malformed input over raw TCP: every case gets the error code of PROTOCOL.md §1.1 / §4.1 /
//! §6.2, the same connection keeps answering (the whole declared payload is consumed), and a
//! second connection is never disturbed. Only a frame that cannot be framed (a 0.8 length
//! below 4, a 0.9 size outside its range) or whose payload the server will not read (a
//! control payload over 10 MiB) may close the connection instead, and only that one.

mod support;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use galgo_protocol::{command::messages::SEND_INDEX_ENTRY_BYTES, message::encode_message};
use support::TestServer;
use support::raw::{self, RawConn, SendMessages, code, error, frame, id_named, id_numeric, str8};

/// The server's default `[limits] control_payload_bytes_max`.
const CONTROL_PAYLOAD_BYTES_MAX: usize = galgo_protocol::CONTROL_PAYLOAD_BYTES_MAX as usize;
/// Bytes of one entry of a SendMessages index: offset u32 | position u32 | timestamp u64.
const ENTRY: usize = SEND_INDEX_ENTRY_BYTES;

/// Sends `code`/`payload`, expects error `status`, then a Ping on the same connection and on
/// the bystander connection.
#[track_caller]
fn expect_error_then_ping(
    conn: &mut RawConn,
    bystander: &mut RawConn,
    code: u32,
    payload: &[u8],
    status: u32,
) {
    let response = conn.request(code, payload);
    assert_eq!(
        (response.status, response.payload.len()),
        (status, 0),
        "command {code} with payload {:02x?}",
        &payload[..payload.len().min(32)]
    );
    conn.ping();
    bystander.ping();
}

#[test]
fn framing_errors_keep_the_connection_in_sync() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let mut conn = RawConn::connect(server.addr);

    // length < 4 cannot be framed (the length counts the code): that connection is closed,
    // and nobody else notices. (A connection whose first four bytes are zero speaks the 0.9
    // framing; see the zero-bytes test below.)
    for length in [1u32, 3] {
        let mut broken = RawConn::connect(server.addr);
        broken.ping();
        let mut bytes = length.to_le_bytes().to_vec();
        bytes.extend_from_slice(&code::PING.to_le_bytes());
        broken.send_bytes(&bytes);
        broken.expect_closed(Duration::from_secs(10));
        bystander.ping();
    }

    // An unknown command code with a payload: 3, and the payload is consumed.
    expect_error_then_ping(
        &mut conn,
        &mut bystander,
        7777,
        &[0xAB; 100],
        error::INVALID_COMMAND,
    );
    expect_error_then_ping(&mut conn, &mut bystander, 7777, &[], error::INVALID_COMMAND);
    // Codes 30 and 40 do not exist either (PROTOCOL.md §3).
    expect_error_then_ping(
        &mut conn,
        &mut bystander,
        30,
        &[1, 2, 3],
        error::INVALID_COMMAND,
    );
    // Unknown codes are rejected as unknown even after login.
    conn.login_root();
    expect_error_then_ping(
        &mut conn,
        &mut bystander,
        123_456,
        &[7; 13],
        error::INVALID_COMMAND,
    );
}

/// One decode case: what it is, the command, its payload, and the error code it must get.
type DecodeCase = (&'static str, u32, Vec<u8>, u32);

#[test]
fn decode_errors_map_to_invalid_command_or_invalid_format() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let mut conn = RawConn::connect_logged_in(server.addr);
    let stream = raw::create_stream(&mut conn, "exists");
    let cases = [
        truncated_field_cases(stream),
        utf8_and_empty_name_cases(stream),
        identifier_and_kind_cases(stream),
    ]
    .concat();
    for (what, command, payload, status) in cases {
        let response = conn.request(command, &payload);
        assert_eq!(
            (response.status, response.payload.len()),
            (status, 0),
            "{what}"
        );
        conn.ping();
        bystander.ping();
    }
    assert_only_the_existing_stream(&mut conn, stream);
}

/// Payloads cut short inside a field, which must get error 3.
fn truncated_field_cases(stream: u32) -> Vec<DecodeCase> {
    vec![
        // Truncated fields: 3.
        (
            "name8 longer than the payload",
            code::CREATE_STREAM,
            vec![5, b'a', b'b'],
            error::INVALID_COMMAND,
        ),
        (
            "empty payload where a name is due",
            code::CREATE_STREAM,
            vec![],
            error::INVALID_COMMAND,
        ),
        (
            "identifier cut inside its value",
            code::GET_STREAM,
            vec![1, 4, 0, 0],
            error::INVALID_COMMAND,
        ),
        (
            "identifier with no length byte",
            code::GET_STREAM,
            vec![1],
            error::INVALID_COMMAND,
        ),
        (
            "create topic cut after the stream id",
            code::CREATE_TOPIC,
            id_numeric(stream),
            error::INVALID_COMMAND,
        ),
        (
            "login cut before the password",
            code::LOGIN_USER,
            str8(b"iggy"),
            error::INVALID_COMMAND,
        ),
        (
            "poll cut inside the strategy",
            code::POLL_MESSAGES,
            {
                let mut payload = raw::poll_payload(stream, 0, 0, 0, 1);
                payload.truncate(payload.len() - 10);
                payload
            },
            error::INVALID_COMMAND,
        ),
    ]
}

/// Names and string identifiers that are not UTF-8 (3), and empty names (4).
fn utf8_and_empty_name_cases(stream: u32) -> Vec<DecodeCase> {
    vec![
        // Invalid UTF-8: 3.
        (
            "invalid UTF-8 stream name",
            code::CREATE_STREAM,
            vec![2, 0xFF, 0xFE],
            error::INVALID_COMMAND,
        ),
        (
            "invalid UTF-8 in a string identifier",
            code::GET_STREAM,
            vec![2, 2, 0xC3, 0x28],
            error::INVALID_COMMAND,
        ),
        // Empty name: 4.
        (
            "empty stream name",
            code::CREATE_STREAM,
            vec![0],
            error::INVALID_FORMAT,
        ),
        (
            "empty topic name",
            code::CREATE_TOPIC,
            {
                let mut payload = raw::create_topic_payload(&id_numeric(stream), "x", 1);
                payload.truncate(payload.len() - 2);
                payload.push(0);
                payload
            },
            error::INVALID_FORMAT,
        ),
    ]
}

/// Identifiers of unknown kinds or wrong lengths, and unknown consumer kinds, polling
/// strategies and compression algorithms.
fn identifier_and_kind_cases(stream: u32) -> Vec<DecodeCase> {
    vec![
        // Identifier kinds and lengths.
        (
            "identifier of unknown kind 3",
            code::GET_STREAM,
            vec![3, 4, 0, 0, 0, 0],
            error::INVALID_COMMAND,
        ),
        (
            "identifier of kind 0",
            code::GET_STREAM,
            vec![0, 4, 0, 0, 0, 0],
            error::INVALID_COMMAND,
        ),
        (
            "numeric identifier of length 2",
            code::GET_STREAM,
            vec![1, 2, 0, 0],
            error::INVALID_FORMAT,
        ),
        (
            "numeric identifier of length 8",
            code::GET_STREAM,
            vec![1, 8, 0, 0, 0, 0, 0, 0, 0, 0],
            error::INVALID_FORMAT,
        ),
        (
            "empty string identifier",
            code::GET_STREAM,
            vec![2, 0],
            error::INVALID_FORMAT,
        ),
        (
            "unknown consumer kind",
            code::POLL_MESSAGES,
            {
                let mut payload = raw::poll_payload(stream, 0, 0, 0, 1);
                payload[0] = 9;
                payload
            },
            error::INVALID_COMMAND,
        ),
        (
            "unknown polling strategy",
            code::POLL_MESSAGES,
            {
                let mut payload = raw::poll_payload(stream, 0, 0, 0, 1);
                let at = payload.len() - 14; // strategy kind: before value u64, count u32, auto_commit u8
                payload[at] = 42;
                payload
            },
            error::INVALID_COMMAND,
        ),
        (
            "unknown compression algorithm",
            code::CREATE_TOPIC,
            {
                let mut payload = raw::create_topic_payload(&id_numeric(stream), "t", 1);
                payload[6 + 4] = 9;
                payload
            },
            error::INVALID_COMMAND,
        ),
    ]
}

/// Nothing was created by the rejected requests, and well-formed ones still work.
fn assert_only_the_existing_stream(conn: &mut RawConn, stream: u32) {
    let streams = conn.request(code::GET_STREAMS, &[]).ok();
    let name_len = streams[32] as usize;
    assert_eq!(
        streams.len(),
        33 + name_len,
        "exactly one stream: {streams:02x?}"
    );
    assert_eq!(&streams[33..], b"exists");
    let found = conn.request(code::GET_STREAM, &id_named("exists")).ok();
    assert_eq!(u32::from_le_bytes(found[0..4].try_into().unwrap()), stream);
    // Trailing bytes after a valid payload are ignored (PROTOCOL.md §1.1).
    let mut trailing = id_numeric(stream);
    trailing.extend_from_slice(&[0xEE; 5]);
    assert_eq!(conn.request(code::GET_STREAM, &trailing).ok(), found);
}

#[test]
fn commands_need_login_first() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let stream = raw::create_stream(&mut bystander, "guarded");
    let topic = raw::create_topic(&mut bystander, stream, "t", 1);

    let mut conn = RawConn::connect(server.addr);
    conn.ping();
    let unauthenticated: Vec<(u32, Vec<u8>)> = vec![
        (code::GET_STATS, vec![]),
        (code::GET_ME, vec![]),
        (code::GET_STREAMS, vec![]),
        (code::GET_STREAM, id_numeric(stream)),
        (code::CREATE_STREAM, str8(b"sneaky")),
        (
            code::CREATE_TOPIC,
            raw::create_topic_payload(&id_numeric(stream), "sneaky", 1),
        ),
        (
            code::POLL_MESSAGES,
            raw::poll_payload(stream, topic, 0, 0, 10),
        ),
        // SendMessages with a whole batch: the server must consume it before answering 40.
        (
            code::SEND_MESSAGES,
            SendMessages::new(stream, topic, 0, &[b"not logged in", &[0x55; 5000]]).encode(),
        ),
        (code::GET_SHARD_STATS, vec![]),
        (39, vec![]), // LogoutUser
    ];
    // Every command of the protocol but Ping and the two logins, with no payload at all:
    // authentication is checked before the payload is decoded.
    for command in galgo_protocol::CommandCode::ALL {
        if command.requires_auth() {
            conn.send_frame(command.as_u32(), &[]);
            let response = conn.read_response();
            assert_eq!(
                response.status,
                error::UNAUTHENTICATED,
                "{} without login",
                command.name()
            );
        }
    }
    for (command, payload) in &unauthenticated {
        let response = conn.request(*command, payload);
        assert_eq!(
            (response.status, response.payload.len()),
            (error::UNAUTHENTICATED, 0),
            "command {command}"
        );
        conn.ping();
        bystander.ping();
    }
    // A failed login leaves the session unauthenticated.
    conn.request(code::LOGIN_USER, &raw::login_payload("iggy", "wrong"))
        .assert_error(error::INVALID_CREDENTIALS);
    conn.request(code::GET_STREAMS, &[])
        .assert_error(error::UNAUTHENTICATED);

    conn.login_root();
    let polled = raw::poll(&mut conn, stream, topic, 0, 0, 10);
    assert!(
        polled.messages.is_empty(),
        "the unauthenticated send stored nothing"
    );
    let streams = conn.request(code::GET_STREAMS, &[]).ok();
    assert_eq!(
        streams.len(),
        33 + "guarded".len(),
        "the unauthenticated create made nothing"
    );
}

/// One SendMessages case: what it is, the payload, and the error codes it may get.
type SendCase = (&'static str, Vec<u8>, &'static [u32]);

/// A valid batch of three messages for partition 0 of `stream`/`topic`.
fn good_batch(stream: u32, topic: u32) -> SendMessages {
    SendMessages::new(stream, topic, 0, &[b"first", b"second message", b"3"])
}

#[test]
fn send_messages_validation_errors() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let mut conn = RawConn::connect_logged_in(server.addr);
    let stream = raw::create_stream(&mut conn, "validated");
    let topic = raw::create_topic(&mut conn, stream, "t", 1);

    conn.request(code::SEND_MESSAGES, &good_batch(stream, topic).encode())
        .ok();

    let cases = [
        block_layout_cases(stream, topic),
        index_entry_cases(stream, topic),
        message_cases(stream, topic),
        envelope_cases(stream, topic),
    ]
    .concat();
    for (what, payload, allowed) in &cases {
        let response = conn.request(code::SEND_MESSAGES, payload);
        assert!(
            allowed.contains(&response.status) && response.payload.is_empty(),
            "{what}: got status {} (payload {} bytes), expected one of {allowed:?}",
            response.status,
            response.payload.len()
        );
        conn.ping();
        bystander.ping();
    }

    // Only the good batches were stored, contiguous from 0.
    conn.request(code::SEND_MESSAGES, &good_batch(stream, topic).encode())
        .ok();
    assert_only_good_batches_stored(&mut conn, stream, topic);
}

/// Index positions that do not match the messages block, and an empty batch.
fn block_layout_cases(stream: u32, topic: u32) -> Vec<SendCase> {
    let mut cases: Vec<SendCase> = Vec::new();
    let mut batch = good_batch(stream, topic);
    batch.count = 0;
    batch.index.clear();
    batch.messages.clear();
    cases.push((
        "zero messages",
        batch.encode(),
        &[error::INVALID_MESSAGES_COUNT],
    ));

    let mut batch = good_batch(stream, topic);
    batch.index[4..8].copy_from_slice(&(batch.messages.len() as u32 + 100).to_le_bytes());
    cases.push((
        "a position past the end of the block",
        batch.encode(),
        &[error::MISSING_INDEX, error::INVALID_MESSAGES_SIZE],
    ));

    let mut batch = good_batch(stream, topic);
    batch.index[ENTRY + 4..ENTRY + 8].copy_from_slice(&10u32.to_le_bytes());
    cases.push((
        "a position inside the first message",
        batch.encode(),
        &[error::MISSING_INDEX, error::INVALID_MESSAGES_SIZE],
    ));

    let mut batch = good_batch(stream, topic);
    batch.messages.extend_from_slice(&[0u8; 40]);
    cases.push((
        "trailing bytes after the last message",
        batch.encode(),
        &[error::MISSING_INDEX, error::INVALID_MESSAGES_SIZE],
    ));

    let mut batch = good_batch(stream, topic);
    batch.messages.truncate(batch.messages.len() - 1);
    let end = batch.messages.len() as u32;
    batch.index[2 * ENTRY + 4..2 * ENTRY + 8].copy_from_slice(&end.to_le_bytes());
    cases.push((
        "the last message one byte short",
        batch.encode(),
        &[error::MISSING_INDEX, error::INVALID_MESSAGES_SIZE],
    ));
    cases
}

/// A count the index does not cover, and index entries with non-zero offsets or timestamps.
fn index_entry_cases(stream: u32, topic: u32) -> Vec<SendCase> {
    let mut cases: Vec<SendCase> = Vec::new();
    let mut batch = good_batch(stream, topic);
    batch.count = 4;
    // The 4th "index entry" is then the first 16 bytes of the messages block: any rejection will do.
    cases.push((
        "count larger than the index",
        batch.encode(),
        &[
            error::MISSING_INDEX,
            error::INVALID_MESSAGES_SIZE,
            4034,
            4035,
            error::NON_ZERO_OFFSET,
            error::NON_ZERO_TIMESTAMP,
            error::INVALID_COMMAND,
            error::INVALID_FORMAT,
        ],
    ));

    let mut batch = good_batch(stream, topic);
    batch.index[ENTRY..ENTRY + 4].copy_from_slice(&1u32.to_le_bytes());
    cases.push((
        "non-zero offset in the index",
        batch.encode(),
        &[error::NON_ZERO_OFFSET],
    ));

    let mut batch = good_batch(stream, topic);
    batch.index[8..16].copy_from_slice(&5u64.to_le_bytes());
    cases.push((
        "non-zero timestamp in the index",
        batch.encode(),
        &[error::NON_ZERO_TIMESTAMP],
    ));
    cases
}

/// Messages whose own header is too short, or declares more than the block or the limits hold.
fn message_cases(stream: u32, topic: u32) -> Vec<SendCase> {
    let mut cases: Vec<SendCase> = Vec::new();
    let mut batch = good_batch(stream, topic);
    batch.count = 1;
    batch.messages = vec![0u8; 32];
    batch.index = [0u32.to_le_bytes(), 32u32.to_le_bytes()].concat();
    batch.index.extend_from_slice(&0u64.to_le_bytes());
    cases.push((
        "a message shorter than its 64-byte header",
        batch.encode(),
        &[error::TOO_SMALL_MESSAGE, error::MISSING_INDEX],
    ));

    let mut batch = good_batch(stream, topic);
    batch.messages[52..56].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push((
        "a payload length far past the block",
        batch.encode(),
        &[error::MISSING_INDEX, error::INVALID_MESSAGES_SIZE, 4022],
    ));

    let mut batch = good_batch(stream, topic);
    let mut huge_headers = Vec::new();
    encode_message(0, 0, b"p", &vec![1u8; 100_001], &mut huge_headers);
    batch.count = 1;
    batch.index = [
        0u32.to_le_bytes(),
        (huge_headers.len() as u32).to_le_bytes(),
    ]
    .concat();
    batch.index.extend_from_slice(&0u64.to_le_bytes());
    batch.messages = huge_headers;
    cases.push(("user headers over 100,000 bytes", batch.encode(), &[4017]));
    cases
}

/// Bad fields around the batch: the stream identifier, the partitioning, the metadata length.
fn envelope_cases(stream: u32, topic: u32) -> Vec<SendCase> {
    let mut cases: Vec<SendCase> = Vec::new();
    let mut batch = good_batch(stream, topic);
    batch.stream = vec![1, 2, 0, 0];
    cases.push((
        "numeric stream identifier of length 2",
        batch.encode(),
        &[error::INVALID_IDENTIFIER],
    ));

    let mut batch = good_batch(stream, topic);
    batch.partitioning = vec![7, 0];
    cases.push((
        "unknown partitioning kind",
        batch.encode(),
        &[
            error::INVALID_COMMAND,
            error::INVALID_FORMAT,
            error::INVALID_IDENTIFIER,
        ],
    ));

    let mut too_long_metadata = good_batch(stream, topic).encode();
    too_long_metadata[0..4].copy_from_slice(&100_000u32.to_le_bytes());
    cases.push((
        "metadata_length larger than the payload",
        too_long_metadata,
        &[error::INVALID_COMMAND],
    ));

    cases.push((
        "payload shorter than metadata_length's own 4 bytes",
        vec![1, 0],
        &[error::INVALID_COMMAND],
    ));
    cases
}

/// Exactly the two good batches are stored, at offsets 0 to 5.
fn assert_only_good_batches_stored(conn: &mut RawConn, stream: u32, topic: u32) {
    let polled = raw::poll(conn, stream, topic, 0, 0, 100);
    let offsets: Vec<u64> = polled.messages.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..6).collect::<Vec<u64>>());
    let payloads: Vec<&[u8]> = polled
        .messages
        .iter()
        .map(|(_, payload)| payload.as_slice())
        .collect();
    assert_eq!(
        payloads,
        [
            b"first".as_slice(),
            b"second message",
            b"3",
            b"first",
            b"second message",
            b"3"
        ]
    );
}

#[test]
fn oversized_control_payload_is_drained_or_closes_only_that_connection() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let mut conn = RawConn::connect_logged_in(server.addr);

    let payload_len = CONTROL_PAYLOAD_BYTES_MAX + 1;
    let mut header = ((4 + payload_len) as u32).to_le_bytes().to_vec();
    header.extend_from_slice(&code::GET_STREAMS.to_le_bytes());
    conn.send_bytes(&header);
    // The payload goes out from another thread: the server may answer first, drain, or close.
    let mut writer = conn.try_clone_writer();
    let sender = thread::spawn(move || writer.write_all(&vec![0x5A; payload_len]).is_ok());
    let response = conn.try_read_response();
    let payload_sent = sender.join().expect("writer thread");
    match response {
        Ok(response) => {
            response.assert_error(error::INVALID_COMMAND);
            if payload_sent {
                // Either the server drained the payload and still answers, or it closed.
                conn.send_frame(code::PING, &[]);
                match conn.try_read_response() {
                    Ok(pong) => assert_eq!(
                        (pong.status, pong.payload.len()),
                        (0, 0),
                        "ping after a drained oversized frame"
                    ),
                    Err(_) => conn.expect_closed(Duration::from_secs(10)),
                }
            } else {
                conn.expect_closed(Duration::from_secs(10));
            }
        }
        // Closing without an answer is tolerated only as a close, never as a hang.
        Err(error) => assert!(
            !matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "no answer to an oversized control frame: {error}"
        ),
    }

    bystander.ping();
    let mut fresh = RawConn::connect_logged_in(server.addr);
    fresh.ping();
    raw::create_stream(&mut fresh, "still-works");
    bystander
        .request(code::GET_STREAM, &id_named("still-works"))
        .ok();
}

#[test]
fn fragmented_pipelined_and_abandoned_frames() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);

    // A login and a ping sent one byte per write.
    let mut slow = RawConn::connect(server.addr);
    let mut bytes = frame(code::LOGIN_USER, &raw::login_payload("iggy", "iggy"));
    bytes.extend(frame(code::PING, &[]));
    for byte in &bytes {
        slow.send_bytes(std::slice::from_ref(byte));
    }
    assert_eq!(slow.read_response().ok(), 0u32.to_le_bytes());
    assert!(slow.read_response().ok().is_empty());

    // Many requests in one write get their answers in order.
    let mut pipelined = RawConn::connect(server.addr);
    let mut bytes = frame(code::GET_STREAMS, &[]); // 40: not logged in yet
    bytes.extend(frame(code::LOGIN_USER, &raw::login_payload("iggy", "iggy")));
    bytes.extend(frame(code::CREATE_STREAM, &str8(b"piped")));
    bytes.extend(frame(7777, &[1, 2, 3]));
    bytes.extend(frame(code::GET_STREAM, &id_named("piped")));
    bytes.extend(frame(code::PING, &[]));
    pipelined.send_bytes(&bytes);
    pipelined
        .read_response()
        .assert_error(error::UNAUTHENTICATED);
    assert_eq!(pipelined.read_response().ok(), 0u32.to_le_bytes());
    let created = pipelined.read_response().ok();
    pipelined
        .read_response()
        .assert_error(error::INVALID_COMMAND);
    assert_eq!(
        pipelined.read_response().ok(),
        created,
        "GetStream returns what CreateStream did"
    );
    assert!(pipelined.read_response().ok().is_empty());

    // Connections that vanish mid-frame harm nobody.
    for cut in [3usize, 8, 20] {
        let mut abandoned = RawConn::connect_logged_in(server.addr);
        let batch = SendMessages::new(0, 0, 0, &[b"never completed"]).encode();
        abandoned.send_bytes(&frame(code::SEND_MESSAGES, &batch)[..cut]);
        drop(abandoned);
        bystander.ping();
    }
    let mut header_only = RawConn::connect(server.addr);
    header_only.send_bytes(&frame(code::CREATE_STREAM, &str8(b"half"))[..10]);
    drop(header_only);

    bystander.ping();
    let streams = bystander.request(code::GET_STREAMS, &[]).ok();
    assert_eq!(
        streams.len(),
        33 + "piped".len(),
        "only the piped stream exists: {streams:02x?}"
    );
}

#[test]
fn send_payload_over_the_configured_limit_is_drained_and_rejected() {
    let server = TestServer::start(&["--set", "limits.send_payload_bytes_max=65536"]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let mut conn = RawConn::connect_logged_in(server.addr);
    let stream = raw::create_stream(&mut conn, "limited");
    let topic = raw::create_topic(&mut conn, stream, "t", 1);
    let big = vec![0x42u8; 40_000];
    let too_big = SendMessages::new(stream, topic, 0, &[&big, &big]).encode();
    assert!(too_big.len() > 65_536);
    conn.request(code::SEND_MESSAGES, &too_big)
        .assert_error(error::INVALID_COMMAND);
    conn.ping();
    bystander.ping();
    let fits = SendMessages::new(stream, topic, 0, &[&big]).encode();
    conn.request(code::SEND_MESSAGES, &fits).ok();
    let polled = raw::poll(&mut conn, stream, topic, 0, 0, 10);
    assert_eq!(
        polled.messages.len(),
        1,
        "only the batch within the limit was stored"
    );
}

#[test]
fn clients_that_vanish_after_an_absurd_length_harm_nobody() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    for command in [code::GET_STREAMS, code::SEND_MESSAGES, 7777] {
        let mut conn = RawConn::connect_logged_in(server.addr);
        let mut header = u32::MAX.to_le_bytes().to_vec();
        header.extend_from_slice(&command.to_le_bytes());
        header.extend_from_slice(&[0u8; 1000]);
        conn.send_bytes(&header);
        drop(conn);
        bystander.ping();
    }
    let mut fresh = RawConn::connect_logged_in(server.addr);
    fresh.ping();
    raw::create_stream(&mut fresh, "fine");
}

#[test]
fn an_oversized_frame_is_refused_before_its_payload_arrives() {
    let server = TestServer::start(&[]);
    let mut conn = RawConn::connect_logged_in(server.addr);
    // Declares ~4 GiB and sends none of it: the answer must not wait for the payload.
    let mut header = u32::MAX.to_le_bytes().to_vec();
    header.extend_from_slice(&code::GET_STREAMS.to_le_bytes());
    conn.send_bytes(&header);
    conn.try_read_response()
        .expect("answered before the payload arrives")
        .assert_error(error::INVALID_COMMAND);
    let mut other = RawConn::connect_logged_in(server.addr);
    other.ping();
}

/// Measured before the 0.9 framing: an anonymous client sending 8 MB of zero bytes made the
/// server answer and log once per 8 bytes (500,432 warnings, 66 MB of log). Four zero bytes
/// now open a 0.9 connection, whose first header declares size 0: it cannot be framed, so the
/// connection is closed at once with one log line, whatever follows.
#[test]
fn a_flood_of_zero_bytes_is_one_closed_connection_and_one_log_line() {
    let server = TestServer::start(&[]);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    let mut flood = RawConn::connect(server.addr);
    let zeros = vec![0u8; 1024 * 1024];
    for _ in 0..8 {
        // The server may close before the whole flood is written.
        if flood.try_send_bytes(&zeros).is_err() {
            break;
        }
    }
    flood.expect_closed(Duration::from_secs(10));
    bystander.ping();
    let logs = server.logs();
    let lines = logs
        .lines()
        .filter(|line| line.contains("framing broken"))
        .count();
    assert_eq!(lines, 1, "{logs}");
    assert!(logs.lines().count() < 100, "{logs}");
}

/// A client that sends nothing but refused requests causes at most a bounded number of log
/// lines (the connection's budget), then one line counting what was suppressed when it ends.
#[test]
fn refusals_are_logged_within_a_bounded_budget() {
    let server = TestServer::start(&[]);
    let mut conn = RawConn::connect(server.addr);
    for _ in 0..1_000 {
        conn.request(code::GET_STREAMS, &[])
            .assert_error(error::UNAUTHENTICATED);
    }
    drop(conn);
    let mut bystander = RawConn::connect_logged_in(server.addr);
    bystander.ping();
    let logs = || server.logs();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !logs().contains("suppressed") {
        assert!(
            Instant::now() < deadline,
            "no suppression count:\n{}",
            logs()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let text = logs();
    let refusals = text.lines().filter(|l| l.contains("not logged in")).count();
    assert!(
        (1..=10).contains(&refusals),
        "{refusals} refusal lines:\n{text}"
    );
    assert!(text.contains("suppressed=990"), "{text}");
}
