//! Consumers (PROTOCOL.md §4.2): who polls and whose offsets are stored.
//!
//! ```text
//! [kind u8][Identifier]   kind 1 = single consumer, kind 2 = consumer group
//! ```

use bytes::{BufMut, BytesMut};

use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::reader::Reader;

const KIND_SINGLE: u8 = 1;
const KIND_GROUP: u8 = 2;

/// A single consumer or a consumer group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Consumer {
    /// A lone consumer; its offsets are keyed by [`consumer_key`].
    Single(Identifier),
    /// An existing consumer group, by id or name.
    Group(Identifier),
}

impl Consumer {
    /// The consumer's identifier, whichever kind it is.
    pub fn id(&self) -> &Identifier {
        match self {
            Consumer::Single(id) | Consumer::Group(id) => id,
        }
    }

    /// Bytes the consumer takes on the wire.
    pub fn encoded_len(&self) -> usize {
        1 + self.id().encoded_len()
    }

    /// Appends the consumer.
    pub fn encode(&self, out: &mut BytesMut) {
        let kind = match self {
            Consumer::Single(_) => KIND_SINGLE,
            Consumer::Group(_) => KIND_GROUP,
        };
        out.put_u8(kind);
        self.id().encode(out);
    }

    /// Reads a consumer; an unknown kind is 3 `InvalidCommand`.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let start = reader.clone();
        let kind = reader.u8()?;
        let result = match kind {
            KIND_SINGLE => Identifier::decode(reader).map(Consumer::Single),
            KIND_GROUP => Identifier::decode(reader).map(Consumer::Group),
            _ => Err(ErrorCode::InvalidCommand),
        };
        if result.is_err() {
            *reader = start;
        }
        result
    }
}

/// The integer key of a single consumer's stored offsets: the numeric id itself, or XXH32
/// (seed 0) of the name's bytes.
pub fn consumer_key(id: &Identifier) -> u32 {
    match id {
        Identifier::Numeric(id) => *id,
        Identifier::Name(name) => xxhash_rust::xxh32::xxh32(name.as_bytes(), 0),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identifier::tests::any_identifier;
    use proptest::prelude::*;

    /// Any valid consumer.
    pub(crate) fn any_consumer() -> impl Strategy<Value = Consumer> {
        prop_oneof![
            any_identifier().prop_map(Consumer::Single),
            any_identifier().prop_map(Consumer::Group),
        ]
    }

    #[test]
    fn encodes_kind_then_identifier() {
        let mut out = BytesMut::new();
        Consumer::Group(Identifier::Numeric(3)).encode(&mut out);
        assert_eq!(&out[..], [2, 1, 4, 3, 0, 0, 0]);
    }

    #[test]
    fn unknown_kind_is_invalid_command() {
        for kind in [0, 3, 255] {
            let bytes = [kind, 1, 4, 0, 0, 0, 0];
            let mut reader = Reader::new(&bytes);
            assert_eq!(
                Consumer::decode(&mut reader),
                Err(ErrorCode::InvalidCommand)
            );
            assert_eq!(reader.position(), 0);
        }
    }

    #[test]
    fn keys_are_the_id_or_the_name_hash() {
        assert_eq!(consumer_key(&Identifier::Numeric(42)), 42);
        let name = Identifier::Name("worker".into());
        assert_eq!(consumer_key(&name), xxhash_rust::xxh32::xxh32(b"worker", 0));
    }

    proptest! {
        #[test]
        fn round_trips(consumer in any_consumer()) {
            let mut out = BytesMut::new();
            consumer.encode(&mut out);
            prop_assert_eq!(out.len(), consumer.encoded_len());
            prop_assert_eq!(Consumer::decode(&mut Reader::new(&out)), Ok(consumer));
        }
    }
}
