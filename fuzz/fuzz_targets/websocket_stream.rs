//! The server side of the WebSocket adapter (galgo-transport's `WsStream<_, Server>`, with
//! its unframing in crates/transport/src/ws_unframing.rs) fed an upgrade request followed by
//! arbitrary bytes, split into arbitrary reads: it never panics, and what it hands the frame
//! loop is only the payload of binary or text messages, never more bytes than arrived.
#![no_main]

use std::{collections::VecDeque, io};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use galgo_transport::{ByteStream, Server, WsStream};
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::WebSocketConfig;

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

/// A peer whose bytes arrive in the given pieces; what the server sends is counted.
struct Scripted {
    pieces: VecDeque<Vec<u8>>,
    sent_bytes: usize,
}

impl ByteStream for Scripted {
    async fn read(&mut self, mut buffer: BytesMut) -> BufResult<usize, BytesMut> {
        let piece = self.pieces.pop_front().unwrap_or_default();
        buffer.extend_from_slice(&piece);
        BufResult(Ok(piece.len()), buffer)
    }

    async fn write(&mut self, buffer: BytesMut) -> BufResult<(), BytesMut> {
        self.sent_bytes += buffer.len();
        BufResult(Ok(()), buffer)
    }

    async fn write_vectored(&mut self, chunks: Vec<Bytes>) -> io::Result<()> {
        self.sent_bytes += chunks.iter().map(Bytes::len).sum::<usize>();
        Ok(())
    }

    async fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, frames)) = data.split_first() else {
        return;
    };
    // Cut the frame bytes into reads of 1..=split+1 bytes, as a network might.
    let step = usize::from(split) + 1;
    let mut pieces: VecDeque<Vec<u8>> = VecDeque::from([UPGRADE.to_vec()]);
    pieces.extend(frames.chunks(step).map(<[u8]>::to_vec));
    let total_in = frames.len();
    let peer = Scripted {
        pieces,
        sent_bytes: 0,
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(1 << 16);
    config.max_frame_size = Some(1 << 16);
    let runtime = compio::runtime::Runtime::new().expect("io_uring runtime");
    runtime.block_on(async move {
        let Ok(mut stream) = WsStream::<_, Server>::accept(peer, config).await else {
            return;
        };
        let mut delivered = 0usize;
        let mut buffer = BytesMut::new();
        loop {
            let BufResult(read, returned) = stream.read(buffer).await;
            buffer = returned;
            match read {
                Ok(0) | Err(_) => break,
                Ok(count) => delivered += count,
            }
            assert!(delivered <= total_in, "more bytes out than came in");
            buffer.clear();
        }
        let _ = stream.write_vectored(vec![Bytes::from_static(b"reply")]).await;
    });
});
