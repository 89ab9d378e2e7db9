//! Starting, supervising and stopping the shards.
//!
//! The control thread (the server's `main`) starts one thread per shard and then only waits
//! for [`Lifecycle`] news. Shard 0 drives start-up (replay the metadata log, have every shard
//! open its partitions, start serving) and graceful shutdown (stop accepting, drain, flush and
//! fsync every partition, stop every loop). A panic anywhere stops the server.

use std::{
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::{Arc, Mutex, OnceLock, mpsc},
    thread,
    time::{Duration, Instant},
};

use galgo_metadata::{Event, ShardId};
use galgo_storage::MetadataLog;
use thiserror::Error;

use crate::{
    CallError, Shard, ShardSettings, ShardState, StorageSettings, message::ShardMessage,
    settings::INBOX_CAPACITY_MIN,
};

/// How long shutdown waits for connections to finish their request in flight.
const CONNECTIONS_DRAIN_MS_MAX: u64 = 5_000;
/// How often shutdown looks whether the connections have gone.
const CONNECTIONS_DRAIN_POLL_MS: u64 = 5;

/// What the server does once the shards are up: runs on shard 0 (it reaches other shards by
/// calls) and returns once every listener is bound.
pub type Serve<S> =
    Box<dyn FnOnce(Rc<Shard<S>>) -> Pin<Box<dyn Future<Output = Result<(), String>>>> + Send>;

/// Builds the state a shard keeps for the layer above, on that shard's thread.
pub type MakeState<S> = Arc<dyn Fn(ShardId) -> S + Send + Sync>;

/// News from the shards to the control thread.
#[derive(Debug)]
pub enum Lifecycle {
    /// Every shard is serving.
    Ready,
    /// Start-up failed.
    Failed(String),
    /// A thread panicked; the message says where and why.
    Panicked(String),
    /// A shard left its loop.
    Stopped(ShardId),
}

/// How start-up ended, when it did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Every shard serves.
    Serving,
    /// A shutdown came before the shards were ready, and every shard has stopped.
    StoppedDuringStartup,
}

/// Why the engine did not run or stopped badly.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Start-up failed.
    #[error("start-up failed: {0}")]
    Startup(String),
    /// A shard panicked.
    #[error("a shard panicked: {0}")]
    Panicked(String),
    /// A thread could not be spawned.
    #[error("cannot spawn a shard thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The running shards, seen from the control thread.
pub struct Engine {
    threads: Vec<thread::JoinHandle<()>>,
    /// A `ShardsHandle<S>` for the state type the engine was started with.
    handle: Box<dyn std::any::Any + Send>,
    shutdown: ShutdownHandle,
    news: mpsc::Receiver<Lifecycle>,
    stopped: usize,
}

/// Panics are reported to every engine of the process (a panic anywhere is fatal) by the hook
/// [`Engine::start`] installs once.
static PANICS: Mutex<Vec<mpsc::Sender<Lifecycle>>> = Mutex::new(Vec::new());
static PANIC_HOOK: OnceLock<()> = OnceLock::new();

impl Engine {
    /// Starts one thread per entry of `shards` (shard i gets `shards[i]`), each holding the
    /// state `state` builds for it; `serve` runs on shard 0 once metadata is replayed and
    /// every partition is open.
    pub fn start<S: ShardState>(
        shards: Vec<ShardSettings>,
        storage: StorageSettings,
        state: MakeState<S>,
        serve: Serve<S>,
    ) -> Result<Self, EngineError> {
        assert!(!shards.is_empty(), "a server has at least one shard");
        let (news_tx, news) = mpsc::channel();
        install_panic_hook(news_tx.clone());
        let (senders, receivers): (Vec<_>, Vec<_>) = shards
            .iter()
            .map(|settings| flume::bounded(settings.inbox_capacity.max(INBOX_CAPACITY_MIN)))
            .unzip();
        let mut serve = Some(serve);
        let mut threads = Vec::with_capacity(shards.len());
        for (index, (settings, inbox)) in shards.into_iter().zip(receivers).enumerate() {
            let id = ShardId(index as u16);
            let context = ShardThread {
                id,
                settings,
                inboxes: senders.clone(),
                inbox,
                storage: storage.clone(),
                state: state.clone(),
                serve: if index == 0 { serve.take() } else { None },
                news: news_tx.clone(),
            };
            let thread = thread::Builder::new()
                .name(format!("galgo-shard-{index}"))
                .spawn(move || context.run())?;
            threads.push(thread);
        }
        let shard0 = senders[0].clone();
        Ok(Self {
            threads,
            handle: Box::new(ShardsHandle { inboxes: senders }),
            shutdown: ShutdownHandle(Arc::new(move || {
                let _ = shard0.try_send(ShardMessage::Shutdown);
            })),
            news,
            stopped: 0,
        })
    }

    /// A handle that runs work on the shards from other threads (the HTTP endpoint), for the
    /// state type the engine was started with (`None` for another type).
    pub fn shards_handle<S: ShardState>(&self) -> Option<ShardsHandle<S>> {
        self.handle.downcast_ref::<ShardsHandle<S>>().cloned()
    }

    /// A handle that asks shard 0 for a graceful shutdown; usable from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits until every shard serves, or start-up fails, or a shutdown asked during start-up
    /// has already stopped every shard (then nothing will ever be ready: a SIGTERM a few
    /// milliseconds after start used to leave the process waiting here forever).
    pub fn wait_ready(&mut self) -> Result<Readiness, EngineError> {
        while self.stopped < self.threads.len() {
            match self.next_news()? {
                Lifecycle::Ready => return Ok(Readiness::Serving),
                Lifecycle::Stopped(_) => self.stopped += 1,
                _ => {}
            }
        }
        Ok(Readiness::StoppedDuringStartup)
    }

    /// Waits until every shard has stopped.
    pub fn wait_stopped(mut self) -> Result<(), EngineError> {
        while self.stopped < self.threads.len() {
            if let Lifecycle::Stopped(_) = self.next_news()? {
                self.stopped += 1;
            }
        }
        for thread in self.threads {
            thread
                .join()
                .map_err(|_| EngineError::Panicked("join".into()))?;
        }
        Ok(())
    }

    fn next_news(&mut self) -> Result<Lifecycle, EngineError> {
        match self.news.recv() {
            Ok(Lifecycle::Failed(why)) => Err(EngineError::Startup(why)),
            Ok(Lifecycle::Panicked(why)) => Err(EngineError::Panicked(why)),
            Ok(news) => Ok(news),
            Err(_) => Err(EngineError::Startup("every shard thread is gone".into())),
        }
    }
}

/// Asks shard 0 to stop the server gracefully.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<dyn Fn() + Send + Sync>);

impl ShutdownHandle {
    /// Requests the shutdown; a no-op if the server is already stopping.
    pub fn shutdown(&self) {
        (self.0)();
    }
}

/// Runs work on a shard from a thread that is not one (the HTTP endpoint gathering figures at
/// scrape time): the job goes into the shard's inbox like a call, runs there as a task of its
/// own, and its value comes back through a channel this thread waits on. The shards never
/// wait for such a thread: their inbox loop only spawns the job.
pub struct ShardsHandle<S: ShardState> {
    inboxes: Vec<flume::Sender<ShardMessage<S>>>,
}

impl<S: ShardState> Clone for ShardsHandle<S> {
    fn clone(&self) -> Self {
        Self {
            inboxes: self.inboxes.clone(),
        }
    }
}

impl<S: ShardState> ShardsHandle<S> {
    /// Every shard id.
    pub fn all_shards(&self) -> impl Iterator<Item = ShardId> + use<S> {
        (0..self.inboxes.len() as u16).map(ShardId)
    }

    /// Messages waiting in shard `target`'s inbox now.
    pub fn inbox_depth(&self, target: ShardId) -> usize {
        self.inboxes[usize::from(target.0)].len()
    }

    /// Runs `job` on shard `target` and waits (blocking this thread, at most `timeout`) for
    /// its value. Fails when the shard is stopped or does not answer in time.
    pub fn run<T, F, Fut>(&self, target: ShardId, timeout: Duration, job: F) -> Result<T, CallError>
    where
        F: FnOnce(Rc<Shard<S>>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
        T: Send + 'static,
    {
        let (reply, value) = flume::bounded(1);
        let job: crate::message::ExternalJob<S> = Box::new(move |shard| {
            Box::pin(async move {
                let _ = reply.send(job(shard).await);
            })
        });
        let deadline = Instant::now() + timeout;
        self.inboxes[usize::from(target.0)]
            .send_deadline(ShardMessage::External(job), deadline)
            .map_err(|_| CallError::ShardStopped(target))?;
        value
            .recv_deadline(deadline)
            .map_err(|_| CallError::ShardStopped(target))
    }
}

fn install_panic_hook(news: mpsc::Sender<Lifecycle>) {
    PANICS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(news);
    PANIC_HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            previous(info);
            let thread = thread::current();
            let message = format!("thread '{}' {info}", thread.name().unwrap_or("unnamed"));
            tracing::error!("{message}; stopping the server");
            let engines = PANICS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for news in engines.iter() {
                let _ = news.send(Lifecycle::Panicked(message.clone()));
            }
        }));
    });
}

/// Everything one shard thread starts from.
struct ShardThread<S: ShardState> {
    id: ShardId,
    settings: ShardSettings,
    inboxes: Vec<flume::Sender<ShardMessage<S>>>,
    inbox: flume::Receiver<ShardMessage<S>>,
    storage: StorageSettings,
    state: MakeState<S>,
    serve: Option<Serve<S>>,
    news: mpsc::Sender<Lifecycle>,
}

impl<S: ShardState> ShardThread<S> {
    fn run(self) {
        let id = self.id;
        let news = self.news.clone();
        if let Some(cpu) = self.settings.cpu
            && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
        {
            tracing::warn!(
                shard = id.0,
                cpu,
                "cannot pin the shard to its CPU; running unpinned"
            );
        }
        match build_runtime(&self.settings) {
            Ok(runtime) => runtime.block_on(self.serve_loop()),
            Err(error) => {
                let _ = news.send(Lifecycle::Failed(format!(
                    "shard {}: cannot build its io_uring runtime: {}",
                    id.0,
                    crate::uring_probe::explain(error)
                )));
            }
        }
        let _ = news.send(Lifecycle::Stopped(id));
    }

    async fn serve_loop(self) {
        let writer = if self.id.0 == 0 {
            match open_metadata_log(&self.storage).await {
                Ok(opened) => Some(opened),
                Err(why) => {
                    let _ = self.news.send(Lifecycle::Failed(why));
                    return;
                }
            }
        } else {
            None
        };
        let (log, records) = match writer {
            Some((log, records)) => (Some(log), records),
            None => (None, Vec::new()),
        };
        let state = (self.state)(self.id);
        let shard = Rc::new(Shard::new(
            self.id,
            self.inboxes,
            self.storage,
            self.settings.tail_cache_bytes_max,
            log,
            state,
        ));
        if let Some(serve) = self.serve {
            let news = self.news.clone();
            compio::runtime::spawn(bootstrap(shard.clone(), records, serve, news)).detach();
        }
        inbox_loop(shard, self.inbox).await;
    }
}

fn build_runtime(settings: &ShardSettings) -> std::io::Result<compio::runtime::Runtime> {
    let mut proactor = compio::driver::ProactorBuilder::new();
    proactor
        .capacity(settings.ring_entries)
        .coop_taskrun(settings.coop_taskrun)
        .taskrun_flag(settings.coop_taskrun);
    if settings.sqpoll_idle_ms > 0 {
        proactor.sqpoll_idle(Duration::from_millis(u64::from(settings.sqpoll_idle_ms)));
    }
    let runtime = compio::runtime::RuntimeBuilder::new()
        .with_proactor(proactor)
        .build()?;
    assert!(
        runtime.driver_type().is_iouring(),
        "galgo runs its shards on io_uring only"
    );
    Ok(runtime)
}

async fn open_metadata_log(storage: &StorageSettings) -> Result<(MetadataLog, Vec<Event>), String> {
    let path = storage.data_dir.join("state").join("metadata.log");
    let (log, records) = MetadataLog::open(path.clone())
        .await
        .map_err(|error| format!("cannot open the metadata log {}: {error}", path.display()))?;
    let events = galgo_metadata::read_log(&records)
        .map_err(|error| format!("the metadata log {} is unreadable: {error}", path.display()))?;
    if records.is_empty() {
        // A new log (or one whose format record was torn off) names its format before the
        // first event goes in, so a later build can tell which layout it holds.
        log.append(&galgo_metadata::format_record())
            .await
            .map_err(|error| {
                format!("cannot write the metadata log {}: {error}", path.display())
            })?;
    }
    Ok((log, events))
}

/// Shard 0's start-up: replay metadata everywhere, open every partition on its owner, then
/// hand over to the layer above (which starts the background tasks and binds its listeners).
async fn bootstrap<S: ShardState>(
    shard0: Rc<Shard<S>>,
    events: Vec<Event>,
    serve: Serve<S>,
    news: mpsc::Sender<Lifecycle>,
) {
    let started = Instant::now();
    let replayed = events.len();
    for (index, mut event) in events.into_iter().enumerate() {
        // Versions count the events of one run: membership changes were broadcast but not
        // logged, so the logged versions may have gaps, and the log's order is what counts.
        event.version = index as u64 + 1;
        shard0.apply_event(&event);
        shard0.broadcast(&Arc::new(event)).await;
    }
    for target in shard0.all_shards() {
        let opened = shard0
            .call(target, |shard| async move {
                open_owned_partitions(&shard).await
            })
            .await
            .unwrap_or_else(|error| Err(error.to_string()));
        if let Err(why) = opened {
            let _ = news.send(Lifecycle::Failed(why));
            return;
        }
    }
    if let Err(why) = serve(shard0.clone()).await {
        let _ = news.send(Lifecycle::Failed(why));
        return;
    }
    tracing::info!(
        shard = 0,
        shards = shard0.shard_count(),
        metadata_events = replayed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "galgo is serving"
    );
    let _ = news.send(Lifecycle::Ready);
}

async fn open_owned_partitions<S: ShardState>(shard: &Rc<Shard<S>>) -> Result<(), String> {
    let owned: Vec<_> = shard
        .metadata
        .borrow()
        .partitions()
        .filter(|(_, partition)| partition.owner == shard.id())
        .map(|(key, _)| key)
        .collect();
    for key in owned {
        shard.open_partition(key, false).await.map_err(|error| {
            format!("shard {}: cannot open partition {key}: {error}", shard.id())
        })?;
    }
    Ok(())
}

/// The loop every shard runs until it is told to stop. It never sends into another inbox
/// itself (calls run as tasks), so full inboxes cannot deadlock two loops.
async fn inbox_loop<S: ShardState>(shard: Rc<Shard<S>>, inbox: flume::Receiver<ShardMessage<S>>) {
    while let Ok(message) = inbox.recv_async().await {
        match message {
            ShardMessage::Call { from, call_id, job } => {
                crate::ShardCounters::bump(&shard.counters.calls_received);
                let shard = shard.clone();
                compio::runtime::spawn(async move {
                    let value = job(shard.clone()).await;
                    let _ = shard
                        .send(from, ShardMessage::Reply { call_id, value })
                        .await;
                })
                .detach();
            }
            ShardMessage::Reply { call_id, value } => shard.complete(call_id, value),
            ShardMessage::Event(event) => shard.apply_event(&event),
            ShardMessage::Replace(metadata) => shard.replace_metadata_here(&metadata),
            ShardMessage::Shutdown => {
                if !shard.is_stopping() {
                    compio::runtime::spawn(shut_down(shard.clone())).detach();
                }
            }
            ShardMessage::External(job) => {
                compio::runtime::spawn(job(shard.clone())).detach();
            }
            ShardMessage::Stop => break,
        }
    }
}

/// Shard 0's graceful shutdown of the whole server.
async fn shut_down<S: ShardState>(shard0: Rc<Shard<S>>) {
    tracing::info!(shard = 0, "shutting down: no new connections, draining");
    for target in shard0.all_shards() {
        let _ = shard0
            .call(target, |shard| async move { stop_serving(&shard).await })
            .await;
    }
    for target in shard0.all_shards() {
        let _ = shard0
            .call(
                target,
                |shard| async move { close_partitions(&shard).await },
            )
            .await;
    }
    for target in shard0.all_shards().filter(|&id| id != shard0.id()) {
        let _ = shard0.send(target, ShardMessage::Stop).await;
    }
    let _ = shard0.send(shard0.id(), ShardMessage::Stop).await;
}

async fn stop_serving<S: ShardState>(shard: &Rc<Shard<S>>) {
    shard.begin_stopping();
    let deadline = Instant::now() + Duration::from_millis(CONNECTIONS_DRAIN_MS_MAX);
    while shard.state().open_connections() > 0 && Instant::now() < deadline {
        compio::time::sleep(Duration::from_millis(CONNECTIONS_DRAIN_POLL_MS)).await;
    }
    let left = shard.state().open_connections();
    if left > 0 {
        tracing::warn!(
            shard = shard.id().0,
            connections = left,
            "connections did not close in time"
        );
    }
}

async fn close_partitions<S: ShardState>(shard: &Rc<Shard<S>>) {
    for (key, log) in shard.owned_partitions() {
        if let Err(error) = log.close().await {
            tracing::error!(shard = shard.id().0, partition = %key, %error, "cannot flush partition at shutdown");
        }
    }
    tracing::info!(shard = shard.id().0, "partitions flushed and synced");
}
