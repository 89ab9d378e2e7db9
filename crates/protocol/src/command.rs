//! Request and response payloads, one file per command family (PROTOCOL.md §5).
//!
//! Every request type has `CODE`, `decode(payload)` (the server side) and `encode(out)` (the
//! client side, payload only). Every response type has `encode(out)` and `decode(bytes)`, and
//! the ones that travel as bare back-to-back lists have `decode_list`. Trailing bytes after a
//! decoded request are ignored, as the server does (§1.1).

use crate::code::CommandCode;
use crate::error::ErrorCode;
use crate::reader::Reader;

pub mod groups;
pub mod messages;
pub mod offsets;
pub mod streams;
pub mod system;
pub mod tokens;
pub mod topics;
pub mod users;

/// A request type of the protocol, tied to its code by the one command table
/// ([`for_each_command!`](crate::for_each_command)), which implements it for every request type.
pub trait Command {
    /// The command code.
    const CODE: CommandCode;
}

/// Runs `read` over a whole payload.
pub(crate) fn decode_with<T>(
    bytes: &[u8],
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, ErrorCode>,
) -> Result<T, ErrorCode> {
    read(&mut Reader::new(bytes))
}

/// Reads records back to back until the buffer ends: the form of every list response, which
/// carries no count.
pub(crate) fn decode_records<T>(
    bytes: &[u8],
    mut read: impl FnMut(&mut Reader<'_>) -> Result<T, ErrorCode>,
) -> Result<Vec<T>, ErrorCode> {
    let mut reader = Reader::new(bytes);
    let mut records = Vec::new();
    while !reader.is_empty() {
        records.push(read(&mut reader)?);
    }
    Ok(records)
}

/// Declares a request without payload: a unit struct with `CODE`, `decode` and `encode`.
macro_rules! empty_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name;

        impl $name {
            /// Accepts any payload: the command has none and trailing bytes are ignored.
            pub fn decode(_payload: &[u8]) -> Result<Self, $crate::error::ErrorCode> {
                Ok($name)
            }

            /// Appends nothing: the command has no payload.
            pub fn encode(&self, _out: &mut bytes::BytesMut) {}
        }
    };
}
pub(crate) use empty_request;

/// Declares a request made only of identifiers, e.g. `DeleteStream { stream }`.
macro_rules! identifiers_request {
    ($(#[$doc:meta])* $name:ident { $($(#[$field_doc:meta])* $field:ident),+ }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $crate::identifier::Identifier,)+
        }

        impl $name {
            /// Reads the request payload.
            pub fn decode(payload: &[u8]) -> Result<Self, $crate::error::ErrorCode> {
                $crate::command::decode_with(payload, |reader| {
                    Ok(Self { $($field: $crate::identifier::Identifier::decode(reader)?,)+ })
                })
            }

            /// Appends the request payload.
            pub fn encode(&self, out: &mut bytes::BytesMut) {
                $(self.$field.encode(out);)+
            }
        }
    };
}
pub(crate) use identifiers_request;

#[cfg(test)]
pub(crate) mod test_support {
    use bytes::BytesMut;

    /// Encodes with `encode` into a fresh buffer.
    pub(crate) fn encoded(encode: impl FnOnce(&mut BytesMut)) -> BytesMut {
        let mut out = BytesMut::new();
        encode(&mut out);
        out
    }
}
