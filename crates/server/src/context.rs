//! What the server part of each shard knows besides the shard's own state.

use std::{
    cell::RefCell,
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use galgo_metadata::{GroupKey, StreamId, TopicId};

use crate::{
    config::{
        Config, ConsumerGroupConfig, PersonalAccessTokensConfig, RootConfig, TcpConfig,
        WebSocketConfigFile,
    },
    credentials::Hasher,
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
    /// TCP settings and the frame limits of every transport.
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
        })
    }
}

/// One shard's server context. Lives on that shard only.
#[derive(Debug)]
pub struct Context {
    /// The configuration part.
    pub seed: ContextSeed,
    /// Round-robin counters of Balanced partitioning, per topic. Each shard keeps its own:
    /// balance over the messages a shard receives, with no shared counter.
    balanced: RefCell<HashMap<(StreamId, TopicId), u32>>,
    /// Password hashing of this shard's connections, off the shard's thread and bounded.
    pub hasher: Hasher,
    /// Per (client, group): the round-robin position of the member's last poll without an
    /// explicit partition. A member's polls all come through its own connection, so its
    /// cursor lives on that connection's shard.
    group_cursors: RefCell<HashMap<(u32, GroupKey), u32>>,
}

impl Context {
    /// A shard's context.
    pub fn new(seed: ContextSeed) -> Self {
        Self {
            seed,
            balanced: RefCell::default(),
            hasher: Hasher::default(),
            group_cursors: RefCell::default(),
        }
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

impl Context {
    /// The partition a member polls next among its `partitions` (round-robin), advancing the
    /// cursor; `None` when it has none.
    pub fn next_group_partition(
        &self,
        client_id: u32,
        group: GroupKey,
        partitions: &[u32],
    ) -> Option<u32> {
        if partitions.is_empty() {
            return None;
        }
        let mut cursors = self.group_cursors.borrow_mut();
        let cursor = cursors
            .entry((client_id, group))
            .and_modify(|cursor| *cursor = cursor.wrapping_add(1))
            .or_insert(0);
        Some(partitions[*cursor as usize % partitions.len()])
    }

    /// The partition of the member's last poll (the cursor is read, not advanced).
    pub fn current_group_partition(
        &self,
        client_id: u32,
        group: GroupKey,
        partitions: &[u32],
    ) -> Option<u32> {
        let cursor = self
            .group_cursors
            .borrow()
            .get(&(client_id, group))
            .copied()
            .unwrap_or(0);
        (!partitions.is_empty()).then(|| partitions[cursor as usize % partitions.len()])
    }

    /// Forgets a member's cursor (it left the group).
    pub fn forget_group_cursor(&self, client_id: u32, group: GroupKey) {
        self.group_cursors.borrow_mut().remove(&(client_id, group));
    }

    /// Forgets every cursor of a client whose connection moved to another shard; its polls
    /// start a new round there.
    pub fn forget_client(&self, client_id: u32) {
        self.group_cursors
            .borrow_mut()
            .retain(|(client, _), _| *client != client_id);
    }
}

thread_local! {
    /// The context of the shard running on this thread, for connections handed over from
    /// another shard (a shard is one thread, so the thread names the shard).
    static SHARD_CONTEXT: std::cell::OnceCell<std::rc::Rc<Context>> =
        const { std::cell::OnceCell::new() };
}

/// Makes `context` the one of the shard on this thread (once, when it starts accepting).
pub fn install(context: std::rc::Rc<Context>) {
    SHARD_CONTEXT.with(|slot| {
        let _ = slot.set(context);
    });
}

/// The context of the shard on this thread, if it serves connections.
pub fn installed() -> Option<std::rc::Rc<Context>> {
    SHARD_CONTEXT.with(|slot| slot.get().cloned())
}

/// The wall clock in µs since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}
