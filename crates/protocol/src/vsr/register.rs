//! The 0.9 login (PROTOCOL-0.9.md §5.2–5.4): the Register request body, its reply body, and
//! the protocol-version gate.
//!
//! ```text
//! request   protocol_version u32 | sdk_name name8 | sdk_version name8      (ClientVersionInfo)
//!           then  username name8 | password str8 | context_len u32 | context   (password form)
//!           or    token str8 | context_len u32 | context                        (token form)
//! reply     user_id u32 | session u64 | server_protocol_version u32 | server_version name8
//!           (after the result section, which the envelope adds)
//! ```
//!
//! The operation byte says "Register" for both forms; nothing on the wire says which one a
//! body is. [`Register::decode`] takes the form that consumes exactly the whole body, trying
//! the password form first, as galgo's server is allowed to (§5.2).

use bytes::{BufMut, BytesMut};

use crate::command::tokens::LoginWithPersonalAccessToken;
use crate::command::users::LoginUser;
use crate::error::ErrorCode;
use crate::reader::Reader;
use crate::request::Request;
use crate::writer::{put_name8, put_str8, put_str32};

/// Bits of each packed semver component.
const COMPONENT_BITS: u32 = 10;
/// Largest value of one component.
pub const VERSION_COMPONENT_MAX: u32 = (1 << COMPONENT_BITS) - 1;
const PATCH_MASK: u32 = VERSION_COMPONENT_MAX;

/// Packs `major.minor.patch` as `major << 20 | minor << 10 | patch` (§0). A component over
/// [`VERSION_COMPONENT_MAX`] is a programmer error: this packs galgo's own constants.
pub const fn pack_version(major: u32, minor: u32, patch: u32) -> u32 {
    assert!(
        major <= VERSION_COMPONENT_MAX
            && minor <= VERSION_COMPONENT_MAX
            && patch <= VERSION_COMPONENT_MAX,
        "a version component exceeds 10 bits"
    );
    (major << (2 * COMPONENT_BITS)) | (minor << COMPONENT_BITS) | patch
}

/// The `(major, minor, patch)` of a packed version (the top two bits are ignored).
pub const fn unpack_version(version: u32) -> (u32, u32, u32) {
    (
        (version >> (2 * COMPONENT_BITS)) & VERSION_COMPONENT_MAX,
        (version >> COMPONENT_BITS) & VERSION_COMPONENT_MAX,
        version & PATCH_MASK,
    )
}

/// The protocol galgo speaks and advertises: `iggy_binary_protocol` 0.11.0.
pub const PROTOCOL_VERSION: u32 = pack_version(0, 11, 0);
/// The oldest client version accepted: this minor with patch 0 (patches never change the wire).
pub const PROTOCOL_VERSION_MIN: u32 = PROTOCOL_VERSION & !PATCH_MASK;

const _: () = assert!(PROTOCOL_VERSION == 0x2C00);
// A minimum of 0 would make the Eviction 14 window invalid for the SDK (§2.5).
const _: () = assert!(PROTOCOL_VERSION_MIN > 0);

/// The version gate (§5.3): at least [`PROTOCOL_VERSION_MIN`], and a `major.minor` no newer
/// than galgo's. A refused client gets Eviction 14 carrying [`PROTOCOL_VERSION`] and
/// [`PROTOCOL_VERSION_MIN`].
pub const fn accepts(version: u32) -> bool {
    version >= PROTOCOL_VERSION_MIN
        && (version >> COMPONENT_BITS) <= (PROTOCOL_VERSION >> COMPONENT_BITS)
}

/// The window an Eviction 14 carries: `(lowest, highest)` accepted packed versions.
pub const fn accepted_window() -> (u32, u32) {
    (PROTOCOL_VERSION_MIN, PROTOCOL_VERSION)
}

/// The SDK name the Rust and Python SDKs send.
pub const RUST_SDK_NAME: &str = "rust-sdk";

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The password form (the SDK's `login_user`, code 40 internally).
    Password {
        /// 1..=255 bytes on the wire; the server judges the 3..=50 rule by not finding it.
        username: String,
        /// 0..=255 bytes on the wire.
        password: String,
    },
    /// The personal-access-token form (code 45 internally): the raw token, 0..=255 bytes on
    /// the wire.
    Token(String),
}

/// The Register request body. Its first three fields are the `ClientVersionInfo` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Register {
    /// Packed version of the client's protocol, judged by [`accepts`].
    pub protocol_version: u32,
    /// The SDK's name, e.g. `rust-sdk`, 1..=255 bytes.
    pub sdk_name: String,
    /// The SDK's own version, e.g. `0.11.0`, 1..=255 bytes.
    pub sdk_version: String,
    /// Password or token.
    pub credentials: Credentials,
    /// Free-form client context; the SDK sends none.
    pub client_context: Option<String>,
}

/// Why a Register body did not decode. Both are answered with Eviction 15 MalformedLogin,
/// except that a body whose prefix decoded still goes through the version gate first (§5.2):
/// an out-of-window client learns the window (Eviction 14) whatever follows the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// No decodable version prefix.
    MalformedVersion,
    /// The prefix decoded; the rest is neither form.
    MalformedBody {
        /// The client's packed protocol version, for the gate.
        protocol_version: u32,
    },
}

impl Register {
    /// Reads a Register body: the prefix, then the form that consumes exactly the rest.
    pub fn decode(body: &[u8]) -> Result<Self, RegisterError> {
        let mut reader = Reader::new(body);
        let (protocol_version, sdk_name, sdk_version) =
            read_version(&mut reader).map_err(|_| RegisterError::MalformedVersion)?;
        let rest = reader.rest();
        let Some((credentials, client_context)) =
            whole(rest, read_password_form).or_else(|| whole(rest, read_token_form))
        else {
            return Err(RegisterError::MalformedBody { protocol_version });
        };
        Ok(Self {
            protocol_version,
            sdk_name,
            sdk_version,
            credentials,
            client_context,
        })
    }

    /// Appends the body, as a client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.protocol_version);
        put_name8(out, &self.sdk_name);
        put_name8(out, &self.sdk_version);
        match &self.credentials {
            Credentials::Password { username, password } => {
                put_name8(out, username);
                put_str8(out, password);
            }
            Credentials::Token(token) => put_str8(out, token),
        }
        put_str32(out, self.client_context.as_deref().unwrap_or(""));
    }

    /// The 0.8 login the server's existing handler serves: LoginUser (with the SDK version as
    /// its version) or LoginWithPersonalAccessToken. Lengths are not judged here: a name or
    /// token no user has simply fails the credentials check.
    pub fn into_request(self) -> Request {
        match self.credentials {
            Credentials::Password { username, password } => Request::LoginUser(LoginUser {
                username,
                password,
                version: Some(self.sdk_version),
                context: self.client_context,
            }),
            Credentials::Token(token) => {
                Request::LoginWithPersonalAccessToken(LoginWithPersonalAccessToken { token })
            }
        }
    }
}

/// Runs `read` over `bytes` and keeps the result only when it consumed every byte.
fn whole<T>(bytes: &[u8], read: impl FnOnce(&mut Reader<'_>) -> Result<T, ErrorCode>) -> Option<T> {
    let mut reader = Reader::new(bytes);
    read(&mut reader).ok().filter(|_| reader.is_empty())
}

/// The `ClientVersionInfo` prefix: `protocol_version u32 | sdk_name name8 | sdk_version name8`.
fn read_version(reader: &mut Reader<'_>) -> Result<(u32, String, String), ErrorCode> {
    Ok((
        reader.u32()?,
        reader.name8()?.to_owned(),
        reader.name8()?.to_owned(),
    ))
}

type Login = (Credentials, Option<String>);

fn read_password_form(reader: &mut Reader<'_>) -> Result<Login, ErrorCode> {
    let username = reader.name8()?.to_owned();
    let password = reader.str8()?.to_owned();
    let credentials = Credentials::Password { username, password };
    Ok((credentials, read_context(reader)?))
}

fn read_token_form(reader: &mut Reader<'_>) -> Result<Login, ErrorCode> {
    let token = reader.str8()?.to_owned();
    Ok((Credentials::Token(token), read_context(reader)?))
}

/// `len u32 | UTF-8`; length 0 means none.
fn read_context(reader: &mut Reader<'_>) -> Result<Option<String>, ErrorCode> {
    let context = reader.str32()?;
    Ok((!context.is_empty()).then(|| context.to_owned()))
}

/// The Register reply body, after the result section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterReply {
    /// The logged-in user.
    pub user_id: u32,
    /// The session, > 0: the SDK refuses 0 with 14001 InvalidSession.
    pub session: u64,
    /// The server's packed protocol version ([`PROTOCOL_VERSION`]).
    pub server_protocol_version: u32,
    /// The server's build version text, 1..=255 bytes.
    pub server_version: String,
}

impl RegisterReply {
    /// Appends the reply body.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.user_id);
        out.put_u64_le(self.session);
        out.put_u32_le(self.server_protocol_version);
        put_name8(out, &self.server_version);
    }

    /// Reads the reply body; like the SDK, bytes after the version are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        let mut reader = Reader::new(bytes);
        Ok(Self {
            user_id: reader.u32()?,
            session: reader.u64()?,
            server_protocol_version: reader.u32()?,
            server_version: reader.name8()?.to_owned(),
        })
    }
}

/// Secrets never reach a log, even through `{:?}` of a request.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Token(_) => f.debug_tuple("Token").field(&"<redacted>").finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn login(credentials: Credentials, client_context: Option<String>) -> Register {
        Register {
            protocol_version: PROTOCOL_VERSION,
            sdk_name: RUST_SDK_NAME.into(),
            sdk_version: "0.11.0".into(),
            credentials,
            client_context,
        }
    }

    fn encoded(register: &Register) -> BytesMut {
        let mut out = BytesMut::new();
        register.encode(&mut out);
        out
    }

    /// §12.1: the body the SDK sends for `iggy`/`iggy`, byte for byte, and its XXH3-64.
    #[test]
    fn worked_example_12_1() {
        let credentials = Credentials::Password {
            username: "iggy".into(),
            password: "iggy".into(),
        };
        let register = login(credentials, None);
        let body = encoded(&register);
        #[rustfmt::skip]
        let expected = [
            0x00, 0x2C, 0x00, 0x00,
            0x08, b'r', b'u', b's', b't', b'-', b's', b'd', b'k',
            0x06, b'0', b'.', b'1', b'1', b'.', b'0',
            0x04, b'i', b'g', b'g', b'y',
            0x04, b'i', b'g', b'g', b'y',
            0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(&body[..], expected);
        assert_eq!(xxhash_rust::xxh3::xxh3_64(&body), 0x8FDE_203C_2A3F_8095);
        assert_eq!(Register::decode(&body), Ok(register.clone()));
        let Request::LoginUser(login) = register.into_request() else {
            panic!("the password form is a LoginUser");
        };
        assert_eq!(
            (login.username.as_str(), login.version.as_deref()),
            ("iggy", Some("0.11.0"))
        );
    }

    #[test]
    fn token_form_and_malformed_bodies() {
        let token = login(Credentials::Token("t".repeat(68)), Some("ctx".into()));
        let body = encoded(&token);
        assert_eq!(Register::decode(&body), Ok(token));
        assert_eq!(
            Register::decode(&body[..3]),
            Err(RegisterError::MalformedVersion)
        );
        assert_eq!(
            Register::decode(&body[..body.len() - 1]),
            Err(RegisterError::MalformedBody {
                protocol_version: PROTOCOL_VERSION
            })
        );
        let mut trailing = body.to_vec();
        trailing.push(0);
        assert_eq!(
            Register::decode(&trailing),
            Err(RegisterError::MalformedBody {
                protocol_version: PROTOCOL_VERSION
            })
        );
        let nameless = [0, 0x2C, 0, 0, 0, 1, b'x'];
        assert_eq!(
            Register::decode(&nameless),
            Err(RegisterError::MalformedVersion)
        );
    }

    #[test]
    fn the_gate_takes_0_11_only() {
        assert_eq!(unpack_version(PROTOCOL_VERSION), (0, 11, 0));
        assert_eq!(pack_version(1, 2, 3), 0x0010_0803);
        assert!(accepts(PROTOCOL_VERSION));
        assert!(accepts(pack_version(0, 11, 7)));
        assert!(accepts(0x2FFF));
        assert!(!accepts(0x3000));
        assert!(!accepts(pack_version(0, 10, 0)));
        assert!(!accepts(pack_version(0, 12, 2)));
        assert!(!accepts(0));
        assert_eq!(accepted_window(), (0x2C00, 0x2C00));
    }

    /// §12.2's reply body after the result section.
    #[test]
    fn reply_example_12_2() {
        let reply = RegisterReply {
            user_id: 0,
            session: 1,
            server_protocol_version: PROTOCOL_VERSION,
            server_version: "0.9.0".into(),
        };
        let mut bytes = BytesMut::new();
        reply.encode(&mut bytes);
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0,  1, 0, 0, 0, 0, 0, 0, 0,  0x00, 0x2C, 0, 0,
            5, b'0', b'.', b'9', b'.', b'0',
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(RegisterReply::decode(&bytes), Ok(reply));
        assert_eq!(
            RegisterReply::decode(&bytes[..16]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    fn any_text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::char::range('a', 'z'), 1..=max)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn any_register() -> impl Strategy<Value = Register> {
        let credentials = prop_oneof![
            (any_text(50), any_text(100))
                .prop_map(|(username, password)| Credentials::Password { username, password }),
            any_text(100).prop_map(Credentials::Token),
        ];
        (
            any::<u32>(),
            any_text(20),
            any_text(20),
            credentials,
            proptest::option::of(any_text(30)),
        )
            .prop_map(
                |(protocol_version, sdk_name, sdk_version, credentials, client_context)| Register {
                    protocol_version,
                    sdk_name,
                    sdk_version,
                    credentials,
                    client_context,
                },
            )
    }

    proptest! {
        #[test]
        fn registers_round_trip(register in any_register()) {
            prop_assert_eq!(Register::decode(&encoded(&register)), Ok(register));
        }

        #[test]
        fn replies_round_trip(
            user_id in any::<u32>(),
            session in 1..u64::MAX,
            text in any_text(40),
        ) {
            let reply = RegisterReply {
                user_id, session, server_protocol_version: PROTOCOL_VERSION, server_version: text,
            };
            let mut bytes = BytesMut::new();
            reply.encode(&mut bytes);
            prop_assert_eq!(RegisterReply::decode(&bytes), Ok(reply));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let _ = Register::decode(&bytes);
            let _ = RegisterReply::decode(&bytes);
        }
    }
}
