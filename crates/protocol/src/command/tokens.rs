//! Personal access token commands (PROTOCOL.md §5.5).

use std::ops::RangeInclusive;

use bytes::{BufMut, BytesMut};

use super::{decode_records, decode_with, empty_request};
use crate::error::ErrorCode;
use crate::reader::Reader;
use crate::writer::put_name8;

/// Allowed token name lengths in bytes; others are 50 `InvalidPersonalAccessTokenName`.
pub const TOKEN_NAME_BYTES: RangeInclusive<usize> = 3..=30;

fn check_token_name(name: &str) -> Result<(), ErrorCode> {
    if TOKEN_NAME_BYTES.contains(&name.len()) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidPersonalAccessTokenName)
    }
}

empty_request!(
    /// The caller's tokens (code 41). Response: [`PersonalAccessTokenInfo`]s back to back.
    GetPersonalAccessTokens
);

/// Creates a token (code 42): `name name8 | expiry u64`. Response: [`RawPersonalAccessToken`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatePersonalAccessToken {
    /// The token's name, 3..=30 bytes.
    pub name: String,
    /// 0 = server default (no expiry), `u64::MAX` = never, otherwise a duration in µs.
    pub expiry_us: u64,
}

impl CreatePersonalAccessToken {
    /// Reads and validates the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        let request = decode_with(payload, |reader| {
            Ok(Self {
                name: reader.name8()?.to_owned(),
                expiry_us: reader.u64()?,
            })
        })?;
        check_token_name(&request.name)?;
        Ok(request)
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.name);
        out.put_u64_le(self.expiry_us);
    }
}

/// Deletes a token by name (code 43): `name name8`. Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletePersonalAccessToken {
    /// The token's name, 3..=30 bytes.
    pub name: String,
}

impl DeletePersonalAccessToken {
    /// Reads and validates the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        let request = decode_with(payload, |reader| {
            Ok(Self {
                name: reader.name8()?.to_owned(),
            })
        })?;
        check_token_name(&request.name)?;
        Ok(request)
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.name);
    }
}

/// Logs in with a token (code 44): `token name8`. Needs no login. Response:
/// [`LoginResponse`](super::users::LoginResponse).
#[derive(Clone, PartialEq, Eq)]
pub struct LoginWithPersonalAccessToken {
    /// The raw token.
    pub token: String,
}

impl LoginWithPersonalAccessToken {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                token: reader.name8()?.to_owned(),
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.token);
    }
}

/// A GetPersonalAccessTokens entry: `name name8 | expiry_at u64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalAccessTokenInfo {
    /// The token's name.
    pub name: String,
    /// When the token expires, µs since the epoch; 0 means never.
    pub expiry_at_us: u64,
}

impl PersonalAccessTokenInfo {
    /// Appends one entry.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.name);
        out.put_u64_le(self.expiry_at_us);
    }

    /// Reads one entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, Self::read)
    }

    /// Reads a GetPersonalAccessTokens response: entries back to back.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Self>, ErrorCode> {
        decode_records(bytes, Self::read)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            name: reader.name8()?.to_owned(),
            expiry_at_us: reader.u64()?,
        })
    }
}

/// The CreatePersonalAccessToken response: the raw token as a `name8`, shown only once.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPersonalAccessToken {
    /// The token (68 characters of base64 in Iggy).
    pub token: String,
}

impl RawPersonalAccessToken {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.token);
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            Ok(Self {
                token: reader.name8()?.to_owned(),
            })
        })
    }
}

/// Raw tokens never reach a log, even through `{:?}` of a request or response.
impl std::fmt::Debug for LoginWithPersonalAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginWithPersonalAccessToken")
            .field("token", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for RawPersonalAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPersonalAccessToken")
            .field("token", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_support::encoded;

    #[test]
    fn requests_round_trip() {
        let create = CreatePersonalAccessToken {
            name: "ci-token".into(),
            expiry_us: u64::MAX,
        };
        let bytes = encoded(|out| create.encode(out));
        assert_eq!(bytes.len(), 1 + 8 + 8);
        assert_eq!(CreatePersonalAccessToken::decode(&bytes), Ok(create));
        let delete = DeletePersonalAccessToken {
            name: "ci-token".into(),
        };
        assert_eq!(
            DeletePersonalAccessToken::decode(&encoded(|out| delete.encode(out))),
            Ok(delete)
        );
        let login = LoginWithPersonalAccessToken {
            token: "t".repeat(68),
        };
        assert_eq!(
            LoginWithPersonalAccessToken::decode(&encoded(|out| login.encode(out))),
            Ok(login)
        );
    }

    #[test]
    fn token_names_are_validated() {
        let short = CreatePersonalAccessToken {
            name: "ab".into(),
            expiry_us: 0,
        };
        assert_eq!(
            CreatePersonalAccessToken::decode(&encoded(|out| short.encode(out))),
            Err(ErrorCode::InvalidPersonalAccessTokenName)
        );
        let long = DeletePersonalAccessToken {
            name: "n".repeat(31),
        };
        assert_eq!(
            DeletePersonalAccessToken::decode(&encoded(|out| long.encode(out))),
            Err(ErrorCode::InvalidPersonalAccessTokenName)
        );
    }

    #[test]
    fn responses_round_trip() {
        let tokens = vec![
            PersonalAccessTokenInfo {
                name: "a-token".into(),
                expiry_at_us: 0,
            },
            PersonalAccessTokenInfo {
                name: "b-token".into(),
                expiry_at_us: 17,
            },
        ];
        let bytes = encoded(|out| tokens.iter().for_each(|token| token.encode(out)));
        assert_eq!(PersonalAccessTokenInfo::decode_list(&bytes), Ok(tokens));
        let raw = RawPersonalAccessToken {
            token: "x".repeat(68),
        };
        assert_eq!(
            RawPersonalAccessToken::decode(&encoded(|out| raw.encode(out))),
            Ok(raw)
        );
    }
}
