//! Consumer group commands (PROTOCOL.md §5.8).

use bytes::{BufMut, BytesMut};

use super::{decode_records, decode_with, identifiers_request};
use crate::error::ErrorCode;
use crate::identifier::Identifier;
use crate::reader::Reader;
use crate::writer::put_name8;

identifiers_request!(
    /// One group with its members (code 600). Response: [`GroupDetails`], or empty.
    GetConsumerGroup {
        /// The stream.
        stream,
        /// The topic.
        topic,
        /// The group.
        group
    }
);
identifiers_request!(
    /// Every group of a topic (code 601). Response: [`GroupHeader`]s back to back, or empty.
    GetConsumerGroups {
        /// The stream.
        stream,
        /// The topic.
        topic
    }
);
identifiers_request!(
    /// Deletes a group and its stored offsets (code 603). Response: empty.
    DeleteConsumerGroup {
        /// The stream.
        stream,
        /// The topic.
        topic,
        /// The group.
        group
    }
);
identifiers_request!(
    /// Joins a group; joining twice is a no-op (code 604). Response: empty.
    JoinConsumerGroup {
        /// The stream.
        stream,
        /// The topic.
        topic,
        /// The group.
        group
    }
);
identifiers_request!(
    /// Leaves a group (code 605). Response: empty.
    LeaveConsumerGroup {
        /// The stream.
        stream,
        /// The topic.
        topic,
        /// The group.
        group
    }
);

identifiers_request!(
    /// The caller's current assignment in a group (code 606, 0.9 generation only).
    /// Response: [`GroupAssignment`], or empty when the caller is not a member (see
    /// [`GroupAssignment::decode_reply`]).
    SyncConsumerGroup {
        /// The stream.
        stream,
        /// The topic.
        topic,
        /// The group.
        group
    }
);

/// Creates a group (code 602): `Id stream | Id topic | name name8`; the server assigns the id.
/// Response: the new [`GroupHeader`] (members 0), which the SDK reads as [`GroupDetails`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CreateConsumerGroup {
    pub stream: Identifier,
    pub topic: Identifier,
    pub name: String,
}

impl CreateConsumerGroup {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                stream: Identifier::decode(reader)?,
                topic: Identifier::decode(reader)?,
                name: reader.name8()?.to_owned(),
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.stream.encode(out);
        self.topic.encode(out);
        put_name8(out, &self.name);
    }
}

/// A group's summary (13 + name bytes):
/// `id u32 | partitions_count u32 | members_count u32 | name name8`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct GroupHeader {
    pub id: u32,
    pub partitions_count: u32,
    pub members_count: u32,
    pub name: String,
}

impl GroupHeader {
    /// Appends the header.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.id);
        out.put_u32_le(self.partitions_count);
        out.put_u32_le(self.members_count);
        put_name8(out, &self.name);
    }

    /// Reads one header.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, Self::read)
    }

    /// Reads a GetConsumerGroups response: headers back to back.
    pub fn decode_list(bytes: &[u8]) -> Result<Vec<Self>, ErrorCode> {
        decode_records(bytes, Self::read)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            id: reader.u32()?,
            partitions_count: reader.u32()?,
            members_count: reader.u32()?,
            name: reader.name8()?.to_owned(),
        })
    }
}

/// One member of [`GroupDetails`]:
/// `member_id u32 | partitions_count u32 | partition_id u32 × partitions_count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's id within the group.
    pub id: u32,
    /// The partitions the member currently owns.
    pub partitions: Vec<u32>,
}

impl GroupMember {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.id);
        out.put_u32_le(self.partitions.len() as u32);
        for &partition in &self.partitions {
            out.put_u32_le(partition);
        }
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let id = reader.u32()?;
        let (count, hint) = reader.count(4)?;
        let mut partitions = Vec::with_capacity(hint);
        for _ in 0..count {
            partitions.push(reader.u32()?);
        }
        Ok(Self { id, partitions })
    }
}

/// The GetConsumerGroup response: the header, then `members_count` members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDetails {
    /// The group; `members_count` equals `members.len()`.
    pub header: GroupHeader,
    /// The members.
    pub members: Vec<GroupMember>,
}

/// Smallest encoded member: id and a zero count.
const GROUP_MEMBER_BYTES_MIN: usize = 8;

impl GroupDetails {
    /// Appends the response payload. Panics when the header's count disagrees with the list.
    pub fn encode(&self, out: &mut BytesMut) {
        assert_eq!(
            self.header.members_count as usize,
            self.members.len(),
            "members_count"
        );
        self.header.encode(out);
        for member in &self.members {
            member.encode(out);
        }
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let header = GroupHeader::read(reader)?;
            let hint =
                (header.members_count as usize).min(reader.remaining() / GROUP_MEMBER_BYTES_MIN);
            let mut members = Vec::with_capacity(hint);
            for _ in 0..header.members_count {
                members.push(GroupMember::read(reader)?);
            }
            Ok(Self { header, members })
        })
    }
}

/// A member's assignment, the SyncConsumerGroup response:
/// `generation u64 | partitions_count u32 | partition_id u32 × partitions_count`.
///
/// A member without partitions still has an assignment (count 0); only a non-member gets an
/// empty response, which is why call sites hold an `Option<GroupAssignment>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupAssignment {
    /// Bumped on every rebalance of the group.
    pub generation: u64,
    /// The partitions the member owns.
    pub partitions: Vec<u32>,
}

impl GroupAssignment {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u64_le(self.generation);
        out.put_u32_le(u32::try_from(self.partitions.len()).expect("partitions fit a u32 count"));
        for &partition in &self.partitions {
            out.put_u32_le(partition);
        }
    }

    /// Appends the whole response: nothing for a non-member, else the assignment.
    pub fn encode_reply(assignment: Option<&Self>, out: &mut BytesMut) {
        if let Some(assignment) = assignment {
            assignment.encode(out);
        }
    }

    /// Reads one assignment.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let generation = reader.u64()?;
            let (count, hint) = reader.count(4)?;
            let mut partitions = Vec::with_capacity(hint);
            for _ in 0..count {
                partitions.push(reader.u32()?);
            }
            Ok(Self {
                generation,
                partitions,
            })
        })
    }

    /// Reads the whole response: `None` when it is empty (the caller is not a member).
    pub fn decode_reply(bytes: &[u8]) -> Result<Option<Self>, ErrorCode> {
        if bytes.is_empty() {
            return Ok(None);
        }
        Self::decode(bytes).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::test_support::encoded;

    #[test]
    fn requests_round_trip() {
        let (s, t, g) = (
            Identifier::Numeric(0),
            Identifier::Numeric(1),
            Identifier::Name("g".into()),
        );
        let create = CreateConsumerGroup {
            stream: s.clone(),
            topic: t.clone(),
            name: "readers".into(),
        };
        assert_eq!(
            CreateConsumerGroup::decode(&encoded(|out| create.encode(out))),
            Ok(create)
        );
        let get = GetConsumerGroup {
            stream: s.clone(),
            topic: t.clone(),
            group: g.clone(),
        };
        assert_eq!(
            GetConsumerGroup::decode(&encoded(|out| get.encode(out))),
            Ok(get)
        );
        let list = GetConsumerGroups {
            stream: s.clone(),
            topic: t.clone(),
        };
        assert_eq!(
            GetConsumerGroups::decode(&encoded(|out| list.encode(out))),
            Ok(list)
        );
        let delete = DeleteConsumerGroup {
            stream: s.clone(),
            topic: t.clone(),
            group: g.clone(),
        };
        assert_eq!(
            DeleteConsumerGroup::decode(&encoded(|out| delete.encode(out))),
            Ok(delete)
        );
        let join = JoinConsumerGroup {
            stream: s.clone(),
            topic: t.clone(),
            group: g.clone(),
        };
        assert_eq!(
            JoinConsumerGroup::decode(&encoded(|out| join.encode(out))),
            Ok(join)
        );
        let leave = LeaveConsumerGroup {
            stream: s,
            topic: t,
            group: g,
        };
        let bytes = encoded(|out| leave.encode(out));
        assert_eq!(LeaveConsumerGroup::decode(&bytes), Ok(leave));
        assert_eq!(
            LeaveConsumerGroup::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn sync_and_assignment_round_trip() {
        let sync = SyncConsumerGroup {
            stream: Identifier::Numeric(1),
            topic: Identifier::Name("t".into()),
            group: Identifier::Numeric(2),
        };
        let bytes = encoded(|out| sync.encode(out));
        assert_eq!(bytes.len(), 6 + 3 + 6);
        assert_eq!(SyncConsumerGroup::decode(&bytes), Ok(sync));

        let assignment = GroupAssignment {
            generation: 7,
            partitions: vec![0, 3],
        };
        let bytes = encoded(|out| GroupAssignment::encode_reply(Some(&assignment), out));
        assert_eq!(&bytes[..12], [7, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(GroupAssignment::decode_reply(&bytes), Ok(Some(assignment)));
        let none = encoded(|out| GroupAssignment::encode_reply(None, out));
        assert_eq!(GroupAssignment::decode_reply(&none), Ok(None));
        let owns_nothing = encoded(|out| GroupAssignment::default().encode(out));
        assert_eq!(owns_nothing.len(), 12);
        assert_eq!(
            GroupAssignment::decode_reply(&owns_nothing),
            Ok(Some(GroupAssignment::default()))
        );
        assert_eq!(
            GroupAssignment::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn responses_round_trip() {
        let header = GroupHeader {
            id: 0,
            partitions_count: 3,
            members_count: 2,
            name: "readers".into(),
        };
        let bytes = encoded(|out| header.encode(out));
        assert_eq!(bytes.len(), 13 + 7);
        let mut list = bytes.clone();
        list.extend_from_slice(&bytes);
        assert_eq!(
            GroupHeader::decode_list(&list),
            Ok(vec![header.clone(), header.clone()])
        );
        let details = GroupDetails {
            header,
            members: vec![
                GroupMember {
                    id: 0,
                    partitions: vec![0, 2],
                },
                GroupMember {
                    id: 1,
                    partitions: vec![1],
                },
            ],
        };
        let bytes = encoded(|out| details.encode(out));
        assert_eq!(GroupDetails::decode(&bytes), Ok(details));
        assert_eq!(
            GroupDetails::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }
}
