//! System commands: me, clients, stats, cluster metadata, and galgo's shard counters.

use std::{net::SocketAddr, rc::Rc};

use bytes::BytesMut;
use galgo_cluster::ClusterView;
use galgo_metadata::Need;
use galgo_protocol::{
    ErrorCode,
    command::system::{
        ClientInfo, ClusterMetadata, ClusterNode, ConsumerGroupRef, GetClient, GetClients,
        GetClusterMetadata, GetMe, GetShardStats, GetSnapshotFile, GetStats, NODE_ROLE_FOLLOWER,
        NODE_ROLE_LEADER, NODE_STATUS_HEALTHY, NODE_STATUS_UNREACHABLE, Ping, ShardCounters,
        ShardStats, Stats,
    },
};

use super::{Outcome, Reply, partition_calls::figures_of};
use crate::{
    clients::ClientRecord,
    context::{Context, Shard},
    host,
    session::Session,
};

/// The groups a client joined, from this shard's replica (membership reaches every shard).
fn joined_groups(shard: &Shard, client_id: u32) -> Vec<ConsumerGroupRef> {
    let memberships = shard.metadata.borrow().memberships_of(client_id);
    memberships
        .into_iter()
        .map(|(key, _)| ConsumerGroupRef {
            stream_id: key.stream.0,
            topic_id: key.topic.0,
            group_id: key.group.0,
        })
        .collect()
}

fn client_info(shard: &Shard, record: &ClientRecord) -> ClientInfo {
    ClientInfo {
        client_id: record.client_id,
        user_id: record.user_id,
        transport: record.transport as u8,
        address: record.address.clone(),
        consumer_groups: joined_groups(shard, record.client_id),
    }
}

/// GetMe: the calling connection's record.
pub fn get_me(shard: &Shard, session: &Session) -> Outcome {
    let info = ClientInfo {
        client_id: session.client_id,
        user_id: session.user_id,
        transport: session.transport as u8,
        address: session.peer.to_string(),
        consumer_groups: joined_groups(shard, session.client_id),
    };
    Ok(Reply::encoded(|out| info.encode_details(out)))
}

async fn all_clients(shard: &Rc<Shard>) -> Result<Vec<ClientRecord>, crate::error::CommandError> {
    let mut clients = Vec::new();
    for target in shard.all_shards() {
        clients.extend(
            shard
                .call(target, |shard| async move {
                    shard.state().clients.borrow().all()
                })
                .await?,
        );
    }
    Ok(clients)
}

/// GetClients: gathered from every shard.
pub async fn get_clients(shard: &Rc<Shard>) -> Outcome {
    let mut out = BytesMut::new();
    for record in all_clients(shard).await? {
        client_info(shard, &record).encode_summary(&mut out);
    }
    Ok(Reply::bytes(out))
}

/// GetClient: one client from whichever shard accepted it, or the empty answer.
pub async fn get_client(shard: &Rc<Shard>, get: GetClient) -> Outcome {
    if get.client_id == 0 {
        return Err(ErrorCode::InvalidClientId.into());
    }
    let found = all_clients(shard)
        .await?
        .into_iter()
        .find(|record| record.client_id == get.client_id);
    Ok(match found {
        Some(record) => Reply::encoded(|out| client_info(shard, &record).encode_details(out)),
        None => Reply::empty(),
    })
}

/// Per-shard figures for GetStats and GetShardStats.
#[derive(Clone, Copy, Debug, Default)]
struct ShardFigures {
    counters: (u64, u64, u64),
    connections: u32,
    partitions: u32,
    messages_count: u64,
    size_bytes: u64,
    segments_count: u32,
}

async fn gather(shard: &Rc<Shard>) -> Result<Vec<ShardFigures>, crate::error::CommandError> {
    let mut gathered = Vec::with_capacity(usize::from(shard.shard_count()));
    for target in shard.all_shards() {
        let figures = shard
            .call(target, |shard| async move {
                let owned = shard.owned_partitions();
                let mut figures = ShardFigures {
                    counters: (
                        shard.counters.calls_sent.get(),
                        shard.counters.calls_received.get(),
                        shard.counters.events_applied.get(),
                    ),
                    connections: shard.state().clients.borrow().len() as u32,
                    partitions: owned.len() as u32,
                    ..ShardFigures::default()
                };
                for (_, log) in owned {
                    let stats = figures_of(&log).stats;
                    figures.messages_count += stats.messages_count;
                    figures.size_bytes += stats.size_bytes;
                    figures.segments_count += stats.segments_count;
                }
                figures
            })
            .await?;
        gathered.push(figures);
    }
    Ok(gathered)
}

/// GetStats: process and host figures, and counts summed over every shard.
pub async fn get_stats(shard: &Rc<Shard>, context: &Context) -> Outcome {
    let figures = gather(shard).await?;
    let (streams_count, topics_count, partitions_count) = shard.metadata.borrow().counts();
    let host = host::HostFigures::read(&context.seed.data_dir);
    let run_time = context.seed.started.elapsed();
    let stats = Stats {
        process_id: std::process::id(),
        cpu_usage: host.process_cpu_percent(run_time),
        total_cpu_usage: host.total_cpu_percent,
        memory_usage_bytes: host.rss_bytes,
        total_memory_bytes: host.total_memory_bytes,
        available_memory_bytes: host.available_memory_bytes,
        // Whole seconds, as Iggy reports it (0 in the first second).
        run_time_us: run_time.as_secs() * 1_000_000,
        start_time_us: context.seed.started_at_us,
        read_bytes: host.read_bytes,
        written_bytes: host.written_bytes,
        messages_size_bytes: figures.iter().map(|shard| shard.size_bytes).sum(),
        streams_count,
        topics_count,
        partitions_count,
        segments_count: figures.iter().map(|shard| shard.segments_count).sum(),
        messages_count: figures.iter().map(|shard| shard.messages_count).sum(),
        clients_count: figures.iter().map(|shard| shard.connections).sum(),
        consumer_groups_count: shard.metadata.borrow().groups_count(),
        hostname: host.hostname,
        os_name: host.os_name,
        os_version: host.os_version.clone(),
        kernel_version: host.os_version,
        iggy_server_version: env!("CARGO_PKG_VERSION").to_owned(),
        iggy_server_semver: Some(semver(env!("CARGO_PKG_VERSION"))),
        cache_metrics: Vec::new(),
        threads_count: host.threads_count,
        free_disk_space_bytes: host.free_disk_bytes,
        total_disk_space_bytes: host.total_disk_bytes,
    };
    Ok(Reply::encoded(|out| stats.encode(out)))
}

/// `major * 1_000_000 + minor * 1_000 + patch`.
fn semver(version: &str) -> u32 {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    major * 1_000_000 + minor * 1_000 + patch
}

/// GetClusterMetadata: a cluster node's roster, or this single node.
pub fn get_cluster_metadata(context: &Context) -> Outcome {
    if let Some(view) = &context.seed.cluster {
        let metadata = roster(view);
        return Ok(Reply::encoded(|out| metadata.encode(out)));
    }
    let metadata = ClusterMetadata {
        name: "single-node".to_owned(),
        nodes: vec![this_node(context)],
    };
    Ok(Reply::encoded(|out| metadata.encode(out)))
}

/// This node's record, as the roster gives it, leading and healthy: the primary a 0.9 poll
/// route names (every node serves the partitions it holds).
pub fn this_node(context: &Context) -> ClusterNode {
    if let Some(view) = &context.seed.cluster {
        let own = format!("galgo-node-{}", view.node_id());
        if let Some(node) = roster(view).nodes.into_iter().find(|node| node.name == own) {
            return ClusterNode {
                role: NODE_ROLE_LEADER,
                status: NODE_STATUS_HEALTHY,
                ..node
            };
        }
    }
    let bound = &context.seed.bound;
    let address = bound.tcp.get().copied().unwrap_or(context.seed.tcp.address);
    let websocket_port = bound.websocket.get().map_or(0, SocketAddr::port);
    ClusterNode {
        name: "galgo-node".to_owned(),
        ip: address.ip().to_string(),
        tcp_port: address.port(),
        // Transports galgo does not run report port 0.
        quic_port: 0,
        http_port: 0,
        websocket_port,
        role: NODE_ROLE_LEADER,
        status: NODE_STATUS_HEALTHY,
    }
}

/// The configured nodes with the addresses they advertise (where the roster names none, the
/// ports their listeners reported in their handshakes), the metadata leader as this node knows
/// it as the leader, and each node healthy when it was heard from within an election timeout.
fn roster(view: &ClusterView) -> ClusterMetadata {
    let nodes = view
        .settings
        .peers
        .iter()
        .map(|peer| {
            let (tcp, websocket) = view.client_addresses(peer.id);
            let ip = tcp
                .or(websocket)
                .unwrap_or(peer.replication_address)
                .ip()
                .to_string();
            ClusterNode {
                name: format!("galgo-node-{}", peer.id),
                ip,
                tcp_port: tcp.map_or(0, |address| address.port()),
                quic_port: 0,
                http_port: 0,
                websocket_port: websocket.map_or(0, |address| address.port()),
                role: if view.leader() == Some(peer.id) {
                    NODE_ROLE_LEADER
                } else {
                    NODE_ROLE_FOLLOWER
                },
                status: if view.is_healthy(peer.id) {
                    NODE_STATUS_HEALTHY
                } else {
                    NODE_STATUS_UNREACHABLE
                },
            }
        })
        .collect();
    ClusterMetadata {
        name: view.settings.cluster_id.clone(),
        nodes,
    }
}

/// GetShardStats (galgo's own command): per-shard counters.
pub async fn get_shard_stats(shard: &Rc<Shard>) -> Outcome {
    let shards = gather(shard)
        .await?
        .into_iter()
        .enumerate()
        .map(|(index, figures)| ShardCounters {
            shard_id: index as u32,
            calls_sent: figures.counters.0,
            calls_received: figures.counters.1,
            events_applied: figures.counters.2,
            connections: figures.connections,
            partitions: figures.partitions,
        })
        .collect();
    let stats = ShardStats { shards };
    Ok(Reply::encoded(|out| stats.encode(out)))
}

unscoped_handlers! {
    Ping: None => |_, _| Ok(Reply::empty());
    GetStats: Some(Need::ReadServers) => |cx, _| get_stats(cx.shard, cx.context).await;
    // Snapshots (a ZIP of diagnostics) are not built; PROTOCOL.md §5.1 allows refusing them
    // with 5, after the permission check.
    GetSnapshotFile: Some(Need::ReadServers) => |_, _| Err(ErrorCode::FeatureUnavailable.into());
    GetClusterMetadata: Some(Need::LoggedIn) => |cx, _| get_cluster_metadata(cx.context);
    GetMe: Some(Need::LoggedIn) => |cx, _| get_me(cx.shard, cx.session);
    GetClient: Some(Need::ReadServers) => |cx, request| get_client(cx.shard, request).await;
    GetClients: Some(Need::ReadServers) => |cx, _| get_clients(cx.shard).await;
    GetShardStats: Some(Need::ReadServers) => |cx, _| get_shard_stats(cx.shard).await;
}
