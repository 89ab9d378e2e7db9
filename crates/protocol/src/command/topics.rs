//! Topic, partition and segment commands (PROTOCOL.md §5.3).

use bytes::{BufMut, BytesMut};

use super::{decode_records, decode_with, identifiers_request};
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::reader::Reader;
use crate::writer::put_name8;

/// Most partitions a topic may have; more is 2015 `TooManyPartitions` (checked by the server).
pub const TOPIC_PARTITIONS_MAX: u32 = 1000;
/// `message_expiry_us` value meaning "the server default".
pub const EXPIRY_SERVER_DEFAULT: u64 = 0;
/// `message_expiry_us` value meaning "never expire".
pub const EXPIRY_NEVER: u64 = u64::MAX;
/// `max_topic_size_bytes` value meaning "the server default".
pub const TOPIC_SIZE_SERVER_DEFAULT: u64 = 0;
/// `max_topic_size_bytes` value meaning "unlimited".
pub const TOPIC_SIZE_UNLIMITED: u64 = u64::MAX;

/// A topic's compression setting (one byte: 1 none, 2 gzip; anything else is 3).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompressionAlgorithm {
    /// No compression.
    #[default]
    None = 1,
    /// Gzip.
    Gzip = 2,
}

impl CompressionAlgorithm {
    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        match reader.u8()? {
            1 => Ok(CompressionAlgorithm::None),
            2 => Ok(CompressionAlgorithm::Gzip),
            _ => Err(ErrorCode::InvalidCommand),
        }
    }
}

identifiers_request!(
    /// One topic with its partitions (code 300). Response: [`TopicDetails`], or empty.
    GetTopic {
        /// The stream.
        stream,
        /// The topic.
        topic
    }
);
identifiers_request!(
    /// Every topic of a stream (code 301). Response: [`TopicHeader`]s back to back, or empty.
    GetTopics {
        /// The stream.
        stream
    }
);
identifiers_request!(
    /// Deletes a topic (code 303). Response: empty.
    DeleteTopic {
        /// The stream.
        stream,
        /// The topic.
        topic
    }
);
identifiers_request!(
    /// Deletes every message of a topic (code 305). Response: empty.
    PurgeTopic {
        /// The stream.
        stream,
        /// The topic.
        topic
    }
);

/// Creates a topic (code 302); the server assigns the id. Response: [`TopicDetails`] with its
/// new partitions.
///
/// ```text
/// Id stream | partitions_count u32 | compression u8 | message_expiry u64 | max_topic_size u64
/// | replication_factor u8 | name name8
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopic {
    /// The stream.
    pub stream: Identifier,
    /// Partitions to create, 0..=1000.
    pub partitions_count: u32,
    /// The compression setting.
    pub compression: CompressionAlgorithm,
    /// 0 = server default, `u64::MAX` = never, otherwise µs.
    pub message_expiry_us: u64,
    /// 0 = server default, `u64::MAX` = unlimited, otherwise bytes.
    pub max_topic_size_bytes: u64,
    /// 0 = not set.
    pub replication_factor: u8,
    /// The name, 1..=255 bytes.
    pub name: String,
}

impl CreateTopic {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                stream: Identifier::decode(reader)?,
                partitions_count: reader.u32()?,
                compression: CompressionAlgorithm::read(reader)?,
                message_expiry_us: reader.u64()?,
                max_topic_size_bytes: reader.u64()?,
                replication_factor: reader.u8()?,
                name: reader.name8()?.to_owned(),
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.stream.encode(out);
        out.put_u32_le(self.partitions_count);
        out.put_u8(self.compression.as_u8());
        out.put_u64_le(self.message_expiry_us);
        out.put_u64_le(self.max_topic_size_bytes);
        out.put_u8(self.replication_factor);
        put_name8(out, &self.name);
    }
}

/// Changes a topic's settings (code 304). Response: empty.
///
/// ```text
/// Id stream | Id topic | compression u8 | message_expiry u64 | max_topic_size u64
/// | replication_factor u8 | name name8
/// ```
///
/// A 0.8 request sets every setting; a 0.9 one (PROTOCOL-0.9.md §8.3) patches those it
/// names, and `None` keeps the topic's current value. Encoded in the 0.8 form, `None` is the
/// wire's default (no compression, expiry and size 0, which the server reads as its
/// defaults), so a 0.8 client reads the current settings first to keep them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UpdateTopic {
    pub stream: Identifier,
    pub topic: Identifier,
    pub compression: Option<CompressionAlgorithm>,
    pub message_expiry_us: Option<u64>,
    pub max_topic_size_bytes: Option<u64>,
    pub replication_factor: u8,
    pub name: String,
}

impl UpdateTopic {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                stream: Identifier::decode(reader)?,
                topic: Identifier::decode(reader)?,
                compression: Some(CompressionAlgorithm::read(reader)?),
                message_expiry_us: Some(reader.u64()?),
                max_topic_size_bytes: Some(reader.u64()?),
                replication_factor: reader.u8()?,
                name: reader.name8()?.to_owned(),
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.stream.encode(out);
        self.topic.encode(out);
        let compression = self.compression.unwrap_or(CompressionAlgorithm::None);
        out.put_u8(compression.as_u8());
        out.put_u64_le(self.message_expiry_us.unwrap_or(0));
        out.put_u64_le(self.max_topic_size_bytes.unwrap_or(0));
        out.put_u8(self.replication_factor);
        put_name8(out, &self.name);
    }
}

/// Declares a `stream | topic | count u32` request.
macro_rules! partitions_request {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            /// The stream.
            pub stream: Identifier,
            /// The topic.
            pub topic: Identifier,
            /// How many partitions.
            pub partitions_count: u32,
        }

        impl $name {
            /// Reads the request payload.
            pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
                decode_with(payload, |reader| {
                    Ok(Self {
                        stream: Identifier::decode(reader)?,
                        topic: Identifier::decode(reader)?,
                        partitions_count: reader.u32()?,
                    })
                })
            }

            /// Appends the request payload.
            pub fn encode(&self, out: &mut BytesMut) {
                self.stream.encode(out);
                self.topic.encode(out);
                out.put_u32_le(self.partitions_count);
            }
        }
    };
}

partitions_request!(
    /// Appends partitions to a topic (code 402), 1..=1000 of them. Response: empty.
    CreatePartitions
);
partitions_request!(
    /// Removes the highest-numbered partitions of a topic (code 403). Response: empty.
    DeletePartitions
);

/// Deletes up to `segments_count` of a partition's oldest sealed segments (code 503).
/// Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DeleteSegments {
    pub stream: Identifier,
    pub topic: Identifier,
    pub partition_id: u32,
    pub segments_count: u32,
}

impl DeleteSegments {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                stream: Identifier::decode(reader)?,
                topic: Identifier::decode(reader)?,
                partition_id: reader.u32()?,
                segments_count: reader.u32()?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.stream.encode(out);
        self.topic.encode(out);
        out.put_u32_le(self.partition_id);
        out.put_u32_le(self.segments_count);
    }
}

/// A topic's summary (51 + name bytes): GetTopics entries and part of stream and topic
/// details.
///
/// ```text
/// 0 id u32 | 4 created_at u64 | 12 partitions_count u32 | 16 message_expiry u64
/// 24 compression u8 | 25 max_topic_size u64 | 33 replication_factor u8 | 34 size_bytes u64
/// 42 messages_count u64 | 50 name name8
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TopicHeader {
    pub id: u32,
    pub created_at_us: u64,
    pub partitions_count: u32,
    /// `u64::MAX` = never (the server reports its "none" default this way).
    pub message_expiry_us: u64,
    pub compression: CompressionAlgorithm,
    /// `u64::MAX` = unlimited.
    pub max_topic_size_bytes: u64,
    pub replication_factor: u8,
    pub size_bytes: u64,
    pub messages_count: u64,
    pub name: String,
}

impl TopicHeader {
    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.id);
        out.put_u64_le(self.created_at_us);
        out.put_u32_le(self.partitions_count);
        out.put_u64_le(self.message_expiry_us);
        out.put_u8(self.compression.as_u8());
        out.put_u64_le(self.max_topic_size_bytes);
        out.put_u8(self.replication_factor);
        out.put_u64_le(self.size_bytes);
        out.put_u64_le(self.messages_count);
        put_name8(out, &self.name);
    }

    /// Reads one header.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, Self::read)
    }

    /// Reads a GetTopics response: headers back to back.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Self>, ErrorCode> {
        decode_records(bytes, Self::read)
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            id: reader.u32()?,
            created_at_us: reader.u64()?,
            partitions_count: reader.u32()?,
            message_expiry_us: reader.u64()?,
            compression: CompressionAlgorithm::read(reader)?,
            max_topic_size_bytes: reader.u64()?,
            replication_factor: reader.u8()?,
            size_bytes: reader.u64()?,
            messages_count: reader.u64()?,
            name: reader.name8()?.to_owned(),
        })
    }
}

/// Bytes of one [`PartitionInfo`].
pub const PARTITION_INFO_BYTES: usize = 40;

/// One partition of [`TopicDetails`] (40 bytes).
///
/// ```text
/// 0 id u32 | 4 created_at u64 | 12 segments_count u32 | 16 current_offset u64
/// 24 size_bytes u64 | 32 messages_count u64
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PartitionInfo {
    pub id: u32,
    pub created_at_us: u64,
    pub segments_count: u32,
    /// The last assigned offset (0 when empty).
    pub current_offset: u64,
    pub size_bytes: u64,
    pub messages_count: u64,
}

impl PartitionInfo {
    /// Appends the record.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.id);
        out.put_u64_le(self.created_at_us);
        out.put_u32_le(self.segments_count);
        out.put_u64_le(self.current_offset);
        out.put_u64_le(self.size_bytes);
        out.put_u64_le(self.messages_count);
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            id: reader.u32()?,
            created_at_us: reader.u64()?,
            segments_count: reader.u32()?,
            current_offset: reader.u64()?,
            size_bytes: reader.u64()?,
            messages_count: reader.u64()?,
        })
    }
}

/// The GetTopic and CreateTopic response: the header, then its partitions 0..n-1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDetails {
    /// The topic; `partitions_count` equals `partitions.len()`.
    pub header: TopicHeader,
    /// The partitions.
    pub partitions: Vec<PartitionInfo>,
}

impl TopicDetails {
    /// Appends the response payload. Panics when the header's count disagrees with the list,
    /// because the SDK rejects such a response.
    pub fn encode(&self, out: &mut BytesMut) {
        assert_eq!(
            self.header.partitions_count as usize,
            self.partitions.len(),
            "partitions_count"
        );
        self.header.encode(out);
        for partition in &self.partitions {
            partition.encode(out);
        }
    }

    /// Reads the response payload; a partition count that disagrees with the header is
    /// 4 `InvalidFormat`, as the SDK checks.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let header = TopicHeader::read(reader)?;
            let hint =
                (header.partitions_count as usize).min(reader.remaining() / PARTITION_INFO_BYTES);
            let mut partitions = Vec::with_capacity(hint);
            while !reader.is_empty() {
                partitions.push(PartitionInfo::read(reader)?);
            }
            if partitions.len() != header.partitions_count as usize {
                return Err(ErrorCode::InvalidFormat);
            }
            Ok(Self { header, partitions })
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::test_support::encoded;

    /// A sample header with `partitions_count` 0.
    pub(crate) fn topic_header(id: u32) -> TopicHeader {
        TopicHeader {
            id,
            created_at_us: 5,
            partitions_count: 0,
            message_expiry_us: EXPIRY_NEVER,
            compression: CompressionAlgorithm::Gzip,
            max_topic_size_bytes: TOPIC_SIZE_UNLIMITED,
            replication_factor: 1,
            size_bytes: 6,
            messages_count: 7,
            name: format!("topic-{id}"),
        }
    }

    #[test]
    fn create_topic_layout_is_byte_exact() {
        let request = CreateTopic {
            stream: Identifier::Numeric(0),
            partitions_count: 3,
            compression: CompressionAlgorithm::None,
            message_expiry_us: 0,
            max_topic_size_bytes: 0,
            replication_factor: 0,
            name: "t".into(),
        };
        let bytes = encoded(|out| request.encode(out));
        #[rustfmt::skip]
        let expected = [
            1, 4, 0, 0, 0, 0,   3, 0, 0, 0,   1,
            0, 0, 0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 0, 0, 0,   0,   1, b't',
        ];
        assert_eq!(&bytes[..], expected);
        assert_eq!(CreateTopic::decode(&bytes), Ok(request));
        let mut bad = bytes.clone();
        bad[10] = 3;
        assert_eq!(CreateTopic::decode(&bad), Err(ErrorCode::InvalidCommand));
    }

    #[test]
    fn requests_round_trip() {
        let s = Identifier::Numeric(1);
        let t = Identifier::Name("t".into());
        let update = UpdateTopic {
            stream: s.clone(),
            topic: t.clone(),
            compression: Some(CompressionAlgorithm::Gzip),
            message_expiry_us: Some(9),
            max_topic_size_bytes: Some(10),
            replication_factor: 2,
            name: "renamed".into(),
        };
        assert_eq!(
            UpdateTopic::decode(&encoded(|out| update.encode(out))),
            Ok(update)
        );
        let get = GetTopic {
            stream: s.clone(),
            topic: t.clone(),
        };
        assert_eq!(GetTopic::decode(&encoded(|out| get.encode(out))), Ok(get));
        let list = GetTopics { stream: s.clone() };
        assert_eq!(
            GetTopics::decode(&encoded(|out| list.encode(out))),
            Ok(list)
        );
        let delete = DeleteTopic {
            stream: s.clone(),
            topic: t.clone(),
        };
        assert_eq!(
            DeleteTopic::decode(&encoded(|out| delete.encode(out))),
            Ok(delete)
        );
        let purge = PurgeTopic {
            stream: s.clone(),
            topic: t.clone(),
        };
        assert_eq!(
            PurgeTopic::decode(&encoded(|out| purge.encode(out))),
            Ok(purge)
        );
        let create = CreatePartitions {
            stream: s.clone(),
            topic: t.clone(),
            partitions_count: 2,
        };
        assert_eq!(
            CreatePartitions::decode(&encoded(|out| create.encode(out))),
            Ok(create)
        );
        let remove = DeletePartitions {
            stream: s.clone(),
            topic: t.clone(),
            partitions_count: 1,
        };
        assert_eq!(
            DeletePartitions::decode(&encoded(|out| remove.encode(out))),
            Ok(remove)
        );
        let segments = DeleteSegments {
            stream: s,
            topic: t,
            partition_id: 4,
            segments_count: 5,
        };
        let bytes = encoded(|out| segments.encode(out));
        assert_eq!(&bytes[bytes.len() - 8..], [4, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(DeleteSegments::decode(&bytes), Ok(segments));
    }

    #[test]
    fn header_layout_matches_the_sdk() {
        let header = topic_header(2);
        let bytes = encoded(|out| header.encode(out));
        assert_eq!(bytes.len(), 51 + header.name.len());
        assert_eq!(bytes[24], 2, "compression at 24");
        assert_eq!(bytes[33], 1, "replication factor at 33");
        assert_eq!(bytes[50] as usize, header.name.len(), "name at 50");
        assert_eq!(TopicHeader::decode(&bytes), Ok(header.clone()));
        let mut list = bytes.clone();
        list.extend_from_slice(&bytes);
        assert_eq!(
            TopicHeader::decode_list(&list),
            Ok(vec![header.clone(), header])
        );
    }

    #[test]
    fn details_round_trip_and_check_the_count() {
        let partitions: Vec<_> = (0..3)
            .map(|id| PartitionInfo {
                id,
                current_offset: 9,
                messages_count: 10,
                ..Default::default()
            })
            .collect();
        let details = TopicDetails {
            header: TopicHeader {
                partitions_count: 3,
                ..topic_header(0)
            },
            partitions,
        };
        let bytes = encoded(|out| details.encode(out));
        assert_eq!(bytes.len(), 51 + 7 + 3 * PARTITION_INFO_BYTES);
        assert_eq!(TopicDetails::decode(&bytes), Ok(details));
        assert_eq!(
            TopicDetails::decode(&bytes[..bytes.len() - PARTITION_INFO_BYTES]),
            Err(ErrorCode::InvalidFormat)
        );
        assert_eq!(
            TopicDetails::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }
}
