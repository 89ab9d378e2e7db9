//! `galgo token …`: the logged-in user's personal access tokens.

use clap::Subcommand;
use galgo_client::Client;
use serde_json::{Value, json};

use crate::args::duration;
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, human_time};

/// `galgo token …`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// The logged-in user's tokens (names and expiries; secrets are never shown again).
    #[command(after_help = "Examples:\n  galgo token list")]
    List,
    /// Creates a token and prints it; the server shows it only this once.
    #[command(
        after_help = "Examples:\n  galgo token create ci-deploy --expiry 30d\n  \
                            TOKEN=$(galgo token create ci -o json | jq -r .token)"
    )]
    Create {
        /// The token's name (3 to 30 bytes).
        name: String,
        /// How long the token stays valid (e.g. 12h, 30d) [default: it never expires].
        #[arg(long, value_parser = duration)]
        expiry: Option<std::time::Duration>,
    },
    /// Deletes a token; it can no longer log in.
    #[command(after_help = "Examples:\n  galgo token delete ci-deploy")]
    Delete {
        /// The token's name.
        name: String,
    },
}

/// Runs a `galgo token` subcommand.
pub async fn run(client: &mut Client, command: TokenCommand) -> CliResult<Report> {
    match command {
        TokenCommand::List => {
            let tokens = client.get_personal_access_tokens().await?;
            let expiry = |us: u64| {
                if us == 0 {
                    "never".to_owned()
                } else {
                    human_time(us)
                }
            };
            let rows = tokens
                .iter()
                .map(|t| vec![t.name.clone(), expiry(t.expiry_at_us)])
                .collect();
            let json = tokens
                .iter()
                .map(|t| json!({ "name": t.name, "expiry_at_us": t.expiry_at_us }))
                .collect();
            Ok(Report {
                human: Human::Table {
                    header: vec!["name", "expires"],
                    rows,
                },
                json: Value::Array(json),
            })
        }
        TokenCommand::Create { name, expiry } => {
            let expiry_us = match expiry {
                None => 0,
                Some(expiry) => u64::try_from(expiry.as_micros())
                    .ok()
                    .filter(|&us| us > 0)
                    .ok_or_else(|| CliError::usage("the expiry must be at least 1µs"))?,
            };
            let token = client
                .create_personal_access_token(&name, expiry_us)
                .await?;
            let json = json!({ "name": name, "token": token });
            Ok(Report::text(token, json))
        }
        TokenCommand::Delete { name } => {
            client.delete_personal_access_token(&name).await?;
            let text = format!("deleted token {name}");
            Ok(Report::text(text, json!({ "deleted": name })))
        }
    }
}
