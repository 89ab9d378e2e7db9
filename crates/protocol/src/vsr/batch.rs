//! The 0.9 message batch (PROTOCOL-0.9.md §8.8), converted to and from galgo's 0.8 message
//! layout (message.rs), so storage and the 0.8 client code never see the 0.9 format.
//!
//! ```text
//! SendMessages body   metadata_length u32 | stream Id | topic Id | partitioning | count u32
//!                     | batch header (256) | count frames
//! poll reply          partition_id u32 | current_offset u64 | messages_count u32 | record*
//!                     record = batch header (256) + its frames
//! batch header        0 partition_id u64 | 8 base_offset u64 | 16 base_timestamp u64
//!                     | 24 origin_timestamp u64 | 32 batch_length u64 | 40 batch_checksum u64
//!                     | 48 message_count u32 | 52 reserved (204 zero bytes)
//! frame               0 checksum u64 | 8 id u128 | 24 offset_delta u32 | 28 timestamp_delta u32
//!                     | 32 user_headers_length u32 | 36 payload_length u32 | 40 reserved u64
//!                     | 48 payload | user headers
//! ```
//!
//! A frame's checksum is XXH3-64 of its bytes 8..end; the batch checksum is a streaming
//! XXH3-64 of the header's partition_id, base_offset, base_timestamp, origin_timestamp,
//! batch_length and message_count, then every frame's checksum field. A 0.8 message is the
//! same message with a 64-byte header (absolute offset, timestamp and origin timestamp instead
//! of two deltas), and its payload and user headers in the same order, so every conversion is
//! one header rewrite and one copy per message, into a buffer sized before the first byte.
//!
//! Structural errors are 3 `InvalidCommand`, as the Iggy server maps every batch layout error;
//! integrity errors keep their codes (4027, 4039).

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use xxhash_rust::xxh3::Xxh3Default;

use crate::command::messages::{POLLED_MESSAGES_HEADER_BYTES, PolledMessagesHeader, SendMessages};
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::message::{
    self, ID_AT, MESSAGE_HEADER_BYTES, MESSAGE_PAYLOAD_BYTES_MAX, MessageIter, MessageView,
    OFFSET_AT, ORIGIN_TIMESTAMP_AT, PAYLOAD_LENGTH_AT, TIMESTAMP_AT, USER_HEADERS_BYTES_MAX,
    USER_HEADERS_LENGTH_AT, xxh3_64,
};
use crate::partitioning::Partitioning;
use crate::reader::Reader;

/// Size of a batch header.
pub const BATCH_HEADER_BYTES: usize = 256;
/// Size of a frame's header.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Largest distance between a message's origin timestamp and its batch's, in µs.
pub const TIMESTAMP_DELTA_MAX_US: u64 = u32::MAX as u64;
/// Largest distance between a message's offset and its record's base offset.
pub const OFFSET_DELTA_MAX: u64 = u32::MAX as u64;
/// Largest batch the SDK encodes (its `batch_length` must fit a u32).
pub const BATCH_BYTES_MAX: usize = u32::MAX as usize;

const PARTITION_ID_AT: usize = 0;
const BASE_OFFSET_AT: usize = 8;
const BASE_TIMESTAMP_AT: usize = 16;
const BATCH_ORIGIN_TIMESTAMP_AT: usize = 24;
const BATCH_LENGTH_AT: usize = 32;
const BATCH_CHECKSUM_AT: usize = 40;
const MESSAGE_COUNT_AT: usize = 48;
const BATCH_RESERVED_AT: usize = 52;

const FRAME_CHECKSUM_AT: usize = 0;
/// Bytes of a frame's checksum (an XXH3-64), and of each entry of [`SentFrames::checksums`].
const FRAME_CHECKSUM_BYTES: usize = 8;
const FRAME_ID_AT: usize = 8;
const OFFSET_DELTA_AT: usize = 24;
const TIMESTAMP_DELTA_AT: usize = 28;
const FRAME_HEADERS_LENGTH_AT: usize = 32;
const FRAME_PAYLOAD_LENGTH_AT: usize = 36;
const FRAME_RESERVED_AT: usize = 40;

/// What a message grows by from a frame to the 0.8 layout (and shrinks by the other way).
pub const MESSAGE_GROWTH_BYTES: usize = MESSAGE_HEADER_BYTES - FRAME_HEADER_BYTES;

const _: () = assert!(BATCH_RESERVED_AT == MESSAGE_COUNT_AT + 4);
const _: () = assert!(FRAME_RESERVED_AT + 8 == FRAME_HEADER_BYTES);
const _: () = assert!(MESSAGE_GROWTH_BYTES == 16);

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A batch header, as sent by a producer or as served in a poll reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchHeader {
    /// 0 from a producer; the partition in a poll reply.
    pub partition_id: u64,
    /// Offset of the first message (0 from a producer).
    pub base_offset: u64,
    /// Append time of the whole batch, µs (0 from a producer).
    pub base_timestamp: u64,
    /// The smallest origin timestamp of its messages.
    pub origin_timestamp: u64,
    /// 256 + the size of every frame.
    pub batch_length: u64,
    /// See the module page.
    pub batch_checksum: u64,
    /// Frames that follow.
    pub message_count: u32,
}

impl BatchHeader {
    /// Reads a header at the start of `bytes`: too short, a `batch_length` below 256 or
    /// non-zero reserved bytes are 3 `InvalidCommand`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        let Some(header) = bytes.get(..BATCH_HEADER_BYTES) else {
            return Err(ErrorCode::InvalidCommand);
        };
        let batch_length = u64_at(header, BATCH_LENGTH_AT);
        if batch_length < BATCH_HEADER_BYTES as u64
            || header[BATCH_RESERVED_AT..].iter().any(|&byte| byte != 0)
        {
            return Err(ErrorCode::InvalidCommand);
        }
        Ok(Self {
            partition_id: u64_at(header, PARTITION_ID_AT),
            base_offset: u64_at(header, BASE_OFFSET_AT),
            base_timestamp: u64_at(header, BASE_TIMESTAMP_AT),
            origin_timestamp: u64_at(header, BATCH_ORIGIN_TIMESTAMP_AT),
            batch_length,
            batch_checksum: u64_at(header, BATCH_CHECKSUM_AT),
            message_count: u32_at(header, MESSAGE_COUNT_AT),
        })
    }

    /// Writes the header over the first 256 bytes of `slot`, reserved bytes zeroed.
    fn write_into(&self, slot: &mut [u8]) {
        let slot = &mut slot[..BATCH_HEADER_BYTES];
        slot.fill(0);
        for (at, value) in [
            (PARTITION_ID_AT, self.partition_id),
            (BASE_OFFSET_AT, self.base_offset),
            (BASE_TIMESTAMP_AT, self.base_timestamp),
            (BATCH_ORIGIN_TIMESTAMP_AT, self.origin_timestamp),
            (BATCH_LENGTH_AT, self.batch_length),
            (BATCH_CHECKSUM_AT, self.batch_checksum),
        ] {
            slot[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        slot[MESSAGE_COUNT_AT..MESSAGE_COUNT_AT + 4]
            .copy_from_slice(&self.message_count.to_le_bytes());
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        let at = out.len();
        out.put_bytes(0, BATCH_HEADER_BYTES);
        self.write_into(&mut out[at..]);
    }

    /// Resets `hasher` and feeds it the header fields the batch checksum covers; the frames'
    /// checksum fields follow.
    fn start_checksum(&self, hasher: &mut Xxh3Default) {
        hasher.reset();
        hasher.update(&self.partition_id.to_le_bytes());
        hasher.update(&self.base_offset.to_le_bytes());
        hasher.update(&self.base_timestamp.to_le_bytes());
        hasher.update(&self.origin_timestamp.to_le_bytes());
        hasher.update(&self.batch_length.to_le_bytes());
        hasher.update(&self.message_count.to_le_bytes());
    }

    /// The frames' bytes (`batch_length - 256`) as a `usize`.
    fn frames_len(&self) -> Result<usize, ErrorCode> {
        let len = self.batch_length - BATCH_HEADER_BYTES as u64;
        usize::try_from(len).map_err(|_| ErrorCode::InvalidCommand)
    }

    /// Refuses a count that `frames_len` bytes cannot hold, before anything is sized by it.
    fn check_count_fits(&self, frames_len: usize) -> Result<(), ErrorCode> {
        match (self.message_count as usize).checked_mul(FRAME_HEADER_BYTES) {
            Some(least) if least <= frames_len => Ok(()),
            _ => Err(ErrorCode::InvalidCommand),
        }
    }
}

/// A 0.9 producer's frames as it sent them (offset deltas 0, 1, 2, … and timestamp deltas
/// against `origin_timestamp`), kept beside the stored 0.8 layout of the same messages so that
/// a 0.9 poll can send them as they are ([`KeptRecord`]): their checksums, verified on the way
/// in, cover nothing the server stamps. Only batches whose ids are all set (the server
/// changes an id of 0) are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentFrames {
    /// The frames, back to back.
    pub frames: Bytes,
    /// Their checksums, 8 bytes each, in order: what a record's batch checksum covers, read
    /// without touching the frames (a cache miss each, for frames that have gone cold).
    pub checksums: Bytes,
    /// The batch's origin timestamp, the base of the frames' timestamp deltas.
    pub origin_timestamp: u64,
    /// Bytes of the request the frames keep allocated.
    pub held_bytes: u64,
}

impl SentFrames {
    /// Bytes it keeps allocated: the request the frames are a slice of, and the checksums.
    pub fn memory_bytes(&self) -> u64 {
        self.held_bytes + self.checksums.len() as u64
    }

    /// The byte ranges of the frames and of the checksums of the batch's messages
    /// `[from, to)`, given where those messages lie in the stored layout (`stored`, from the
    /// batch's first message), where each is [`MESSAGE_GROWTH_BYTES`] longer than its frame.
    fn ranges(
        &self,
        from: u32,
        to: u32,
        stored: (usize, usize),
    ) -> Option<(std::ops::Range<usize>, std::ops::Range<usize>)> {
        let start = stored.0.checked_sub(from as usize * MESSAGE_GROWTH_BYTES)?;
        let end = stored.1.checked_sub(to as usize * MESSAGE_GROWTH_BYTES)?;
        let (first, last) = (
            from as usize * FRAME_CHECKSUM_BYTES,
            to as usize * FRAME_CHECKSUM_BYTES,
        );
        let fits = start <= end && end <= self.frames.len() && first < last;
        (fits && last <= self.checksums.len()).then_some((start..end, first..last))
    }

    /// The record of the batch's messages `[from, to)`, which lie at `stored` of the stored
    /// batch and make chunk `chunk` of a poll reply; the stored batch starts at `base_offset`
    /// and has the server timestamp `base_timestamp`. `None` for an empty or outside range.
    pub fn record(
        &self,
        (from, to): (u32, u32),
        stored: (usize, usize),
        chunk: usize,
        base_offset: u64,
        base_timestamp: u64,
    ) -> Option<KeptRecord> {
        let (frames, checksums) = self.ranges(from, to, stored)?;
        Some(KeptRecord {
            chunk,
            frames: self.frames.slice(frames),
            checksums: self.checksums.slice(checksums),
            base_offset,
            base_timestamp,
            origin_timestamp: self.origin_timestamp,
        })
    }

    /// The frames of the batch's first `count` messages, which end at `stored_end` of the
    /// stored batch (a batch cut short).
    pub fn prefix(&self, count: u32, stored_end: usize) -> Option<Self> {
        let (frames, checksums) = self.ranges(0, count, (0, stored_end))?;
        Some(Self {
            frames: self.frames.slice(frames),
            checksums: self.checksums.slice(checksums),
            ..self.clone()
        })
    }
}

/// One chunk of a 0.8 poll reply that can go out as one 0.9 batch record with its kept
/// frames instead of converted: the chunk's messages are `frames`, frame `k` being the message
/// at `base_offset + offset_delta(k)`. Made by [`SentFrames::record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptRecord {
    /// Index of the chunk (in the reply's chunks, the head's included) holding the same
    /// messages in the stored layout, whole.
    pub chunk: usize,
    /// The frames, whole, as sent.
    pub frames: Bytes,
    /// Their checksums, 8 bytes each: one per message.
    pub checksums: Bytes,
    /// Offset of the stored batch's first message (the frames' offset deltas are from it).
    pub base_offset: u64,
    /// The server timestamp of the stored batch.
    pub base_timestamp: u64,
    /// The base of the frames' timestamp deltas.
    pub origin_timestamp: u64,
}

impl KeptRecord {
    /// Frames in the record.
    pub fn message_count(&self) -> usize {
        self.checksums.len() / FRAME_CHECKSUM_BYTES
    }
}

/// One frame inside a batch's frames, located and checked for layout.
struct Frame<'a> {
    /// The whole frame, header included.
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// The frame at `position`: a whole header with reserved 0, then the payload and user
    /// headers it declares, all inside `frames`.
    fn at(frames: &'a [u8], position: usize) -> Result<Self, ErrorCode> {
        let rest = &frames[position..];
        if rest.len() < FRAME_HEADER_BYTES || u64_at(rest, FRAME_RESERVED_AT) != 0 {
            return Err(ErrorCode::InvalidCommand);
        }
        let size = FRAME_HEADER_BYTES as u64
            + u64::from(u32_at(rest, FRAME_PAYLOAD_LENGTH_AT))
            + u64::from(u32_at(rest, FRAME_HEADERS_LENGTH_AT));
        if size > rest.len() as u64 {
            return Err(ErrorCode::InvalidCommand);
        }
        Ok(Self {
            bytes: &rest[..size as usize],
        })
    }

    fn checksum(&self) -> u64 {
        u64_at(self.bytes, FRAME_CHECKSUM_AT)
    }
    fn offset_delta(&self) -> u32 {
        u32_at(self.bytes, OFFSET_DELTA_AT)
    }
    fn timestamp_delta(&self) -> u32 {
        u32_at(self.bytes, TIMESTAMP_DELTA_AT)
    }
    fn payload_length(&self) -> u32 {
        u32_at(self.bytes, FRAME_PAYLOAD_LENGTH_AT)
    }
    fn user_headers_length(&self) -> u32 {
        u32_at(self.bytes, FRAME_HEADERS_LENGTH_AT)
    }
    fn id(&self) -> &'a [u8] {
        &self.bytes[FRAME_ID_AT..FRAME_ID_AT + 16]
    }
    /// Payload then user headers: the same bytes in the same order in both layouts.
    fn body(&self) -> &'a [u8] {
        &self.bytes[FRAME_HEADER_BYTES..]
    }
}

/// One message of a 0.9 poll reply, read where it lies (the client side, without converting
/// the reply): its frame and the fields of the batch record it is relative to.
#[derive(Clone, Copy, Debug)]
pub struct PolledFrame<'a> {
    frame: &'a [u8],
    base_offset: u64,
    base_timestamp: u64,
    origin_timestamp: u64,
}

impl<'a> PolledFrame<'a> {
    /// The frame's checksum, as the server computed it (XXH3-64 of the frame from byte 8).
    pub fn checksum(&self) -> u64 {
        u64_at(self.frame, FRAME_CHECKSUM_AT)
    }
    /// The message id.
    pub fn id(&self) -> u128 {
        u128::from_le_bytes(
            self.frame[FRAME_ID_AT..FRAME_ID_AT + 16]
                .try_into()
                .expect("16 bytes"),
        )
    }
    /// The offset: the record's base offset plus the frame's delta.
    pub fn offset(&self) -> u64 {
        self.base_offset + u64::from(u32_at(self.frame, OFFSET_DELTA_AT))
    }
    /// The server timestamp: the record's, shared by its messages.
    pub fn timestamp(&self) -> u64 {
        self.base_timestamp
    }
    /// The origin timestamp: the record's plus the frame's delta.
    pub fn origin_timestamp(&self) -> u64 {
        self.origin_timestamp + u64::from(u32_at(self.frame, TIMESTAMP_DELTA_AT))
    }
    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        let end = FRAME_HEADER_BYTES + u32_at(self.frame, FRAME_PAYLOAD_LENGTH_AT) as usize;
        &self.frame[FRAME_HEADER_BYTES..end]
    }
    /// The user headers (TLV, as in 0.8).
    pub fn user_headers(&self) -> &'a [u8] {
        let start = FRAME_HEADER_BYTES + u32_at(self.frame, FRAME_PAYLOAD_LENGTH_AT) as usize;
        &self.frame[start..]
    }
}

/// Walks the messages of a 0.9 poll reply's records (the body after its 16-byte head) in
/// place, checking the layout as [`decode_polled`] does: yields `Err` once where it breaks,
/// then ends.
#[derive(Clone, Debug)]
pub struct PolledFrames<'a> {
    records: &'a [u8],
    /// Where the next record starts.
    next_record: usize,
    /// The current record: its header, its frames and where the next frame starts in them.
    current: Option<(BatchHeader, &'a [u8], usize, u32)>,
    failed: bool,
}

impl<'a> PolledFrames<'a> {
    /// Walks `records` (a poll reply's body after the head).
    pub fn new(records: &'a [u8]) -> Self {
        Self {
            records,
            next_record: 0,
            current: None,
            failed: false,
        }
    }

    fn next_frame(&mut self) -> Result<Option<PolledFrame<'a>>, ErrorCode> {
        loop {
            if let Some((header, frames, position, left)) = &mut self.current {
                if *left > 0 {
                    let frame = Frame::at(frames, *position)?;
                    *position += frame.bytes.len();
                    *left -= 1;
                    return Ok(Some(PolledFrame {
                        frame: frame.bytes,
                        base_offset: header.base_offset,
                        base_timestamp: header.base_timestamp,
                        origin_timestamp: header.origin_timestamp,
                    }));
                }
                if *position != frames.len() {
                    return Err(ErrorCode::InvalidCommand);
                }
            }
            if self.next_record == self.records.len() {
                return Ok(None);
            }
            let (header, frames) = record_at(self.records, self.next_record)?;
            self.next_record += header.batch_length as usize;
            self.current = Some((header, frames, 0, header.message_count));
        }
    }
}

impl<'a> Iterator for PolledFrames<'a> {
    type Item = Result<PolledFrame<'a>, ErrorCode>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_frame() {
            Ok(frame) => frame.map(Ok),
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// The absolute fields of one 0.8 message, written by [`put_message_0_8`].
struct MessageFields<'a> {
    checksum: u64,
    id: &'a [u8],
    offset: u64,
    timestamp: u64,
    origin_timestamp: u64,
    user_headers_length: u32,
    payload_length: u32,
}

/// Appends one 0.8 message: the 64-byte header, then `body` (payload and user headers).
fn put_message_0_8(fields: &MessageFields<'_>, body: &[u8], out: &mut BytesMut) {
    out.put_u64_le(fields.checksum);
    out.put_slice(fields.id);
    out.put_u64_le(fields.offset);
    out.put_u64_le(fields.timestamp);
    out.put_u64_le(fields.origin_timestamp);
    out.put_u32_le(fields.user_headers_length);
    out.put_u32_le(fields.payload_length);
    out.put_u64_le(0);
    out.put_slice(body);
}

/// Where a SendMessages body's batch starts, and what its metadata says.
struct SendMetadata {
    stream: Identifier,
    topic: Identifier,
    partitioning: Partitioning,
    messages_count: u32,
    batch_at: usize,
}

/// Reads the metadata, which must be exactly `metadata_length` bytes (as the Iggy server
/// checks; 0.8 tolerated slack there).
fn decode_send_metadata(body: &[u8]) -> Result<SendMetadata, ErrorCode> {
    let mut reader = Reader::new(body);
    let metadata_length = reader.u32()?;
    let metadata_length =
        usize::try_from(metadata_length).map_err(|_| ErrorCode::InvalidCommand)?;
    let mut metadata = Reader::new(reader.bytes(metadata_length)?);
    let stream = Identifier::decode_for_send(&mut metadata)?;
    let topic = Identifier::decode_for_send(&mut metadata)?;
    let partitioning = Partitioning::decode(&mut metadata)?;
    let messages_count = metadata.u32()?;
    if !metadata.is_empty() {
        return Err(ErrorCode::InvalidCommand);
    }
    if messages_count == 0 {
        return Err(ErrorCode::InvalidMessagesCount);
    }
    Ok(SendMetadata {
        stream,
        topic,
        partitioning,
        messages_count,
        batch_at: reader.position(),
    })
}

/// Converts a 0.9 SendMessages body into the 0.8 [`SendMessages`] the server stores: its
/// `messages` block holds the same messages in the 0.8 layout (checksum, offset and timestamp
/// 0, origin timestamp absolute, ids as sent), ready for the unchanged storage path.
///
/// Checks, in order: the metadata (3, 6 for an identifier, 4009 for no messages), the batch
/// header (count equal to the metadata's, `batch_length` exactly the rest of the body,
/// reserved bytes 0), then each frame: whole and reserved 0 (3), `offset_delta` equal to its
/// index (3), payload and user-header limits of the 0.8 decoder (4022, 4017), its checksum
/// (4027); then the frames tile the batch exactly (3) and the batch checksum (4039).
pub fn decode_send(body: BytesMut) -> Result<SendMessages, ErrorCode> {
    let metadata = decode_send_metadata(&body)?;
    let batch = &body[metadata.batch_at..];
    let header = BatchHeader::decode(batch)?;
    if header.message_count != metadata.messages_count || header.batch_length != batch.len() as u64
    {
        return Err(ErrorCode::InvalidCommand);
    }
    let frames = &batch[BATCH_HEADER_BYTES..];
    header.check_count_fits(frames.len())?;
    let grown = header.message_count as usize * MESSAGE_GROWTH_BYTES;
    let mut messages = BytesMut::with_capacity(frames.len() + grown);
    let mut checksums =
        BytesMut::with_capacity(header.message_count as usize * FRAME_CHECKSUM_BYTES);
    let ids_all_set = convert_sent_frames(&header, frames, &mut messages, &mut checksums)?;
    debug_assert_eq!(messages.len(), frames.len() + grown);
    let frames_at = metadata.batch_at + BATCH_HEADER_BYTES;
    let held_bytes = body.len() as u64;
    // A frame with id 0 gets its id from the server, which changes the frame: those are
    // served converted.
    let frames = ids_all_set.then(|| SentFrames {
        frames: body.freeze().slice(frames_at..),
        checksums: checksums.freeze(),
        origin_timestamp: header.origin_timestamp,
        held_bytes,
    });
    Ok(SendMessages {
        stream: metadata.stream,
        topic: metadata.topic,
        partitioning: metadata.partitioning,
        messages_count: metadata.messages_count,
        messages,
        frames,
    })
}

/// Verifies and converts every frame of a sent batch (their checksums go to `checksums`),
/// then the batch checksum. True when no frame has id 0.
fn convert_sent_frames(
    header: &BatchHeader,
    frames: &[u8],
    out: &mut BytesMut,
    checksums: &mut BytesMut,
) -> Result<bool, ErrorCode> {
    let mut hasher = Xxh3Default::new();
    header.start_checksum(&mut hasher);
    let (mut position, mut ids_all_set) = (0, true);
    for index in 0..header.message_count {
        let frame = Frame::at(frames, position)?;
        ids_all_set &= frame.id().iter().any(|&byte| byte != 0);
        if frame.offset_delta() != index {
            return Err(ErrorCode::InvalidCommand);
        }
        if frame.payload_length() > MESSAGE_PAYLOAD_BYTES_MAX {
            return Err(ErrorCode::TooBigMessagePayload);
        }
        if frame.user_headers_length() > USER_HEADERS_BYTES_MAX {
            return Err(ErrorCode::TooBigUserHeaders);
        }
        if xxh3_64(&frame.bytes[FRAME_ID_AT..]) != frame.checksum() {
            return Err(ErrorCode::InvalidMessageChecksum);
        }
        let checksum = &frame.bytes[FRAME_CHECKSUM_AT..FRAME_CHECKSUM_AT + FRAME_CHECKSUM_BYTES];
        hasher.update(checksum);
        checksums.put_slice(checksum);
        let origin_timestamp = header
            .origin_timestamp
            .checked_add(u64::from(frame.timestamp_delta()))
            .ok_or(ErrorCode::InvalidCommand)?;
        let fields = MessageFields {
            checksum: 0,
            id: frame.id(),
            offset: 0,
            timestamp: 0,
            origin_timestamp,
            user_headers_length: frame.user_headers_length(),
            payload_length: frame.payload_length(),
        };
        put_message_0_8(&fields, frame.body(), out);
        position += frame.bytes.len();
    }
    if position != frames.len() {
        return Err(ErrorCode::InvalidCommand);
    }
    if hasher.digest() != header.batch_checksum {
        return Err(ErrorCode::InvalidBatchChecksum);
    }
    Ok(ids_all_set)
}

/// One message a client sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutgoingMessage<'a> {
    /// The id; 0 asks the server for one (the SDK sends a random UUIDv4 instead).
    pub id: u128,
    /// The client's timestamp, µs.
    pub origin_timestamp: u64,
    /// The payload.
    pub payload: &'a [u8],
    /// Raw user headers (TLV), possibly empty.
    pub user_headers: &'a [u8],
}

/// Appends a whole 0.9 SendMessages body for galgo's client.
///
/// Errors: no messages is 4009; a message whose origin timestamp is more than
/// [`TIMESTAMP_DELTA_MAX_US`] after the earliest one is 4038; a batch over
/// [`BATCH_BYTES_MAX`] bytes is 80 `InvalidSizeBytes`.
pub fn encode_send(
    stream: &Identifier,
    topic: &Identifier,
    partitioning: &Partitioning,
    messages: &[OutgoingMessage<'_>],
    out: &mut BytesMut,
) -> Result<(), ErrorCode> {
    encode_send_from(
        stream,
        topic,
        partitioning,
        messages.iter().copied().map(Ok),
        out,
    )
}

/// [`encode_send`] from a 0.8 messages block (what [`SendMessages::messages`] holds): every
/// message keeps its id, origin timestamp, payload and user headers. A block that does not
/// hold whole messages is 3 `InvalidCommand`.
pub fn encode_send_block(
    stream: &Identifier,
    topic: &Identifier,
    partitioning: &Partitioning,
    block: &[u8],
    out: &mut BytesMut,
) -> Result<(), ErrorCode> {
    let messages = MessageIter::new(block).map(|message| {
        let message = message.map_err(|_| ErrorCode::InvalidCommand)?;
        Ok(OutgoingMessage {
            id: message.id(),
            origin_timestamp: message.origin_timestamp(),
            payload: message.payload(),
            user_headers: message.user_headers(),
        })
    });
    encode_send_from(stream, topic, partitioning, messages, out)
}

/// Sets the origin timestamp of a batch whose messages all carry it (every frame's
/// `timestamp_delta` is 0) and reseals the batch checksum, for a producer that sends one
/// prepared batch again with a new send time. The frames' own checksums do not cover the
/// batch header, so they stay valid. `batch` starts at the batch header.
///
/// Errors: a batch that is not laid out as its header says is 3; a frame with a non-zero
/// timestamp delta is 4038 (its origin would move with the batch's).
pub fn set_batch_origin_timestamp(
    batch: &mut [u8],
    origin_timestamp: u64,
) -> Result<(), ErrorCode> {
    let mut header = BatchHeader::decode(batch)?;
    header.origin_timestamp = origin_timestamp;
    let frames_len = header.frames_len()?;
    header.check_count_fits(frames_len)?;
    let frames = BATCH_HEADER_BYTES
        .checked_add(frames_len)
        .and_then(|end| batch.get(BATCH_HEADER_BYTES..end))
        .ok_or(ErrorCode::InvalidCommand)?;
    let mut hasher = Xxh3Default::new();
    header.start_checksum(&mut hasher);
    let mut at = 0usize;
    for _ in 0..header.message_count {
        let frame = frames
            .get(at..at + FRAME_HEADER_BYTES)
            .ok_or(ErrorCode::InvalidCommand)?;
        if u32_at(frame, TIMESTAMP_DELTA_AT) != 0 {
            return Err(ErrorCode::InvalidMessageTimestampDelta);
        }
        hasher.update(&frame[FRAME_CHECKSUM_AT..FRAME_CHECKSUM_AT + 8]);
        let bodies = u32_at(frame, FRAME_PAYLOAD_LENGTH_AT) as usize
            + u32_at(frame, FRAME_HEADERS_LENGTH_AT) as usize;
        at += FRAME_HEADER_BYTES + bodies;
    }
    if at != frames_len {
        return Err(ErrorCode::InvalidCommand);
    }
    header.batch_checksum = hasher.digest();
    header.write_into(batch);
    Ok(())
}

/// What a first pass over the outgoing messages learns: enough to size and checksum the batch.
struct OutgoingPlan {
    count: u32,
    frames_len: usize,
    origin_timestamp: u64,
}

fn plan_outgoing<'a>(
    messages: impl Iterator<Item = Result<OutgoingMessage<'a>, ErrorCode>>,
) -> Result<OutgoingPlan, ErrorCode> {
    let (mut count, mut frames_len) = (0u32, 0usize);
    let (mut earliest, mut latest) = (u64::MAX, 0u64);
    for message in messages {
        let message = message?;
        let too_long = |len: usize| u32::try_from(len).is_err();
        if too_long(message.payload.len()) || too_long(message.user_headers.len()) {
            return Err(ErrorCode::InvalidSizeBytes);
        }
        count = count.checked_add(1).ok_or(ErrorCode::TooManyMessages)?;
        frames_len = frames_len.saturating_add(
            FRAME_HEADER_BYTES + message.payload.len() + message.user_headers.len(),
        );
        earliest = earliest.min(message.origin_timestamp);
        latest = latest.max(message.origin_timestamp);
    }
    if count == 0 {
        return Err(ErrorCode::InvalidMessagesCount);
    }
    if latest - earliest > TIMESTAMP_DELTA_MAX_US {
        return Err(ErrorCode::InvalidMessageTimestampDelta);
    }
    if frames_len > BATCH_BYTES_MAX - BATCH_HEADER_BYTES {
        return Err(ErrorCode::InvalidSizeBytes);
    }
    Ok(OutgoingPlan {
        count,
        frames_len,
        origin_timestamp: earliest,
    })
}

fn encode_send_from<'a>(
    stream: &Identifier,
    topic: &Identifier,
    partitioning: &Partitioning,
    messages: impl Iterator<Item = Result<OutgoingMessage<'a>, ErrorCode>> + Clone,
    out: &mut BytesMut,
) -> Result<(), ErrorCode> {
    let plan = plan_outgoing(messages.clone())?;
    let metadata_len = stream.encoded_len() + topic.encoded_len() + partitioning.encoded_len() + 4;
    out.reserve(4 + metadata_len + BATCH_HEADER_BYTES + plan.frames_len);
    out.put_u32_le(metadata_len as u32);
    stream.encode(out);
    topic.encode(out);
    partitioning.encode(out);
    out.put_u32_le(plan.count);
    let header_at = out.len();
    out.put_bytes(0, BATCH_HEADER_BYTES);
    let mut header = BatchHeader {
        origin_timestamp: plan.origin_timestamp,
        batch_length: (BATCH_HEADER_BYTES + plan.frames_len) as u64,
        message_count: plan.count,
        ..BatchHeader::default()
    };
    let mut hasher = Xxh3Default::new();
    header.start_checksum(&mut hasher);
    for (index, message) in messages.enumerate() {
        // The first pass validated every message; the iterator yields the same ones again.
        let message = message?;
        let delta = message.origin_timestamp - plan.origin_timestamp;
        let frame = FrameFields {
            id: &message.id.to_le_bytes(),
            offset_delta: index as u32,
            timestamp_delta: delta as u32,
            payload: message.payload,
            user_headers: message.user_headers,
        };
        hasher.update(&put_frame(&frame, out).to_le_bytes());
    }
    header.batch_checksum = hasher.digest();
    header.write_into(&mut out[header_at..]);
    Ok(())
}

/// One frame to write.
struct FrameFields<'a> {
    id: &'a [u8],
    offset_delta: u32,
    timestamp_delta: u32,
    payload: &'a [u8],
    user_headers: &'a [u8],
}

/// Appends a frame with its checksum and returns the checksum.
fn put_frame(frame: &FrameFields<'_>, out: &mut BytesMut) -> u64 {
    let at = out.len();
    out.put_u64_le(0);
    out.put_slice(frame.id);
    out.put_u32_le(frame.offset_delta);
    out.put_u32_le(frame.timestamp_delta);
    out.put_u32_le(frame.user_headers.len() as u32);
    out.put_u32_le(frame.payload.len() as u32);
    out.put_u64_le(0);
    out.put_slice(frame.payload);
    out.put_slice(frame.user_headers);
    seal_frame(&mut out[at..])
}

/// Computes a written frame's checksum over its bytes 8..end, stores it and returns it.
fn seal_frame(frame: &mut [u8]) -> u64 {
    let checksum = xxh3_64(&frame[FRAME_ID_AT..]);
    frame[FRAME_CHECKSUM_AT..FRAME_CHECKSUM_AT + 8].copy_from_slice(&checksum.to_le_bytes());
    checksum
}

/// A read position in a byte sequence held as several chunks, split anywhere.
#[derive(Clone)]
struct ChunkCursor<'a> {
    chunks: &'a [Bytes],
    /// Index of the current chunk and position in it.
    chunk: usize,
    offset: usize,
    remaining: usize,
}

impl<'a> ChunkCursor<'a> {
    fn new(chunks: &'a [Bytes]) -> Self {
        Self {
            chunks,
            chunk: 0,
            offset: 0,
            remaining: chunks.iter().map(Bytes::len).sum(),
        }
    }

    /// The bytes of `chunks[..end]` from `offset` of chunk `chunk` on (`chunk` ≤ `end`).
    fn between(chunks: &'a [Bytes], (chunk, offset): (usize, usize), end: usize) -> Self {
        let chunks = &chunks[..end];
        let from = chunks.get(chunk..).unwrap_or_default();
        Self {
            chunks,
            chunk,
            offset,
            remaining: from
                .iter()
                .map(Bytes::len)
                .sum::<usize>()
                .saturating_sub(offset),
        }
    }

    fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Hands the next `n` bytes to `take` piece by piece, or 3 `InvalidCommand` (and does
    /// nothing) when fewer remain.
    fn advance(&mut self, mut n: usize, mut take: impl FnMut(&'a [u8])) -> Result<(), ErrorCode> {
        if n > self.remaining {
            return Err(ErrorCode::InvalidCommand);
        }
        self.remaining -= n;
        while n > 0 {
            let chunk = &self.chunks[self.chunk][self.offset..];
            let piece = &chunk[..n.min(chunk.len())];
            take(piece);
            n -= piece.len();
            self.offset += piece.len();
            if self.offset == self.chunks[self.chunk].len() {
                self.chunk += 1;
                self.offset = 0;
            }
        }
        Ok(())
    }

    fn read<const N: usize>(&mut self) -> Result<[u8; N], ErrorCode> {
        let mut bytes = [0u8; N];
        let mut filled = 0;
        self.advance(N, |piece| {
            bytes[filled..filled + piece.len()].copy_from_slice(piece);
            filled += piece.len();
        })?;
        Ok(bytes)
    }

    fn skip(&mut self, n: usize) -> Result<(), ErrorCode> {
        self.advance(n, |_| {})
    }
}

/// One stored message of a poll reply, whole: borrowed from its chunk (with its place there,
/// so that its body can go out as a slice of that chunk), or gathered into a buffer of its own
/// when a read split it across two chunks (rare: at most one per chunk boundary).
struct StoredMessage<'a> {
    bytes: Cow<'a, [u8]>,
    /// Index of the chunk it lies in and its start there, when borrowed.
    place: Option<(usize, usize)>,
}

impl AsRef<[u8]> for StoredMessage<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The stored messages of a poll reply.
fn stored_messages<'a>(mut cursor: ChunkCursor<'a>) -> Result<Vec<StoredMessage<'a>>, ErrorCode> {
    let mut messages = Vec::new();
    while !cursor.is_empty() {
        let chunk = &cursor.chunks[cursor.chunk][cursor.offset..];
        if let Some(view) = MessageView::parse(chunk) {
            let size = view.size();
            messages.push(StoredMessage {
                bytes: Cow::Borrowed(&chunk[..size]),
                place: Some((cursor.chunk, cursor.offset)),
            });
            cursor.skip(size)?;
            continue;
        }
        let header: [u8; MESSAGE_HEADER_BYTES] = cursor.read()?;
        let body_len = u32_at(&header, PAYLOAD_LENGTH_AT) as usize
            + u32_at(&header, USER_HEADERS_LENGTH_AT) as usize;
        // Sized by the header only once the bytes are known to be there.
        if body_len > cursor.remaining {
            return Err(ErrorCode::InvalidCommand);
        }
        let mut gathered = Vec::with_capacity(MESSAGE_HEADER_BYTES + body_len);
        gathered.extend_from_slice(&header);
        cursor.advance(body_len, |piece| gathered.extend_from_slice(piece))?;
        messages.push(StoredMessage {
            bytes: Cow::Owned(gathered),
            place: None,
        });
    }
    Ok(messages)
}

/// The messages one batch record takes from the start of `messages`: those with the first
/// one's server timestamp whose offset and origin-timestamp deltas fit a u32. Returns how
/// many, and their earliest origin timestamp.
fn record_extent(messages: &[impl AsRef<[u8]>]) -> (usize, u64) {
    let first = messages[0].as_ref();
    let (base_offset, timestamp) = (u64_at(first, OFFSET_AT), u64_at(first, TIMESTAMP_AT));
    let mut earliest = u64_at(first, ORIGIN_TIMESTAMP_AT);
    let mut latest = earliest;
    let mut count = 1;
    for next in &messages[1..] {
        let next = next.as_ref();
        let origin = u64_at(next, ORIGIN_TIMESTAMP_AT);
        let (low, high) = (earliest.min(origin), latest.max(origin));
        let joins = u64_at(next, TIMESTAMP_AT) == timestamp
            && u64_at(next, OFFSET_AT)
                .checked_sub(base_offset)
                .is_some_and(|delta| delta <= OFFSET_DELTA_MAX)
            && high - low <= TIMESTAMP_DELTA_MAX_US
            && count < u32::MAX as usize;
        if !joins {
            break;
        }
        (earliest, latest, count) = (low, high, count + 1);
    }
    (count, earliest)
}

/// Bodies (payload and user headers) at least this long leave as slices of the stored bytes,
/// an iovec each; shorter ones are copied beside their frame header, where one iovec carries
/// many of them (an iovec costs the kernel more than copying a few hundred bytes).
const REFERENCED_BODY_BYTES_MIN: usize = 512;

/// Bodies at least this long are hashed in a stream (frame header, then the body where it
/// lies) rather than copied behind the frame header into one input first.
const STREAMED_BODY_BYTES_MIN: usize = 16 * 1024;

/// The frame of one stored message, `offset_delta` and `timestamp_delta` from its record, and
/// its body: the 48-byte header with its checksum, and the checksum.
fn frame_header(
    message: &[u8],
    offset_delta: u32,
    timestamp_delta: u32,
    input: &mut Vec<u8>,
) -> ([u8; FRAME_HEADER_BYTES], u64) {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[FRAME_ID_AT..OFFSET_DELTA_AT].copy_from_slice(&message[ID_AT..ID_AT + 16]);
    header[OFFSET_DELTA_AT..TIMESTAMP_DELTA_AT].copy_from_slice(&offset_delta.to_le_bytes());
    header[TIMESTAMP_DELTA_AT..FRAME_HEADERS_LENGTH_AT]
        .copy_from_slice(&timestamp_delta.to_le_bytes());
    header[FRAME_HEADERS_LENGTH_AT..FRAME_PAYLOAD_LENGTH_AT]
        .copy_from_slice(&message[USER_HEADERS_LENGTH_AT..USER_HEADERS_LENGTH_AT + 4]);
    header[FRAME_PAYLOAD_LENGTH_AT..FRAME_RESERVED_AT]
        .copy_from_slice(&message[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]);
    let body = &message[MESSAGE_HEADER_BYTES..];
    let checksum = if body.len() >= STREAMED_BODY_BYTES_MIN {
        let mut hasher = twox_hash::XxHash3_64::new();
        std::hash::Hasher::write(&mut hasher, &header[FRAME_ID_AT..]);
        std::hash::Hasher::write(&mut hasher, body);
        std::hash::Hasher::finish(&hasher)
    } else {
        input.clear();
        input.extend_from_slice(&header[FRAME_ID_AT..]);
        input.extend_from_slice(body);
        xxh3_64(input)
    };
    header[FRAME_CHECKSUM_AT..FRAME_ID_AT].copy_from_slice(&checksum.to_le_bytes());
    (header, checksum)
}

/// A piece of a 0.9 poll reply, in order: a range of the buffer headers are written to, a
/// message body where it is stored, or the frames of a [`KeptRecord`].
enum Piece {
    Written(std::ops::Range<usize>),
    Stored {
        chunk: usize,
        range: std::ops::Range<usize>,
    },
    Kept(usize),
}

/// Whether a message's body leaves as a slice of its chunk rather than copied.
fn referenced(message: &StoredMessage<'_>) -> bool {
    message.place.is_some()
        && message.bytes.len() - MESSAGE_HEADER_BYTES >= REFERENCED_BODY_BYTES_MIN
}

/// What parts of a 0.9 poll reply add up to: their messages, the bytes they write into the
/// buffer of headers and copied bodies, and the pieces they send from where those lie
/// (referenced bodies, kept frames), which size the list of pieces.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    messages: u64,
    written: usize,
    own_pieces: usize,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Self) {
        self.messages += other.messages;
        self.written += other.written;
        self.own_pieces += other.own_pieces;
    }
}

/// The batch records of a poll reply's messages (their ranges and earliest origin timestamps)
/// and what they add up to.
fn plan_records(messages: &[StoredMessage<'_>]) -> (Vec<(std::ops::Range<usize>, u64)>, Tally) {
    let mut records = Vec::new();
    let mut tally = Tally {
        messages: messages.len() as u64,
        ..Tally::default()
    };
    let mut start = 0;
    while start < messages.len() {
        let (count, origin_timestamp) = record_extent(&messages[start..]);
        let end = start + count;
        tally.written += BATCH_HEADER_BYTES;
        for message in &messages[start..end] {
            tally.written += FRAME_HEADER_BYTES;
            if referenced(message) {
                tally.own_pieces += 1;
            } else {
                tally.written += message.bytes.len() - MESSAGE_HEADER_BYTES;
            }
        }
        records.push((start..end, origin_timestamp));
        start = end;
    }
    (records, tally)
}

/// A part of a 0.9 poll reply: stored messages converted into records, or one kept record.
enum Part<'a> {
    Converted {
        messages: Vec<StoredMessage<'a>>,
        records: Vec<(std::ops::Range<usize>, u64)>,
    },
    /// The index of the kept record, and its header.
    Kept(usize, BatchHeader),
}

/// The header of a kept record in a reply from `partition_id`, its checksum computed from
/// the frames' own; `None` for a record without a whole number of checksums.
fn kept_header(
    kept: &KeptRecord,
    partition_id: u32,
    hasher: &mut Xxh3Default,
) -> Option<BatchHeader> {
    let count = u32::try_from(kept.message_count()).ok()?;
    if count == 0 || !kept.checksums.len().is_multiple_of(FRAME_CHECKSUM_BYTES) {
        return None;
    }
    let mut header = BatchHeader {
        partition_id: u64::from(partition_id),
        base_offset: kept.base_offset,
        base_timestamp: kept.base_timestamp,
        origin_timestamp: kept.origin_timestamp,
        batch_length: (BATCH_HEADER_BYTES + kept.frames.len()) as u64,
        batch_checksum: 0,
        message_count: count,
    };
    header.start_checksum(hasher);
    hasher.update(&kept.checksums);
    header.batch_checksum = hasher.digest();
    Some(header)
}

/// Splits a poll reply's messages (from `cursor`, just after the head) into parts: each
/// usable kept record (whole chunks after the head, in order, whole checksums) is a part of
/// its own, and the messages between them are converted. Returns the parts and what they add
/// up to.
fn plan_parts<'a>(
    cursor: &ChunkCursor<'a>,
    kept: &[KeptRecord],
    partition_id: u32,
    hasher: &mut Xxh3Default,
) -> Result<(Vec<Part<'a>>, Tally), ErrorCode> {
    let chunks = cursor.chunks;
    let (mut parts, mut tally) = (Vec::new(), Tally::default());
    let (mut chunk, mut offset) = (cursor.chunk, cursor.offset);
    let convert =
        |parts: &mut Vec<Part<'a>>, from: (usize, usize), to: usize| -> Result<Tally, ErrorCode> {
            let stretch = ChunkCursor::between(chunks, from, to);
            if stretch.is_empty() {
                return Ok(Tally::default());
            }
            let messages = stored_messages(stretch)?;
            let (records, tally) = plan_records(&messages);
            parts.push(Part::Converted { messages, records });
            Ok(tally)
        };
    for (index, record) in kept.iter().enumerate() {
        let whole = record.chunk > chunk || (record.chunk == chunk && offset == 0);
        if !whole || record.chunk >= chunks.len() {
            continue;
        }
        let Some(header) = kept_header(record, partition_id, hasher) else {
            continue;
        };
        tally += convert(&mut parts, (chunk, offset), record.chunk)?;
        parts.push(Part::Kept(index, header));
        tally += Tally {
            messages: u64::from(header.message_count),
            written: BATCH_HEADER_BYTES,
            own_pieces: 1,
        };
        (chunk, offset) = (record.chunk + 1, 0);
    }
    tally += convert(&mut parts, (chunk, offset), chunks.len())?;
    Ok((parts, tally))
}

/// Writes a 0.9 poll reply as pieces: headers and copied bodies into `scratch`, referenced
/// bodies and kept frames as pieces of their own.
struct PiecesWriter {
    scratch: BytesMut,
    pieces: Vec<Piece>,
    /// Where the part of `scratch` not yet in a piece starts.
    from: usize,
    hasher: Xxh3Default,
    /// A frame's hash input, reused.
    input: Vec<u8>,
}

impl PiecesWriter {
    /// Ends the written piece so far (an empty one is dropped at `finish`) and adds `piece`.
    fn push_piece(&mut self, piece: Piece) {
        self.pieces
            .push(Piece::Written(self.from..self.scratch.len()));
        self.from = self.scratch.len();
        self.pieces.push(piece);
    }

    /// Writes one batch record of `record` (all of them; [`record_extent`] chose them).
    fn write_record(
        &mut self,
        record: &[StoredMessage<'_>],
        origin_timestamp: u64,
        partition_id: u32,
    ) {
        let first = &record[0].bytes;
        let frames_len: usize = record
            .iter()
            .map(|message| message.bytes.len() - MESSAGE_GROWTH_BYTES)
            .sum();
        let mut header = BatchHeader {
            partition_id: u64::from(partition_id),
            base_offset: u64_at(first, OFFSET_AT),
            base_timestamp: u64_at(first, TIMESTAMP_AT),
            origin_timestamp,
            batch_length: (BATCH_HEADER_BYTES + frames_len) as u64,
            batch_checksum: 0,
            message_count: record.len() as u32,
        };
        let header_at = self.scratch.len();
        self.scratch.put_bytes(0, BATCH_HEADER_BYTES);
        header.start_checksum(&mut self.hasher);
        for message in record {
            let bytes = &message.bytes;
            // record_extent proved both deltas fit a u32.
            let offset_delta = (u64_at(bytes, OFFSET_AT) - header.base_offset) as u32;
            let timestamp_delta = (u64_at(bytes, ORIGIN_TIMESTAMP_AT) - origin_timestamp) as u32;
            let (frame, checksum) =
                frame_header(bytes, offset_delta, timestamp_delta, &mut self.input);
            self.hasher.update(&checksum.to_le_bytes());
            self.scratch.put_slice(&frame);
            match message.place.filter(|_| referenced(message)) {
                Some((chunk, at)) => self.push_piece(Piece::Stored {
                    chunk,
                    range: at + MESSAGE_HEADER_BYTES..at + bytes.len(),
                }),
                None => self.scratch.put_slice(&bytes[MESSAGE_HEADER_BYTES..]),
            }
        }
        header.batch_checksum = self.hasher.digest();
        header.write_into(&mut self.scratch[header_at..]);
    }

    /// Writes a kept record: its header, then its frames as they are.
    fn write_kept(&mut self, index: usize, header: &BatchHeader) {
        header.encode(&mut self.scratch);
        self.push_piece(Piece::Kept(index));
    }

    /// The pieces, in order and none empty, and the whole written buffer.
    fn finish(mut self, chunks: &[Bytes], kept: &[KeptRecord]) -> (Vec<Bytes>, Bytes) {
        self.pieces
            .push(Piece::Written(self.from..self.scratch.len()));
        let whole = self.scratch.freeze();
        let pieces = self
            .pieces
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Written(range) if range.is_empty() => None,
                Piece::Written(range) => Some(whole.slice(range)),
                Piece::Stored { chunk, range } => Some(chunks[chunk].slice(range)),
                Piece::Kept(index) => Some(kept[index].frames.clone()),
            })
            .collect();
        (pieces, whole)
    }
}

/// Converts a 0.8 PollMessages reply (the 16-byte head, then stored messages back to back,
/// split across `chunks` at any byte) into the 0.9 reply: the same head, then batch records.
///
/// Each chunk that `kept` names (whole, after the head, in chunk order) goes out as one
/// record: a header written here, then its kept frames as they are. The other messages are
/// converted: consecutive ones share a record while they have the same server timestamp and
/// their offset and origin-timestamp deltas fit a u32, and their frame and batch checksums
/// are computed afresh (the stored checksums are not needed). A kept record is trusted to
/// hold its chunk's messages (storage made both from one batch); one without a whole number
/// of checksums is converted instead.
///
/// The reply is returned as pieces to send in order, without copying the stored messages:
/// the head, record headers, frame headers and short bodies are written into `scratch`
/// (cleared first; a connection hands the same buffer back poll after poll), and each body
/// of at least [`REFERENCED_BODY_BYTES_MIN`] bytes is a slice of the chunk that holds it. The
/// second value is the whole of what `scratch` became, for the caller to take back with
/// `Bytes::try_into_mut` once the pieces are written and dropped.
///
/// A head shorter than 16 bytes, a torn message or a `messages_count` that disagrees with the
/// messages is 3 `InvalidCommand`.
pub fn encode_polled_pieces(
    chunks: &[Bytes],
    kept: &[KeptRecord],
    mut scratch: BytesMut,
) -> Result<(Vec<Bytes>, Bytes), ErrorCode> {
    scratch.clear();
    let mut cursor = ChunkCursor::new(chunks);
    let head_bytes: [u8; POLLED_MESSAGES_HEADER_BYTES] = cursor.read()?;
    let head = PolledMessagesHeader::decode(&head_bytes)?;
    let mut hasher = Xxh3Default::new();
    let (parts, tally) = plan_parts(&cursor, kept, head.partition_id, &mut hasher)?;
    if tally.messages != u64::from(head.messages_count) {
        return Err(ErrorCode::InvalidCommand);
    }
    let written = POLLED_MESSAGES_HEADER_BYTES + tally.written;
    scratch.reserve(written);
    scratch.put_slice(&head_bytes);
    let mut writer = PiecesWriter {
        scratch,
        // At most a written piece before each referenced body or kept record, that piece,
        // and the last one.
        pieces: Vec::with_capacity(2 * tally.own_pieces + 1),
        from: 0,
        hasher,
        input: Vec::new(),
    };
    for part in &parts {
        match part {
            Part::Converted { messages, records } => {
                for (range, origin_timestamp) in records {
                    let record = &messages[range.clone()];
                    writer.write_record(record, *origin_timestamp, head.partition_id);
                }
            }
            Part::Kept(index, header) => writer.write_kept(*index, header),
        }
    }
    debug_assert_eq!(writer.scratch.len(), written);
    debug_assert!(writer.pieces.len() <= 2 * tally.own_pieces);
    Ok(writer.finish(chunks, kept))
}

/// [`encode_polled_pieces`] as one buffer, every message converted.
pub fn encode_polled(chunks: &[Bytes]) -> Result<BytesMut, ErrorCode> {
    encode_polled_keeping(chunks, &[])
}

/// [`encode_polled_pieces`] as one buffer.
pub fn encode_polled_keeping(chunks: &[Bytes], kept: &[KeptRecord]) -> Result<BytesMut, ErrorCode> {
    let (pieces, _) = encode_polled_pieces(chunks, kept, BytesMut::new())?;
    let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
    for piece in &pieces {
        out.put_slice(piece);
    }
    Ok(out)
}

/// Converts a 0.9 poll reply back into the 0.8 reply galgo's client decodes: the head (its
/// `messages_count` set to the messages found), then one 0.8 message per frame with offset
/// `base_offset + offset_delta`, timestamp `base_timestamp`, origin timestamp
/// `origin_timestamp + timestamp_delta` and a checksum computed as message.rs does.
///
/// Like the SDK, checksums are not verified; the layout is (3 `InvalidCommand`): records
/// whole, reserved bytes 0, frames tiling each record exactly.
pub fn decode_polled(body: &[u8]) -> Result<BytesMut, ErrorCode> {
    let Some((head, records)) = body.split_at_checked(POLLED_MESSAGES_HEADER_BYTES) else {
        return Err(ErrorCode::InvalidCommand);
    };
    let (mut size, mut messages, mut position) = (head.len(), 0u64, 0);
    while position < records.len() {
        let (header, frames) = record_at(records, position)?;
        size += frames.len() + header.message_count as usize * MESSAGE_GROWTH_BYTES;
        messages += u64::from(header.message_count);
        position += header.batch_length as usize;
    }
    let messages_count = u32::try_from(messages).map_err(|_| ErrorCode::InvalidCommand)?;
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(&head[..POLLED_MESSAGES_HEADER_BYTES - 4]);
    out.put_u32_le(messages_count);
    position = 0;
    while position < records.len() {
        let (header, frames) = record_at(records, position)?;
        convert_polled_frames(&header, frames, &mut out)?;
        position += header.batch_length as usize;
    }
    debug_assert_eq!(out.len(), size);
    Ok(out)
}

/// The record at `position`: its header and its frames, whole inside `records`, with a count
/// its frames could hold.
fn record_at(records: &[u8], position: usize) -> Result<(BatchHeader, &[u8]), ErrorCode> {
    let header = BatchHeader::decode(&records[position..])?;
    let frames_len = header.frames_len()?;
    let frames_at = position + BATCH_HEADER_BYTES;
    let frames = records
        .get(frames_at..frames_at.saturating_add(frames_len))
        .ok_or(ErrorCode::InvalidCommand)?;
    header.check_count_fits(frames.len())?;
    Ok((header, frames))
}

fn convert_polled_frames(
    header: &BatchHeader,
    frames: &[u8],
    out: &mut BytesMut,
) -> Result<(), ErrorCode> {
    let mut position = 0;
    for _ in 0..header.message_count {
        let frame = Frame::at(frames, position)?;
        let offset = header
            .base_offset
            .checked_add(u64::from(frame.offset_delta()));
        let origin = header
            .origin_timestamp
            .checked_add(u64::from(frame.timestamp_delta()));
        let (Some(offset), Some(origin_timestamp)) = (offset, origin) else {
            return Err(ErrorCode::InvalidCommand);
        };
        let fields = MessageFields {
            checksum: 0,
            id: frame.id(),
            offset,
            timestamp: header.base_timestamp,
            origin_timestamp,
            user_headers_length: frame.user_headers_length(),
            payload_length: frame.payload_length(),
        };
        let at = out.len();
        put_message_0_8(&fields, frame.body(), out);
        let checksum = message::checksum(&out[at..]);
        out[at..at + 8].copy_from_slice(&checksum.to_le_bytes());
        position += frame.bytes.len();
    }
    if position != frames.len() {
        return Err(ErrorCode::InvalidCommand);
    }
    Ok(())
}

/// Bytes of one [`SendConfirmation`].
pub const SEND_CONFIRMATION_BYTES: usize = 20;

/// Where a sent batch landed: one record of the SendMessages reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SendConfirmation {
    /// The stream's numeric id.
    pub stream_id: u32,
    /// The topic's numeric id.
    pub topic_id: u32,
    /// The partition the batch went to.
    pub partition_id: u32,
    /// The offset of the batch's first message.
    pub base_offset: u64,
}

impl SendConfirmation {
    /// Appends a SendMessages reply: `count u32`, then the records.
    pub fn encode_list(confirmations: &[Self], out: &mut BytesMut) {
        let count = u32::try_from(confirmations.len()).expect("confirmations fit a u32 count");
        out.reserve(4 + confirmations.len() * SEND_CONFIRMATION_BYTES);
        out.put_u32_le(count);
        for confirmation in confirmations {
            out.put_u32_le(confirmation.stream_id);
            out.put_u32_le(confirmation.topic_id);
            out.put_u32_le(confirmation.partition_id);
            out.put_u64_le(confirmation.base_offset);
        }
    }

    /// Reads a SendMessages reply: empty means no confirmations; otherwise the count and
    /// exactly that many records (trailing bytes are 3, as the SDK refuses them).
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Self>, ErrorCode> {
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        let mut reader = Reader::new(bytes);
        let (count, hint) = reader.count(SEND_CONFIRMATION_BYTES)?;
        let mut confirmations = Vec::with_capacity(hint);
        for _ in 0..count {
            confirmations.push(Self {
                stream_id: reader.u32()?,
                topic_id: reader.u32()?,
                partition_id: reader.u32()?,
                base_offset: reader.u64()?,
            });
        }
        if !reader.is_empty() {
            return Err(ErrorCode::InvalidCommand);
        }
        Ok(confirmations)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::identifier::tests::any_identifier;
    use crate::message::{MessageView, encode_message, stamp};
    use crate::partitioning::tests::any_partitioning;

    #[test]
    fn polled_frames_read_in_place_what_decode_polled_converts() {
        let mut block = Vec::new();
        for (offset, timestamp) in [(7u64, 100u64), (8, 100), (9, 200)] {
            let mut message = Vec::new();
            encode_message(
                u128::from(offset),
                offset * 10,
                b"payload",
                b"\x02\x01\x00\x00\x00k",
                &mut message,
            );
            stamp(&mut message, offset, timestamp, || 0);
            block.extend(message);
        }
        let mut head = BytesMut::new();
        PolledMessagesHeader {
            partition_id: 3,
            current_offset: 9,
            messages_count: 3,
        }
        .encode(&mut head);
        let body = encode_polled(&[head.freeze(), Bytes::from(block)]).expect("encoded");
        let converted = decode_polled(&body).expect("decoded");
        let expected: Vec<_> = MessageIter::new(&converted[POLLED_MESSAGES_HEADER_BYTES..])
            .map(|message| {
                let m = message.expect("whole");
                (
                    m.id(),
                    m.offset(),
                    m.timestamp(),
                    m.origin_timestamp(),
                    m.payload().to_vec(),
                    m.user_headers().to_vec(),
                )
            })
            .collect();
        let in_place: Vec<_> = PolledFrames::new(&body[POLLED_MESSAGES_HEADER_BYTES..])
            .map(|frame| {
                let f = frame.expect("whole");
                (
                    f.id(),
                    f.offset(),
                    f.timestamp(),
                    f.origin_timestamp(),
                    f.payload().to_vec(),
                    f.user_headers().to_vec(),
                )
            })
            .collect();
        assert_eq!(in_place, expected);
        assert_eq!(in_place.len(), 3);
        let torn = &body[POLLED_MESSAGES_HEADER_BYTES..body.len() - 1];
        assert!(PolledFrames::new(torn).any(|frame| frame.is_err()));
    }

    #[test]
    fn a_prepared_batch_takes_a_new_origin_timestamp_and_stays_valid() {
        let messages: Vec<OutgoingMessage<'_>> = (0..3u128)
            .map(|id| OutgoingMessage {
                id: id + 1,
                origin_timestamp: 1000,
                payload: b"payload",
                user_headers: b"",
            })
            .collect();
        let zero = Identifier::Numeric(0);
        let mut body = BytesMut::new();
        let partitioning = Partitioning::PartitionId(0);
        encode_send(&zero, &zero, &partitioning, &messages, &mut body).expect("encoded");
        let batch_at = body.len() - BATCH_HEADER_BYTES - 3 * (FRAME_HEADER_BYTES + 7);
        set_batch_origin_timestamp(&mut body[batch_at..], 5_000).expect("restamped");
        let send = decode_send(body.clone()).expect("checksums still hold");
        let origins: Vec<u64> = send
            .iter_messages()
            .map(|message| message.expect("whole").origin_timestamp())
            .collect();
        assert_eq!(origins, [5_000; 3]);
        body[batch_at + BATCH_HEADER_BYTES + TIMESTAMP_DELTA_AT] = 1;
        assert_eq!(
            set_batch_origin_timestamp(&mut body[batch_at..], 6_000),
            Err(ErrorCode::InvalidMessageTimestampDelta)
        );
    }

    fn hi() -> BytesMut {
        let mut body = BytesMut::new();
        let message = OutgoingMessage {
            id: 1,
            origin_timestamp: 1000,
            payload: b"hi",
            user_headers: b"",
        };
        let zero = Identifier::Numeric(0);
        encode_send(
            &zero,
            &zero,
            &Partitioning::PartitionId(0),
            &[message],
            &mut body,
        )
        .expect("one message");
        body
    }

    /// §12.5, byte for byte, and what the server makes of it.
    #[test]
    fn worked_example_12_5() {
        let body = hi();
        assert_eq!(body.len(), 332);
        #[rustfmt::skip]
        let metadata = [
            0x16, 0, 0, 0,
            1, 4, 0, 0, 0, 0,  1, 4, 0, 0, 0, 0,  2, 4, 0, 0, 0, 0,
            1, 0, 0, 0,
        ];
        assert_eq!(&body[..0x1A], metadata);
        let header = &body[0x1A..0x11A];
        assert_eq!(&header[..24], [0; 24]);
        assert_eq!(&header[24..32], 1000u64.to_le_bytes());
        assert_eq!(&header[32..40], 306u64.to_le_bytes());
        assert_eq!(
            &header[40..48],
            [0x65, 0xDD, 0x92, 0x38, 0xD9, 0xCA, 0x28, 0x31]
        );
        assert_eq!(&header[48..52], [1, 0, 0, 0]);
        assert!(header[52..].iter().all(|&byte| byte == 0));
        let frame = &body[0x11A..];
        assert_eq!(
            &frame[..8],
            [0xDC, 0x8E, 0x00, 0xCA, 0x42, 0x0B, 0x92, 0xA9]
        );
        assert_eq!(&frame[8..24], 1u128.to_le_bytes());
        assert_eq!(
            &frame[24..48],
            [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
            ]
        );
        assert_eq!(&frame[48..], b"hi");

        let request = decode_send(body).expect("valid");
        assert_eq!(
            (
                &request.stream,
                &request.topic,
                &request.partitioning,
                request.messages_count
            ),
            (
                &Identifier::Numeric(0),
                &Identifier::Numeric(0),
                &Partitioning::PartitionId(0),
                1
            )
        );
        let mut expected = Vec::new();
        encode_message(1, 1000, b"hi", b"", &mut expected);
        assert_eq!(&request.messages[..], &expected[..]);
    }

    fn decode_err(body: &[u8]) -> ErrorCode {
        decode_send(BytesMut::from(body)).expect_err("invalid")
    }

    /// Re-seals a frame at `frame_at` and the batch checksum after a deliberate edit, so the
    /// edit itself is what the decoder meets.
    fn reseal(body: &mut [u8], frame_at: usize) {
        // The frame is the body's last, and the edit may break its layout: seal to the end.
        seal_frame(&mut body[frame_at..]);
        let header_at = 0x1A;
        let mut header = BatchHeader::decode(&body[header_at..]).expect("header");
        let mut hasher = Xxh3Default::new();
        header.start_checksum(&mut hasher);
        hasher.update(&body[frame_at..frame_at + 8]);
        header.batch_checksum = hasher.digest();
        header.write_into(&mut body[header_at..]);
    }

    #[test]
    fn send_errors() {
        let valid = hi().to_vec();
        let edited = |at: usize, value: u8| {
            let mut body = valid.clone();
            body[at] = value;
            body
        };
        assert_eq!(decode_err(&valid[..3]), ErrorCode::InvalidCommand);
        assert_eq!(decode_err(&edited(0, 0x17)), ErrorCode::InvalidCommand);
        assert_eq!(decode_err(&edited(4, 9)), ErrorCode::InvalidIdentifier);
        assert_eq!(decode_err(&edited(16, 7)), ErrorCode::InvalidCommand);
        assert_eq!(decode_err(&edited(22, 0)), ErrorCode::InvalidMessagesCount);
        assert_eq!(decode_err(&edited(22, 2)), ErrorCode::InvalidCommand);
        assert_eq!(
            decode_err(&edited(0x1A + 32, 0x33)),
            ErrorCode::InvalidCommand
        );
        assert_eq!(
            decode_err(&edited(0x1A + 200, 1)),
            ErrorCode::InvalidCommand
        );
        assert_eq!(
            decode_err(&valid[..valid.len() - 1]),
            ErrorCode::InvalidCommand
        );
        let mut trailing = valid.clone();
        trailing.push(0);
        assert_eq!(decode_err(&trailing), ErrorCode::InvalidCommand);
        assert_eq!(
            decode_err(&edited(valid.len() - 1, b'o')),
            ErrorCode::InvalidMessageChecksum
        );
        assert_eq!(
            decode_err(&edited(0x1A + 40, 0)),
            ErrorCode::InvalidBatchChecksum
        );
        assert_eq!(
            decode_err(&edited(0x1A + 16, 1)),
            ErrorCode::InvalidBatchChecksum
        );
        for (at, value, code) in [
            (0x11A + 24, 1, ErrorCode::InvalidCommand),
            (0x11A + 40, 1, ErrorCode::InvalidCommand),
            (0x11A + 36, 3, ErrorCode::InvalidCommand),
        ] {
            let mut body = edited(at, value);
            if at != 0x11A + 36 {
                reseal(&mut body, 0x11A);
            }
            assert_eq!(decode_err(&body), code, "byte {at}");
        }
    }

    #[test]
    fn send_limits_are_the_0_8_decoders() {
        let zero = Identifier::Numeric(0);
        let encode = |payload: &[u8], user_headers: &[u8]| {
            let message = OutgoingMessage {
                id: 1,
                origin_timestamp: 0,
                payload,
                user_headers,
            };
            let mut body = BytesMut::new();
            encode_send(&zero, &zero, &Partitioning::Balanced, &[message], &mut body).unwrap();
            body
        };
        let headers = vec![1u8; USER_HEADERS_BYTES_MAX as usize + 1];
        assert_eq!(
            decode_err(&encode(b"x", &headers)),
            ErrorCode::TooBigUserHeaders
        );
        let payload = vec![0u8; MESSAGE_PAYLOAD_BYTES_MAX as usize + 1];
        assert_eq!(
            decode_err(&encode(&payload, b"")),
            ErrorCode::TooBigMessagePayload
        );
        assert!(decode_send(encode(b"", b"")).is_ok());
    }

    #[test]
    fn encode_send_refuses_what_the_sdk_refuses() {
        let zero = Identifier::Numeric(0);
        let mut out = BytesMut::new();
        let none = encode_send(&zero, &zero, &Partitioning::Balanced, &[], &mut out);
        assert_eq!(none, Err(ErrorCode::InvalidMessagesCount));
        let at = |origin_timestamp| OutgoingMessage {
            id: 1,
            origin_timestamp,
            payload: b"",
            user_headers: b"",
        };
        let spread = [at(5), at(5 + TIMESTAMP_DELTA_MAX_US + 1)];
        let far = encode_send(&zero, &zero, &Partitioning::Balanced, &spread, &mut out);
        assert_eq!(far, Err(ErrorCode::InvalidMessageTimestampDelta));
        let fits = [at(5 + TIMESTAMP_DELTA_MAX_US), at(5)];
        assert!(encode_send(&zero, &zero, &Partitioning::Balanced, &fits, &mut out).is_ok());
        assert_eq!(
            encode_send_block(&zero, &zero, &Partitioning::Balanced, &[1, 2], &mut out),
            Err(ErrorCode::InvalidCommand)
        );
    }

    /// A stored message as the server keeps it.
    fn stored(id: u128, offset: u64, timestamp: u64, origin: u64, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_message(id, origin, payload, b"\x02\x01\x00\x00\x00k", &mut bytes);
        stamp(&mut bytes, offset, timestamp, || {
            unreachable!("ids are set")
        });
        bytes
    }

    fn poll_reply(partition_id: u32, messages: &[Vec<u8>]) -> Vec<u8> {
        let mut head = BytesMut::new();
        PolledMessagesHeader {
            partition_id,
            current_offset: 99,
            messages_count: messages.len() as u32,
        }
        .encode(&mut head);
        [head.to_vec(), messages.concat()].concat()
    }

    /// Splits `bytes` at every `step` bytes, so messages straddle chunks.
    fn chunked(bytes: &[u8], step: usize) -> Vec<Bytes> {
        bytes.chunks(step).map(Bytes::copy_from_slice).collect()
    }

    /// The records of a 0.9 poll reply: (header, frames).
    fn records(body: &[u8]) -> Vec<(BatchHeader, Vec<u8>)> {
        let mut records = Vec::new();
        let mut position = 16;
        while position < body.len() {
            let (header, frames) = record_at(&body[16..], position - 16).expect("record");
            records.push((header, frames.to_vec()));
            position += header.batch_length as usize;
        }
        records
    }

    /// Whether every frame checksum is XXH3-64 of the frame's bytes 8..end and every batch
    /// checksum XXH3-64 of the listed header fields then the frame checksums.
    fn checksums_hold(records: &[(BatchHeader, Vec<u8>)]) -> bool {
        records.iter().all(|(header, frames)| {
            let mut input = Vec::new();
            for field in [
                header.partition_id,
                header.base_offset,
                header.base_timestamp,
                header.origin_timestamp,
                header.batch_length,
            ] {
                input.extend_from_slice(&field.to_le_bytes());
            }
            input.extend_from_slice(&header.message_count.to_le_bytes());
            let mut position = 0;
            while position < frames.len() {
                let frame = Frame::at(frames, position).unwrap();
                if frame.checksum() != xxh3_64(&frame.bytes[8..]) {
                    return false;
                }
                input.extend_from_slice(&frame.bytes[..8]);
                position += frame.bytes.len();
            }
            header.batch_checksum == xxh3_64(&input)
        })
    }

    #[test]
    fn long_bodies_leave_as_slices_of_the_stored_bytes() {
        let sizes = [600, 10, 505, 506, 20_000, 700];
        let messages: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let payload = vec![i as u8 + 1; size];
                stored(
                    i as u128 + 1,
                    40 + i as u64,
                    500,
                    2_000 + i as u64,
                    &payload,
                )
            })
            .collect();
        let reply = Bytes::from(poll_reply(3, &messages));
        // The last message straddles two chunks: it is gathered, so copied.
        let split = reply.len() - 100;
        let chunks = [reply.slice(..split), reply.slice(split..)];
        let (pieces, whole) = encode_polled_pieces(&chunks, &[], BytesMut::new()).expect("valid");
        let inside = |piece: &Bytes, chunk: &Bytes| {
            let (start, end) = (
                chunk.as_ptr() as usize,
                chunk.as_ptr() as usize + chunk.len(),
            );
            (start..end).contains(&(piece.as_ptr() as usize))
        };
        let referenced: Vec<usize> = pieces
            .iter()
            .filter(|piece| inside(piece, &chunks[0]) || inside(piece, &chunks[1]))
            .map(Bytes::len)
            .collect();
        // Bodies are the payload and the 6 bytes of user headers `stored` gives each message.
        assert_eq!(referenced, [606, 512, 20_006]);
        assert!(pieces.iter().all(|piece| !piece.is_empty()));
        let body: Vec<u8> = pieces.concat();
        assert_eq!(body, encode_polled(&chunks).expect("valid").to_vec());
        assert!(checksums_hold(&records(&body)));
        assert_eq!(
            decode_polled(&body).expect("valid").to_vec(),
            reply.to_vec()
        );
        // The headers' buffer comes back for the next poll once the pieces are gone.
        drop(pieces);
        let scratch = whole.try_into_mut().expect("the only reference left");
        let capacity = scratch.capacity();
        let (pieces, _) = encode_polled_pieces(&chunks, &[], scratch).expect("valid");
        assert_eq!(pieces.concat(), body);
        assert!(capacity >= body.len() - referenced.iter().sum::<usize>());
    }

    #[test]
    fn polled_messages_group_into_records() {
        let messages = [
            stored(1, 10, 500, 2_000, b"a"),
            stored(2, 11, 500, 1_000, b"bb"),
            stored(3, 12, 600, 1_000, b"c"),
            stored(4, 13, 600, 1_000 + (1 << 33), b"d"),
            stored(5, 13 + u64::from(u32::MAX), 600, 1_000 + (1 << 33), b"e"),
            stored(6, 14 + u64::from(u32::MAX), 600, 1_000 + (1 << 33), b"f"),
        ];
        let reply = poll_reply(7, &messages);
        let body = encode_polled(&chunked(&reply, 7)).expect("valid");
        assert_eq!(&body[..16], &reply[..16]);
        let records = records(&body);
        let shape: Vec<_> = records
            .iter()
            .map(|(h, _)| {
                (
                    h.partition_id,
                    h.base_offset,
                    h.base_timestamp,
                    h.origin_timestamp,
                    h.message_count,
                )
            })
            .collect();
        assert_eq!(
            shape,
            [
                (7, 10, 500, 1_000, 2),
                (7, 12, 600, 1_000, 1),
                (7, 13, 600, 1_000 + (1 << 33), 2),
                (7, 14 + u64::from(u32::MAX), 600, 1_000 + (1 << 33), 1),
            ]
        );
        assert!(checksums_hold(&records));
        let (_, first) = &records[0];
        assert_eq!(
            &first[24..32],
            [0, 0, 0, 0, 0xE8, 0x03, 0, 0],
            "deltas from the record's minimum"
        );
        assert_eq!(decode_polled(&body).expect("valid").to_vec(), reply);
    }

    #[test]
    fn empty_and_malformed_polls() {
        let empty = poll_reply(3, &[]);
        assert_eq!(
            encode_polled(&[Bytes::copy_from_slice(&empty)])
                .unwrap()
                .to_vec(),
            empty
        );
        assert_eq!(decode_polled(&empty).unwrap().to_vec(), empty);
        assert_eq!(encode_polled(&[]), Err(ErrorCode::InvalidCommand));
        assert_eq!(decode_polled(&empty[..15]), Err(ErrorCode::InvalidCommand));

        let messages = [stored(1, 0, 1, 1, b"x"), stored(2, 1, 1, 1, b"y")];
        let reply = poll_reply(0, &messages);
        let torn = chunked(&reply[..reply.len() - 1], 100);
        assert_eq!(encode_polled(&torn), Err(ErrorCode::InvalidCommand));
        let mut miscounted = reply.clone();
        miscounted[12] = 3;
        assert_eq!(
            encode_polled(&chunked(&miscounted, 5)),
            Err(ErrorCode::InvalidCommand)
        );
        // A message split across chunks that claims more bytes than follow is refused. It
        // used to size a buffer by its lengths first: 4 GB under the fuzzer, whose memory
        // limit is what catches that (scripts/fuzz.sh).
        let mut huge = poll_reply(0, &messages[..1]);
        huge[16 + PAYLOAD_LENGTH_AT..16 + PAYLOAD_LENGTH_AT + 4].copy_from_slice(&[0xff; 4]);
        huge[16 + USER_HEADERS_LENGTH_AT..16 + USER_HEADERS_LENGTH_AT + 4]
            .copy_from_slice(&[0xff; 4]);
        assert_eq!(
            encode_polled(&chunked(&huge, 20)),
            Err(ErrorCode::InvalidCommand)
        );

        let body = encode_polled(&chunked(&reply, 1)).unwrap().to_vec();
        let edited = |at: usize, value: u8| {
            let mut body = body.clone();
            body[at] = value;
            decode_polled(&body)
        };
        assert_eq!(
            edited(16 + 100, 1),
            Err(ErrorCode::InvalidCommand),
            "reserved header byte"
        );
        assert_eq!(
            edited(16 + 256 + 40, 1),
            Err(ErrorCode::InvalidCommand),
            "reserved frame byte"
        );
        assert_eq!(
            edited(16 + 48, 3),
            Err(ErrorCode::InvalidCommand),
            "count over the frames"
        );
        assert_eq!(
            edited(16 + 48, 1),
            Err(ErrorCode::InvalidCommand),
            "frames left over"
        );
        assert_eq!(
            decode_polled(&body[..body.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
        // Checksums pass through unverified, as in the SDK.
        assert!(edited(16 + 40, 0).is_ok());
    }

    #[test]
    fn confirmations_round_trip() {
        let list = [
            SendConfirmation {
                stream_id: 1,
                topic_id: 2,
                partition_id: 3,
                base_offset: 4,
            },
            SendConfirmation {
                stream_id: 5,
                topic_id: 6,
                partition_id: 7,
                base_offset: u64::MAX,
            },
        ];
        let mut bytes = BytesMut::new();
        SendConfirmation::encode_list(&list, &mut bytes);
        assert_eq!(bytes.len(), 4 + 2 * SEND_CONFIRMATION_BYTES);
        assert_eq!(&bytes[..8], [2, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(SendConfirmation::decode_list(&bytes), Ok(list.to_vec()));
        assert_eq!(SendConfirmation::decode_list(&[]), Ok(Vec::new()));
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert_eq!(
            SendConfirmation::decode_list(&trailing),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            SendConfirmation::decode_list(&bytes[..23]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    type Outgoing = (u128, u64, Vec<u8>, Vec<u8>);

    fn any_outgoing() -> impl Strategy<Value = Vec<Outgoing>> {
        let message = (
            any::<u128>(),
            0..=TIMESTAMP_DELTA_MAX_US,
            proptest::collection::vec(any::<u8>(), 0..60),
            proptest::collection::vec(any::<u8>(), 0..20),
        );
        proptest::collection::vec(message, 1..6)
    }

    /// A batch as the server holds it after a 0.9 send: the stored layout, stamped, the
    /// sizes of its messages there, and its kept frames (when asked for and ids allow).
    struct SentBatch {
        first_offset: u64,
        timestamp: u64,
        stored: Vec<u8>,
        sizes: Vec<usize>,
        frames: Option<SentFrames>,
    }

    fn sent_batch(
        messages: &[Outgoing],
        first_offset: u64,
        timestamp: u64,
        keep: bool,
    ) -> SentBatch {
        let outgoing: Vec<_> = messages
            .iter()
            .map(
                |(id, origin_timestamp, payload, user_headers)| OutgoingMessage {
                    id: *id,
                    origin_timestamp: *origin_timestamp,
                    payload,
                    user_headers,
                },
            )
            .collect();
        let zero = Identifier::Numeric(0);
        let mut body = BytesMut::new();
        let partitioning = Partitioning::PartitionId(0);
        encode_send(&zero, &zero, &partitioning, &outgoing, &mut body).unwrap();
        let send = decode_send(body).unwrap();
        assert_eq!(
            send.frames.is_some(),
            messages.iter().all(|(id, ..)| *id != 0),
            "frames are kept exactly when every id is set"
        );
        let (mut stored, mut sizes) = (Vec::new(), Vec::new());
        for (k, message) in MessageIter::new(&send.messages).enumerate() {
            let mut bytes = message.unwrap().as_bytes().to_vec();
            stamp(&mut bytes, first_offset + k as u64, timestamp, || 7);
            sizes.push(bytes.len());
            stored.extend_from_slice(&bytes);
        }
        SentBatch {
            first_offset,
            timestamp,
            stored,
            sizes,
            frames: send.frames.filter(|_| keep),
        }
    }

    /// A poll reply of messages `[from, to)` (counted across the batches) as storage hands it
    /// out: the head, then one chunk per batch touched, with a kept record where the batch
    /// kept its frames. Also the whole 0.8 reply.
    fn slice_poll(
        batches: &[SentBatch],
        partition_id: u32,
        from: usize,
        to: usize,
    ) -> (Vec<Bytes>, Vec<KeptRecord>, Vec<u8>) {
        let mut head = BytesMut::new();
        PolledMessagesHeader {
            partition_id,
            current_offset: 99,
            messages_count: (to - from) as u32,
        }
        .encode(&mut head);
        let mut stored = head.to_vec();
        let (mut chunks, mut kept) = (vec![head.freeze()], Vec::new());
        let mut first = 0;
        for batch in batches {
            let count = batch.sizes.len();
            let range = from.max(first)..to.min(first + count);
            let (lo, hi) = (
                range.start.wrapping_sub(first),
                range.end.wrapping_sub(first),
            );
            first += count;
            if range.is_empty() {
                continue;
            }
            let start: usize = batch.sizes[..lo].iter().sum();
            let end: usize = batch.sizes[..hi].iter().sum();
            stored.extend_from_slice(&batch.stored[start..end]);
            chunks.push(Bytes::copy_from_slice(&batch.stored[start..end]));
            if let Some(frames) = &batch.frames {
                let range = (lo as u32, hi as u32);
                let chunk = chunks.len() - 1;
                let record = frames.record(
                    range,
                    (start, end),
                    chunk,
                    batch.first_offset,
                    batch.timestamp,
                );
                kept.push(record.unwrap());
            }
        }
        (chunks, kept, stored)
    }

    #[test]
    fn a_kept_record_without_whole_checksums_is_converted() {
        let messages: Vec<Outgoing> = (1..=3u128)
            .map(|id| (id, 1_000 + id as u64, vec![id as u8; 40], Vec::new()))
            .collect();
        let batch = sent_batch(&messages, 10, 700, true);
        let frames = batch.frames.as_ref().unwrap();
        // An empty range, and one past the batch's three messages, make no record.
        assert!(frames.record((2, 2), (0, 0), 1, 0, 0).is_none());
        assert!(frames.record((0, 4), (0, 200), 1, 0, 0).is_none());
        let (chunks, mut kept, stored) = slice_poll(&[batch], 4, 0, 3);
        let whole = kept[0].checksums.clone();
        kept[0].checksums = whole.slice(..23);
        let body = encode_polled_keeping(&chunks, &kept).expect("converted instead");
        assert_eq!(decode_polled(&body).expect("valid").to_vec(), stored);
        assert!(checksums_hold(&records(&body)));
        // Named chunks that are not whole messages after the head are not used either.
        kept[0].checksums = whole;
        kept[0].chunk = 0;
        let body = encode_polled_keeping(&chunks, &kept).expect("converted instead");
        assert_eq!(decode_polled(&body).expect("valid").to_vec(), stored);
    }

    /// Stored messages: offsets rising with gaps, a few shared timestamps, spread origins.
    fn any_stored() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let message = (
            0u64..3,
            1u64..=2,
            0u64..4,
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..30),
                // Long enough to leave as a slice of the stored bytes.
                proptest::collection::vec(any::<u8>(), 500..700),
            ],
        );
        proptest::collection::vec(message, 0..8).prop_map(|messages| {
            let mut offset = 0u64;
            messages
                .into_iter()
                .enumerate()
                .map(|(i, (gap, timestamp, origin, payload))| {
                    offset += if gap == 2 { 1 << 32 } else { gap };
                    let origin = origin * (1 << 31);
                    stored(i as u128 + 1, offset, timestamp, origin, &payload)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn sends_round_trip(
            stream in any_identifier(),
            topic in any_identifier(),
            partitioning in any_partitioning(),
            messages in any_outgoing(),
        ) {
            let outgoing: Vec<_> = messages
                .iter()
                .map(|(id, origin_timestamp, payload, user_headers)| OutgoingMessage {
                    id: *id, origin_timestamp: *origin_timestamp, payload, user_headers,
                })
                .collect();
            let mut body = BytesMut::new();
            encode_send(&stream, &topic, &partitioning, &outgoing, &mut body).unwrap();
            let request = decode_send(body.clone()).unwrap();
            prop_assert_eq!(&request.stream, &stream);
            prop_assert_eq!(&request.topic, &topic);
            prop_assert_eq!(&request.partitioning, &partitioning);
            prop_assert_eq!(request.messages_count as usize, messages.len());
            let mut block = Vec::new();
            for (id, origin, payload, headers) in &messages {
                encode_message(*id, *origin, payload, headers, &mut block);
            }
            prop_assert_eq!(&request.messages[..], &block[..]);
            let mut again = BytesMut::new();
            encode_send_block(&stream, &topic, &partitioning, &request.messages, &mut again)
                .unwrap();
            prop_assert_eq!(again, body);
        }

        #[test]
        fn polls_round_trip(
            partition_id in any::<u32>(),
            messages in any_stored(),
            step in prop_oneof![1usize..100, 100usize..5000],
        ) {
            let reply = poll_reply(partition_id, &messages);
            let body = encode_polled(&chunked(&reply, step)).unwrap();
            let expected_len = reply.len() - 16 * messages.len() + 256 * records(&body).len();
            prop_assert_eq!(body.len(), expected_len);
            prop_assert!(checksums_hold(&records(&body)));
            prop_assert_eq!(decode_polled(&body).unwrap().to_vec(), reply);
            for view in MessageIter::new(&decode_polled(&body).unwrap()[16..]) {
                prop_assert!(view.map(|m: MessageView<'_>| m.checksum_is_valid()).unwrap_or(false));
            }
        }

        /// Batches kept as a 0.9 producer sent them serve, for any slice of them, exactly
        /// what converting their stored layout serves, with checksums that hold.
        #[test]
        fn kept_records_serve_what_conversion_serves(
            batches in proptest::collection::vec((any_outgoing(), 0u64..3, any::<bool>()), 1..5),
            cut in (any::<prop::sample::Index>(), any::<prop::sample::Index>()),
            partition_id in any::<u32>(),
        ) {
            let sent: Vec<SentBatch> = batches
                .iter()
                .scan(0u64, |offset, (messages, timestamp, keep)| {
                    let batch = sent_batch(messages, *offset, 500 + timestamp, *keep);
                    *offset += messages.len() as u64;
                    Some(batch)
                })
                .collect();
            let total: usize = sent.iter().map(|batch| batch.sizes.len()).sum();
            let (a, b) = (cut.0.index(total), cut.1.index(total));
            let (from, to) = (a.min(b), a.max(b) + 1);
            let (chunks, kept, stored) = slice_poll(&sent, partition_id, from, to);
            let body = encode_polled_keeping(&chunks, &kept).unwrap();
            let records = records(&body);
            prop_assert!(checksums_hold(&records));
            prop_assert_eq!(decode_polled(&body).unwrap().to_vec(), stored);
            for record in &kept {
                prop_assert!(records.iter().any(|(_, frames)| frames[..] == record.frames[..]));
            }
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..700),
            step in 1usize..64,
        ) {
            let _ = decode_send(BytesMut::from(&bytes[..]));
            let _ = decode_polled(&bytes);
            let _ = encode_polled(&chunked(&bytes, step));
            let _ = SendConfirmation::decode_list(&bytes);
        }

        #[test]
        fn decoding_mutated_batches_never_panics(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let messages = [stored(1, 5, 9, 9, b"payload"), stored(2, 6, 9, 8, b"more")];
            let mut sent = hi().to_vec();
            let reply = Bytes::from(poll_reply(1, &messages));
            let mut polled = encode_polled(&[reply]).unwrap().to_vec();
            for bytes in [&mut sent, &mut polled] {
                for (at, value) in &flips {
                    let at = at.index(bytes.len());
                    bytes[at] = *value;
                }
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let _ = decode_send(BytesMut::from(&sent[..]));
            let _ = decode_polled(&polled);
        }
    }
}
