//! What the server part of each shard knows besides the shard's own state.

use std::{
    cell::RefCell,
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use galgo_metadata::{StreamId, TopicId};

use crate::{
    config::{Config, RootConfig, TcpConfig, WebSocketConfigFile},
    tls_config,
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
    /// Root credentials.
    pub root: RootConfig,
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
                .then(|| tls_config::server_config(section, name))
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
}

impl Context {
    /// A shard's context.
    pub fn new(seed: ContextSeed) -> Self {
        Self {
            seed,
            balanced: RefCell::default(),
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

/// The wall clock in µs since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as u64)
        .unwrap_or(0)
}
