//! System commands (PROTOCOL.md §5.1) and galgo's GetShardStats extension.

use bytes::{BufMut, BytesMut};

use super::{decode_records, decode_with, empty_request};
use crate::error::ErrorCode;
use crate::reader::Reader;
use crate::writer::put_str32;

empty_request!(
    /// Keep-alive (code 1); needs no login. Response: empty.
    Ping
);
empty_request!(
    /// Server statistics (code 10). Response: [`Stats`].
    GetStats
);
empty_request!(
    /// The calling connection's client record (code 20). Response: [`ClientInfo`] details.
    GetMe
);
empty_request!(
    /// Every client (code 22). Response: [`ClientInfo`] summaries back to back.
    GetClients
);
empty_request!(
    /// Cluster name and nodes (code 12). Response: [`ClusterMetadata`].
    GetClusterMetadata
);
empty_request!(
    /// galgo's own extension (code 9000), not an Iggy command: per-shard counters.
    /// Response: [`ShardStats`].
    GetShardStats
);

/// One client's record (code 21). Response: [`ClientInfo`] details, or empty when unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetClient {
    /// The client id; 0 is 101 `InvalidClientId` (checked by the server, not the codec).
    pub client_id: u32,
}

impl GetClient {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                client_id: reader.u32()?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.client_id);
    }
}

/// Snapshot compression codes (PROTOCOL.md §4.6): 1 Stored … 6 Xz.
const SNAPSHOT_COMPRESSIONS: std::ops::RangeInclusive<u8> = 1..=6;
/// The snapshot type that stands for every type.
pub const SNAPSHOT_TYPE_ALL: u8 = 100;

/// A diagnostics snapshot (code 11). Response: the raw bytes of a ZIP archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetSnapshotFile {
    /// 1 Stored, 2 Deflated, 3 Bzip2, 4 Zstd, 5 Lzma, 6 Xz.
    pub compression: u8,
    /// 1..=6 or [`SNAPSHOT_TYPE_ALL`]; at most 255 entries.
    pub snapshot_types: Vec<u8>,
}

impl GetSnapshotFile {
    /// Reads the request payload; an unknown compression or type is 3 `InvalidCommand`.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            let compression = reader.u8()?;
            let count = reader.u8()?;
            let snapshot_types = reader.bytes(usize::from(count))?.to_vec();
            let type_is_known = |&code: &u8| (1..=6).contains(&code) || code == SNAPSHOT_TYPE_ALL;
            if !SNAPSHOT_COMPRESSIONS.contains(&compression)
                || !snapshot_types.iter().all(type_is_known)
            {
                return Err(ErrorCode::InvalidCommand);
            }
            Ok(Self {
                compression,
                snapshot_types,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        let count = u8::try_from(self.snapshot_types.len()).expect("at most 255 snapshot types");
        out.put_u8(self.compression);
        out.put_u8(count);
        out.put_slice(&self.snapshot_types);
    }
}

/// Cache counters of one partition, an entry of [`Stats::cache_metrics`] (32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct CacheMetric {
    pub stream_id: u32,
    pub topic_id: u32,
    pub partition_id: u32,
    pub hits: u64,
    pub misses: u64,
    pub hit_ratio: f32,
}

/// The GetStats response. The fixed part is 108 bytes; the strings and lists follow.
#[derive(Clone, Debug, Default, PartialEq)]
#[allow(missing_docs)]
pub struct Stats {
    pub process_id: u32,
    pub cpu_usage: f32,
    pub total_cpu_usage: f32,
    pub memory_usage_bytes: u64,
    pub total_memory_bytes: u64,
    pub available_memory_bytes: u64,
    /// Whole seconds since start, counted in µs on the wire.
    pub run_time_us: u64,
    pub start_time_us: u64,
    pub read_bytes: u64,
    pub written_bytes: u64,
    pub messages_size_bytes: u64,
    pub streams_count: u32,
    pub topics_count: u32,
    pub partitions_count: u32,
    pub segments_count: u32,
    pub messages_count: u64,
    pub clients_count: u32,
    pub consumer_groups_count: u32,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
    pub iggy_server_version: String,
    /// `major * 1_000_000 + minor * 1_000 + patch`; 0 on the wire means absent.
    pub iggy_server_semver: Option<u32>,
    pub cache_metrics: Vec<CacheMetric>,
    pub threads_count: u32,
    pub free_disk_space_bytes: u64,
    pub total_disk_space_bytes: u64,
}

const CACHE_METRIC_BYTES: usize = 32;

impl Stats {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_fixed(out);
        for text in [
            &self.hostname,
            &self.os_name,
            &self.os_version,
            &self.kernel_version,
            &self.iggy_server_version,
        ] {
            put_str32(out, text);
        }
        out.put_u32_le(self.iggy_server_semver.unwrap_or(0));
        out.put_u32_le(self.cache_metrics.len() as u32);
        for metric in &self.cache_metrics {
            out.put_u32_le(metric.stream_id);
            out.put_u32_le(metric.topic_id);
            out.put_u32_le(metric.partition_id);
            out.put_u64_le(metric.hits);
            out.put_u64_le(metric.misses);
            out.put_f32_le(metric.hit_ratio);
        }
        out.put_u32_le(self.threads_count);
        out.put_u64_le(self.free_disk_space_bytes);
        out.put_u64_le(self.total_disk_space_bytes);
    }

    fn encode_fixed(&self, out: &mut BytesMut) {
        out.put_u32_le(self.process_id);
        out.put_f32_le(self.cpu_usage);
        out.put_f32_le(self.total_cpu_usage);
        for value in [
            self.memory_usage_bytes,
            self.total_memory_bytes,
            self.available_memory_bytes,
            self.run_time_us,
            self.start_time_us,
            self.read_bytes,
            self.written_bytes,
            self.messages_size_bytes,
        ] {
            out.put_u64_le(value);
        }
        out.put_u32_le(self.streams_count);
        out.put_u32_le(self.topics_count);
        out.put_u32_le(self.partitions_count);
        out.put_u32_le(self.segments_count);
        out.put_u64_le(self.messages_count);
        out.put_u32_le(self.clients_count);
        out.put_u32_le(self.consumer_groups_count);
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let mut stats = Self::decode_fixed(reader)?;
            stats.hostname = reader.str32()?.to_owned();
            stats.os_name = reader.str32()?.to_owned();
            stats.os_version = reader.str32()?.to_owned();
            stats.kernel_version = reader.str32()?.to_owned();
            stats.iggy_server_version = reader.str32()?.to_owned();
            stats.iggy_server_semver = Some(reader.u32()?).filter(|&semver| semver != 0);
            let (count, hint) = reader.count(CACHE_METRIC_BYTES)?;
            stats.cache_metrics = Vec::with_capacity(hint);
            for _ in 0..count {
                stats.cache_metrics.push(CacheMetric {
                    stream_id: reader.u32()?,
                    topic_id: reader.u32()?,
                    partition_id: reader.u32()?,
                    hits: reader.u64()?,
                    misses: reader.u64()?,
                    hit_ratio: reader.f32()?,
                });
            }
            stats.threads_count = reader.u32()?;
            stats.free_disk_space_bytes = reader.u64()?;
            stats.total_disk_space_bytes = reader.u64()?;
            Ok(stats)
        })
    }

    fn decode_fixed(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            process_id: reader.u32()?,
            cpu_usage: reader.f32()?,
            total_cpu_usage: reader.f32()?,
            memory_usage_bytes: reader.u64()?,
            total_memory_bytes: reader.u64()?,
            available_memory_bytes: reader.u64()?,
            run_time_us: reader.u64()?,
            start_time_us: reader.u64()?,
            read_bytes: reader.u64()?,
            written_bytes: reader.u64()?,
            messages_size_bytes: reader.u64()?,
            streams_count: reader.u32()?,
            topics_count: reader.u32()?,
            partitions_count: reader.u32()?,
            segments_count: reader.u32()?,
            messages_count: reader.u64()?,
            clients_count: reader.u32()?,
            consumer_groups_count: reader.u32()?,
            ..Self::default()
        })
    }
}

/// Transport code of a TCP client.
pub const TRANSPORT_TCP: u8 = 1;
/// Transport code of a QUIC client.
pub const TRANSPORT_QUIC: u8 = 2;
/// Transport code of an HTTP client.
pub const TRANSPORT_HTTP: u8 = 3;
/// Transport code of a WebSocket client.
pub const TRANSPORT_WEBSOCKET: u8 = 4;
/// The user id that means "not logged in" in a client record.
const NO_USER_ID: u32 = u32::MAX;
const CONSUMER_GROUP_REF_BYTES: usize = 12;

/// A consumer group a client has joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ConsumerGroupRef {
    pub stream_id: u32,
    pub topic_id: u32,
    pub group_id: u32,
}

/// A client session: the GetMe and GetClient response ("ClientDetails"), and in summary form
/// ("Client") a GetClients entry.
///
/// ```text
/// Client:        client_id u32 | user_id u32 (MAX = none) | transport u8 | address str32
///                | consumer_groups_count u32
/// ClientDetails: Client | count × [stream_id u32 | topic_id u32 | group_id u32]
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// XXH32 of the peer address.
    pub client_id: u32,
    /// The logged-in user, if any.
    pub user_id: Option<u32>,
    /// One of the `TRANSPORT_*` codes.
    pub transport: u8,
    /// The peer socket address as text, e.g. `"127.0.0.1:53412"`.
    pub address: String,
    /// The groups the client has joined.
    pub consumer_groups: Vec<ConsumerGroupRef>,
}

/// A GetClients entry: a client record without its group list.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ClientSummary {
    pub client_id: u32,
    pub user_id: Option<u32>,
    pub transport: u8,
    pub address: String,
    pub consumer_groups_count: u32,
}

impl ClientSummary {
    fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            client_id: reader.u32()?,
            user_id: Some(reader.u32()?).filter(|&id| id != NO_USER_ID),
            transport: reader.u8()?,
            address: reader.str32()?.to_owned(),
            consumer_groups_count: reader.u32()?,
        })
    }
}

impl ClientInfo {
    /// The record as GetClients lists it.
    pub fn summary(&self) -> ClientSummary {
        ClientSummary {
            client_id: self.client_id,
            user_id: self.user_id,
            transport: self.transport,
            address: self.address.clone(),
            consumer_groups_count: self.consumer_groups.len() as u32,
        }
    }

    /// Appends the `Client` record (a GetClients entry).
    pub fn encode_summary(&self, out: &mut BytesMut) {
        debug_assert_ne!(self.user_id, Some(NO_USER_ID), "u32::MAX means no user");
        out.put_u32_le(self.client_id);
        out.put_u32_le(self.user_id.unwrap_or(NO_USER_ID));
        out.put_u8(self.transport);
        put_str32(out, &self.address);
        out.put_u32_le(self.consumer_groups.len() as u32);
    }

    /// Appends the `ClientDetails` record (the GetMe and GetClient response).
    pub fn encode_details(&self, out: &mut BytesMut) {
        self.encode_summary(out);
        for group in &self.consumer_groups {
            out.put_u32_le(group.stream_id);
            out.put_u32_le(group.topic_id);
            out.put_u32_le(group.group_id);
        }
    }

    /// Reads one `Client` record.
    pub fn decode_summary(bytes: &[u8]) -> Result<ClientSummary, ErrorCode> {
        decode_with(bytes, ClientSummary::decode)
    }

    /// Reads a GetClients response: `Client` records back to back.
    pub fn decode_summary_list(bytes: &[u8]) -> Result<Vec<ClientSummary>, ErrorCode> {
        decode_records(bytes, ClientSummary::decode)
    }

    /// Reads a `ClientDetails` record.
    pub fn decode_details(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let summary = ClientSummary::decode(reader)?;
            let hint = (summary.consumer_groups_count as usize)
                .min(reader.remaining() / CONSUMER_GROUP_REF_BYTES);
            let mut consumer_groups = Vec::with_capacity(hint);
            for _ in 0..summary.consumer_groups_count {
                consumer_groups.push(ConsumerGroupRef {
                    stream_id: reader.u32()?,
                    topic_id: reader.u32()?,
                    group_id: reader.u32()?,
                });
            }
            Ok(Self {
                client_id: summary.client_id,
                user_id: summary.user_id,
                transport: summary.transport,
                address: summary.address,
                consumer_groups,
            })
        })
    }
}

/// Role code of the cluster leader.
pub const NODE_ROLE_LEADER: u8 = 0;
/// Role code of a follower.
pub const NODE_ROLE_FOLLOWER: u8 = 1;
/// Status code of a healthy node.
pub const NODE_STATUS_HEALTHY: u8 = 0;
/// Status code of a node that cannot be reached.
pub const NODE_STATUS_UNREACHABLE: u8 = 3;

/// One node of [`ClusterMetadata`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ClusterNode {
    pub name: String,
    pub ip: String,
    pub tcp_port: u16,
    pub quic_port: u16,
    pub http_port: u16,
    pub websocket_port: u16,
    /// 0 leader, 1 follower.
    pub role: u8,
    /// 0 healthy, 1 starting, 2 stopping, 3 unreachable, 4 maintenance.
    pub status: u8,
}

impl ClusterNode {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_str32(out, &self.name);
        put_str32(out, &self.ip);
        for port in [
            self.tcp_port,
            self.quic_port,
            self.http_port,
            self.websocket_port,
        ] {
            out.put_u16_le(port);
        }
        out.put_u8(self.role);
        out.put_u8(self.status);
    }

    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        Ok(Self {
            name: reader.str32()?.to_owned(),
            ip: reader.str32()?.to_owned(),
            tcp_port: reader.u16()?,
            quic_port: reader.u16()?,
            http_port: reader.u16()?,
            websocket_port: reader.u16()?,
            role: reader.u8()?,
            status: reader.u8()?,
        })
    }
}

/// The GetClusterMetadata response: `name str32 | nodes_count u32 | nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterMetadata {
    /// The cluster name (`"single-node"` without clustering).
    pub name: String,
    /// The nodes.
    pub nodes: Vec<ClusterNode>,
}

/// Smallest encoded node: two empty strings, four ports, role and status.
const CLUSTER_NODE_BYTES_MIN: usize = 4 + 4 + 8 + 2;

impl ClusterMetadata {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        put_str32(out, &self.name);
        out.put_u32_le(self.nodes.len() as u32);
        for node in &self.nodes {
            node.encode(out);
        }
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let name = reader.str32()?.to_owned();
            let (count, hint) = reader.count(CLUSTER_NODE_BYTES_MIN)?;
            let mut nodes = Vec::with_capacity(hint);
            for _ in 0..count {
                nodes.push(ClusterNode::decode(reader)?);
            }
            Ok(Self { name, nodes })
        })
    }
}

/// Counters of one shard, an entry of [`ShardStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardCounters {
    /// The shard's index.
    pub shard_id: u32,
    /// Cross-shard calls this shard sent.
    pub calls_sent: u64,
    /// Cross-shard calls this shard received.
    pub calls_received: u64,
    /// Metadata events this shard applied.
    pub events_applied: u64,
    /// Client connections the shard owns.
    pub connections: u32,
    /// Partitions the shard owns.
    pub partitions: u32,
}

/// Bytes of one [`ShardCounters`] record.
pub const SHARD_COUNTERS_BYTES: usize = 40;

/// The GetShardStats response, galgo's own layout:
///
/// ```text
/// count u32 | count × 40-byte records:
///   0 shard_id u32 | 4 connections u32 | 8 partitions u32 | 12 reserved u32 (0)
///   16 calls_sent u64 | 24 calls_received u64 | 32 events_applied u64
/// ```
/// The u32 fields come first and a reserved word pads them, so every u64 sits 8-aligned
/// within its record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// One entry per shard.
    pub shards: Vec<ShardCounters>,
}

impl ShardStats {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.shards.len() as u32);
        for shard in &self.shards {
            let start = out.len();
            out.put_u32_le(shard.shard_id);
            out.put_u32_le(shard.connections);
            out.put_u32_le(shard.partitions);
            out.put_u32_le(0);
            out.put_u64_le(shard.calls_sent);
            out.put_u64_le(shard.calls_received);
            out.put_u64_le(shard.events_applied);
            debug_assert_eq!(out.len() - start, SHARD_COUNTERS_BYTES);
        }
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let (count, hint) = reader.count(SHARD_COUNTERS_BYTES)?;
            let mut shards = Vec::with_capacity(hint);
            for _ in 0..count {
                let shard_id = reader.u32()?;
                let connections = reader.u32()?;
                let partitions = reader.u32()?;
                let _reserved = reader.u32()?;
                shards.push(ShardCounters {
                    shard_id,
                    connections,
                    partitions,
                    calls_sent: reader.u64()?,
                    calls_received: reader.u64()?,
                    events_applied: reader.u64()?,
                });
            }
            Ok(Self { shards })
        })
    }
}

/// Scope code of the topic option catalog (DescribeOptions).
pub const OPTIONS_SCOPE_TOPIC: u8 = 1;
/// Scope code of the stream option catalog.
pub const OPTIONS_SCOPE_STREAM: u8 = 2;
/// Scope code of the user option catalog.
pub const OPTIONS_SCOPE_USER: u8 = 3;

/// Which resource's option catalog DescribeOptions asks for (one byte; anything else is 3).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionsScope {
    /// Topics.
    Topic = OPTIONS_SCOPE_TOPIC,
    /// Streams.
    Stream = OPTIONS_SCOPE_STREAM,
    /// Users.
    User = OPTIONS_SCOPE_USER,
}

impl OptionsScope {
    /// The wire byte.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// The scope of a wire byte; an unknown one is 3 `InvalidCommand`, as the SDK's decoder
    /// refuses it.
    pub fn from_u8(code: u8) -> Result<Self, ErrorCode> {
        match code {
            OPTIONS_SCOPE_TOPIC => Ok(OptionsScope::Topic),
            OPTIONS_SCOPE_STREAM => Ok(OptionsScope::Stream),
            OPTIONS_SCOPE_USER => Ok(OptionsScope::User),
            _ => Err(ErrorCode::InvalidCommand),
        }
    }
}

/// The option catalog of a resource (code 13, 0.9 generation): `scope u8`.
/// Response: [`OptionDescriptions`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescribeOptions {
    /// Whose catalog.
    pub scope: OptionsScope,
}

impl DescribeOptions {
    /// Reads the request payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(payload, |reader| {
            Ok(Self {
                scope: OptionsScope::from_u8(reader.u8()?)?,
            })
        })
    }

    /// Appends the request payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.scope.as_u8());
    }
}

/// One entry of a catalog: `key name8 | kind u8 | default_len u32 | default | description_len
/// u32 | description`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionDescription {
    /// The option key, 1..=255 bytes.
    pub key: String,
    /// The value kind the server stores the key as (a user-header kind, PROTOCOL.md §4.8).
    pub kind: u8,
    /// The default in `kind`'s encoding; empty when the key has none.
    pub default_value: Vec<u8>,
    /// Human-readable text.
    pub description: String,
}

impl OptionDescription {
    fn encode(&self, out: &mut BytesMut) {
        crate::writer::put_name8(out, &self.key);
        out.put_u8(self.kind);
        let default_len = u32::try_from(self.default_value.len()).expect("default fits a u32");
        out.put_u32_le(default_len);
        out.put_slice(&self.default_value);
        put_str32(out, &self.description);
    }

    fn decode(reader: &mut Reader<'_>) -> Result<Self, ErrorCode> {
        let key = reader.name8()?.to_owned();
        let kind = reader.u8()?;
        let default_len = reader.u32()?;
        let default_len = usize::try_from(default_len).map_err(|_| ErrorCode::InvalidCommand)?;
        let default_value = reader.bytes(default_len)?.to_vec();
        // The SDK reads the description lossily; a catalog is text for people, not a key.
        let description_len = reader.u32()?;
        let description_len =
            usize::try_from(description_len).map_err(|_| ErrorCode::InvalidCommand)?;
        let description = String::from_utf8_lossy(reader.bytes(description_len)?).into_owned();
        Ok(Self {
            key,
            kind,
            default_value,
            description,
        })
    }
}

/// Smallest encoded [`OptionDescription`]: a one-byte key, kind and two zero lengths.
const OPTION_DESCRIPTION_BYTES_MIN: usize = 2 + 1 + 4 + 4;

/// The DescribeOptions response: `count u32`, then that many [`OptionDescription`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionDescriptions {
    /// The catalog, in the server's order.
    pub entries: Vec<OptionDescription>,
}

impl OptionDescriptions {
    /// Appends the response payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(u32::try_from(self.entries.len()).expect("catalog fits a u32 count"));
        for entry in &self.entries {
            entry.encode(out);
        }
    }

    /// Reads the response payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, ErrorCode> {
        decode_with(bytes, |reader| {
            let (count, hint) = reader.count(OPTION_DESCRIPTION_BYTES_MIN)?;
            let mut entries = Vec::with_capacity(hint);
            for _ in 0..count {
                entries.push(OptionDescription::decode(reader)?);
            }
            Ok(Self { entries })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::command::test_support::encoded;

    fn client() -> ClientInfo {
        ClientInfo {
            client_id: 77,
            user_id: Some(0),
            transport: TRANSPORT_TCP,
            address: "127.0.0.1:53412".into(),
            consumer_groups: vec![
                ConsumerGroupRef {
                    stream_id: 1,
                    topic_id: 2,
                    group_id: 3,
                },
                ConsumerGroupRef {
                    stream_id: 4,
                    topic_id: 5,
                    group_id: 6,
                },
            ],
        }
    }

    #[test]
    fn describe_options_round_trips() {
        let request = DescribeOptions {
            scope: OptionsScope::User,
        };
        let bytes = encoded(|out| request.encode(out));
        assert_eq!(&bytes[..], [3]);
        assert_eq!(DescribeOptions::decode(&bytes), Ok(request));
        for bad in [[0u8], [4]] {
            assert_eq!(
                DescribeOptions::decode(&bad),
                Err(ErrorCode::InvalidCommand)
            );
        }
        let reply = OptionDescriptions {
            entries: vec![OptionDescription {
                key: "segment_size".into(),
                kind: 12,
                default_value: (1u64 << 30).to_le_bytes().to_vec(),
                description: "bytes per segment".into(),
            }],
        };
        let bytes = encoded(|out| reply.encode(out));
        assert_eq!(bytes.len(), 4 + 13 + 1 + 4 + 8 + 4 + 17);
        assert_eq!(OptionDescriptions::decode(&bytes), Ok(reply));
        assert_eq!(
            OptionDescriptions::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn empty_requests_have_no_payload() {
        assert!(encoded(|out| Ping.encode(out)).is_empty());
        assert_eq!(Ping::decode(b"ignored"), Ok(Ping));
        assert_eq!(GetShardStats::CODE.as_u32(), 9000);
    }

    #[test]
    fn get_client_round_trips() {
        let request = GetClient { client_id: 9 };
        let bytes = encoded(|out| request.encode(out));
        assert_eq!(&bytes[..], [9, 0, 0, 0]);
        assert_eq!(GetClient::decode(&bytes), Ok(request));
        assert_eq!(
            GetClient::decode(&[9, 0, 0]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn snapshot_request_round_trips_and_validates() {
        let request = GetSnapshotFile {
            compression: 2,
            snapshot_types: vec![1, SNAPSHOT_TYPE_ALL],
        };
        let bytes = encoded(|out| request.encode(out));
        assert_eq!(&bytes[..], [2, 2, 1, 100]);
        assert_eq!(GetSnapshotFile::decode(&bytes), Ok(request));
        assert_eq!(
            GetSnapshotFile::decode(&[7, 0]),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            GetSnapshotFile::decode(&[1, 1, 9]),
            Err(ErrorCode::InvalidCommand)
        );
        assert_eq!(
            GetSnapshotFile::decode(&[1, 2, 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn stats_round_trip_with_a_108_byte_fixed_part() {
        let stats = Stats {
            process_id: 1,
            cpu_usage: 0.5,
            memory_usage_bytes: 3,
            messages_count: 7,
            consumer_groups_count: 9,
            hostname: "host".into(),
            iggy_server_version: "0.8.0".into(),
            iggy_server_semver: Some(8000),
            cache_metrics: vec![CacheMetric {
                stream_id: 1,
                hits: 5,
                hit_ratio: 0.25,
                ..Default::default()
            }],
            threads_count: 4,
            free_disk_space_bytes: 10,
            total_disk_space_bytes: 20,
            ..Default::default()
        };
        let bytes = encoded(|out| stats.encode(out));
        assert_eq!(
            &bytes[104..108],
            [9, 0, 0, 0],
            "consumer_groups_count ends the fixed part"
        );
        assert_eq!(bytes.len(), 108 + 5 * 4 + 4 + 5 + 4 + 4 + 32 + 4 + 8 + 8);
        assert_eq!(Stats::decode(&bytes), Ok(stats.clone()));
        let absent = Stats {
            iggy_server_semver: None,
            ..stats
        };
        assert_eq!(
            Stats::decode(&encoded(|out| absent.encode(out))),
            Ok(absent)
        );
        assert_eq!(
            Stats::decode(&bytes[..bytes.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn client_records_round_trip() {
        let client = client();
        let details = encoded(|out| client.encode_details(out));
        assert_eq!(ClientInfo::decode_details(&details), Ok(client.clone()));
        let summary = encoded(|out| client.encode_summary(out));
        assert_eq!(&summary[..9], [77, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(summary.len(), 17 + client.address.len());
        assert_eq!(ClientInfo::decode_summary(&summary), Ok(client.summary()));

        let anonymous = ClientInfo {
            user_id: None,
            consumer_groups: vec![],
            ..client.clone()
        };
        let mut list = BytesMut::new();
        client.encode_summary(&mut list);
        anonymous.encode_summary(&mut list);
        assert_eq!(list[summary.len() + 4..summary.len() + 8], [0xff; 4]);
        assert_eq!(
            ClientInfo::decode_summary_list(&list),
            Ok(vec![client.summary(), anonymous.summary()])
        );
        assert_eq!(ClientInfo::decode_summary_list(&[]), Ok(vec![]));
        assert_eq!(
            ClientInfo::decode_details(&details[..details.len() - 1]),
            Err(ErrorCode::InvalidCommand)
        );
    }

    #[test]
    fn cluster_metadata_round_trips() {
        let metadata = ClusterMetadata {
            name: "single-node".into(),
            nodes: vec![ClusterNode {
                name: "iggy-node".into(),
                ip: "127.0.0.1".into(),
                tcp_port: 8090,
                quic_port: 8080,
                http_port: 3000,
                websocket_port: 8092,
                role: NODE_ROLE_LEADER,
                status: NODE_STATUS_HEALTHY,
            }],
        };
        let bytes = encoded(|out| metadata.encode(out));
        assert_eq!(ClusterMetadata::decode(&bytes), Ok(metadata));
    }

    #[test]
    fn shard_stats_use_40_byte_records() {
        let stats = ShardStats {
            shards: vec![
                ShardCounters {
                    shard_id: 0,
                    calls_sent: 1,
                    calls_received: 2,
                    events_applied: 3,
                    connections: 4,
                    partitions: 5,
                },
                ShardCounters {
                    shard_id: 1,
                    ..Default::default()
                },
            ],
        };
        let bytes = encoded(|out| stats.encode(out));
        assert_eq!(bytes.len(), 4 + 2 * SHARD_COUNTERS_BYTES);
        assert_eq!(
            &bytes[4..20],
            [0, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(ShardStats::decode(&bytes), Ok(stats));
    }
}
