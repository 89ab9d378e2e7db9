//! The CLI's one error type and the exit code each kind of failure maps to.
//!
//! Scripts tell failures apart by exit code alone: a mistake in the command line, a refusal by
//! the server (whose error name and code go to stderr), and a server that could not be reached
//! are different problems with different fixes.

use std::process::ExitCode;

use galgo_client::ClientError;
use galgo_protocol::ErrorCode;

/// Exit code of a local failure: a file that cannot be read, a config dir that cannot be written.
pub const EXIT_LOCAL: u8 = 1;
/// Exit code of a usage error: bad flags, a malformed value, no credentials (clap uses 2 too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code of a request the server refused (stderr names the server's error and code), or of
/// a Get whose answer was "no such thing".
pub const EXIT_SERVER: u8 = 3;
/// Exit code of a server that could not be reached, or a connection that broke.
pub const EXIT_CONNECTION: u8 = 4;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line asks for something that cannot be done as written.
    #[error("{0}")]
    Usage(String),
    /// The server answered with an error code.
    #[error("server error: {name} (code {code})", name = .0.name(), code = .0.as_u32())]
    Server(ErrorCode),
    /// The server answered that the thing asked for does not exist (an empty answer, which
    /// the protocol uses instead of an error code for Get commands).
    #[error("not found: {0}")]
    NotFound(String),
    /// The server could not be reached or the connection broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// Something on this machine failed (files, the terminal).
    #[error("{0}")]
    Local(String),
}

impl CliError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Server(_) | CliError::NotFound(_) => EXIT_SERVER,
            CliError::Connection(_) => EXIT_CONNECTION,
            CliError::Local(_) => EXIT_LOCAL,
        })
    }

    /// A usage error with this message.
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }

    /// A local error with this message.
    pub fn local(message: impl Into<String>) -> Self {
        CliError::Local(message.into())
    }
}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Server(code) => CliError::Server(code),
            ClientError::InvalidConnectionString(_) => CliError::Usage(error.to_string()),
            ClientError::UnsupportedTransport(_)
            | ClientError::Tls(_)
            | ClientError::Io(_)
            | ClientError::MalformedResponse { .. } => CliError::Connection(error.to_string()),
        }
    }
}

/// The result of every command.
pub type CliResult<T> = Result<T, CliError>;
