//! Logins and logout.

use galgo_protocol::command::tokens::LoginWithPersonalAccessToken;
use galgo_protocol::command::users::{LoginResponse, LoginUser};
use galgo_protocol::{CommandCode, command::users::LogoutUser};

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
}
