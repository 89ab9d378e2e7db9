//! A damaged metadata-log tail: garbage after the last record, or a record cut short, is
//! dropped at start-up (and logged); every stream and topic committed before it is restored,
//! and new changes append after it.

mod support;

use std::io::Write;

use support::{
    TestServer,
    raw::{self, RawConn, code},
};

fn metadata_log(server: &TestServer) -> std::path::PathBuf {
    server.data_dir.join("state").join("metadata.log")
}

fn stream_names(server: &TestServer) -> Vec<String> {
    let mut conn = RawConn::connect_logged_in(server.addr);
    let payload = conn.request(code::GET_STREAMS, &[]).ok();
    galgo_protocol::command::streams::StreamHeader::decode_list(&payload)
        .expect("stream headers")
        .into_iter()
        .map(|header| header.name)
        .collect()
}

fn damage_and_restart(damage: impl FnOnce(&std::path::Path)) {
    let mut server = TestServer::start(&[]);
    {
        let mut conn = RawConn::connect_logged_in(server.addr);
        raw::create_stream(&mut conn, "kept-1");
        raw::create_stream(&mut conn, "kept-2");
        raw::create_topic(&mut conn, 1, "kept-topic", 2);
    }
    server.stop();
    damage(&metadata_log(&server));
    server.restart();
    assert_eq!(stream_names(&server), ["kept-1", "kept-2"]);
    let mut conn = RawConn::connect_logged_in(server.addr);
    raw::create_stream(&mut conn, "after-repair");
    server.restart();
    assert_eq!(stream_names(&server), ["kept-1", "kept-2", "after-repair"]);
    assert!(
        server
            .logs()
            .contains("truncating a torn or corrupt metadata log tail"),
        "the repair is logged:\n{}",
        server.logs()
    );
}

#[test]
fn garbage_after_the_last_record_is_dropped() {
    damage_and_restart(|path| {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        file.write_all(&[0xFF; 37]).expect("append garbage");
    });
}

#[test]
fn a_record_cut_short_is_dropped() {
    // Write one more change, then cut it in half: it was never acknowledged as complete.
    damage_and_restart(|path| {
        let whole = std::fs::read(path).expect("read");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .expect("open");
        // A header that promises 100 bytes, and 10 of them.
        file.write_all(&100u32.to_le_bytes()).expect("len");
        file.write_all(&[0u8; 8]).expect("checksum");
        file.write_all(&[1u8; 10]).expect("part of a payload");
        assert!(std::fs::metadata(path).expect("stat").len() > whole.len() as u64);
    });
}
