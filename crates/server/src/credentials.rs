//! Secrets: Argon2id password hashes and personal access tokens.
//!
//! Argon2 is slow and memory-hungry by design (the defaults below take about 19 MiB and some
//! tens of milliseconds per hash on one core). It therefore never runs on a shard's own
//! thread: each hash or verification goes to compio's blocking pool, and a per-shard
//! semaphore ([`HASHES_IN_FLIGHT_PER_SHARD_MAX`]) bounds how many run at once, so a burst of
//! logins costs bounded memory and leaves the shard's other connections served.
//!
//! Tokens are 50 random bytes from the OS in standard base64 (68 characters, as Iggy's); only
//! their BLAKE2b-256 digest is kept. A digest, not Argon2, is right for them: they carry 400
//! bits of entropy, so nothing can be guessed from the digest, and a login looks the token up
//! by digest in the replica.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use async_lock::Semaphore;
use base64ct::{Base64, Encoding};
use blake2::{Blake2b, Digest, digest::consts::U32};

/// Argon2 computations one shard runs at once; more wait their turn.
pub const HASHES_IN_FLIGHT_PER_SHARD_MAX: usize = 2;
/// Random bytes in a personal access token.
const TOKEN_RANDOM_BYTES: usize = 50;
/// Random bytes in a password salt.
const SALT_BYTES: usize = 16;

/// A per-shard gate in front of the blocking pool.
#[derive(Debug)]
pub struct Hasher {
    in_flight: Semaphore,
}

impl Default for Hasher {
    fn default() -> Self {
        Self {
            in_flight: Semaphore::new(HASHES_IN_FLIGHT_PER_SHARD_MAX),
        }
    }
}

impl Hasher {
    /// The Argon2id PHC string of `password`, with a fresh random salt.
    pub async fn hash(&self, password: String) -> String {
        let _turn = self.in_flight.acquire().await;
        compio::runtime::spawn_blocking(move || hash_password(&password))
            .await
            .expect("password hashing does not panic")
    }

    /// True when `password` matches the PHC string `hash`.
    pub async fn verify(&self, password: String, hash: String) -> bool {
        let _turn = self.in_flight.acquire().await;
        compio::runtime::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .expect("password verification does not panic")
    }
}

/// Hashes on the calling thread (start-up, tests).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    getrandom::fill(&mut salt).expect("the OS provides random bytes");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

/// Verifies on the calling thread. A hash that does not parse matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A new raw personal access token.
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::fill(&mut bytes).expect("the OS provides random bytes");
    Base64::encode_string(&bytes)
}

/// The digest stored for a token: BLAKE2b-256, lowercase hex.
pub fn token_hash(token: &str) -> String {
    let digest = Blake2b::<U32>::digest(token.as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("secret");
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("secret"));
        assert!(verify_password("secret", &hash));
        assert!(!verify_password("Secret", &hash));
        assert!(!verify_password("secret", "not a hash"));
        assert_ne!(hash, hash_password("secret"), "salts differ");
    }

    #[test]
    fn tokens_are_68_base64_characters_and_digests_are_stable() {
        let token = new_token();
        assert_eq!(token.len(), 68);
        assert_ne!(token, new_token());
        assert_eq!(token_hash(&token), token_hash(&token));
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token_hash(&new_token()));
    }
}
