//! Any 0.9 body under any command code (galgo-protocol's `vsr::bodies`): decoding never
//! panics, and what decodes re-encodes to a body that decodes to the same request. Reply
//! conversions in both directions never panic either.
#![no_main]

use bytes::{Bytes, BytesMut};
use galgo_protocol::{CommandCode, Request};
use galgo_protocol::vsr::bodies::{decode_reply, decode_request, encode_reply, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let Some(&code) = CommandCode::ALL.get(usize::from(selector) % CommandCode::ALL.len()) else {
        return;
    };
    let _ = decode_reply(code, Bytes::copy_from_slice(body));
    let _ = encode_reply(code, vec![Bytes::copy_from_slice(body)]);
    let Ok(request) = decode_request(code, BytesMut::from(body)) else {
        return;
    };
    let mut encoded = BytesMut::new();
    encode_request(&request, &mut encoded).expect("a decoded request re-encodes");
    let again = decode_request(code, encoded).expect("an encoded request decodes");
    assert_eq!(without_frames(again), without_frames(request), "round trip of a decoded 0.9 request");
});

/// A request without a send's kept frames, which may differ after a round trip: the batch's
/// origin timestamp is re-encoded as its earliest message's.
fn without_frames(mut request: Request) -> Request {
    if let Request::SendMessages(send) = &mut request {
        send.frames = None;
    }
    request
}
