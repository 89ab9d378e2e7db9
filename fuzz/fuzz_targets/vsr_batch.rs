//! The 0.9 message batch (galgo-protocol's `vsr::batch`) fed arbitrary bytes: decoding a
//! SendMessages body or a poll reply never panics, and what decodes survives the trip back.
//! A decoded send re-encodes to a body that decodes to the same messages; a decoded poll
//! reply (a valid 0.8 reply), split into chunks anywhere, converts to 0.9 and back unchanged.
#![no_main]

use bytes::{Bytes, BytesMut};
use galgo_protocol::vsr::batch::{
    SendConfirmation, decode_polled, decode_send, encode_polled, encode_send_block,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let _ = SendConfirmation::decode_list(body);
    if let Ok(send) = decode_send(BytesMut::from(body)) {
        let mut again = BytesMut::new();
        encode_send_block(&send.stream, &send.topic, &send.partitioning, &send.messages, &mut again)
            .expect("a decoded batch re-encodes");
        let decoded = decode_send(again).expect("a re-encoded batch decodes");
        assert_eq!(decoded, send, "round trip of a decoded batch");
    }
    // The same bytes as 0.8 chunks, split every `step` bytes: never a panic.
    let step = usize::from(step).max(1);
    let chunks: Vec<Bytes> = body.chunks(step).map(Bytes::copy_from_slice).collect();
    let _ = encode_polled(&chunks);
    if let Ok(reply_0_8) = decode_polled(body) {
        let chunks: Vec<Bytes> = reply_0_8.chunks(step).map(Bytes::copy_from_slice).collect();
        let reply_0_9 = encode_polled(&chunks).expect("a decoded poll reply converts");
        let again = decode_polled(&reply_0_9).expect("a converted poll reply decodes");
        assert_eq!(again, reply_0_8, "round trip of a decoded poll reply");
    }
});
