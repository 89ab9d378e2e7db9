//! Configuration: the embedded defaults (configs/server.toml), an optional file over them,
//! then `--set key=value` overrides and the command-line flags. Keys that moved to another
//! section are still read where they were (see `moved_keys`).

mod moved_keys;

use std::{net::SocketAddr, path::PathBuf};

use galgo_cluster::{Ack, ClusterSettings, Peer};
use galgo_metadata::TopicDefaults;
use galgo_protocol::{
    CONTROL_PAYLOAD_BYTES_MAX, PayloadLimits,
    command::users::{PASSWORD_BYTES, USERNAME_BYTES},
};
use galgo_shards::{ShardSettings, StorageSettings};
use galgo_storage::{DeduplicationConfig, DirectIo, FsyncMode};
use serde::Deserialize;
use thiserror::Error;

/// The defaults, documented key by key.
const DEFAULTS: &str = include_str!("../../../configs/server.toml");

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not valid TOML, or keys and values that do not fit.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole server configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Paths.
    pub system: SystemConfig,
    /// The root user.
    pub root: RootConfig,
    /// Limits of every connection, over every transport.
    pub limits: LimitsConfig,
    /// The TCP listener.
    pub tcp: TcpConfig,
    /// The WebSocket listener.
    pub websocket: WebSocketConfigFile,
    /// The HTTP endpoint for operators (/metrics, /health).
    pub http: HttpConfig,
    /// Shards.
    pub shards: ShardsConfig,
    /// Storage.
    pub storage: StorageConfigFile,
    /// Personal access tokens.
    pub personal_access_tokens: PersonalAccessTokensConfig,
    /// Retention defaults and the cleaner.
    pub retention: RetentionConfig,
    /// Deduplication of messages by id.
    pub deduplication: DeduplicationConfigFile,
    /// Consumer-group rebalancing.
    pub consumer_group: ConsumerGroupConfig,
    /// Logs.
    pub logging: LoggingConfig,
    /// `[cluster]`
    pub cluster: ClusterConfig,
    /// What the operator should change in the configuration (keys read under their old
    /// names): logged once logging is set up, which the configuration itself decides.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[system]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemConfig {
    /// Root of all stored data.
    pub data_dir: PathBuf,
}

/// `[root]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    /// Root's username.
    pub username: String,
    /// Root's password.
    pub password: String,
}

/// `[personal_access_tokens]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalAccessTokensConfig {
    /// Tokens one user may hold at most.
    pub tokens_per_user_max: u32,
    /// How often shard 0 deletes expired tokens.
    pub cleanup_interval_ms: u64,
}

/// The environment variables that set the root user's credentials; both or neither.
pub const ROOT_USERNAME_ENV: &str = "IGGY_ROOT_USERNAME";
/// See [`ROOT_USERNAME_ENV`].
pub const ROOT_PASSWORD_ENV: &str = "IGGY_ROOT_PASSWORD";

impl std::fmt::Debug for RootConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log.
        f.debug_struct("RootConfig")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `[limits]`: limits of every connection, whatever its transport (they were `[tcp]` keys,
/// which are still read).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest payload of a command other than send_messages; Iggy's limit unless set.
    #[serde(default = "control_payload_bytes_max_default")]
    pub control_payload_bytes_max: u32,
    /// Largest send_messages payload.
    pub send_payload_bytes_max: u32,
    /// Connections one shard holds at most.
    pub connections_per_shard_max: usize,
    /// A response not written within this time ends the connection (a client that stopped
    /// reading).
    pub write_timeout_ms: u64,
    /// Longest a poll may wait for messages (galgo's long polls); longer asks are cut to it.
    pub poll_wait_ms_max: u32,
}

/// The protocol's constant is the one source of this default: Iggy's clients are built
/// against it, so configs/server.toml does not repeat it.
fn control_payload_bytes_max_default() -> u32 {
    CONTROL_PAYLOAD_BYTES_MAX
}

impl LimitsConfig {
    /// The request payload limits, for the frame decoder.
    pub fn payload(&self) -> PayloadLimits {
        PayloadLimits {
            control_bytes_max: self.control_payload_bytes_max,
            send_bytes_max: self.send_payload_bytes_max,
        }
    }
}

/// `[tcp]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Serve plain TCP.
    pub enabled: bool,
    /// Listen address.
    pub address: SocketAddr,
    /// TCP_NODELAY on connections.
    pub nodelay: bool,
    /// TLS on this listener.
    pub tls: TlsConfig,
}

/// `[http]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve /metrics and /health.
    pub enabled: bool,
    /// Listen address.
    pub address: SocketAddr,
    /// A request must arrive whole within this time.
    pub request_timeout_ms: u64,
    /// Connections served at once.
    pub connections_max: usize,
}

/// `[websocket]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketConfigFile {
    /// Serve the binary protocol over WebSocket.
    pub enabled: bool,
    /// Listen address.
    pub address: SocketAddr,
    /// TCP_NODELAY on connections.
    pub nodelay: bool,
    /// Largest incoming message (after reassembly of its frames).
    pub message_bytes_max: usize,
    /// Largest incoming frame payload.
    pub frame_bytes_max: usize,
    /// Size of each read tungstenite does from the connection's buffer.
    pub read_buffer_bytes: usize,
    /// Accept client frames without a mask (RFC 6455 requires the mask).
    pub accept_unmasked_frames: bool,
    /// Time a client has to complete the upgrade request.
    pub handshake_timeout_ms: u64,
    /// TLS on this listener (WSS).
    pub tls: TlsConfig,
}

/// `[tcp.tls]`, `[websocket.tls]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve TLS instead of plain on this listener.
    pub enabled: bool,
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// Generate a localhost certificate (into cert_file and key_file) when cert_file is missing.
    pub self_signed: bool,
    /// Time a client has to complete the TLS handshake.
    pub handshake_timeout_ms: u64,
}

/// `count = "all"` or a number.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ShardCount {
    /// A fixed number of shards.
    Fixed(u16),
    /// "all": one per available CPU.
    Named(String),
}

/// `tail_cache_bytes_max = "auto"` or a number of bytes.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum CacheSize {
    /// Bytes per shard.
    Bytes(u64),
    /// "auto": a share of the memory limit, split across the shards.
    Named(String),
}

/// `[shards]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardsConfig {
    /// How many shards.
    pub count: ShardCount,
    /// Pin threads to CPUs.
    pub pin: bool,
    /// CPUs to pin to.
    pub cpus: Vec<usize>,
    /// io_uring entries.
    pub ring_entries: u32,
    /// COOP_TASKRUN.
    pub coop_taskrun: bool,
    /// SQPOLL idle ms, 0 = off.
    pub sqpoll_idle_ms: u32,
    /// Inbox bound.
    pub inbox_capacity: usize,
    /// Per-shard overrides.
    #[serde(default, rename = "override")]
    pub overrides: Vec<ShardOverride>,
}

/// `[[shards.override]]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardOverride {
    /// Which shard.
    pub shard: u16,
    /// Its CPU.
    pub cpu: Option<usize>,
    /// Its ring entries.
    pub ring_entries: Option<u32>,
    /// Its COOP_TASKRUN.
    pub coop_taskrun: Option<bool>,
    /// Its SQPOLL idle ms.
    pub sqpoll_idle_ms: Option<u32>,
    /// Its inbox bound.
    pub inbox_capacity: Option<usize>,
    /// Its tail cache bound, bytes.
    pub tail_cache_bytes_max: Option<u64>,
}

/// `[storage]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfigFile {
    /// Segment size.
    pub segment_size_bytes: u64,
    /// Journal threshold, messages.
    pub journal_messages_max: u32,
    /// Journal threshold, bytes.
    pub journal_bytes_max: u64,
    /// Saver period.
    pub flush_interval_ms: u64,
    /// Durability mode.
    pub fsync: String,
    /// fsync period in "interval" mode.
    pub fsync_interval_ms: u64,
    /// O_DIRECT writes of segment logs: "auto", "on" or "off".
    pub direct_io: String,
    /// Per-shard bound of the tail cache: bytes, or "auto".
    pub tail_cache_bytes_max: CacheSize,
}

/// `[retention]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Server-default message expiry, 0 = never.
    pub message_expiry_ms: u64,
    /// Server-default topic size limit, 0 = unlimited.
    pub max_topic_size_bytes: u64,
    /// Cleaner period, 0 = off.
    pub cleaner_interval_ms: u64,
}

/// `[deduplication]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeduplicationConfigFile {
    /// On or off.
    pub enabled: bool,
    /// Ids remembered per partition.
    pub ids_max: usize,
    /// How long an id is remembered.
    pub expiry_ms: u64,
}

/// `[consumer_group]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroupConfig {
    /// When a pending revocation completes without a commit.
    pub rebalancing_timeout_ms: u64,
    /// How often that is checked.
    pub rebalancing_check_interval_ms: u64,
}

/// `[cluster]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A cluster node, or a single node.
    pub enabled: bool,
    /// The cluster's name.
    pub id: String,
    /// This node's id.
    pub node_id: u64,
    /// Where this node accepts replication connections.
    pub replication_address: SocketAddr,
    /// "majority" or "leader".
    pub ack: String,
    /// The Raft tick.
    pub tick_ms: u64,
    /// How long a node may stay unheard before its clients' consumer-group members leave.
    pub member_timeout_ms: u64,
    /// Applied metadata entries between two snapshots of the metadata group's log.
    pub metadata_snapshot_entries: u64,
    /// Every node.
    pub peers: Vec<PeerConfig>,
}

/// One `[[cluster.peers]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its node id.
    pub id: u64,
    /// Its replication address.
    pub replication_address: SocketAddr,
    /// The TCP address it advertises.
    pub tcp: Option<SocketAddr>,
    /// The WebSocket address it advertises.
    pub websocket: Option<SocketAddr>,
}

/// `[logging]`
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Default level.
    pub level: String,
}

impl Config {
    /// Defaults, then `file` merged over them, then each `key=value` of `overrides`.
    pub fn load(file: Option<&PathBuf>, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table: toml::Table = DEFAULTS
            .parse()
            .map_err(|error| ConfigError::Invalid(format!("embedded defaults: {error}")))?;
        let mut warnings = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                path: path.clone(),
                error,
            })?;
            let mut over: toml::Table = text
                .parse()
                .map_err(|error| ConfigError::Invalid(format!("{}: {error}", path.display())))?;
            moved_keys::move_keys(&mut over, &mut warnings)?;
            merge(&mut table, over);
        }
        for assignment in overrides {
            set(
                &mut table,
                &moved_keys::rename_assignment(assignment, &mut warnings),
            )?;
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|error: toml::de::Error| ConfigError::Invalid(error.to_string()))?;
        config.warnings = warnings;
        config.root_from_env(
            std::env::var(ROOT_USERNAME_ENV).ok(),
            std::env::var(ROOT_PASSWORD_ENV).ok(),
        )?;
        config.validate()?;
        Ok(config)
    }

    /// IGGY_ROOT_USERNAME and IGGY_ROOT_PASSWORD, set together, replace `[root]`.
    fn root_from_env(
        &mut self,
        username: Option<String>,
        password: Option<String>,
    ) -> Result<(), ConfigError> {
        match (username, password) {
            (Some(username), Some(password)) => {
                self.root = RootConfig { username, password };
                Ok(())
            }
            (None, None) => Ok(()),
            _ => Err(ConfigError::Invalid(format!(
                "{ROOT_USERNAME_ENV} and {ROOT_PASSWORD_ENV} must be set together"
            ))),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let storage = galgo_storage::StorageConfig {
            segment_size_bytes: self.storage.segment_size_bytes,
            journal_messages_max: self.storage.journal_messages_max,
            journal_bytes_max: self.storage.journal_bytes_max,
            fsync: self.fsync_mode()?,
            direct_io: self.direct_io_mode()?,
        };
        storage
            .validate()
            .map_err(|error| ConfigError::Invalid(format!("[storage]: {error}")))?;
        self.shard_count()?;
        self.cluster_settings()?;
        if !USERNAME_BYTES.contains(&self.root.username.len()) {
            return Err(ConfigError::Invalid(format!(
                "the root username must be {}..={} bytes",
                USERNAME_BYTES.start(),
                USERNAME_BYTES.end()
            )));
        }
        if !PASSWORD_BYTES.contains(&self.root.password.len()) {
            return Err(ConfigError::Invalid(format!(
                "the root password must be {}..={} bytes",
                PASSWORD_BYTES.start(),
                PASSWORD_BYTES.end()
            )));
        }
        if self.personal_access_tokens.cleanup_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "personal_access_tokens.cleanup_interval_ms must be positive".into(),
            ));
        }
        let size_max = self.retention.max_topic_size_bytes;
        if size_max != 0 && size_max < self.storage.segment_size_bytes {
            return Err(ConfigError::Invalid(
                "retention.max_topic_size_bytes must be 0 or at least storage.segment_size_bytes"
                    .into(),
            ));
        }
        if self.deduplication.enabled && self.deduplication.ids_max == 0 {
            return Err(ConfigError::Invalid(
                "deduplication.ids_max must be positive".into(),
            ));
        }
        if self.consumer_group.rebalancing_check_interval_ms == 0 {
            return Err(ConfigError::Invalid(
                "consumer_group.rebalancing_check_interval_ms must be positive".into(),
            ));
        }
        if self.shards.ring_entries == 0 {
            return Err(ConfigError::Invalid(
                "shards.ring_entries must be positive".into(),
            ));
        }
        self.validate_http()?;
        self.validate_websocket()
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let http = &self.http;
        if http.enabled && (http.request_timeout_ms == 0 || http.connections_max == 0) {
            return Err(ConfigError::Invalid(
                "http.request_timeout_ms and http.connections_max must be positive".into(),
            ));
        }
        Ok(())
    }

    fn validate_websocket(&self) -> Result<(), ConfigError> {
        let websocket = &self.websocket;
        if websocket.message_bytes_max == 0 || websocket.frame_bytes_max == 0 {
            return Err(ConfigError::Invalid(
                "websocket.message_bytes_max and frame_bytes_max must be positive".into(),
            ));
        }
        let timeouts = [
            ("tcp.tls", self.tcp.tls.handshake_timeout_ms),
            ("websocket", websocket.handshake_timeout_ms),
            ("websocket.tls", websocket.tls.handshake_timeout_ms),
        ];
        if let Some((section, _)) = timeouts.iter().find(|(_, timeout)| *timeout == 0) {
            return Err(ConfigError::Invalid(format!(
                "{section}.handshake_timeout_ms must be positive"
            )));
        }
        if websocket.read_buffer_bytes == 0 {
            return Err(ConfigError::Invalid(
                "websocket.read_buffer_bytes must be positive".into(),
            ));
        }
        if self.tcp.enabled
            && websocket.enabled
            && self.tcp.address.port() != 0
            && self.tcp.address == websocket.address
        {
            return Err(ConfigError::Invalid(format!(
                "tcp.address and websocket.address are both {}",
                self.tcp.address
            )));
        }
        Ok(())
    }

    /// The durability mode.
    pub fn fsync_mode(&self) -> Result<FsyncMode, ConfigError> {
        self.storage.fsync.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "storage.fsync must be \"always\", \"interval\" or \"never\", not {:?}",
                self.storage.fsync
            ))
        })
    }

    /// Whether segment logs are written with O_DIRECT.
    pub fn direct_io_mode(&self) -> Result<DirectIo, ConfigError> {
        self.storage.direct_io.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "storage.direct_io must be \"auto\", \"on\" or \"off\", not {:?}",
                self.storage.direct_io
            ))
        })
    }

    /// How partition logs are written: `auto` is O_DIRECT on a single node and buffered on a
    /// cluster node. A replica answers its leader only once a batch is written (Raft's
    /// persist-before-reply), so every acknowledgement waits for that write: through the page
    /// cache it is a copy, with O_DIRECT a trip to the device (a three-node loopback cluster
    /// reached half the throughput, with a p99 eight times longer; docs/benchmarks.md).
    pub fn log_direct_io(&self) -> Result<DirectIo, ConfigError> {
        Ok(match self.direct_io_mode()? {
            DirectIo::Auto if self.cluster.enabled => DirectIo::Off,
            mode => mode,
        })
    }

    /// The number of shards to run.
    pub fn shard_count(&self) -> Result<u16, ConfigError> {
        match &self.shards.count {
            ShardCount::Fixed(0) => {
                Err(ConfigError::Invalid("shards.count must be positive".into()))
            }
            ShardCount::Fixed(count) => Ok(*count),
            ShardCount::Named(name) if name == "all" => Ok(std::thread::available_parallelism()
                .map(|count| count.get().min(usize::from(u16::MAX)) as u16)
                .unwrap_or(1)),
            ShardCount::Named(other) => Err(ConfigError::Invalid(format!(
                "shards.count must be \"all\" or a number, not {other:?}"
            ))),
        }
    }

    /// One settings entry per shard, overrides applied.
    pub fn shard_settings(&self) -> Result<Vec<ShardSettings>, ConfigError> {
        let count = self.shard_count()?;
        let tail_cache = self.tail_cache_bytes_max(count)?;
        let shards = &self.shards;
        let cpus: Vec<usize> = if shards.cpus.is_empty() {
            core_affinity::get_core_ids()
                .unwrap_or_default()
                .into_iter()
                .map(|core| core.id)
                .collect()
        } else {
            shards.cpus.clone()
        };
        let settings = (0..count).map(|index| {
            let pinned_cpu =
                (shards.pin && !cpus.is_empty()).then(|| cpus[usize::from(index) % cpus.len()]);
            let mut settings = ShardSettings {
                cpu: pinned_cpu,
                ring_entries: shards.ring_entries,
                coop_taskrun: shards.coop_taskrun,
                sqpoll_idle_ms: shards.sqpoll_idle_ms,
                inbox_capacity: shards.inbox_capacity,
                tail_cache_bytes_max: tail_cache,
            };
            for over in shards.overrides.iter().filter(|over| over.shard == index) {
                settings.cpu = over.cpu.filter(|_| shards.pin).or(settings.cpu);
                settings.ring_entries = over.ring_entries.unwrap_or(settings.ring_entries);
                settings.coop_taskrun = over.coop_taskrun.unwrap_or(settings.coop_taskrun);
                settings.sqpoll_idle_ms = over.sqpoll_idle_ms.unwrap_or(settings.sqpoll_idle_ms);
                settings.inbox_capacity = over.inbox_capacity.unwrap_or(settings.inbox_capacity);
                settings.tail_cache_bytes_max = over
                    .tail_cache_bytes_max
                    .unwrap_or(settings.tail_cache_bytes_max);
            }
            settings
        });
        Ok(settings.collect())
    }

    /// Each shard's tail cache bound before overrides: the number given, or for "auto" a
    /// share of the memory limit split across the shards.
    fn tail_cache_bytes_max(&self, shard_count: u16) -> Result<u64, ConfigError> {
        match &self.storage.tail_cache_bytes_max {
            CacheSize::Bytes(bytes) => Ok(*bytes),
            CacheSize::Named(name) if name == "auto" => {
                Ok(galgo_shards::auto_tail_cache_bytes(shard_count))
            }
            CacheSize::Named(other) => Err(ConfigError::Invalid(format!(
                "storage.tail_cache_bytes_max must be \"auto\" or a number of bytes, not {other:?}"
            ))),
        }
    }

    /// The cluster this node belongs to; `None` for a single node.
    pub fn cluster_settings(&self) -> Result<Option<ClusterSettings>, ConfigError> {
        let cluster = &self.cluster;
        if !cluster.enabled {
            return Ok(None);
        }
        let ack = match cluster.ack.as_str() {
            "majority" => Ack::Majority,
            "leader" => Ack::Leader,
            other => {
                return Err(ConfigError::Invalid(format!(
                    "cluster.ack must be \"majority\" or \"leader\", not {other:?}"
                )));
            }
        };
        let settings = ClusterSettings {
            cluster_id: cluster.id.clone(),
            node_id: cluster.node_id,
            replication_address: cluster.replication_address,
            ack,
            tick: std::time::Duration::from_millis(cluster.tick_ms),
            member_timeout: std::time::Duration::from_millis(cluster.member_timeout_ms),
            metadata_snapshot_entries: cluster.metadata_snapshot_entries,
            peers: cluster
                .peers
                .iter()
                .map(|peer| Peer {
                    id: peer.id,
                    replication_address: peer.replication_address,
                    tcp: peer.tcp,
                    websocket: peer.websocket,
                })
                .collect(),
        };
        settings
            .validate()
            .map_err(|why| ConfigError::Invalid(format!("[cluster]: {why}")))?;
        Ok(Some(settings))
    }

    /// What every shard's storage is built from.
    pub fn storage_settings(&self) -> Result<StorageSettings, ConfigError> {
        let storage = &self.storage;
        Ok(StorageSettings {
            data_dir: self.system.data_dir.clone(),
            segment_size_bytes: storage.segment_size_bytes,
            journal_messages_max: storage.journal_messages_max,
            journal_bytes_max: storage.journal_bytes_max,
            fsync: self.fsync_mode()?,
            direct_io: self.log_direct_io()?,
            flush_interval_ms: storage.flush_interval_ms,
            fsync_interval_ms: storage.fsync_interval_ms,
            topic_defaults: self.topic_defaults(),
            cleaner_interval_ms: self.retention.cleaner_interval_ms,
            deduplication: self.deduplication.enabled.then(|| DeduplicationConfig {
                ids_max: self.deduplication.ids_max,
                expiry_us: self.deduplication.expiry_ms.saturating_mul(1000),
            }),
        })
    }

    /// What "server default" expiry and size resolve to (0 in the file means never/unlimited,
    /// which the protocol writes as `u64::MAX`).
    fn topic_defaults(&self) -> TopicDefaults {
        let retention = &self.retention;
        let or_never = |value: u64| if value == 0 { u64::MAX } else { value };
        TopicDefaults {
            message_expiry_us: or_never(retention.message_expiry_ms.saturating_mul(1000)),
            max_topic_size_bytes: or_never(retention.max_topic_size_bytes),
        }
    }
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over_inner)) => {
                merge(inner, over_inner)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Applies one `section.key=value`; the value is TOML (a bare word is taken as a string).
fn set(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| ConfigError::Invalid(format!("--set {assignment}: expected key=value")))?;
    let value = format!("value = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut parsed| parsed.remove("value"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut keys: Vec<&str> = path.trim().split('.').collect();
    let last = keys
        .pop()
        .filter(|key| !key.is_empty())
        .ok_or_else(|| ConfigError::Invalid(format!("--set {assignment}: empty key")))?;
    let mut current = table;
    for key in keys {
        current = match current
            .entry(key.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(ConfigError::Invalid(format!(
                    "--set {assignment}: {key} is not a section"
                )));
            }
        };
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load() {
        let config = Config::load(None, &[]).expect("defaults are valid");
        assert_eq!(config.tcp.address.to_string(), "127.0.0.1:8090");
        assert_eq!(config.fsync_mode().expect("valid"), FsyncMode::Interval);
        assert_eq!(config.direct_io_mode().expect("valid"), DirectIo::Auto);
        assert_eq!(config.root.username, "iggy");
        assert_eq!(config.websocket.address.to_string(), "127.0.0.1:8092");
        assert!(config.websocket.enabled);
        assert!(!config.tcp.tls.enabled && !config.websocket.tls.enabled);
    }

    #[test]
    fn auto_direct_io_is_buffered_on_a_cluster_node_only() {
        let mut config = Config::load(None, &[]).expect("defaults are valid");
        assert_eq!(config.log_direct_io().expect("valid"), DirectIo::Auto);
        config.cluster.enabled = true;
        assert_eq!(config.log_direct_io().expect("valid"), DirectIo::Off);
        config.storage.direct_io = "on".to_owned();
        assert_eq!(config.log_direct_io().expect("valid"), DirectIo::On);
    }

    #[test]
    fn set_overrides_typed_values_and_bare_words() {
        let overrides = [
            "storage.segment_size_bytes=4096".to_owned(),
            "storage.fsync=always".to_owned(),
            "shards.count=3".to_owned(),
            "shards.pin=false".to_owned(),
        ];
        let config = Config::load(None, &overrides).expect("valid");
        assert_eq!(config.storage.segment_size_bytes, 4096);
        assert_eq!(config.fsync_mode().expect("valid"), FsyncMode::Always);
        let shards = config.shard_settings().expect("valid");
        assert_eq!(shards.len(), 3);
        assert!(shards.iter().all(|shard| shard.cpu.is_none()));
    }

    #[test]
    fn the_tail_cache_is_auto_a_number_or_a_shards_override() {
        let set = |values: &[&str]| {
            let overrides: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
            Config::load(None, &overrides)
        };
        let auto = set(&["shards.count=2"]).expect("valid");
        let shards = auto.shard_settings().expect("valid");
        let expected = galgo_shards::auto_tail_cache_bytes(2);
        assert!(expected > 0);
        assert!(shards.iter().all(|s| s.tail_cache_bytes_max == expected));

        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("server.toml");
        let text = "[storage]\ntail_cache_bytes_max = 1000000\n\n\
                    [shards]\ncount = 3\n[[shards.override]]\nshard = 1\ntail_cache_bytes_max = 0\n";
        std::fs::write(&file, text).expect("write the file");
        let config = Config::load(Some(&file), &[]).expect("valid");
        let bounds: Vec<u64> = config
            .shard_settings()
            .expect("valid")
            .iter()
            .map(|s| s.tail_cache_bytes_max)
            .collect();
        assert_eq!(bounds, [1_000_000, 0, 1_000_000]);

        let wrong = set(&["storage.tail_cache_bytes_max=lots"]).expect("parses");
        let error = wrong
            .shard_settings()
            .expect_err("neither auto nor a number");
        assert!(
            error.to_string().contains("tail_cache_bytes_max"),
            "{error}"
        );
    }

    #[test]
    fn root_credentials_come_from_both_variables_or_neither() {
        let mut config = Config::load(None, &[]).expect("defaults are valid");
        config
            .root_from_env(Some("admin".into()), Some("s3cret".into()))
            .expect("both set");
        assert_eq!(config.root.username, "admin");
        assert_eq!(config.root.password, "s3cret");
        assert!(!format!("{:?}", config.root).contains("s3cret"));
        assert!(config.root_from_env(Some("admin".into()), None).is_err());
        assert!(config.root_from_env(None, None).is_ok());
        assert!(Config::load(None, &["root.password=ab".to_owned()]).is_err());
    }

    #[test]
    fn control_payload_limit_defaults_to_the_protocol_constant() {
        let config = Config::load(None, &[]).expect("defaults are valid");
        assert_eq!(
            config.limits.control_payload_bytes_max,
            CONTROL_PAYLOAD_BYTES_MAX
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let set = ["limits.control_payload_bytes_max=4096".to_owned()];
        let config = Config::load(None, &set).expect("valid");
        assert_eq!(config.limits.payload().control_bytes_max, 4096);
    }

    #[test]
    fn old_tcp_limit_keys_are_read_with_a_warning_naming_the_new_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("server.toml");
        let text = "[tcp]\nconnections_per_shard_max = 7\ncontrol_payload_bytes_max = 4096\n";
        std::fs::write(&file, text).expect("write the file");
        let overrides = ["tcp.write_timeout_ms=500".to_owned()];
        let config = Config::load(Some(&file), &overrides).expect("old keys are still read");
        assert_eq!(config.limits.connections_per_shard_max, 7);
        assert_eq!(config.limits.control_payload_bytes_max, 4096);
        assert_eq!(config.limits.write_timeout_ms, 500);
        let named = |key: &str| config.warnings.iter().any(|w| w.contains(key));
        assert!(
            named("limits.connections_per_shard_max"),
            "{:?}",
            config.warnings
        );
        assert!(
            named("limits.control_payload_bytes_max"),
            "{:?}",
            config.warnings
        );
        assert!(named("limits.write_timeout_ms"), "{:?}", config.warnings);
        assert_eq!(config.warnings.len(), 3);
        std::fs::write(
            &file,
            "[tcp]\nwrite_timeout_ms = 1\n[limits]\nwrite_timeout_ms = 2\n",
        )
        .expect("write the file");
        assert!(
            Config::load(Some(&file), &[]).is_err(),
            "set in both places"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::load(None, &["storage.nope=1".to_owned()]).is_err());
        assert!(Config::load(None, &["storage.fsync=sometimes".to_owned()]).is_err());
        assert!(Config::load(None, &["storage.direct_io=maybe".to_owned()]).is_err());
        assert!(Config::load(None, &["shards.count=0".to_owned()]).is_err());
        assert!(Config::load(None, &["websocket.tls.nope=1".to_owned()]).is_err());
        assert!(Config::load(None, &["websocket.address=\"127.0.0.1:8090\"".to_owned()]).is_err());
    }
}
