//! The metadata log names its format: a new log starts with the format record, and a log in
//! the layout of an earlier galgo is refused at start-up, with a message that says why and
//! exit code 1, instead of being replayed and misread.

mod support;

use support::{
    TestServer,
    raw::{self, RawConn},
};

/// A whole metadata log written by galgo before log formats (format 1): one record, the root
/// user's creation in the flat layout, framed as `[len u32 LE][xxh3-64 u64 LE][payload]`.
/// The payload is the one `galgo-metadata`'s `log_format` tests refuse.
const FORMAT_1_LOG: &str = "88000000a14e4da9e6b421f3\
    246172676f6e32696424763d3139246d3d31393435362c743d322c703d3124633246736441246147467a6141\
    0101010101010101010100000100000000000000080000000000000069676779ffffffffac000000b0ffffff\
    0100000001000000ccffffff0b00000000401e18240a06000000000000000000000000000000000000000000\
    00000000";

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex"))
        .collect()
}

fn metadata_log(server: &TestServer) -> std::path::PathBuf {
    server.data_dir.join("state").join("metadata.log")
}

#[test]
fn a_new_log_starts_with_its_format_record() {
    let mut server = TestServer::start(&[]);
    raw::create_stream(&mut RawConn::connect_logged_in(server.addr), "kept");
    server.stop();
    let log = std::fs::read(metadata_log(&server)).expect("read the log");
    let format = &log[12..32];
    assert_eq!(
        &log[..4],
        &20u32.to_le_bytes(),
        "the first record is 20 bytes"
    );
    assert_eq!(&format[..18], b"galgo-metadata-log");
    assert_eq!(&format[18..], &2u16.to_le_bytes(), "format 2");
    server.restart();
    let mut conn = RawConn::connect_logged_in(server.addr);
    let streams = conn.request(raw::code::GET_STREAMS, &[]).ok();
    let names: Vec<String> = galgo_protocol::command::streams::StreamHeader::decode_list(&streams)
        .expect("stream headers")
        .into_iter()
        .map(|header| header.name)
        .collect();
    assert_eq!(names, ["kept"]);
}

#[test]
fn a_log_of_the_previous_layout_is_refused_at_start_up() {
    let mut server = TestServer::start(&[]);
    server.stop();
    let old = unhex(FORMAT_1_LOG);
    std::fs::write(metadata_log(&server), &old).expect("write a format 1 log");
    let status = server.restart_expecting_exit();
    assert_eq!(status.code(), Some(1), "logs:\n{}", server.logs());
    assert!(
        server
            .logs()
            .contains("the metadata log is in format 1, written by an earlier galgo"),
        "the refusal says why:\n{}",
        server.logs()
    );
    assert_eq!(
        std::fs::read(metadata_log(&server)).expect("read the log"),
        old,
        "a refused log is left as it was"
    );
}
