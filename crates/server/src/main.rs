//! galgo-server: the broker binary.
//!
//! Reads the configuration, checks io_uring, starts one shard per core and supervises them
//! from this thread: SIGTERM or Ctrl-C means a graceful shutdown, a panic in any shard stops
//! the whole server.

mod authorization;
mod config;
mod connection;
mod context;
mod credentials;
mod error;
mod handler;
mod host;
mod listener;
mod migration;
mod session;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Parser;
use galgo_shards::{Engine, EngineError, Readiness, Serve, ShutdownHandle, probe_io_uring};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// Exit code when a shard panicked.
const EXIT_PANIC: u8 = 101;
/// Exit code when the server could not start.
const EXIT_STARTUP: u8 = 1;
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
    match run(config) {
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

fn run(config: Config) -> Result<(), u8> {
    ignore_file_size_signal();
    pin_mmap_threshold();
    let shards = config.shard_settings().map_err(config_error)?;
    let storage = config.storage_settings().map_err(config_error)?;
    if let Err(unavailable) = probe_io_uring(shards[0].ring_entries, shards[0].coop_taskrun) {
        tracing::error!("{unavailable}");
        eprintln!("galgo-server: {unavailable}");
        return Err(EXIT_STARTUP);
    }
    if let Err(error) = std::fs::create_dir_all(&storage.data_dir) {
        tracing::error!(dir = %storage.data_dir.display(), %error, "cannot create the data directory");
        return Err(EXIT_STARTUP);
    }
    let bound = Arc::new(context::BoundAddresses::default());
    let context = context::ContextSeed::new(&config, bound.clone()).map_err(|error| {
        tracing::error!("{error}");
        eprintln!("galgo-server: {error}");
        EXIT_STARTUP
    })?;
    tracing::info!(
        shards = shards.len(),
        pinned = shards.iter().any(|shard| shard.cpu.is_some()),
        data_dir = %storage.data_dir.display(),
        fsync = %config.storage.fsync,
        direct_io = %config.storage.direct_io,
        "starting galgo-server {}",
        env!("CARGO_PKG_VERSION")
    );
    let mut engine =
        Engine::start(shards, storage, serve(context)).map_err(|error| report(&error))?;
    watch_signals(engine.shutdown_handle());
    match engine.wait_ready().map_err(|error| report(&error))? {
        Readiness::Serving => println!("{}", ready_line(&bound)),
        Readiness::StoppedDuringStartup => tracing::info!("shutdown requested during start-up"),
    }
    engine.wait_stopped().map_err(|error| report(&error))?;
    tracing::info!("galgo-server stopped");
    Ok(())
}

/// `galgo-server ready tcp=ADDR websocket=ADDR`, naming the listeners that run. Scripts and
/// the test harness read it; new listeners are appended, never inserted.
fn ready_line(bound: &context::BoundAddresses) -> String {
    let mut line = "galgo-server ready".to_owned();
    if let Some(address) = bound.tcp.get() {
        line.push_str(&format!(" tcp={address}"));
    }
    if let Some(address) = bound.websocket.get() {
        line.push_str(&format!(" websocket={address}"));
    }
    line
}

/// A write past RLIMIT_FSIZE raises SIGXFSZ, whose default action kills the process. Ignored,
/// the write fails with EFBIG instead, which storage reports to the client and the log like
/// any other disk error.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

/// What shard 0 does once metadata is replayed and partitions are open: start the root
/// user's password hash if there is no root user yet (a first start), start the
/// expired-token cleaner, bind the listeners, then create the root user. Connections are
/// accepted while the hash runs; logins wait for root (`handler::users::login`).
fn serve(seed: context::ContextSeed) -> Serve {
    let root = seed.root.clone();
    let root_created = seed.root_created.clone();
    let cleanup = std::time::Duration::from_millis(seed.tokens.cleanup_interval_ms);
    let listen = listener::serve(seed);
    Box::new(move |shard0| {
        Box::pin(async move {
            let pending = handler::start_root_creation(&shard0, &root, &root_created);
            compio::runtime::spawn(handler::clean_expired_tokens(shard0.clone(), cleanup)).detach();
            listen(shard0.clone()).await?;
            handler::ensure_root(&shard0, &root, pending, &root_created).await
        })
    })
}

/// glibc raises its mmap threshold each time a large block is freed, after which large
/// blocks (Argon2's 19 MiB per password hash) come from the heap and stay resident: 1,000
/// logins left the server at 950 MiB RSS. A fixed threshold of 4 MiB keeps those in their own
/// mappings, returned to the kernel when freed (400 concurrent logins: 8.5 MiB RSS), while
/// the ~1 MB buffers of the message path (a connection's read buffer for a batch of a
/// thousand 1 KB messages) come from the heap and are reused: with a 1 MiB threshold each such
/// request cost a fresh mapping, its page faults and an munmap (a quarter of the server's
/// samples in a producer run; throughput rose 30–60% without it). Free heap memory is given
/// back once twice the threshold is free at the top.
fn pin_mmap_threshold() {
    /// Allocations at least this large get their own mapping.
    const MMAP_THRESHOLD_BYTES: i32 = 4 << 20;
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; it is called before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_BYTES);
    }
}

fn config_error(error: config::ConfigError) -> u8 {
    eprintln!("galgo-server: {error}");
    EXIT_CONFIG
}

fn report(error: &EngineError) -> u8 {
    tracing::error!("{error}");
    match error {
        EngineError::Panicked(_) => EXIT_PANIC,
        _ => EXIT_STARTUP,
    }
}

/// SIGTERM and SIGINT ask for a graceful shutdown. A second Ctrl-C (SIGINT) ends the process
/// at once; repeated SIGTERMs (process managers often send more than one) are ignored.
fn watch_signals(shutdown: ShutdownHandle) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot watch signals; stop the server with SIGKILL");
            return;
        }
    };
    std::thread::Builder::new()
        .name("galgo-signals".into())
        .spawn(move || {
            let mut shutting_down = false;
            for signal in signals.forever() {
                if shutting_down && signal == SIGINT {
                    tracing::warn!(
                        signal,
                        "second interrupt: exiting without finishing the shutdown"
                    );
                    std::process::exit(i32::from(EXIT_STARTUP));
                }
                if !shutting_down {
                    tracing::info!(signal, "signal received: graceful shutdown");
                    shutdown.shutdown();
                }
                shutting_down = true;
            }
        })
        .expect("spawn the signal thread");
}
