//! User permissions and their wire form `WirePermissions` (PROTOCOL.md §4.7).
//!
//! ```text
//! global: 10 bools | has_streams u8
//! per stream:  stream_id u32 | 6 bools | has_topics u8
//!              per topic: topic_id u32 | 4 bools | has_next_topic u8
//!              has_next_stream u8
//! ```
//! Encoders write streams and topics sorted by id (the maps are ordered); decoders treat any
//! non-zero continuation byte as "another follows".
//!
//! Permissions travel in two wrappers. Requests (CreateUser, UpdatePermissions) use
//! `[has u8][len u32][bytes]` with the length present only when `has == 1`. Responses
//! (UserDetails) write "none" as four zero bytes and "some" as `01 | len u32 | bytes`
//! (§5.4, §10 trap 10).

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use crate::error::ErrorCode;
use crate::reader::Reader;
use crate::writer::put_bool;

/// Everything a user may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// Server-wide grants.
    pub global: GlobalPermissions,
    /// Grants per stream id.
    pub streams: BTreeMap<u32, StreamPermissions>,
}

/// Server-wide grants, in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct GlobalPermissions {
    pub manage_servers: bool,
    pub read_servers: bool,
    pub manage_users: bool,
    pub read_users: bool,
    pub manage_streams: bool,
    pub read_streams: bool,
    pub manage_topics: bool,
    pub read_topics: bool,
    pub poll_messages: bool,
    pub send_messages: bool,
}

/// Grants on one stream, in wire order, and on its topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StreamPermissions {
    pub manage_stream: bool,
    pub read_stream: bool,
    pub manage_topics: bool,
    pub read_topics: bool,
    pub poll_messages: bool,
    pub send_messages: bool,
    /// Grants per topic id.
    pub topics: BTreeMap<u32, TopicPermissions>,
}

/// Grants on one topic, in wire order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TopicPermissions {
    pub manage_topic: bool,
    pub read_topic: bool,
    pub poll_messages: bool,
    pub send_messages: bool,
}

impl GlobalPermissions {
    /// Every global grant, as the root user has.
    pub fn all() -> Self {
        Self::from_array([true; 10])
    }

    fn to_array(self) -> [bool; 10] {
        [
            self.manage_servers,
            self.read_servers,
            self.manage_users,
            self.read_users,
            self.manage_streams,
            self.read_streams,
            self.manage_topics,
            self.read_topics,
            self.poll_messages,
            self.send_messages,
        ]
    }

    fn from_array(flags: [bool; 10]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j] = flags;
        Self {
            manage_servers: a,
            read_servers: b,
            manage_users: c,
            read_users: d,
            manage_streams: e,
            read_streams: f,
            manage_topics: g,
            read_topics: h,
            poll_messages: i,
            send_messages: j,
        }
    }
}

impl StreamPermissions {
    fn flags(&self) -> [bool; 6] {
        [
            self.manage_stream,
            self.read_stream,
            self.manage_topics,
            self.read_topics,
            self.poll_messages,
            self.send_messages,
        ]
    }

    fn from_flags(flags: [bool; 6], topics: BTreeMap<u32, TopicPermissions>) -> Self {
        let [a, b, c, d, e, f] = flags;
        Self {
            manage_stream: a,
            read_stream: b,
            manage_topics: c,
            read_topics: d,
            poll_messages: e,
            send_messages: f,
            topics,
        }
    }
}

impl TopicPermissions {
    fn to_array(self) -> [bool; 4] {
        [
            self.manage_topic,
            self.read_topic,
            self.poll_messages,
            self.send_messages,
        ]
    }

    fn from_array(flags: [bool; 4]) -> Self {
        let [a, b, c, d] = flags;
        Self {
            manage_topic: a,
            read_topic: b,
            poll_messages: c,
            send_messages: d,
        }
    }
}

fn put_flags(out: &mut BytesMut, flags: &[bool]) {
    for &flag in flags {
        put_bool(out, flag);
    }
}

fn read_flags<const N: usize>(reader: &mut Reader<'_>) -> Result<[bool; N], ErrorCode> {
    let bytes = reader.bytes(N)?;
    let mut flags = [false; N];
    for (flag, &byte) in flags.iter_mut().zip(bytes) {
        *flag = byte != 0;
    }
    Ok(flags)
}

/// Writes `has_next` continuation bytes: 1 before every entry but the first, 0 at the end.
fn put_entries<T>(
    out: &mut BytesMut,
    entries: &BTreeMap<u32, T>,
    mut put: impl FnMut(&mut BytesMut, u32, &T),
) {
    put_bool(out, !entries.is_empty());
    let last = entries.len().saturating_sub(1);
    for (index, (&id, entry)) in entries.iter().enumerate() {
        put(out, id, entry);
        put_bool(out, index != last);
    }
}

/// Reads entries while the continuation byte is non-zero.
fn read_entries<T>(
    reader: &mut Reader<'_>,
    mut read: impl FnMut(&mut Reader<'_>) -> Result<T, ErrorCode>,
) -> Result<BTreeMap<u32, T>, ErrorCode> {
    let mut entries = BTreeMap::new();
    let mut more = reader.bool()?;
    while more {
        let id = reader.u32()?;
        entries.insert(id, read(reader)?);
        more = reader.bool()?;
    }
    Ok(entries)
}

impl Permissions {
    /// The permissions of the root user: every global grant, no per-stream entries.
    pub fn root() -> Self {
        Self {
            global: GlobalPermissions::all(),
            streams: BTreeMap::new(),
        }
    }

    /// Appends the bare `WirePermissions`.
    pub fn encode(&self, out: &mut BytesMut) {
        put_flags(out, &self.global.to_array());
        put_entries(out, &self.streams, |out, id, stream| {
            out.put_u32_le(id);
            put_flags(out, &stream.flags());
            put_entries(out, &stream.topics, |out, id, topic| {
                out.put_u32_le(id);
                put_flags(out, &topic.to_array());
            });
        });
    }

    /// Bytes the bare `WirePermissions` take.
    pub fn encoded_len(&self) -> usize {
        let streams: usize = self
            .streams
            .values()
            .map(|s| 4 + 6 + 1 + 9 * s.topics.len() + 1)
            .sum();
        10 + 1 + streams
    }

    /// Reads bare `WirePermissions`.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let global = GlobalPermissions::from_array(read_flags(reader)?);
        let streams = read_entries(reader, |reader| {
            let flags = read_flags(reader)?;
            let topics = read_entries(reader, |reader| {
                read_flags(reader).map(TopicPermissions::from_array)
            })?;
            Ok(StreamPermissions::from_flags(flags, topics))
        })?;
        Ok(Self { global, streams })
    }
}

/// Appends the request wrapper: `[has u8][len u32][bytes]`, or a single 0 for none.
pub fn encode_request_permissions(permissions: Option<&Permissions>, out: &mut BytesMut) {
    match permissions {
        None => out.put_u8(0),
        Some(permissions) => {
            out.put_u8(1);
            out.put_u32_le(permissions.encoded_len() as u32);
            permissions.encode(out);
        }
    }
}

/// Reads the request wrapper. Only `has == 1` means present; the declared length must equal
/// the bytes the permissions decode from, otherwise 4 `InvalidFormat`.
pub fn decode_request_permissions(
    reader: &mut Reader<'_>,
) -> Result<Option<Permissions>, ErrorCode> {
    if !reader.flag()? {
        return Ok(None);
    }
    let declared_len = reader.u32()?;
    let start = reader.position();
    let permissions = Permissions::decode(reader)?;
    if (reader.position() - start) as u64 != u64::from(declared_len) {
        return Err(ErrorCode::InvalidFormat);
    }
    Ok(Some(permissions))
}

/// Appends the response (UserDetails) wrapper: four zero bytes for none, else
/// `01 | len u32 | bytes`.
pub fn encode_response_permissions(permissions: Option<&Permissions>, out: &mut BytesMut) {
    match permissions {
        None => out.put_u32_le(0),
        Some(permissions) => encode_request_permissions(Some(permissions), out),
    }
}

/// Reads the response wrapper as the SDK does: flag 0 skips three more bytes; any other flag
/// is followed by the length and exactly that many bytes of permissions.
pub fn decode_response_permissions(
    reader: &mut Reader<'_>,
) -> Result<Option<Permissions>, ErrorCode> {
    if reader.u8()? == 0 {
        reader.bytes(3)?;
        return Ok(None);
    }
    let len = reader.u32()?;
    let bytes = reader.bytes(usize::try_from(len).map_err(|_| ErrorCode::InvalidCommand)?)?;
    Permissions::decode(&mut Reader::new(bytes)).map(Some)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_topic() -> impl Strategy<Value = TopicPermissions> {
        any::<[bool; 4]>().prop_map(TopicPermissions::from_array)
    }

    fn any_stream() -> impl Strategy<Value = StreamPermissions> {
        (
            any::<[bool; 6]>(),
            proptest::collection::btree_map(any::<u32>(), any_topic(), 0..4),
        )
            .prop_map(|(flags, topics)| StreamPermissions::from_flags(flags, topics))
    }

    /// Any permissions.
    pub(crate) fn any_permissions() -> impl Strategy<Value = Permissions> {
        (
            any::<[bool; 10]>(),
            proptest::collection::btree_map(any::<u32>(), any_stream(), 0..4),
        )
            .prop_map(|(flags, streams)| Permissions {
                global: GlobalPermissions::from_array(flags),
                streams,
            })
    }

    fn sample() -> Permissions {
        let mut topics = BTreeMap::new();
        topics.insert(
            2,
            TopicPermissions {
                read_topic: true,
                ..Default::default()
            },
        );
        let mut streams = BTreeMap::new();
        streams.insert(
            1,
            StreamPermissions {
                send_messages: true,
                topics,
                ..Default::default()
            },
        );
        Permissions {
            global: GlobalPermissions {
                read_users: true,
                ..Default::default()
            },
            streams,
        }
    }

    #[test]
    fn layout_is_byte_exact() {
        let mut out = BytesMut::new();
        sample().encode(&mut out);
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 1, 0, 0, 0, 0, 0, 0,   1,           // global, has_streams
            1, 0, 0, 0,   0, 0, 0, 0, 0, 1,   1,         // stream 1, has_topics
            2, 0, 0, 0,   0, 1, 0, 0,   0,               // topic 2, last topic
            0,                                           // last stream
        ];
        assert_eq!(&out[..], expected);
        assert_eq!(out.len(), sample().encoded_len());
    }

    #[test]
    fn wrappers_are_asymmetric() {
        let mut out = BytesMut::new();
        encode_request_permissions(None, &mut out);
        assert_eq!(&out[..], [0]);
        out.clear();
        encode_response_permissions(None, &mut out);
        assert_eq!(&out[..], [0, 0, 0, 0]);
        assert_eq!(
            decode_response_permissions(&mut Reader::new(&out)),
            Ok(None)
        );
        assert_eq!(
            decode_response_permissions(&mut Reader::new(&[0, 0])),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn request_length_must_match() {
        let mut out = BytesMut::new();
        encode_request_permissions(Some(&Permissions::root()), &mut out);
        assert_eq!(out.len(), 1 + 4 + 11);
        out[1] = 12;
        assert_eq!(
            decode_request_permissions(&mut Reader::new(&out)),
            Err(ErrorCode::InvalidFormat)
        );
        out[0] = 2; // anything but 1 means absent
        assert_eq!(decode_request_permissions(&mut Reader::new(&out)), Ok(None));
    }

    proptest! {
        #[test]
        fn round_trips(permissions in any_permissions()) {
            let mut out = BytesMut::new();
            permissions.encode(&mut out);
            prop_assert_eq!(out.len(), permissions.encoded_len());
            prop_assert_eq!(Permissions::decode(&mut Reader::new(&out)), Ok(permissions.clone()));
            for wrapped in [true, false] {
                let mut out = BytesMut::new();
                let decoded = if wrapped {
                    encode_request_permissions(Some(&permissions), &mut out);
                    decode_request_permissions(&mut Reader::new(&out))
                } else {
                    encode_response_permissions(Some(&permissions), &mut out);
                    decode_response_permissions(&mut Reader::new(&out))
                };
                prop_assert_eq!(decoded, Ok(Some(permissions.clone())));
            }
        }
    }
}
