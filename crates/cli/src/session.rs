//! The saved session of `galgo login`: a personal access token created at login, never the
//! password, in `session.json` of the user's config directory, readable by the user alone.
//!
//! The directory is `$GALGO_CONFIG_DIR` when set (tests and portable setups), otherwise
//! `$XDG_CONFIG_HOME/galgo`, otherwise `~/.config/galgo`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{CliError, CliResult};

/// The file inside the config directory.
const SESSION_FILE: &str = "session.json";
/// Owner read and write only: the file holds a credential.
const SESSION_FILE_MODE: u32 = 0o600;
/// Owner only for the directory as well.
const CONFIG_DIR_MODE: u32 = 0o700;

/// What `galgo login` saves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// `host:port` of the server.
    pub address: String,
    /// `tcp`, `ws`, … as in connection strings.
    pub transport: String,
    /// Who logged in (for `galgo me` and messages; the token alone decides access).
    pub username: String,
    /// The token's name on the server, so `galgo logout` can delete it.
    pub token_name: String,
    /// The raw token.
    pub token: String,
}

/// The config directory.
pub fn config_dir() -> CliResult<PathBuf> {
    if let Some(dir) = std::env::var_os("GALGO_CONFIG_DIR").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("galgo"));
    }
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("galgo")),
        None => Err(CliError::local(
            "no config directory: set GALGO_CONFIG_DIR, XDG_CONFIG_HOME or HOME",
        )),
    }
}

/// Where the session lives.
pub fn session_path() -> CliResult<PathBuf> {
    Ok(config_dir()?.join(SESSION_FILE))
}

/// The saved session, or `None` when nobody is logged in.
pub fn load() -> CliResult<Option<Session>> {
    let path = session_path()?;
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(CliError::local(format!("read {}: {error}", path.display()))),
    };
    serde_json::from_str(&text).map(Some).map_err(|error| {
        CliError::local(format!(
            "{} is corrupt ({error}): run `galgo logout` and log in again",
            path.display()
        ))
    })
}

/// Saves `session`, replacing any previous one; the file is created with mode 0600 before a
/// byte of the token is written, so the token is never readable by others, even briefly.
pub fn save(session: &Session) -> CliResult<PathBuf> {
    let dir = config_dir()?;
    let failed = |what: &str, error: std::io::Error| {
        CliError::local(format!("{what} {}: {error}", dir.display()))
    };
    if !dir.exists() {
        fs::create_dir_all(&dir).map_err(|error| failed("create", error))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(CONFIG_DIR_MODE))
            .map_err(|error| failed("restrict", error))?;
    }
    let path = dir.join(SESSION_FILE);
    let temporary = dir.join(format!("{SESSION_FILE}.tmp"));
    let _ = fs::remove_file(&temporary);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SESSION_FILE_MODE)
        .open(&temporary)
        .map_err(|error| failed("write into", error))?;
    let text = serde_json::to_string_pretty(session).expect("a session serialises");
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| failed("write into", error))?;
    // Renaming makes the switch atomic: a crash leaves the old session or the new one.
    fs::rename(&temporary, &path).map_err(|error| failed("write into", error))?;
    Ok(path)
}

/// Removes the saved session; `false` when there was none.
pub fn remove() -> CliResult<bool> {
    let path = session_path()?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(CliError::local(format!(
            "remove {}: {error}",
            path.display()
        ))),
    }
}
