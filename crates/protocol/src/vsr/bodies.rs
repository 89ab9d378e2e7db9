//! Request and reply bodies of the 0.9 generation that differ from 0.8 (PROTOCOL-0.9.md §8),
//! converted to and from the shared [`Request`] and the 0.8 reply payloads, so one set of
//! handlers serves both generations.
//!
//! ```text
//! requests   CreateStream/UpdateStream/CreateUser/UpdateUser   0.8 payload | options (tail)
//!            CreateTopic   Id stream | partitions_count u32 | name name8 | options (tail)
//!            UpdateTopic   Id stream | Id topic | name name8 | options (tail)
//!            Store/DeleteConsumerOffset   0.8 payload | ack u8 (0 or 1)
//!            SendMessages  the batch format (batch.rs)
//! replies    StreamHeader  0.8 header | options_len u32 | options
//!            TopicHeader   0.8 header without replication_factor (byte 33)
//!                          | options_len u32 | options | derived_len u32 | derived_options
//!            UserHeader    0.8 header | options_len u32 | options
//!            GetTopics     topics_count u32 | TopicHeader*
//!            PollMessages  the batch format (batch.rs)
//! ```
//!
//! Every other body is byte-identical to 0.8 and passes through untouched. The 0.8 decoders
//! ignore trailing bytes, so a changed request is never handed to one whole: its 0.8 part is
//! cut off first and the 0.9 tail is checked on its own.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

use super::batch;
use super::options::{Options, TopicOptions, TopicUpdateOptions, derived_topic_options};
use crate::code::CommandCode;
use crate::command::offsets::{DeleteConsumerOffset, StoreConsumerOffset};
use crate::command::streams::{CreateStream, StreamDetails, StreamHeader, UpdateStream};
use crate::command::topics::{
    CompressionAlgorithm, CreateTopic, EXPIRY_SERVER_DEFAULT, PARTITION_INFO_BYTES, PartitionInfo,
    TOPIC_SIZE_SERVER_DEFAULT, TopicDetails, TopicHeader, UpdateTopic,
};
use crate::command::users::{CreateUser, UpdateUser, UserDetails, UserHeader, UserStatus};
use crate::consumer::Consumer;
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::partition_flag::decode_optional_partition;
use crate::permissions::{
    decode_request_permissions, decode_response_permissions, encode_response_permissions,
};
use crate::reader::Reader;
use crate::request::Request;
use crate::writer::put_name8;

/// `ack` of an offset write: apply without waiting for a quorum.
pub const ACK_NONE: u8 = 0;
/// `ack` of an offset write: apply once a quorum has it (what the SDK always sends).
pub const ACK_QUORUM: u8 = 1;
/// The replication factor a 0.9 topic reads as in 0.8 terms: the field is gone from the wire,
/// and a single node keeps one copy.
pub const REPLICATION_FACTOR_0_9: u8 = 1;

/// Decodes a 0.9 request body of any command into the shared [`Request`].
///
/// Changed bodies are read here; the rest go to [`Request::decode`]. Option blocks follow
/// options.rs (4043, 3, then 4041/4042); an `ack` other than 0 or 1, or a missing one, is 3.
pub fn decode_request(code: CommandCode, body: BytesMut) -> Result<Request, ErrorCode> {
    match code {
        CommandCode::SendMessages => batch::decode_send(body).map(Request::SendMessages),
        CommandCode::CreateStream => decode_create_stream(&body).map(Request::CreateStream),
        CommandCode::UpdateStream => decode_update_stream(&body).map(Request::UpdateStream),
        CommandCode::CreateTopic => decode_create_topic(&body).map(Request::CreateTopic),
        CommandCode::UpdateTopic => {
            TopicUpdate::decode(&body).map(|update| Request::UpdateTopic(update.into_update()))
        }
        CommandCode::CreateUser => decode_create_user(&body).map(Request::CreateUser),
        CommandCode::UpdateUser => decode_update_user(&body).map(Request::UpdateUser),
        CommandCode::StoreConsumerOffset => {
            decode_store_offset(&body).map(Request::StoreConsumerOffset)
        }
        CommandCode::DeleteConsumerOffset => {
            decode_delete_offset(&body).map(Request::DeleteConsumerOffset)
        }
        _ => Request::decode(code.as_u32(), body),
    }
}

/// Splits `body` where `skim` stops reading: the 0.8 payload, and the 0.9 tail after it.
fn split_0_8(
    body: &[u8],
    skim: impl FnOnce(&mut Reader<'_>) -> Result<(), ErrorCode>,
) -> Result<(&[u8], &[u8]), ErrorCode> {
    let mut reader = Reader::new(body);
    skim(&mut reader)?;
    Ok(body.split_at(reader.position()))
}

/// Checks an options tail of a command whose catalog is empty.
fn no_options(tail: &[u8]) -> Result<(), ErrorCode> {
    Options::decode_tail(tail)?.reject_any_key()
}

fn decode_create_stream(body: &[u8]) -> Result<CreateStream, ErrorCode> {
    let (payload, tail) = split_0_8(body, |reader| reader.name8().map(drop))?;
    let request = CreateStream::decode(payload)?;
    no_options(tail)?;
    Ok(request)
}

fn decode_update_stream(body: &[u8]) -> Result<UpdateStream, ErrorCode> {
    let (payload, tail) = split_0_8(body, |reader| {
        Identifier::decode(reader)?;
        reader.name8().map(drop)
    })?;
    let request = UpdateStream::decode(payload)?;
    no_options(tail)?;
    Ok(request)
}

/// CreateTopic: absent options take their 0.8 "server default" values (compression none,
/// expiry 0, size 0), and the replication factor is 0, 0.8's "not set". The runtime keys
/// (segment size, durability, flush thresholds, preallocation) are validated and dropped:
/// galgo has no per-topic setting for them.
fn decode_create_topic(body: &[u8]) -> Result<CreateTopic, ErrorCode> {
    let mut reader = Reader::new(body);
    let stream = Identifier::decode(&mut reader)?;
    let partitions_count = reader.u32()?;
    let name = reader.name8()?.to_owned();
    let options = TopicOptions::parse(&Options::decode_tail(reader.rest())?)?;
    Ok(CreateTopic {
        stream,
        partitions_count,
        compression: options.compression.unwrap_or_default(),
        message_expiry_us: options.message_expiry_us.unwrap_or(EXPIRY_SERVER_DEFAULT),
        max_topic_size_bytes: options
            .max_topic_size_bytes
            .unwrap_or(TOPIC_SIZE_SERVER_DEFAULT),
        replication_factor: 0,
        name,
    })
}

/// A 0.9 UpdateTopic: a patch of the topic's settings, where `None` keeps the current value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicUpdate {
    /// The stream.
    pub stream: Identifier,
    /// The topic.
    pub topic: Identifier,
    /// The new name (always sent).
    pub name: String,
    /// The settings to change.
    pub options: TopicUpdateOptions,
}

impl TopicUpdate {
    /// Reads an UpdateTopic body (`Id stream | Id topic | name name8 | options`).
    pub fn decode(body: &[u8]) -> Result<Self, ErrorCode> {
        let mut reader = Reader::new(body);
        let stream = Identifier::decode(&mut reader)?;
        let topic = Identifier::decode(&mut reader)?;
        let name = reader.name8()?.to_owned();
        let options = TopicUpdateOptions::parse(&Options::decode_tail(reader.rest())?)?;
        Ok(Self {
            stream,
            topic,
            name,
            options,
        })
    }

    /// The update: the settings it names, `None` for those the server keeps.
    pub fn into_update(self) -> UpdateTopic {
        UpdateTopic {
            stream: self.stream,
            topic: self.topic,
            compression: self.options.compression,
            message_expiry_us: self.options.message_expiry_us,
            max_topic_size_bytes: self.options.max_topic_size_bytes,
            replication_factor: 0,
            name: self.name,
        }
    }
}

fn decode_create_user(body: &[u8]) -> Result<CreateUser, ErrorCode> {
    let (payload, tail) = split_0_8(body, |reader| {
        reader.name8()?;
        reader.str8()?;
        reader.u8()?;
        decode_request_permissions(reader).map(drop)
    })?;
    let request = CreateUser::decode(payload)?;
    no_options(tail)?;
    Ok(request)
}

fn decode_update_user(body: &[u8]) -> Result<UpdateUser, ErrorCode> {
    let (payload, tail) = split_0_8(body, |reader| {
        Identifier::decode(reader)?;
        if reader.flag()? {
            reader.name8()?;
        }
        if reader.flag()? {
            reader.u8()?;
        }
        Ok(())
    })?;
    let request = UpdateUser::decode(payload)?;
    no_options(tail)?;
    Ok(request)
}

/// Skims the part every offset command shares: `Consumer | Id | Id | flag u8 | partition u32`.
fn skim_offset_target(reader: &mut Reader<'_>) -> Result<(), ErrorCode> {
    Consumer::decode(reader)?;
    Identifier::decode(reader)?;
    Identifier::decode(reader)?;
    decode_optional_partition(reader).map(drop)
}

/// Checks the `ack` byte that starts `tail`; bytes after it are ignored, as the SDK's decoder
/// does.
fn check_ack(tail: &[u8]) -> Result<(), ErrorCode> {
    match tail.first() {
        Some(&(ACK_NONE | ACK_QUORUM)) => Ok(()),
        _ => Err(ErrorCode::InvalidCommand),
    }
}

fn decode_store_offset(body: &[u8]) -> Result<StoreConsumerOffset, ErrorCode> {
    let (payload, tail) = split_0_8(body, |reader| {
        skim_offset_target(reader)?;
        reader.u64().map(drop)
    })?;
    let request = StoreConsumerOffset::decode(payload)?;
    check_ack(tail)?;
    Ok(request)
}

fn decode_delete_offset(body: &[u8]) -> Result<DeleteConsumerOffset, ErrorCode> {
    let (payload, tail) = split_0_8(body, skim_offset_target)?;
    let request = DeleteConsumerOffset::decode(payload)?;
    check_ack(tail)?;
    Ok(request)
}

/// Appends the 0.9 body of `request`, as galgo's client sends it: offset writes with
/// `ack` = 1, CreateTopic with the options its fields set (0 values, the server defaults, are
/// left out), UpdateTopic with all three settings, SendMessages as a batch.
///
/// Errors come only from SendMessages (see [`batch::encode_send_block`]).
pub fn encode_request(request: &Request, out: &mut BytesMut) -> Result<(), ErrorCode> {
    match request {
        Request::SendMessages(send) => {
            return batch::encode_send_block(
                &send.stream,
                &send.topic,
                &send.partitioning,
                &send.messages,
                out,
            );
        }
        Request::CreateTopic(create) => {
            create.stream.encode(out);
            out.put_u32_le(create.partitions_count);
            put_name8(out, &create.name);
            create_topic_options(create).encode_tail(out);
        }
        Request::UpdateTopic(update) => {
            update.stream.encode(out);
            update.topic.encode(out);
            put_name8(out, &update.name);
            let options = TopicUpdateOptions {
                compression: update.compression,
                message_expiry_us: update.message_expiry_us,
                max_topic_size_bytes: update.max_topic_size_bytes,
            };
            options.to_options().encode_tail(out);
        }
        Request::StoreConsumerOffset(store) => {
            store.encode(out);
            out.put_u8(ACK_QUORUM);
        }
        Request::DeleteConsumerOffset(delete) => {
            delete.encode(out);
            out.put_u8(ACK_QUORUM);
        }
        // CreateStream, UpdateStream, CreateUser and UpdateUser are their 0.8 payload and an
        // empty options block, which is no bytes; every other body is unchanged.
        other => other.encode(out),
    }
    Ok(())
}

fn create_topic_options(create: &CreateTopic) -> Options {
    let set = |value: u64, server_default: u64| (value != server_default).then_some(value);
    TopicOptions {
        compression: Some(create.compression),
        message_expiry_us: set(create.message_expiry_us, EXPIRY_SERVER_DEFAULT),
        max_topic_size_bytes: set(create.max_topic_size_bytes, TOPIC_SIZE_SERVER_DEFAULT),
        ..TopicOptions::default()
    }
    .to_options()
}

/// A conversion of one whole reply payload.
type Convert = fn(&[u8], &mut BytesMut) -> Result<(), ErrorCode>;

/// Converts a 0.8 OK reply payload (as galgo's handlers produce it) into the 0.9 reply
/// payload, without the result section, which the envelope adds.
///
/// Streams, topics and users gain their option blocks (empty: galgo keeps no per-resource
/// options; a topic's `derived_options` report its resolved compression, expiry and size),
/// topic headers lose the replication factor, GetTopics gains its count and PollMessages
/// becomes batch records. An empty payload (not found, no entries) stays empty, and every
/// other reply is returned as it came, without a copy. SendMessages is not converted here: the
/// server answers it with [`batch::SendConfirmation`]s.
///
/// A payload that is not the 0.8 reply of `code` is 3 `InvalidCommand`.
pub fn encode_reply(code: CommandCode, payload: Vec<Bytes>) -> Result<Vec<Bytes>, ErrorCode> {
    let convert: Convert = match code {
        CommandCode::PollMessages => return Ok(vec![batch::encode_polled(&payload)?.freeze()]),
        CommandCode::GetStream => stream_details_to_0_9,
        CommandCode::GetStreams => streams_to_0_9,
        CommandCode::CreateStream => stream_to_0_9,
        CommandCode::GetTopic | CommandCode::CreateTopic => topic_details_to_0_9,
        CommandCode::GetTopics => topics_to_0_9,
        CommandCode::GetUser | CommandCode::CreateUser => user_details_to_0_9,
        CommandCode::GetUsers => users_to_0_9,
        _ => return Ok(payload),
    };
    let bytes = joined(&payload);
    if bytes.is_empty() {
        return Ok(payload);
    }
    let mut out = BytesMut::with_capacity(bytes.len() + REPLY_GROWTH_BYTES);
    convert(&bytes, &mut out)?;
    Ok(vec![out.freeze()])
}

/// A first guess of what a converted control reply adds (option blocks, a count), so most
/// conversions write into one allocation.
const REPLY_GROWTH_BYTES: usize = 256;

/// The payload as one slice, copied only when it came in several chunks.
fn joined(payload: &[Bytes]) -> Cow<'_, [u8]> {
    match payload {
        [] => Cow::Borrowed(&[]),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.concat()),
    }
}

/// Converts a 0.9 reply payload (after the result section) back into the 0.8 payload
/// galgo's client decodes: the inverse of [`encode_reply`]. A 0.9 topic reads back with
/// replication factor [`REPLICATION_FACTOR_0_9`]; option blocks are checked and dropped.
pub fn decode_reply(code: CommandCode, body: Bytes) -> Result<Bytes, ErrorCode> {
    let convert: Convert = match code {
        CommandCode::PollMessages => return batch::decode_polled(&body).map(BytesMut::freeze),
        CommandCode::GetStream => stream_details_to_0_8,
        CommandCode::GetStreams => streams_to_0_8,
        CommandCode::CreateStream => stream_to_0_8,
        CommandCode::GetTopic | CommandCode::CreateTopic => topic_details_to_0_8,
        CommandCode::GetTopics => topics_to_0_8,
        CommandCode::GetUser | CommandCode::CreateUser => user_details_to_0_8,
        CommandCode::GetUsers => users_to_0_8,
        _ => return Ok(body),
    };
    if body.is_empty() {
        return Ok(body);
    }
    let mut out = BytesMut::with_capacity(body.len());
    convert(&body, &mut out)?;
    Ok(out.freeze())
}

fn put_stream_header(header: &StreamHeader, out: &mut BytesMut) {
    out.put_u32_le(header.id);
    out.put_u64_le(header.created_at_us);
    out.put_u32_le(header.topics_count);
    out.put_u64_le(header.size_bytes);
    out.put_u64_le(header.messages_count);
    put_name8(out, &header.name);
    Options::new().encode_prefixed(out);
}

fn read_stream_header(reader: &mut Reader<'_>) -> Result<StreamHeader, ErrorCode> {
    let header = StreamHeader {
        id: reader.u32()?,
        created_at_us: reader.u64()?,
        topics_count: reader.u32()?,
        size_bytes: reader.u64()?,
        messages_count: reader.u64()?,
        name: reader.name8()?.to_owned(),
    };
    Options::decode_prefixed(reader)?;
    Ok(header)
}

fn put_topic_header(header: &TopicHeader, out: &mut BytesMut) {
    out.put_u32_le(header.id);
    out.put_u64_le(header.created_at_us);
    out.put_u32_le(header.partitions_count);
    out.put_u64_le(header.message_expiry_us);
    out.put_u8(header.compression.as_u8());
    out.put_u64_le(header.max_topic_size_bytes);
    out.put_u64_le(header.size_bytes);
    out.put_u64_le(header.messages_count);
    put_name8(out, &header.name);
    // galgo does not record which settings a client chose, so everything is reported as
    // resolved by the server. The SDK reads the topic's effective values from the fixed
    // fields above; the blocks only feed its `options` map.
    Options::new().encode_prefixed(out);
    derived_topic_options(
        header.compression,
        header.message_expiry_us,
        header.max_topic_size_bytes,
    )
    .encode_prefixed(out);
}

fn read_topic_header(reader: &mut Reader<'_>) -> Result<TopicHeader, ErrorCode> {
    let id = reader.u32()?;
    let created_at_us = reader.u64()?;
    let partitions_count = reader.u32()?;
    let message_expiry_us = reader.u64()?;
    let compression = match reader.u8()? {
        1 => CompressionAlgorithm::None,
        2 => CompressionAlgorithm::Gzip,
        _ => return Err(ErrorCode::InvalidCommand),
    };
    let header = TopicHeader {
        id,
        created_at_us,
        partitions_count,
        message_expiry_us,
        compression,
        max_topic_size_bytes: reader.u64()?,
        replication_factor: REPLICATION_FACTOR_0_9,
        size_bytes: reader.u64()?,
        messages_count: reader.u64()?,
        name: reader.name8()?.to_owned(),
    };
    Options::decode_prefixed(reader)?;
    Options::decode_prefixed(reader)?;
    Ok(header)
}

fn put_user_header(header: &UserHeader, out: &mut BytesMut) {
    out.put_u32_le(header.id);
    out.put_u64_le(header.created_at_us);
    out.put_u8(header.status.as_u8());
    put_name8(out, &header.username);
    Options::new().encode_prefixed(out);
}

fn read_user_header(reader: &mut Reader<'_>) -> Result<UserHeader, ErrorCode> {
    let id = reader.u32()?;
    let created_at_us = reader.u64()?;
    let status = match reader.u8()? {
        1 => UserStatus::Active,
        2 => UserStatus::Inactive,
        _ => return Err(ErrorCode::InvalidCommand),
    };
    let header = UserHeader {
        id,
        created_at_us,
        status,
        username: reader.name8()?.to_owned(),
    };
    Options::decode_prefixed(reader)?;
    Ok(header)
}

fn stream_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    put_stream_header(&StreamHeader::decode(bytes)?, out);
    Ok(())
}

fn streams_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    for header in StreamHeader::decode_list(bytes)? {
        put_stream_header(&header, out);
    }
    Ok(())
}

fn stream_details_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let details = StreamDetails::decode(bytes)?;
    put_stream_header(&details.header, out);
    for topic in &details.topics {
        put_topic_header(topic, out);
    }
    Ok(())
}

fn topic_details_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let details = TopicDetails::decode(bytes)?;
    put_topic_header(&details.header, out);
    for partition in &details.partitions {
        partition.encode(out);
    }
    Ok(())
}

fn topics_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let topics = TopicHeader::decode_list(bytes)?;
    out.put_u32_le(u32::try_from(topics.len()).map_err(|_| ErrorCode::InvalidCommand)?);
    for topic in &topics {
        put_topic_header(topic, out);
    }
    Ok(())
}

fn user_details_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let details = UserDetails::decode(bytes)?;
    put_user_header(&details.header, out);
    encode_response_permissions(details.permissions.as_ref(), out);
    Ok(())
}

fn users_to_0_9(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    for header in UserHeader::decode_list(bytes)? {
        put_user_header(&header, out);
    }
    Ok(())
}

/// Reads `count` records with `read`, without trusting `count` for an allocation.
fn read_counted<T>(
    reader: &mut Reader<'_>,
    count: u32,
    read: impl Fn(&mut Reader<'_>) -> Result<T, ErrorCode>,
) -> Result<Vec<T>, ErrorCode> {
    let mut records = Vec::new();
    for _ in 0..count {
        records.push(read(reader)?);
    }
    Ok(records)
}

fn stream_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    let header = read_stream_header(&mut reader)?;
    // A new stream has no topics, but a GetStream-shaped reply may list them: read and drop.
    read_counted(&mut reader, header.topics_count, read_topic_header)?;
    header.encode(out);
    Ok(())
}

fn streams_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        read_stream_header(&mut reader)?.encode(out);
    }
    Ok(())
}

fn stream_details_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    let header = read_stream_header(&mut reader)?;
    let topics = read_counted(&mut reader, header.topics_count, read_topic_header)?;
    StreamDetails { header, topics }.encode(out);
    Ok(())
}

fn read_partition(reader: &mut Reader<'_>) -> Result<PartitionInfo, ErrorCode> {
    Ok(PartitionInfo {
        id: reader.u32()?,
        created_at_us: reader.u64()?,
        segments_count: reader.u32()?,
        current_offset: reader.u64()?,
        size_bytes: reader.u64()?,
        messages_count: reader.u64()?,
    })
}

const _: () = assert!(PARTITION_INFO_BYTES == 4 + 8 + 4 + 8 + 8 + 8);

fn topic_details_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    let header = read_topic_header(&mut reader)?;
    let partitions = read_counted(&mut reader, header.partitions_count, read_partition)?;
    TopicDetails { header, partitions }.encode(out);
    Ok(())
}

fn topics_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    let count = reader.u32()?;
    for topic in read_counted(&mut reader, count, read_topic_header)? {
        topic.encode(out);
    }
    Ok(())
}

fn user_details_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    let header = read_user_header(&mut reader)?;
    let permissions = decode_response_permissions(&mut reader)?;
    UserDetails {
        header,
        permissions,
    }
    .encode(out);
    Ok(())
}

fn users_to_0_8(bytes: &[u8], out: &mut BytesMut) -> Result<(), ErrorCode> {
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        read_user_header(&mut reader)?.encode(out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::command::groups::GetConsumerGroup;
    use crate::command::messages::SendMessages;
    use crate::command::offsets::OffsetTarget;
    use crate::command::system::GetClient;
    use crate::command::tokens::RawPersonalAccessToken;
    use crate::command::topics::{EXPIRY_NEVER, GetTopic, TOPIC_SIZE_UNLIMITED};
    use crate::consumer::tests::any_consumer;
    use crate::identifier::tests::any_identifier;
    use crate::message::encode_message;
    use crate::partitioning::Partitioning;
    use crate::permissions::Permissions;
    use crate::permissions::tests::any_permissions;
    use crate::vsr::options::{OptionValue, topic_keys};

    fn numeric(id: u32) -> Identifier {
        Identifier::Numeric(id)
    }

    fn body_of(request: &Request) -> BytesMut {
        let mut out = BytesMut::new();
        encode_request(request, &mut out).expect("encodable");
        out
    }

    fn round_trip(request: Request) {
        let body = body_of(&request);
        let mut decoded = decode_request(request.code(), body);
        // A decoded send keeps its frames (batch.rs), which the sample had none of.
        if let Ok(Request::SendMessages(send)) = &mut decoded {
            assert!(
                send.frames.take().is_some(),
                "a send with ids keeps its frames"
            );
        }
        assert_eq!(decoded, Ok(request.clone()), "{}", request.code());
    }

    fn target() -> OffsetTarget {
        OffsetTarget {
            consumer: Consumer::Group(numeric(1)),
            stream: numeric(2),
            topic: Identifier::Name("t".into()),
            partition_id: Some(3),
        }
    }

    /// One request of every changed command, and a few unchanged ones.
    fn samples() -> Vec<Request> {
        let mut block = Vec::new();
        encode_message(7, 1_000, b"hello", b"", &mut block);
        encode_message(
            8,
            1_005,
            b"world",
            b"\x02\x01\x00\x00\x00k\x02\x01\x00\x00\x00v",
            &mut block,
        );
        vec![
            Request::CreateStream(CreateStream {
                name: "orders".into(),
            }),
            Request::UpdateStream(UpdateStream {
                stream: numeric(0),
                name: "x".into(),
            }),
            Request::CreateTopic(CreateTopic {
                stream: numeric(0),
                partitions_count: 3,
                compression: CompressionAlgorithm::Gzip,
                message_expiry_us: 5_000_000,
                max_topic_size_bytes: TOPIC_SIZE_SERVER_DEFAULT,
                replication_factor: 0,
                name: "events".into(),
            }),
            Request::UpdateTopic(UpdateTopic {
                stream: numeric(0),
                topic: numeric(1),
                compression: Some(CompressionAlgorithm::None),
                message_expiry_us: Some(EXPIRY_NEVER),
                max_topic_size_bytes: Some(1 << 30),
                replication_factor: 0,
                name: "renamed".into(),
            }),
            Request::CreateUser(CreateUser {
                username: "alice".into(),
                password: "secret".into(),
                status: UserStatus::Active,
                permissions: Some(Permissions::root()),
            }),
            Request::UpdateUser(UpdateUser {
                user: numeric(1),
                username: Some("bob".into()),
                status: None,
            }),
            Request::StoreConsumerOffset(StoreConsumerOffset {
                target: target(),
                offset: 9,
            }),
            Request::DeleteConsumerOffset(DeleteConsumerOffset { target: target() }),
            Request::SendMessages(SendMessages {
                stream: numeric(1),
                topic: Identifier::Name("events".into()),
                partitioning: Partitioning::PartitionId(2),
                messages_count: 2,
                messages: BytesMut::from(&block[..]),
                frames: None,
            }),
            Request::GetClient(GetClient { client_id: 4 }),
            Request::GetTopic(GetTopic {
                stream: numeric(1),
                topic: numeric(2),
            }),
            Request::GetConsumerGroup(GetConsumerGroup {
                stream: numeric(1),
                topic: numeric(2),
                group: numeric(3),
            }),
        ]
    }

    #[test]
    fn every_sample_round_trips() {
        for request in samples() {
            round_trip(request);
        }
    }

    /// The CreateTopic body the SDK sends for `create_topic(0, "t", defaults)`: partitions 1
    /// and the two durability keys it always sets.
    #[test]
    fn create_topic_body_as_the_sdk_sends_it() {
        let mut body = BytesMut::new();
        numeric(0).encode(&mut body);
        body.put_u32_le(1);
        put_name8(&mut body, "t");
        let mut options = Options::new();
        for key in [
            topic_keys::CONSUMER_OFFSET_DURABILITY,
            topic_keys::DURABILITY,
        ] {
            options
                .push(key, OptionValue::string("replicated"))
                .unwrap();
        }
        options.encode_tail(&mut body);
        let expected = CreateTopic {
            stream: numeric(0),
            partitions_count: 1,
            compression: CompressionAlgorithm::None,
            message_expiry_us: EXPIRY_SERVER_DEFAULT,
            max_topic_size_bytes: TOPIC_SIZE_SERVER_DEFAULT,
            replication_factor: 0,
            name: "t".into(),
        };
        assert_eq!(
            decode_request(CommandCode::CreateTopic, body.clone()),
            Ok(Request::CreateTopic(expected))
        );
        let mut unknown = body.clone();
        Options::decode_tail(&[2, 1, 0, 0, 0, b'x', 2, 1, 0, 0, 0, b'y'])
            .unwrap()
            .encode_tail(&mut unknown);
        assert_eq!(
            decode_request(CommandCode::CreateTopic, unknown),
            Err(ErrorCode::UnsupportedOptionKey)
        );
        body.put_u8(2);
        assert_eq!(
            decode_request(CommandCode::CreateTopic, body),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn empty_catalogs_refuse_any_key() {
        let one_key = [2, 1, 0, 0, 0, b'k', 2, 1, 0, 0, 0, b'v'];
        for request in &samples()[..6] {
            if matches!(request, Request::CreateTopic(_) | Request::UpdateTopic(_)) {
                continue;
            }
            let mut body = body_of(request);
            body.extend_from_slice(&one_key);
            assert_eq!(
                decode_request(request.code(), body),
                Err(ErrorCode::UnsupportedOptionKey)
            );
            let mut broken = body_of(request);
            broken.extend_from_slice(&one_key[..7]);
            assert_eq!(
                decode_request(request.code(), broken),
                Err(ErrorCode::InvalidCommand)
            );
        }
    }

    #[test]
    fn offset_writes_carry_an_ack() {
        for request in [&samples()[6], &samples()[7]] {
            let body = body_of(request);
            assert_eq!(body[body.len() - 1], ACK_QUORUM);
            let mut no_ack = body.clone();
            no_ack[body.len() - 1] = ACK_NONE;
            assert_eq!(decode_request(request.code(), no_ack), Ok(request.clone()));
            for bad in [2u8, 0xff] {
                let mut body = body.clone();
                let last = body.len() - 1;
                body[last] = bad;
                assert_eq!(
                    decode_request(request.code(), body),
                    Err(ErrorCode::InvalidCommand)
                );
            }
            let missing = BytesMut::from(&body[..body.len() - 1]);
            assert_eq!(
                decode_request(request.code(), missing),
                Err(ErrorCode::InvalidCommand)
            );
        }
    }

    #[test]
    fn topic_updates_patch() {
        let mut body = BytesMut::new();
        numeric(1).encode(&mut body);
        numeric(2).encode(&mut body);
        put_name8(&mut body, "renamed");
        let mut options = Options::new();
        options
            .push(topic_keys::MESSAGE_EXPIRY, OptionValue::string("1h"))
            .unwrap();
        options.encode_tail(&mut body);
        let Ok(Request::UpdateTopic(update)) =
            decode_request(CommandCode::UpdateTopic, body.clone())
        else {
            panic!("a patch of one setting decodes");
        };
        assert_eq!(
            (
                update.compression,
                update.message_expiry_us,
                update.max_topic_size_bytes
            ),
            (None, Some(3_600_000_000), None)
        );
        assert_eq!(update.name, "renamed");
        let mut segment = body.clone();
        let mut more = Options::new();
        more.push(topic_keys::SEGMENT_SIZE, OptionValue::uint64(1 << 30))
            .unwrap();
        more.encode_tail(&mut segment);
        assert_eq!(
            TopicUpdate::decode(&segment),
            Err(ErrorCode::UnsupportedOptionKey)
        );
    }

    fn topic_header(id: u32, partitions_count: u32) -> TopicHeader {
        TopicHeader {
            id,
            created_at_us: 11,
            partitions_count,
            message_expiry_us: 1_000_000,
            compression: CompressionAlgorithm::Gzip,
            max_topic_size_bytes: TOPIC_SIZE_UNLIMITED,
            replication_factor: REPLICATION_FACTOR_0_9,
            size_bytes: 12,
            messages_count: 13,
            name: format!("topic-{id}"),
        }
    }

    fn stream_header(topics_count: u32) -> StreamHeader {
        StreamHeader {
            id: 3,
            created_at_us: 5,
            topics_count,
            size_bytes: 6,
            messages_count: 7,
            name: "orders".into(),
        }
    }

    fn encoded(encode: impl FnOnce(&mut BytesMut)) -> Bytes {
        let mut out = BytesMut::new();
        encode(&mut out);
        out.freeze()
    }

    /// Converts a 0.8 reply to 0.9, checks `check` on it, and that it converts back.
    fn reply_round_trip(code: CommandCode, reply_0_8: Bytes, check: impl FnOnce(&[u8])) {
        let chunks = reply_0_8.chunks(5).map(Bytes::copy_from_slice).collect();
        let reply_0_9 = encode_reply(code, chunks).expect("a 0.8 reply");
        assert_eq!(reply_0_9.len(), 1);
        check(&reply_0_9[0]);
        assert_eq!(
            decode_reply(code, reply_0_9[0].clone()),
            Ok(reply_0_8),
            "{code}"
        );
    }

    #[test]
    fn stream_replies_gain_options() {
        let details = StreamDetails {
            header: stream_header(2),
            topics: vec![topic_header(0, 0), topic_header(1, 4)],
        };
        reply_round_trip(
            CommandCode::GetStream,
            encoded(|out| details.encode(out)),
            |bytes| {
                assert_eq!(&bytes[32..39], b"\x06orders");
                assert_eq!(&bytes[39..43], [0, 0, 0, 0], "empty options");
                let topic = &bytes[43..];
                assert_eq!(topic[24], 2, "compression at 24");
                assert_eq!(
                    &topic[33..41],
                    12u64.to_le_bytes(),
                    "size_bytes moved up to 33"
                );
                assert_eq!(&topic[49..57], b"\x07topic-0");
                assert_eq!(&topic[57..61], [0, 0, 0, 0]);
                let mut reader = Reader::new(&topic[61..]);
                let derived = Options::decode_prefixed(&mut reader).unwrap();
                let expected =
                    derived_topic_options(CompressionAlgorithm::Gzip, 1_000_000, u64::MAX);
                assert_eq!(derived, expected);
            },
        );
        let header = stream_header(0);
        reply_round_trip(
            CommandCode::CreateStream,
            encoded(|out| header.encode(out)),
            |bytes| {
                assert_eq!(bytes.len(), 33 + 6 + 4);
            },
        );
        let list = encoded(|out| {
            stream_header(1).encode(out);
            stream_header(0).encode(out);
        });
        reply_round_trip(CommandCode::GetStreams, list, |bytes| {
            assert_eq!(bytes.len(), 2 * 43)
        });
    }

    #[test]
    fn topic_replies_drop_the_replication_factor() {
        let partitions = (0..4)
            .map(|id| PartitionInfo {
                id,
                current_offset: 9,
                ..Default::default()
            })
            .collect();
        let details = TopicDetails {
            header: topic_header(1, 4),
            partitions,
        };
        for code in [CommandCode::GetTopic, CommandCode::CreateTopic] {
            reply_round_trip(code, encoded(|out| details.encode(out)), |bytes| {
                let derived_len =
                    derived_topic_options(CompressionAlgorithm::Gzip, 0, 0).encoded_len();
                assert_eq!(
                    bytes.len(),
                    50 + 7 + 4 + 4 + derived_len + 4 * PARTITION_INFO_BYTES
                );
            });
        }
        let list = encoded(|out| {
            topic_header(0, 0).encode(out);
            topic_header(1, 2).encode(out);
        });
        reply_round_trip(CommandCode::GetTopics, list, |bytes| {
            assert_eq!(&bytes[..4], [2, 0, 0, 0])
        });
    }

    #[test]
    fn user_replies_gain_options() {
        let header = UserHeader {
            id: 1,
            created_at_us: 2,
            status: UserStatus::Inactive,
            username: "alice".into(),
        };
        for permissions in [None, Some(Permissions::root())] {
            let details = UserDetails {
                header: header.clone(),
                permissions,
            };
            for code in [CommandCode::GetUser, CommandCode::CreateUser] {
                reply_round_trip(code, encoded(|out| details.encode(out)), |bytes| {
                    assert_eq!(&bytes[13..19], b"\x05alice");
                    assert_eq!(&bytes[19..23], [0, 0, 0, 0]);
                });
            }
        }
        let list = encoded(|out| {
            header.encode(out);
            header.encode(out);
        });
        reply_round_trip(CommandCode::GetUsers, list, |bytes| {
            assert_eq!(bytes.len(), 2 * (14 + 5 + 4))
        });
    }

    #[test]
    fn unchanged_and_empty_replies_pass_through() {
        let token = encoded(|out| {
            RawPersonalAccessToken {
                token: "t".repeat(68),
            }
            .encode(out)
        });
        let chunks = vec![token.clone(), Bytes::from_static(b"x")];
        let passed = encode_reply(CommandCode::CreatePersonalAccessToken, chunks).unwrap();
        assert_eq!(passed[0].as_ptr(), token.as_ptr(), "no copy");
        for code in [
            CommandCode::GetStream,
            CommandCode::GetTopics,
            CommandCode::GetUser,
        ] {
            assert_eq!(encode_reply(code, vec![]), Ok(vec![]));
            assert_eq!(
                encode_reply(code, vec![Bytes::new()]),
                Ok(vec![Bytes::new()])
            );
            assert_eq!(decode_reply(code, Bytes::new()), Ok(Bytes::new()));
        }
        assert_eq!(
            encode_reply(CommandCode::GetStream, vec![Bytes::from_static(b"bad")]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    fn any_update_topic() -> impl Strategy<Value = UpdateTopic> {
        (
            any_identifier(),
            any_identifier(),
            any::<bool>(),
            any::<u64>(),
            any::<u64>(),
            "[a-z]{1,20}",
        )
            .prop_map(
                |(stream, topic, gzip, message_expiry_us, max_topic_size_bytes, name)| {
                    UpdateTopic {
                        stream,
                        topic,
                        compression: Some(if gzip {
                            CompressionAlgorithm::Gzip
                        } else {
                            CompressionAlgorithm::None
                        }),
                        message_expiry_us: Some(message_expiry_us),
                        max_topic_size_bytes: Some(max_topic_size_bytes),
                        replication_factor: 0,
                        name,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn topic_requests_round_trip(
            update in any_update_topic(),
            partitions_count in any::<u32>(),
        ) {
            let create = CreateTopic {
                stream: update.stream.clone(),
                partitions_count,
                compression: update.compression.unwrap_or(CompressionAlgorithm::None),
                message_expiry_us: update.message_expiry_us.unwrap_or(0),
                max_topic_size_bytes: update.max_topic_size_bytes.unwrap_or(0),
                replication_factor: 0,
                name: update.name.clone(),
            };
            round_trip(Request::CreateTopic(create));
            round_trip(Request::UpdateTopic(update));
        }

        #[test]
        fn offset_and_user_requests_round_trip(
            consumer in any_consumer(),
            stream in any_identifier(),
            partition_id in proptest::option::of(any::<u32>()),
            offset in any::<u64>(),
            permissions in proptest::option::of(any_permissions()),
        ) {
            let target = OffsetTarget {
                consumer, stream: stream.clone(), topic: stream, partition_id,
            };
            let store = StoreConsumerOffset { target: target.clone(), offset };
            round_trip(Request::StoreConsumerOffset(store));
            round_trip(Request::DeleteConsumerOffset(DeleteConsumerOffset { target }));
            round_trip(Request::CreateUser(CreateUser {
                username: "someone".into(),
                password: "password".into(),
                status: UserStatus::Active,
                permissions,
            }));
        }

        #[test]
        fn topic_replies_round_trip(
            id in any::<u32>(),
            expiry in any::<u64>(),
            size in any::<u64>(),
            partitions in 0u32..4,
        ) {
            let header = TopicHeader {
                message_expiry_us: expiry,
                max_topic_size_bytes: size,
                ..topic_header(id, partitions)
            };
            let partitions =
                (0..partitions).map(|id| PartitionInfo { id, ..Default::default() }).collect();
            let details = TopicDetails { header, partitions };
            reply_round_trip(CommandCode::GetTopic, encoded(|out| details.encode(out)), |_| {});
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            for &code in CommandCode::ALL {
                let _ = decode_request(code, BytesMut::from(&bytes[..]));
                let _ = decode_reply(code, Bytes::copy_from_slice(&bytes));
                let _ = encode_reply(code, vec![Bytes::copy_from_slice(&bytes)]);
            }
            let _ = TopicUpdate::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_bodies_never_panics(
            index in 0..12usize,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let request = &samples()[index];
            let mut body = body_of(request);
            for (at, value) in flips {
                if !body.is_empty() {
                    let at = at.index(body.len());
                    body[at] = value;
                }
            }
            body.truncate(cut.index(body.len() + 1));
            let _ = decode_request(request.code(), body);
        }
    }
}
