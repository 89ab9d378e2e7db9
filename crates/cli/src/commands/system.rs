//! `galgo ping`, `galgo me`, `galgo stats`, `galgo cluster` and `galgo client …`.

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use galgo_client::Client;
use galgo_protocol::command::system::{
    ClientInfo, ClientSummary, ClusterMetadata, NODE_ROLE_FOLLOWER, NODE_ROLE_LEADER, Stats,
    TRANSPORT_HTTP, TRANSPORT_QUIC, TRANSPORT_TCP, TRANSPORT_WEBSOCKET,
};
use serde_json::{Value, json};

use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, human_bytes, human_duration, human_time};

/// `galgo ping`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  galgo ping\n  galgo ping --count 5")]
pub struct PingArgs {
    /// How many pings to send, one after another.
    #[arg(long, short = 'c', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
}

/// Sends pings and reports their round-trip times.
pub async fn ping(client: &mut Client, args: PingArgs) -> CliResult<Report> {
    let mut rtts = Vec::with_capacity(args.count as usize);
    for _ in 0..args.count {
        let started = Instant::now();
        client.ping().await?;
        rtts.push(started.elapsed());
    }
    let average = rtts.iter().sum::<Duration>() / args.count;
    let max = rtts.iter().max().copied().unwrap_or_default();
    let json = json!({
        "pings": args.count,
        "average_us": average.as_micros() as u64,
        "max_us": max.as_micros() as u64,
    });
    let text = format!(
        "pong: {} ping(s), average {:.3} ms, max {:.3} ms",
        args.count,
        average.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    Ok(Report::text(text, json))
}

/// `galgo me`: this connection's client record.
pub async fn me(client: &mut Client) -> CliResult<Report> {
    let info = client.get_me().await?;
    Ok(client_details(&info))
}

/// `galgo stats`: the server's statistics.
pub async fn stats(client: &mut Client) -> CliResult<Report> {
    let stats = client.get_stats().await?;
    Ok(Report {
        human: Human::Fields(stats_fields(&stats)),
        json: stats_json(&stats),
    })
}

/// `galgo cluster`: the nodes as the server knows them (GetClusterMetadata).
pub async fn cluster(client: &mut Client) -> CliResult<Report> {
    let metadata = client.get_cluster_metadata().await?;
    Ok(cluster_report(&metadata))
}

fn cluster_report(metadata: &ClusterMetadata) -> Report {
    let port = |port: u16| match port {
        0 => "-".to_owned(),
        port => port.to_string(),
    };
    let rows = metadata
        .nodes
        .iter()
        .map(|node| {
            vec![
                node.name.clone(),
                node.ip.clone(),
                port(node.tcp_port),
                port(node.websocket_port),
                role_name(node.role).to_owned(),
                status_name(node.status).to_owned(),
            ]
        })
        .collect();
    let nodes = metadata
        .nodes
        .iter()
        .map(|node| {
            json!({
                "name": node.name,
                "ip": node.ip,
                "tcp_port": node.tcp_port,
                "websocket_port": node.websocket_port,
                "http_port": node.http_port,
                "quic_port": node.quic_port,
                "role": role_name(node.role),
                "status": status_name(node.status),
            })
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec!["node", "ip", "tcp", "websocket", "role", "status"],
            rows,
        },
        json: json!({ "name": metadata.name, "nodes": Value::Array(nodes) }),
    }
}

fn role_name(role: u8) -> &'static str {
    match role {
        NODE_ROLE_LEADER => "leader",
        NODE_ROLE_FOLLOWER => "follower",
        _ => "unknown",
    }
}

/// The protocol's node statuses (PROTOCOL.md, GetClusterMetadata).
fn status_name(status: u8) -> &'static str {
    match status {
        0 => "healthy",
        1 => "starting",
        2 => "stopping",
        3 => "unreachable",
        4 => "maintenance",
        _ => "unknown",
    }
}

fn stats_fields(stats: &Stats) -> Vec<(&'static str, String)> {
    vec![
        ("server version", stats.iggy_server_version.clone()),
        ("process id", stats.process_id.to_string()),
        ("started", human_time(stats.start_time_us)),
        ("uptime", human_duration(stats.run_time_us)),
        ("hostname", stats.hostname.clone()),
        ("os", format!("{} {}", stats.os_name, stats.os_version)),
        ("kernel", stats.kernel_version.clone()),
        ("threads", stats.threads_count.to_string()),
        ("cpu usage", format!("{:.1}%", stats.cpu_usage)),
        ("memory used", human_bytes(stats.memory_usage_bytes)),
        ("memory total", human_bytes(stats.total_memory_bytes)),
        ("disk free", human_bytes(stats.free_disk_space_bytes)),
        ("disk total", human_bytes(stats.total_disk_space_bytes)),
        ("read", human_bytes(stats.read_bytes)),
        ("written", human_bytes(stats.written_bytes)),
        ("streams", stats.streams_count.to_string()),
        ("topics", stats.topics_count.to_string()),
        ("partitions", stats.partitions_count.to_string()),
        ("segments", stats.segments_count.to_string()),
        ("messages", stats.messages_count.to_string()),
        ("messages size", human_bytes(stats.messages_size_bytes)),
        ("clients", stats.clients_count.to_string()),
        ("consumer groups", stats.consumer_groups_count.to_string()),
    ]
}

fn stats_json(stats: &Stats) -> Value {
    json!({
        "server_version": stats.iggy_server_version,
        "server_semver": stats.iggy_server_semver,
        "process_id": stats.process_id,
        "start_time_us": stats.start_time_us,
        "run_time_us": stats.run_time_us,
        "hostname": stats.hostname,
        "os_name": stats.os_name,
        "os_version": stats.os_version,
        "kernel_version": stats.kernel_version,
        "threads_count": stats.threads_count,
        "cpu_usage": stats.cpu_usage,
        "total_cpu_usage": stats.total_cpu_usage,
        "memory_usage_bytes": stats.memory_usage_bytes,
        "total_memory_bytes": stats.total_memory_bytes,
        "available_memory_bytes": stats.available_memory_bytes,
        "free_disk_space_bytes": stats.free_disk_space_bytes,
        "total_disk_space_bytes": stats.total_disk_space_bytes,
        "read_bytes": stats.read_bytes,
        "written_bytes": stats.written_bytes,
        "streams_count": stats.streams_count,
        "topics_count": stats.topics_count,
        "partitions_count": stats.partitions_count,
        "segments_count": stats.segments_count,
        "messages_count": stats.messages_count,
        "messages_size_bytes": stats.messages_size_bytes,
        "clients_count": stats.clients_count,
        "consumer_groups_count": stats.consumer_groups_count,
    })
}

/// `galgo client …`.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Every connected client.
    #[command(after_help = "Examples:\n  galgo client list\n  galgo client list --output json")]
    List,
    /// One client, with the consumer groups it has joined.
    #[command(after_help = "Examples:\n  galgo client get 3")]
    Get {
        /// The client id (as `galgo client list` shows).
        client_id: u32,
    },
}

/// Runs a `galgo client` subcommand.
pub async fn client_command(client: &mut Client, command: ClientCommand) -> CliResult<Report> {
    match command {
        ClientCommand::List => {
            let clients = client.get_clients().await?;
            Ok(clients_table(&clients))
        }
        ClientCommand::Get { client_id } => match client.get_client(client_id).await? {
            Some(info) => Ok(client_details(&info)),
            None => Err(CliError::NotFound(format!("client {client_id}"))),
        },
    }
}

fn transport_name(code: u8) -> &'static str {
    match code {
        TRANSPORT_TCP => "tcp",
        TRANSPORT_QUIC => "quic",
        TRANSPORT_HTTP => "http",
        TRANSPORT_WEBSOCKET => "ws",
        _ => "unknown",
    }
}

fn user_text(user_id: Option<u32>) -> String {
    user_id.map_or_else(|| "-".to_owned(), |id| id.to_string())
}

fn clients_table(clients: &[ClientSummary]) -> Report {
    let rows = clients
        .iter()
        .map(|c| {
            vec![
                c.client_id.to_string(),
                user_text(c.user_id),
                transport_name(c.transport).to_owned(),
                c.address.clone(),
                c.consumer_groups_count.to_string(),
            ]
        })
        .collect();
    let json = clients
        .iter()
        .map(|c| {
            json!({
                "client_id": c.client_id,
                "user_id": c.user_id,
                "transport": transport_name(c.transport),
                "address": c.address,
                "consumer_groups_count": c.consumer_groups_count,
            })
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec!["client id", "user id", "transport", "address", "groups"],
            rows,
        },
        json: Value::Array(json),
    }
}

fn client_details(info: &ClientInfo) -> Report {
    let groups: Vec<String> = info
        .consumer_groups
        .iter()
        .map(|g| {
            format!(
                "stream {} topic {} group {}",
                g.stream_id, g.topic_id, g.group_id
            )
        })
        .collect();
    let fields = vec![
        ("client id", info.client_id.to_string()),
        ("user id", user_text(info.user_id)),
        ("transport", transport_name(info.transport).to_owned()),
        ("address", info.address.clone()),
        (
            "consumer groups",
            if groups.is_empty() {
                "-".to_owned()
            } else {
                groups.join(", ")
            },
        ),
    ];
    let json = json!({
        "client_id": info.client_id,
        "user_id": info.user_id,
        "transport": transport_name(info.transport),
        "address": info.address,
        "consumer_groups": info.consumer_groups.iter().map(|g| json!({
            "stream_id": g.stream_id, "topic_id": g.topic_id, "group_id": g.group_id,
        })).collect::<Vec<_>>(),
    });
    Report {
        human: Human::Fields(fields),
        json,
    }
}
