//! The server's state on each shard ([`Context`]), and the configuration part every shard
//! starts from ([`ContextSeed`]).

use std::{
    cell::{Cell, OnceCell, RefCell},
    collections::HashMap,
    net::SocketAddr,
    rc::Rc,
    sync::{Arc, OnceLock},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use galgo_cluster::{ClusterView, MetadataGroup, replica::GroupHandle};
use galgo_metadata::{Event, Metadata, PartitionKey, StreamId, TopicId};
use galgo_shards::ShardState;

use crate::{
    clients::ClientTable,
    config::{
        Config, ConsumerGroupConfig, LimitsConfig, PersonalAccessTokensConfig, RootConfig,
        TcpConfig, WebSocketConfigFile,
    },
    credentials::Hasher,
    handler::GroupServing,
    proposed_offsets::ProposedOffsets,
    request_stats::RequestStats,
};

/// The addresses every shard listens on, set by shard 0 once it has bound them (a configured
/// port 0 becomes a real one). Shared by all shards and `main`.
#[derive(Debug, Default)]
pub struct BoundAddresses {
    /// The TCP (or TCP+TLS) listener.
    pub tcp: OnceLock<SocketAddr>,
    /// The WebSocket (or WSS) listener.
    pub websocket: OnceLock<SocketAddr>,
}

/// Opened once shard 0's replica has the root user: at start-up on a restart, after the
/// password hash on a first start (logins wait for it; see `handler::users::login`).
pub type RootCreated = Arc<async_lock::OnceCell<()>>;

/// The `Send` part, built once by `main` and handed to every shard.
#[derive(Clone, Debug)]
pub struct ContextSeed {
    /// Limits of every connection, over every transport.
    pub limits: LimitsConfig,
    /// TCP settings.
    pub tcp: TcpConfig,
    /// WebSocket settings.
    pub websocket: WebSocketConfigFile,
    /// TLS on the TCP listener, one configuration (and certificate) for all shards.
    pub tcp_tls: Option<Arc<rustls::ServerConfig>>,
    /// TLS on the WebSocket listener (WSS).
    pub websocket_tls: Option<Arc<rustls::ServerConfig>>,
    /// Root credentials (used once, when the root user is first created).
    pub root: RootConfig,
    /// Whether the root user exists yet.
    pub root_created: RootCreated,
    /// Personal access token limits.
    pub tokens: PersonalAccessTokensConfig,
    /// Consumer-group rebalancing.
    pub consumer_group: ConsumerGroupConfig,
    /// Root of the data directory (for disk figures).
    pub data_dir: std::path::PathBuf,
    /// The addresses every shard listens on, once bound.
    pub bound: Arc<BoundAddresses>,
    /// When the server started.
    pub started: Instant,
    /// The same, as µs since the epoch.
    pub started_at_us: u64,
    /// The cluster this node belongs to, as it sees it now; `None` for a single node.
    pub cluster: Option<Arc<ClusterView>>,
}

impl ContextSeed {
    /// Takes what connections need from the configuration; loads or generates the TLS
    /// certificates of the transports that use TLS.
    pub fn new(config: &Config, bound: Arc<BoundAddresses>) -> Result<Self, String> {
        let tls = |enabled: bool, section: &crate::config::TlsConfig, name: &str| {
            enabled
                .then(|| {
                    galgo_transport::tls_config::server_config(
                        &section.cert_file,
                        &section.key_file,
                        section.self_signed,
                    )
                    .map_err(|error| format!("[{name}.tls]: {error}"))
                })
                .transpose()
        };
        Ok(Self {
            tcp_tls: tls(
                config.tcp.enabled && config.tcp.tls.enabled,
                &config.tcp.tls,
                "tcp",
            )?,
            websocket_tls: tls(
                config.websocket.enabled && config.websocket.tls.enabled,
                &config.websocket.tls,
                "websocket",
            )?,
            limits: config.limits.clone(),
            tcp: config.tcp.clone(),
            websocket: config.websocket.clone(),
            root: config.root.clone(),
            root_created: RootCreated::default(),
            tokens: config.personal_access_tokens.clone(),
            consumer_group: config.consumer_group.clone(),
            data_dir: config.system.data_dir.clone(),
            bound,
            started: Instant::now(),
            started_at_us: now_us(),
            cluster: config
                .cluster_settings()
                .map_err(|error| error.to_string())?
                .map(|settings| Arc::new(ClusterView::new(settings))),
        })
    }
}

/// The server's state on one shard: what its connections share (clients, Balanced counters,
/// password hashing, the serving side of consumer groups) and the configuration part. The
/// engine holds one per shard (`galgo_shards::Shard<Context>`, see [`Shard`]), built on the
/// shard's thread; handlers reach it through `shard.state()`. Lives on that shard only.
#[derive(Debug)]
pub struct Context {
    /// The configuration part.
    pub seed: ContextSeed,
    /// The connections this shard serves (accepted here or moved here).
    pub clients: RefCell<ClientTable>,
    /// Round-robin counters of Balanced partitioning, per topic. Each shard keeps its own:
    /// balance over the messages a shard receives, with no shared counter.
    balanced: RefCell<HashMap<(StreamId, TopicId), u32>>,
    /// Password hashing of this shard's connections, off the shard's thread and bounded.
    pub hasher: Hasher,
    /// Consumer groups, the serving side: members' poll cursors and what was served.
    pub groups: GroupServing,
    /// What this shard's requests did, for /metrics.
    pub requests: RequestStats,
    /// A cluster node: offsets auto-commit polls proposed that are not settled yet.
    pub proposed_offsets: ProposedOffsets,
    /// 0.9 sessions this shard has opened (connection/vsr.rs numbers them from it).
    sessions_opened: Cell<u64>,
    /// Shard 0 of a cluster node: the metadata group its changes are proposed to.
    metadata_group: OnceCell<Rc<MetadataGroup>>,
    /// A cluster node: the partition groups of the partitions this shard owns, with their
    /// group ids.
    replicas: RefCell<HashMap<PartitionKey, (u64, GroupHandle)>>,
    /// A cluster node: the leader this shard last heard of, by group, of partitions this node
    /// holds no replica of (where its sends go first).
    remote_leaders: RefCell<HashMap<u64, u64>>,
}

/// Leader hints a shard keeps at most; past it they are forgotten and heard again.
const REMOTE_LEADERS_MAX: usize = 1 << 16;

/// The bits below a 0.9 session number's shard part: each shard numbers its sessions in its
/// own range, so no counter is shared between shards.
const SESSION_SHARD_SHIFT: u32 = 48;

/// A shard of the server.
pub type Shard = galgo_shards::Shard<Context>;

impl Context {
    /// A shard's state.
    pub fn new(seed: ContextSeed) -> Self {
        Self {
            seed,
            clients: RefCell::default(),
            balanced: RefCell::default(),
            hasher: Hasher::default(),
            groups: GroupServing::default(),
            requests: RequestStats::default(),
            proposed_offsets: ProposedOffsets::default(),
            sessions_opened: Cell::new(0),
            metadata_group: OnceCell::new(),
            replicas: RefCell::default(),
            remote_leaders: RefCell::default(),
        }
    }

    /// This node's id in its cluster; 0 on a single node.
    pub fn node_id(&self) -> u64 {
        self.seed
            .cluster
            .as_ref()
            .map_or(0, |cluster| cluster.node_id())
    }

    /// The partition group of a partition this shard owns (a cluster node's partitions).
    pub fn replica(&self, key: &PartitionKey) -> Option<GroupHandle> {
        self.replicas
            .borrow()
            .get(key)
            .map(|(_, handle)| handle.clone())
    }

    /// The group a send, poll or offset write of a partition this shard owns goes through:
    /// `None` on a single node; on a cluster node, refused (58, retried by clients) while the
    /// partition has no group here (it could not start), since the log alone would serve
    /// uncommitted messages and store unreplicated ones.
    pub fn serving_replica(
        &self,
        key: &PartitionKey,
    ) -> Result<Option<GroupHandle>, galgo_protocol::ErrorCode> {
        match self.replica(key) {
            Some(group) => Ok(Some(group)),
            None if self.seed.cluster.is_some() => {
                Err(galgo_protocol::ErrorCode::TransientNotAccepted)
            }
            None => Ok(None),
        }
    }

    /// A partition group started on this shard.
    pub fn add_replica(&self, key: PartitionKey, group: u64, handle: GroupHandle) {
        self.replicas.borrow_mut().insert(key, (group, handle));
    }

    /// The leader this shard last heard of for group `group`, of a partition this node holds
    /// no replica of.
    pub fn remote_leader(&self, group: u64) -> Option<u64> {
        self.remote_leaders.borrow().get(&group).copied()
    }

    /// Notes the leader of such a group.
    pub fn set_remote_leader(&self, group: u64, leader: u64) {
        let mut leaders = self.remote_leaders.borrow_mut();
        if leaders.len() >= REMOTE_LEADERS_MAX && !leaders.contains_key(&group) {
            leaders.clear();
        }
        leaders.insert(group, leader);
    }

    /// Forgets a partition's group; returns its id and handle.
    pub fn take_replica(&self, key: &PartitionKey) -> Option<(u64, GroupHandle)> {
        self.replicas.borrow_mut().remove(key)
    }

    /// Shard 0 of a cluster node: the metadata group (once it has started).
    pub fn metadata_group(&self) -> Option<&Rc<MetadataGroup>> {
        self.metadata_group.get()
    }

    /// Shard 0, at start-up: the metadata group it proposes to from now on.
    pub fn set_metadata_group(&self, group: Rc<MetadataGroup>) {
        let _ = self.metadata_group.set(group);
    }

    /// A new 0.9 session number for a login on `shard`: unique in the process and never 0
    /// (the SDK refuses 0), from this shard's own range.
    pub fn next_session(&self, shard: galgo_metadata::ShardId) -> u64 {
        let opened = self.sessions_opened.get() + 1;
        self.sessions_opened.set(opened);
        (u64::from(shard.0) << SESSION_SHARD_SHIFT) | opened
    }

    /// The next partition for a Balanced send to a topic of `partitions_count` partitions.
    pub fn next_balanced(&self, stream: StreamId, topic: TopicId, partitions_count: u32) -> u32 {
        debug_assert!(partitions_count > 0);
        let mut counters = self.balanced.borrow_mut();
        let counter = counters.entry((stream, topic)).or_insert(0);
        let partition = *counter % partitions_count;
        *counter = counter.wrapping_add(1);
        partition
    }
}

impl ShardState for Context {
    /// A deleted or deactivated user's sessions end: its clients show no user at once, and
    /// each connection ends its own session at its next request.
    fn on_event(&self, event: &Event) {
        if let Some(user) = event.change.ends_sessions_of() {
            self.clients.borrow_mut().log_out_user(user.0);
        }
    }

    /// Ends the sessions a snapshot ended: of users it deleted, deactivated or recreated
    /// (the same id, another generation), as the events it stands for would have.
    fn on_replace(&self, old: &Metadata, new: &Metadata) {
        for user in old.users() {
            let kept = new
                .user_by_id(user.id)
                .is_some_and(|now| now.active && now.generation == user.generation);
            if !kept {
                self.clients.borrow_mut().log_out_user(user.id.0);
            }
        }
    }

    fn open_connections(&self) -> usize {
        self.clients.borrow().len()
    }
}

/// The wall clock in µs since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}
