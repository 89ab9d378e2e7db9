//! Login and logout. Until users come with their own issue, the one user is root, whose
//! credentials come from the configuration.

use std::rc::Rc;

use galgo_protocol::{
    ErrorCode,
    command::users::{LoginResponse, LoginUser},
};
use galgo_shards::Shard;

use super::{Outcome, Reply};
use crate::{context::Context, session::Session};

/// The root user's id.
const ROOT_USER_ID: u32 = 0;

/// Compares without leaking, through timing, how long a matching prefix is.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (index, byte) in expected.iter().enumerate() {
        difference |= usize::from(byte ^ given.get(index).copied().unwrap_or(!byte));
    }
    difference == 0
}

/// LoginUser: logs the session in (logging out whoever was in it first).
pub fn login(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    login: LoginUser,
) -> Outcome {
    let root = &context.seed.root;
    let username_ok = same_secret(login.username.as_bytes(), root.username.as_bytes());
    let password_ok = same_secret(login.password.as_bytes(), root.password.as_bytes());
    if !(username_ok && password_ok) {
        // The password is never logged; the name helps an operator spot a misconfigured client.
        tracing::warn!(shard = shard.id().0, peer = %session.peer, username = %login.username, "failed login");
        return Err(ErrorCode::InvalidCredentials.into());
    }
    session.user_id = Some(ROOT_USER_ID);
    shard
        .clients
        .borrow_mut()
        .set_user(session.client_id, session.user_id);
    tracing::info!(shard = shard.id().0, peer = %session.peer, user_id = ROOT_USER_ID, "login");
    let response = LoginResponse {
        user_id: ROOT_USER_ID,
    };
    Ok(Reply::encoded(|out| response.encode(out)))
}

/// LogoutUser: the session is anonymous again.
pub fn logout(shard: &Rc<Shard>, session: &mut Session) -> Outcome {
    session.user_id = None;
    shard.clients.borrow_mut().set_user(session.client_id, None);
    Ok(Reply::empty())
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_match_only_exactly() {
        assert!(same_secret(b"iggy", b"iggy"));
        assert!(!same_secret(b"iggy2", b"iggy"));
        assert!(!same_secret(b"igg", b"iggy"));
        assert!(!same_secret(b"", b"iggy"));
        assert!(!same_secret(b"iggx", b"iggy"));
    }
}
