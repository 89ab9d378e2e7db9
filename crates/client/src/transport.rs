//! The byte streams a client can speak over. Every transport carries the same request and
//! response frames; only how the bytes travel differs.
//!
//! TCP is the one transport today. WebSocket (one binary message per frame) and TLS (TCP under
//! rustls) are variants to add here when the server has them to test against; until then
//! [`Transport::connect`] refuses them with [`ClientError::UnsupportedTransport`].

use bytes::BytesMut;
use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::connection_string::TransportKind;
use crate::error::ClientError;

/// One open connection to a server.
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl Transport {
    /// Opens a connection of `kind` to `address` (`host:port`).
    pub async fn connect(
        kind: TransportKind,
        address: &str,
        nodelay: bool,
    ) -> Result<Self, ClientError> {
        match kind {
            TransportKind::Tcp => {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(nodelay)?;
                Ok(Transport::Tcp(stream))
            }
            other => Err(ClientError::UnsupportedTransport(other)),
        }
    }

    /// Writes all of `buffer` and hands it back.
    pub async fn write_all(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        match self {
            Transport::Tcp(stream) => stream.write_all(buffer).await,
        }
    }

    /// Reads once, appending to `buffer` (into its spare capacity); `Ok(0)` means the peer
    /// closed the connection.
    pub async fn append(&mut self, buffer: BytesMut) -> BufResult<usize, BytesMut> {
        match self {
            Transport::Tcp(stream) => stream.append(buffer).await,
        }
    }
}
