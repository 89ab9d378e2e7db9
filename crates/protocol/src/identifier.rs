//! Identifiers of streams, topics, groups, users and consumers (PROTOCOL.md §4.1).
//!
//! ```text
//! [kind u8][length u8][value]   kind 1 = numeric (length 4, u32 LE), kind 2 = name (1..=255 UTF-8)
//! ```

use bytes::{BufMut, BytesMut};

use crate::error::ErrorCode;
use crate::reader::{NAME_BYTES_MAX, Reader};
use crate::writer::put_name8;

const KIND_NUMERIC: u8 = 1;
const KIND_NAME: u8 = 2;
const NUMERIC_BYTES: u8 = 4;

/// Names an entity either by its numeric id or by its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identifier {
    /// The 0-based numeric id.
    Numeric(u32),
    /// The name, 1..=255 bytes of UTF-8.
    Name(String),
}

impl Identifier {
    /// A name identifier, or 4 `InvalidFormat` when the name is empty or longer than 255 bytes.
    pub fn named(name: &str) -> Result<Self, ErrorCode> {
        if name.is_empty() || name.len() > NAME_BYTES_MAX {
            return Err(ErrorCode::InvalidFormat);
        }
        Ok(Identifier::Name(name.to_owned()))
    }

    /// Bytes the identifier takes on the wire.
    pub fn encoded_len(&self) -> usize {
        2 + match self {
            Identifier::Numeric(_) => usize::from(NUMERIC_BYTES),
            Identifier::Name(name) => name.len(),
        }
    }

    /// Appends the identifier. Panics on a name that is empty or over 255 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Identifier::Numeric(id) => {
                out.put_u8(KIND_NUMERIC);
                out.put_u8(NUMERIC_BYTES);
                out.put_u32_le(*id);
            }
            Identifier::Name(name) => {
                out.put_u8(KIND_NAME);
                put_name8(out, name);
            }
        }
    }

    /// Reads an identifier as every command but SendMessages does: truncation, an unknown kind
    /// or invalid UTF-8 is 3 `InvalidCommand`; a numeric length other than 4 or an empty name is
    /// 4 `InvalidFormat`.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let start = reader.clone();
        let result = Self::decode_fields(reader);
        if result.is_err() {
            *reader = start;
        }
        result
    }

    /// Reads an identifier as the SendMessages path does: every failure is 6
    /// `InvalidIdentifier`.
    pub fn decode_for_send(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Self::decode(reader).map_err(|_| ErrorCode::InvalidIdentifier)
    }

    fn decode_fields(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        // The value is read before the kind is judged, as the SDK's decoder does, so a
        // truncated value is reported as a truncation whatever the kind.
        let kind = reader.u8()?;
        let length = reader.u8()?;
        let value = reader.bytes(usize::from(length))?;
        match kind {
            KIND_NUMERIC => match <[u8; 4]>::try_from(value) {
                Ok(bytes) => Ok(Identifier::Numeric(u32::from_le_bytes(bytes))),
                Err(_) => Err(ErrorCode::InvalidFormat),
            },
            KIND_NAME if value.is_empty() => Err(ErrorCode::InvalidFormat),
            KIND_NAME => match std::str::from_utf8(value) {
                Ok(name) => Ok(Identifier::Name(name.to_owned())),
                Err(_) => Err(ErrorCode::InvalidCommand),
            },
            _ => Err(ErrorCode::InvalidCommand),
        }
    }
}

impl From<u32> for Identifier {
    fn from(id: u32) -> Self {
        Identifier::Numeric(id)
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identifier::Numeric(id) => write!(f, "{id}"),
            Identifier::Name(name) => f.write_str(name),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(id: &Identifier) -> Vec<u8> {
        let mut out = BytesMut::new();
        id.encode(&mut out);
        out.to_vec()
    }

    /// Any valid identifier.
    pub(crate) fn any_identifier() -> impl Strategy<Value = Identifier> {
        prop_oneof![
            any::<u32>().prop_map(Identifier::Numeric),
            "[a-zA-Z0-9._-]{1,60}".prop_map(Identifier::Name),
            "\\PC{1,40}"
                .prop_filter("fits name8", |name| name.len() <= 255)
                .prop_map(Identifier::Name),
        ]
    }

    #[test]
    fn worked_examples_are_byte_exact() {
        assert_eq!(encoded(&Identifier::Numeric(0)), [1, 4, 0, 0, 0, 0]);
        assert_eq!(
            encoded(&Identifier::Name("orders".into())),
            [2, 6, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x73]
        );
    }

    #[test]
    fn malformed_identifiers_map_to_their_codes() {
        let cases: [(&[u8], ErrorCode); 6] = [
            (&[], ErrorCode::InvalidCommand),
            (&[1, 4, 0, 0], ErrorCode::InvalidCommand),
            (&[3, 0], ErrorCode::InvalidCommand),
            (&[1, 2, 0, 0], ErrorCode::InvalidFormat),
            (&[2, 0], ErrorCode::InvalidFormat),
            (&[2, 1, 0xff], ErrorCode::InvalidCommand),
        ];
        for (bytes, code) in cases {
            let mut reader = Reader::new(bytes);
            assert_eq!(Identifier::decode(&mut reader), Err(code), "{bytes:?}");
            assert_eq!(reader.position(), 0);
            let mut reader = Reader::new(bytes);
            assert_eq!(
                Identifier::decode_for_send(&mut reader),
                Err(ErrorCode::InvalidIdentifier)
            );
        }
    }

    #[test]
    fn display_and_constructors() {
        assert_eq!(Identifier::from(7).to_string(), "7");
        assert_eq!(
            Identifier::named("orders").map(|id| id.to_string()),
            Ok("orders".into())
        );
        assert_eq!(Identifier::named(""), Err(ErrorCode::InvalidFormat));
        assert_eq!(
            Identifier::named(&"x".repeat(256)),
            Err(ErrorCode::InvalidFormat)
        );
    }

    proptest! {
        #[test]
        fn round_trips(id in any_identifier()) {
            let bytes = encoded(&id);
            prop_assert_eq!(bytes.len(), id.encoded_len());
            let mut reader = Reader::new(&bytes);
            prop_assert_eq!(Identifier::decode(&mut reader), Ok(id));
            prop_assert!(reader.is_empty());
        }
    }
}
