//! The transports a client can speak over, chosen by the connection string. Every transport
//! carries the same request and response frames; only how the bytes travel differs.
//!
//! ```text
//! iggy://, iggy+tcp://                TCP
//! iggy+tcp://…?tls=true               TCP + TLS (rustls)
//! iggy+ws://                          WebSocket (one binary message per request frame)
//! iggy+ws://…?tls=true                WSS: the WebSocket upgrade inside TLS
//! iggy+quic://, iggy+http://          refused: ClientError::UnsupportedTransport
//! ```
//!
//! The adapters are galgo-transport's, on the client side: the server's are the same code.

use std::{path::Path, sync::Arc};

use bytes::BytesMut;
use compio::{BufResult, net::TcpStream};
use galgo_transport::{
    ByteStream, Client as ClientSide, TlsStream, WsStream,
    tls_config::{client_config, server_name},
};

use crate::connection_string::{ConnectionString, TransportKind};
use crate::error::ClientError;

/// TLS on the client side.
type Tls<S> = TlsStream<S, ClientSide>;
/// WebSocket on the client side.
type Ws<S> = WsStream<S, ClientSide>;

/// One open connection to a server.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TCP + TLS.
    Tls(Box<Tls<TcpStream>>),
    /// WebSocket over TCP.
    WebSocket(Box<Ws<TcpStream>>),
    /// WebSocket over TLS (WSS).
    SecureWebSocket(Box<Ws<Tls<TcpStream>>>),
}

impl Transport {
    /// Opens the connection `connection` describes (transport, address, `nodelay` and the TLS
    /// options), without logging in.
    pub async fn connect(connection: &ConnectionString) -> Result<Self, ClientError> {
        let address = connection.server_address.as_str();
        if matches!(
            connection.transport,
            TransportKind::Quic | TransportKind::Http
        ) {
            return Err(ClientError::UnsupportedTransport(connection.transport));
        }
        let tcp = tcp_stream(address, connection.nodelay).await?;
        let websocket = connection.transport == TransportKind::WebSocket;
        if !connection.tls {
            return Ok(if websocket {
                let url = format!("ws://{address}");
                Transport::WebSocket(Box::new(WsStream::connect(tcp, &url).await?))
            } else {
                Transport::Tcp(tcp)
            });
        }
        let config = client_config(
            connection.tls_validate_certificate,
            connection.tls_ca_file.as_deref().map(Path::new),
        )
        .map_err(ClientError::Tls)?;
        let name = server_name(&connection.tls_domain, address).map_err(ClientError::Tls)?;
        let tls = TlsStream::connect(tcp, Arc::new(config), name)
            .await
            .map_err(ClientError::from_handshake)?;
        Ok(if websocket {
            let url = format!("wss://{address}");
            Transport::SecureWebSocket(Box::new(WsStream::connect(tls, &url).await?))
        } else {
            Transport::Tls(Box::new(tls))
        })
    }

    /// Opens plain TCP to `address` (`host:port`): for peers that are not named by a connection
    /// string, such as the bench's echo baseline.
    pub async fn connect_tcp(address: &str, nodelay: bool) -> Result<Self, ClientError> {
        Ok(Transport::Tcp(tcp_stream(address, nodelay).await?))
    }

    /// Writes all of `buffer`, one whole request frame, and hands it back.
    pub async fn write_all(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        match self {
            Transport::Tcp(stream) => stream.write(buffer).await,
            Transport::Tls(stream) => stream.write(buffer).await,
            Transport::WebSocket(stream) => stream.write(buffer).await,
            Transport::SecureWebSocket(stream) => stream.write(buffer).await,
        }
    }

    /// Reads once, appending to `buffer` (it grows as needed); `Ok(0)` means the peer closed
    /// the connection.
    pub async fn append(&mut self, buffer: BytesMut) -> BufResult<usize, BytesMut> {
        match self {
            Transport::Tcp(stream) => stream.read(buffer).await,
            Transport::Tls(stream) => stream.read(buffer).await,
            Transport::WebSocket(stream) => stream.read(buffer).await,
            Transport::SecureWebSocket(stream) => stream.read(buffer).await,
        }
    }
}

async fn tcp_stream(address: &str, nodelay: bool) -> Result<TcpStream, ClientError> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(nodelay)?;
    Ok(stream)
}
