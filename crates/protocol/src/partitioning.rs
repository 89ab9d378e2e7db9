//! How SendMessages picks a partition (PROTOCOL.md §4.4).
//!
//! ```text
//! [kind u8][length u8][value]   1 = balanced (length 0), 2 = partition id (length 4, u32 LE),
//!                               3 = messages key (length 1..=255, raw bytes)
//! ```
//! Partitioning only appears in SendMessages, whose parser reports every malformed partitioning
//! as 3 `InvalidCommand`. An empty key is refused too: the SDK never builds one.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ErrorCode;
use crate::reader::{NAME_BYTES_MAX, Reader};

const KIND_BALANCED: u8 = 1;
const KIND_PARTITION_ID: u8 = 2;
const KIND_MESSAGES_KEY: u8 = 3;

/// How the server chooses the partition of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Partitioning {
    /// Round-robin over the topic's partitions.
    Balanced,
    /// This 0-based partition.
    PartitionId(u32),
    /// [`partition_for_key`] of these 1..=255 bytes.
    MessagesKey(Bytes),
}

impl Partitioning {
    /// Bytes the partitioning takes on the wire.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Partitioning::Balanced => 0,
            Partitioning::PartitionId(_) => 4,
            Partitioning::MessagesKey(key) => key.len(),
        }
    }

    /// Appends the partitioning. Panics on a key that is empty or over 255 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Partitioning::Balanced => {
                out.put_u8(KIND_BALANCED);
                out.put_u8(0);
            }
            Partitioning::PartitionId(id) => {
                out.put_u8(KIND_PARTITION_ID);
                out.put_u8(4);
                out.put_u32_le(*id);
            }
            Partitioning::MessagesKey(key) => {
                assert!(
                    (1..=NAME_BYTES_MAX).contains(&key.len()),
                    "messages key is 1..=255 bytes"
                );
                out.put_u8(KIND_MESSAGES_KEY);
                out.put_u8(key.len() as u8);
                out.put_slice(key);
            }
        }
    }

    /// Reads a partitioning; anything malformed is 3 `InvalidCommand`.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let start = reader.clone();
        let result = Self::decode_fields(reader);
        if result.is_err() {
            *reader = start;
        }
        result
    }

    fn decode_fields(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let kind = reader.u8()?;
        let length = reader.u8()?;
        match (kind, length) {
            (KIND_BALANCED, 0) => Ok(Partitioning::Balanced),
            (KIND_PARTITION_ID, 4) => reader.u32().map(Partitioning::PartitionId),
            (KIND_MESSAGES_KEY, 1..) => {
                let key = reader.bytes(usize::from(length))?;
                Ok(Partitioning::MessagesKey(Bytes::copy_from_slice(key)))
            }
            _ => Err(ErrorCode::InvalidCommand),
        }
    }
}

/// The partition a messages key maps to: XXH32 (seed 0) of the key, modulo the count.
/// The caller guarantees `partitions_count > 0` (an empty topic is 3008 `NoPartitions`).
pub fn partition_for_key(key: &[u8], partitions_count: u32) -> u32 {
    assert!(
        partitions_count > 0,
        "a topic without partitions has no partition for a key"
    );
    xxhash_rust::xxh32::xxh32(key, 0) % partitions_count
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any valid partitioning.
    pub(crate) fn any_partitioning() -> impl Strategy<Value = Partitioning> {
        prop_oneof![
            Just(Partitioning::Balanced),
            any::<u32>().prop_map(Partitioning::PartitionId),
            proptest::collection::vec(any::<u8>(), 1..=255)
                .prop_map(|key| Partitioning::MessagesKey(key.into())),
        ]
    }

    #[test]
    fn encodings_are_byte_exact() {
        let mut out = BytesMut::new();
        Partitioning::Balanced.encode(&mut out);
        Partitioning::PartitionId(2).encode(&mut out);
        Partitioning::MessagesKey(Bytes::from_static(b"k")).encode(&mut out);
        assert_eq!(&out[..], [1, 0, 2, 4, 2, 0, 0, 0, 3, 1, b'k']);
    }

    #[test]
    fn malformed_partitionings_are_invalid_command() {
        let cases: [&[u8]; 7] = [
            &[],
            &[1],
            &[1, 1, 0],
            &[2, 3, 0, 0, 0],
            &[2, 4, 0],
            &[3, 0],
            &[4, 0],
        ];
        for bytes in cases {
            let mut reader = Reader::new(bytes);
            assert_eq!(
                Partitioning::decode(&mut reader),
                Err(ErrorCode::InvalidCommand),
                "{bytes:?}"
            );
            assert_eq!(reader.position(), 0);
        }
    }

    #[test]
    fn key_routing_is_xxh32_modulo() {
        let hash = xxhash_rust::xxh32::xxh32(b"user-1", 0);
        assert_eq!(partition_for_key(b"user-1", 3), hash % 3);
        assert_eq!(partition_for_key(b"anything", 1), 0);
    }

    proptest! {
        #[test]
        fn round_trips(partitioning in any_partitioning()) {
            let mut out = BytesMut::new();
            partitioning.encode(&mut out);
            prop_assert_eq!(out.len(), partitioning.encoded_len());
            prop_assert_eq!(Partitioning::decode(&mut Reader::new(&out)), Ok(partitioning));
        }
    }
}
