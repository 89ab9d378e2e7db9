//! Any 256 bytes as a 0.9 header (galgo-protocol's `vsr::header`): the request, reply and
//! eviction decoders never panic, and what decodes re-encodes to bytes that decode the same.
#![no_main]

use galgo_protocol::vsr::header::{
    Eviction, HEADER_BYTES, ReplyHeader, RequestHeader, frame_size, split_result,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = split_result(data);
    let Some(bytes) = data.get(..HEADER_BYTES) else {
        return;
    };
    let bytes: [u8; HEADER_BYTES] = bytes.try_into().expect("256 bytes");
    let _ = frame_size(&bytes);
    if let Ok(request) = RequestHeader::decode(&bytes) {
        let mut again = [0; HEADER_BYTES];
        request.encode(&mut again);
        assert_eq!(RequestHeader::decode(&again), Ok(request));
    }
    if let Some(reply) = ReplyHeader::decode(&bytes) {
        let mut again = [0; HEADER_BYTES];
        reply.encode(&mut again);
        assert_eq!(ReplyHeader::decode(&again), Some(reply));
    }
    if let Some(eviction) = Eviction::decode(&bytes) {
        let mut again = [0; HEADER_BYTES];
        eviction.encode(&mut again);
        let decoded = Eviction::decode(&again).expect("an encoded eviction decodes");
        assert_eq!(decoded.reason, eviction.reason);
    }
});
