//! Logins, logout and user management.

use galgo_protocol::Command;
use galgo_protocol::command::tokens::LoginWithPersonalAccessToken;
use galgo_protocol::command::users::{
    ChangePassword, CreateUser, DeleteUser, GetUser, GetUsers, LoginResponse, LoginUser,
    UpdatePermissions, UpdateUser, UserDetails, UserHeader, UserStatus,
};
use galgo_protocol::{CommandCode, Identifier, Permissions, command::users::LogoutUser};

use crate::client::{Client, decoded};
use crate::error::ClientError;

/// The version this client announces at login; servers record it, none act on it.
const CLIENT_VERSION: &str = concat!("galgo-client ", env!("CARGO_PKG_VERSION"));

impl Client {
    /// LoginUser; returns the user's id.
    pub async fn login_user(&mut self, username: &str, password: &str) -> Result<u32, ClientError> {
        let request = LoginUser {
            username: username.to_owned(),
            password: password.to_owned(),
            version: Some(CLIENT_VERSION.to_owned()),
            context: None,
        };
        let bytes = self
            .request(LoginUser::CODE, |out| request.encode(out))
            .await?;
        Ok(decoded(LoginUser::CODE, &bytes, LoginResponse::decode)?.user_id)
    }

    /// LoginWithPersonalAccessToken; returns the user's id.
    pub async fn login_with_personal_access_token(
        &mut self,
        token: &str,
    ) -> Result<u32, ClientError> {
        let request = LoginWithPersonalAccessToken {
            token: token.to_owned(),
        };
        let code = LoginWithPersonalAccessToken::CODE;
        let bytes = self.request(code, |out| request.encode(out)).await?;
        Ok(decoded(code, &bytes, LoginResponse::decode)?.user_id)
    }

    /// LogoutUser.
    pub async fn logout_user(&mut self) -> Result<(), ClientError> {
        self.request(CommandCode::LogoutUser, |out| LogoutUser.encode(out))
            .await
            .map(drop)
    }

    /// GetUser, or `None` when the user does not exist.
    pub async fn get_user(
        &mut self,
        user: &Identifier,
    ) -> Result<Option<UserDetails>, ClientError> {
        let request = GetUser { user: user.clone() };
        let bytes = self
            .request(GetUser::CODE, |out| request.encode(out))
            .await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        decoded(GetUser::CODE, &bytes, UserDetails::decode).map(Some)
    }

    /// GetUsers.
    pub async fn get_users(&mut self) -> Result<Vec<UserHeader>, ClientError> {
        let bytes = self
            .request(GetUsers::CODE, |out| GetUsers.encode(out))
            .await?;
        decoded(GetUsers::CODE, &bytes, UserHeader::decode_list)
    }

    /// CreateUser; returns the new user with the id the server assigned.
    pub async fn create_user(&mut self, request: &CreateUser) -> Result<UserDetails, ClientError> {
        let bytes = self
            .request(CreateUser::CODE, |out| request.encode(out))
            .await?;
        decoded(CreateUser::CODE, &bytes, UserDetails::decode)
    }

    /// DeleteUser.
    pub async fn delete_user(&mut self, user: &Identifier) -> Result<(), ClientError> {
        let request = DeleteUser { user: user.clone() };
        self.request(DeleteUser::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// UpdateUser: a new username, a new status, or both.
    pub async fn update_user(
        &mut self,
        user: &Identifier,
        username: Option<&str>,
        status: Option<UserStatus>,
    ) -> Result<(), ClientError> {
        let request = UpdateUser {
            user: user.clone(),
            username: username.map(str::to_owned),
            status,
        };
        self.request(UpdateUser::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// UpdatePermissions: replaces the user's permissions (`None` removes them all).
    pub async fn update_permissions(
        &mut self,
        user: &Identifier,
        permissions: Option<Permissions>,
    ) -> Result<(), ClientError> {
        let request = UpdatePermissions {
            user: user.clone(),
            permissions,
        };
        self.request(UpdatePermissions::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// ChangePassword.
    pub async fn change_password(
        &mut self,
        user: &Identifier,
        current_password: &str,
        new_password: &str,
    ) -> Result<(), ClientError> {
        let request = ChangePassword {
            user: user.clone(),
            current_password: current_password.to_owned(),
            new_password: new_password.to_owned(),
        };
        self.request(ChangePassword::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
