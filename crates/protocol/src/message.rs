//! The message layout (PROTOCOL.md §6.1): identical on the wire, in memory and on disk.
//!
//! ```text
//! 0  checksum u64 | 8 id u128 | 24 offset u64 | 32 timestamp u64 | 40 origin_timestamp u64
//! 48 user_headers_length u32 | 52 payload_length u32 | 56 reserved u64 | 64 payload | user headers
//! ```

/// Size of the fixed message header.
pub const MESSAGE_HEADER_BYTES: usize = 64;
/// Largest payload the server accepts in one message (`MAX_PAYLOAD_SIZE`).
pub const MESSAGE_PAYLOAD_BYTES_MAX: u32 = 64_000_000;
/// Largest user-headers block the server accepts in one message.
pub const USER_HEADERS_BYTES_MAX: u32 = 100_000;

/// Byte position of the checksum field.
pub const CHECKSUM_AT: usize = 0;
/// Byte position of the id field.
pub const ID_AT: usize = 8;
/// Byte position of the offset field.
pub const OFFSET_AT: usize = 24;
/// Byte position of the server timestamp field.
pub const TIMESTAMP_AT: usize = 32;
/// Byte position of the origin timestamp field.
pub const ORIGIN_TIMESTAMP_AT: usize = 40;
/// Byte position of the user-headers length field.
pub const USER_HEADERS_LENGTH_AT: usize = 48;
/// Byte position of the payload length field.
pub const PAYLOAD_LENGTH_AT: usize = 52;
/// Byte position of the reserved field.
pub const RESERVED_AT: usize = 56;

const _: () = assert!(RESERVED_AT + 8 == MESSAGE_HEADER_BYTES);

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A read-only view of one whole message (header, payload and user headers).
#[derive(Clone, Copy, Debug)]
pub struct MessageView<'a> {
    bytes: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Views the message at the start of `bytes`, or `None` when `bytes` does not hold a
    /// complete message (a header and the payload and user headers it declares).
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() < MESSAGE_HEADER_BYTES {
            return None;
        }
        let size = MESSAGE_HEADER_BYTES as u64
            + u64::from(u32_at(bytes, PAYLOAD_LENGTH_AT))
            + u64::from(u32_at(bytes, USER_HEADERS_LENGTH_AT));
        if (bytes.len() as u64) < size {
            return None;
        }
        Some(Self {
            bytes: &bytes[..size as usize],
        })
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Total size in bytes: 64 + payload + user headers.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }
    /// The stored checksum.
    pub fn checksum(&self) -> u64 {
        u64_at(self.bytes, CHECKSUM_AT)
    }
    /// The message id.
    pub fn id(&self) -> u128 {
        u128::from_le_bytes(self.bytes[ID_AT..ID_AT + 16].try_into().expect("16 bytes"))
    }
    /// The server-assigned offset.
    pub fn offset(&self) -> u64 {
        u64_at(self.bytes, OFFSET_AT)
    }
    /// The server-assigned timestamp (µs since the epoch).
    pub fn timestamp(&self) -> u64 {
        u64_at(self.bytes, TIMESTAMP_AT)
    }
    /// The client's origin timestamp (µs since the epoch).
    pub fn origin_timestamp(&self) -> u64 {
        u64_at(self.bytes, ORIGIN_TIMESTAMP_AT)
    }
    /// Length of the payload.
    pub fn payload_length(&self) -> u32 {
        u32_at(self.bytes, PAYLOAD_LENGTH_AT)
    }
    /// Length of the user headers.
    pub fn user_headers_length(&self) -> u32 {
        u32_at(self.bytes, USER_HEADERS_LENGTH_AT)
    }
    /// The reserved field, which must be 0.
    pub fn reserved(&self) -> u64 {
        u64_at(self.bytes, RESERVED_AT)
    }
    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[MESSAGE_HEADER_BYTES..MESSAGE_HEADER_BYTES + self.payload_length() as usize]
    }
    /// The raw user-header bytes (TLV, PROTOCOL.md §4.8), never parsed by the server.
    pub fn user_headers(&self) -> &'a [u8] {
        &self.bytes[MESSAGE_HEADER_BYTES + self.payload_length() as usize..]
    }
    /// True when the stored checksum matches the message bytes.
    pub fn checksum_is_valid(&self) -> bool {
        self.checksum() == checksum(self.bytes)
    }
}

/// XXH3-64 (seed 0) over everything but the checksum field itself.
pub fn checksum(message: &[u8]) -> u64 {
    xxh3_64(&message[CHECKSUM_AT + 8..])
}

/// XXH3-64 with seed 0 and the default secret, the hash of every message and frame checksum
/// of both generations; twox-hash chooses its AVX2 path at run time.
pub fn xxh3_64(input: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(input)
}

/// Fills in the server's fields of one message in place: offset, timestamp, an id when the
/// client sent 0 (taken from `generate_id`), and finally the checksum over the result.
///
/// `message` must be exactly one whole message.
pub fn stamp(message: &mut [u8], offset: u64, timestamp: u64, generate_id: impl FnOnce() -> u128) {
    debug_assert!(MessageView::parse(message).is_some_and(|view| view.size() == message.len()));
    if message[ID_AT..ID_AT + 16].iter().all(|&byte| byte == 0) {
        message[ID_AT..ID_AT + 16].copy_from_slice(&generate_id().to_le_bytes());
    }
    message[OFFSET_AT..OFFSET_AT + 8].copy_from_slice(&offset.to_le_bytes());
    message[TIMESTAMP_AT..TIMESTAMP_AT + 8].copy_from_slice(&timestamp.to_le_bytes());
    let sum = checksum(message);
    message[CHECKSUM_AT..CHECKSUM_AT + 8].copy_from_slice(&sum.to_le_bytes());
}

/// Appends one message as a client sends it: checksum, offset and timestamp 0.
pub fn encode_message(
    id: u128,
    origin_timestamp: u64,
    payload: &[u8],
    user_headers: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&origin_timestamp.to_le_bytes());
    out.extend_from_slice(&(user_headers.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(user_headers);
}

/// Walks a block of back-to-back messages. Yields `Err(position)` once, at the byte position
/// where the block stops holding a complete message, and then ends.
#[derive(Clone, Debug)]
pub struct MessageIter<'a> {
    block: &'a [u8],
    position: usize,
    failed: bool,
}

impl<'a> MessageIter<'a> {
    /// Iterates over `block`.
    pub fn new(block: &'a [u8]) -> Self {
        Self {
            block,
            position: 0,
            failed: false,
        }
    }
    /// Byte position of the next message in the block.
    pub fn position(&self) -> usize {
        self.position
    }
}

impl<'a> Iterator for MessageIter<'a> {
    type Item = Result<MessageView<'a>, usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position == self.block.len() {
            return None;
        }
        match MessageView::parse(&self.block[self.position..]) {
            Some(view) => {
                self.position += view.size();
                Some(Ok(view))
            }
            None => {
                self.failed = true;
                Some(Err(self.position))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_sets_server_fields_and_a_valid_checksum() {
        let mut block = Vec::new();
        encode_message(0, 7, b"hello", b"", &mut block);
        stamp(&mut block, 42, 1_000, || 99);
        let view = MessageView::parse(&block).expect("complete");
        assert_eq!(
            (
                view.offset(),
                view.timestamp(),
                view.id(),
                view.origin_timestamp()
            ),
            (42, 1_000, 99, 7)
        );
        assert_eq!(view.payload(), b"hello");
        assert!(view.checksum_is_valid());
        block[MESSAGE_HEADER_BYTES] ^= 1;
        assert!(
            !MessageView::parse(&block)
                .expect("complete")
                .checksum_is_valid()
        );
    }

    #[test]
    fn stamp_keeps_a_client_id() {
        let mut block = Vec::new();
        encode_message(5, 0, b"x", b"\x02\x01\x00\x00\x00k", &mut block);
        stamp(&mut block, 0, 0, || unreachable!("the client chose an id"));
        assert_eq!(MessageView::parse(&block).expect("complete").id(), 5);
    }

    #[test]
    fn iterator_reports_a_torn_tail() {
        let mut block = Vec::new();
        encode_message(1, 0, b"one", b"", &mut block);
        encode_message(2, 0, b"two", b"", &mut block);
        let whole = block.len();
        block.truncate(whole - 1);
        let items: Vec<_> = MessageIter::new(&block).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().err(), Some(&(MESSAGE_HEADER_BYTES + 3)));
    }
}
