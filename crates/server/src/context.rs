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
    config::{Config, PersonalAccessTokensConfig, RootConfig, TcpConfig},
    credentials::Hasher,
};

/// The `Send` part, built once by `main` and handed to every shard.
#[derive(Clone, Debug)]
pub struct ContextSeed {
    /// TCP settings and limits.
    pub tcp: TcpConfig,
    /// Root credentials (used once, when the root user is first created).
    pub root: RootConfig,
    /// Personal access token limits.
    pub tokens: PersonalAccessTokensConfig,
    /// Root of the data directory (for disk figures).
    pub data_dir: std::path::PathBuf,
    /// The TCP address every shard listens on, once bound.
    pub bound: Arc<OnceLock<SocketAddr>>,
    /// When the server started.
    pub started: Instant,
    /// The same, as µs since the epoch.
    pub started_at_us: u64,
}

impl ContextSeed {
    /// Takes what connections need from the configuration.
    pub fn new(config: &Config, bound: Arc<OnceLock<SocketAddr>>) -> Self {
        Self {
            tcp: config.tcp.clone(),
            root: config.root.clone(),
            tokens: config.personal_access_tokens.clone(),
            data_dir: config.system.data_dir.clone(),
            bound,
            started: Instant::now(),
            started_at_us: now_us(),
        }
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
}

impl Context {
    /// A shard's context.
    pub fn new(seed: ContextSeed) -> Self {
        Self {
            seed,
            balanced: RefCell::default(),
            hasher: Hasher::default(),
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
