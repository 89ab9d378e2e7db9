//! Any bytes under any command code: decoding never panics, and what decodes re-encodes to
//! a payload that decodes to the same request.
#![no_main]

use bytes::BytesMut;
use galgo_protocol::{CommandCode, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    // Mostly real codes (so the decoders are reached), sometimes an arbitrary one.
    let code = match CommandCode::ALL.get(usize::from(selector)) {
        Some(code) => code.as_u32(),
        None => u32::from(selector) * 97,
    };
    let Ok(request) = Request::decode(code, BytesMut::from(payload)) else {
        return;
    };
    let mut encoded = BytesMut::new();
    request.encode(&mut encoded);
    let again = Request::decode(code, encoded).expect("an encoded request decodes");
    assert_eq!(again, request, "round trip of a decoded request");
});
