//! Personal access tokens: list, create, delete, login with one; and the periodic cleaner of
//! expired tokens on shard 0.
//!
//! A raw token is generated here, answered once, and never stored or logged: the metadata
//! keeps its digest. Every command acts on the caller's own tokens.

use std::{rc::Rc, time::Duration};

use bytes::BytesMut;
use galgo_metadata::{Need, UserId};
use galgo_protocol::{
    ErrorCode,
    command::tokens::{
        CreatePersonalAccessToken, DeletePersonalAccessToken, GetPersonalAccessTokens,
        LoginWithPersonalAccessToken, PersonalAccessTokenInfo, RawPersonalAccessToken,
    },
};

use super::{Outcome, Reply, metadata_change::change_metadata, users::log_in};
use crate::{
    context::Shard,
    context::{Context, now_us},
    credentials,
    session::Session,
};

/// `expiry_at` on the wire for a token that never expires.
const NEVER_EXPIRES_WIRE: u64 = 0;

/// GetPersonalAccessTokens: the caller's tokens, names and expiry times only.
pub fn list(shard: &Rc<Shard>, user: UserId) -> Outcome {
    let metadata = shard.metadata.borrow();
    let mut out = BytesMut::new();
    for token in metadata
        .user_by_id(user)
        .into_iter()
        .flat_map(|user| user.tokens())
    {
        let info = PersonalAccessTokenInfo {
            name: token.name.clone(),
            expiry_at_us: token.expiry_at_us.unwrap_or(NEVER_EXPIRES_WIRE),
        };
        info.encode(&mut out);
    }
    Ok(Reply::bytes(out))
}

/// When a token created now with the wire `expiry` stops working: 0 (the server default) and
/// `u64::MAX` mean never, anything else is a duration in µs.
fn expiry_at(expiry_us: u64, now_us: u64) -> Option<u64> {
    match expiry_us {
        0 | u64::MAX => None,
        duration => Some(now_us.saturating_add(duration)),
    }
}

/// CreatePersonalAccessToken: answers the raw token, the only time it is ever shown.
pub async fn create(
    shard: &Rc<Shard>,
    context: &Context,
    user: UserId,
    create: CreatePersonalAccessToken,
) -> Outcome {
    let token = credentials::new_token();
    let token_hash = credentials::token_hash(&token);
    let expiry = expiry_at(create.expiry_us, now_us());
    let tokens_max = context.seed.tokens.tokens_per_user_max;
    let name = create.name;
    change_metadata(shard, move |metadata| {
        metadata.prepare_create_token(user, &name, token_hash.clone(), expiry, tokens_max)
    })
    .await?;
    tracing::info!(
        shard = shard.id().0,
        user_id = user.0,
        "personal access token created"
    );
    let response = RawPersonalAccessToken { token };
    Ok(Reply::encoded(|out| response.encode(out)))
}

/// DeletePersonalAccessToken: one of the caller's tokens, by name (20 if it has none such).
pub async fn delete(shard: &Rc<Shard>, user: UserId, delete: DeletePersonalAccessToken) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_delete_token(user, &delete.name)
    })
    .await?;
    Ok(Reply::empty())
}

/// LoginWithPersonalAccessToken: logs in as the token's owner, if the token is known (else
/// 20), not expired (else 54) and its owner active (else 47).
pub fn login(
    shard: &Rc<Shard>,
    session: &mut Session,
    login: LoginWithPersonalAccessToken,
) -> Outcome {
    let hash = credentials::token_hash(&login.token);
    let metadata = shard.metadata.borrow();
    let Some((user, token)) = metadata.token_by_hash(&hash) else {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, "failed login: unknown personal access token");
        return Err(ErrorCode::ResourceNotFound.into());
    };
    if token.is_expired(now_us()) {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, user_id = user.id.0, token = %token.name, "failed login: personal access token expired");
        return Err(ErrorCode::PersonalAccessTokenExpired.into());
    }
    if !user.active {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, user_id = user.id.0, "failed login: user inactive");
        return Err(ErrorCode::UserInactive.into());
    }
    Ok(log_in(shard, session, user))
}

/// Shard 0: deletes expired tokens every `interval` until the shard stops. An expired token
/// is refused at login whether or not it was cleaned yet; the cleaner only frees memory and
/// keeps listings short.
pub async fn clean_expired(shard0: Rc<Shard>, interval: Duration) {
    loop {
        compio::time::sleep(interval).await;
        if shard0.is_stopping() {
            return;
        }
        let now = now_us();
        let deleted = change_metadata(&shard0, move |metadata| {
            metadata
                .prepare_delete_expired_tokens(now)
                .ok_or(galgo_metadata::MetadataError::TokenNotFound)
        })
        .await;
        match deleted {
            Ok(galgo_metadata::DeleteTokens { tokens }) => {
                tracing::info!(
                    shard = 0,
                    count = tokens.len(),
                    "expired personal access tokens deleted"
                );
            }
            Err(crate::error::CommandError::Metadata(_)) => {}
            Err(error) => {
                tracing::error!(shard = 0, %error, "cannot delete expired personal access tokens")
            }
        }
    }
}

unscoped_handlers! {
    GetPersonalAccessTokens: Some(Need::LoggedIn) => |cx, _| {
        list(cx.shard, UserId(cx.session.user()?))
    };
    CreatePersonalAccessToken: Some(Need::LoggedIn) => |cx, request| {
        create(cx.shard, cx.context, UserId(cx.session.user()?), request).await
    };
    DeletePersonalAccessToken: Some(Need::LoggedIn) => |cx, request| {
        delete(cx.shard, UserId(cx.session.user()?), request).await
    };
    LoginWithPersonalAccessToken: None => |cx, request| login(cx.shard, cx.session, request);
}

#[cfg(test)]
mod tests {
    use super::expiry_at;

    #[test]
    fn zero_and_max_never_expire_and_durations_add_to_now() {
        assert_eq!(expiry_at(0, 10), None);
        assert_eq!(expiry_at(u64::MAX, 10), None);
        assert_eq!(expiry_at(5, 10), Some(15));
        assert_eq!(expiry_at(u64::MAX - 1, 10), Some(u64::MAX));
    }
}
