//! galgo-tls: what galgo's client and server TLS adapters do alike, without any I/O.
//!
//! Both adapters drive rustls's sans-I/O connection over a byte stream of their own: they read
//! ciphertext into a buffer, hand it to rustls here, and write what rustls queues. Only the
//! handshake's direction and the stream traits differ, so the decryption step lives here once.

use std::io::{self, Read};

use bytes::{Buf, BytesMut};
use rustls::ConnectionCommon;

/// Encrypted bytes rustls may queue before an adapter hands them to the socket (its buffer
/// limit): large requests and responses leave in writes of this size rather than one per
/// 16 KiB record.
pub const SEND_BUFFER_BYTES: usize = 1024 * 1024;

/// Hands every byte of `received` to `tls` and appends the plaintext to `out`. Returns true
/// once the peer has sent close_notify: nothing more will come, and whatever follows it in
/// `received` is dropped.
pub fn decrypt<Side>(
    tls: &mut ConnectionCommon<Side>,
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

/// A rustls error as the I/O error the adapters report (a handshake or record the peer got
/// wrong).
pub fn invalid_data(error: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}
