//! Stream commands (PROTOCOL.md §5.2).

use bytes::{BufMut, BytesMut};

use super::topics::TopicHeader;
use super::{decode_records, decode_with, empty_request, identifiers_request};
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::reader::Reader;
use crate::writer::put_name8;

identifiers_request!(
    /// One stream with its topics (code 200). Response: [`StreamDetails`], or empty when the
    /// stream does not exist.
    GetStream {
        /// The stream.
        stream
    }
);
empty_request!(
    /// Every stream (code 201). Response: [`StreamHeader`]s back to back, sorted by id.
    GetStreams
);
identifiers_request!(
    /// Deletes a stream (code 203). Response: empty.
    DeleteStream {
        /// The stream.
        stream
    }
);
identifiers_request!(
    /// Deletes every message of a stream (code 205). Response: empty.
    PurgeStream {
        /// The stream.
        stream
    }
);

/// Creates a stream (code 202); the server assigns the id. Response: the new [`StreamHeader`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateStream {
    /// The name, 1..=255 bytes.
    pub name: String,
}

impl CreateStream {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                name: reader.name8()?.to_owned(),
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_name8(out, &self.name);
    }
}

/// Renames a stream (code 204). Response: empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateStream {
    /// The stream.
    pub stream: Identifier,
    /// The new name, 1..=255 bytes.
    pub name: String,
}

impl UpdateStream {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                stream: Identifier::decode(reader)?,
                name: reader.name8()?.to_owned(),
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.stream.encode(out);
        put_name8(out, &self.name);
    }
}

/// A stream's summary (33 + name bytes), the GetStreams entry and the CreateStream response.
///
/// ```text
/// 0 id u32 | 4 created_at u64 | 12 topics_count u32 | 16 size_bytes u64
/// 24 messages_count u64 | 32 name name8
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// The 0-based id.
    pub id: u32,
    /// Creation time, µs since the epoch.
    pub created_at_us: u64,
    /// Topics in the stream.
    pub topics_count: u32,
    /// Sum of the partitions' sizes.
    pub size_bytes: u64,
    /// Sum of the partitions' message counts.
    pub messages_count: u64,
    /// The name, 1..=255 bytes.
    pub name: String,
}

impl StreamHeader {
    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.id);
        out.put_u64_le(self.created_at_us);
        out.put_u32_le(self.topics_count);
        out.put_u64_le(self.size_bytes);
        out.put_u64_le(self.messages_count);
        put_name8(out, &self.name);
    }

    /// Reads one header.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, Self::read)
    }

    /// Reads a GetStreams response: headers back to back.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Self>, ErrorCode> {
        decode_records(bytes, Self::read)
    }

    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            id: reader.u32()?,
            created_at_us: reader.u64()?,
            topics_count: reader.u32()?,
            size_bytes: reader.u64()?,
            messages_count: reader.u64()?,
            name: reader.name8()?.to_owned(),
        })
    }
}

/// The GetStream response: the header, then its topics sorted by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDetails {
    /// The stream; `topics_count` equals `topics.len()`.
    pub header: StreamHeader,
    /// The stream's topics.
    pub topics: Vec<TopicHeader>,
}

impl StreamDetails {
    /// Appends the response payload. Panics when the header's count disagrees with the list,
    /// because the SDK rejects such a response.
    pub fn encode(&self, out: &mut BytesMut) {
        assert_eq!(
            self.header.topics_count as usize,
            self.topics.len(),
            "topics_count"
        );
        self.header.encode(out);
        for topic in &self.topics {
            topic.encode(out);
        }
    }

    /// Reads the response payload; a topic count that disagrees with the header is
    /// 4 `InvalidFormat`, as the SDK checks.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let header = StreamHeader::read(reader)?;
            let mut topics = Vec::new();
            while !reader.is_empty() {
                topics.push(TopicHeader::read(reader)?);
            }
            if topics.len() != header.topics_count as usize {
                return Err(ErrorCode::InvalidFormat);
            }
            Ok(Self { header, topics })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_support::encoded;
    use crate::command::topics::tests::topic_header;

    fn header(topics_count: u32) -> StreamHeader {
        StreamHeader {
            id: 0,
            created_at_us: 1_700_000_000_000_000,
            topics_count,
            size_bytes: 10,
            messages_count: 2,
            name: "orders".into(),
        }
    }

    #[test]
    fn requests_round_trip() {
        let create = CreateStream {
            name: "orders".into(),
        };
        let bytes = encoded(|out| create.encode(out));
        assert_eq!(&bytes[..], b"\x06orders");
        assert_eq!(CreateStream::decode(&bytes), Ok(create));
        assert_eq!(CreateStream::decode(&[0]), Err(ErrorCode::InvalidFormat));

        let update = UpdateStream {
            stream: Identifier::Numeric(1),
            name: "x".into(),
        };
        assert_eq!(
            UpdateStream::decode(&encoded(|out| update.encode(out))),
            Ok(update)
        );
        let get = GetStream {
            stream: Identifier::Name("s".into()),
        };
        assert_eq!(GetStream::decode(&encoded(|out| get.encode(out))), Ok(get));
        let delete = DeleteStream {
            stream: Identifier::Numeric(3),
        };
        assert_eq!(
            DeleteStream::decode(&encoded(|out| delete.encode(out))),
            Ok(delete)
        );
        let purge = PurgeStream {
            stream: Identifier::Numeric(3),
        };
        assert_eq!(
            PurgeStream::decode(&encoded(|out| purge.encode(out))),
            Ok(purge)
        );
        assert_eq!(PurgeStream::decode(&[9, 0]), Err(ErrorCode::InvalidCommand));
    }

    #[test]
    fn header_is_33_bytes_plus_name() {
        let bytes = encoded(|out| header(0).encode(out));
        assert_eq!(bytes.len(), 33 + 6);
        assert_eq!(bytes[32], 6);
        assert_eq!(StreamHeader::decode(&bytes), Ok(header(0)));
        let mut list = bytes.clone();
        list.extend_from_slice(&bytes);
        assert_eq!(
            StreamHeader::decode_list(&list),
            Ok(vec![header(0), header(0)])
        );
    }

    #[test]
    fn details_round_trip_and_check_the_count() {
        let details = StreamDetails {
            header: header(2),
            topics: vec![topic_header(0), topic_header(1)],
        };
        let bytes = encoded(|out| details.encode(out));
        assert_eq!(StreamDetails::decode(&bytes), Ok(details));
        let wrong = encoded(|out| {
            header(3).encode(out);
            topic_header(0).encode(out);
        });
        assert_eq!(StreamDetails::decode(&wrong), Err(ErrorCode::InvalidFormat));
    }
}
