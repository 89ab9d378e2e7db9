//! Consumer offset commands (PROTOCOL.md §5.7).
//!
//! All three requests start `Consumer | Id stream | Id topic | partition_flag u8 |
//! partition_id u32`; StoreConsumerOffset adds `offset u64`.

use bytes::{BufMut, BytesMut};

use super::decode_with;
use crate::consumer::Consumer;
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::partition_flag::{decode_optional_partition, encode_optional_partition};
use crate::reader::Reader;

/// The part every offset command shares: whose offset, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetTarget {
    /// The consumer or group.
    pub consumer: Consumer,
    /// The stream.
    pub stream: Identifier,
    /// The topic.
    pub topic: Identifier,
    /// The partition; absent means partition 0 for a single consumer (see §5.7 for groups).
    pub partition_id: Option<u32>,
}

impl OffsetTarget {
    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            consumer: Consumer::decode(reader)?,
            stream: Identifier::decode(reader)?,
            topic: Identifier::decode(reader)?,
            partition_id: decode_optional_partition(reader)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        self.consumer.encode(out);
        self.stream.encode(out);
        self.topic.encode(out);
        encode_optional_partition(self.partition_id, out);
    }
}

/// Reads a stored offset (code 120). Response: [`ConsumerOffsetInfo`], or empty when nothing
/// is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetConsumerOffset {
    /// Whose offset, and where.
    pub target: OffsetTarget,
}

/// Deletes a stored offset (code 122). Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteConsumerOffset {
    /// Whose offset, and where.
    pub target: OffsetTarget,
}

impl GetConsumerOffset {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                target: OffsetTarget::read(reader)?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.target.encode(out);
    }
}

impl DeleteConsumerOffset {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                target: OffsetTarget::read(reader)?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.target.encode(out);
    }
}

/// Stores an offset (code 121). Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConsumerOffset {
    /// Whose offset, and where.
    pub target: OffsetTarget,
    /// The offset to store; at most the partition's current offset.
    pub offset: u64,
}

impl StoreConsumerOffset {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                target: OffsetTarget::read(reader)?,
                offset: reader.u64()?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.target.encode(out);
        out.put_u64_le(self.offset);
    }
}

/// Bytes of a [`ConsumerOffsetInfo`].
pub const CONSUMER_OFFSET_INFO_BYTES: usize = 20;

/// The GetConsumerOffset response: `partition_id u32 | current_offset u64 | stored_offset u64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsumerOffsetInfo {
    /// The partition.
    pub partition_id: u32,
    /// The partition's last offset.
    pub current_offset: u64,
    /// The stored offset.
    pub stored_offset: u64,
}

impl ConsumerOffsetInfo {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.partition_id);
        out.put_u64_le(self.current_offset);
        out.put_u64_le(self.stored_offset);
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            Ok(Self {
                partition_id: reader.u32()?,
                current_offset: reader.u64()?,
                stored_offset: reader.u64()?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_support::encoded;

    fn target(partition_id: Option<u32>) -> OffsetTarget {
        OffsetTarget {
            consumer: Consumer::Single(Identifier::Name("worker".into())),
            stream: Identifier::Numeric(0),
            topic: Identifier::Numeric(1),
            partition_id,
        }
    }

    #[test]
    fn requests_round_trip() {
        let get = GetConsumerOffset {
            target: target(Some(2)),
        };
        let bytes = encoded(|out| get.encode(out));
        assert_eq!(bytes.len(), 1 + 8 + 6 + 6 + 5);
        assert_eq!(GetConsumerOffset::decode(&bytes), Ok(get));
        let delete = DeleteConsumerOffset {
            target: target(None),
        };
        assert_eq!(
            DeleteConsumerOffset::decode(&encoded(|out| delete.encode(out))),
            Ok(delete)
        );
        let store = StoreConsumerOffset {
            target: target(Some(0)),
            offset: 41,
        };
        let bytes = encoded(|out| store.encode(out));
        assert_eq!(&bytes[bytes.len() - 8..], [41, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(StoreConsumerOffset::decode(&bytes), Ok(store));
        assert_eq!(
            StoreConsumerOffset::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn response_is_20_bytes() {
        let info = ConsumerOffsetInfo {
            partition_id: 1,
            current_offset: 9,
            stored_offset: 4,
        };
        let bytes = encoded(|out| info.encode(out));
        assert_eq!(bytes.len(), CONSUMER_OFFSET_INFO_BYTES);
        assert_eq!(ConsumerOffsetInfo::decode(&bytes), Ok(info));
    }
}
