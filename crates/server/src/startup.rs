//! Start-up, in order, top to bottom: everything the server does before it prints its ready
//! line, and every background task it runs, is started from this file.
//!
//! ```text
//! control thread  1 process settings: SIGXFSZ ignored, malloc's mmap threshold pinned
//!                 2 configuration -> shard and storage settings; io_uring probed; data dir;
//!                   the HTTP endpoint's address bound (`[http]`)
//!                 3 the seed every shard starts from (TLS certificates loaded or made)
//!                 4 the engine: one thread per shard, each building its Context; the HTTP
//!                   endpoint's threads (/health answers 503 until step 10)
//! shard 0         5   (engine) metadata log replayed on every shard; partitions opened
//!                 6   background tasks: saver and retention cleaner on every shard;
//!                     token cleaner and group-revocation expiry on shard 0
//!                 7   root password hash started when there is no root user (first start)
//!                 8   listeners bound on every shard; connections accepted from here on
//!                 9   root user created; logins waiting for it go on
//! control thread 10 signals watched; /health 200; ready line printed; waits for the shards
//!                   to stop (/health 503 from the shutdown signal on)
//! ```

use std::{sync::Arc, time::Duration};

use galgo_shards::{
    Engine, EngineError, Readiness, Serve, ShutdownHandle, probe_io_uring, run_retention_cleaner,
    run_saver,
};

use crate::{
    cluster,
    config::{self, Config},
    context::{self, Context, ContextSeed, Shard},
    handler,
    http::{self, Health},
    listener,
};

/// Exit code when a shard panicked.
const EXIT_PANIC: u8 = 101;
/// Exit code when the server could not start.
const EXIT_STARTUP: u8 = 1;
/// Exit code for an unusable configuration.
const EXIT_CONFIG: u8 = 2;

/// Runs the server until it stops; `Err` is the process's exit code.
pub fn run(config: Config) -> Result<(), u8> {
    // 1.
    ignore_file_size_signal();
    pin_mmap_threshold();
    // 2.
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
    let http_listener = bind_http(&config)?;
    // 3.
    let bound = Arc::new(context::BoundAddresses::default());
    let seed = ContextSeed::new(&config, bound.clone()).map_err(|error| {
        tracing::error!("{error}");
        eprintln!("galgo-server: {error}");
        EXIT_STARTUP
    })?;
    tracing::info!(
        shards = shards.len(),
        pinned = shards.iter().any(|shard| shard.cpu.is_some()),
        data_dir = %storage.data_dir.display(),
        fsync = %config.storage.fsync,
        direct_io = %storage.direct_io,
        "starting galgo-server {}",
        env!("CARGO_PKG_VERSION")
    );
    // 4. and 5.-9. on the shards (`serve`).
    let state_seed = seed.clone();
    let state = Arc::new(move |_| Context::new(state_seed.clone()));
    let mut engine =
        Engine::start(shards, storage, state, serve(seed)).map_err(|error| report(&error))?;
    let health = Arc::new(Health::default());
    let http = start_http(http_listener, &config, &engine, &health)?;
    // 10.
    watch_signals(engine.shutdown_handle(), health.clone());
    match engine.wait_ready().map_err(|error| report(&error))? {
        Readiness::Serving => {
            health.serving();
            println!("{}", ready_line(&bound, http));
        }
        Readiness::StoppedDuringStartup => tracing::info!("shutdown requested during start-up"),
    }
    engine.wait_stopped().map_err(|error| report(&error))?;
    tracing::info!("galgo-server stopped");
    Ok(())
}

/// Step 2: the HTTP endpoint's address, bound before any shard starts so a taken port fails
/// the start naming its key.
fn bind_http(config: &Config) -> Result<Option<std::net::TcpListener>, u8> {
    if !config.http.enabled {
        return Ok(None);
    }
    http::bind(&config.http).map(Some).map_err(|error| {
        tracing::error!("{error}");
        eprintln!("galgo-server: {error}");
        EXIT_STARTUP
    })
}

/// Step 4, once the engine runs: the HTTP endpoint serves /health (503 until every shard
/// serves) and /metrics on threads of its own. Returns its address.
fn start_http(
    listener: Option<std::net::TcpListener>,
    config: &Config,
    engine: &Engine,
    health: &Arc<Health>,
) -> Result<Option<std::net::SocketAddr>, u8> {
    let Some(listener) = listener else {
        return Ok(None);
    };
    let address = listener.local_addr().ok();
    let shards = engine
        .shards_handle::<Context>()
        .expect("the engine runs the server's Context");
    http::start(listener, config.http.clone(), health.clone(), shards).map_err(|error| {
        tracing::error!(%error, "cannot start the HTTP endpoint");
        EXIT_STARTUP
    })?;
    if let Some(address) = address {
        tracing::info!(%address, "HTTP listening (/metrics, /health)");
    }
    Ok(address)
}

/// Steps 6 to 9, on shard 0 once metadata is replayed and every partition is open.
/// Connections are accepted while the root password is hashed; logins wait for root
/// (`handler::users::login`).
fn serve(seed: ContextSeed) -> Serve<Context> {
    Box::new(move |shard0| {
        Box::pin(async move {
            cluster::check_data_dir(&seed, shard0.metadata.borrow().version())?;
            start_background_tasks(&shard0, &seed).await?;
            if let Some(view) = seed.cluster.clone() {
                cluster::join(&shard0, view.clone()).await?;
                let pending = handler::start_root_creation(&shard0, &seed.root, &seed.root_created);
                // Before any client can join a group through this start.
                let started_us = context::now_us();
                listener::listen_on_every_shard(&shard0).await?;
                cluster::connect_peers(&shard0, &view);
                compio::runtime::spawn(cluster::create_root(shard0.clone(), pending)).detach();
                let forget = cluster::forget_members_from_before(shard0.clone(), started_us);
                compio::runtime::spawn(forget).detach();
                let lost = cluster::forget_members_of_lost_nodes(shard0.clone());
                compio::runtime::spawn(lost).detach();
                return Ok(());
            }
            let pending = handler::start_root_creation(&shard0, &seed.root, &seed.root_created);
            listener::listen_on_every_shard(&shard0).await?;
            handler::ensure_root(&shard0, &seed.root, pending, &seed.root_created).await
        })
    })
}

/// Step 6: the saver (journals written out, `fsync = "interval"` syncs) and the retention
/// cleaner on every shard; the expired-token cleaner and the expiry of timed-out group
/// revocations on shard 0. Each runs until its shard stops.
async fn start_background_tasks(
    shard0: &std::rc::Rc<Shard>,
    seed: &ContextSeed,
) -> Result<(), String> {
    for target in shard0.all_shards() {
        shard0
            .call(target, |shard| async move {
                compio::runtime::spawn(run_saver(shard.clone())).detach();
                compio::runtime::spawn(run_retention_cleaner(shard)).detach();
            })
            .await
            .map_err(|error| error.to_string())?;
    }
    let cleanup = Duration::from_millis(seed.tokens.cleanup_interval_ms);
    compio::runtime::spawn(handler::clean_expired_tokens(shard0.clone(), cleanup)).detach();
    let revocations =
        handler::expire_group_revocations(shard0.clone(), seed.consumer_group.clone());
    compio::runtime::spawn(revocations).detach();
    Ok(())
}

/// `galgo-server ready tcp=ADDR websocket=ADDR`, naming the listeners that run. Scripts and
/// the test harness read it; new listeners are appended, never inserted.
fn ready_line(bound: &context::BoundAddresses, http: Option<std::net::SocketAddr>) -> String {
    let mut line = "galgo-server ready".to_owned();
    if let Some(address) = bound.tcp.get() {
        line.push_str(&format!(" tcp={address}"));
    }
    if let Some(address) = bound.websocket.get() {
        line.push_str(&format!(" websocket={address}"));
    }
    if let Some(address) = http {
        line.push_str(&format!(" http={address}"));
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
fn watch_signals(shutdown: ShutdownHandle, health: Arc<Health>) {
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
                    health.stopping();
                    shutdown.shutdown();
                }
                shutting_down = true;
            }
        })
        .expect("spawn the signal thread");
}
