//! Message calls: SendMessages (typed and prepared), PollMessages, FlushUnsavedBuffer.
//!
//! A [`PreparedBatch`] is a whole SendMessages frame built once by galgo-protocol's encoder and
//! sent many times: only the origin timestamps are rewritten in place between sends, so a
//! producer's hot path neither allocates nor re-encodes.

use bytes::{BufMut, BytesMut};
use galgo_protocol::Command;
use galgo_protocol::command::messages::{
    FlushUnsavedBuffer, POLLED_MESSAGES_HEADER_BYTES, PolledMessagesHeader,
};
use galgo_protocol::message::{
    MESSAGE_HEADER_BYTES, MessageIter, MessageView, ORIGIN_TIMESTAMP_AT,
};
use galgo_protocol::vsr::batch::{PolledFrame, PolledFrames};
use galgo_protocol::vsr::batch::{encode_send_block, set_batch_origin_timestamp};
use galgo_protocol::vsr::header::HEADER_BYTES;
use galgo_protocol::{
    CommandCode, ErrorCode, Identifier, Partitioning, PollMessages, SendMessages,
};

use crate::client::{Client, LongPolls, decoded, patch_header};
use crate::connection_string::Protocol;
use crate::error::ClientError;

/// A SendMessages request frame, ready to send again and again.
#[derive(Clone, Debug)]
pub struct PreparedBatch {
    frame: BytesMut,
    /// Byte position of each message in `frame`.
    message_starts: Vec<usize>,
    /// Bytes of the messages themselves (headers, payloads, user headers).
    messages_bytes: u64,
    /// The same batch in the 0.9 envelope, built at its first 0.9 send (crate::vsr).
    vsr: Option<VsrFrame>,
    /// The origin timestamp set last, which the 0.9 frame takes at its next send.
    origin_us: Option<u64>,
}

/// A prepared batch's 0.9 frame: the 256-byte request header (written at each send), then
/// the body, whose batch header starts at `batch_at`.
#[derive(Clone, Debug)]
pub(crate) struct VsrFrame {
    pub(crate) frame: BytesMut,
    batch_at: usize,
}

impl PreparedBatch {
    /// Builds the frame; each of `messages` is one whole message as
    /// [`galgo_protocol::message::encode_message`] writes it. Panics on an empty batch.
    pub fn new(
        stream: &Identifier,
        topic: &Identifier,
        partitioning: &Partitioning,
        messages: &[&[u8]],
    ) -> Self {
        assert!(!messages.is_empty(), "a batch holds at least one message");
        let mut frame = BytesMut::new();
        frame.put_u64_le(0);
        SendMessages::encode_frame_payload(stream, topic, partitioning, messages, &mut frame);
        patch_header(&mut frame, CommandCode::SendMessages);
        let messages_bytes: usize = messages.iter().map(|message| message.len()).sum();
        let block_start = frame.len() - messages_bytes;
        let mut message_starts = Vec::with_capacity(messages.len());
        let mut iter = MessageIter::new(&frame[block_start..]);
        loop {
            let start = block_start + iter.position();
            match iter.next() {
                Some(Ok(_)) => message_starts.push(start),
                Some(Err(at)) => panic!("message at byte {at} of the batch is incomplete"),
                None => break,
            }
        }
        assert_eq!(message_starts.len(), messages.len(), "one view per message");
        Self {
            frame,
            message_starts,
            messages_bytes: messages_bytes as u64,
            vsr: None,
            origin_us: None,
        }
    }

    /// The 0.9 frame, built from the 0.8 one the first time and given the origin timestamp
    /// set since (its batch checksum resealed; nothing else is re-encoded). Hand it back with
    /// [`PreparedBatch::put_vsr_frame`].
    pub(crate) fn take_vsr_frame(&mut self) -> Result<VsrFrame, ErrorCode> {
        let mut vsr = match self.vsr.take() {
            Some(vsr) => vsr,
            None => {
                let mut send = SendMessages::decode(BytesMut::from(&self.frame[8..]))?;
                // Minted once: every send of the batch carries the same ids, as the SDK's
                // messages keep the ids it minted into them.
                crate::vsr::mint_ids(&mut send.messages);
                let mut frame = BytesMut::zeroed(HEADER_BYTES);
                let (stream, topic) = (&send.stream, &send.topic);
                encode_send_block(
                    stream,
                    topic,
                    &send.partitioning,
                    &send.messages,
                    &mut frame,
                )?;
                let metadata_len = u32::from_le_bytes(
                    frame[HEADER_BYTES..HEADER_BYTES + 4]
                        .try_into()
                        .expect("4 bytes"),
                );
                let batch_at = HEADER_BYTES + 4 + metadata_len as usize;
                VsrFrame { frame, batch_at }
            }
        };
        if let Some(origin_us) = self.origin_us.take() {
            set_batch_origin_timestamp(&mut vsr.frame[vsr.batch_at..], origin_us)?;
        }
        Ok(vsr)
    }

    /// Keeps the 0.9 frame for the next send.
    pub(crate) fn put_vsr_frame(&mut self, vsr: VsrFrame) {
        self.vsr = Some(vsr);
    }

    /// Messages in the batch.
    pub fn messages_count(&self) -> u32 {
        self.message_starts.len() as u32
    }

    /// Bytes of the messages (what a throughput figure counts), without the frame's metadata
    /// and index.
    pub fn messages_bytes(&self) -> u64 {
        self.messages_bytes
    }

    /// Bytes of the whole request frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame.len()
    }

    /// Sets every message's origin timestamp (µs since the epoch).
    pub fn set_origin_timestamps(&mut self, timestamp_us: u64) {
        self.origin_us = Some(timestamp_us);
        let bytes = timestamp_us.to_le_bytes();
        for &start in &self.message_starts {
            let at = start + ORIGIN_TIMESTAMP_AT;
            self.frame[at..at + 8].copy_from_slice(&bytes);
        }
    }

    /// The whole frame.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }
}

/// The answer to a poll: its header and the messages, as the server sent them (0.8 messages
/// back to back, or 0.9 batch records), read in place by [`PolledMessages::iter`].
#[derive(Debug)]
pub struct PolledMessages {
    /// Partition, current offset and count.
    pub header: PolledMessagesHeader,
    /// `header.messages_count` messages, in the layout of `protocol`.
    pub messages: BytesMut,
    /// The generation whose layout `messages` has.
    pub protocol: Protocol,
}

/// One polled message, read where it lies in either generation's layout.
#[derive(Clone, Copy, Debug)]
pub enum PolledMessage<'a> {
    /// A stored 0.8 message.
    Classic(MessageView<'a>),
    /// A 0.9 frame with its record's base fields.
    Vsr(PolledFrame<'a>),
}

impl<'a> PolledMessage<'a> {
    /// The checksum the server sent: over the 0.8 message, or over the 0.9 frame.
    pub fn checksum(&self) -> u64 {
        match self {
            PolledMessage::Classic(m) => m.checksum(),
            PolledMessage::Vsr(f) => f.checksum(),
        }
    }
    /// The message id.
    pub fn id(&self) -> u128 {
        match self {
            PolledMessage::Classic(m) => m.id(),
            PolledMessage::Vsr(f) => f.id(),
        }
    }
    /// The offset.
    pub fn offset(&self) -> u64 {
        match self {
            PolledMessage::Classic(m) => m.offset(),
            PolledMessage::Vsr(f) => f.offset(),
        }
    }
    /// The server timestamp (µs since the epoch).
    pub fn timestamp(&self) -> u64 {
        match self {
            PolledMessage::Classic(m) => m.timestamp(),
            PolledMessage::Vsr(f) => f.timestamp(),
        }
    }
    /// The client's origin timestamp (µs since the epoch).
    pub fn origin_timestamp(&self) -> u64 {
        match self {
            PolledMessage::Classic(m) => m.origin_timestamp(),
            PolledMessage::Vsr(f) => f.origin_timestamp(),
        }
    }
    /// The payload.
    pub fn payload(&self) -> &'a [u8] {
        match self {
            PolledMessage::Classic(m) => m.payload(),
            PolledMessage::Vsr(f) => f.payload(),
        }
    }
    /// The user headers (TLV).
    pub fn user_headers(&self) -> &'a [u8] {
        match self {
            PolledMessage::Classic(m) => m.user_headers(),
            PolledMessage::Vsr(f) => f.user_headers(),
        }
    }
    /// The message's stored size, the same in both generations: the 64-byte header of
    /// PROTOCOL.md §6.1, the payload and the user headers.
    pub fn size(&self) -> usize {
        MESSAGE_HEADER_BYTES + self.payload().len() + self.user_headers().len()
    }
}

/// The walk over either layout.
enum Walk<'a> {
    Classic(MessageIter<'a>),
    Vsr(PolledFrames<'a>),
}

impl<'a> Iterator for Walk<'a> {
    type Item = Result<PolledMessage<'a>, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        let malformed = || ClientError::MalformedResponse {
            command: CommandCode::PollMessages.name(),
            code: ErrorCode::InvalidCommand,
        };
        match self {
            Walk::Classic(walk) => walk
                .next()
                .map(|message| message.map(PolledMessage::Classic).map_err(|_| malformed())),
            Walk::Vsr(walk) => walk
                .next()
                .map(|frame| frame.map(PolledMessage::Vsr).map_err(|_| malformed())),
        }
    }
}

impl PolledMessages {
    /// Walks the messages; a message the server cut short is an error.
    pub fn iter(&self) -> impl Iterator<Item = Result<PolledMessage<'_>, ClientError>> {
        match self.protocol {
            Protocol::V08 => Walk::Classic(MessageIter::new(&self.messages)),
            Protocol::V09 => Walk::Vsr(PolledFrames::new(&self.messages)),
        }
    }
}

impl Client {
    /// SendMessages of `messages` (each one whole encoded message).
    pub async fn send_messages(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        partitioning: &Partitioning,
        messages: &[&[u8]],
    ) -> Result<(), ClientError> {
        self.request(CommandCode::SendMessages, |out| {
            SendMessages::encode_frame_payload(stream, topic, partitioning, messages, out)
        })
        .await
        .map(drop)
    }

    /// Sends a prepared batch and hands it back for the next send.
    pub async fn send_prepared(
        &mut self,
        mut batch: PreparedBatch,
    ) -> (Result<(), ClientError>, PreparedBatch) {
        if self.protocol() == Protocol::V09 {
            let sent = self.send_prepared_vsr(&mut batch).await;
            return (sent, batch);
        }
        let (result, frame) = self.request_frame(std::mem::take(&mut batch.frame)).await;
        batch.frame = frame;
        (result.map(drop), batch)
    }

    /// PollMessages. A request with `wait_ms` (galgo's long-poll extension) waits on a galgo
    /// server until messages arrive or the time is up. A server that answers a waiting poll
    /// empty in less than half its wait does not wait (Iggy's accept the extra bytes and
    /// ignore them): later polls of this connection go without `wait_ms`, and
    /// [`Client::long_polls`] says so, for callers to pace their polls themselves.
    pub async fn poll_messages(
        &mut self,
        request: &PollMessages,
    ) -> Result<PolledMessages, ClientError> {
        let wait_ms = match self.long_polls {
            LongPolls::Ignored => 0,
            _ => request.wait_ms,
        };
        let started = std::time::Instant::now();
        let mut bytes = self
            .request(PollMessages::CODE, |out| {
                PollMessages {
                    wait_ms,
                    ..request.clone()
                }
                .encode(out)
            })
            .await?;
        let header = decoded(PollMessages::CODE, &bytes, PolledMessagesHeader::decode)?;
        if wait_ms > 0 && header.messages_count == 0 && self.long_polls == LongPolls::Unknown {
            let waited = started.elapsed().as_millis() >= u128::from(wait_ms / 2);
            self.long_polls = if waited {
                LongPolls::Honoured
            } else {
                LongPolls::Ignored
            };
        }
        let messages = bytes.split_off(POLLED_MESSAGES_HEADER_BYTES.min(bytes.len()));
        Ok(PolledMessages {
            header,
            messages,
            protocol: self.protocol(),
        })
    }

    /// FlushUnsavedBuffer: writes a partition's unsaved messages, and fsyncs them if asked.
    pub async fn flush_unsaved_buffer(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        partition_id: u32,
        fsync: bool,
    ) -> Result<(), ClientError> {
        let request = FlushUnsavedBuffer {
            stream: stream.clone(),
            topic: topic.clone(),
            partition_id,
            fsync,
        };
        self.request(FlushUnsavedBuffer::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use galgo_protocol::message::encode_message;

    use super::*;

    #[test]
    fn prepared_batch_is_a_valid_send_frame_with_patched_timestamps() {
        let mut one = Vec::new();
        encode_message(0, 1, b"hello", b"", &mut one);
        let mut two = Vec::new();
        encode_message(7, 1, b"world!", b"", &mut two);
        let mut batch = PreparedBatch::new(
            &Identifier::Numeric(0),
            &Identifier::Name("t".into()),
            &Partitioning::PartitionId(2),
            &[&one, &two],
        );
        batch.set_origin_timestamps(42);
        assert_eq!(batch.messages_count(), 2);
        assert_eq!(batch.messages_bytes(), (one.len() + two.len()) as u64);
        let frame = batch.frame();
        assert_eq!(frame.len(), batch.frame_bytes());
        let length = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(length, frame.len() - 4);
        let code = u32::from_le_bytes(frame[4..8].try_into().unwrap());
        let request = SendMessages::decode(BytesMut::from(&frame[8..])).unwrap();
        assert_eq!(code, CommandCode::SendMessages.as_u32());
        assert_eq!(request.partitioning, Partitioning::PartitionId(2));
        let origins: Vec<u64> = request
            .iter_messages()
            .map(|message| message.unwrap().origin_timestamp())
            .collect();
        assert_eq!(origins, [42, 42]);
    }
}
