//! The 0.9 login and options blocks (galgo-protocol's `vsr::register` and `vsr::options`) fed
//! arbitrary bytes: decoding never panics, and what decodes re-encodes to the same bytes.
#![no_main]

use bytes::BytesMut;
use galgo_protocol::Reader;
use galgo_protocol::vsr::options::{Options, TopicOptions, TopicUpdateOptions};
use galgo_protocol::vsr::register::{Register, RegisterReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(options) = Options::decode_tail(data) {
        let mut again = BytesMut::new();
        options.encode_tail(&mut again);
        assert_eq!(&again[..], data, "an options block re-encodes to its bytes");
        if let Ok(topic) = TopicOptions::parse(&options) {
            assert_eq!(TopicOptions::parse(&topic.to_options()), Ok(topic));
        }
        if let Ok(update) = TopicUpdateOptions::parse(&options) {
            assert_eq!(TopicUpdateOptions::parse(&update.to_options()), Ok(update));
        }
    }
    let _ = Options::decode_prefixed(&mut Reader::new(data));
    if let Ok(register) = Register::decode(data) {
        let mut again = BytesMut::new();
        register.encode(&mut again);
        assert_eq!(&again[..], data, "a Register body re-encodes to its bytes");
    }
    let _ = RegisterReply::decode(data);
});
