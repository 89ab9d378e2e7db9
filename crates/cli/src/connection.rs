//! Which server to talk to and how to log in: flags, then environment variables, then the
//! session saved by `galgo login`, then defaults.
//!
//! ```text
//! --url / GALGO_URL            a whole connection string; nothing else is consulted
//! --address / GALGO_ADDRESS    else the session's address, else 127.0.0.1:8090
//! --transport / GALGO_TRANSPORT  else the session's, else tcp
//! --protocol / GALGO_PROTOCOL  0.8 or 0.9: the client generation to speak (else the
//!                              connection string's `protocol`, else 0.8)
//! --token / GALGO_TOKEN        a personal access token
//! --username, --password       (GALGO_USERNAME, GALGO_PASSWORD) a password is prompted for
//!                              when only the username is given
//! neither                      the saved session's token, else a usage error (or, for
//!                              `galgo ping`, no login at all: Ping needs none)
//! ```

use clap::Args;
use galgo_client::transport::Transport;
use galgo_client::{Client, ConnectionString, Credentials, Protocol, TransportKind};

use crate::error::{CliError, CliResult};
use crate::prompt::read_password;
use crate::session::{self, Session};

/// The address of a server started with its defaults.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8090";

/// Connection flags, accepted by every subcommand.
#[derive(Args, Clone, Debug, Default)]
pub struct ConnectionArgs {
    /// A connection string, e.g. iggy://user:secret@host:8090 or iggy+tcp://TOKEN@host:8090.
    #[arg(long, global = true, env = "GALGO_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// The server's host:port [default: the saved session's, else 127.0.0.1:8090].
    #[arg(long, global = true, env = "GALGO_ADDRESS")]
    pub address: Option<String>,
    /// tcp or ws [default: the saved session's, else tcp].
    #[arg(long, global = true, env = "GALGO_TRANSPORT")]
    pub transport: Option<String>,
    /// Log in as this user.
    #[arg(short, long, global = true, env = "GALGO_USERNAME")]
    pub username: Option<String>,
    /// The user's password (prompted for when --username is given without it).
    #[arg(
        short,
        long,
        global = true,
        env = "GALGO_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Log in with a personal access token.
    #[arg(long, global = true, env = "GALGO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The protocol generation to speak: 0.8 or 0.9 (galgo serves both) [default: the
    /// connection string's, else 0.8].
    #[arg(long, global = true, env = "GALGO_PROTOCOL")]
    pub protocol: Option<Protocol>,
}

/// Whether a command needs a logged-in connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// The command fails with a usage error when no credentials are found.
    Required,
    /// The command also works on a connection that never logs in (Ping).
    Optional,
}

/// Where to connect, and whether to log in there.
pub struct Target {
    /// The server, the transport and (when `login`) the credentials.
    pub connection: ConnectionString,
    /// False when no credentials were found and the command needs none.
    pub login: bool,
}

impl ConnectionArgs {
    /// The connection these flags, the environment and the saved session describe.
    pub fn resolve(&self, login: Login) -> CliResult<Target> {
        if let Some(url) = &self.url {
            let mut connection = ConnectionString::parse(url)?;
            connection.protocol = self.protocol.unwrap_or(connection.protocol);
            return Ok(Target {
                connection,
                login: true,
            });
        }
        let saved = session::load()?;
        let credentials = match self.explicit_credentials()? {
            Some(credentials) => Some(credentials),
            None => saved
                .as_ref()
                .map(|session| Credentials::PersonalAccessToken(session.token.clone())),
        };
        match (credentials, login) {
            (Some(credentials), _) => Ok(Target {
                connection: self.connection_string(credentials, saved.as_ref())?,
                login: true,
            }),
            (None, Login::Optional) => {
                // The placeholder is never sent: an anonymous connection does not log in.
                let placeholder = Credentials::PersonalAccessToken(String::new());
                Ok(Target {
                    connection: self.connection_string(placeholder, None)?,
                    login: false,
                })
            }
            (None, Login::Required) => Err(not_logged_in()),
        }
    }

    /// Username and password (prompting for the password) or a token, when given.
    pub fn explicit_credentials(&self) -> CliResult<Option<Credentials>> {
        if let Some(token) = &self.token {
            return Ok(Some(Credentials::PersonalAccessToken(token.clone())));
        }
        let Some(username) = &self.username else {
            if self.password.is_some() {
                return Err(CliError::usage("--password needs --username"));
            }
            return Ok(None);
        };
        let password = match &self.password {
            Some(password) => password.clone(),
            None => read_password(&format!("Password for {username}: "))?,
        };
        Ok(Some(Credentials::UsernamePassword {
            username: username.clone(),
            password,
        }))
    }

    /// A connection string with `credentials` and the address and transport of the flags,
    /// else of `saved`, else the defaults.
    pub fn connection_string(
        &self,
        credentials: Credentials,
        saved: Option<&Session>,
    ) -> CliResult<ConnectionString> {
        let address = self
            .address
            .clone()
            .or_else(|| saved.map(|session| session.address.clone()))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_owned());
        let transport = self
            .transport
            .clone()
            .or_else(|| saved.map(|session| session.transport.clone()))
            .unwrap_or_else(|| TransportKind::Tcp.to_string());
        // Parsing a credential-free string checks the address and transport the same way a
        // whole connection string is checked; the credentials are set afterwards so that a
        // password may hold any character.
        let mut parsed = ConnectionString::parse(&format!("iggy+{transport}://check@{address}"))?;
        parsed.credentials = credentials;
        parsed.protocol = self.protocol.unwrap_or_default();
        Ok(parsed)
    }
}

fn not_logged_in() -> CliError {
    CliError::usage(
        "no credentials: run `galgo login`, or pass --username (and --password), --token or \
         --url (or set GALGO_USERNAME, GALGO_TOKEN or GALGO_URL)",
    )
}

/// Connects and logs in as `connection` says.
pub async fn connect(connection: &ConnectionString) -> CliResult<Client> {
    Ok(Client::connect(connection).await?)
}

/// Connects to `target`, logging in unless it says not to.
pub async fn connect_to(target: &Target) -> CliResult<Client> {
    if target.login {
        return connect(&target.connection).await;
    }
    let transport = Transport::connect(&target.connection).await?;
    Ok(Client::with_protocol(transport, target.connection.protocol))
}
