//! The figures /metrics shows: gathered from every shard when scraped, never kept for it.
//!
//! A scrape sends one job to each shard through the engine's [`ShardsHandle`] (the HTTP
//! thread is not a shard); the job reads the shard's own figures (its clients, the engine's
//! call counters, and for each partition it owns the log's figures and stored offsets) and
//! hands a plain value back. Nothing on the request path writes anything for a scrape or
//! waits for one. The values are then put in a fresh `prometheus-client` registry and encoded
//! as OpenMetrics text.
//!
//! Names follow Prometheus conventions: `galgo_` prefix, base units, counters end in `_total`
//! (prometheus-client adds it). Labels carry ids and stream, topic and group names, never a
//! user name or a secret.

use std::{rc::Rc, sync::atomic::AtomicU64, time::Duration};

use galgo_metadata::{Metadata, PartitionKey};
use galgo_protocol::{CommandCode, ErrorCode};
use galgo_shards::ShardsHandle;
use galgo_storage::{OffsetOwner, PartitionLog};
use prometheus_client::{
    encoding::{EncodeMetric, MetricEncoder, NoLabelSet},
    metrics::{MetricType, counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    clients::Transport,
    context::{Context, Shard},
    request_stats::{CommandStats, LATENCY_BUCKETS_US, Traffic},
};

/// One metric's label set.
type Labels = Vec<(String, String)>;

/// Reads one figure of a partition.
type PartitionValue = fn(&PartitionFigures) -> u64;

/// What one shard reports.
#[derive(Debug, Default)]
pub struct ShardFigures {
    shard: u16,
    tcp_connections: u64,
    websocket_connections: u64,
    calls_sent: u64,
    calls_received: u64,
    events_applied: u64,
    inbox_depth: u64,
    tail_cache_bytes: u64,
    tail_cache_bytes_max: u64,
    unwritten_bytes: u64,
    write_rate: f64,
    tail_cache: galgo_storage::TailCacheCounters,
    commands: Vec<(CommandCode, CommandStats)>,
    errors: Vec<(u32, u64)>,
    partitions: Vec<PartitionFigures>,
    /// Shard 0 of a cluster node: the metadata group as this node sees it.
    cluster: Option<ClusterFigures>,
}

/// A cluster node's view of its metadata group.
#[derive(Debug)]
struct ClusterFigures {
    node: u64,
    /// 0 while no leader is known.
    leader: u64,
    term: u64,
    /// Every node with whether it was heard within an election timeout.
    peers: Vec<(u64, bool)>,
}

/// What one partition's owner reports about it.
#[derive(Debug)]
struct PartitionFigures {
    labels: Labels,
    messages: u64,
    size_bytes: u64,
    segments: u64,
    /// The offset the next message gets (Kafka's log end offset).
    end_offset: u64,
    journal_writes: u64,
    fsyncs: u64,
    fsync_seconds: f64,
    traffic: Traffic,
    /// Per stored group offset: the group's name and its lag.
    group_lags: Vec<(String, u64)>,
    /// Per stored single-consumer offset: the consumer's id and its lag.
    consumer_lags: Vec<(u32, u64)>,
    /// A cluster node's partition: its group's leader (0: none known) and high watermark.
    replica: Option<(u64, u64)>,
}

/// Gathers every shard's figures, each within `timeout`; a shard that does not answer is
/// left out (the scrape still answers, with what it has).
pub fn gather(shards: &ShardsHandle<Context>, timeout: Duration) -> Vec<ShardFigures> {
    shards
        .all_shards()
        .filter_map(|id| {
            let job = |shard: Rc<Shard>| async move { shard_figures(&shard) };
            let mut figures = shards.run(id, timeout, job).ok()?;
            figures.inbox_depth = shards.inbox_depth(id) as u64;
            Some(figures)
        })
        .collect()
}

/// On a shard: its own figures.
fn shard_figures(shard: &Shard) -> ShardFigures {
    let clients = shard.state().clients.borrow();
    let count = |transport| clients.count(transport) as u64;
    let counters = &shard.counters;
    let metadata = shard.metadata.borrow();
    ShardFigures {
        shard: shard.id().0,
        tcp_connections: count(Transport::Tcp),
        websocket_connections: count(Transport::WebSocket),
        calls_sent: counters.calls_sent.get(),
        calls_received: counters.calls_received.get(),
        events_applied: counters.events_applied.get(),
        inbox_depth: 0,
        tail_cache_bytes: shard.tail_cache().bytes(),
        tail_cache_bytes_max: shard.tail_cache().bytes_max(),
        unwritten_bytes: shard.tail_cache().unwritten_bytes(),
        write_rate: shard.tail_cache().write_rate(),
        tail_cache: shard.tail_cache().counters(),
        commands: shard.state().requests.commands(),
        errors: shard.state().requests.errors(),
        partitions: shard
            .owned_partitions()
            .into_iter()
            .filter_map(|(key, log)| {
                let traffic = shard.state().requests.traffic(key);
                let mut figures = partition_figures(&metadata, key, &log, traffic)?;
                figures.replica = shard.state().replica(&key).map(|group| {
                    let view = group.view();
                    (view.leader().unwrap_or(0), view.high_watermark())
                });
                Some(figures)
            })
            .collect(),
        cluster: shard
            .state()
            .seed
            .cluster
            .as_ref()
            .filter(|_| shard.id().0 == 0)
            .map(|view| ClusterFigures {
                node: view.node_id(),
                leader: view.leader().unwrap_or(0),
                term: view.term(),
                peers: view
                    .settings
                    .peers
                    .iter()
                    .map(|peer| (peer.id, view.is_healthy(peer.id)))
                    .collect(),
            }),
    }
}

/// A partition's figures; `None` when the replica no longer knows it (deleted meanwhile).
fn partition_figures(
    metadata: &Metadata,
    key: PartitionKey,
    log: &PartitionLog,
    traffic: Traffic,
) -> Option<PartitionFigures> {
    let stream = metadata.stream_by_id(key.stream).ok()?;
    let topic = metadata
        .topic_by_key(galgo_metadata::TopicKey {
            stream: key.stream,
            topic: key.topic,
        })
        .ok()?;
    let stats = log.stats();
    let io = log.io_counters();
    let last = log.last_offset();
    let lag = |stored: u64| last.map_or(0, |last| last.saturating_sub(stored));
    let mut figures = PartitionFigures {
        labels: vec![
            ("stream".into(), stream.name.clone()),
            ("topic".into(), topic.name.clone()),
            ("partition".into(), key.partition.0.to_string()),
        ],
        messages: stats.messages_count,
        size_bytes: stats.size_bytes,
        segments: u64::from(stats.segments_count),
        end_offset: last.map_or(0, |last| last + 1),
        journal_writes: io.writes_count,
        fsyncs: io.fsyncs_count + io.sealed_fsyncs_count,
        fsync_seconds: io.fsyncs_time_us as f64 / 1e6,
        traffic,
        group_lags: Vec::new(),
        consumer_lags: Vec::new(),
        replica: None,
    };
    for (owner, stored) in log.stored_offsets() {
        match owner {
            OffsetOwner::Group(id) => {
                if let Some(group) = topic.groups().find(|group| group.id.0 == id) {
                    figures.group_lags.push((group.name.clone(), lag(stored)));
                }
            }
            OffsetOwner::Consumer(id) => figures.consumer_lags.push((id, lag(stored))),
        }
    }
    Some(figures)
}

/// The OpenMetrics text of `shards`' figures.
pub fn encode(shards: &[ShardFigures]) -> String {
    let mut registry = Registry::default();
    register_shards(&mut registry, shards);
    register_memory(&mut registry, shards);
    register_requests(&mut registry, shards);
    register_partitions(&mut registry, shards);
    if let Some(cluster) = shards.iter().find_map(|shard| shard.cluster.as_ref()) {
        register_cluster(&mut registry, cluster);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing into a String does not fail");
    text
}

/// A cluster node's metadata group: who leads, in which term, which nodes it hears.
fn register_cluster(registry: &mut Registry, cluster: &ClusterFigures) {
    let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    let leader = Gauge::<i64>::default();
    leader.set(gauge(cluster.leader));
    let leading = Gauge::<i64>::default();
    leading.set(i64::from(cluster.leader == cluster.node));
    let term = Gauge::<i64>::default();
    term.set(gauge(cluster.term));
    let up = Family::<Labels, Gauge>::default();
    for &(node, healthy) in &cluster.peers {
        up.get_or_create(&vec![("node".into(), node.to_string())])
            .set(i64::from(healthy));
    }
    let help = "Node id of the metadata group's leader as this node knows it (0: none)";
    registry.register("galgo_cluster_metadata_leader", help, leader);
    let help = "1 when this node leads the metadata group";
    registry.register("galgo_cluster_metadata_leading", help, leading);
    let help = "The metadata group's Raft term";
    registry.register("galgo_cluster_metadata_term", help, term);
    let help = "1 for this node and each peer heard within an election timeout";
    registry.register("galgo_cluster_node_up", help, up);
}

fn shard_label(shard: &ShardFigures) -> Labels {
    vec![("shard".into(), shard.shard.to_string())]
}

fn register_shards(registry: &mut Registry, shards: &[ShardFigures]) {
    let connections = Family::<Labels, Gauge>::default();
    let calls_sent = Family::<Labels, Counter>::default();
    let calls_received = Family::<Labels, Counter>::default();
    let events = Family::<Labels, Counter>::default();
    let inbox = Family::<Labels, Gauge>::default();
    for shard in shards {
        let labels = shard_label(shard);
        for (transport, count) in [
            ("tcp", shard.tcp_connections),
            ("websocket", shard.websocket_connections),
        ] {
            let mut labels = labels.clone();
            labels.push(("transport".into(), transport.into()));
            connections.get_or_create(&labels).set(count as i64);
        }
        calls_sent.get_or_create(&labels).inc_by(shard.calls_sent);
        calls_received
            .get_or_create(&labels)
            .inc_by(shard.calls_received);
        events.get_or_create(&labels).inc_by(shard.events_applied);
        inbox.get_or_create(&labels).set(shard.inbox_depth as i64);
    }
    registry.register("galgo_connections", "Open client connections", connections);
    registry.register(
        "galgo_shard_calls_sent",
        "Calls sent to other shards",
        calls_sent,
    );
    let help = "Calls received from other shards";
    registry.register("galgo_shard_calls_received", help, calls_received);
    let help = "Metadata events applied to the shard's replica";
    registry.register("galgo_metadata_events_applied", help, events);
    let help = "Messages waiting in the shard's inbox when scraped";
    registry.register("galgo_shard_inbox_depth", help, inbox);
}

/// The shards' batches in memory: tail cache, journal backlog, write pacing, poll sources.
fn register_memory(registry: &mut Registry, shards: &[ShardFigures]) {
    let cache_bytes = Family::<Labels, Gauge>::default();
    let cache_bytes_max = Family::<Labels, Gauge>::default();
    let unwritten = Family::<Labels, Gauge>::default();
    let write_rate = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let cache_evicted = Family::<Labels, Counter>::default();
    let paced = Family::<Labels, Counter>::default();
    let paced_seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
    let poll_reads = Family::<Labels, Counter>::default();
    let gauge = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
    for shard in shards {
        let labels = shard_label(shard);
        let cache = &shard.tail_cache;
        cache_bytes
            .get_or_create(&labels)
            .set(gauge(shard.tail_cache_bytes));
        cache_bytes_max
            .get_or_create(&labels)
            .set(gauge(shard.tail_cache_bytes_max));
        unwritten
            .get_or_create(&labels)
            .set(gauge(shard.unwritten_bytes));
        write_rate.get_or_create(&labels).set(shard.write_rate);
        cache_evicted
            .get_or_create(&labels)
            .inc_by(cache.evicted_bytes);
        paced.get_or_create(&labels).inc_by(cache.paced_appends);
        paced_seconds
            .get_or_create(&labels)
            .inc_by(cache.paced_micros as f64 / 1e6);
        for (source, count) in [("memory", cache.memory_reads), ("disk", cache.disk_reads)] {
            let mut labels = labels.clone();
            labels.push(("source".into(), source.into()));
            poll_reads.get_or_create(&labels).inc_by(count);
        }
    }
    let help = "Bytes of recent batches the shard's tail cache holds";
    registry.register("galgo_tail_cache_bytes", help, cache_bytes);
    let help = "Bound of the shard's batches in memory, tail cache and journal backlog together";
    registry.register("galgo_tail_cache_bytes_max", help, cache_bytes_max);
    let help = "Bytes appended to the shard's journals and not yet written to segment files";
    registry.register("galgo_journal_unwritten_bytes", help, unwritten);
    let help = "Bytes per second the shard's segment writes achieved, a moving average";
    registry.register("galgo_write_rate_bytes_per_second", help, write_rate);
    let help = "Bytes evicted from the shard's tail cache (oldest first, or under memory pressure)";
    registry.register("galgo_tail_cache_evicted_bytes", help, cache_evicted);
    let help = "Appends paced to the shard's write rate (backlog past half the bound)";
    registry.register("galgo_append_paced", help, paced);
    let help = "Time paced appends waited, in all";
    registry.register("galgo_append_paced_seconds", help, paced_seconds);
    let help = "Parts of polls served from memory (journal, tail cache) or read from segment files";
    registry.register("galgo_poll_reads", help, poll_reads);
}

fn register_requests(registry: &mut Registry, shards: &[ShardFigures]) {
    let requests = Family::<Labels, Counter>::default();
    let errors = Family::<Labels, Counter>::default();
    let mut latencies = Histograms::default();
    for shard in shards {
        for (command, stats) in &shard.commands {
            let mut labels = shard_label(shard);
            labels.push(("command".into(), command.name().into()));
            requests.get_or_create(&labels).inc_by(stats.count);
            latencies.0.push((labels, stats.clone()));
        }
        for (code, count) in &shard.errors {
            let mut labels = shard_label(shard);
            labels.push(("code".into(), code.to_string()));
            let name = ErrorCode::from_u32(*code).map_or("unknown", ErrorCode::name);
            labels.push(("error".into(), name.into()));
            errors.get_or_create(&labels).inc_by(*count);
        }
    }
    registry.register("galgo_requests", "Requests handled, per command", requests);
    let help = "Time from a decoded request to its answer, per command";
    registry.register("galgo_request_duration_seconds", help, latencies);
    registry.register(
        "galgo_error_responses",
        "Error answers, per error code",
        errors,
    );
}

/// Per-command latency histograms as the shards counted them: prometheus-client's own
/// histogram only observes, so the shards' bucket counts are handed to its encoder.
#[derive(Debug, Default)]
struct Histograms(Vec<(Labels, CommandStats)>);

impl EncodeMetric for Histograms {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, stats) in &self.0 {
            // Per-bucket counts: the encoder makes them cumulative, and writes the last bound
            // (infinity) as +Inf.
            let bounds = LATENCY_BUCKETS_US.iter().map(|&us| us as f64 / 1e6);
            let buckets: Vec<(f64, u64)> =
                bounds.chain([f64::INFINITY]).zip(stats.buckets).collect();
            let sum = stats.latency_sum_us as f64 / 1e6;
            encoder
                .encode_family(labels)?
                .encode_histogram::<NoLabelSet>(sum, stats.count, &buckets, None)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn register_partitions(registry: &mut Registry, shards: &[ShardFigures]) {
    let gauges: [(&str, &str, PartitionValue); 4] = [
        ("galgo_partition_messages", "Messages kept", |p| p.messages),
        (
            "galgo_partition_size_bytes",
            "Bytes of messages kept",
            |p| p.size_bytes,
        ),
        (
            "galgo_partition_segments",
            "Segments, the active one included",
            |p| p.segments,
        ),
        (
            "galgo_partition_log_end_offset",
            "The offset the next message gets",
            |p| p.end_offset,
        ),
    ];
    let partitions = || shards.iter().flat_map(|shard| &shard.partitions);
    for (name, help, value) in gauges {
        let family = Family::<Labels, Gauge>::default();
        for partition in partitions() {
            family
                .get_or_create(&partition.labels)
                .set(value(partition) as i64);
        }
        registry.register(name, help, family);
    }
    register_partition_counters(registry, shards);
    register_lags(registry, shards);
    register_replicas(registry, shards);
}

/// A cluster node's partition groups: who leads each, and how far it committed.
fn register_replicas(registry: &mut Registry, shards: &[ShardFigures]) {
    let leaders = Family::<Labels, Gauge>::default();
    let committed = Family::<Labels, Gauge>::default();
    let replicas = shards
        .iter()
        .flat_map(|shard| &shard.partitions)
        .filter_map(|partition| Some((&partition.labels, partition.replica?)));
    for (labels, (leader, high_watermark)) in replicas {
        leaders.get_or_create(labels).set(leader as i64);
        committed.get_or_create(labels).set(high_watermark as i64);
    }
    let help = "The node leading the partition's Raft group as this node knows it (0: none)";
    registry.register("galgo_partition_leader", help, leaders);
    let help = "The offset after the partition's last committed message: what polls read up to";
    registry.register("galgo_partition_high_watermark", help, committed);
}

fn register_partition_counters(registry: &mut Registry, shards: &[ShardFigures]) {
    let partitions = || shards.iter().flat_map(|shard| &shard.partitions);
    let counters: [(&str, &str, PartitionValue); 6] = [
        (
            "galgo_partition_journal_writes",
            "Journal runs written to the log",
            |p| p.journal_writes,
        ),
        (
            "galgo_partition_fsyncs",
            "fdatasyncs of the partition's log",
            |p| p.fsyncs,
        ),
        ("galgo_partition_messages_in", "Messages appended", |p| {
            p.traffic.messages_in
        }),
        (
            "galgo_partition_bytes_in",
            "Bytes of the batches appended",
            |p| p.traffic.bytes_in,
        ),
        (
            "galgo_partition_messages_out",
            "Messages returned by polls",
            |p| p.traffic.messages_out,
        ),
        (
            "galgo_partition_bytes_out",
            "Bytes returned by polls",
            |p| p.traffic.bytes_out,
        ),
    ];
    for (name, help, value) in counters {
        let family = Family::<Labels, Counter>::default();
        for partition in partitions() {
            family
                .get_or_create(&partition.labels)
                .inc_by(value(partition));
        }
        registry.register(name, help, family);
    }
    let seconds = Family::<Labels, Counter<f64, AtomicU64>>::default();
    for partition in partitions() {
        seconds
            .get_or_create(&partition.labels)
            .inc_by(partition.fsync_seconds);
    }
    let help = "Time the active log's fdatasyncs took (with their count: the average latency)";
    registry.register("galgo_partition_fsync_seconds", help, seconds);
}

fn register_lags(registry: &mut Registry, shards: &[ShardFigures]) {
    let groups = Family::<Labels, Gauge>::default();
    let consumers = Family::<Labels, Gauge>::default();
    for partition in shards.iter().flat_map(|shard| &shard.partitions) {
        for (group, lag) in &partition.group_lags {
            let mut labels = partition.labels.clone();
            labels.push(("group".into(), group.clone()));
            groups.get_or_create(&labels).set(*lag as i64);
        }
        for (consumer, lag) in &partition.consumer_lags {
            let mut labels = partition.labels.clone();
            labels.push(("consumer".into(), consumer.to_string()));
            consumers.get_or_create(&labels).set(*lag as i64);
        }
    }
    let help = "Messages after a consumer group's stored offset, not yet consumed";
    registry.register("galgo_consumer_group_lag_messages", help, groups);
    let help = "Messages after a consumer's stored offset, not yet consumed";
    registry.register("galgo_consumer_lag_messages", help, consumers);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::request_stats::RequestStats;

    #[test]
    fn a_latency_histogram_is_encoded_with_cumulative_buckets() {
        let requests = RequestStats::default();
        requests.record(CommandCode::Ping, Duration::from_micros(40));
        requests.record(CommandCode::Ping, Duration::from_micros(300));
        let shard = ShardFigures {
            commands: requests.commands(),
            ..ShardFigures::default()
        };
        let text = encode(&[shard]);
        let line = |suffix: &str| {
            text.lines()
                .find(|line| {
                    line.starts_with("galgo_request_duration_seconds") && line.contains(suffix)
                })
                .unwrap_or_else(|| panic!("no line with {suffix} in\n{text}"))
                .to_owned()
        };
        assert!(line("le=\"0.00005\"").ends_with(" 1"), "{text}");
        assert!(line("le=\"0.0005\"").ends_with(" 2"), "{text}");
        assert!(line("le=\"+Inf\"").ends_with(" 2"), "{text}");
        assert!(line("_count").ends_with(" 2"), "{text}");
        assert!(line("_sum").ends_with(" 0.00034"), "{text}");
    }
}
