//! The 0.9 message batch (galgo-protocol's `vsr::batch`) fed arbitrary bytes: decoding a
//! SendMessages body or a poll reply never panics, and what decodes survives the trip back.
//! A decoded send re-encodes to a body that decodes to the same messages; a decoded poll
//! reply (a valid 0.8 reply), split into chunks anywhere, converts to 0.9 and back unchanged.
//! A decoded send whose frames are kept, stored and polled whole, goes out as those frames
//! and reads back as the stored messages.
#![no_main]

use bytes::{Bytes, BytesMut};
use galgo_protocol::{
    command::messages::{PolledMessagesHeader, SendMessages},
    message::{MessageIter, stamp},
    vsr::batch::{
        SendConfirmation, decode_polled, decode_send, encode_polled,
        encode_polled_keeping, encode_send_block,
    },
};
use libfuzzer_sys::fuzz_target;

/// Stores a decoded send as the server does (offsets from 100, one timestamp) and polls it
/// whole with its kept frames: the 0.9 reply must read back as the stored messages.
fn serve_kept(send: &SendMessages) {
    let Some(frames) = &send.frames else {
        return;
    };
    let mut head = BytesMut::new();
    PolledMessagesHeader {
        partition_id: 1,
        current_offset: 0,
        messages_count: send.messages_count,
    }
    .encode(&mut head);
    let mut reply_0_8 = head.to_vec();
    for (k, message) in MessageIter::new(&send.messages).enumerate() {
        let mut bytes = message.expect("a decoded block holds whole messages").as_bytes().to_vec();
        stamp(&mut bytes, 100 + k as u64, 5_000, || unreachable!("kept frames have ids"));
        reply_0_8.extend_from_slice(&bytes);
    }
    let chunks = [head.freeze(), Bytes::copy_from_slice(&reply_0_8[16..])];
    let whole = (0, send.messages_count);
    let kept = [frames
        .record(whole, (0, send.messages.len()), 1, 100, 5_000)
        .expect("a sent batch's frames make its record")];
    let reply_0_9 = encode_polled_keeping(&chunks, &kept).expect("kept frames are served");
    let again = decode_polled(&reply_0_9).expect("a served poll reply decodes");
    assert_eq!(&again[..], &reply_0_8[..], "kept frames read back as the stored messages");
}

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
        // The frames may differ: the batch's origin timestamp is re-encoded as the earliest
        // message's.
        let without_frames = |send: &SendMessages| SendMessages { frames: None, ..send.clone() };
        assert_eq!(without_frames(&decoded), without_frames(&send), "round trip of a decoded batch");
        serve_kept(&send);
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
