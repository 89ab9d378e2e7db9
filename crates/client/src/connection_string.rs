//! SDK-style connection strings, parsed as the official Rust SDK (`iggy` 0.10.0) parses them.
//!
//! ```text
//! iggy://user:password@host:port[?options]          TCP
//! iggy+tcp://user:password@host:port[?options]      TCP
//! iggy+ws://user:password@host:port[?options]       WebSocket
//! iggy+quic://… and iggy+http://…                   recognised, refused when connecting
//! iggy://personal-access-token@host:port            a token instead of credentials
//! options: tls, tls_domain, tls_ca_file, tls_validate_certificate, nodelay, protocol (0.8
//!          or 0.9, galgo's own),
//!          reconnection_retries, reconnection_interval, reestablish_after, heartbeat_interval,
//!          and the SDK's WebSocket tuning (read_buffer_size, write_buffer_size,
//!          max_write_buffer_size, max_message_size, max_frame_size, accept_unmasked_frames)
//! ```
//! `tls_validate_certificate` defaults as in the SDK: true over TCP, false over WebSocket.
//! Like the SDK, the string is split on `://`, `@`, `:` and `?` without percent-decoding, so
//! a password cannot contain `@` or `:`. Options the SDK knows but this client does not act on
//! (reconnection, heartbeat and WebSocket tuning) are accepted and ignored, so every SDK string parses here.

use std::fmt;

use crate::error::ClientError;

/// The transport a connection string names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// Plain TCP (`iggy://`, `iggy+tcp://`).
    Tcp,
    /// WebSocket (`iggy+ws://`).
    WebSocket,
    /// QUIC (`iggy+quic://`).
    Quic,
    /// HTTP (`iggy+http://`).
    Http,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::WebSocket => "ws",
            TransportKind::Quic => "quic",
            TransportKind::Http => "http",
        })
    }
}

/// The generation of the protocol a client speaks (galgo serves both on every port).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// The 0.8 framing (PROTOCOL.md), what `iggy` 0.10.0 speaks.
    #[default]
    V08,
    /// The 0.9 framing (PROTOCOL-0.9.md), what `iggy` 0.11.0 speaks.
    V09,
}

impl std::str::FromStr for Protocol {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "0.8" => Ok(Protocol::V08),
            "0.9" => Ok(Protocol::V09),
            other => Err(invalid(&format!(
                "protocol {other:?} is neither 0.8 nor 0.9"
            ))),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V08 => "0.8",
            Protocol::V09 => "0.9",
        })
    }
}

/// How the client logs in after connecting.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// LoginUser with a username and password.
    UsernamePassword {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// LoginWithPersonalAccessToken.
    PersonalAccessToken(String),
}

impl fmt::Debug for Credentials {
    // Secrets stay out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::UsernamePassword { username, .. } => {
                write!(
                    f,
                    "UsernamePassword {{ username: {username:?}, password: *** }}"
                )
            }
            Credentials::PersonalAccessToken(_) => f.write_str("PersonalAccessToken(***)"),
        }
    }
}

/// A parsed connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionString {
    /// The transport.
    pub transport: TransportKind,
    /// `host:port`, as written.
    pub server_address: String,
    /// How to log in.
    pub credentials: Credentials,
    /// `tls=true`.
    pub tls: bool,
    /// `tls_domain=…`: the name the server's certificate must carry; empty when absent, and
    /// then the host of `server_address`.
    pub tls_domain: String,
    /// `tls_ca_file=…`: a PEM file of the roots to trust instead of the Mozilla roots.
    pub tls_ca_file: Option<String>,
    /// `tls_validate_certificate=…`: check the server's certificate chain and name. Defaults
    /// to true over TCP and false over WebSocket, as in the SDK.
    pub tls_validate_certificate: bool,
    /// `nodelay=true`: disable Nagle's algorithm on the socket.
    pub nodelay: bool,
    /// `protocol=0.8|0.9` (galgo's own option): the generation to speak; 0.8 by default.
    pub protocol: Protocol,
}

const DEFAULT_PREFIX: &str = "iggy://";
const TRANSPORT_PREFIX: &str = "iggy+";
/// The options the SDK accepts that this client accepts and ignores.
const IGNORED_OPTIONS: [&str; 10] = [
    "reconnection_retries",
    "reconnection_interval",
    "reestablish_after",
    "heartbeat_interval",
    "read_buffer_size",
    "write_buffer_size",
    "max_write_buffer_size",
    "max_message_size",
    "max_frame_size",
    "accept_unmasked_frames",
];

fn invalid(why: &str) -> ClientError {
    ClientError::InvalidConnectionString(why.to_owned())
}

impl ConnectionString {
    /// Parses `text`; every malformed part is [`ClientError::InvalidConnectionString`].
    pub fn parse(text: &str) -> Result<Self, ClientError> {
        let transport = parse_transport(text)?;
        let (_, rest) = text
            .split_once("://")
            .ok_or_else(|| invalid("missing ://"))?;
        let (credentials, rest) = rest
            .split_once('@')
            .ok_or_else(|| invalid("missing credentials@"))?;
        if rest.contains('@') {
            return Err(invalid("more than one @"));
        }
        let credentials = parse_credentials(credentials)?;
        let (server_address, options) = match rest.split_once('?') {
            Some((address, options)) => (address, Some(options)),
            None => (rest, None),
        };
        check_address(server_address)?;
        let mut parsed = ConnectionString {
            transport,
            server_address: server_address.to_owned(),
            credentials,
            tls: false,
            tls_domain: String::new(),
            tls_ca_file: None,
            tls_validate_certificate: transport != TransportKind::WebSocket,
            nodelay: false,
            protocol: Protocol::V08,
        };
        if let Some(options) = options {
            parsed.apply_options(options)?;
        }
        Ok(parsed)
    }

    fn apply_options(&mut self, options: &str) -> Result<(), ClientError> {
        for option in options.split('&') {
            let (key, value) = option
                .split_once('=')
                .filter(|(_, value)| !value.contains('='))
                .ok_or_else(|| invalid("an option is not key=value"))?;
            match key {
                "tls" => self.tls = value == "true",
                "tls_domain" => self.tls_domain = value.to_owned(),
                "tls_ca_file" => self.tls_ca_file = Some(value.to_owned()),
                "tls_validate_certificate" => self.tls_validate_certificate = value == "true",
                "nodelay" => self.nodelay = value == "true",
                "protocol" => self.protocol = value.parse()?,
                key if IGNORED_OPTIONS.contains(&key) => {}
                key => return Err(invalid(&format!("unknown option {key:?}"))),
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for ConnectionString {
    type Err = ClientError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

fn parse_transport(text: &str) -> Result<TransportKind, ClientError> {
    if text.starts_with(DEFAULT_PREFIX) {
        return Ok(TransportKind::Tcp);
    }
    let rest = text
        .strip_prefix(TRANSPORT_PREFIX)
        .ok_or_else(|| invalid("must start with iggy:// or iggy+<transport>://"))?;
    let (name, _) = rest
        .split_once("://")
        .ok_or_else(|| invalid("missing ://"))?;
    match name {
        "tcp" => Ok(TransportKind::Tcp),
        "ws" => Ok(TransportKind::WebSocket),
        "quic" => Ok(TransportKind::Quic),
        "http" => Ok(TransportKind::Http),
        other => Err(invalid(&format!("unknown transport {other:?}"))),
    }
}

fn parse_credentials(text: &str) -> Result<Credentials, ClientError> {
    let mut parts = text.split(':');
    let first = parts.next().unwrap_or_default();
    match (parts.next(), parts.next()) {
        (None, _) if !first.is_empty() => Ok(Credentials::PersonalAccessToken(first.to_owned())),
        (Some(password), None) if !first.is_empty() && !password.is_empty() => {
            Ok(Credentials::UsernamePassword {
                username: first.to_owned(),
                password: password.to_owned(),
            })
        }
        _ => Err(invalid("credentials must be user:password or a token")),
    }
}

fn check_address(address: &str) -> Result<(), ClientError> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid("the address needs host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(invalid("the address needs host:port with a numeric port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(username: &str, password: &str) -> Credentials {
        Credentials::UsernamePassword {
            username: username.into(),
            password: password.into(),
        }
    }

    #[test]
    fn default_and_explicit_tcp() {
        let plain = ConnectionString::parse("iggy://iggy:secret@127.0.0.1:8090").unwrap();
        assert_eq!(plain.transport, TransportKind::Tcp);
        assert_eq!(plain.server_address, "127.0.0.1:8090");
        assert_eq!(plain.credentials, user("iggy", "secret"));
        assert!(!plain.nodelay && !plain.tls);
        let tcp = ConnectionString::parse("iggy+tcp://a:b@localhost:1?nodelay=true").unwrap();
        assert_eq!(tcp.transport, TransportKind::Tcp);
        assert!(tcp.nodelay);
    }

    #[test]
    fn other_transports_and_tokens() {
        let ws = ConnectionString::parse("iggy+ws://tok@host:8092").unwrap();
        assert_eq!(ws.transport, TransportKind::WebSocket);
        assert_eq!(
            ws.credentials,
            Credentials::PersonalAccessToken("tok".into())
        );
        let quic = ConnectionString::parse("iggy+quic://u:p@h:1").unwrap();
        assert_eq!(quic.transport, TransportKind::Quic);
    }

    #[test]
    fn sdk_options_parse() {
        let text = "iggy://u:p@h:1?tls=true&tls_domain=example.com&heartbeat_interval=5s\
                    &reconnection_retries=unlimited&reconnection_interval=1s&reestablish_after=5s\
                    &tls_ca_file=ca.pem";
        let parsed = ConnectionString::parse(text).unwrap();
        assert!(parsed.tls);
        assert_eq!(parsed.tls_domain, "example.com");
        assert_eq!(parsed.tls_ca_file.as_deref(), Some("ca.pem"));
        assert!(parsed.tls_validate_certificate);
    }

    #[test]
    fn certificate_validation_defaults_follow_the_sdk() {
        let tcp = ConnectionString::parse("iggy+tcp://u:p@h:1?tls=true").unwrap();
        assert!(tcp.tls_validate_certificate);
        let ws = ConnectionString::parse("iggy+ws://u:p@h:1?tls=true&max_frame_size=1").unwrap();
        assert!(!ws.tls_validate_certificate);
        let checked =
            ConnectionString::parse("iggy+ws://u:p@h:1?tls=true&tls_validate_certificate=true")
                .unwrap();
        assert!(checked.tls_validate_certificate);
        let unchecked = ConnectionString::parse("iggy://u:p@h:1?tls_validate_certificate=false");
        assert!(!unchecked.unwrap().tls_validate_certificate);
    }

    #[test]
    fn malformed_strings_are_refused() {
        for text in [
            "",
            "tcp://u:p@h:1",
            "iggy+smtp://u:p@h:1",
            "iggy://h:1",
            "iggy://u:@h:1",
            "iggy://:p@h:1",
            "iggy://u:p:x@h:1",
            "iggy://u:p@h",
            "iggy://u:p@h:port",
            "iggy://u:p@:1",
            "iggy://u:p@h:99999",
            "iggy://u:p@h:1?nodelay",
            "iggy://u:p@h:1?colour=blue",
            "iggy://u:p@h:1?a=b?c=d",
        ] {
            assert!(
                matches!(
                    ConnectionString::parse(text),
                    Err(ClientError::InvalidConnectionString(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let text = format!("{:?}", user("iggy", "hunter2"));
        assert!(!text.contains("hunter2"));
    }
}
