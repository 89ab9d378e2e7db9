//! Personal access token calls.

use galgo_protocol::Command;
use galgo_protocol::command::tokens::{
    CreatePersonalAccessToken, DeletePersonalAccessToken, GetPersonalAccessTokens,
    PersonalAccessTokenInfo, RawPersonalAccessToken,
};

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// CreatePersonalAccessToken for the logged-in user; returns the raw token, which the
    /// server shows only this once. `expiry_us` 0 means the token never expires.
    pub async fn create_personal_access_token(
        &mut self,
        name: &str,
        expiry_us: u64,
    ) -> Result<String, ClientError> {
        let request = CreatePersonalAccessToken {
            name: name.into(),
            expiry_us,
        };
        let code = CreatePersonalAccessToken::CODE;
        let bytes = self.request(code, |out| request.encode(out)).await?;
        Ok(decoded(code, &bytes, RawPersonalAccessToken::decode)?.token)
    }

    /// GetPersonalAccessTokens: the logged-in user's tokens (names and expiries, no secrets).
    pub async fn get_personal_access_tokens(
        &mut self,
    ) -> Result<Vec<PersonalAccessTokenInfo>, ClientError> {
        let code = GetPersonalAccessTokens::CODE;
        let bytes = self
            .request(code, |out| GetPersonalAccessTokens.encode(out))
            .await?;
        decoded(code, &bytes, PersonalAccessTokenInfo::decode_list)
    }

    /// DeletePersonalAccessToken by name.
    pub async fn delete_personal_access_token(&mut self, name: &str) -> Result<(), ClientError> {
        let request = DeletePersonalAccessToken { name: name.into() };
        self.request(DeletePersonalAccessToken::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
