//! Poll routing of the 0.9 SDK on a roster of more than one node (PROTOCOL-0.9.md §8.9, and
//! `iggy` 0.11.0's `poll_routing.rs`, which §8.9 summarises): auto-commit polls and consumer
//! offset writes go to a partition's "primary" over a data connection of their own.
//!
//! ```text
//! 103 GetPollRouting            body: a PollMessages body          (main connection)
//! 123 GetConsumerOffsetRouting  body: Consumer | stream | topic | partition flag | partition
//!     reply (both)              client u128 | session u64 | metadata_watermark u64 | ClusterNode
//!  14 AttachConsumerSession     body: client u128 | session u64 | metadata_watermark u64
//!                               (data connection, after its own Register; empty reply)
//! 104 PollMessagesOnPrimary     body and reply: PollMessages's   (data connection)
//! ```
//!
//! All four travel as operation 2 (NonReplicated) with the code in the header. The data
//! connection's offset writes are the ordinary 121 and 122, numbered in its own session.

use bytes::{BufMut, BytesMut};

use crate::command::system::ClusterNode;
use crate::error::ErrorCode;
use crate::reader::Reader;

/// AttachConsumerSession.
pub const ATTACH_CONSUMER_SESSION: u32 = 14;
/// GetPollRouting.
pub const GET_POLL_ROUTING: u32 = 103;
/// PollMessagesOnPrimary.
pub const POLL_MESSAGES_ON_PRIMARY: u32 = 104;
/// GetConsumerOffsetRouting.
pub const GET_CONSUMER_OFFSET_ROUTING: u32 = 123;

/// The routing commands, which exist in the 0.9 envelope only.
pub const ROUTING_CODES: [u32; 4] = [
    ATTACH_CONSUMER_SESSION,
    GET_POLL_ROUTING,
    POLL_MESSAGES_ON_PRIMARY,
    GET_CONSUMER_OFFSET_ROUTING,
];

/// Bytes of a [`SessionRef`].
pub const SESSION_REF_BYTES: usize = 32;

/// A client's main session, as a route names it and a data connection attaches to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionRef {
    /// The client id of the main connection's Register.
    pub client: u128,
    /// The session number Register gave it.
    pub session: u64,
    /// The metadata commit the route was made at.
    pub metadata_watermark: u64,
}

impl SessionRef {
    /// Appends the 32 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u128_le(self.client);
        out.put_u64_le(self.session);
        out.put_u64_le(self.metadata_watermark);
    }

    /// Reads the AttachConsumerSession body: exactly 32 bytes.
    pub fn decode(body: &[u8]) -> Result<Self, ErrorCode> {
        let mut reader = Reader::new(body);
        let session = Self::read(&mut reader)?;
        if !reader.is_empty() {
            return Err(ErrorCode::InvalidCommand);
        }
        Ok(session)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            client: reader.u128()?,
            session: reader.u64()?,
            metadata_watermark: reader.u64()?,
        })
    }
}

/// The reply to GetPollRouting and GetConsumerOffsetRouting: whose session, and the node to
/// send the routed request to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The asking client's session, for its data connection's attach.
    pub session: SessionRef,
    /// The primary.
    pub node: ClusterNode,
}

impl Route {
    /// Appends the reply body.
    pub fn encode(&self, out: &mut BytesMut) {
        self.session.encode(out);
        self.node.encode(out);
    }

    /// Reads a reply body (trailing bytes ignored, as the SDK does).
    pub fn decode(body: &[u8]) -> Result<Self, ErrorCode> {
        let mut reader = Reader::new(body);
        Ok(Self {
            session: SessionRef::read(&mut reader)?,
            node: ClusterNode::decode(&mut reader)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node() -> impl Strategy<Value = ClusterNode> {
        (
            "[a-z0-9-]{0,20}",
            "[0-9.]{0,15}",
            any::<[u16; 4]>(),
            0u8..2,
            0u8..5,
        )
            .prop_map(|(name, ip, ports, role, status)| ClusterNode {
                name,
                ip,
                tcp_port: ports[0],
                quic_port: ports[1],
                http_port: ports[2],
                websocket_port: ports[3],
                role,
                status,
            })
    }

    fn session() -> impl Strategy<Value = SessionRef> {
        (any::<u128>(), any::<u64>(), any::<u64>()).prop_map(
            |(client, session, metadata_watermark)| SessionRef {
                client,
                session,
                metadata_watermark,
            },
        )
    }

    proptest! {
        #[test]
        fn routes_and_attachments_round_trip(session in session(), node in node()) {
            let mut out = BytesMut::new();
            session.encode(&mut out);
            prop_assert_eq!(out.len(), SESSION_REF_BYTES);
            prop_assert_eq!(SessionRef::decode(&out), Ok(session));
            let route = Route { session, node };
            let mut out = BytesMut::new();
            route.encode(&mut out);
            prop_assert_eq!(Route::decode(&out), Ok(route));
        }

        #[test]
        fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let attached = SessionRef::decode(&bytes);
            prop_assert_eq!(attached.is_ok(), bytes.len() == SESSION_REF_BYTES);
            let _ = Route::decode(&bytes);
        }
    }

    #[test]
    fn an_attach_body_as_the_sdk_sends_it() {
        // client 0x0102…, session 7, watermark 9, little-endian.
        let mut body = Vec::new();
        body.extend_from_slice(&0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10u128.to_le_bytes());
        body.extend_from_slice(&7u64.to_le_bytes());
        body.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(
            SessionRef::decode(&body),
            Ok(SessionRef {
                client: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10,
                session: 7,
                metadata_watermark: 9,
            })
        );
        assert_eq!(
            SessionRef::decode(&body[..31]),
            Err(ErrorCode::InvalidCommand)
        );
        body.push(0);
        assert_eq!(SessionRef::decode(&body), Err(ErrorCode::InvalidCommand));
    }
}
