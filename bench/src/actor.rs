//! Actors: each producer and consumer runs on its own thread with its own compio runtime,
//! optionally pinned to a core, and returns its own histograms and counters.

use std::sync::{Arc, Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use galgo_client::{Client, ConnectionString};
use serde::Serialize;

use crate::args::Args;
use crate::latency::Latencies;
use crate::plan::Plan;
use crate::series::Series;

/// What an actor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sends batches.
    Producer,
    /// Polls batches.
    Consumer,
}

/// What one actor measured.
#[derive(Debug)]
pub struct ActorResult {
    /// Producer or consumer.
    pub role: Role,
    /// Its number among its role, from 0.
    pub index: u32,
    /// Messages sent and acknowledged, or received.
    pub messages: u64,
    /// Message bytes (header, payload) sent or received.
    pub bytes: u64,
    /// Requests that carried messages.
    pub requests: u64,
    /// Polls that returned nothing.
    pub empty_polls: u64,
    /// From the common start to the actor's last message.
    pub elapsed: Duration,
    /// One sample per request: send or poll round trip (from the intended send time at a
    /// fixed rate).
    pub latencies: Latencies,
    /// One sample per message: origin timestamp to receipt (end-to-end consumers only).
    pub end_to_end: Latencies,
    /// Per-second counts and latencies.
    pub series: Series,
    /// Why the actor stopped early, if it did.
    pub error: Option<String>,
}

impl ActorResult {
    /// An empty result for actor `index` of `role`.
    pub fn new(role: Role, index: u32) -> Self {
        Self {
            role,
            index,
            messages: 0,
            bytes: 0,
            requests: 0,
            empty_polls: 0,
            elapsed: Duration::ZERO,
            latencies: Latencies::new(),
            end_to_end: Latencies::new(),
            series: Series::default(),
            error: None,
        }
    }
}

/// What every actor of a run shares.
pub struct Shared {
    /// The command line.
    pub args: Args,
    /// Where to connect.
    pub connection: ConnectionString,
    /// Streams and progress.
    pub plan: Arc<Plan>,
    /// Every actor waits here after connecting and warming up.
    pub barrier: Barrier,
    /// The measurement's start, set by the first actor through the barrier.
    pub start: OnceLock<Instant>,
}

impl Shared {
    /// Waits for every actor, then returns the common start.
    pub fn start_together(&self) -> Instant {
        self.barrier.wait();
        *self.start.get_or_init(Instant::now)
    }

    /// The end of a timed run, if it is timed.
    pub fn deadline(&self, start: Instant) -> Option<Instant> {
        self.args
            .duration_secs
            .map(|secs| start + Duration::from_secs_f64(secs))
    }

    /// Connects and logs in.
    pub async fn connect(&self) -> Result<Client, String> {
        Client::connect(&self.connection)
            .await
            .map_err(|error| format!("connect: {error}"))
    }
}

/// Runs `body` on a new thread with its own compio runtime, pinned to `core` if given.
pub fn spawn<F, Fut>(
    name: String,
    core: Option<core_affinity::CoreId>,
    body: F,
) -> thread::JoinHandle<ActorResult>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ActorResult>,
{
    thread::Builder::new()
        .name(name)
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            let runtime = compio::runtime::Runtime::new().expect("a compio runtime");
            runtime.block_on(body())
        })
        .expect("spawn an actor thread")
}

/// The core of actor number `ordinal` when pinning, round-robin over the available cores.
pub fn core_for(pin: bool, ordinal: usize) -> Option<core_affinity::CoreId> {
    if !pin {
        return None;
    }
    let cores = core_affinity::get_core_ids()?;
    cores.get(ordinal % cores.len().max(1)).copied()
}

/// Microseconds since the Unix epoch, the clock of origin timestamps.
pub fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_micros() as u64)
        .unwrap_or(0)
}

/// Nanoseconds from `from` to `to`, 0 when `to` is earlier.
pub fn ns_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_nanos() as u64
}
