//! Encoding helpers for the length-prefixed strings of PROTOCOL.md §0.
//!
//! Encoders run on values galgo built or validated itself, so a string that does not fit its
//! length prefix is a programmer error and panics rather than truncating silently.

use bytes::{BufMut, BytesMut};

use crate::reader::NAME_BYTES_MAX;

/// Appends a `name8`: u8 length 1..=255, then the bytes.
pub fn put_name8(out: &mut BytesMut, name: &str) {
    assert!(
        (1..=NAME_BYTES_MAX).contains(&name.len()),
        "name8 must be 1..=255 bytes, got {}",
        name.len()
    );
    out.put_u8(name.len() as u8);
    out.put_slice(name.as_bytes());
}

/// Appends a `str8`: u8 length 0..=255, then the bytes.
pub fn put_str8(out: &mut BytesMut, text: &str) {
    let len = u8::try_from(text.len()).expect("str8 must be at most 255 bytes");
    out.put_u8(len);
    out.put_slice(text.as_bytes());
}

/// Appends a `str32`: u32 length, then the bytes.
pub fn put_str32(out: &mut BytesMut, text: &str) {
    let len = u32::try_from(text.len()).expect("str32 must fit a u32 length");
    out.put_u32_le(len);
    out.put_slice(text.as_bytes());
}

/// Appends a bool as one byte, 0 or 1.
pub fn put_bool(out: &mut BytesMut, value: bool) {
    out.put_u8(u8::from(value));
}
