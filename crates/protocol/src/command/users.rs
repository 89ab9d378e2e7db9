//! User commands (PROTOCOL.md §5.4).
//!
//! Lengths are checked here, after the whole payload has decoded, as the server validates a
//! command once it is parsed: usernames 3..=50 bytes (else 43 `InvalidUsername`), passwords
//! 3..=100 bytes (else 44 `InvalidPassword`).

use std::ops::RangeInclusive;

use bytes::{BufMut, BytesMut};

use super::{decode_records, decode_with, empty_request, identifiers_request};
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::permissions::{
    Permissions, decode_request_permissions, decode_response_permissions,
    encode_request_permissions, encode_response_permissions,
};
use crate::reader::Reader;
use crate::writer::{put_name8, put_str8};

/// Allowed username lengths in bytes.
pub const USERNAME_BYTES: RangeInclusive<usize> = 3..=50;
/// Allowed password lengths in bytes.
pub const PASSWORD_BYTES: RangeInclusive<usize> = 3..=100;

fn check_username(username: &str) -> Result<(), ErrorCode> {
    if USERNAME_BYTES.contains(&username.len()) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidUsername)
    }
}

fn check_password(password: &str) -> Result<(), ErrorCode> {
    if PASSWORD_BYTES.contains(&password.len()) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidPassword)
    }
}

/// Whether a user may log in (one byte: 1 active, 2 inactive; anything else is 3).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UserStatus {
    /// May log in.
    #[default]
    Active = 1,
    /// May not log in (47 `UserInactive`).
    Inactive = 2,
}

impl UserStatus {
    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(value: u8) -> Result<Self, ErrorCode> {
        match value {
            1 => Ok(UserStatus::Active),
            2 => Ok(UserStatus::Inactive),
            _ => Err(ErrorCode::InvalidCommand),
        }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Self::from_u8(reader.u8()?)
    }
}

identifiers_request!(
    /// One user (code 31). Response: [`UserDetails`], or empty when unknown.
    GetUser {
        /// The user.
        user
    }
);
empty_request!(
    /// Every user (code 32). Response: [`UserHeader`]s back to back.
    GetUsers
);
identifiers_request!(
    /// Deletes a user (code 34). Response: empty.
    DeleteUser {
        /// The user.
        user
    }
);
empty_request!(
    /// Logs the session's user out (code 39). Response: empty.
    LogoutUser
);

/// Creates a user (code 33). Response: the new user's [`UserDetails`].
///
/// ```text
/// username name8 | password str8 | status u8 | has_permissions u8 [len u32 | permissions]
/// ```
#[derive(Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    pub status: UserStatus,
    pub permissions: Option<Permissions>,
}

impl CreateUser {
    /// Reads and validates the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        let request = decode_with(payload, |reader| {
            Ok(Self {
                username: reader.name8()?.to_owned(),
                password: reader.str8()?.to_owned(),
                status: UserStatus::read(reader)?,
                permissions: decode_request_permissions(reader)?,
            })
        })?;
        check_username(&request.username)?;
        check_password(&request.password)?;
        Ok(request)
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.username);
        put_str8(out, &self.password);
        out.put_u8(self.status.as_u8());
        encode_request_permissions(self.permissions.as_ref(), out);
    }
}

/// Renames a user or changes its status (code 35). Response: empty.
///
/// ```text
/// Id user | has_username u8 [username name8] | has_status u8 [status u8]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UpdateUser {
    pub user: Identifier,
    pub username: Option<String>,
    pub status: Option<UserStatus>,
}

impl UpdateUser {
    /// Reads and validates the request payload; a flag counts only when it is exactly 1.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        let request = decode_with(payload, |reader| {
            let user = Identifier::decode(reader)?;
            let username = match reader.flag()? {
                true => Some(reader.name8()?.to_owned()),
                false => None,
            };
            let status = match reader.flag()? {
                true => Some(UserStatus::read(reader)?),
                false => None,
            };
            Ok(Self {
                user,
                username,
                status,
            })
        })?;
        if let Some(username) = &request.username {
            check_username(username)?;
        }
        Ok(request)
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.user.encode(out);
        match &self.username {
            Some(username) => {
                out.put_u8(1);
                put_name8(out, username);
            }
            None => out.put_u8(0),
        }
        match self.status {
            Some(status) => {
                out.put_u8(1);
                out.put_u8(status.as_u8());
            }
            None => out.put_u8(0),
        }
    }
}

/// Replaces a user's permissions (code 36); `None` clears them. Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UpdatePermissions {
    pub user: Identifier,
    pub permissions: Option<Permissions>,
}

impl UpdatePermissions {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                user: Identifier::decode(reader)?,
                permissions: decode_request_permissions(reader)?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.user.encode(out);
        encode_request_permissions(self.permissions.as_ref(), out);
    }
}

/// Changes a user's password (code 37). Response: empty.
///
/// ```text
/// Id user | current_password str8 | new_password str8
/// ```
#[derive(Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ChangePassword {
    pub user: Identifier,
    pub current_password: String,
    pub new_password: String,
}

impl ChangePassword {
    /// Reads and validates the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        let request = decode_with(payload, |reader| {
            Ok(Self {
                user: Identifier::decode(reader)?,
                current_password: reader.str8()?.to_owned(),
                new_password: reader.str8()?.to_owned(),
            })
        })?;
        check_password(&request.current_password)?;
        check_password(&request.new_password)?;
        Ok(request)
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.user.encode(out);
        put_str8(out, &self.current_password);
        put_str8(out, &self.new_password);
    }
}

/// Logs in with a username and password (code 38). Response: [`LoginResponse`].
///
/// ```text
/// username name8 | password str8 | version_len u32 [version] | context_len u32 [context]
/// ```
/// Both length fields are always present; 0 means absent. The server ignores both values.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginUser {
    /// The username; all digits means a numeric user id (a server-side quirk).
    pub username: String,
    /// The password.
    pub password: String,
    /// The client's version, e.g. `"0.10.0"`.
    pub version: Option<String>,
    /// Free-form client context.
    pub context: Option<String>,
}

fn read_optional_str32(reader: &mut Reader<'_>) -> Result<Option<String>, ErrorCode> {
    let text = reader.str32()?;
    Ok((!text.is_empty()).then(|| text.to_owned()))
}

impl LoginUser {
    /// Reads and validates the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        let request = decode_with(payload, |reader| {
            Ok(Self {
                username: reader.name8()?.to_owned(),
                password: reader.str8()?.to_owned(),
                version: read_optional_str32(reader)?,
                context: read_optional_str32(reader)?,
            })
        })?;
        check_username(&request.username)?;
        check_password(&request.password)?;
        Ok(request)
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.username);
        put_str8(out, &self.password);
        crate::writer::put_str32(out, self.version.as_deref().unwrap_or(""));
        crate::writer::put_str32(out, self.context.as_deref().unwrap_or(""));
    }
}

/// The response to both logins: the user's id (4 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginResponse {
    /// The logged-in user.
    pub user_id: u32,
}

impl LoginResponse {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.user_id);
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            Ok(Self {
                user_id: reader.u32()?,
            })
        })
    }
}

/// A user's summary (14 + name bytes): `id u32 | created_at u64 | status u8 | username name8`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserHeader {
    pub id: u32,
    pub created_at_us: u64,
    pub status: UserStatus,
    pub username: String,
}

impl UserHeader {
    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.id);
        out.put_u64_le(self.created_at_us);
        out.put_u8(self.status.as_u8());
        put_name8(out, &self.username);
    }

    /// Reads one header.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, Self::read)
    }

    /// Reads a GetUsers response: headers back to back.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Self>, ErrorCode> {
        decode_records(bytes, Self::read)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            id: reader.u32()?,
            created_at_us: reader.u64()?,
            status: UserStatus::read(reader)?,
            username: reader.name8()?.to_owned(),
        })
    }
}

/// The GetUser and CreateUser response: the header, then the permissions in the response
/// wrapper (four zero bytes for none, else `01 | len u32 | permissions`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDetails {
    /// The user.
    pub header: UserHeader,
    /// The user's permissions, if any.
    pub permissions: Option<Permissions>,
}

impl UserDetails {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.header.encode(out);
        encode_response_permissions(self.permissions.as_ref(), out);
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            Ok(Self {
                header: UserHeader::read(reader)?,
                permissions: decode_response_permissions(reader)?,
            })
        })
    }
}

/// Passwords never reach a log, even through `{:?}` of a request.
const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for CreateUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateUser")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("status", &self.status)
            .field("permissions", &self.permissions)
            .finish()
    }
}

impl std::fmt::Debug for ChangePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangePassword")
            .field("user", &self.user)
            .field("current_password", &REDACTED)
            .field("new_password", &REDACTED)
            .finish()
    }
}

impl std::fmt::Debug for LoginUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginUser")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .field("version", &self.version)
            .field("context", &self.context)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::command::test_support::encoded;
    use crate::frame::encode_request;

    fn login() -> LoginUser {
        LoginUser {
            username: "iggy".into(),
            password: "iggy".into(),
            version: Some("0.10.0".into()),
            context: None,
        }
    }

    #[test]
    fn login_example_is_byte_exact() {
        let payload = encoded(|out| login().encode(out));
        let frame = encoded(|out| encode_request(LoginUser::CODE, &payload, out));
        #[rustfmt::skip]
        let expected = [
            0x1C, 0, 0, 0,  0x26, 0, 0, 0,  4, b'i', b'g', b'g', b'y',  4, b'i', b'g', b'g', b'y',
            6, 0, 0, 0, b'0', b'.', b'1', b'0', b'.', b'0',  0, 0, 0, 0,
        ];
        assert_eq!(&frame[..], expected);
        assert_eq!(LoginUser::decode(&payload), Ok(login()));
        let response = encoded(|out| LoginResponse { user_id: 0 }.encode(out));
        assert_eq!(&response[..], [0, 0, 0, 0]);
        assert_eq!(
            LoginResponse::decode(&response),
            Ok(LoginResponse { user_id: 0 })
        );
    }

    #[test]
    fn lengths_are_validated_after_decoding() {
        let short_name = LoginUser {
            username: "ab".into(),
            ..login()
        };
        assert_eq!(
            LoginUser::decode(&encoded(|out| short_name.encode(out))),
            Err(ErrorCode::InvalidUsername)
        );
        let long_password = LoginUser {
            password: "p".repeat(101),
            ..login()
        };
        assert_eq!(
            LoginUser::decode(&encoded(|out| long_password.encode(out))),
            Err(ErrorCode::InvalidPassword)
        );
        // A truncated frame is a decode error before any length check.
        let payload = encoded(|out| short_name.encode(out));
        assert_eq!(
            LoginUser::decode(&payload[..payload.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(LoginUser::decode(&[0]), Err(ErrorCode::InvalidFormat));

        let change = ChangePassword {
            user: Identifier::Numeric(1),
            current_password: "secret".into(),
            new_password: "no".into(),
        };
        assert_eq!(
            ChangePassword::decode(&encoded(|out| change.encode(out))),
            Err(ErrorCode::InvalidPassword)
        );
        let rename = UpdateUser {
            user: Identifier::Numeric(1),
            username: Some("x".repeat(51)),
            status: None,
        };
        assert_eq!(
            UpdateUser::decode(&encoded(|out| rename.encode(out))),
            Err(ErrorCode::InvalidUsername)
        );
    }

    #[test]
    fn create_user_round_trips() {
        let create = CreateUser {
            username: "alice".into(),
            password: "secret".into(),
            status: UserStatus::Inactive,
            permissions: Some(Permissions::root()),
        };
        assert_eq!(
            CreateUser::decode(&encoded(|out| create.encode(out))),
            Ok(create.clone())
        );
        let bare = CreateUser {
            permissions: None,
            ..create
        };
        let bytes = encoded(|out| bare.encode(out));
        assert_eq!(&bytes[bytes.len() - 2..], [2, 0]);
        assert_eq!(CreateUser::decode(&bytes), Ok(bare));
        let mut bad_status = bytes.clone();
        let at = bad_status.len() - 2;
        bad_status[at] = 3;
        assert_eq!(
            CreateUser::decode(&bad_status),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn update_user_round_trips() {
        let update = UpdateUser {
            user: Identifier::Name("alice".into()),
            username: Some("alicia".into()),
            status: Some(UserStatus::Active),
        };
        assert_eq!(
            UpdateUser::decode(&encoded(|out| update.encode(out))),
            Ok(update)
        );
        let nothing = UpdateUser {
            user: Identifier::Numeric(2),
            username: None,
            status: None,
        };
        assert_eq!(
            UpdateUser::decode(&encoded(|out| nothing.encode(out))),
            Ok(nothing)
        );
    }

    #[test]
    fn other_user_requests_round_trip() {
        let permissions = UpdatePermissions {
            user: Identifier::Numeric(2),
            permissions: Some(Permissions::root()),
        };
        assert_eq!(
            UpdatePermissions::decode(&encoded(|out| permissions.encode(out))),
            Ok(permissions)
        );
        let change = ChangePassword {
            user: Identifier::Numeric(1),
            current_password: "old-pass".into(),
            new_password: "new-pass".into(),
        };
        assert_eq!(
            ChangePassword::decode(&encoded(|out| change.encode(out))),
            Ok(change)
        );
        let get = GetUser {
            user: Identifier::Numeric(0),
        };
        assert_eq!(GetUser::decode(&encoded(|out| get.encode(out))), Ok(get));
        let delete = DeleteUser {
            user: Identifier::Numeric(4),
        };
        assert_eq!(
            DeleteUser::decode(&encoded(|out| delete.encode(out))),
            Ok(delete)
        );
        let anonymous = LoginUser {
            version: None,
            context: Some("ctx".into()),
            ..login()
        };
        assert_eq!(
            LoginUser::decode(&encoded(|out| anonymous.encode(out))),
            Ok(anonymous)
        );
    }

    #[test]
    fn user_responses_round_trip() {
        let header = UserHeader {
            id: 0,
            created_at_us: 9,
            status: UserStatus::Active,
            username: "iggy".into(),
        };
        let bytes = encoded(|out| header.encode(out));
        // 14 + name bytes: PROTOCOL.md's "13 + name_len" forgets the name8 length byte.
        assert_eq!(bytes.len(), 14 + 4);
        let mut list = bytes.clone();
        list.extend_from_slice(&bytes);
        assert_eq!(
            UserHeader::decode_list(&list),
            Ok(vec![header.clone(), header.clone()])
        );

        let none = UserDetails {
            header: header.clone(),
            permissions: None,
        };
        let bytes = encoded(|out| none.encode(out));
        assert_eq!(&bytes[bytes.len() - 4..], [0, 0, 0, 0]);
        assert_eq!(UserDetails::decode(&bytes), Ok(none));
        let root = UserDetails {
            header,
            permissions: Some(Permissions::root()),
        };
        let bytes = encoded(|out| root.encode(out));
        assert_eq!(&bytes[18..23], [1, 11, 0, 0, 0]);
        assert_eq!(UserDetails::decode(&bytes), Ok(root));
    }
}
