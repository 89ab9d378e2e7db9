//! TLS over any [`ByteStream`], driven by rustls's sans-I/O client connection.
//!
//! rustls never touches the socket: ciphertext the inner stream delivers is handed to
//! `read_tls` and decrypted into the caller's buffer, and what rustls wants to send (handshake
//! flights, records, alerts) is collected with `write_tls` into one reused buffer that the inner
//! stream writes. So TLS runs on compio's completion-based I/O with no compatibility layer, and
//! the same adapter carries TCP+TLS and, under a WebSocket, WSS.

use std::{
    io::{self, Write},
    sync::Arc,
};

use bytes::{BufMut, BytesMut};
use compio::BufResult;
use galgo_tls::invalid_data;
use rustls::{ClientConfig, ClientConnection, pki_types::ServerName};

use crate::byte_stream::{ByteStream, receive, send_all};

/// A client-side TLS session over `S`. Lives on one compio runtime.
pub struct TlsStream<S> {
    inner: S,
    tls: ClientConnection,
    /// Ciphertext received and not yet handed to rustls.
    received: BytesMut,
    /// Ciphertext rustls produced, on its way to the socket; reused between writes.
    outgoing: BytesMut,
    /// Plaintext that arrived with the end of the handshake, before anyone asked for it.
    early: BytesMut,
    /// The server sent close_notify: nothing more will come.
    peer_closed: bool,
}

impl<S: ByteStream> TlsStream<S> {
    /// Runs the client handshake with `server_name` over `inner`. A server whose certificate
    /// the configuration does not accept, or that does not speak TLS, gets an alert where
    /// rustls has one and the caller an [`io::ErrorKind::InvalidData`] error wrapping rustls's.
    pub async fn connect(
        inner: S,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Self> {
        let mut tls = ClientConnection::new(config, server_name).map_err(invalid_data)?;
        tls.set_buffer_limit(Some(galgo_tls::SEND_BUFFER_BYTES));
        let mut stream = Self {
            inner,
            tls,
            received: BytesMut::new(),
            outgoing: BytesMut::new(),
            early: BytesMut::new(),
            peer_closed: false,
        };
        stream.handshake().await?;
        Ok(stream)
    }

    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.send_pending().await?;
            if !self.tls.is_handshaking() {
                break;
            }
            if !receive(&mut self.inner, &mut self.received).await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server left during the TLS handshake",
                ));
            }
            let mut early = std::mem::take(&mut self.early);
            let decrypted = self.decrypt(&mut early);
            self.early = early;
            if let Err(error) = decrypted {
                // Best effort: tell the server why (the alert rustls queued) before closing.
                let _ = self.send_pending().await;
                return Err(error);
            }
        }
        // The client's last flight (its Finished).
        self.send_pending().await
    }

    /// Hands every received ciphertext byte to rustls and appends the plaintext to `out`.
    fn decrypt(&mut self, out: &mut BytesMut) -> io::Result<()> {
        if galgo_tls::decrypt(&mut self.tls, &mut self.received, out)? {
            self.peer_closed = true;
        }
        Ok(())
    }

    /// Writes everything rustls has queued (records, handshake messages, alerts).
    async fn send_pending(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut writer = (&mut self.outgoing).writer();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut writer)?;
            }
            send_all(&mut self.inner, &mut self.outgoing).await?;
        }
        Ok(())
    }

    async fn write_plaintext(&mut self, mut rest: &[u8]) -> io::Result<()> {
        while !rest.is_empty() {
            let taken = self.tls.writer().write(rest)?;
            rest = &rest[taken..];
            if !rest.is_empty() {
                // rustls's send buffer is full: let the socket take it.
                self.send_pending().await?;
            }
        }
        self.send_pending().await
    }
}

impl<S: ByteStream> ByteStream for TlsStream<S> {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        if !self.early.is_empty() {
            let count = self.early.len();
            buffer.extend_from_slice(&self.early);
            self.early.clear();
            return BufResult(Ok(count), buffer);
        }
        let before = buffer.len();
        loop {
            let decrypted = self.decrypt(&mut buffer);
            // Alerts, key updates: rustls may have something to say after any input.
            let sent = self.send_pending().await;
            if let Err(error) = decrypted.and(sent) {
                return BufResult(Err(error), buffer);
            }
            if buffer.len() > before || self.peer_closed {
                return BufResult(Ok(buffer.len() - before), buffer);
            }
            match receive(&mut self.inner, &mut self.received).await {
                Ok(true) => {}
                Ok(false) => return BufResult(Ok(0), buffer),
                Err(error) => return BufResult(Err(error), buffer),
            }
        }
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        let written = self.write_plaintext(&buffer).await;
        BufResult(written, buffer)
    }
}
