//! galgo-server: the broker binary.
//!
//! Reads the configuration, checks io_uring, starts one shard per core and supervises them
//! from this thread: SIGTERM or Ctrl-C means a graceful shutdown, a panic in any shard stops
//! the whole server.

mod authorization;
mod clients;
mod cluster;
mod config;
mod connection;
mod context;
mod credentials;
mod error;
mod handler;
mod host;
mod http;
mod listener;
mod metrics;
mod migration;
mod proposed_offsets;
mod request_stats;
mod session;
mod startup;

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Exit code for an unusable configuration.
const EXIT_CONFIG: u8 = 2;

/// galgo: a thread-per-core, io_uring message-streaming broker that speaks Apache Iggy's protocol.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML file whose keys override the embedded defaults (configs/server.toml).
    #[arg(long, env = "GALGO_CONFIG")]
    config: Option<PathBuf>,
    /// Root of the data directory ([system] data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TCP listen address ([tcp] address); port 0 picks a free one.
    #[arg(long)]
    tcp_address: Option<String>,
    /// WebSocket listen address ([websocket] address); port 0 picks a free one.
    #[arg(long)]
    websocket_address: Option<String>,
    /// Number of shards ([shards] count).
    #[arg(long)]
    shards: Option<u16>,
    /// Do not pin shards to CPUs ([shards] pin = false).
    #[arg(long)]
    no_pin: bool,
    /// Override one configuration key, e.g. --set storage.fsync=always (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

impl Cli {
    fn config(&self) -> Result<Config, config::ConfigError> {
        let mut overrides = self.overrides.clone();
        if let Some(dir) = &self.data_dir {
            overrides.push(format!("system.data_dir={:?}", dir.display().to_string()));
        }
        if let Some(address) = &self.tcp_address {
            overrides.push(format!("tcp.address={address:?}"));
        }
        if let Some(address) = &self.websocket_address {
            overrides.push(format!("websocket.address={address:?}"));
        }
        if let Some(count) = self.shards {
            overrides.push(format!("shards.count={count}"));
        }
        if self.no_pin {
            overrides.push("shards.pin=false".to_owned());
        }
        Config::load(self.config.as_ref(), &overrides)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match cli.config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("galgo-server: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config.logging.level);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    match startup::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => ExitCode::from(code),
    }
}

fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // Colours only for a terminal: a log file or journald gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .with_thread_names(true)
        .init();
}
