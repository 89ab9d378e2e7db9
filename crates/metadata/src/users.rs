//! Users and their personal access tokens, as every replica knows them.
//!
//! Secrets never reach this module in the clear: shard 0 is handed an Argon2 PHC string for a
//! password and a digest for a token, and that is what the metadata log stores and what every
//! replica keeps. Checking a password or a token is the server's job (it owns the hashing);
//! this module only finds the stored hash.

use std::collections::{BTreeMap, HashMap};

use galgo_protocol::{Identifier, Permissions, Reader};

use crate::{DeleteTokens, MetadataError, NewUser, TokenChange, UserChange, UserId, slab::Slab};

/// The root user's id: created at first start, never deleted, all permissions forever.
pub const ROOT_USER_ID: UserId = UserId(0);

/// A user.
#[derive(Clone, Debug)]
pub struct User {
    /// Id (slab key; freed ids are reused).
    pub id: UserId,
    /// Unique username.
    pub username: String,
    /// Argon2 PHC string of the password.
    pub password_hash: String,
    /// Inactive users cannot log in, and their sessions end.
    pub active: bool,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    /// What the user may do; `None` = nothing beyond its own account and tokens.
    pub permissions: Option<Permissions>,
    /// The version of the event that created this user or last deactivated it. A session
    /// remembers it, so a session of a deleted user never carries over to a new user that
    /// reuses the id, and a session ended by deactivation stays ended after reactivation.
    pub generation: u64,
    pub(crate) tokens: BTreeMap<String, PersonalAccessToken>,
}

impl User {
    #[cfg(test)]
    pub(crate) fn for_tests(id: UserId, permissions: Option<Permissions>) -> Self {
        Self {
            id,
            username: format!("user{}", id.0),
            password_hash: String::new(),
            active: true,
            created_at_us: 0,
            permissions,
            generation: 1,
            tokens: BTreeMap::new(),
        }
    }

    /// The user's tokens, by name.
    pub fn tokens(&self) -> impl Iterator<Item = &PersonalAccessToken> {
        self.tokens.values()
    }
}

/// A personal access token: a name, the digest of the secret and an optional expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonalAccessToken {
    /// Name, unique per user.
    pub name: String,
    /// Digest of the raw token (the raw token is shown once, at creation, and never stored).
    pub token_hash: String,
    /// When it stops working, µs since the epoch; `None` = never.
    pub expiry_at_us: Option<u64>,
}

impl PersonalAccessToken {
    /// True once `now_us` reached the expiry.
    pub fn is_expired(&self, now_us: u64) -> bool {
        self.expiry_at_us.is_some_and(|expiry| expiry <= now_us)
    }
}

/// The users part of the replica.
#[derive(Clone, Debug, Default)]
pub(crate) struct Users {
    users: Slab<User>,
    names: HashMap<String, u32>,
    /// Token digest → (owner, token name), for logins with a token.
    token_hashes: HashMap<String, (UserId, String)>,
}

/// Encodes permissions for a change (the metadata log stores them in wire layout).
pub(crate) fn permissions_record(permissions: Option<&Permissions>) -> Option<Vec<u8>> {
    permissions.map(|permissions| {
        let mut out = bytes::BytesMut::new();
        permissions.encode(&mut out);
        out.to_vec()
    })
}

fn permissions_from_record(record: Option<&Vec<u8>>) -> Option<Permissions> {
    record.map(|bytes| {
        Permissions::decode(&mut Reader::new(bytes))
            .expect("permissions in a change were encoded by shard 0")
    })
}

impl Users {
    /// The users of a snapshot, with the name and token indexes rebuilt. Two users of one
    /// name, or two tokens of one digest, are refused: the indexes could find only one.
    pub(crate) fn restored(users: Slab<User>) -> Result<Self, String> {
        let mut names = HashMap::new();
        let mut token_hashes = HashMap::new();
        for user in users.values() {
            if names.insert(user.username.clone(), user.id.0).is_some() {
                return Err(format!("two users are named {:?}", user.username));
            }
            for token in user.tokens.values() {
                let owner = (user.id, token.name.clone());
                if token_hashes
                    .insert(token.token_hash.clone(), owner)
                    .is_some()
                {
                    return Err(format!("two tokens have the digest {:?}", token.token_hash));
                }
            }
        }
        Ok(Self {
            users,
            names,
            token_hashes,
        })
    }

    /// The users with their id allocation, as a snapshot stores them.
    pub(crate) fn slab(&self) -> &Slab<User> {
        &self.users
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub(crate) fn by_id(&self, id: UserId) -> Option<&User> {
        self.users.get(id.0)
    }

    pub(crate) fn find(&self, user: &Identifier) -> Result<&User, MetadataError> {
        let key = match user {
            Identifier::Numeric(key) => *key,
            Identifier::Name(name) => *self.names.get(name).ok_or(MetadataError::UserNotFound)?,
        };
        self.users.get(key).ok_or(MetadataError::UserNotFound)
    }

    pub(crate) fn by_name(&self, username: &str) -> Option<&User> {
        self.names
            .get(username)
            .and_then(|&key| self.users.get(key))
    }

    pub(crate) fn by_token_hash(&self, hash: &str) -> Option<(&User, &PersonalAccessToken)> {
        let (owner, name) = self.token_hashes.get(hash)?;
        let user = self.users.get(owner.0)?;
        Some((user, user.tokens.get(name)?))
    }

    pub(crate) fn prepare_create(
        &self,
        username: &str,
        password_hash: String,
        active: bool,
        permissions: Option<&Permissions>,
        now_us: u64,
    ) -> Result<NewUser, MetadataError> {
        if self.names.contains_key(username) {
            return Err(MetadataError::UserNameExists);
        }
        Ok(NewUser {
            id: UserId(self.users.next_key()),
            username: username.to_owned(),
            password_hash,
            active,
            permissions: permissions_record(permissions),
            created_at_us: now_us,
        })
    }

    pub(crate) fn prepare_update(
        &self,
        user: &Identifier,
        username: Option<&str>,
        active: Option<bool>,
    ) -> Result<UserChange, MetadataError> {
        let id = self.find(user)?.id;
        if let Some(name) = username
            && self.names.get(name).is_some_and(|&other| other != id.0)
        {
            return Err(MetadataError::UserNameExists);
        }
        if id == ROOT_USER_ID && active == Some(false) {
            return Err(MetadataError::RootMustStayActive);
        }
        Ok(UserChange::Update {
            id,
            username: username.map(str::to_owned),
            active,
        })
    }

    pub(crate) fn prepare_update_permissions(
        &self,
        user: &Identifier,
        permissions: Option<&Permissions>,
    ) -> Result<UserChange, MetadataError> {
        let id = self.find(user)?.id;
        if id == ROOT_USER_ID {
            return Err(MetadataError::CannotChangeRootPermissions);
        }
        Ok(UserChange::UpdatePermissions {
            id,
            permissions: permissions_record(permissions),
        })
    }

    pub(crate) fn prepare_change_password(
        &self,
        user: UserId,
        expected_generation: u64,
        password_hash: String,
    ) -> Result<UserChange, MetadataError> {
        // The caller checked the current password against this very user; if it was deleted
        // (and its id perhaps reused) meanwhile, the change must not land on someone else.
        match self.by_id(user) {
            Some(found) if found.generation == expected_generation => {
                Ok(UserChange::ChangePassword {
                    id: user,
                    password_hash,
                })
            }
            _ => Err(MetadataError::UserNotFound),
        }
    }

    pub(crate) fn prepare_delete(&self, user: &Identifier) -> Result<UserChange, MetadataError> {
        let id = self.find(user)?.id;
        if id == ROOT_USER_ID {
            return Err(MetadataError::CannotDeleteRoot);
        }
        Ok(UserChange::Delete { id })
    }

    pub(crate) fn prepare_create_token(
        &self,
        user: UserId,
        name: &str,
        token_hash: String,
        expiry_at_us: Option<u64>,
        tokens_per_user_max: u32,
    ) -> Result<TokenChange, MetadataError> {
        let owner = self.by_id(user).ok_or(MetadataError::UserNotFound)?;
        if owner.tokens.contains_key(name) {
            return Err(MetadataError::TokenNameExists);
        }
        if owner.tokens.len() >= tokens_per_user_max as usize {
            return Err(MetadataError::TokensLimitReached);
        }
        Ok(TokenChange::Create {
            user_id: user,
            name: name.to_owned(),
            token_hash,
            expiry_at_us,
        })
    }

    pub(crate) fn prepare_delete_token(
        &self,
        user: UserId,
        name: &str,
    ) -> Result<DeleteTokens, MetadataError> {
        let owner = self.by_id(user).ok_or(MetadataError::UserNotFound)?;
        if !owner.tokens.contains_key(name) {
            return Err(MetadataError::TokenNotFound);
        }
        Ok(DeleteTokens {
            tokens: vec![(user, name.to_owned())],
        })
    }

    /// Every token expired at `now_us`, or `None` when there is none.
    pub(crate) fn prepare_delete_expired_tokens(&self, now_us: u64) -> Option<DeleteTokens> {
        let tokens: Vec<(UserId, String)> = self
            .users
            .values()
            .flat_map(|user| {
                user.tokens
                    .values()
                    .filter(move |token| token.is_expired(now_us))
                    .map(move |token| (user.id, token.name.clone()))
            })
            .collect();
        (!tokens.is_empty()).then_some(DeleteTokens { tokens })
    }

    /// Applies a users change. `version` is the event's: a user's generation, which tells a
    /// recreated user from the one whose id it reuses.
    pub(crate) fn apply_user(&mut self, change: &UserChange, version: u64) {
        match change {
            UserChange::Create(new) => self.create(new, version),
            UserChange::Update {
                id,
                username,
                active,
            } => {
                let user = self.users.get_mut(id.0).expect("user to update");
                if let Some(name) = username {
                    self.names.remove(&user.username);
                    user.username = name.clone();
                    self.names.insert(name.clone(), id.0);
                }
                if let Some(active) = active {
                    user.active = *active;
                    if !active {
                        user.generation = version;
                    }
                }
            }
            UserChange::UpdatePermissions { id, permissions } => {
                let user = self.users.get_mut(id.0).expect("user to update");
                user.permissions = permissions_from_record(permissions.as_ref());
            }
            UserChange::ChangePassword { id, password_hash } => {
                let user = self.users.get_mut(id.0).expect("user to update");
                user.password_hash = password_hash.clone();
            }
            UserChange::Delete { id } => {
                let user = self.users.remove(id.0).expect("user to delete");
                self.names.remove(&user.username);
                for token in user.tokens.values() {
                    self.token_hashes.remove(&token.token_hash);
                }
            }
        }
    }

    fn create(&mut self, new: &NewUser, version: u64) {
        let user = User {
            id: new.id,
            username: new.username.clone(),
            password_hash: new.password_hash.clone(),
            active: new.active,
            created_at_us: new.created_at_us,
            permissions: permissions_from_record(new.permissions.as_ref()),
            generation: version,
            tokens: BTreeMap::new(),
        };
        self.users.insert(new.id.0, user);
        self.names.insert(new.username.clone(), new.id.0);
    }

    /// Applies a personal-access-tokens change.
    pub(crate) fn apply_token(&mut self, change: &TokenChange) {
        match change {
            TokenChange::Create {
                user_id,
                name,
                token_hash,
                expiry_at_us,
            } => {
                let user = self.users.get_mut(user_id.0).expect("token's user");
                let token = PersonalAccessToken {
                    name: name.clone(),
                    token_hash: token_hash.clone(),
                    expiry_at_us: *expiry_at_us,
                };
                user.tokens.insert(name.clone(), token);
                self.token_hashes
                    .insert(token_hash.clone(), (*user_id, name.clone()));
            }
            TokenChange::Delete(DeleteTokens { tokens }) => {
                for (user_id, name) in tokens {
                    let user = self.users.get_mut(user_id.0).expect("token's user");
                    let token = user.tokens.remove(name).expect("token to delete");
                    self.token_hashes.remove(&token.token_hash);
                }
            }
        }
    }
}
