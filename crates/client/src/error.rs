//! The one error type of the client.

use galgo_protocol::ErrorCode;

use crate::connection_string::TransportKind;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection string does not follow `iggy[+transport]://credentials@host:port[?options]`.
    #[error("invalid connection string: {0}")]
    InvalidConnectionString(String),
    /// The transport is part of the protocol family but this client cannot speak it yet.
    #[error("transport not supported yet: {0}")]
    UnsupportedTransport(TransportKind),
    /// TLS could not be set up (an unreadable CA file, an invalid domain) or the handshake
    /// failed (the server's certificate is not trusted or does not name it).
    #[error("tls: {0}")]
    Tls(String),
    /// The socket failed or the server closed it.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with this error code.
    #[error("server error {code}: {name}", code = .0.as_u32(), name = .0)]
    Server(ErrorCode),
    /// The server's answer could not be decoded.
    #[error("malformed response to {command}: {code}")]
    MalformedResponse {
        /// The command that was answered.
        command: &'static str,
        /// What the decoder reported.
        code: ErrorCode,
    },
}

impl ClientError {
    /// A failed TLS handshake: rustls's verdict becomes [`ClientError::Tls`], anything else
    /// (the socket failed, the server left) stays an I/O error.
    pub(crate) fn from_handshake(error: std::io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => ClientError::Tls(tls.to_string()),
            None => ClientError::Io(error),
        }
    }

    /// The server's error code, when the server refused the request.
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server(code) => Some(*code),
            _ => None,
        }
    }
}
