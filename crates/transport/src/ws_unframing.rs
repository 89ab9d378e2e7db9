//! The server's WebSocket input, sans I/O: binary frames are unframed here, their payload
//! unmasked while it is appended to the frame loop's buffer, piece by piece as it arrives
//! (requests are a byte stream, PROTOCOL.md §2.1, so a frame need not be whole first). Every
//! other frame (Ping, Pong, Close, Text, and anything malformed) is lent to tungstenite, which
//! reads exactly that frame's bytes out of `incoming` through [`Buffers`] and keeps its
//! answers, close codes and errors as they were. tungstenite never sees a binary frame, so its
//! fragmentation state covers Text only, and ours covers Binary only.
//!
//! ```text
//!   socket ─▶ incoming ─┬─ binary frame payload ── unmask+copy ──▶ frame loop buffer
//!                       └─ any other frame ── lent ──▶ tungstenite ─▶ Pong / Close / error
//! ```

use std::io::Cursor;

use bytes::{Buf, BytesMut};
use tungstenite::{
    WebSocket,
    error::{CapacityError, ProtocolError},
    protocol::frame::{
        FrameHeader,
        coding::{CloseCode, Data, OpCode},
    },
};

use crate::{ws_mask::mask_into, ws_stream::Buffers};

/// Where a server's input stands between two reads: inside a binary frame or message, or not.
#[derive(Debug, Default)]
pub struct Unframing {
    /// The binary frame whose payload is being passed on.
    frame: Option<PayloadFrame>,
    /// Payload bytes of the binary message begun and not finished yet (fragmented).
    message_bytes: Option<usize>,
    /// tungstenite holds the start of a fragmented Text message.
    text_open: bool,
}

#[derive(Debug)]
struct PayloadFrame {
    remaining: usize,
    /// The client's mask (`None` only with `accept_unmasked_frames`), and the payload offset of
    /// the next byte, which selects the mask byte it starts at.
    mask: Option<[u8; 4]>,
    offset: usize,
    is_final: bool,
}

/// What the input holds next.
pub(crate) enum Next {
    /// This many payload bytes were appended to the caller's buffer.
    Delivered(usize),
    /// Nothing until more bytes arrive.
    Receive,
    /// A frame is lent to tungstenite.
    Lent,
    /// A protocol violation or an oversized frame: close with this code.
    Refuse(CloseCode, tungstenite::Error),
}

impl Unframing {
    /// Payload bytes of the current binary frame still to arrive (0 between frames).
    pub(crate) fn remaining(&self) -> usize {
        self.frame.as_ref().map_or(0, |frame| frame.remaining)
    }

    /// Passes on what `incoming` holds of the current binary frame to `buffer`, or reads the
    /// next header.
    pub(crate) fn next(&mut self, ws: &mut WebSocket<Buffers>, buffer: &mut BytesMut) -> Next {
        loop {
            if ws.get_ref().lent > 0 {
                return Next::Lent;
            }
            let Some(frame) = &mut self.frame else {
                match self.begin_frame(ws) {
                    Some(next) => return next,
                    None => continue,
                }
            };
            let buffers = ws.get_mut();
            let count = frame.remaining.min(buffers.incoming.len());
            if count > 0 {
                mask_into(buffer, &buffers.incoming[..count], frame.mask, frame.offset);
                buffers.incoming.advance(count);
                frame.remaining -= count;
                frame.offset += count;
            }
            if frame.remaining == 0 {
                if frame.is_final {
                    self.message_bytes = None;
                }
                self.frame = None;
            }
            if count > 0 {
                return Next::Delivered(count);
            }
            if self.frame.is_some() {
                return Next::Receive;
            }
        }
    }

    /// Reads the next frame's header: a binary frame becomes the current frame (`None`: go on
    /// passing it), any other is lent to tungstenite.
    fn begin_frame(&mut self, ws: &mut WebSocket<Buffers>) -> Option<Next> {
        let can_read = ws.can_read();
        let config = *ws.get_config();
        let buffers = ws.get_mut();
        let mut cursor = Cursor::new(&buffers.incoming[..]);
        let (header, len) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Some(Next::Receive),
            Err(error) => return Some(Next::Refuse(CloseCode::Protocol, error)),
        };
        let header_bytes = cursor.position() as usize;
        let binary = match (header.opcode, self.message_bytes) {
            (OpCode::Data(data @ (Data::Binary | Data::Text)), Some(_)) => {
                let error = ProtocolError::ExpectedFragment(data);
                return Some(Next::Refuse(CloseCode::Protocol, error.into()));
            }
            (OpCode::Data(Data::Binary), None) => !self.text_open,
            (OpCode::Data(Data::Continue), Some(_)) => true,
            _ => false,
        };
        let well_formed = can_read
            && !(header.rsv1 || header.rsv2 || header.rsv3)
            && (header.mask.is_some() || config.accept_unmasked_frames);
        if !(binary && well_formed) {
            // tungstenite answers it, or refuses it with the error it always gave.
            if let OpCode::Data(data) = header.opcode {
                let starts_text = data == Data::Text && !self.text_open;
                let ends_text = data == Data::Continue && self.text_open;
                if (starts_text && !header.is_final) || (ends_text && header.is_final) {
                    self.text_open = !self.text_open;
                }
            }
            buffers.lent = (header_bytes as u64).saturating_add(len) as usize;
            return Some(Next::Lent);
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let message_bytes = self.message_bytes.unwrap_or(0).saturating_add(len);
        let too_long = |size, max_size| {
            let error = CapacityError::MessageTooLong { size, max_size };
            Some(Next::Refuse(CloseCode::Size, error.into()))
        };
        match (config.max_frame_size, config.max_message_size) {
            (Some(max_size), _) if len > max_size => return too_long(len, max_size),
            (_, Some(max_size)) if message_bytes > max_size => {
                return too_long(message_bytes, max_size);
            }
            _ => {}
        }
        buffers.incoming.advance(header_bytes);
        self.message_bytes = Some(message_bytes);
        self.frame = Some(PayloadFrame {
            remaining: len,
            mask: header.mask,
            offset: 0,
            is_final: header.is_final,
        });
        None
    }
}
