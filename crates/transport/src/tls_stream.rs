//! TLS over any [`ByteStream`], driven by rustls's sans-I/O connection of either side.
//!
//! rustls never touches the socket: ciphertext the inner stream delivers is handed to
//! `read_tls` and decrypted into the caller's buffer, and what rustls wants to send (handshake
//! flights, records, alerts) is collected with `write_tls` into one reused buffer that the inner
//! stream writes. So TLS runs on compio's completion-based I/O with no compatibility layer, and
//! the same adapter carries TCP+TLS and, under a WebSocket, WSS. The two sides differ only in
//! the connection rustls starts (a client's names the server); the handshake loop is shared.

use std::{
    io::{self, IoSlice, Read, Write},
    sync::Arc,
};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use compio::BufResult;
use rustls::{
    ClientConfig, ClientConnection, ServerConfig, ServerConnection, pki_types::ServerName,
};

use crate::{
    byte_stream::{ByteStream, receive, send_all},
    limits::{IOVECS_MAX, READ_CHUNK_BYTES, SEND_BUFFER_BYTES},
    side::{Client, Server, Side},
};

/// A TLS session over `S`, on the client or the server side. Lives on one compio runtime.
pub struct TlsStream<S, Si: Side> {
    inner: S,
    tls: Si::TlsConnection,
    /// Ciphertext received and not yet handed to rustls.
    received: BytesMut,
    /// Ciphertext rustls produced, on its way to the socket; reused between writes.
    outgoing: BytesMut,
    /// Plaintext that arrived with the end of the handshake, before anyone asked for it.
    early: BytesMut,
    /// The peer sent close_notify: nothing more will come.
    peer_closed: bool,
}

/// Everything of a [`TlsStream`] but its inner stream: rustls is sans-I/O, so a session
/// continues over a copy of the socket on another thread (the server's migration.rs).
pub struct TlsState<Si: Side> {
    tls: Si::TlsConnection,
    received: BytesMut,
    outgoing: BytesMut,
    early: BytesMut,
    peer_closed: bool,
}

impl<S: ByteStream> TlsStream<S, Client> {
    /// Runs the client handshake with `server_name` over `inner`. A server whose certificate
    /// the configuration does not accept, or that does not speak TLS, gets an alert where
    /// rustls has one and the caller an [`io::ErrorKind::InvalidData`] error wrapping rustls's.
    pub async fn connect(
        inner: S,
        config: Arc<ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<Self> {
        let tls = ClientConnection::new(config, server_name).map_err(invalid_data)?;
        Self::handshake(inner, tls).await
    }
}

impl<S: ByteStream> TlsStream<S, Server> {
    /// Runs the server handshake over `inner`. A peer that does not speak TLS, or fails the
    /// handshake, gets an alert where rustls has one and an error here.
    pub async fn accept(inner: S, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = ServerConnection::new(config).map_err(invalid_data)?;
        Self::handshake(inner, tls).await
    }
}

impl<S: ByteStream, Si: Side> TlsStream<S, Si> {
    /// Splits the stream into its inner stream and the TLS state; nothing is lost as long as
    /// no read or write is in progress (each write ends with everything rustls queued sent).
    pub fn into_parts(self) -> (S, TlsState<Si>) {
        let state = TlsState {
            tls: self.tls,
            received: self.received,
            outgoing: self.outgoing,
            early: self.early,
            peer_closed: self.peer_closed,
        };
        (self.inner, state)
    }

    /// Rebuilds a stream from [`Self::into_parts`]'s state over `inner`, a copy of the socket.
    pub fn from_parts(inner: S, state: TlsState<Si>) -> Self {
        Self {
            inner,
            tls: state.tls,
            received: state.received,
            outgoing: state.outgoing,
            early: state.early,
            peer_closed: state.peer_closed,
        }
    }

    /// Runs the handshake `tls` starts (the client's first flight, or the server's wait for
    /// it) over `inner`.
    async fn handshake(inner: S, mut tls: Si::TlsConnection) -> io::Result<Self> {
        tls.set_buffer_limit(Some(SEND_BUFFER_BYTES));
        let mut stream = Self {
            inner,
            tls,
            received: BytesMut::new(),
            outgoing: BytesMut::new(),
            early: BytesMut::new(),
            peer_closed: false,
        };
        while stream.tls.is_handshaking() {
            stream.send_pending().await?;
            if !stream.tls.is_handshaking() {
                break;
            }
            if !stream.receive().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} left during the TLS handshake", Si::PEER),
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
        // The last flight of the handshake (a client's Finished, a server's TLS 1.3 session
        // tickets).
        stream.send_pending().await?;
        Ok(stream)
    }

    /// Reads more ciphertext from the inner stream; `false` at its end.
    async fn receive(&mut self) -> io::Result<bool> {
        receive(&mut self.inner, &mut self.received, READ_CHUNK_BYTES).await
    }

    /// Hands every received ciphertext byte to rustls and appends the plaintext to `out`.
    fn decrypt(&mut self, out: &mut BytesMut) -> io::Result<()> {
        if decrypt(&mut self.tls, &mut self.received, out)? {
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

    /// Encrypts all of `plaintext`, sending records whenever rustls's send buffer fills; what
    /// is left queued goes out with the next [`Self::send_pending`].
    async fn encrypt(&mut self, mut plaintext: &[u8]) -> io::Result<()> {
        while !plaintext.is_empty() {
            let taken = self.tls.writer().write(plaintext)?;
            plaintext = &plaintext[taken..];
            if !plaintext.is_empty() {
                // rustls's send buffer is full: let the socket take it.
                self.send_pending().await?;
            }
        }
        Ok(())
    }
}

impl<S: ByteStream, Si: Side> ByteStream for TlsStream<S, Si> {
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

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        let encrypted = self.encrypt(&buffer).await;
        let written = match encrypted {
            Ok(()) => self.send_pending().await,
            Err(error) => Err(error),
        };
        BufResult(written, buffer)
    }

    async fn write_vectored(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        // All chunks in one call: rustls fills each record from as many of them as it takes,
        // where a call per chunk would end a record at every chunk (a 0.9 poll reply has two
        // a message).
        // At most IOVECS_MAX slices a call, so a reply of very many chunks is not listed
        // whole again after every partial write.
        let (mut index, mut offset) = (0, 0);
        while index < chunks.len() {
            let slices: Vec<IoSlice<'_>> = std::iter::once(&chunks[index][offset..])
                .chain(chunks[index + 1..].iter().map(|chunk| &chunk[..]))
                .take(IOVECS_MAX)
                .map(IoSlice::new)
                .collect();
            let offered: usize = slices.iter().map(|slice| slice.len()).sum();
            let taken = self.tls.writer().write_vectored(&slices)?;
            let mut left = taken;
            while index < chunks.len() && left >= chunks[index].len() - offset {
                left -= chunks[index].len() - offset;
                (index, offset) = (index + 1, 0);
            }
            offset += left;
            if taken < offered {
                // rustls's send buffer is full: let the socket take it.
                self.send_pending().await?;
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

/// Hands every byte of `received` to `tls` and appends the plaintext to `out`. Returns true
/// once the peer has sent close_notify: nothing more will come, and whatever follows it in
/// `received` is dropped.
fn decrypt<Data>(
    tls: &mut rustls::ConnectionCommon<Data>,
    received: &mut BytesMut,
    out: &mut BytesMut,
) -> io::Result<bool> {
    let mut peer_closed = false;
    while !received.is_empty() {
        let mut ciphertext = &received[..];
        let consumed = tls.read_tls(&mut ciphertext)?;
        received.advance(consumed);
        let state = tls.process_new_packets().map_err(invalid_data)?;
        // Drained after every record batch: rustls holds only a little plaintext itself.
        let plaintext = state.plaintext_bytes_to_read();
        if plaintext > 0 {
            let start = out.len();
            out.resize(start + plaintext, 0);
            tls.reader().read_exact(&mut out[start..])?;
        }
        if state.peer_has_closed() {
            peer_closed = true;
        }
        if consumed == 0 {
            // After close_notify rustls takes nothing more; what follows is ignored.
            received.clear();
        }
    }
    Ok(peer_closed)
}

/// A rustls error as the I/O error the adapter reports (a handshake or record the peer got
/// wrong).
fn invalid_data(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
