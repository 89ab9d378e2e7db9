//! Message commands (PROTOCOL.md §5.6, §6): SendMessages, PollMessages, FlushUnsavedBuffer.
//!
//! SendMessages is the hot path. Its payload is
//!
//! ```text
//! [metadata_length u32][stream Id][topic Id][Partitioning][messages_count u32]
//! [index: messages_count × (offset u32 = 0 | position u32 | timestamp u64 = 0)]
//! [messages block: messages_count messages of §6.1, back to back]
//! ```
//! and [`SendMessages::decode`] validates it without copying: the messages block is split off
//! the frame's own buffer.

use bytes::{BufMut, BytesMut};

use super::decode_with;
use crate::consumer::Consumer;
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::message::{
    MESSAGE_HEADER_BYTES, MESSAGE_PAYLOAD_BYTES_MAX, MessageIter, PAYLOAD_LENGTH_AT, RESERVED_AT,
    USER_HEADERS_BYTES_MAX, USER_HEADERS_LENGTH_AT,
};
use crate::partition_flag::{decode_optional_partition, encode_optional_partition};
use crate::partitioning::Partitioning;
use crate::polling::PollingStrategy;
use crate::reader::Reader;
use crate::vsr::batch::SentFrames;

/// Bytes of one SendMessages index entry.
pub const SEND_INDEX_ENTRY_BYTES: usize = 16;

/// Appends a batch of messages (code 101). Response: empty.
///
/// `messages` is the validated messages block, split off the request buffer without a copy:
/// exactly `messages_count` whole messages, each with `reserved` 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendMessages {
    /// The stream.
    pub stream: Identifier,
    /// The topic.
    pub topic: Identifier,
    /// How to pick the partition.
    pub partitioning: Partitioning,
    /// Messages in the block, at least 1.
    pub messages_count: u32,
    /// The messages block.
    pub messages: BytesMut,
    /// A 0.9 request's frames as sent, when they can be served to 0.9 polls as they are
    /// (vsr/batch.rs); `None` from a 0.8 request.
    pub frames: Option<SentFrames>,
}

/// Where the parts of a SendMessages payload lie, found before anything is split.
struct SendLayout {
    stream: Identifier,
    topic: Identifier,
    partitioning: Partitioning,
    messages_count: u32,
    index_start: usize,
    messages_start: usize,
}

impl SendMessages {
    /// Reads and validates a SendMessages payload (§6.2), then splits the messages block off
    /// `payload` without copying.
    ///
    /// Errors: a truncated payload or malformed partitioning is 3; a malformed identifier is 6;
    /// no messages is 4009; a non-zero index offset or timestamp is 4031 or 4032; a slice that
    /// does not hold a whole message (or a decreasing position) is 4033; a payload over
    /// 64,000,000 bytes is 4022; user headers over 100,000 bytes are 4017; a slice longer than
    /// its message is 4036; a non-zero reserved field is 4101.
    pub fn decode(mut payload: BytesMut) -> Result<Self, ErrorCode> {
        let layout = Self::decode_layout(&payload)?;
        let index = &payload[layout.index_start..layout.messages_start];
        validate_batch(index, &payload[layout.messages_start..])?;
        let messages = payload.split_off(layout.messages_start);
        Ok(Self {
            stream: layout.stream,
            topic: layout.topic,
            partitioning: layout.partitioning,
            messages_count: layout.messages_count,
            messages,
            frames: None,
        })
    }

    fn decode_layout(payload: &[u8]) -> Result<SendLayout, ErrorCode> {
        let mut reader = Reader::new(payload);
        let metadata_length = reader.u32()?;
        let metadata_length =
            usize::try_from(metadata_length).map_err(|_| ErrorCode::InvalidCommand)?;
        let mut metadata = Reader::new(reader.bytes(metadata_length)?);
        // Like the server, only the declared metadata is parsed and the index starts right
        // after it, whatever the fields consumed.
        let stream = Identifier::decode_for_send(&mut metadata)?;
        let topic = Identifier::decode_for_send(&mut metadata)?;
        let partitioning = Partitioning::decode(&mut metadata)?;
        let messages_count = metadata.u32()?;
        if messages_count == 0 {
            return Err(ErrorCode::InvalidMessagesCount);
        }
        let index_start = reader.position();
        let index_len = (messages_count as usize)
            .checked_mul(SEND_INDEX_ENTRY_BYTES)
            .ok_or(ErrorCode::InvalidCommand)?;
        reader.bytes(index_len)?;
        Ok(SendLayout {
            stream,
            topic,
            partitioning,
            messages_count,
            index_start,
            messages_start: reader.position(),
        })
    }

    /// Bytes a 0.8 request puts before its messages block (the metadata and the index, as
    /// [`Self::encode`] writes them). [`Self::decode`] splits the block off without a copy,
    /// so they stay allocated for as long as the block does.
    pub fn bytes_before_block(&self) -> usize {
        4 + self.stream.encoded_len()
            + self.topic.encoded_len()
            + self.partitioning.encoded_len()
            + 4
            + self.messages_count as usize * SEND_INDEX_ENTRY_BYTES
    }

    /// Walks the messages of the block.
    pub fn iter_messages(&self) -> MessageIter<'_> {
        MessageIter::new(&self.messages)
    }

    /// Appends the request payload: metadata, an index computed from the block, and the block.
    /// Panics when the block does not hold exactly `messages_count` whole messages.
    pub fn encode(&self, out: &mut BytesMut) {
        let sizes = MessageIter::new(&self.messages)
            .map(|message| message.expect("a whole message").size());
        assert_eq!(
            sizes.clone().count(),
            self.messages_count as usize,
            "messages_count"
        );
        encode_metadata(
            &self.stream,
            &self.topic,
            &self.partitioning,
            self.messages_count,
            out,
        );
        encode_index(sizes, out);
        out.put_slice(&self.messages);
    }

    /// Appends a whole SendMessages payload for a client: metadata, index and the messages,
    /// each of which is one complete message as [`crate::message::encode_message`] builds it.
    pub fn encode_frame_payload(
        stream: &Identifier,
        topic: &Identifier,
        partitioning: &Partitioning,
        messages: &[&[u8]],
        out: &mut BytesMut,
    ) {
        let count = u32::try_from(messages.len()).expect("at most u32::MAX messages");
        encode_metadata(stream, topic, partitioning, count, out);
        encode_index(messages.iter().map(|message| message.len()), out);
        for message in messages {
            out.put_slice(message);
        }
    }
}

fn encode_metadata(
    stream: &Identifier,
    topic: &Identifier,
    partitioning: &Partitioning,
    messages_count: u32,
    out: &mut BytesMut,
) {
    let metadata_length =
        stream.encoded_len() + topic.encoded_len() + partitioning.encoded_len() + 4;
    out.put_u32_le(metadata_length as u32);
    let start = out.len();
    stream.encode(out);
    topic.encode(out);
    partitioning.encode(out);
    out.put_u32_le(messages_count);
    debug_assert_eq!(out.len() - start, metadata_length);
}

/// Writes one index entry per message: offset 0, cumulative end position, timestamp 0.
fn encode_index(sizes: impl Iterator<Item = usize>, out: &mut BytesMut) {
    let mut position: u32 = 0;
    for size in sizes {
        let size = u32::try_from(size).expect("message size fits u32");
        position = position
            .checked_add(size)
            .expect("messages block fits u32 positions");
        out.put_u32_le(0);
        out.put_u32_le(position);
        out.put_u64_le(0);
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks every index entry and the message slice it bounds, in order, as the server does.
/// Message i spans `[position[i-1], position[i])`; the last one runs to the end of the block,
/// whatever its position says, as in Iggy.
fn validate_batch(index: &[u8], block: &[u8]) -> Result<(), ErrorCode> {
    debug_assert!(index.len().is_multiple_of(SEND_INDEX_ENTRY_BYTES));
    let count = index.len() / SEND_INDEX_ENTRY_BYTES;
    let mut start = 0usize;
    for (i, entry) in index.chunks_exact(SEND_INDEX_ENTRY_BYTES).enumerate() {
        if u32_at(entry, 0) != 0 {
            return Err(ErrorCode::NonZeroOffset);
        }
        if u64_at(entry, 8) != 0 {
            return Err(ErrorCode::NonZeroTimestamp);
        }
        let position = u32_at(entry, 4) as usize;
        let end = if i + 1 == count {
            block.len()
        } else {
            position
        };
        if position < start || end < start || end > block.len() {
            return Err(ErrorCode::MissingIndex);
        }
        validate_message(&block[start..end])?;
        start = end;
    }
    Ok(())
}

/// Checks one message slice.
fn validate_message(slice: &[u8]) -> Result<(), ErrorCode> {
    // A slice too short for a header is reported as a missing index, as Iggy's batch
    // validation does, before the header can be read at all.
    if slice.len() < MESSAGE_HEADER_BYTES {
        return Err(ErrorCode::MissingIndex);
    }
    let payload_len = u32_at(slice, PAYLOAD_LENGTH_AT);
    let headers_len = u32_at(slice, USER_HEADERS_LENGTH_AT);
    let size = MESSAGE_HEADER_BYTES as u64 + u64::from(payload_len) + u64::from(headers_len);
    if size > slice.len() as u64 {
        return Err(ErrorCode::MissingIndex);
    }
    if payload_len > MESSAGE_PAYLOAD_BYTES_MAX {
        return Err(ErrorCode::TooBigMessagePayload);
    }
    if headers_len > USER_HEADERS_BYTES_MAX {
        return Err(ErrorCode::TooBigUserHeaders);
    }
    if size != slice.len() as u64 {
        return Err(ErrorCode::InvalidMessagesSize);
    }
    // galgo refuses a non-zero reserved field on send, because the SDK refuses it on poll.
    if u64_at(slice, RESERVED_AT) != 0 {
        return Err(ErrorCode::InvalidReservedField);
    }
    Ok(())
}

/// Reads messages from a partition (code 100). Response: [`PolledMessagesHeader`] followed by
/// the messages.
///
/// ```text
/// Consumer | Id stream | Id topic | partition_flag u8 | partition_id u32 | PollingStrategy (9)
/// | count u32 | auto_commit u8 [| wait_ms u32]
/// ```
///
/// `wait_ms` is galgo's long-poll extension, sent only when non-zero: with it, a poll that
/// finds nothing waits up to that long for messages (Iggy's servers refuse the extra bytes,
/// so galgo's client falls back to plain polls there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollMessages {
    /// The consumer or group polling.
    pub consumer: Consumer,
    /// The stream.
    pub stream: Identifier,
    /// The topic.
    pub topic: Identifier,
    /// The partition; absent means 0 for a single consumer, the member's turn for a group.
    pub partition_id: Option<u32>,
    /// Where to start.
    pub strategy: PollingStrategy,
    /// At most this many messages.
    pub count: u32,
    /// Store the last returned offset before responding.
    pub auto_commit: bool,
    /// galgo's extension: when nothing is there to return, wait up to this many ms for
    /// messages to arrive (0: answer at once, as Iggy does).
    pub wait_ms: u32,
}

impl PollMessages {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                consumer: Consumer::decode(reader)?,
                stream: Identifier::decode(reader)?,
                topic: Identifier::decode(reader)?,
                partition_id: decode_optional_partition(reader)?,
                strategy: PollingStrategy::decode(reader)?,
                count: reader.u32()?,
                auto_commit: reader.bool()?,
                wait_ms: if reader.is_empty() { 0 } else { reader.u32()? },
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.consumer.encode(out);
        self.stream.encode(out);
        self.topic.encode(out);
        encode_optional_partition(self.partition_id, out);
        self.strategy.encode(out);
        out.put_u32_le(self.count);
        out.put_u8(u8::from(self.auto_commit));
        if self.wait_ms > 0 {
            out.put_u32_le(self.wait_ms);
        }
    }
}

/// Bytes of a [`PolledMessagesHeader`].
pub const POLLED_MESSAGES_HEADER_BYTES: usize = 16;

/// The head of every OK PollMessages response, even one without messages (the SDK reads
/// these 16 bytes unchecked): `partition_id u32 | current_offset u64 | messages_count u32`.
/// The messages follow back to back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolledMessagesHeader {
    /// The partition polled.
    pub partition_id: u32,
    /// The partition's last assigned offset (0 when empty), not the next one.
    pub current_offset: u64,
    /// Messages that follow.
    pub messages_count: u32,
}

impl PolledMessagesHeader {
    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.partition_id);
        out.put_u64_le(self.current_offset);
        out.put_u32_le(self.messages_count);
    }

    /// Reads the header at the start of a response; the messages are `bytes[16..]`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            Ok(Self {
                partition_id: reader.u32()?,
                current_offset: reader.u64()?,
                messages_count: reader.u32()?,
            })
        })
    }
}

/// Writes a partition's journal to disk (code 102): `Id stream | Id topic | partition_id u32 |
/// fsync u8`. Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct FlushUnsavedBuffer {
    pub stream: Identifier,
    pub topic: Identifier,
    pub partition_id: u32,
    /// Also fsync the segment and index files.
    pub fsync: bool,
}

impl FlushUnsavedBuffer {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                stream: Identifier::decode(reader)?,
                topic: Identifier::decode(reader)?,
                partition_id: reader.u32()?,
                fsync: reader.bool()?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.stream.encode(out);
        self.topic.encode(out);
        out.put_u32_le(self.partition_id);
        out.put_u8(u8::from(self.fsync));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::Command;
    use crate::command::test_support::encoded;
    use crate::frame::encode_request;
    use crate::message::{ID_AT, encode_message};

    fn message(payload: &[u8], headers: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_message(0, 0, payload, headers, &mut out);
        out
    }

    fn payload_of(messages: &[&[u8]]) -> BytesMut {
        encoded(|out| {
            SendMessages::encode_frame_payload(
                &Identifier::Numeric(0),
                &Identifier::Numeric(0),
                &Partitioning::Balanced,
                messages,
                out,
            )
        })
    }

    /// Byte position of message `i`'s index entry in a [`payload_of`] payload.
    fn entry_at(i: usize) -> usize {
        4 + 18 + i * SEND_INDEX_ENTRY_BYTES
    }

    #[test]
    fn hi_example_is_byte_exact() {
        let hi = message(b"hi", b"");
        let payload = payload_of(&[&hi]);
        let frame = encoded(|out| encode_request(SendMessages::CODE, &payload, out));
        #[rustfmt::skip]
        let head = [
            0x6C, 0, 0, 0, 0x65, 0, 0, 0,
            0x12, 0, 0, 0,
            1, 4, 0, 0, 0, 0,  1, 4, 0, 0, 0, 0,  1, 0,
            1, 0, 0, 0,
            0, 0, 0, 0, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(&frame[..head.len()], head);
        assert_eq!(
            &frame[head.len() + 48..head.len() + 56],
            [0, 0, 0, 0, 2, 0, 0, 0]
        );
        assert_eq!(&frame[frame.len() - 2..], b"hi");
        assert_eq!(frame.len(), 4 + 108);

        let request = SendMessages::decode(payload.clone()).expect("valid");
        assert_eq!(request.messages_count, 1);
        assert_eq!(&request.messages[..], &hi[..]);
        assert_eq!(encoded(|out| request.encode(out)), payload);
        assert_eq!(request.bytes_before_block(), payload.len() - hi.len());
    }

    #[test]
    fn messages_are_split_off_without_copying() {
        let (one, two) = (
            message(b"one", b""),
            message(b"two", b"\x02\x01\x00\x00\x00k"),
        );
        let payload = payload_of(&[&one, &two]);
        let block_at = payload.as_ptr() as usize + entry_at(2);
        let request = SendMessages::decode(payload).expect("valid");
        assert_eq!(request.messages.as_ptr() as usize, block_at);
        let sizes: Vec<_> = request
            .iter_messages()
            .map(|m| m.expect("whole").size())
            .collect();
        assert_eq!(sizes, [one.len(), two.len()]);
    }

    fn decode_err(payload: BytesMut) -> ErrorCode {
        SendMessages::decode(payload).expect_err("invalid")
    }

    #[test]
    fn metadata_errors() {
        let hi = message(b"hi", b"");
        let valid = payload_of(&[&hi]);
        assert_eq!(
            decode_err(BytesMut::from(&valid[..3])),
            ErrorCode::InvalidCommand
        );
        let mut long_metadata = valid.clone();
        long_metadata[0] = 0xff;
        long_metadata[1] = 0xff;
        assert_eq!(decode_err(long_metadata), ErrorCode::InvalidCommand);
        let mut bad_kind = valid.clone();
        bad_kind[4] = 9;
        assert_eq!(decode_err(bad_kind), ErrorCode::InvalidIdentifier);
        let mut bad_length = valid.clone();
        bad_length[11] = 3;
        assert_eq!(decode_err(bad_length), ErrorCode::InvalidIdentifier);
        let mut bad_partitioning = valid.clone();
        bad_partitioning[16] = 7;
        assert_eq!(decode_err(bad_partitioning), ErrorCode::InvalidCommand);
        let mut zero_count = valid.clone();
        zero_count[18] = 0;
        assert_eq!(decode_err(zero_count), ErrorCode::InvalidMessagesCount);
        let mut more_than_sent = valid.clone();
        more_than_sent[18] = 200;
        assert_eq!(decode_err(more_than_sent), ErrorCode::InvalidCommand);
    }

    #[test]
    fn index_errors() {
        let (a, b) = (message(b"a", b""), message(b"bb", b""));
        let valid = payload_of(&[&a, &b]);
        let mut offset = valid.clone();
        offset[entry_at(1)] = 1;
        assert_eq!(decode_err(offset), ErrorCode::NonZeroOffset);
        let mut timestamp = valid.clone();
        timestamp[entry_at(0) + 15] = 1;
        assert_eq!(decode_err(timestamp), ErrorCode::NonZeroTimestamp);
        let mut beyond = valid.clone();
        beyond[entry_at(0) + 5] = 0x10;
        assert_eq!(decode_err(beyond), ErrorCode::MissingIndex);
        let mut short = valid.clone();
        short[entry_at(0) + 4] = 10;
        assert_eq!(decode_err(short), ErrorCode::MissingIndex);
        let mut decreasing = valid.clone();
        decreasing[entry_at(1) + 4] = 1;
        assert_eq!(decode_err(decreasing), ErrorCode::MissingIndex);
        let mut torn = valid.clone();
        torn.truncate(torn.len() - 1);
        assert_eq!(decode_err(torn), ErrorCode::MissingIndex);
        let mut oversized_slice = valid.clone();
        oversized_slice.put_u8(0);
        assert_eq!(decode_err(oversized_slice), ErrorCode::InvalidMessagesSize);
    }

    #[test]
    fn message_errors() {
        let mut reserved = message(b"x", b"");
        reserved[RESERVED_AT] = 1;
        assert_eq!(
            decode_err(payload_of(&[&reserved])),
            ErrorCode::InvalidReservedField
        );

        let big = vec![0u8; MESSAGE_PAYLOAD_BYTES_MAX as usize + 1];
        assert_eq!(
            decode_err(payload_of(&[&message(&big, b"")])),
            ErrorCode::TooBigMessagePayload
        );
        let headers = vec![1u8; USER_HEADERS_BYTES_MAX as usize + 1];
        assert_eq!(
            decode_err(payload_of(&[&message(b"x", &headers)])),
            ErrorCode::TooBigUserHeaders
        );

        let mut huge_length = message(b"x", b"");
        huge_length[PAYLOAD_LENGTH_AT..PAYLOAD_LENGTH_AT + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_err(payload_of(&[&huge_length])),
            ErrorCode::MissingIndex
        );
        let client_id = message(b"x", b"");
        assert_eq!(client_id[ID_AT], 0);
    }

    #[test]
    fn poll_and_flush_round_trip() {
        let poll = PollMessages {
            consumer: Consumer::Group(Identifier::Name("readers".into())),
            stream: Identifier::Numeric(0),
            topic: Identifier::Numeric(1),
            partition_id: None,
            strategy: PollingStrategy::Next,
            count: 10,
            auto_commit: true,
            wait_ms: 0,
        };
        let bytes = encoded(|out| poll.encode(out));
        assert_eq!(bytes.len(), 1 + 9 + 6 + 6 + 5 + 9 + 4 + 1);
        assert_eq!(PollMessages::decode(&bytes), Ok(poll.clone()));
        assert_eq!(
            PollMessages::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
        // The long-poll extension: four more bytes, only when asked for.
        let waiting = PollMessages {
            wait_ms: 2500,
            ..poll
        };
        let extended = encoded(|out| waiting.encode(out));
        assert_eq!(&extended[..bytes.len()], &bytes[..]);
        assert_eq!(extended.len(), bytes.len() + 4);
        assert_eq!(PollMessages::decode(&extended), Ok(waiting));
        assert_eq!(
            PollMessages::decode(&extended[..extended.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );

        let flush = FlushUnsavedBuffer {
            stream: Identifier::Numeric(0),
            topic: Identifier::Name("t".into()),
            partition_id: 3,
            fsync: true,
        };
        assert_eq!(
            FlushUnsavedBuffer::decode(&encoded(|out| flush.encode(out))),
            Ok(flush)
        );
    }

    #[test]
    fn polled_header_is_16_bytes() {
        let header = PolledMessagesHeader {
            partition_id: 1,
            current_offset: 2,
            messages_count: 3,
        };
        let bytes = encoded(|out| header.encode(out));
        assert_eq!(&bytes[..], [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(PolledMessagesHeader::decode(&bytes), Ok(header));
        assert_eq!(
            PolledMessagesHeader::decode(&bytes[..15]),
            Err(ErrorCode::InvalidCommand)
        );
    }
}
