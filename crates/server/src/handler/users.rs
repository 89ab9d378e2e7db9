//! Users: get, list, create, update, delete, permissions, password, login, logout; and the
//! root user's creation at first start.
//!
//! Passwords are hashed and verified on the shard that accepted the connection, in compio's
//! blocking pool (see `credentials.rs`); shard 0 receives only the hash. Neither a password
//! nor a hash is ever logged.

use std::rc::Rc;

use bytes::BytesMut;
use galgo_metadata::{Metadata, MetadataError, Need, ROOT_USER_ID, ShardId, User, UserId};
use galgo_protocol::{
    ErrorCode, Identifier, Permissions,
    command::users::{
        ChangePassword, CreateUser, DeleteUser, GetUser, GetUsers, LoginResponse, LoginUser,
        LogoutUser, UpdatePermissions, UpdateUser, UserDetails, UserHeader, UserStatus,
    },
};

use super::{Cx, Handler, Outcome, Reply, metadata_change::change_metadata};
use crate::{
    config::RootConfig,
    context::Shard,
    context::{Context, RootCreated, now_us},
    credentials,
    error::CommandError,
    session::Session,
};

fn header(user: &User) -> UserHeader {
    UserHeader {
        id: user.id.0,
        created_at_us: user.created_at_us,
        status: if user.active {
            UserStatus::Active
        } else {
            UserStatus::Inactive
        },
        username: user.username.clone(),
    }
}

fn details(user: &User) -> Reply {
    let details = UserDetails {
        header: header(user),
        permissions: user.permissions.clone(),
    };
    Reply::encoded(|out| details.encode(out))
}

/// GetUser: the user, or the empty answer when there is none.
pub fn get(shard: &Rc<Shard>, user: Option<UserId>) -> Outcome {
    let metadata = shard.metadata.borrow();
    Ok(user
        .and_then(|id| metadata.user_by_id(id))
        .map_or_else(Reply::empty, details))
}

/// GetUsers: every user, by id.
pub fn list(shard: &Rc<Shard>) -> Outcome {
    let metadata = shard.metadata.borrow();
    let mut out = BytesMut::new();
    for user in metadata.users() {
        header(user).encode(&mut out);
    }
    Ok(Reply::bytes(out))
}

/// CreateUser: hashes the password here, commits through shard 0, answers the new user.
pub async fn create(shard: &Rc<Shard>, context: &Context, create: CreateUser) -> Outcome {
    let CreateUser {
        username,
        password,
        status,
        permissions,
    } = create;
    let password_hash = context.hasher.hash(password).await;
    let now = now_us();
    let user = change_metadata(shard, move |metadata| {
        metadata.prepare_create_user(
            &username,
            password_hash.clone(),
            status == UserStatus::Active,
            permissions.as_ref(),
            now,
        )
    })
    .await?;
    tracing::info!(shard = shard.id().0, user_id = user.id.0, "user created");
    get(shard, Some(user.id))
}

/// UpdateUser: a new username and/or status. Deactivating a user ends its sessions.
pub async fn update(shard: &Rc<Shard>, update: UpdateUser) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_update_user(
            &update.user,
            update.username.as_deref(),
            update.status.map(|status| status == UserStatus::Active),
        )
    })
    .await?;
    Ok(Reply::empty())
}

/// UpdatePermissions: replaces them (never root's).
pub async fn update_permissions(shard: &Rc<Shard>, update: UpdatePermissions) -> Outcome {
    change_metadata(shard, move |metadata| {
        metadata.prepare_update_permissions(&update.user, update.permissions.as_ref())
    })
    .await?;
    Ok(Reply::empty())
}

/// DeleteUser: the user and its tokens; its sessions on every shard end.
pub async fn delete(shard: &Rc<Shard>, user: Identifier) -> Outcome {
    let change =
        change_metadata(shard, move |metadata| metadata.prepare_delete_user(&user)).await?;
    tracing::info!(
        shard = shard.id().0,
        user_id = change.user_id().0,
        "user deleted; its sessions end"
    );
    Ok(Reply::empty())
}

/// ChangePassword: the current password must match, whoever asks.
pub async fn change_password(
    shard: &Rc<Shard>,
    context: &Context,
    session: &Session,
    user: UserId,
    change: ChangePassword,
) -> Outcome {
    let (id, generation, stored_hash) = {
        let metadata = shard.metadata.borrow();
        let user = metadata
            .user_by_id(user)
            .ok_or(MetadataError::UserNotFound)?;
        (user.id, user.generation, user.password_hash.clone())
    };
    if !context
        .hasher
        .verify(change.current_password, stored_hash)
        .await
    {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, user_id = id.0, "password change refused: wrong current password");
        return Err(ErrorCode::InvalidCredentials.into());
    }
    let new_hash = context.hasher.hash(change.new_password).await;
    change_metadata(shard, move |metadata| {
        metadata.prepare_change_password(id, generation, new_hash.clone())
    })
    .await?;
    tracing::info!(shard = shard.id().0, user_id = id.0, "password changed");
    Ok(Reply::empty())
}

/// LoginUser: logs the session in (logging out whoever was in it first).
pub async fn login(
    shard: &Rc<Shard>,
    context: &Context,
    session: &mut Session,
    login: LoginUser,
) -> Outcome {
    let lookup = || {
        shard
            .metadata
            .borrow()
            .user_for_login(&login.username)
            .map(|user| (user.id, user.generation, user.password_hash.clone()))
    };
    let mut found = lookup();
    if found.is_none() && !context.seed.root_created.is_initialized() {
        // A first start accepts connections while the root user's password is still being
        // hashed. Shard 0 answers once root exists; its creation event comes before that
        // answer through this shard's inbox, so the replica has root when the call returns.
        tracing::debug!(shard = shard.id().0, peer = %session.peer, "login waits for the root user's creation");
        let created = context.seed.root_created.clone();
        shard
            .call(ShardId(0), move |_| async move {
                created.wait().await;
            })
            .await?;
        found = lookup();
    }
    let verified = match &found {
        Some((_, _, hash)) => context.hasher.verify(login.password, hash.clone()).await,
        None => false,
    };
    let metadata = shard.metadata.borrow();
    // The user must still be the one whose hash was checked (the verification yielded).
    let user = found.filter(|_| verified).and_then(|(id, generation, _)| {
        metadata
            .user_by_id(id)
            .filter(|user| user.generation == generation)
    });
    let Some(user) = user else {
        // The password is never logged; the name helps an operator spot a misconfigured client.
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, username = %login.username, "failed login: invalid credentials");
        return Err(ErrorCode::InvalidCredentials.into());
    };
    if !user.active {
        crate::session_log!(session, warn, shard = shard.id().0, peer = %session.peer, user_id = user.id.0, "failed login: user inactive");
        return Err(ErrorCode::UserInactive.into());
    }
    Ok(log_in(shard, session, user))
}

/// Logs `user` in on the session and answers its id (shared by both logins).
pub fn log_in(shard: &Shard, session: &mut Session, user: &User) -> Reply {
    session.log_in(user);
    shard
        .state()
        .clients
        .borrow_mut()
        .set_user(session.client_id, session.user_id);
    crate::session_log!(session, info, shard = shard.id().0, peer = %session.peer, user_id = user.id.0, "login");
    let response = LoginResponse { user_id: user.id.0 };
    Reply::encoded(|out| response.encode(out))
}

/// LogoutUser: the session is anonymous again.
pub fn logout(shard: &Rc<Shard>, session: &mut Session) -> Outcome {
    session.log_out();
    shard
        .state()
        .clients
        .borrow_mut()
        .set_user(session.client_id, None);
    Ok(Reply::empty())
}

/// The root user's password hash, started by [`start_root_creation`] before the listeners
/// bind when the metadata has no root user (a fresh data directory).
pub struct PendingRoot(compio::runtime::JoinHandle<String>);

/// Start-up, on shard 0 before any listener: when the metadata has no root user, starts
/// hashing `[root]`'s password in the blocking pool (tens of milliseconds of Argon2) so the
/// listeners can bind meanwhile; [`ensure_root`] then creates the user. When root exists,
/// opens `created` at once and returns `None`.
pub fn start_root_creation(
    shard0: &Shard,
    root: &RootConfig,
    created: &RootCreated,
) -> Option<PendingRoot> {
    if let Some(existing) = shard0.metadata.borrow().user_by_id(ROOT_USER_ID) {
        tracing::info!(username = %existing.username, "root user exists; [root] credentials are used only to create it");
        let _ = created.set_blocking(());
        return None;
    }
    let password = root.password.clone();
    Some(PendingRoot(compio::runtime::spawn_blocking(move || {
        credentials::hash_password(&password)
    })))
}

/// Start-up, on shard 0 once the listeners accept: creates the root user (id 0, every
/// permission) from `[root]` with the hash `pending` computed, then opens `created`, which
/// logins that found no user wait for ([`login`]). Later starts find root and do nothing:
/// root's password is whatever ChangePassword made it.
pub async fn ensure_root(
    shard0: &Rc<Shard>,
    root: &RootConfig,
    pending: Option<PendingRoot>,
    created: &RootCreated,
) -> Result<(), String> {
    let Some(PendingRoot(hashing)) = pending else {
        return Ok(());
    };
    let password_hash = pending_hash(hashing).await?;
    create_root(shard0, &root.username, password_hash)
        .await
        .map_err(|error: CommandError| format!("cannot create the root user: {error}"))?;
    let _ = created.set(()).await;
    tracing::info!(username = %root.username, "root user created");
    Ok(())
}

impl PendingRoot {
    /// The hash, once computed.
    pub async fn hash(self) -> Result<String, String> {
        pending_hash(self.0).await
    }
}

async fn pending_hash(hashing: compio::runtime::JoinHandle<String>) -> Result<String, String> {
    hashing
        .await
        .map_err(|_| "hashing the root password panicked".to_owned())
}

/// Creates the root user (id 0, every permission) with a computed password hash.
pub async fn create_root(
    shard0: &Rc<Shard>,
    username: &str,
    password_hash: String,
) -> Result<(), CommandError> {
    let username = username.to_owned();
    let root_user = change_metadata(shard0, move |metadata| {
        metadata.prepare_create_user(
            &username,
            password_hash.clone(),
            true,
            Some(&Permissions::root()),
            now_us(),
        )
    })
    .await?;
    assert_eq!(
        root_user.id, ROOT_USER_ID,
        "the first user is the root user, id 0"
    );
    Ok(())
}

/// A user named by a request, resolved.
type UserScope = Result<UserId, MetadataError>;

fn user_scope(metadata: &Metadata, user: &Identifier) -> UserScope {
    metadata.user(user).map(|found| found.id)
}

impl Handler for GetUser {
    type Scope = UserScope;
    fn resolve(&self, metadata: &Metadata) -> UserScope {
        user_scope(metadata, &self.user)
    }
    fn need(scope: &UserScope) -> Option<Need> {
        Some(Need::SelfOrReadUsers(scope.as_ref().ok().copied()))
    }
    async fn handle(self, cx: Cx<'_>, scope: UserScope) -> Outcome {
        get(cx.shard, scope.ok())
    }
}

impl Handler for ChangePassword {
    type Scope = UserScope;
    fn resolve(&self, metadata: &Metadata) -> UserScope {
        user_scope(metadata, &self.user)
    }
    fn need(scope: &UserScope) -> Option<Need> {
        Some(Need::SelfOrManageUsers(scope.as_ref().ok().copied()))
    }
    async fn handle(self, cx: Cx<'_>, scope: UserScope) -> Outcome {
        change_password(cx.shard, cx.context, cx.session, scope?, self).await
    }
}

unscoped_handlers! {
    GetUsers: Some(Need::ReadUsers) => |cx, _| list(cx.shard);
    CreateUser: Some(Need::ManageUsers) => |cx, request| create(cx.shard, cx.context, request).await;
    UpdateUser: Some(Need::ManageUsers) => |cx, request| update(cx.shard, request).await;
    UpdatePermissions: Some(Need::ManageUsers) => |cx, request| {
        update_permissions(cx.shard, request).await
    };
    DeleteUser: Some(Need::ManageUsers) => |cx, request| delete(cx.shard, request.user).await;
    LoginUser: None => |cx, request| login(cx.shard, cx.context, cx.session, request).await;
    LogoutUser: Some(Need::LoggedIn) => |cx, _| logout(cx.shard, cx.session);
}
