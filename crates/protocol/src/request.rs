//! A decoded request of any command: the server's entry point from a frame to a typed value.

use bytes::BytesMut;

use crate::code::CommandCode;
use crate::command::Command;
use crate::command::groups::*;
use crate::command::messages::*;
use crate::command::offsets::*;
use crate::command::streams::*;
use crate::command::system::*;
use crate::command::tokens::*;
use crate::command::topics::*;
use crate::command::users::*;
use crate::error::ErrorCode;

/// Declares [`Request`] with its decoder, encoder and code, and implements [`Command`] for
/// every request type, from the one table ([`for_each_command!`](crate::for_each_command)).
macro_rules! requests {
    ($($(#[$doc:meta])* $name:ident = $code:literal $($owned:ident)?,)+) => {
        /// One decoded request, one variant per [`CommandCode`], carrying its request type of
        /// the same name.
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Request {
            $($name($name),)+
        }

        $(impl Command for $name {
            const CODE: CommandCode = CommandCode::$name;
        })+

        impl Request {
            /// Decodes the payload of a frame with command `code`. An unknown code is
            /// 3 `InvalidCommand`. Only SendMessages keeps `payload` (it splits its messages
            /// off without copying); the others read it and drop it.
            pub fn decode(code: u32, payload: BytesMut) -> Result<Request, ErrorCode> {
                let code = CommandCode::from_u32(code).ok_or(ErrorCode::InvalidCommand)?;
                match code {
                    $(CommandCode::$name => {
                        decode_payload!($name, payload $(, $owned)?).map(Request::$name)
                    })+
                }
            }

            /// The command code of the request.
            pub fn code(&self) -> CommandCode {
                match self {
                    $(Request::$name(_) => CommandCode::$name,)+
                }
            }

            /// Appends the request's payload (without the frame header), as a client sends it.
            pub fn encode(&self, out: &mut BytesMut) {
                match self {
                    $(Request::$name(request) => request.encode(out),)+
                }
            }
        }
    };
}

/// One request type's decoder call: by reference, or (`owned`) taking the buffer.
macro_rules! decode_payload {
    ($name:ident, $payload:ident) => {
        $name::decode(&$payload)
    };
    ($name:ident, $payload:ident, owned) => {
        $name::decode($payload)
    };
}

crate::for_each_command!(requests);

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;
    use crate::consumer::Consumer;
    use crate::consumer::tests::any_consumer;
    use crate::identifier::Identifier;
    use crate::identifier::tests::any_identifier;
    use crate::message::encode_message;
    use crate::partitioning::Partitioning;
    use crate::partitioning::tests::any_partitioning;
    use crate::permissions::Permissions;
    use crate::permissions::tests::any_permissions;
    use crate::polling::PollingStrategy;
    use crate::polling::tests::any_strategy;

    fn numeric(id: u32) -> Identifier {
        Identifier::Numeric(id)
    }

    fn named(name: &str) -> Identifier {
        Identifier::Name(name.into())
    }

    fn send_messages() -> SendMessages {
        let mut block = Vec::new();
        encode_message(1, 2, b"hello", b"", &mut block);
        encode_message(
            0,
            3,
            b"world",
            b"\x02\x01\x00\x00\x00k\x02\x01\x00\x00\x00v",
            &mut block,
        );
        SendMessages {
            stream: numeric(0),
            topic: named("events"),
            partitioning: Partitioning::MessagesKey(bytes::Bytes::from_static(b"key")),
            messages_count: 2,
            messages: BytesMut::from(&block[..]),
            frames: None,
        }
    }

    /// One request of every command, in a fixed order (a property test below picks them by
    /// index).
    fn samples() -> Vec<Request> {
        let (s, t, g) = (numeric(0), named("topic"), named("group"));
        [
            system_samples(),
            user_samples(),
            message_and_offset_samples(&s, &t, &g),
            stream_and_topic_samples(&s, &t),
            group_samples(s, t, g),
        ]
        .concat()
    }

    /// The requests without a payload, then the system commands with one.
    fn system_samples() -> Vec<Request> {
        vec![
            Request::Ping(Ping),
            Request::GetStats(GetStats),
            Request::GetMe(GetMe),
            Request::GetClients(GetClients),
            Request::GetClusterMetadata(GetClusterMetadata),
            Request::GetUsers(GetUsers),
            Request::LogoutUser(LogoutUser),
            Request::GetPersonalAccessTokens(GetPersonalAccessTokens),
            Request::GetStreams(GetStreams),
            Request::GetShardStats(GetShardStats),
            Request::GetSnapshotFile(GetSnapshotFile {
                compression: 4,
                snapshot_types: vec![100],
            }),
            Request::GetClient(GetClient { client_id: 5 }),
        ]
    }

    /// The users and their personal access tokens.
    fn user_samples() -> Vec<Request> {
        vec![
            Request::GetUser(GetUser { user: numeric(0) }),
            Request::CreateUser(CreateUser {
                username: "alice".into(),
                password: "secret".into(),
                status: UserStatus::Active,
                permissions: Some(Permissions::root()),
            }),
            Request::DeleteUser(DeleteUser {
                user: named("alice"),
            }),
            Request::UpdateUser(UpdateUser {
                user: numeric(1),
                username: None,
                status: Some(UserStatus::Inactive),
            }),
            Request::UpdatePermissions(UpdatePermissions {
                user: numeric(1),
                permissions: None,
            }),
            Request::ChangePassword(ChangePassword {
                user: numeric(1),
                current_password: "old-pass".into(),
                new_password: "new-pass".into(),
            }),
            Request::LoginUser(LoginUser {
                username: "iggy".into(),
                password: "iggy".into(),
                version: Some("0.10.0".into()),
                context: None,
            }),
            Request::CreatePersonalAccessToken(CreatePersonalAccessToken {
                name: "token".into(),
                expiry_us: 0,
            }),
            Request::DeletePersonalAccessToken(DeletePersonalAccessToken {
                name: "token".into(),
            }),
            Request::LoginWithPersonalAccessToken(LoginWithPersonalAccessToken {
                token: "t".repeat(68),
            }),
        ]
    }

    fn message_and_offset_samples(s: &Identifier, t: &Identifier, g: &Identifier) -> Vec<Request> {
        let target = OffsetTarget {
            consumer: Consumer::Single(named("worker")),
            stream: numeric(1),
            topic: numeric(2),
            partition_id: Some(3),
        };
        vec![
            Request::PollMessages(PollMessages {
                consumer: Consumer::Group(g.clone()),
                stream: s.clone(),
                topic: t.clone(),
                partition_id: None,
                strategy: PollingStrategy::Timestamp(99),
                count: 100,
                auto_commit: false,
                wait_ms: 0,
            }),
            Request::SendMessages(send_messages()),
            Request::FlushUnsavedBuffer(FlushUnsavedBuffer {
                stream: s.clone(),
                topic: t.clone(),
                partition_id: 0,
                fsync: false,
            }),
            Request::GetConsumerOffset(GetConsumerOffset {
                target: target.clone(),
            }),
            Request::StoreConsumerOffset(StoreConsumerOffset {
                target: target.clone(),
                offset: 7,
            }),
            Request::DeleteConsumerOffset(DeleteConsumerOffset { target }),
        ]
    }

    fn stream_and_topic_samples(s: &Identifier, t: &Identifier) -> Vec<Request> {
        vec![
            Request::GetStream(GetStream { stream: s.clone() }),
            Request::CreateStream(CreateStream {
                name: "orders".into(),
            }),
            Request::DeleteStream(DeleteStream { stream: s.clone() }),
            Request::UpdateStream(UpdateStream {
                stream: s.clone(),
                name: "renamed".into(),
            }),
            Request::PurgeStream(PurgeStream { stream: s.clone() }),
            Request::GetTopic(GetTopic {
                stream: s.clone(),
                topic: t.clone(),
            }),
            Request::GetTopics(GetTopics { stream: s.clone() }),
            Request::CreateTopic(CreateTopic {
                stream: s.clone(),
                partitions_count: 3,
                compression: CompressionAlgorithm::None,
                message_expiry_us: EXPIRY_NEVER,
                max_topic_size_bytes: TOPIC_SIZE_UNLIMITED,
                replication_factor: 1,
                name: "topic".into(),
            }),
            Request::DeleteTopic(DeleteTopic {
                stream: s.clone(),
                topic: t.clone(),
            }),
            Request::UpdateTopic(UpdateTopic {
                stream: s.clone(),
                topic: t.clone(),
                compression: Some(CompressionAlgorithm::Gzip),
                message_expiry_us: Some(1_000_000),
                max_topic_size_bytes: Some(1 << 30),
                replication_factor: 0,
                name: "topic2".into(),
            }),
            Request::PurgeTopic(PurgeTopic {
                stream: s.clone(),
                topic: t.clone(),
            }),
            Request::CreatePartitions(CreatePartitions {
                stream: s.clone(),
                topic: t.clone(),
                partitions_count: 2,
            }),
            Request::DeletePartitions(DeletePartitions {
                stream: s.clone(),
                topic: t.clone(),
                partitions_count: 1,
            }),
            Request::DeleteSegments(DeleteSegments {
                stream: s.clone(),
                topic: t.clone(),
                partition_id: 0,
                segments_count: 4,
            }),
        ]
    }

    fn group_samples(s: Identifier, t: Identifier, g: Identifier) -> Vec<Request> {
        vec![
            Request::GetConsumerGroup(GetConsumerGroup {
                stream: s.clone(),
                topic: t.clone(),
                group: g.clone(),
            }),
            Request::GetConsumerGroups(GetConsumerGroups {
                stream: s.clone(),
                topic: t.clone(),
            }),
            Request::CreateConsumerGroup(CreateConsumerGroup {
                stream: s.clone(),
                topic: t.clone(),
                name: "readers".into(),
            }),
            Request::DeleteConsumerGroup(DeleteConsumerGroup {
                stream: s.clone(),
                topic: t.clone(),
                group: g.clone(),
            }),
            Request::JoinConsumerGroup(JoinConsumerGroup {
                stream: s.clone(),
                topic: t.clone(),
                group: g.clone(),
            }),
            Request::LeaveConsumerGroup(LeaveConsumerGroup {
                stream: s.clone(),
                topic: t.clone(),
                group: g.clone(),
            }),
            Request::SyncConsumerGroup(SyncConsumerGroup {
                stream: s,
                topic: t,
                group: g,
            }),
        ]
    }

    fn encoded(request: &Request) -> BytesMut {
        let mut out = BytesMut::new();
        request.encode(&mut out);
        out
    }

    #[test]
    fn every_command_round_trips_through_request() {
        let samples = samples();
        let codes: HashSet<_> = samples.iter().map(Request::code).collect();
        assert_eq!(
            codes.len(),
            CommandCode::ALL.len(),
            "one sample per command"
        );
        for request in samples {
            let payload = encoded(&request);
            assert_eq!(
                Request::decode(request.code().as_u32(), payload),
                Ok(request.clone()),
                "{}",
                request.code()
            );
        }
    }

    #[test]
    fn unknown_codes_are_invalid_command() {
        for code in [0, 2, 13, 40, 103, 9001, u32::MAX] {
            assert_eq!(
                Request::decode(code, BytesMut::new()),
                Err(ErrorCode::InvalidCommand)
            );
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut payload = encoded(&Request::GetClient(GetClient { client_id: 1 }));
        payload.extend_from_slice(b"extra");
        assert_eq!(
            Request::decode(21, payload),
            Ok(Request::GetClient(GetClient { client_id: 1 }))
        );
    }

    fn any_code() -> impl Strategy<Value = u32> {
        prop_oneof![
            proptest::sample::select(CommandCode::ALL).prop_map(CommandCode::as_u32),
            any::<u32>(),
        ]
    }

    fn any_messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let message = (
            any::<u128>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..100),
            proptest::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(id, origin_timestamp, payload, headers)| {
                let mut out = Vec::new();
                encode_message(id, origin_timestamp, &payload, &headers, &mut out);
                out
            });
        proptest::collection::vec(message, 1..6)
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            code in any_code(),
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let _ = Request::decode(code, BytesMut::from(&bytes[..]));
            for known in CommandCode::ALL {
                let _ = Request::decode(known.as_u32(), BytesMut::from(&bytes[..]));
            }
        }

        #[test]
        fn decoding_mutated_requests_never_panics(
            index in 0..48usize,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let request = &samples()[index];
            let mut payload = encoded(request);
            for (at, value) in flips {
                if !payload.is_empty() {
                    let at = at.index(payload.len());
                    payload[at] = value;
                }
            }
            let keep = cut.index(payload.len() + 1);
            payload.truncate(keep);
            let _ = Request::decode(request.code().as_u32(), payload);
        }

        #[test]
        fn send_messages_round_trips(
            stream in any_identifier(),
            topic in any_identifier(),
            partitioning in any_partitioning(),
            messages in any_messages(),
        ) {
            let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            let mut payload = BytesMut::new();
            SendMessages::encode_frame_payload(&stream, &topic, &partitioning, &slices, &mut payload);
            let decoded = SendMessages::decode(payload.clone()).expect("valid batch");
            prop_assert_eq!(&decoded.stream, &stream);
            prop_assert_eq!(&decoded.topic, &topic);
            prop_assert_eq!(&decoded.partitioning, &partitioning);
            prop_assert_eq!(decoded.messages_count as usize, messages.len());
            prop_assert_eq!(&decoded.messages[..], &messages.concat()[..]);
            let request = Request::SendMessages(decoded);
            prop_assert_eq!(encoded(&request), payload);
        }

        #[test]
        fn permission_requests_round_trip(
            user in any_identifier(),
            permissions in proptest::option::of(any_permissions()),
        ) {
            let request = Request::UpdatePermissions(UpdatePermissions { user, permissions });
            prop_assert_eq!(Request::decode(36, encoded(&request)), Ok(request));
        }

        #[test]
        fn poll_requests_round_trip(
            consumer in any_consumer(),
            stream in any_identifier(),
            topic in any_identifier(),
            partition_id in proptest::option::of(any::<u32>()),
            strategy in any_strategy(),
            count in any::<u32>(),
            auto_commit in any::<bool>(),
            wait_ms in prop_oneof![Just(0u32), any::<u32>()],
        ) {
            let request = Request::PollMessages(PollMessages {
                consumer, stream, topic, partition_id, strategy, count, auto_commit, wait_ms,
            });
            prop_assert_eq!(Request::decode(100, encoded(&request)), Ok(request));
        }
    }
}
