//! TLS over any [`ByteStream`], driven by rustls's sans-I/O server connection.
//!
//! rustls never touches the socket: ciphertext the inner stream delivers is handed to
//! `read_tls` and decrypted into the caller's buffer, and whatever rustls wants to send
//! (handshake flights, records, alerts) is taken with `write_tls` and written by the inner
//! stream. So TLS runs on compio's completion-based I/O with no compatibility layer, and the
//! same adapter serves TCP+TLS and, under a WebSocket, WSS.

use std::{
    io::{self, Write},
    sync::Arc,
};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use galgo_tls::invalid_data;
use rustls::{ServerConfig, ServerConnection};

use crate::byte_stream::ByteStream;

/// A server-side TLS session over `S`. Lives in one connection task.
pub struct TlsStream<S> {
    inner: S,
    tls: ServerConnection,
    /// Ciphertext received and not yet handed to rustls.
    received: BytesMut,
    /// Plaintext that arrived with the end of the handshake, before anyone asked for it.
    early: BytesMut,
    /// The peer sent close_notify: nothing more will come.
    peer_closed: bool,
}

/// Everything of a [`TlsStream`] but its inner stream: rustls is sans-I/O, so a session
/// continues over a copy of the socket on another shard (migration.rs).
pub struct TlsState {
    tls: ServerConnection,
    received: BytesMut,
    early: BytesMut,
    peer_closed: bool,
}

impl<S: ByteStream> TlsStream<S> {
    /// Splits the stream into its inner stream and the TLS state; nothing is lost as long as
    /// no read or write is in progress (each write ends with everything rustls queued sent).
    pub fn into_parts(self) -> (S, TlsState) {
        let state = TlsState {
            tls: self.tls,
            received: self.received,
            early: self.early,
            peer_closed: self.peer_closed,
        };
        (self.inner, state)
    }

    /// Rebuilds a stream from [`Self::into_parts`]'s state over `inner`, a copy of the socket.
    pub fn from_parts(inner: S, state: TlsState) -> Self {
        Self {
            inner,
            tls: state.tls,
            received: state.received,
            early: state.early,
            peer_closed: state.peer_closed,
        }
    }

    /// Runs the server handshake over `inner`. A peer that does not speak TLS, or fails the
    /// handshake, gets an alert where rustls has one and an error here.
    pub async fn accept(inner: S, config: Arc<ServerConfig>) -> io::Result<Self> {
        let mut tls = ServerConnection::new(config).map_err(invalid_data)?;
        tls.set_buffer_limit(Some(galgo_tls::SEND_BUFFER_BYTES));
        let mut stream = Self {
            inner,
            tls,
            received: BytesMut::new(),
            early: BytesMut::new(),
            peer_closed: false,
        };
        while stream.tls.is_handshaking() {
            stream.send_pending().await?;
            if !stream.receive().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer left during the TLS handshake",
                ));
            }
            let mut early = std::mem::take(&mut stream.early);
            let decrypted = stream.decrypt(&mut early);
            stream.early = early;
            if let Err(error) = decrypted {
                // Best effort: tell the peer why (the alert rustls queued) before closing.
                let _ = stream.send_pending().await;
                return Err(error);
            }
        }
        // The last flight of the handshake (and TLS 1.3 session tickets).
        stream.send_pending().await?;
        Ok(stream)
    }

    /// Reads more ciphertext from the inner stream; `false` at its end.
    async fn receive(&mut self) -> io::Result<bool> {
        let buffer = std::mem::take(&mut self.received);
        let BufResult(read, buffer) = self.inner.read(buffer).await;
        self.received = buffer;
        read.map(|count| count > 0)
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
            let mut ciphertext = Vec::new();
            while self.tls.wants_write() {
                self.tls.write_tls(&mut ciphertext)?;
            }
            self.inner.write(vec![Bytes::from(ciphertext)]).await?;
        }
        Ok(())
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
            match self.receive().await {
                Ok(true) => {}
                Ok(false) => return BufResult(Ok(0), buffer),
                Err(error) => return BufResult(Err(error), buffer),
            }
        }
    }

    async fn write(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        for chunk in &chunks {
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let taken = self.tls.writer().write(rest)?;
                rest = &rest[taken..];
                if !rest.is_empty() {
                    // rustls's send buffer is full: let the socket take it.
                    self.send_pending().await?;
                }
            }
        }
        self.send_pending().await
    }

    async fn close(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.send_pending().await?;
        self.inner.close().await
    }
}
