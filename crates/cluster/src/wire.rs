//! The replication protocol between nodes: a handshake, then checksummed frames of Raft
//! messages. Pure encoding and decoding, no I/O; decoding never panics on any input.
//!
//! ```text
//! handshake (dialer → acceptor, once):
//!   magic "galgoRPL" | version u16 | from node u64 | to node u64 | shard u16
//!   | tcp port u16 | websocket port u16 (the dialer's client listeners, 0: none)
//!   | disk id u64 (the dialer's data directory, crate::disks)
//!   | cluster id length u8 | cluster id                                   (integers LE)
//! frame:
//!   [body length u32][xxh3-64 of body u64][body]
//!   body: kind u8 = 1 (Raft messages; none at all is a keepalive), then per message:
//!         group u64 | length u32 | raft-rs `eraftpb.Message`, protobuf-encoded (its
//!         entries after its other fields, and an entry's data after its other fields: any
//!         order is valid protobuf, and a large entry's data goes out from where it lies)
//!   body: kind u8 = 2 (a send forwarded to the partition's leader):
//!         call u64 | group u64 | count u32 | the messages as the client sent them
//!   body: kind u8 = 3 (its outcome, on the connection the leader dialed):
//!         call u64 | status u8 | leader u64 | first offset u64 | last offset u64
//!   body: kind u8 = 4 (a consumer offset write forwarded to the partition's leader):
//!         call u64 | group u64 | owner kind u8 (1 consumer, 2 group) | owner id u32
//!         | op u8 (1 store, 2 delete) | offset u64
//!         answered with kind 3: Stored with the entry's index as both offsets
//! ```
//!
//! A connection is one-way: the dialer only writes. Replies are messages on the connection
//! the other node dialed, so no two nodes ever race to dial each other.

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Entry, Message};
use thiserror::Error;
use xxhash_rust::xxh3::Xxh3;

/// What every replication connection starts with.
pub const MAGIC: &[u8; 8] = b"galgoRPL";
/// The protocol version this build speaks (2: the handshake carries the disk id; 3: calls and
/// answers between the nodes' servers).
pub const VERSION: u16 = 3;
/// Size of a frame's header.
pub const FRAME_HEADER_BYTES: usize = 12;
/// Largest frame body accepted.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// The fixed part of a handshake (all but the cluster id).
pub const HANDSHAKE_FIXED_BYTES: usize = 8 + 2 + 8 + 8 + 2 + 2 + 2 + 8 + 1;
/// A frame as written: its pieces in order, the header first.
pub type Pieces = Vec<Bytes>;
/// Entry data at least this large is written from where it lies, not copied into the frame.
const SHARED_DATA_MIN: usize = 4096;
/// A frame is cut once it has about this many pieces (a message with many large entries can
/// add more; the writer splits its writes at IOV_MAX anyway).
pub const FRAME_PIECES_MAX: usize = 512;
/// Protobuf key of `eraftpb.Message.entries` (field 7, length-delimited).
const ENTRIES_KEY: u8 = 7 << 3 | 2;
/// Protobuf key of `eraftpb.Entry.data` (field 4, length-delimited).
const DATA_KEY: u8 = 4 << 3 | 2;
/// Frame kind: Raft messages.
const KIND_RAFT: u8 = 1;
/// Frame kind: a forwarded send.
const KIND_SEND: u8 = 2;
/// Frame kind: a forwarded send's outcome.
const KIND_OUTCOME: u8 = 3;
/// Frame kind: a forwarded consumer offset write.
const KIND_OFFSET: u8 = 4;
/// Frame kind: a call to the peer's server (galgo-server's remote partition calls), opaque
/// here.
const KIND_CALL: u8 = 5;
/// Frame kind: the answer to a call, opaque here.
const KIND_ANSWER: u8 = 6;
/// Bytes of a call's or an answer's fixed part, kind included.
const CALL_FIXED_BYTES: usize = 1 + 8;
/// Bytes of an outcome body, kind included.
const OUTCOME_BYTES: usize = 1 + 8 + 1 + 8 + 8 + 8;
/// Bytes of a forwarded offset write's body, kind included.
const OFFSET_BYTES: usize = 1 + 8 + 8 + 1 + 4 + 1 + 8;

/// A send forwarded to the node leading its partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedSend {
    /// The sender's number for it, echoed in the outcome.
    pub call: u64,
    /// The partition's group.
    pub group: u64,
    /// Messages in `messages`.
    pub count: u32,
    /// The messages as the client sent them.
    pub messages: Bytes,
}

/// A consumer offset write forwarded to the node leading its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardedOffset {
    /// The sender's number for it, echoed in the outcome.
    pub call: u64,
    /// The partition's group.
    pub group: u64,
    /// Whose offset.
    pub owner: galgo_storage::OffsetOwner,
    /// The offset to store; `None` deletes it.
    pub offset: Option<u64>,
}

/// What became of a forwarded send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Acknowledged: the offsets of its first and last message.
    Stored {
        /// First message's offset.
        first_offset: u64,
        /// Last message's offset.
        last_offset: u64,
    },
    /// The receiver does not lead the partition (the leader it knows, 0: none).
    NotLeader(u64),
    /// Not stored: refused, or replaced by another leader's entries.
    NotStored,
    /// The batch is malformed.
    Invalid,
    /// No outcome: it may still be stored.
    Unknown,
}

/// A decoded frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// Raft messages, with their groups.
    Raft(Vec<(u64, Message)>),
    /// A forwarded send.
    Send(ForwardedSend),
    /// A forwarded send's outcome, by call number.
    Outcome(u64, SendOutcome),
    /// A forwarded consumer offset write.
    Offset(ForwardedOffset),
    /// A call to this node's server: its number and body.
    Call(u64, Bytes),
    /// The answer to a call this node made: the call's number and the answer's body.
    Answer(u64, Bytes),
}

/// A frame of one forwarded send, header included; the messages are a piece of their own.
pub fn encode_send(send: &ForwardedSend) -> Pieces {
    let mut fixed = Vec::with_capacity(21);
    fixed.push(KIND_SEND);
    fixed.extend_from_slice(&send.call.to_le_bytes());
    fixed.extend_from_slice(&send.group.to_le_bytes());
    fixed.extend_from_slice(&send.count.to_le_bytes());
    let mut hasher = Xxh3::new();
    hasher.update(&fixed);
    hasher.update(&send.messages);
    let len = fixed.len() + send.messages.len();
    vec![
        header(len, hasher.digest()),
        Bytes::from(fixed),
        send.messages.clone(),
    ]
}

/// A frame of a call (`KIND_CALL`) or an answer (`KIND_ANSWER`): the fixed part, then
/// `body`'s pieces as they are.
fn encode_opaque(kind: u8, call: u64, body: Pieces) -> Pieces {
    let mut fixed = Vec::with_capacity(CALL_FIXED_BYTES);
    fixed.push(kind);
    fixed.extend_from_slice(&call.to_le_bytes());
    let mut hasher = Xxh3::new();
    hasher.update(&fixed);
    let mut len = fixed.len();
    for piece in &body {
        hasher.update(piece);
        len += piece.len();
    }
    let mut pieces = Vec::with_capacity(body.len() + 2);
    pieces.push(header(len, hasher.digest()));
    pieces.push(Bytes::from(fixed));
    pieces.extend(body.into_iter().filter(|piece| !piece.is_empty()));
    pieces
}

/// A frame of a call to a peer's server, numbered `call`; its body is the server's.
pub fn encode_call(call: u64, body: Pieces) -> Pieces {
    encode_opaque(KIND_CALL, call, body)
}

/// A frame answering call `call`.
pub fn encode_answer(call: u64, body: Pieces) -> Pieces {
    encode_opaque(KIND_ANSWER, call, body)
}

/// A frame header: the body's length and checksum.
fn header(len: usize, checksum: u64) -> Bytes {
    let mut header = Vec::with_capacity(FRAME_HEADER_BYTES);
    header.extend_from_slice(&(len as u32).to_le_bytes());
    header.extend_from_slice(&checksum.to_le_bytes());
    Bytes::from(header)
}

/// A frame of one forwarded offset write, header included.
pub fn encode_offset(write: &ForwardedOffset) -> Pieces {
    let (kind, id) = match write.owner {
        galgo_storage::OffsetOwner::Consumer(id) => (1u8, id),
        galgo_storage::OffsetOwner::Group(id) => (2, id),
    };
    let (op, offset) = match write.offset {
        Some(offset) => (1u8, offset),
        None => (2, 0),
    };
    let mut body = open(KIND_OFFSET, OFFSET_BYTES - 1);
    body.extend_from_slice(&write.call.to_le_bytes());
    body.extend_from_slice(&write.group.to_le_bytes());
    body.push(kind);
    body.extend_from_slice(&id.to_le_bytes());
    body.push(op);
    body.extend_from_slice(&offset.to_le_bytes());
    vec![Bytes::from(seal(body))]
}

/// A frame of one outcome, header included.
pub fn encode_outcome(call: u64, outcome: SendOutcome) -> Pieces {
    let (status, leader, first, last) = match outcome {
        SendOutcome::Stored {
            first_offset,
            last_offset,
        } => (0u8, 0, first_offset, last_offset),
        SendOutcome::NotLeader(leader) => (1, leader, 0, 0),
        SendOutcome::NotStored => (2, 0, 0, 0),
        SendOutcome::Invalid => (3, 0, 0, 0),
        SendOutcome::Unknown => (4, 0, 0, 0),
    };
    let mut body = open(KIND_OUTCOME, OUTCOME_BYTES - 1);
    body.extend_from_slice(&call.to_le_bytes());
    body.push(status);
    for value in [leader, first, last] {
        body.extend_from_slice(&value.to_le_bytes());
    }
    vec![Bytes::from(seal(body))]
}

/// A frame of no Raft messages: what a connection with nothing to send writes now and then,
/// so that its peer hears from this node.
pub fn encode_keepalive() -> Pieces {
    vec![Bytes::from(seal(open(KIND_RAFT, 0)))]
}

/// A frame of `kind` being written: room for its header, then the kind, with capacity for
/// `rest` more bytes of body. [`seal`] fills the header in place, so a body is never copied.
fn open(kind: u8, rest: usize) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + 1 + rest);
    frame.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    frame.push(kind);
    frame
}

/// Writes the header of a frame [`open`] started: the body's length and checksum.
fn seal(mut frame: Vec<u8>) -> Vec<u8> {
    let (header, body) = frame.split_at_mut(FRAME_HEADER_BYTES);
    header[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[4..].copy_from_slice(&xxhash_rust::xxh3::xxh3_64(body).to_le_bytes());
    frame
}

/// The Raft group of cluster metadata; partition groups get ids from 1 on.
pub const METADATA_GROUP: u64 = 0;

/// Who is dialing whom, for what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The dialing node.
    pub from: u64,
    /// The node it means to reach.
    pub to: u64,
    /// The shard on the acceptor its messages are for.
    pub shard: u16,
    /// The port of the dialer's TCP client listener (0: none), for GetClusterMetadata where
    /// the roster names no address.
    pub tcp_port: u16,
    /// The same for WebSocket.
    pub websocket_port: u16,
    /// The dialer's disk id (crate::disks).
    pub disk_id: u64,
    /// The cluster both belong to.
    pub cluster_id: String,
}

/// Why bytes from a peer were refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// Not a galgo replication connection.
    #[error("not a galgo replication connection (wrong magic)")]
    Magic,
    /// Another protocol version.
    #[error("replication protocol version {0}, this node speaks {VERSION}")]
    Version(u16),
    /// A frame longer than [`FRAME_BYTES_MAX`].
    #[error("frame of {0} bytes, more than the maximum")]
    TooLong(usize),
    /// The body does not match its checksum.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The body is not what its kind says.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A Raft message that protobuf could not read.
    #[error("undecodable raft message: {0}")]
    Protobuf(String),
}

impl Handshake {
    /// The handshake's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let id = self.cluster_id.as_bytes();
        let id = &id[..id.len().min(255)];
        let mut out = Vec::with_capacity(HANDSHAKE_FIXED_BYTES + id.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.from.to_le_bytes());
        out.extend_from_slice(&self.to.to_le_bytes());
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.tcp_port.to_le_bytes());
        out.extend_from_slice(&self.websocket_port.to_le_bytes());
        out.extend_from_slice(&self.disk_id.to_le_bytes());
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out
    }

    /// Reads the fixed part: checks magic and version, returns the handshake without its
    /// cluster id and how many cluster-id bytes follow.
    pub fn decode_fixed(fixed: &[u8; HANDSHAKE_FIXED_BYTES]) -> Result<(Self, usize), WireError> {
        if &fixed[..8] != MAGIC {
            return Err(WireError::Magic);
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let u64_at = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().expect("8"));
        let u16_at = |at: usize| u16::from_le_bytes([fixed[at], fixed[at + 1]]);
        let handshake = Handshake {
            from: u64_at(10),
            to: u64_at(18),
            shard: u16_at(26),
            tcp_port: u16_at(28),
            websocket_port: u16_at(30),
            disk_id: u64_at(32),
            cluster_id: String::new(),
        };
        Ok((handshake, usize::from(fixed[40])))
    }
}

/// Builds frames of Raft messages as pieces: what protobuf encodes is gathered in one buffer,
/// and an entry's data of [`SHARED_DATA_MIN`] bytes or more is a piece of its own, the
/// `Bytes` the entry holds (a leader's batch goes to each follower without a copy).
#[derive(Default)]
pub struct FrameBuilder {
    /// Pieces of the body so far, `gathered` not included.
    pieces: Vec<Bytes>,
    /// Bytes encoded since the last piece.
    gathered: Vec<u8>,
    /// Checksum of `pieces`.
    hasher: Xxh3,
    /// Bytes in `pieces`.
    pieces_bytes: usize,
    messages: usize,
}

impl FrameBuilder {
    /// Adds one message of `group`.
    pub fn push(&mut self, group: u64, mut message: Message) {
        if self.messages == 0 {
            self.gathered.push(KIND_RAFT);
        }
        // Per entry: its large data, taken out to go as a piece of its own (empty when it
        // stays inline), and its encoded length: its other fields, then the data's key,
        // length and bytes.
        let entries: Vec<(Entry, Bytes, usize)> = std::mem::take(&mut message.entries)
            .into_iter()
            .map(|mut entry| {
                let data = if entry.data.len() >= SHARED_DATA_MIN {
                    std::mem::take(&mut entry.data)
                } else {
                    Bytes::new()
                };
                let rest = entry.compute_size() as usize;
                let len = match data.len() {
                    0 => rest,
                    len => rest + 1 + varint_len(len) + len,
                };
                (entry, data, len)
            })
            .collect();
        let encoded = message.compute_size() as usize
            + entries
                .iter()
                .map(|&(_, _, len)| 1 + varint_len(len) + len)
                .sum::<usize>();
        self.gathered.extend_from_slice(&group.to_le_bytes());
        self.gathered
            .extend_from_slice(&(encoded as u32).to_le_bytes());
        write_message(&message, &mut self.gathered);
        for (entry, data, len) in entries {
            self.gathered.push(ENTRIES_KEY);
            push_varint(&mut self.gathered, len);
            write_message(&entry, &mut self.gathered);
            if !data.is_empty() {
                self.gathered.push(DATA_KEY);
                push_varint(&mut self.gathered, data.len());
                self.cut();
                self.add_piece(data);
            }
        }
        self.messages += 1;
    }

    /// Bytes of the body so far.
    pub fn len(&self) -> usize {
        self.pieces_bytes + self.gathered.len()
    }

    /// Pieces so far, the header included.
    pub fn pieces(&self) -> usize {
        self.pieces.len() + 1
    }

    /// Nothing added yet.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// The frame's pieces, header first; the builder is empty again.
    pub fn finish(&mut self) -> Pieces {
        self.cut();
        let mut pieces = Vec::with_capacity(self.pieces.len() + 1);
        let hasher = std::mem::take(&mut self.hasher);
        pieces.push(header(self.pieces_bytes, hasher.digest()));
        pieces.append(&mut self.pieces);
        self.pieces_bytes = 0;
        self.messages = 0;
        pieces
    }

    /// Makes what was gathered a piece.
    fn cut(&mut self) {
        if !self.gathered.is_empty() {
            let gathered = Bytes::from(std::mem::take(&mut self.gathered));
            self.add_piece(gathered);
        }
    }

    fn add_piece(&mut self, piece: Bytes) {
        self.hasher.update(&piece);
        self.pieces_bytes += piece.len();
        self.pieces.push(piece);
    }
}

/// Protobuf-encodes `message` at the end of `out`.
fn write_message(message: &impl protobuf::Message, out: &mut Vec<u8>) {
    message
        .write_to_vec(out)
        .expect("encoding a raft message into memory cannot fail");
}

/// Bytes of `value` as a protobuf varint.
fn varint_len(value: usize) -> usize {
    let bits = usize::BITS - (value | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Appends `value` as a protobuf varint.
fn push_varint(out: &mut Vec<u8>, mut value: usize) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a frame header: the body's length (checked against the maximum) and checksum.
pub fn decode_frame_header(header: &[u8; FRAME_HEADER_BYTES]) -> Result<(usize, u64), WireError> {
    let len = u32::from_le_bytes(header[..4].try_into().expect("4")) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLong(len));
    }
    Ok((len, u64::from_le_bytes(header[4..].try_into().expect("8"))))
}

/// A frame body, checked against its checksum. Forwarded messages and the entries of Raft
/// messages are slices of `body`, not copies.
pub fn decode_frame(body: &Bytes, checksum: u64) -> Result<Frame, WireError> {
    if xxhash_rust::xxh3::xxh3_64(body) != checksum {
        return Err(WireError::Checksum);
    }
    let Some((&kind, rest)) = body.split_first() else {
        return Err(WireError::Malformed("empty body"));
    };
    let u64_at = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().expect("8"));
    match kind {
        KIND_RAFT => decode_raft(body.slice(1..)).map(Frame::Raft),
        KIND_SEND => {
            if rest.len() < 20 {
                return Err(WireError::Malformed("truncated forwarded send"));
            }
            Ok(Frame::Send(ForwardedSend {
                call: u64_at(0),
                group: u64_at(8),
                count: u32::from_le_bytes(rest[16..20].try_into().expect("4")),
                messages: body.slice(21..),
            }))
        }
        KIND_OUTCOME => {
            if body.len() != OUTCOME_BYTES {
                return Err(WireError::Malformed("outcome of the wrong size"));
            }
            let (leader, first_offset, last_offset) = (u64_at(9), u64_at(17), u64_at(25));
            let outcome = match rest[8] {
                0 => SendOutcome::Stored {
                    first_offset,
                    last_offset,
                },
                1 => SendOutcome::NotLeader(leader),
                2 => SendOutcome::NotStored,
                3 => SendOutcome::Invalid,
                4 => SendOutcome::Unknown,
                _ => return Err(WireError::Malformed("unknown outcome status")),
            };
            Ok(Frame::Outcome(u64_at(0), outcome))
        }
        KIND_OFFSET => decode_offset(body).map(Frame::Offset),
        KIND_CALL | KIND_ANSWER => {
            if body.len() < CALL_FIXED_BYTES {
                return Err(WireError::Malformed("truncated call or answer"));
            }
            let (call, opaque) = (u64_at(0), body.slice(CALL_FIXED_BYTES..));
            Ok(if kind == KIND_CALL {
                Frame::Call(call, opaque)
            } else {
                Frame::Answer(call, opaque)
            })
        }
        _ => Err(WireError::Malformed("unknown frame kind")),
    }
}

fn decode_offset(body: &[u8]) -> Result<ForwardedOffset, WireError> {
    if body.len() != OFFSET_BYTES {
        return Err(WireError::Malformed("offset write of the wrong size"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8"));
    let id = u32::from_le_bytes(body[18..22].try_into().expect("4"));
    let owner = match body[17] {
        1 => galgo_storage::OffsetOwner::Consumer(id),
        2 => galgo_storage::OffsetOwner::Group(id),
        _ => return Err(WireError::Malformed("unknown offset owner kind")),
    };
    let offset = match body[22] {
        1 => Some(u64_at(23)),
        2 => None,
        _ => return Err(WireError::Malformed("unknown offset operation")),
    };
    Ok(ForwardedOffset {
        call: u64_at(1),
        group: u64_at(9),
        owner,
        offset,
    })
}

/// The messages of a frame body of Raft messages, checked against its checksum.
pub fn decode_frame_body(body: &Bytes, checksum: u64) -> Result<Vec<(u64, Message)>, WireError> {
    match decode_frame(body, checksum)? {
        Frame::Raft(messages) => Ok(messages),
        _ => Err(WireError::Malformed("not a frame of Raft messages")),
    }
}

/// Raft messages; an entry's data (or context) shares the frame's memory only when it is at
/// least half of the frame, and is copied otherwise: a small entry kept in memory (the
/// group's window, the tail cache) never holds a large frame alive, so what those count is at
/// least half of what they hold.
fn decode_raft(mut rest: Bytes) -> Result<Vec<(u64, Message)>, WireError> {
    let shared_min = rest.len() / 2;
    let mut messages = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 12 {
            return Err(WireError::Malformed("truncated message header"));
        }
        let group = u64::from_le_bytes(rest[..8].try_into().expect("8"));
        let len = u32::from_le_bytes(rest[8..12].try_into().expect("4")) as usize;
        if rest.len() - 12 < len {
            return Err(WireError::Malformed("truncated message"));
        }
        let encoded = rest.slice(12..12 + len);
        let mut message = Message::parse_from_carllerche_bytes(&encoded)
            .map_err(|error| WireError::Protobuf(error.to_string()))?;
        for entry in message.entries.iter_mut() {
            for field in [&mut entry.data, &mut entry.context] {
                if field.len() < shared_min {
                    *field = Bytes::copy_from_slice(field);
                }
            }
        }
        messages.push((group, message));
        rest = rest.slice(12 + len..);
    }
    Ok(messages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use raft::eraftpb::MessageType;

    fn message(to: u64, term: u64, data: Vec<u8>) -> Message {
        let mut message = Message::default();
        message.set_msg_type(MessageType::MsgAppend);
        message.to = to;
        message.from = 1;
        message.term = term;
        let entry = Entry {
            index: 7,
            term,
            data: data.into(),
            ..Entry::default()
        };
        message.entries = vec![entry].into();
        message
    }

    fn body_of(pieces: &Pieces) -> (Bytes, u64) {
        let frame = pieces.concat();
        let header: &[u8; FRAME_HEADER_BYTES] = frame[..FRAME_HEADER_BYTES].try_into().unwrap();
        let (len, checksum) = decode_frame_header(header).unwrap();
        assert_eq!(len, frame.len() - FRAME_HEADER_BYTES);
        (
            Bytes::copy_from_slice(&frame[FRAME_HEADER_BYTES..]),
            checksum,
        )
    }

    /// `body` with its own checksum: a frame as a sender could have sealed it.
    fn decode_sealed(body: &[u8]) -> Result<Frame, WireError> {
        decode_frame(
            &Bytes::copy_from_slice(body),
            xxhash_rust::xxh3::xxh3_64(body),
        )
    }

    #[test]
    fn forwarded_sends_and_outcomes_round_trip() {
        let send = ForwardedSend {
            call: 9,
            group: 12345,
            count: 2,
            messages: Bytes::from_static(b"two messages"),
        };
        let frame = encode_send(&send);
        let (body, checksum) = body_of(&frame);
        assert_eq!(decode_frame(&body, checksum), Ok(Frame::Send(send)));
        for outcome in [
            SendOutcome::Stored {
                first_offset: 3,
                last_offset: 4,
            },
            SendOutcome::NotLeader(2),
            SendOutcome::NotStored,
            SendOutcome::Invalid,
            SendOutcome::Unknown,
        ] {
            let frame = encode_outcome(7, outcome);
            let (body, checksum) = body_of(&frame);
            assert_eq!(
                decode_frame(&body, checksum),
                Ok(Frame::Outcome(7, outcome))
            );
            let mut bad = body.to_vec();
            bad[9] = 99;
            assert!(decode_sealed(&bad).is_err(), "an unknown status");
            assert!(decode_sealed(&bad[..20]).is_err());
        }
    }

    #[test]
    fn calls_and_answers_carry_their_pieces_whole() {
        let body = vec![
            Bytes::from_static(b"head"),
            Bytes::new(),
            Bytes::from(vec![7u8; 5000]),
        ];
        let expected = Bytes::from(body.concat());
        let (frame, checksum) = body_of(&encode_call(11, body.clone()));
        assert_eq!(
            decode_frame(&frame, checksum),
            Ok(Frame::Call(11, expected.clone()))
        );
        let (frame, checksum) = body_of(&encode_answer(12, body));
        assert_eq!(
            decode_frame(&frame, checksum),
            Ok(Frame::Answer(12, expected))
        );
        let (frame, checksum) = body_of(&encode_answer(13, Vec::new()));
        assert_eq!(
            decode_frame(&frame, checksum),
            Ok(Frame::Answer(13, Bytes::new()))
        );
        assert!(decode_sealed(&frame[..5]).is_err(), "a truncated call");
    }

    #[test]
    fn forwarded_offset_writes_round_trip_and_bad_ones_are_refused() {
        for (owner, offset) in [
            (galgo_storage::OffsetOwner::Consumer(7), Some(42)),
            (galgo_storage::OffsetOwner::Group(3), None),
        ] {
            let write = ForwardedOffset {
                call: 5,
                group: 99,
                owner,
                offset,
            };
            let frame = encode_offset(&write);
            let (body, checksum) = body_of(&frame);
            assert_eq!(decode_frame(&body, checksum), Ok(Frame::Offset(write)));
            for (at, value) in [(17, 9u8), (22, 0)] {
                let mut bad = body.to_vec();
                bad[at] = value;
                assert!(decode_sealed(&bad).is_err(), "byte {at} = {value}");
            }
            assert!(decode_sealed(&body[..body.len() - 1]).is_err());
        }
    }

    #[test]
    fn a_handshake_round_trips_and_strangers_are_refused() {
        let handshake = Handshake {
            from: 2,
            to: 3,
            shard: 1,
            tcp_port: 8090,
            websocket_port: 8092,
            disk_id: 0x5f0c_8e3a_9b1d_2c47,
            cluster_id: "prod-1".into(),
        };
        let bytes = handshake.encode();
        let fixed: &[u8; HANDSHAKE_FIXED_BYTES] =
            bytes[..HANDSHAKE_FIXED_BYTES].try_into().unwrap();
        let (mut read, id_len) = Handshake::decode_fixed(fixed).unwrap();
        read.cluster_id =
            String::from_utf8(bytes[HANDSHAKE_FIXED_BYTES..][..id_len].to_vec()).unwrap();
        assert_eq!(read, handshake);
        let request = b"GET / HTTP/1.1\r\nHost: galgo\r\n\r\n";
        let mut http = [0u8; HANDSHAKE_FIXED_BYTES];
        http[..request.len()].copy_from_slice(request);
        assert_eq!(Handshake::decode_fixed(&http), Err(WireError::Magic));
        let mut newer = bytes.clone();
        newer[8] = 9;
        let fixed: &[u8; HANDSHAKE_FIXED_BYTES] =
            newer[..HANDSHAKE_FIXED_BYTES].try_into().unwrap();
        assert_eq!(Handshake::decode_fixed(fixed), Err(WireError::Version(9)));
    }

    #[test]
    fn a_keepalive_is_a_frame_of_no_messages() {
        let (body, checksum) = body_of(&encode_keepalive());
        assert_eq!(decode_frame(&body, checksum), Ok(Frame::Raft(Vec::new())));
    }

    #[test]
    fn a_corrupted_frame_is_refused() {
        let mut builder = FrameBuilder::default();
        builder.push(0, message(2, 3, b"payload".to_vec()));
        let mut frame = builder.finish().concat();
        let last = frame.len() - 1;
        frame[last] ^= 1;
        let (body, checksum) = body_of(&vec![Bytes::from(frame)]);
        assert_eq!(decode_frame_body(&body, checksum), Err(WireError::Checksum));
        let oversized = ((FRAME_BYTES_MAX + 1) as u32).to_le_bytes();
        let mut header = [0u8; FRAME_HEADER_BYTES];
        header[..4].copy_from_slice(&oversized);
        assert!(matches!(
            decode_frame_header(&header),
            Err(WireError::TooLong(_))
        ));
    }

    #[test]
    fn a_large_entry_is_sent_and_received_without_a_copy_and_a_small_one_is_copied() {
        let mut builder = FrameBuilder::default();
        let sent = message(2, 3, vec![7; 10_000]);
        let batch = sent.entries[0].data.clone();
        builder.push(1, sent);
        builder.push(4, message(2, 3, b"small".to_vec()));
        let pieces = builder.finish();
        assert!(
            pieces.iter().any(|piece| piece.as_ptr() == batch.as_ptr()),
            "the large entry goes out from where it lies"
        );
        let (body, checksum) = body_of(&pieces);
        let frame = body.as_ptr_range();
        let messages = decode_frame_body(&body, checksum).unwrap();
        let inside = |data: &Bytes| frame.contains(&data.as_ptr());
        let (large, small) = (&messages[0].1.entries[0], &messages[1].1.entries[0]);
        assert_eq!((large.data.len(), &small.data[..]), (10_000, &b"small"[..]));
        assert!(
            inside(&large.data),
            "the large entry is a slice of the frame"
        );
        assert!(!inside(&small.data), "the small entry is a copy");
        let send = ForwardedSend {
            call: 1,
            group: 2,
            count: 1,
            messages: Bytes::from(vec![1; 500]),
        };
        let (body, checksum) = body_of(&encode_send(&send));
        let Ok(Frame::Send(decoded)) = decode_frame(&body, checksum) else {
            panic!("a forwarded send");
        };
        assert!(body.as_ptr_range().contains(&decoded.messages.as_ptr()));
    }

    proptest! {
        #[test]
        fn frames_round_trip(
            messages in prop::collection::vec(
                (
                    0u64..5,
                    (1u64..10, 0u64..100, any::<u64>(), any::<bool>()),
                    prop::collection::vec(
                        (
                            prop_oneof![0usize..300, 4090usize..4100, 5000usize..70_000],
                            prop::collection::vec(any::<u8>(), 0..60),
                            any::<u64>(),
                        ),
                        0..4,
                    ),
                ),
                1..8,
            )
        ) {
            let mut builder = FrameBuilder::default();
            let sent: Vec<(u64, Message)> = messages
                .into_iter()
                .map(|(group, (to, term, commit, reject), entries)| {
                    let mut message = message(to, term, Vec::new());
                    message.commit = commit;
                    message.reject = reject;
                    message.context = Bytes::from_static(b"ctx");
                    message.entries = entries
                        .into_iter()
                        .map(|(len, context, index)| Entry {
                            index,
                            term,
                            data: Bytes::from(vec![index as u8; len]),
                            context: Bytes::from(context),
                            ..Entry::default()
                        })
                        .collect::<Vec<_>>()
                        .into();
                    (group, message)
                })
                .collect();
            for (group, message) in &sent {
                builder.push(*group, message.clone());
            }
            let large = sent
                .iter()
                .flat_map(|(_, message)| message.entries.iter())
                .filter(|entry| entry.data.len() >= SHARED_DATA_MIN)
                .count();
            prop_assert_eq!(builder.pieces(), 1 + 2 * large);
            let frame = builder.finish();
            prop_assert!(builder.is_empty());
            let (body, checksum) = body_of(&frame);
            prop_assert_eq!(decode_frame_body(&body, checksum).unwrap(), sent);
        }

        #[test]
        fn any_body_decodes_or_fails_without_panicking(body in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_sealed(&body);
        }
    }
}
