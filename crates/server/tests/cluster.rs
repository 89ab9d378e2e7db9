//! Three galgo nodes on loopback as one cluster (issue 19). The metadata Raft group: every
//! node applies the same metadata whichever node a change was sent to, through a leader
//! killed and a follower restarted and a whole-cluster restart; strangers on the replication
//! port are refused. The partition groups: every node holds every acknowledged message once,
//! in order, through a node killed during sends and links cut and slowed.

mod support;

use std::{
    io::Write,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use galgo_protocol::command::{
    streams::StreamHeader,
    system::{ClusterMetadata, NODE_ROLE_LEADER, NODE_STATUS_HEALTHY},
};
use support::{
    TestServer,
    fault_proxy::FaultProxy,
    raw::{self, RawConn, code},
};

/// Every wait on the cluster (an election, a node catching up) ends within this.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`wait_for`] probes again.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
const GET_CLUSTER_METADATA: u32 = 12;
/// No leader took a metadata change in time.
const TASK_TIMEOUT: u32 = 12001;
const GET_CONSUMER_GROUP: u32 = 600;
const CREATE_CONSUMER_GROUP: u32 = 602;
const JOIN_CONSUMER_GROUP: u32 = 604;
const DELETE_STREAM: u32 = 203;

struct Cluster {
    nodes: Vec<TestServer>,
    _configs: tempfile::TempDir,
    /// With `start_proxied`: the link from node `from` to node `to` (indices) at
    /// `from * count + to`.
    links: Vec<Option<FaultProxy>>,
}

/// Free loopback ports for the replication listeners: peers must know each other's address
/// before any starts, so these cannot be port 0. They are taken below the kernel's ephemeral
/// range, so that nothing bound to port 0 meanwhile (another test's server or fault proxy)
/// can take one between the probe here and its node's bind; a counter keeps them distinct
/// within this process, and each is probed free. Without room below that range: ports the
/// kernel hands out, bound and released at once.
fn free_ports(count: usize) -> Vec<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(0);
    if ephemeral_low < FIRST + 2_000 {
        let listeners: Vec<TcpListener> = (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
            .collect();
        return listeners
            .iter()
            .map(|listener| listener.local_addr().expect("local addr").port())
            .collect();
    }
    let span = ephemeral_low - FIRST;
    let base = std::process::id().wrapping_mul(7_919) % span;
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free port left below the ephemeral range");
        let port = u16::try_from(FIRST + (base + n) % span).expect("a port");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}

/// Node `node`'s config: it listens on `own`, and dials peer `i + 1` at `peers[i]` (its own
/// entry is `own`), with `extra` lines after the `[cluster]` keys.
fn write_config(
    dir: &Path,
    node: u64,
    own: SocketAddr,
    peers: &[SocketAddr],
    cluster_id: &str,
    extra: &str,
) -> PathBuf {
    let mut text = format!(
        "[cluster]\nenabled = true\nid = \"{cluster_id}\"\nnode_id = {node}\n\
         replication_address = \"{own}\"\n{extra}"
    );
    for (index, address) in peers.iter().enumerate() {
        let id = index as u64 + 1;
        let address = if id == node { own } else { *address };
        text.push_str(&format!(
            "[[cluster.peers]]\nid = {id}\nreplication_address = \"{address}\"\n"
        ));
    }
    let path = dir.join(format!("node{node}.toml"));
    std::fs::write(&path, text).expect("write node config");
    path
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl Cluster {
    /// `count` nodes that reach each other directly.
    fn start(count: usize) -> Cluster {
        Self::start_with(count, false, "", &[])
    }

    /// `count` nodes whose every link (each direction of each pair) passes a [`FaultProxy`],
    /// with a 50 ms tick: elections within 0.5–1 s, proposals given up after 5 s.
    fn start_proxied(count: usize) -> Cluster {
        Self::start_with(count, true, "tick_ms = 50\n", &[])
    }

    /// With `file_size_max[i]`, node `i`'s files are limited to that many bytes each.
    fn start_with(
        count: usize,
        proxied: bool,
        extra: &str,
        file_size_max: &[Option<u64>],
    ) -> Cluster {
        let configs = tempfile::tempdir().expect("config dir");
        let real: Vec<SocketAddr> = free_ports(count).into_iter().map(loopback).collect();
        let links: Vec<Option<FaultProxy>> = (0..count * count)
            .map(|link| {
                let (from, to) = (link / count, link % count);
                (proxied && from != to).then(|| FaultProxy::start(real[to]))
            })
            .collect();
        let mut nodes: Vec<TestServer> = (0..count)
            .map(|from| {
                let dials: Vec<SocketAddr> = (0..count)
                    .map(|to| {
                        links[from * count + to]
                            .as_ref()
                            .map_or(real[to], |proxy| proxy.address)
                    })
                    .collect();
                let node = from as u64 + 1;
                let config = write_config(
                    configs.path(),
                    node,
                    real[from],
                    &dials,
                    "test-cluster",
                    extra,
                );
                let args = ["--config", config.to_str().expect("utf-8 path")];
                match file_size_max.get(from).copied().flatten() {
                    Some(bytes) => TestServer::launch_with_file_size_max(&args, bytes),
                    None => TestServer::launch(&args),
                }
            })
            .collect();
        for node in &mut nodes {
            node.wait_ready();
        }
        Cluster {
            nodes,
            _configs: configs,
            links,
        }
    }

    /// The proxy on the link from node `from` to node `to`.
    fn link(&self, from: usize, to: usize) -> &FaultProxy {
        self.links[from * self.nodes.len() + to]
            .as_ref()
            .expect("a proxied cluster")
    }

    /// Every link of `node`, both ways.
    fn links_of(&self, node: usize) -> impl Iterator<Item = &FaultProxy> {
        (0..self.nodes.len())
            .filter(move |&other| other != node)
            .flat_map(move |other| [self.link(node, other), self.link(other, node)])
    }

    fn heal_all(&self) {
        self.links.iter().flatten().for_each(FaultProxy::heal);
    }

    /// A logged-in connection to node `index`; logins wait until the cluster has its root
    /// user, which takes a first election.
    fn connect(&self, index: usize) -> RawConn {
        let mut conn = RawConn::connect(self.nodes[index].addr);
        conn.login_root();
        conn
    }

    /// The node (index) that leads the metadata group, as every running node agrees.
    fn leader(&self, running: &[usize]) -> usize {
        wait_for(|| {
            let leaders: Vec<Option<usize>> = running
                .iter()
                .map(|&index| {
                    let roster = cluster_metadata(&mut self.connect(index));
                    roster
                        .nodes
                        .iter()
                        .position(|node| node.role == NODE_ROLE_LEADER)
                })
                .collect();
            let first = leaders[0]?;
            (leaders.iter().all(|leader| *leader == Some(first)) && running.contains(&first))
                .then_some(first)
        })
    }
}

fn http_get(address: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to HTTP");
    stream
        .set_read_timeout(Some(CLUSTER_TIMEOUT))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: galgo\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut response);
    response
}

fn cluster_metadata(conn: &mut RawConn) -> ClusterMetadata {
    let payload = conn.request(GET_CLUSTER_METADATA, &[]).ok();
    ClusterMetadata::decode(&payload).expect("a ClusterMetadata payload")
}

fn stream_names(conn: &mut RawConn) -> Vec<String> {
    let payload = conn.request(code::GET_STREAMS, &[]).ok();
    StreamHeader::decode_list(&payload)
        .expect("StreamHeaders")
        .into_iter()
        .map(|stream| stream.name)
        .collect()
}

/// Polls `probe` until it answers, at most [`CLUSTER_TIMEOUT`].
#[track_caller]
fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CLUSTER_TIMEOUT;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not get there in time"
        );
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// Waits until node `index` lists exactly `expected` streams, in id order.
#[track_caller]
fn wait_for_streams(cluster: &Cluster, index: usize, expected: &[&str]) {
    let mut conn = cluster.connect(index);
    wait_for(|| (stream_names(&mut conn) == expected).then_some(()));
}

#[test]
fn metadata_agrees_on_every_node_through_a_leader_kill_and_restarts() {
    let mut cluster = Cluster::start(3);
    // A change sent to any node, follower or leader, applies everywhere.
    raw::create_stream(&mut cluster.connect(1), "orders");
    let orders = 0;
    raw::create_topic(&mut cluster.connect(2), orders, "events", 3);
    raw::create_stream(&mut cluster.connect(0), "payments");
    for node in 0..3 {
        wait_for_streams(&cluster, node, &["orders", "payments"]);
    }
    let roster = cluster_metadata(&mut cluster.connect(0));
    assert_eq!(roster.name, "test-cluster");
    assert_eq!(roster.nodes.len(), 3);

    // The leader dies: the others elect another and take changes again.
    let leader = cluster.leader(&[0, 1, 2]);
    let metrics = http_get(cluster.nodes[2].http_addr.expect("HTTP runs"), "/metrics");
    let leader_line = format!("galgo_cluster_metadata_leader {}", leader + 1);
    assert!(metrics.contains(&leader_line), "{metrics}");
    cluster.nodes[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|&node| node != leader).collect();
    let new_leader = cluster.leader(&survivors);
    assert_ne!(new_leader, leader);
    raw::create_stream(&mut cluster.connect(survivors[0]), "refunds");
    let all = ["orders", "payments", "refunds"];
    for &node in &survivors {
        wait_for_streams(&cluster, node, &all);
    }
    let roster = cluster_metadata(&mut cluster.connect(survivors[0]));
    let healthy = roster
        .nodes
        .iter()
        .filter(|node| node.status == NODE_STATUS_HEALTHY)
        .count();
    assert!(healthy >= 2, "the survivors see each other: {roster:?}");

    // The killed node comes back and catches up from the log.
    cluster.nodes[leader].restart();
    wait_for_streams(&cluster, leader, &all);

    // Every node stops and starts again: what was committed is still there, everywhere, and
    // the cluster takes changes again.
    for node in &mut cluster.nodes {
        node.stop();
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    raw::create_stream(&mut cluster.connect(2), "audit");
    let all = ["orders", "payments", "refunds", "audit"];
    for node in 0..3 {
        wait_for_streams(&cluster, node, &all);
    }
    let mut conn = cluster.connect(0);
    let topics = conn
        .request(code::GET_STREAM, &raw::id_numeric(orders))
        .ok();
    assert!(!topics.is_empty(), "the topic survived on node 1");
}

const PURGE_STREAM: u32 = 205;
const FEATURE_UNAVAILABLE: u32 = 5;
/// A send refused, nothing stored (no partition leader, or replaced by another leader's).
const TRANSIENT_NOT_ACCEPTED: u32 = 58;
/// A send whose outcome is unknown: it may or may not be stored.
const TRANSIENT_NOT_COMMITTED: u32 = 57;

/// What became of one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Acknowledged,
    Refused,
    Unknown,
}

/// Sends one message to `partition` through node `index`.
fn send_one(
    cluster: &Cluster,
    index: usize,
    topic: (u32, u32),
    partition: u32,
    payload: &str,
) -> Sent {
    let Ok(mut conn) = RawConn::try_connect_logged_in(cluster.nodes[index].addr) else {
        return Sent::Refused;
    };
    let send = raw::SendMessages::new(topic.0, topic.1, partition, &[payload.as_bytes()]);
    conn.send_frame(code::SEND_MESSAGES, &send.encode());
    match conn.try_read_response() {
        Ok(response) if response.status == 0 => Sent::Acknowledged,
        Ok(response) if response.status == TRANSIENT_NOT_ACCEPTED => Sent::Refused,
        Ok(response) => {
            assert_eq!(response.status, TRANSIENT_NOT_COMMITTED, "a send's status");
            Sent::Unknown
        }
        // The node died with the send in flight.
        Err(_) => Sent::Unknown,
    }
}

/// Every payload of `partition` on node `index`, from offset 0, checked contiguous.
fn payloads_on(cluster: &Cluster, index: usize, topic: (u32, u32), partition: u32) -> Vec<String> {
    let mut conn = cluster.connect(index);
    let mut payloads = Vec::new();
    loop {
        let polled = raw::poll(
            &mut conn,
            topic.0,
            topic.1,
            partition,
            payloads.len() as u64,
            1000,
        );
        if polled.messages.is_empty() {
            return payloads;
        }
        for (offset, payload) in polled.messages {
            assert_eq!(offset, payloads.len() as u64, "offsets are contiguous");
            payloads.push(String::from_utf8(payload).expect("utf-8 payload"));
        }
    }
}

/// Checks one partition's history against what every running node holds: the same
/// messages everywhere, each once, the acknowledged ones all there in the order they were
/// sent, nothing refused. Waits for the nodes to catch up.
#[track_caller]
fn check_partition(
    cluster: &Cluster,
    running: &[usize],
    topic: (u32, u32),
    partition: u32,
    history: &[(String, Sent)],
) {
    let acknowledged: Vec<&String> = history
        .iter()
        .filter(|(_, sent)| *sent == Sent::Acknowledged)
        .map(|(payload, _)| payload)
        .collect();
    let held = wait_for(|| {
        let held: Vec<Vec<String>> = running
            .iter()
            .map(|&node| payloads_on(cluster, node, topic, partition))
            .collect();
        let agree = held.iter().all(|other| *other == held[0]);
        let complete = acknowledged.iter().all(|payload| held[0].contains(payload));
        (agree && complete).then(|| held[0].clone())
    });
    let mut seen = std::collections::HashSet::new();
    for payload in &held {
        assert!(seen.insert(payload), "{payload} stored twice: {held:?}");
        let (_, sent) = history
            .iter()
            .find(|(sent, _)| sent == payload)
            .unwrap_or_else(|| panic!("{payload} was never sent"));
        assert_ne!(*sent, Sent::Refused, "{payload} was refused but stored");
    }
    let order: Vec<&String> = held.iter().filter(|p| acknowledged.contains(p)).collect();
    assert_eq!(
        order, acknowledged,
        "acknowledged messages in the order they were sent"
    );
}

/// [`check_partition`] for every partition of the history.
#[track_caller]
fn check_partitions(
    cluster: &Cluster,
    running: &[usize],
    topic: (u32, u32),
    history: &[Vec<(String, Sent)>],
) {
    for (partition, sent) in history.iter().enumerate() {
        check_partition(cluster, running, topic, partition as u32, sent);
    }
}

#[test]
fn messages_are_replicated_and_none_acknowledged_is_lost_when_a_leader_dies() {
    let mut cluster = Cluster::start(3);
    let stream = raw::create_stream(&mut cluster.connect(0), "orders");
    let topic_id = raw::create_topic(&mut cluster.connect(1), stream, "events", 3);
    let topic = (stream, topic_id);
    let mut history: Vec<Vec<(String, Sent)>> = vec![Vec::new(); 3];
    // Through every node to every partition: a node that does not lead a partition forwards
    // to the one that does. Until the groups have leaders a send may be refused.
    let mut n = 0;
    for partition in 0..3u32 {
        wait_for(|| {
            let payload = format!("p{partition}-warmup-{n}");
            n += 1;
            let sent = send_one(&cluster, 0, topic, partition, &payload);
            history[partition as usize].push((payload, sent));
            (sent == Sent::Acknowledged).then_some(())
        });
    }
    for k in 0..30u32 {
        let (node, partition) = ((k % 3) as usize, (k / 3) % 3);
        let payload = format!("p{partition}-m{k}");
        let sent = send_one(&cluster, node, topic, partition, &payload);
        assert_eq!(sent, Sent::Acknowledged, "{payload} through node {node}");
        history[partition as usize].push((payload, sent));
    }
    check_partitions(&cluster, &[0, 1, 2], topic, &history);
    let metrics = http_get(cluster.nodes[0].http_addr.expect("HTTP runs"), "/metrics");
    for name in ["galgo_partition_leader{", "galgo_partition_high_watermark{"] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    // A purge would rewind offsets under the Raft logs: refused, nothing lost.
    cluster
        .connect(1)
        .request(PURGE_STREAM, &raw::id_numeric(stream))
        .assert_error(FEATURE_UNAVAILABLE);
    check_partitions(&cluster, &[0, 1, 2], topic, &history);

    // A node dies (SIGKILL) while sends go on through another: it leads a partition group
    // (leaders are spread), so that partition elects another leader; the sends are
    // acknowledged again once it has, and nothing acknowledged is lost.
    let (victim, sender) = (0, 1);
    let mut k = 100;
    let mut send_round = |cluster: &Cluster, history: &mut Vec<Vec<(String, Sent)>>| {
        for partition in 0..3u32 {
            let payload = format!("p{partition}-m{k}");
            k += 1;
            let sent = send_one(cluster, sender, topic, partition, &payload);
            history[partition as usize].push((payload, sent));
        }
    };
    for _ in 0..5 {
        send_round(&cluster, &mut history);
    }
    cluster.nodes[victim].kill();
    wait_for(|| {
        send_round(&cluster, &mut history);
        let recent = history.iter().all(|partition| {
            partition
                .last()
                .is_some_and(|(_, sent)| *sent == Sent::Acknowledged)
        });
        recent.then_some(())
    });
    check_partitions(&cluster, &[1, 2], topic, &history);
    // It comes back and catches up: every node holds the same messages.
    cluster.nodes[victim].restart();
    send_round(&cluster, &mut history);
    check_partitions(&cluster, &[0, 1, 2], topic, &history);
}

#[test]
fn messages_survive_cut_one_way_and_slow_links_between_nodes() {
    let cluster = Cluster::start_proxied(3);
    let stream = raw::create_stream(&mut cluster.connect(0), "orders");
    let topic_id = raw::create_topic(&mut cluster.connect(0), stream, "events", 3);
    let topic = (stream, topic_id);
    let mut history: Vec<Vec<(String, Sent)>> = vec![Vec::new(); 3];
    let mut k = 0;
    // One message to every partition through node 1; true when all were acknowledged.
    let mut round = |cluster: &Cluster, history: &mut Vec<Vec<(String, Sent)>>| {
        let mut acknowledged = true;
        for partition in 0..3u32 {
            let payload = format!("p{partition}-m{k}");
            k += 1;
            let sent = send_one(cluster, 0, topic, partition, &payload);
            acknowledged &= sent == Sent::Acknowledged;
            history[partition as usize].push((payload, sent));
        }
        acknowledged
    };
    wait_for(|| round(&cluster, &mut history).then_some(()));
    let third = 2;
    // Node 3 cut off both ways, then its outgoing links only (what it sends is lost, what
    // it is sent arrives), then every link slow: whatever it led is led by another node
    // within an election, sends through node 1 are acknowledged again, and after healing
    // every node holds the same messages.
    let faults: [&dyn Fn(&Cluster); 3] = [
        &|cluster| cluster.links_of(third).for_each(FaultProxy::cut),
        &|cluster| {
            (0..3)
                .filter(|&to| to != third)
                .for_each(|to| cluster.link(third, to).cut())
        },
        &|cluster| {
            for link in cluster.links.iter().flatten() {
                link.delay(Duration::from_millis(100));
            }
        },
    ];
    for fault in faults {
        fault(&cluster);
        for _ in 0..3 {
            wait_for(|| round(&cluster, &mut history).then_some(()));
        }
        cluster.heal_all();
        round(&cluster, &mut history);
        check_partitions(&cluster, &[0, 1, 2], topic, &history);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_clients_work_through_any_node() {
    use iggy::prelude::*;
    use support::sdk::{self, Via};
    let cluster = Cluster::start(3);
    cluster.leader(&[0, 1, 2]);
    // The roster names every node's client ports, which peers learned from their handshakes:
    // the SDK moves a client to the leader's address, so a port 0 there would strand it.
    let roster = wait_for(|| {
        let roster = cluster_metadata(&mut cluster.connect(0));
        let known = |node: &galgo_protocol::command::system::ClusterNode| {
            node.tcp_port != 0 && node.websocket_port != 0
        };
        roster.nodes.iter().all(known).then_some(roster)
    });
    for (index, node) in roster.nodes.iter().enumerate() {
        assert_eq!(
            node.tcp_port,
            cluster.nodes[index].addr.port(),
            "{roster:?}"
        );
        assert_eq!(node.websocket_port, cluster.nodes[index].ws_addr.port());
    }
    let mut expected = Vec::new();
    for (index, node) in cluster.nodes.iter().enumerate() {
        let client = sdk::client(node.addr).await;
        let name = format!("sdk-{index}");
        client
            .create_stream(&name)
            .await
            .expect("create through any node");
        expected.push(name);
        let streams = client.get_streams().await.expect("list");
        let names: Vec<String> = streams.into_iter().map(|stream| stream.name).collect();
        assert_eq!(names, expected);
    }
    let client = sdk::client_via(cluster.nodes[2].ws_addr, &Via::WebSocket).await;
    client
        .create_stream("sdk-ws")
        .await
        .expect("create over WebSocket");
    expected.push("sdk-ws".into());
    // The 0.9 generation (iggy 0.11) manages metadata through a cluster node too.
    let next = support::sdk_next::client(cluster.nodes[1].addr).await;
    iggy_next::prelude::StreamClient::create_stream(&next, "sdk-next")
        .await
        .expect("create with the 0.9 SDK");
    expected.push("sdk-next".into());
    for node in 0..3 {
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        wait_for_streams(&cluster, node, &expected);
    }

    // Consumer groups are cluster metadata too (raw connections, so each step reaches the
    // node it names; the SDK would move to the leader): created through node 1, joined
    // through node 2, seen with that member through node 3.
    let mut first = cluster.connect(0);
    let stream = raw::create_stream(&mut first, "grouped");
    let topic = raw::create_topic(&mut first, stream, "t", 2);
    let mut scope = raw::id_numeric(stream);
    scope.extend(raw::id_numeric(topic));
    let mut create = scope.clone();
    create.extend(raw::str8(b"g"));
    first.request(CREATE_CONSUMER_GROUP, &create).ok();
    let mut group = scope.clone();
    group.extend(raw::id_named("g"));
    let mut second = cluster.connect(1);
    wait_for(|| (second.request(JOIN_CONSUMER_GROUP, &group).status == 0).then_some(()));
    let mut third = cluster.connect(2);
    wait_for(|| {
        let details = third.request(GET_CONSUMER_GROUP, &group).ok();
        // GroupHeader: id u32 | partitions_count u32 | members_count u32 | name
        let members = details
            .get(8..12)
            .map(|count| u32::from_le_bytes(count.try_into().expect("4")));
        (members == Some(1)).then_some(())
    });
}

const DELETE_SEGMENTS: u32 = 503;

/// Node `index`'s messages of `partition` from its first offset on: (first offset, payloads),
/// checked contiguous.
fn payloads_from_first(
    cluster: &Cluster,
    index: usize,
    topic: (u32, u32),
    partition: u32,
) -> (u64, Vec<String>) {
    let mut conn = cluster.connect(index);
    let mut first = None;
    let mut payloads = Vec::new();
    loop {
        let next = first.map_or(0, |first| first + payloads.len() as u64);
        let polled = raw::poll(&mut conn, topic.0, topic.1, partition, next, 1000);
        if polled.messages.is_empty() {
            return (first.unwrap_or(polled.current_offset + 1), payloads);
        }
        for (offset, payload) in polled.messages {
            let first = *first.get_or_insert(offset);
            assert_eq!(
                offset,
                first + payloads.len() as u64,
                "offsets are contiguous"
            );
            payloads.push(String::from_utf8(payload).expect("utf-8 payload"));
        }
    }
}

/// Sends `payload` through node `index` until it is acknowledged (an election may be on).
fn send_acknowledged(cluster: &Cluster, index: usize, topic: (u32, u32), payload: &str) {
    wait_for(|| (send_one(cluster, index, topic, 0, payload) == Sent::Acknowledged).then_some(()));
}

#[test]
fn a_follower_behind_retention_catches_up_by_snapshot() {
    // 4 KiB segments: a few hundred messages fill many, which the delete-segments command
    // removes on the nodes that run.
    let mut cluster = Cluster::start_with(
        3,
        false,
        "tick_ms = 50\n[storage]\nsegment_size_bytes = 4096\n",
        &[],
    );
    let stream = raw::create_stream(&mut cluster.connect(0), "retained");
    let topic_id = raw::create_topic(&mut cluster.connect(0), stream, "log", 1);
    let topic = (stream, topic_id);
    let pad = "x".repeat(200);
    for k in 0..5 {
        send_acknowledged(&cluster, 0, topic, &format!("early{k}-{pad}"));
    }
    let victim = 2;
    wait_for(|| (payloads_from_first(&cluster, victim, topic, 0).1.len() == 5).then_some(()));
    cluster.nodes[victim].kill();
    for k in 0..200 {
        send_acknowledged(&cluster, k % 2, topic, &format!("m{k}-{pad}"));
    }
    // Retention on the two that run: allowed once the commit is saved, so asked again
    // until it has removed what the victim lacks.
    let mut delete = raw::id_numeric(stream);
    delete.extend_from_slice(&raw::id_numeric(topic_id));
    delete.extend_from_slice(&0u32.to_le_bytes());
    delete.extend_from_slice(&1000u32.to_le_bytes());
    let firsts: Vec<u64> = [0, 1]
        .into_iter()
        .map(|node| {
            wait_for(|| {
                let mut conn = cluster.connect(node);
                let _ = conn.request(DELETE_SEGMENTS, &delete);
                let (first, _) = payloads_from_first(&cluster, node, topic, 0);
                (first >= 100).then_some(first)
            })
        })
        .collect();
    // The victim comes back behind both logs' starts: it gets a snapshot, restarts its log
    // where the leader's starts, and takes what follows by log.
    cluster.nodes[victim].restart();
    let (first, held) = wait_for(|| {
        let (first, held) = payloads_from_first(&cluster, victim, topic, 0);
        held.last()
            .is_some_and(|last| last.starts_with("m199-"))
            .then_some((first, held))
    });
    assert!(
        first >= *firsts.iter().min().expect("two"),
        "{first} {firsts:?}"
    );
    assert!(first < 205, "the victim holds messages, not only a start");
    // Each node's retention cut its own log at its own saved commit: compare from the later
    // of the two starts (the victim's came from the leader's and may be below the other's).
    for node in [0, 1] {
        let (their_first, theirs) = payloads_from_first(&cluster, node, topic, 0);
        let from = first.max(their_first);
        let index = |start: u64| usize::try_from(from - start).expect("a small offset");
        assert_eq!(
            theirs[index(their_first)..],
            held[index(first)..],
            "node {node} and the victim agree"
        );
    }
    // A full member: with another node gone, sends still commit, and the victim has them.
    cluster.nodes[1].kill();
    send_acknowledged(&cluster, 0, topic, "after-the-snapshot");
    wait_for(|| {
        let (_, held) = payloads_from_first(&cluster, victim, topic, 0);
        (held.last().map(String::as_str) == Some("after-the-snapshot")).then_some(())
    });
    assert!(cluster.nodes[victim].logs().contains("snapshot installed"));
}

#[test]
fn a_node_behind_the_metadata_log_start_catches_up_from_a_snapshot() {
    let mut cluster = Cluster::start_with(
        3,
        false,
        "tick_ms = 50\nmetadata_snapshot_entries = 16\n",
        &[],
    );
    let gone = raw::create_stream(&mut cluster.connect(0), "gone");
    raw::create_topic(&mut cluster.connect(0), gone, "old", 1);
    let kept = raw::create_stream(&mut cluster.connect(0), "kept");
    let kept_topic = raw::create_topic(&mut cluster.connect(0), kept, "t", 1);
    send_acknowledged(&cluster, 0, (kept, kept_topic), "before");
    send_acknowledged(&cluster, 0, (gone, 0), "old-message");
    let victim = 2;
    wait_for_streams(&cluster, victim, &["gone", "kept"]);
    wait_for(|| (payloads_on(&cluster, victim, (gone, 0), 0).len() == 1).then_some(()));
    cluster.nodes[victim].kill();

    // While it is away: a stream deleted, its id reused by a new stream whose topic's
    // partition has the same key as the deleted one's, then more than two compactions' worth
    // of entries, so that the others' last snapshots cover all of it and their logs start
    // past everything the victim holds.
    let mut conn = cluster.connect(0);
    conn.request(DELETE_STREAM, &raw::id_numeric(gone)).ok();
    let names: Vec<String> = (0..40).map(|k| format!("s{k}")).collect();
    let reused = raw::create_stream(&mut conn, &names[0]);
    assert_eq!(reused, gone, "the first new stream takes the freed id");
    raw::create_topic(&mut conn, reused, "new", 1);
    send_acknowledged(&cluster, 0, (reused, 0), "new-message");
    for name in &names[1..] {
        raw::create_stream(&mut conn, name);
    }
    for node in [0, 1] {
        wait_for(|| {
            cluster.nodes[node]
                .logs()
                .contains("metadata log compacted into a snapshot")
                .then_some(())
        });
    }

    // Back, it gets the leader's snapshot: the same streams, the deleted partition's files
    // gone and the new one replicating in its place.
    cluster.nodes[victim].restart();
    let mut expected: Vec<&str> = vec!["s0", "kept"];
    expected.extend(names[1..].iter().map(String::as_str));
    wait_for_streams(&cluster, victim, &expected);
    assert!(
        cluster.nodes[victim]
            .logs()
            .contains("metadata snapshot installed from the leader")
    );
    wait_for(|| (payloads_on(&cluster, victim, (reused, 0), 0) == ["new-message"]).then_some(()));
    send_acknowledged(&cluster, victim, (kept, kept_topic), "after");
    wait_for(|| {
        (payloads_on(&cluster, victim, (kept, kept_topic), 0) == ["before", "after"]).then_some(())
    });

    // Every node starts again from its compacted log, and the cluster takes changes again.
    for node in &mut cluster.nodes {
        node.stop();
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    raw::create_stream(&mut cluster.connect(1), "last");
    expected.push("last");
    for node in 0..3 {
        wait_for_streams(&cluster, node, &expected);
        wait_for(|| {
            (payloads_on(&cluster, node, (kept, kept_topic), 0) == ["before", "after"])
                .then_some(())
        });
    }
}

#[test]
fn entries_since_the_last_metadata_snapshot_count_across_a_restart() {
    let mut cluster = Cluster::start_with(
        3,
        false,
        "tick_ms = 50\nmetadata_snapshot_entries = 16\n",
        &[],
    );
    let names: Vec<String> = (0..18).map(|k| format!("s{k}")).collect();
    // Fewer than 16 entries before node 3 restarts, fewer than 16 after, more than 16 in all.
    for name in &names[..6] {
        raw::create_stream(&mut cluster.connect(0), name);
    }
    let shown: Vec<&str> = names[..6].iter().map(String::as_str).collect();
    wait_for_streams(&cluster, 2, &shown);
    cluster.nodes[2].stop();
    cluster.nodes[2].restart();
    for name in &names[6..] {
        raw::create_stream(&mut cluster.connect(0), name);
    }
    let shown: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for_streams(&cluster, 2, &shown);
    wait_for(|| {
        cluster.nodes[2]
            .logs()
            .contains("metadata log compacted into a snapshot")
            .then_some(())
    });
}

/// Offsets `consumer` reads from partition 0 with Next and auto-commit (routed polls), three
/// at a time, until it has read `count`.
async fn poll_routed(
    client: &iggy_next::prelude::IggyClient,
    (stream, topic): (
        &iggy_next::prelude::Identifier,
        &iggy_next::prelude::Identifier,
    ),
    consumer: &iggy_next::prelude::Consumer,
    count: usize,
) -> Vec<u64> {
    use iggy_next::prelude::*;
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    while seen.len() < count {
        assert!(started.elapsed() < CLUSTER_TIMEOUT, "read {seen:?} only");
        let page = client
            .poll_messages(
                stream,
                topic,
                Some(0),
                consumer,
                &PollingStrategy::next(),
                3,
                true,
            )
            .await
            .expect("an auto-commit poll, routed");
        seen.extend(support::sdk_next::offsets(&page.messages));
    }
    seen
}

/// The 0.9 SDK (`iggy` 0.11) on a roster of three nodes routes auto-commit polls and offset
/// writes (103/123 on its connection, then a data connection that Registers, attaches with
/// 14 and polls with 104): a single consumer's and a group member's auto-commit polls read
/// each message once, and offsets are stored, read and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_0_9_sdk_routes_auto_commit_polls_and_offsets_on_a_cluster() {
    use iggy_next::prelude::*;
    use support::sdk_next::{self as sdk, id, name};
    let cluster = Cluster::start(3);
    cluster.leader(&[0, 1, 2]);
    wait_for(|| {
        let roster = cluster_metadata(&mut cluster.connect(0));
        roster
            .nodes
            .iter()
            .all(|node| node.tcp_port != 0)
            .then_some(())
    });
    let client = sdk::client(cluster.nodes[1].addr).await;
    let (stream, topic) = sdk::create_stream_and_topic(&client, "routed", "t", 1).await;
    let (s, t) = (id(stream), id(topic));
    // A node serves what it has committed; the SDK client may sit on any node (it moves to
    // the metadata leader after its login).
    sdk::send_to(&client, stream, topic, 0, sdk::messages("m", 0..10)).await;
    let reader = Consumer::new(name("reader"));
    let seen = poll_routed(&client, (&s, &t), &reader, 10).await;
    assert_eq!(
        seen,
        (0..10).collect::<Vec<u64>>(),
        "each message once, in order"
    );
    let stored = client
        .get_consumer_offset(&reader, &s, &t, Some(0))
        .await
        .expect("get offset")
        .expect("auto-commit stored the offset");
    assert_eq!(stored.stored_offset, 9);
    client
        .store_consumer_offset(&reader, &s, &t, Some(0), 4)
        .await
        .expect("store an offset, routed");
    let stored = client
        .get_consumer_offset(&reader, &s, &t, Some(0))
        .await
        .expect("get offset");
    assert_eq!(stored.map(|info| info.stored_offset), Some(4));
    client
        .delete_consumer_offset(&reader, &s, &t, Some(0))
        .await
        .expect("delete an offset, routed");
    let stored = client
        .get_consumer_offset(&reader, &s, &t, Some(0))
        .await
        .expect("get offset");
    assert!(stored.is_none(), "{stored:?}");

    // A group member's polls act for the main connection's membership on the data connection.
    client
        .create_consumer_group(&s, &t, "g")
        .await
        .expect("create group");
    client
        .join_consumer_group(&s, &t, &name("g"))
        .await
        .expect("join");
    let group = Consumer::group(name("g"));
    let seen = poll_routed(&client, (&s, &t), &group, 10).await;
    assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    let stored = client
        .get_consumer_offset(&group, &s, &t, Some(0))
        .await
        .expect("get the group's offset")
        .expect("stored");
    assert_eq!(stored.stored_offset, 9);
}

const GET_CONSUMER_OFFSET: u32 = 120;
const STORE_CONSUMER_OFFSET: u32 = 121;
const DELETE_CONSUMER_OFFSET: u32 = 122;

/// A single consumer's offset target on partition 0: consumer | stream | topic | partition.
fn offset_target(consumer: u32, topic: (u32, u32)) -> Vec<u8> {
    let mut target = vec![1];
    target.extend(raw::id_numeric(consumer));
    target.extend(raw::id_numeric(topic.0));
    target.extend(raw::id_numeric(topic.1));
    target.push(1);
    target.extend_from_slice(&0u32.to_le_bytes());
    target
}

/// The offset node `index` stores for `consumer` on partition 0.
fn stored_offset_on(
    cluster: &Cluster,
    index: usize,
    consumer: u32,
    topic: (u32, u32),
) -> Option<u64> {
    let reply = cluster
        .connect(index)
        .request(GET_CONSUMER_OFFSET, &offset_target(consumer, topic))
        .ok();
    // partition u32 | current offset u64 | stored offset u64, or nothing.
    (reply.len() == 20).then(|| u64::from_le_bytes(reply[12..20].try_into().expect("8")))
}

/// An auto-commit poll of `count` with Next through node `index`: the offsets it returned.
fn poll_next_on(
    cluster: &Cluster,
    index: usize,
    consumer: u32,
    topic: (u32, u32),
    count: u32,
) -> Vec<u64> {
    let mut payload = offset_target(consumer, topic);
    payload.push(5); // Next
    payload.extend_from_slice(&0u64.to_le_bytes());
    payload.extend_from_slice(&count.to_le_bytes());
    payload.push(1); // auto-commit
    let mut conn = cluster.connect(index);
    let reply = conn.request(code::POLL_MESSAGES, &payload).ok();
    raw::decode_polled(&reply)
        .messages
        .into_iter()
        .map(|(offset, _)| offset)
        .collect()
}

#[test]
fn consumer_offsets_are_replicated_to_every_node() {
    let cluster = Cluster::start(3);
    let stream = raw::create_stream(&mut cluster.connect(0), "offsets");
    let topic_id = raw::create_topic(&mut cluster.connect(1), stream, "t", 1);
    let topic = (stream, topic_id);
    for k in 0..10 {
        send_acknowledged(&cluster, k % 3, topic, &format!("m{k}"));
    }
    // Stored through one node, read through every node.
    let mut store = offset_target(5, topic);
    store.extend_from_slice(&6u64.to_le_bytes());
    cluster
        .connect(1)
        .request(STORE_CONSUMER_OFFSET, &store)
        .ok();
    for node in 0..3 {
        wait_for(|| (stored_offset_on(&cluster, node, 5, topic) == Some(6)).then_some(()));
    }
    // Past the committed messages: refused by the leader, whichever node it came through.
    let mut past = offset_target(5, topic);
    past.extend_from_slice(&10u64.to_le_bytes());
    cluster
        .connect(2)
        .request(STORE_CONSUMER_OFFSET, &past)
        .assert_error(4100);
    // A consumer moving between nodes goes on where it stopped (once the node it moves to
    // applied its commit).
    assert_eq!(poll_next_on(&cluster, 2, 9, topic, 4), vec![0, 1, 2, 3]);
    wait_for(|| (stored_offset_on(&cluster, 0, 9, topic) == Some(3)).then_some(()));
    assert_eq!(poll_next_on(&cluster, 0, 9, topic, 4), vec![4, 5, 6, 7]);
    // Deleted through another node: gone everywhere; a second delete finds nothing.
    let target = offset_target(5, topic);
    cluster
        .connect(2)
        .request(DELETE_CONSUMER_OFFSET, &target)
        .ok();
    for node in 0..3 {
        wait_for(|| {
            stored_offset_on(&cluster, node, 5, topic)
                .is_none()
                .then_some(())
        });
    }
    cluster
        .connect(0)
        .request(DELETE_CONSUMER_OFFSET, &target)
        .assert_error(3021);
}

#[test]
fn an_auto_commit_poll_is_answered_before_its_offset_commits() {
    let mut cluster = Cluster::start_with(3, false, "tick_ms = 50\n", &[]);
    let stream = raw::create_stream(&mut cluster.connect(0), "early");
    let topic_id = raw::create_topic(&mut cluster.connect(0), stream, "t", 1);
    let topic = (stream, topic_id);
    for k in 0..10 {
        send_acknowledged(&cluster, 0, topic, &format!("m{k}"));
    }
    // A follower of the partition left alone: no offset can commit (its leader is gone), yet
    // its auto-commit polls are answered, each going on after the one before, and its stored
    // offset reads as the one proposed.
    for node in 0..3 {
        wait_for(|| (payloads_on(&cluster, node, topic, 0).len() == 10).then_some(()));
    }
    let leader = wait_for(|| partition_leader_on(&cluster, 0));
    let alone = (0..3).find(|&node| node != leader).expect("a follower");
    for node in (0..3).filter(|&node| node != alone) {
        cluster.nodes[node].kill();
    }
    assert_eq!(poll_next_on(&cluster, alone, 9, topic, 4), vec![0, 1, 2, 3]);
    assert_eq!(poll_next_on(&cluster, alone, 9, topic, 4), vec![4, 5, 6, 7]);
    assert_eq!(stored_offset_on(&cluster, alone, 9, topic), Some(7));
    // Once the proposals give up, the stored offset is what was committed (nothing), so
    // those messages come again: at least once.
    wait_for(|| {
        stored_offset_on(&cluster, alone, 9, topic)
            .is_none()
            .then_some(())
    });
    // With a majority back, offsets commit again, the same on every node.
    for node in (0..3).filter(|&node| node != alone) {
        cluster.nodes[node].restart();
    }
    assert_eq!(poll_next_on(&cluster, alone, 9, topic, 4), vec![0, 1, 2, 3]);
    for node in 0..3 {
        wait_for(|| (stored_offset_on(&cluster, node, 9, topic) == Some(3)).then_some(()));
    }
}

/// The node (index) that node `index` sees leading its only partition, from its /metrics.
fn partition_leader_on(cluster: &Cluster, index: usize) -> Option<usize> {
    let metrics = http_get(
        cluster.nodes[index].http_addr.expect("HTTP runs"),
        "/metrics",
    );
    let line = metrics
        .lines()
        .find(|line| line.starts_with("galgo_partition_leader{"))?;
    let node: usize = line.rsplit(' ').next()?.trim().parse().ok()?;
    node.checked_sub(1)
}

/// The nodes node `index` reports healthy in GetClusterMetadata, by name.
fn healthy_on(cluster: &Cluster, index: usize) -> Vec<String> {
    let roster = cluster_metadata(&mut cluster.connect(index));
    roster
        .nodes
        .into_iter()
        .filter(|node| node.status == NODE_STATUS_HEALTHY)
        .map(|node| node.name)
        .collect()
}

/// GetClusterMetadata's status: with no partition at all (the followers of the metadata group
/// hear from each other only through keepalives), every node reports every running node
/// healthy, and a killed one unreachable.
#[test]
fn every_node_reports_the_running_nodes_healthy_and_a_dead_one_unreachable() {
    let mut cluster = Cluster::start(3);
    raw::create_stream(&mut cluster.connect(0), "metadata-only");
    let all = ["galgo-node-1", "galgo-node-2", "galgo-node-3"];
    for node in 0..3 {
        wait_for(|| (healthy_on(&cluster, node) == all).then_some(()));
    }
    cluster.nodes[2].kill();
    for node in 0..2 {
        wait_for(|| (healthy_on(&cluster, node) == all[..2]).then_some(()));
    }
}

/// Sends one message with `id` to partition 0 through node `index`, until acknowledged.
fn send_with_id(cluster: &Cluster, index: usize, topic: (u32, u32), id: u128, payload: &str) {
    wait_for(|| {
        let mut conn = RawConn::try_connect_logged_in(cluster.nodes[index].addr).ok()?;
        let send = raw::SendMessages::with_ids(topic.0, topic.1, 0, &[(id, payload.as_bytes())]);
        conn.send_frame(code::SEND_MESSAGES, &send.encode());
        let response = conn.try_read_response().ok()?;
        (response.status == 0).then_some(())
    });
}

#[test]
fn a_committed_message_id_is_dropped_through_any_node_and_after_a_failover() {
    let mut cluster = Cluster::start_with(
        3,
        false,
        "tick_ms = 50\n[deduplication]\nenabled = true\n",
        &[],
    );
    let stream = raw::create_stream(&mut cluster.connect(0), "dedup");
    let topic_id = raw::create_topic(&mut cluster.connect(0), stream, "t", 1);
    let topic = (stream, topic_id);
    send_with_id(&cluster, 0, topic, 42, "first");
    // The same id again through every node, the leader or not: acknowledged, not stored.
    for node in 0..3 {
        send_with_id(&cluster, node, topic, 42, &format!("again-{node}"));
    }
    send_with_id(&cluster, 1, topic, 43, "second");
    for node in 0..3 {
        wait_for(|| (payloads_on(&cluster, node, topic, 0) == ["first", "second"]).then_some(()));
    }
    // The leader dies: the new one learnt the ids of what was committed when it applied it.
    let leader = wait_for(|| partition_leader_on(&cluster, 0));
    cluster.nodes[leader].kill();
    let survivors: Vec<usize> = (0..3).filter(|&node| node != leader).collect();
    send_with_id(&cluster, survivors[0], topic, 42, "after-failover");
    send_with_id(&cluster, survivors[1], topic, 43, "after-failover");
    send_with_id(&cluster, survivors[0], topic, 44, "third");
    for &node in &survivors {
        wait_for(|| {
            (payloads_on(&cluster, node, topic, 0) == ["first", "second", "third"]).then_some(())
        });
    }
}

const DELETE_CONSUMER_GROUP: u32 = 603;

/// A group's offset target on partition 0 (the group by name).
fn group_target(group: &str, topic: (u32, u32)) -> Vec<u8> {
    let mut target = vec![2];
    target.extend(raw::id_named(group));
    target.extend(raw::id_numeric(topic.0));
    target.extend(raw::id_numeric(topic.1));
    target.push(1);
    target.extend_from_slice(&0u32.to_le_bytes());
    target
}

#[test]
fn a_deleted_groups_offsets_are_gone_from_every_node() {
    let cluster = Cluster::start(3);
    let stream = raw::create_stream(&mut cluster.connect(0), "groups");
    let topic_id = raw::create_topic(&mut cluster.connect(0), stream, "t", 1);
    let topic = (stream, topic_id);
    for k in 0..5 {
        send_acknowledged(&cluster, 0, topic, &format!("m{k}"));
    }
    let mut scope = raw::id_numeric(stream);
    scope.extend(raw::id_numeric(topic_id));
    let create = |node: usize, name: &str| {
        let mut create = scope.clone();
        create.extend(raw::str8(name.as_bytes()));
        wait_for(|| {
            (cluster
                .connect(node)
                .request(CREATE_CONSUMER_GROUP, &create)
                .status
                == 0)
                .then_some(())
        });
    };
    // A member stores the group's offset through node 1: every node has it.
    create(0, "g");
    let mut member = cluster.connect(0);
    let mut join = scope.clone();
    join.extend(raw::id_named("g"));
    wait_for(|| (member.request(JOIN_CONSUMER_GROUP, &join).status == 0).then_some(()));
    let mut store = group_target("g", topic);
    store.extend_from_slice(&3u64.to_le_bytes());
    member.request(STORE_CONSUMER_OFFSET, &store).ok();
    let stored_on = |node: usize, group: &str| {
        let reply = cluster
            .connect(node)
            .request(GET_CONSUMER_OFFSET, &group_target(group, topic))
            .ok();
        (reply.len() == 20).then(|| u64::from_le_bytes(reply[12..20].try_into().expect("8")))
    };
    for node in 0..3 {
        wait_for(|| (stored_on(node, "g") == Some(3)).then_some(()));
    }
    // Deleted through node 2, and a new group through node 3 reuses its id: no node gives
    // the new group the old one's offset.
    let mut delete = scope.clone();
    delete.extend(raw::id_named("g"));
    cluster
        .connect(1)
        .request(DELETE_CONSUMER_GROUP, &delete)
        .ok();
    create(2, "h");
    for node in 0..3 {
        wait_for(|| {
            let reply = cluster.connect(node).request(GET_CONSUMER_GROUP, &{
                let mut get = scope.clone();
                get.extend(raw::id_named("h"));
                get
            });
            (reply.status == 0).then_some(())
        });
        assert_eq!(stored_on(node, "h"), None, "node {node}");
    }
}

/// The member count of group `g` of `scope` as node `index` sees it.
fn members_on(cluster: &Cluster, index: usize, scope: &[u8]) -> Option<u32> {
    let mut group = scope.to_vec();
    group.extend(raw::id_named("g"));
    let details = cluster
        .connect(index)
        .request(GET_CONSUMER_GROUP, &group)
        .ok();
    // GroupHeader: id u32 | partitions_count u32 | members_count u32 | name
    details
        .get(8..12)
        .map(|count| u32::from_le_bytes(count.try_into().expect("4")))
}

/// A new stream `stream_name` with a topic "t" of 2 partitions and a group "g" on it, made
/// through node 1: the topic's identifiers (the scope of group requests) and the group's.
fn topic_with_group(cluster: &Cluster, stream_name: &str) -> (Vec<u8>, Vec<u8>) {
    let stream = raw::create_stream(&mut cluster.connect(0), stream_name);
    let topic = raw::create_topic(&mut cluster.connect(0), stream, "t", 2);
    let mut scope = raw::id_numeric(stream);
    scope.extend(raw::id_numeric(topic));
    let mut create = scope.clone();
    create.extend(raw::str8(b"g"));
    wait_for(|| {
        (cluster
            .connect(0)
            .request(CREATE_CONSUMER_GROUP, &create)
            .status
            == 0)
            .then_some(())
    });
    let mut group = scope.clone();
    group.extend(raw::id_named("g"));
    (scope, group)
}

#[test]
fn members_through_a_node_that_restarts_leave_their_groups() {
    let mut cluster = Cluster::start(3);
    let (scope, join) = topic_with_group(&cluster, "members");
    // One member through node 2, one through node 3.
    let mut second = cluster.connect(1);
    wait_for(|| (second.request(JOIN_CONSUMER_GROUP, &join).status == 0).then_some(()));
    let mut third = cluster.connect(2);
    wait_for(|| (third.request(JOIN_CONSUMER_GROUP, &join).status == 0).then_some(()));
    wait_for(|| (members_on(&cluster, 0, &scope) == Some(2)).then_some(()));
    // Node 3 dies: nobody saw its client leave, so its member stays while it is down ...
    cluster.nodes[2].kill();
    assert_eq!(members_on(&cluster, 0, &scope), Some(2));
    // ... and goes once it starts again; the member through node 2 stays.
    cluster.nodes[2].restart();
    for node in 0..3 {
        wait_for(|| (members_on(&cluster, node, &scope) == Some(1)).then_some(()));
    }
    let mut fresh = cluster.connect(2);
    wait_for(|| (fresh.request(JOIN_CONSUMER_GROUP, &join).status == 0).then_some(()));
    wait_for(|| (members_on(&cluster, 0, &scope) == Some(2)).then_some(()));
    assert!(
        cluster.nodes[2]
            .logs()
            .contains("consumer-group members from before this start removed")
    );
    drop(second);
}

#[test]
fn members_through_a_node_that_stays_away_leave_their_groups_after_the_member_timeout() {
    let mut cluster =
        Cluster::start_with(3, false, "tick_ms = 50\nmember_timeout_ms = 2000\n", &[]);
    let (scope, group) = topic_with_group(&cluster, "lost");
    // One member through node 2, one through node 3: a partition each.
    let mut second = cluster.connect(1);
    wait_for(|| (second.request(JOIN_CONSUMER_GROUP, &group).status == 0).then_some(()));
    let mut third = cluster.connect(2);
    wait_for(|| (third.request(JOIN_CONSUMER_GROUP, &group).status == 0).then_some(()));
    wait_for(|| (members_on(&cluster, 0, &scope) == Some(2)).then_some(()));
    // Node 3 dies and stays away: after the member timeout its member is gone on both
    // survivors, and node 2's member owns both partitions.
    cluster.nodes[2].kill();
    for node in 0..2 {
        wait_for(|| (members_on(&cluster, node, &scope) == Some(1)).then_some(()));
    }
    // GroupHeader (id, partitions, members, name "g": 14 bytes), then the member: id u32 |
    // partitions_count u32 | partition ids.
    let details = second.request(GET_CONSUMER_GROUP, &group).ok();
    let owned = u32::from_le_bytes(details[18..22].try_into().expect("4"));
    assert_eq!(owned, 2, "the live member owns every partition");
    assert!(cluster.nodes[..2].iter().any(|node| {
        node.logs()
            .contains("node not heard from for the member timeout")
    }));
}

/// Connects to `to` from `from` (a local address other sockets may share) and logs in.
fn connect_from(from: SocketAddr, to: SocketAddr) -> RawConn {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket
        .bind(&from.into())
        .expect("bind the shared local address");
    socket.connect(&to.into()).expect("connect");
    let mut conn = RawConn::from_stream(socket.into());
    conn.login_root();
    conn
}

#[test]
fn clients_of_two_nodes_from_one_address_are_two_members() {
    let cluster = Cluster::start(3);
    let (scope, join) = topic_with_group(&cluster, "shared-address");
    // One local address, as the kernel may give two connections to different nodes: the
    // same port towards two destinations.
    let shared = loopback(free_ports(1)[0]);
    let mut second = connect_from(shared, cluster.nodes[1].addr);
    let mut third = connect_from(shared, cluster.nodes[2].addr);
    wait_for(|| (second.request(JOIN_CONSUMER_GROUP, &join).status == 0).then_some(()));
    wait_for(|| (third.request(JOIN_CONSUMER_GROUP, &join).status == 0).then_some(()));
    for node in 0..3 {
        wait_for(|| (members_on(&cluster, node, &scope) == Some(2)).then_some(()));
    }
}

const GET_TOPIC: u32 = 300;
const UPDATE_TOPIC: u32 = 304;
const INVALID_REPLICATION_FACTOR: u32 = 2018;

/// The nodes (indices) holding files of a partition.
fn holders(cluster: &Cluster, topic: (u32, u32), partition: u32) -> Vec<usize> {
    let dir = format!(
        "streams/{}/topics/{}/partitions/{partition}",
        topic.0, topic.1
    );
    (0..cluster.nodes.len())
        .filter(|&node| cluster.nodes[node].data_dir.join(&dir).exists())
        .collect()
}

/// A single consumer's offset target on `partition`.
fn partition_target(consumer: u32, topic: (u32, u32), partition: u32) -> Vec<u8> {
    let mut target = offset_target(consumer, topic);
    let at = target.len() - 4;
    target[at..].copy_from_slice(&partition.to_le_bytes());
    target
}

/// Creates topics in a new stream: one with no factor set (min(3, nodes)), one asking more
/// than the nodes (refused), and `partitions` partitions with a factor of 2, which every node
/// reports; returns the last and its GetTopic payload.
fn topic_of_factor_two(cluster: &Cluster, partitions: u32) -> ((u32, u32), Vec<u8>) {
    let stream = raw::create_stream(&mut cluster.connect(0), "factors");
    let stream_id = raw::id_numeric(stream);
    // CreateTopic: stream | partitions u32 | compression u8 | expiry u64 | max size u64 |
    // replication factor u8 | name; the TopicHeader has the factor at byte 33.
    let factor_at = stream_id.len() + 4 + 1 + 8 + 8;
    let unset = raw::create_topic_payload(&stream_id, "unset", 1);
    let created = cluster.connect(0).request(code::CREATE_TOPIC, &unset).ok();
    assert_eq!(created[33], 3, "not set: min(3, nodes)");
    let mut asked_four = raw::create_topic_payload(&stream_id, "four", 1);
    asked_four[factor_at] = 4;
    cluster
        .connect(0)
        .request(code::CREATE_TOPIC, &asked_four)
        .assert_error(INVALID_REPLICATION_FACTOR);
    let mut asked_two = raw::create_topic_payload(&stream_id, "two", partitions);
    asked_two[factor_at] = 2;
    let created = cluster
        .connect(1)
        .request(code::CREATE_TOPIC, &asked_two)
        .ok();
    assert_eq!(created[33], 2);
    let topic = (
        stream,
        u32::from_le_bytes(created[0..4].try_into().expect("id")),
    );
    let mut get = stream_id.clone();
    get.extend(raw::id_numeric(topic.1));
    for node in 0..3 {
        let factor = wait_for(|| {
            let reply = cluster.connect(node).request(GET_TOPIC, &get);
            (reply.status == 0).then(|| reply.ok()[33])
        });
        assert_eq!(factor, 2, "node {node} reports the factor");
    }
    // The factor stays what the topic was created with: UpdateTopic is stream | topic |
    // compression u8 | expiry u64 | max size u64 | factor u8 | name.
    let mut update = get.clone();
    update.push(1);
    update.extend_from_slice(&[0; 16]);
    update.push(3);
    update.push(3);
    update.extend_from_slice(b"two");
    cluster
        .connect(2)
        .request(UPDATE_TOPIC, &update)
        .assert_error(INVALID_REPLICATION_FACTOR);
    (topic, get)
}

/// Consumer 7's offsets on `partition` (six messages) through node `via`, which holds no
/// replica of it: stored, read, polled after with auto-commit, refused past the end, deleted.
fn offsets_through_a_node_without_a_replica(
    cluster: &Cluster,
    via: usize,
    topic: (u32, u32),
    partition: u32,
) {
    let target = partition_target(7, topic, partition);
    let mut store = target.clone();
    store.extend_from_slice(&1u64.to_le_bytes());
    cluster
        .connect(0)
        .request(STORE_CONSUMER_OFFSET, &store)
        .ok();
    let reply = cluster
        .connect(0)
        .request(GET_CONSUMER_OFFSET, &target)
        .ok();
    assert_eq!(reply.len(), 20);
    assert_eq!(u64::from_le_bytes(reply[4..12].try_into().expect("8")), 5);
    assert_eq!(u64::from_le_bytes(reply[12..20].try_into().expect("8")), 1);
    let mut next = target.clone();
    next.push(5); // Next
    next.extend_from_slice(&0u64.to_le_bytes());
    next.extend_from_slice(&2u32.to_le_bytes());
    next.push(1); // auto-commit
    for expected in [[2, 3], [4, 5]] {
        let reply = cluster
            .connect(via)
            .request(code::POLL_MESSAGES, &next)
            .ok();
        let offsets: Vec<u64> = raw::decode_polled(&reply)
            .messages
            .into_iter()
            .map(|(offset, _)| offset)
            .collect();
        assert_eq!(offsets, expected);
    }
    let mut past = target.clone();
    past.extend_from_slice(&6u64.to_le_bytes());
    cluster
        .connect(0)
        .request(STORE_CONSUMER_OFFSET, &past)
        .assert_error(4100);
    cluster
        .connect(0)
        .request(DELETE_CONSUMER_OFFSET, &target)
        .ok();
    let reply = cluster
        .connect(0)
        .request(GET_CONSUMER_OFFSET, &target)
        .ok();
    assert!(reply.is_empty(), "deleted: {reply:?}");
}

#[test]
fn a_topic_with_fewer_replicas_than_nodes_is_served_through_every_node() {
    const PARTITIONS: u32 = 6;
    let mut cluster = Cluster::start(3);
    let (topic, get) = topic_of_factor_two(&cluster, PARTITIONS);
    // Each partition has files on two nodes (which two, the group ids pick).
    let placed: Vec<Vec<usize>> = (0..PARTITIONS)
        .map(|partition| {
            wait_for(|| {
                let held = holders(&cluster, topic, partition);
                (held.len() == 2).then_some(held)
            })
        })
        .collect();
    // Sends through every node to every partition, read back through every node.
    let mut history: Vec<Vec<(String, Sent)>> = vec![Vec::new(); PARTITIONS as usize];
    for round in 0..2 {
        for (partition, sent) in history.iter_mut().enumerate() {
            for node in 0..3 {
                let payload = format!("p{partition}-n{node}-r{round}");
                let partition = partition as u32;
                wait_for(|| {
                    (send_one(&cluster, node, topic, partition, &payload) == Sent::Acknowledged)
                        .then_some(())
                });
                sent.push((payload, Sent::Acknowledged));
            }
        }
    }
    check_partitions(&cluster, &[0, 1, 2], topic, &history);
    for (partition, held) in placed.iter().enumerate() {
        assert_eq!(holders(&cluster, topic, partition as u32), *held);
    }
    // Figures through every node count every partition's messages (byte 42 of the header).
    let messages = u64::from(PARTITIONS) * 6;
    for node in 0..3 {
        wait_for(|| {
            let reply = cluster.connect(node).request(GET_TOPIC, &get).ok();
            (u64::from_le_bytes(reply[42..50].try_into().expect("8")) == messages).then_some(())
        });
    }
    let (partition, held) = (0, placed[0].clone());
    let via = (0..3)
        .find(|node| !held.contains(node))
        .expect("a third node");
    offsets_through_a_node_without_a_replica(&cluster, via, topic, partition);
    // With one of its replicas down, the partition is still read through the node without
    // one from the other (committed messages only, and all of them).
    cluster.nodes[held[0]].kill();
    let expected: Vec<String> = history[partition as usize]
        .iter()
        .map(|(payload, _)| payload.clone())
        .collect();
    wait_for(|| {
        let poll = raw::poll_payload(topic.0, topic.1, partition, 0, 100);
        let reply = cluster.connect(via).request(code::POLL_MESSAGES, &poll);
        if reply.status != 0 {
            // 58 while `via` still takes the dead replica for a live one.
            assert_eq!(reply.status, TRANSIENT_NOT_ACCEPTED);
            return None;
        }
        let payloads: Vec<String> = raw::decode_polled(&reply.ok())
            .messages
            .into_iter()
            .map(|(_, payload)| String::from_utf8(payload).expect("utf-8"))
            .collect();
        (payloads == expected).then_some(())
    });
}

#[test]
fn a_group_member_reads_every_partition_once_through_a_node_holding_none_of_them() {
    let cluster = Cluster::start(3);
    let stream = raw::create_stream(&mut cluster.connect(0), "remote-group");
    // Factor 1: each partition on one node, so node 1 reaches at least two of three by calls.
    let topic = (stream, create_topic_of_factor(&cluster, stream, "t", 3, 1));
    let mut sent = std::collections::BTreeSet::new();
    for partition in 0..3 {
        for k in 0..4 {
            let payload = format!("p{partition}-m{k}");
            wait_for(|| {
                (send_one(&cluster, k % 3, topic, partition, &payload) == Sent::Acknowledged)
                    .then_some(())
            });
            sent.insert((partition, u64::from(k as u32), payload));
        }
    }
    let mut scope = raw::id_numeric(topic.0);
    scope.extend(raw::id_numeric(topic.1));
    let mut create = scope.clone();
    create.extend(raw::str8(b"g"));
    cluster
        .connect(0)
        .request(CREATE_CONSUMER_GROUP, &create)
        .ok();
    let mut member = cluster.connect(0);
    let mut join = scope.clone();
    join.extend(raw::id_named("g"));
    member.request(JOIN_CONSUMER_GROUP, &join).ok();
    // Next with auto-commit, 3 at a time, the partition left to the server (round robin).
    let mut poll = vec![2];
    poll.extend(raw::id_named("g"));
    poll.extend(scope.clone());
    poll.push(0);
    poll.extend_from_slice(&0u32.to_le_bytes());
    poll.push(5);
    poll.extend_from_slice(&0u64.to_le_bytes());
    poll.extend_from_slice(&3u32.to_le_bytes());
    poll.push(1);
    let mut read = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let polled = raw::decode_polled(&member.request(code::POLL_MESSAGES, &poll).ok());
        for (offset, payload) in polled.messages {
            let payload = String::from_utf8(payload).expect("utf-8");
            let first = read.insert((polled.partition_id, offset, payload.clone()));
            assert!(first, "{payload} read twice");
        }
    }
    assert_eq!(read, sent, "every message once");
    // Each partition's commit is where the member stopped, through the node it came through.
    for partition in 0..3u32 {
        let mut target = group_target("g", topic);
        let at = target.len() - 4;
        target[at..].copy_from_slice(&partition.to_le_bytes());
        let reply = member.request(GET_CONSUMER_OFFSET, &target).ok();
        assert_eq!(reply.len(), 20, "partition {partition}");
        assert_eq!(u64::from_le_bytes(reply[12..20].try_into().expect("8")), 3);
    }
}

#[test]
fn a_node_that_cannot_write_its_raft_log_takes_no_part_and_the_others_go_on() {
    // Node 3's files may not grow past 64 KiB: its metadata Raft log fills up first (only
    // streams are created, no partition files).
    const LIMIT: u64 = 64 * 1024;
    let cluster = Cluster::start_with(3, false, "tick_ms = 50\n", &[None, None, Some(LIMIT)]);
    let raft_log = cluster.nodes[2]
        .data_dir
        .join("state/cluster/metadata.raft");
    let mut first = cluster.connect(0);
    let mut created = 0;
    // Long names fill the log sooner; every create is acknowledged by nodes 1 and 2.
    wait_for(|| {
        let name = format!("{created:04}-{}", "x".repeat(200));
        raw::create_stream(&mut first, &name);
        created += 1;
        cluster.nodes[2]
            .logs()
            .contains("cannot write the cluster log")
            .then_some(())
    });
    let size = std::fs::metadata(&raft_log).expect("node 3's log").len();
    assert!(size <= LIMIT, "{size}");
    // The majority goes on, whoever led before.
    for _ in 0..5 {
        let name = format!("{created:04}-{}", "y".repeat(200));
        raw::create_stream(&mut first, &name);
        created += 1;
    }
    let mut second = cluster.connect(1);
    wait_for(|| (stream_names(&mut second).len() == created).then_some(()));
    // Node 3 still runs and answers, but acknowledges nothing and has not applied the rest.
    let mut third = cluster.connect(2);
    let refused = third.request(code::CREATE_STREAM, &raw::str8(b"on-a-full-disk"));
    refused.assert_error(TASK_TIMEOUT);
    assert!(stream_names(&mut third).len() < created);
    assert_eq!(std::fs::metadata(&raft_log).expect("log").len(), size);
}

#[test]
fn a_replica_whose_disk_fills_stops_and_comes_back_when_it_has_room() {
    // Node 3's files may not grow past 256 KiB: its partition log fills up first.
    const LIMIT: u64 = 256 * 1024;
    let cluster = Cluster::start_with(3, false, "tick_ms = 50\n", &[None, None, Some(LIMIT)]);
    let stream = raw::create_stream(&mut cluster.connect(0), "full");
    let topic_id = raw::create_topic(&mut cluster.connect(0), stream, "t", 1);
    let topic = (stream, topic_id);
    let pad = "x".repeat(4000);
    let mut history = Vec::new();
    let mut k = 0;
    // Sends through nodes 1 and 2, each outcome recorded (node 3 may have led when it
    // stopped: its sends in flight are then unknown), until node 3's group stops.
    let mut send = |cluster: &Cluster, history: &mut Vec<(String, Sent)>, node: usize| {
        let payload = format!("m{k}-{pad}");
        k += 1;
        let sent = send_one(cluster, node, topic, 0, &payload);
        history.push((payload, sent));
        sent
    };
    wait_for(|| {
        let node = history.len() % 2;
        send(&cluster, &mut history, node);
        cluster.nodes[2]
            .logs()
            .contains("partition group stopped")
            .then_some(())
    });
    // The other two go on.
    wait_for(|| (send(&cluster, &mut history, 0) == Sent::Acknowledged).then_some(()));
    check_partition(&cluster, &[0, 1], topic, 0, &history);
    // Node 3 acknowledged nothing it could not store, and serves a prefix of what the
    // others hold.
    let held = payloads_on(&cluster, 2, topic, 0);
    let theirs = payloads_on(&cluster, 0, topic, 0);
    assert!(
        held.len() < theirs.len(),
        "{} of {}",
        held.len(),
        theirs.len()
    );
    assert_eq!(held[..], theirs[..held.len()]);
    // Room again: its group opens again and catches up.
    cluster.nodes[2].lift_file_size_max();
    wait_for(|| {
        cluster.nodes[2]
            .logs()
            .contains("opened again after a storage failure")
            .then_some(())
    });
    wait_for(|| (send(&cluster, &mut history, 2) == Sent::Acknowledged).then_some(()));
    check_partition(&cluster, &[0, 1, 2], topic, 0, &history);
}

#[test]
fn a_node_whose_data_directory_was_wiped_is_refused_by_its_peers() {
    let mut cluster = Cluster::start(3);
    raw::create_stream(&mut cluster.connect(0), "before");
    // Every node has heard from every other (node 3 applied what node 1 proposed).
    wait_for(|| {
        stream_names(&mut cluster.connect(2))
            .contains(&"before".to_owned())
            .then_some(())
    });
    // Node 3 comes back with the same id on an empty directory: it forgot its votes and
    // what it acknowledged, so its peers take no message from it.
    cluster.nodes[2].kill();
    std::fs::remove_dir_all(&cluster.nodes[2].data_dir).expect("wipe");
    cluster.nodes[2].restart();
    for node in 0..2 {
        wait_for(|| {
            cluster.nodes[node]
                .logs()
                .contains("its data directory was replaced")
                .then_some(())
        });
    }
    // The other two go on as a majority.
    raw::create_stream(&mut cluster.connect(0), "after");
    wait_for(|| {
        stream_names(&mut cluster.connect(1))
            .contains(&"after".to_owned())
            .then_some(())
    });
}

#[test]
fn strangers_on_the_replication_port_are_refused_and_the_cluster_goes_on() {
    let configs = tempfile::tempdir().expect("config dir");
    let replication = loopback(free_ports(1)[0]);
    let config = write_config(configs.path(), 1, replication, &[replication], "solo", "");
    let mut node = TestServer::start(&["--config", config.to_str().expect("utf-8 path")]);
    // An HTTP client, and a galgo node of another cluster.
    let mut http = TcpStream::connect(replication).expect("connect");
    http.write_all(b"GET / HTTP/1.1\r\nHost: galgo\r\n\r\n")
        .expect("write");
    let other = galgo_cluster::wire::Handshake {
        from: 2,
        to: 1,
        shard: 0,
        tcp_port: 0,
        websocket_port: 0,
        disk_id: 0,
        cluster_id: "another".into(),
    };
    let mut stranger = TcpStream::connect(replication).expect("connect");
    stranger.write_all(&other.encode()).expect("write");
    for mut socket in [http, stranger] {
        socket
            .set_read_timeout(Some(CLUSTER_TIMEOUT))
            .expect("timeout");
        let mut buffer = [0u8; 16];
        let read = std::io::Read::read(&mut socket, &mut buffer);
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the connection is closed: {read:?}"
        );
    }
    // The line comes just after the close.
    wait_for(|| {
        let logs = node.logs();
        (logs.contains("wrong magic") && logs.contains("peer of cluster \"another\"")).then_some(())
    });
    // A one-node cluster elects itself and serves.
    let mut conn = RawConn::connect(node.addr);
    conn.login_root();
    raw::create_stream(&mut conn, "still-here");
    assert_eq!(stream_names(&mut conn), ["still-here"]);

    // That data directory is a cluster node's: a single node refuses it.
    node.stop();
    let status = node.restart_expecting_exit_with_args(&[]);
    assert!(!status.success());
    assert!(node.logs().contains("belongs to a cluster node"));
}

#[test]
fn a_cut_off_node_acknowledges_nothing_and_every_node_agrees_once_healed() {
    let cluster = Cluster::start_proxied(3);
    raw::create_stream(&mut cluster.connect(0), "a");
    for node in 0..3 {
        wait_for_streams(&cluster, node, &["a"]);
    }

    // The leader is cut off both ways: the other two elect a leader and take changes; the
    // cut-off node takes none (no majority), and what it was asked is never applied anywhere.
    let leader = cluster.leader(&[0, 1, 2]);
    cluster.links_of(leader).for_each(FaultProxy::cut);
    let majority: Vec<usize> = (0..3).filter(|&node| node != leader).collect();
    assert_ne!(cluster.leader(&majority), leader);
    raw::create_stream(&mut cluster.connect(majority[0]), "b");
    let refused = cluster
        .connect(leader)
        .request(code::CREATE_STREAM, &raw::str8(b"never"));
    refused.assert_error(TASK_TIMEOUT);
    wait_for_streams(&cluster, leader, &["a"]);
    cluster.heal_all();
    for node in 0..3 {
        wait_for_streams(&cluster, node, &["a", "b"]);
    }

    // One way: the leader's messages are lost, what others send it arrives. The others elect
    // a new leader, which the old one hears and follows.
    let leader = cluster.leader(&[0, 1, 2]);
    for other in (0..3).filter(|&node| node != leader) {
        cluster.link(leader, other).cut();
    }
    let others: Vec<usize> = (0..3).filter(|&node| node != leader).collect();
    assert_ne!(cluster.leader(&others), leader);
    raw::create_stream(&mut cluster.connect(others[1]), "c");
    cluster.heal_all();
    for node in 0..3 {
        wait_for_streams(&cluster, node, &["a", "b", "c"]);
    }

    // Slow links: every message 100 ms late. Changes still go through, from any node.
    for link in cluster.links.iter().flatten() {
        link.delay(Duration::from_millis(100));
    }
    raw::create_stream(&mut cluster.connect(1), "d");
    cluster.heal_all();
    for node in 0..3 {
        wait_for_streams(&cluster, node, &["a", "b", "c", "d"]);
    }
}

/// A seeded xorshift: the nemesis's choices, replayable from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// One fault at a time on one node (so a majority always remains).
#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill,
    CutBothWays,
    CutOutgoing,
    CutIncoming,
    SlowLinks,
}

const FAULTS: [Fault; 5] = [
    Fault::Kill,
    Fault::CutBothWays,
    Fault::CutOutgoing,
    Fault::CutIncoming,
    Fault::SlowLinks,
];

/// Sends one request through node `index`: `Some(true)` acknowledged, `Some(false)` refused
/// (the outcome is then unknown: a change no leader took in time may still commit later),
/// `None` when the node is down.
fn try_request(cluster: &Cluster, index: usize, code: u32, payload: &[u8]) -> Option<bool> {
    let mut conn = RawConn::try_connect_logged_in(cluster.nodes[index].addr).ok()?;
    conn.send_frame(code, payload);
    let response = conn.try_read_response().ok()?;
    Some(response.status == 0)
}

/// Creates stream `name` through node `index` (see [`try_request`]).
fn try_create(cluster: &Cluster, index: usize, name: &str) -> Option<bool> {
    try_request(
        cluster,
        index,
        code::CREATE_STREAM,
        &raw::str8(name.as_bytes()),
    )
}

/// What the nemesis asked and heard, per stream name.
#[derive(Default)]
struct History {
    created: Vec<String>,
    /// Creates refused: the stream may exist or not.
    create_unknown: Vec<String>,
    /// Streams whose topic (2 partitions) was acknowledged, or refused.
    topic: Vec<String>,
    topic_unknown: Vec<String>,
    deleted: Vec<String>,
    delete_unknown: Vec<String>,
}

impl History {
    /// One random operation through a random node: create a stream (and then a topic in it),
    /// or delete one created before.
    fn operate(&mut self, cluster: &Cluster, rng: &mut Rng, serial: usize) {
        let through = rng.below(3);
        let live: Vec<&String> = self
            .created
            .iter()
            .filter(|name| !self.deleted.contains(name) && !self.delete_unknown.contains(name))
            .collect();
        if rng.below(4) == 0 && !live.is_empty() {
            let name = live[rng.below(live.len())].clone();
            let outcome = try_request(cluster, through, DELETE_STREAM, &raw::id_named(&name));
            match outcome {
                Some(true) => self.deleted.push(name),
                Some(false) => self.delete_unknown.push(name),
                None => {}
            }
            return;
        }
        let name = format!("s{serial}");
        match try_create(cluster, through, &name) {
            Some(true) => self.created.push(name.clone()),
            Some(false) => {
                self.create_unknown.push(name);
                return;
            }
            None => return,
        }
        let topic = raw::create_topic_payload(&raw::id_named(&name), "t", 2);
        match try_request(cluster, through, code::CREATE_TOPIC, &topic) {
            Some(true) => self.topic.push(name),
            Some(false) => self.topic_unknown.push(name),
            None => {}
        }
    }

    /// Checks one node's streams (name, topics) against what was asked and heard.
    #[track_caller]
    fn check(&self, streams: &[(String, u32)]) {
        let present = |name: &String| streams.iter().find(|(found, _)| found == name);
        for name in &self.created {
            let found = present(name);
            if self.deleted.contains(name) {
                assert!(found.is_none(), "deleted {name} is still there");
            } else if !self.delete_unknown.contains(name) {
                assert!(found.is_some(), "acknowledged {name} is missing");
            }
        }
        for (name, topics) in streams {
            if name.starts_with("marker-") || name == MESSAGES_STREAM {
                continue;
            }
            assert!(
                self.created.contains(name) || self.create_unknown.contains(name),
                "{name} was never asked for"
            );
            let expected = if self.topic.contains(name) {
                1..=1
            } else if self.topic_unknown.contains(name) {
                0..=1
            } else {
                0..=0
            };
            assert!(expected.contains(topics), "{name} has {topics} topics");
        }
    }
}

/// Creates a topic of `partitions` with replication factor `factor` (0: not set) through
/// node 1; its id.
fn create_topic_of_factor(
    cluster: &Cluster,
    stream: u32,
    name: &str,
    partitions: u32,
    factor: u8,
) -> u32 {
    let stream_id = raw::id_numeric(stream);
    let mut create = raw::create_topic_payload(&stream_id, name, partitions);
    // stream | partitions u32 | compression u8 | expiry u64 | max size u64 | factor u8 | name
    create[stream_id.len() + 4 + 1 + 8 + 8] = factor;
    let created = cluster.connect(0).request(code::CREATE_TOPIC, &create).ok();
    u32::from_le_bytes(created[0..4].try_into().expect("id"))
}

/// The nemesis's stream for messages, outside its metadata history.
const MESSAGES_STREAM: &str = "nemesis-messages";

fn stream_headers(conn: &mut RawConn) -> Vec<(String, u32)> {
    let payload = conn.request(code::GET_STREAMS, &[]).ok();
    StreamHeader::decode_list(&payload)
        .expect("StreamHeaders")
        .into_iter()
        .map(|stream| (stream.name, stream.topics_count))
        .collect()
}

/// The nemesis's nodes: as [`Cluster::start_proxied`], metadata compacted every 16 entries.
const NEMESIS_CONFIG: &str = "tick_ms = 50\nmetadata_snapshot_entries = 16\n";

/// The nemesis: `NEMESIS_STEPS` (default 12) rounds, each with one random fault on a random
/// node (SIGKILL, cut both ways, cut one way, slow links) while streams are created through
/// random nodes, the faulty one included; then everything heals. The history is checked at
/// the end, and again after every node restarted: every acknowledged stream is on every node,
/// every stream on a node was asked for (a refused one may be there: its outcome was unknown),
/// and all nodes list the same streams. `NEMESIS_SEED` replays a run; `NEMESIS_FACTOR` sets
/// the messages topic's replication factor (2: each node reaches a third of the partitions
/// through the others); scripts/cluster-nemesis.sh runs a long one.
#[test]
#[ignore = "long and randomized: run by scripts/cluster-nemesis.sh"]
fn nemesis() {
    let seed: u64 = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed);
    let steps: usize = std::env::var("NEMESIS_STEPS")
        .ok()
        .and_then(|steps| steps.parse().ok())
        .unwrap_or(12);
    let factor: u8 = std::env::var("NEMESIS_FACTOR")
        .ok()
        .and_then(|factor| factor.parse().ok())
        .unwrap_or(0);
    println!("nemesis seed {seed}, {steps} steps, replication factor {factor} (0: default)");
    // Odd and non-zero, and distinct for neighbouring seeds.
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Compacting every 16 entries: a node away for a few steps comes back to a snapshot.
    let mut cluster = Cluster::start_with(3, true, NEMESIS_CONFIG, &[]);
    let mut history = History::default();
    let mut serial = 0;
    // Messages: one topic of three partitions, never deleted; each step sends a few through
    // random nodes to random partitions, and a consumer reads one.
    let stream = raw::create_stream(&mut cluster.connect(0), MESSAGES_STREAM);
    let topic = (
        stream,
        create_topic_of_factor(&cluster, stream, "events", 3, factor),
    );
    let mut traffic = Traffic::new(topic);
    for step in 0..steps {
        let node = rng.below(3);
        let fault = FAULTS[rng.below(FAULTS.len())];
        println!("step {step}: {fault:?} on node {}", node + 1);
        apply_fault(&mut cluster, node, fault);
        for _ in 0..3 {
            history.operate(&cluster, &mut rng, serial);
            traffic.send(&mut cluster, &mut rng, serial);
            serial += 1;
        }
        traffic.read(&mut cluster, &mut rng);
        traffic.consume(&mut cluster, &mut rng);
        cluster.heal_all();
        if matches!(fault, Fault::Kill) {
            cluster.nodes[node].restart();
        }
    }
    println!(
        "{} acknowledged, {} unknown: streams created {} / {}, topics {} / {}, deleted {} / {}",
        history.created.len() + history.topic.len() + history.deleted.len(),
        history.create_unknown.len() + history.topic_unknown.len() + history.delete_unknown.len(),
        history.created.len(),
        history.create_unknown.len(),
        history.topic.len(),
        history.topic_unknown.len(),
        history.deleted.len(),
        history.delete_unknown.len(),
    );
    traffic.report();
    assert!(
        !history.created.is_empty(),
        "the cluster took no change at all"
    );
    check_history(&cluster, "marker-1", &history);
    traffic.check(&cluster);
    for node in &mut cluster.nodes {
        node.stop();
    }
    for node in &mut cluster.nodes {
        node.restart();
    }
    check_history(&cluster, "marker-2", &history);
    traffic.check(&cluster);
    report_snapshots(&cluster);
}

/// The nemesis's messages: what was sent to each partition of one topic and how each send
/// ended, and what consumers read meanwhile.
struct Traffic {
    topic: (u32, u32),
    sent: Vec<Vec<(String, Sent)>>,
    /// Per read: the partition, and the `(offset, payload)` of each message it returned.
    reads: Vec<(u32, Vec<(u64, String)>)>,
    /// Per partition, the auto-commit consumer's polls in order: the offsets each returned,
    /// or `None` for a poll that got no answer (its offset may have been stored).
    consumed: Vec<Vec<Option<Vec<u64>>>>,
}

/// The nemesis's auto-commit consumer.
const NEMESIS_CONSUMER: u32 = 77;

impl Traffic {
    fn new(topic: (u32, u32)) -> Self {
        Self {
            topic,
            sent: vec![Vec::new(); 3],
            reads: Vec::new(),
            consumed: vec![Vec::new(); 3],
        }
    }

    /// The auto-commit consumer polls Next from a random partition through a random running
    /// node, under the step's fault.
    fn consume(&mut self, cluster: &mut Cluster, rng: &mut Rng) {
        let (via, partition) = (rng.below(3), rng.below(3));
        if !cluster.nodes[via].is_running() {
            return;
        }
        let Ok(mut conn) = RawConn::try_connect_logged_in(cluster.nodes[via].addr) else {
            return;
        };
        let mut poll = vec![1];
        poll.extend(raw::id_numeric(NEMESIS_CONSUMER));
        poll.extend(raw::id_numeric(self.topic.0));
        poll.extend(raw::id_numeric(self.topic.1));
        poll.push(1);
        poll.extend_from_slice(&(partition as u32).to_le_bytes());
        poll.push(5); // Next
        poll.extend_from_slice(&0u64.to_le_bytes());
        poll.extend_from_slice(&4u32.to_le_bytes());
        poll.push(1); // auto-commit
        conn.send_frame(code::POLL_MESSAGES, &poll);
        let answered = conn.try_read_response().ok().map(|response| {
            let offsets = match response.status {
                0 => raw::decode_polled(&response.payload).messages,
                _ => Vec::new(),
            };
            offsets.into_iter().map(|(offset, _)| offset).collect()
        });
        self.consumed[partition].push(answered);
    }

    /// The auto-commit consumer skipped nothing: each answered poll starts at or before the
    /// offset after everything it was given, unless the poll before it got no answer (its
    /// offset may have been stored without the consumer seeing its messages).
    #[track_caller]
    fn check_consumed(&self) {
        for (partition, polls) in self.consumed.iter().enumerate() {
            let mut next = 0;
            let mut unanswered = false;
            for poll in polls {
                match poll {
                    None => unanswered = true,
                    Some(offsets) => {
                        // An empty answer (nothing new, or refused) stores nothing.
                        let (Some(&first), Some(&last)) = (offsets.first(), offsets.last()) else {
                            continue;
                        };
                        assert!(
                            first <= next || unanswered,
                            "partition {partition}: the auto-commit consumer was given \
                             {first}..={last} after {next} (polls: {polls:?})"
                        );
                        next = next.max(last + 1);
                        unanswered = false;
                    }
                }
            }
        }
    }

    /// One message through a random running node to a random partition, one at a time, so
    /// acknowledgements come in send order.
    fn send(&mut self, cluster: &mut Cluster, rng: &mut Rng, serial: usize) {
        let (via, partition) = (rng.below(3), rng.below(3));
        let payload = format!("p{partition}-s{serial}");
        if cluster.nodes[via].is_running() {
            let sent = send_one(cluster, via, self.topic, partition as u32, &payload);
            self.sent[partition].push((payload, sent));
        }
    }

    /// A consumer reads a random partition from its start through a random node, under the
    /// step's fault; what it got is kept for [`Traffic::check`].
    fn read(&mut self, cluster: &mut Cluster, rng: &mut Rng) {
        let (via, partition) = (rng.below(3), rng.below(3) as u32);
        if !cluster.nodes[via].is_running() {
            return;
        }
        let Ok(mut conn) = RawConn::try_connect_logged_in(cluster.nodes[via].addr) else {
            return;
        };
        let (stream, topic) = self.topic;
        let poll = raw::poll_payload(stream, topic, partition, 0, 1000);
        conn.send_frame(code::POLL_MESSAGES, &poll);
        let Ok(response) = conn.try_read_response() else {
            return;
        };
        if response.status != 0 {
            return;
        }
        let read = raw::decode_polled(&response.payload)
            .messages
            .into_iter()
            .map(|(offset, payload)| (offset, String::from_utf8(payload).expect("utf-8")))
            .collect();
        self.reads.push((partition, read));
    }

    fn report(&self) {
        report_messages(&self.sent);
        let messages: usize = self.reads.iter().map(|(_, read)| read.len()).sum();
        let polls = self.consumed.iter().flatten();
        let (answered, unanswered) = polls.fold((0, 0), |(yes, no), poll| match poll {
            Some(offsets) => (yes + offsets.len(), no),
            None => (yes, no + 1),
        });
        println!(
            "reads: {}, {messages} messages; auto-commit consumer: {answered} messages, \
             {unanswered} polls unanswered",
            self.reads.len()
        );
    }

    /// Every partition as [`check_partitions`] wants it on every node, and every message a
    /// consumer read is still there, at the offset it was read at, on every node: nobody read
    /// a message that later disappeared.
    #[track_caller]
    fn check(&self, cluster: &Cluster) {
        check_partitions(cluster, &[0, 1, 2], self.topic, &self.sent);
        self.check_consumed();
        for node in 0..3 {
            let held: Vec<Vec<String>> = (0..3)
                .map(|partition| payloads_on(cluster, node, self.topic, partition))
                .collect();
            for (partition, read) in &self.reads {
                for (offset, payload) in read {
                    let now = held[*partition as usize].get(*offset as usize);
                    assert_eq!(
                        now,
                        Some(payload),
                        "node {}: partition {partition} offset {offset} was read as {payload}",
                        node + 1
                    );
                }
            }
        }
    }
}

/// How many metadata snapshots the nodes took and installed, from their logs.
fn report_snapshots(cluster: &Cluster) {
    let logged = |line: &str| -> usize {
        cluster
            .nodes
            .iter()
            .map(|node| node.logs().matches(line).count())
            .sum()
    };
    println!(
        "metadata snapshots: {} taken, {} installed from a leader",
        logged("metadata log compacted into a snapshot"),
        logged("metadata snapshot installed from the leader"),
    );
}

fn apply_fault(cluster: &mut Cluster, node: usize, fault: Fault) {
    match fault {
        Fault::Kill => cluster.nodes[node].kill(),
        Fault::CutBothWays => cluster.links_of(node).for_each(FaultProxy::cut),
        Fault::CutOutgoing => (0..3)
            .filter(|&other| other != node)
            .for_each(|other| cluster.link(node, other).cut()),
        Fault::CutIncoming => (0..3)
            .filter(|&other| other != node)
            .for_each(|other| cluster.link(other, node).cut()),
        Fault::SlowLinks => cluster
            .links_of(node)
            .for_each(|link| link.delay(Duration::from_millis(50))),
    }
}

fn report_messages(messages: &[Vec<(String, Sent)>]) {
    let count = |what: Sent| {
        messages
            .iter()
            .flatten()
            .filter(|(_, sent)| *sent == what)
            .count()
    };
    println!(
        "messages: {} acknowledged, {} refused, {} unknown",
        count(Sent::Acknowledged),
        count(Sent::Refused),
        count(Sent::Unknown)
    );
}

/// Checks every node's streams against the history. A marker stream created last through
/// node 1 comes after everything committed before it in the one log every node applies in
/// order, so once a node lists the marker its list is complete.
#[track_caller]
fn check_history(cluster: &Cluster, marker: &str, history: &History) {
    // Refused means unknown (it may commit later, and then a retry is refused as a name that
    // exists): the marker is there once node 1 lists it.
    wait_for(|| match try_create(cluster, 0, marker) {
        Some(true) => Some(()),
        _ => RawConn::try_connect_logged_in(cluster.nodes[0].addr)
            .ok()
            .and_then(|mut conn| {
                let names = stream_names(&mut conn);
                names.iter().any(|name| name == marker).then_some(())
            }),
    });
    let lists: Vec<Vec<(String, u32)>> = (0..3)
        .map(|node| {
            let mut conn = cluster.connect(node);
            wait_for(|| {
                let streams = stream_headers(&mut conn);
                streams
                    .iter()
                    .any(|(name, _)| name == marker)
                    .then_some(streams)
            })
        })
        .collect();
    assert!(
        lists.iter().all(|list| *list == lists[0]),
        "the nodes disagree: {lists:?}"
    );
    history.check(&lists[0]);
}
