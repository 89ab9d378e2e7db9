//! Where a poll starts (PROTOCOL.md §4.3): always 9 bytes, `[kind u8][value u64]`.

use bytes::{BufMut, BytesMut};

use crate::error::ErrorCode;
use crate::reader::Reader;

/// Bytes a polling strategy takes on the wire.
pub const POLLING_STRATEGY_BYTES: usize = 9;

/// Where a poll starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PollingStrategy {
    /// From this offset.
    Offset(u64),
    /// From the first message whose server timestamp (µs) is at least this.
    Timestamp(u64),
    /// From the partition's first retained message.
    First,
    /// The last `count` messages.
    Last,
    /// After the consumer's stored offset.
    Next,
}

impl PollingStrategy {
    fn kind_and_value(self) -> (u8, u64) {
        match self {
            PollingStrategy::Offset(offset) => (1, offset),
            PollingStrategy::Timestamp(timestamp_us) => (2, timestamp_us),
            PollingStrategy::First => (3, 0),
            PollingStrategy::Last => (4, 0),
            PollingStrategy::Next => (5, 0),
        }
    }

    /// Appends the strategy; kinds without a value send 0, as the SDK does.
    pub fn encode(&self, out: &mut BytesMut) {
        let (kind, value) = self.kind_and_value();
        out.put_u8(kind);
        out.put_u64_le(value);
    }

    /// Reads a strategy; an unknown kind is 3 `InvalidCommand`.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let [kind, value @ ..] = reader.bytes(POLLING_STRATEGY_BYTES)? else {
            unreachable!("bytes() returned 9 bytes");
        };
        let value = u64::from_le_bytes(value.try_into().expect("8 bytes"));
        match kind {
            1 => Ok(PollingStrategy::Offset(value)),
            2 => Ok(PollingStrategy::Timestamp(value)),
            3 => Ok(PollingStrategy::First),
            4 => Ok(PollingStrategy::Last),
            5 => Ok(PollingStrategy::Next),
            _ => Err(ErrorCode::InvalidCommand),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Any strategy.
    pub(crate) fn any_strategy() -> impl Strategy<Value = PollingStrategy> {
        prop_oneof![
            any::<u64>().prop_map(PollingStrategy::Offset),
            any::<u64>().prop_map(PollingStrategy::Timestamp),
            Just(PollingStrategy::First),
            Just(PollingStrategy::Last),
            Just(PollingStrategy::Next),
        ]
    }

    #[test]
    fn is_nine_bytes() {
        let mut out = BytesMut::new();
        PollingStrategy::Offset(258).encode(&mut out);
        assert_eq!(&out[..], [1, 2, 1, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn unknown_kind_and_truncation_are_invalid_command() {
        let mut bytes = [0u8; 9];
        for kind in [0, 6, 255] {
            bytes[0] = kind;
            assert_eq!(
                PollingStrategy::decode(&mut Reader::new(&bytes)),
                Err(ErrorCode::InvalidCommand)
            );
        }
        assert_eq!(
            PollingStrategy::decode(&mut Reader::new(&[5; 8])),
            Err(ErrorCode::InvalidCommand)
        );
    }

    proptest! {
        #[test]
        fn round_trips(strategy in any_strategy()) {
            let mut out = BytesMut::new();
            strategy.encode(&mut out);
            prop_assert_eq!(out.len(), POLLING_STRATEGY_BYTES);
            prop_assert_eq!(PollingStrategy::decode(&mut Reader::new(&out)), Ok(strategy));
        }
    }
}
