//! `galgo login` and `galgo logout`: a saved, token-based session.

use clap::Args;
use galgo_client::Credentials;
use serde_json::json;

use crate::args::duration;
use crate::connection::{ConnectionArgs, connect};
use crate::error::{CliError, CliResult};
use crate::output::{Report, now_us};
use crate::session::{self, Session};

/// `galgo login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// How long the saved session stays valid (e.g. 12h, 30d) [default: until logout].
    #[arg(long, value_parser = duration)]
    expiry: Option<std::time::Duration>,
}

/// Logs in with a username and password, creates a personal access token for this machine
/// and saves it (never the password).
pub async fn login(connection: &ConnectionArgs, args: LoginArgs) -> CliResult<Report> {
    if connection.url.is_some() || connection.token.is_some() {
        return Err(CliError::usage(
            "galgo login takes --username (and --password or a prompt), not --url or --token",
        ));
    }
    let Some(username) = connection.username.clone() else {
        return Err(CliError::usage(
            "galgo login needs --username (or GALGO_USERNAME)",
        ));
    };
    let credentials = connection
        .explicit_credentials()?
        .expect("a username was given");
    debug_assert!(matches!(credentials, Credentials::UsernamePassword { .. }));
    let target = connection.connection_string(credentials, None)?;
    let mut client = connect(&target).await?;
    // Token names are 3..=30 bytes: "galgo-cli-" and the login time in seconds fit.
    let token_name = format!("galgo-cli-{}", now_us() / 1_000_000);
    let expiry_us = match args.expiry {
        None => 0,
        Some(expiry) => u64::try_from(expiry.as_micros())
            .ok()
            .filter(|&us| us > 0)
            .ok_or_else(|| CliError::usage("the expiry must be at least 1µs"))?,
    };
    let token = client
        .create_personal_access_token(&token_name, expiry_us)
        .await?;
    let session = Session {
        address: target.server_address.clone(),
        transport: target.transport.to_string(),
        username: username.clone(),
        token_name: token_name.clone(),
        token,
    };
    let path = session::save(&session)?;
    let text = format!(
        "logged in as {username} at {}; session saved in {}",
        session.address,
        path.display()
    );
    let json = json!({
        "username": username,
        "address": session.address,
        "token_name": token_name,
        "session_file": path,
    });
    Ok(Report::text(text, json))
}

/// Deletes the session's token on the server and the saved session.
pub async fn logout() -> CliResult<Report> {
    let Some(saved) = session::load()? else {
        return Ok(Report::text(
            "not logged in",
            json!({ "logged_out": false }),
        ));
    };
    let target = ConnectionArgs::default().connection_string(
        Credentials::PersonalAccessToken(saved.token.clone()),
        Some(&saved),
    )?;
    let revoked = match revoke(&target, &saved.token_name).await {
        Ok(()) => true,
        Err(error) => {
            eprintln!(
                "warning: could not delete token {} on {}: {error}; delete it with `galgo token \
                 delete {}` once the server is reachable",
                saved.token_name, saved.address, saved.token_name
            );
            false
        }
    };
    session::remove()?;
    let text = format!("logged out {} from {}", saved.username, saved.address);
    Ok(Report::text(
        text,
        json!({ "logged_out": true, "token_deleted": revoked }),
    ))
}

async fn revoke(target: &galgo_client::ConnectionString, token_name: &str) -> CliResult<()> {
    let mut client = connect(target).await?;
    client.delete_personal_access_token(token_name).await?;
    Ok(())
}
