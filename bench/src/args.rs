//! The command line.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use serde::Serialize;

/// What the actors do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Each producer sends to its own stream and partition.
    PinnedProducer,
    /// Each consumer reads its own stream (filled beforehand, not measured).
    PinnedConsumer,
    /// Pinned producers and pinned consumers at the same time.
    PinnedProducerAndConsumer,
    /// Producers share the streams; the server balances batches over partitions.
    BalancedProducer,
    /// Consumers of one consumer group per stream read what was filled beforehand.
    BalancedConsumerGroup,
    /// Producers and consumers at the same time; the consumers measure the latency from each
    /// message's origin timestamp (set at its intended send time) to its receipt.
    EndToEnd,
}

impl Mode {
    /// Whether the mode runs producers during the measurement.
    pub fn measures_producers(self) -> bool {
        !matches!(self, Mode::PinnedConsumer | Mode::BalancedConsumerGroup)
    }

    /// Whether the mode runs consumers during the measurement.
    pub fn measures_consumers(self) -> bool {
        !matches!(self, Mode::PinnedProducer | Mode::BalancedProducer)
    }

    /// Whether consumers read data produced before the measurement.
    pub fn prefills(self) -> bool {
        !self.measures_producers()
    }
}

/// galgo-bench: throughput and tail latency of a server of Apache Iggy's binary protocol, with
/// a baseline of the same machine measured in the same run.
#[derive(Clone, Debug, Parser, Serialize)]
#[command(version, about)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value = "pinned-producer")]
    pub mode: Mode,
    /// Where and how to connect: iggy://user:password@host:port, iggy+tcp://…, iggy+ws://…,
    /// with ?tls=true&tls_domain=…&tls_ca_file=… for TLS or WSS.
    #[arg(
        long,
        default_value = "iggy://iggy:iggy@127.0.0.1:8090",
        env = "GALGO_BENCH_SERVER"
    )]
    #[serde(skip)]
    pub server: String,
    /// The client generation to speak, 0.8 or 0.9 (galgo serves both) [default: the
    /// connection string's `protocol`, else 0.8]. The report names it under `server`.
    #[arg(long, env = "GALGO_BENCH_PROTOCOL")]
    #[serde(skip)]
    pub protocol: Option<galgo_client::Protocol>,
    /// Producers (in modes that produce).
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    /// Consumers (in modes that consume).
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Streams to spread the actors over; 0 means one per producer (or per consumer).
    #[arg(long, default_value_t = 0)]
    pub streams: u32,
    /// Partitions of each stream's topic.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Payload bytes of each message.
    #[arg(long, default_value_t = 1000)]
    pub message_size: u32,
    /// Messages in each batch (SendMessages) and at most in each poll.
    #[arg(long, default_value_t = 1000)]
    pub messages_per_batch: u32,
    /// Batches each producer sends (and consumers read); ignored when --duration-secs is set,
    /// except that it sizes the data filled before consumer-only modes.
    #[arg(long, default_value_t = 1000)]
    pub batches: u64,
    /// Run for this long instead of a number of batches.
    #[arg(long)]
    pub duration_secs: Option<f64>,
    /// Seconds each actor runs its workload before measuring (producers send to a separate
    /// topic; pinned consumers re-read from the start).
    #[arg(long, default_value_t = 0.0)]
    pub warmup_secs: f64,
    /// Fixed rate in messages per second per producer; latency is then measured from each
    /// batch's intended send time, so a stall cannot hide (no coordinated omission).
    #[arg(long)]
    pub rate_msgs_per_sec: Option<f64>,
    /// Pin each actor's thread to its own core (round-robin over the available cores).
    #[arg(long)]
    pub pin: bool,
    /// Seconds of the baseline (raw loopback request/response, no broker); 0 skips it.
    #[arg(long, default_value_t = 3.0)]
    pub baseline_secs: f64,
    /// galgo's long polls: a consumer of one partition asks the server to hold an empty poll
    /// up to this many ms until messages arrive, instead of polling again (0: plain polls;
    /// servers that ignore the wait, Iggy's, get plain polls and a short pause after each
    /// empty round). Consumers of several partitions always poll plainly, so that waiting on
    /// one never delays another.
    #[arg(long, default_value_t = 100)]
    pub poll_wait_ms: u32,
    /// A consumer that receives nothing for this long gives up and reports an error.
    #[arg(long, default_value_t = 15.0)]
    pub idle_timeout_secs: f64,
    /// The server's durability mode, for the report (the protocol cannot ask the server).
    #[arg(long, default_value = "unknown")]
    pub durability: String,
    /// Prefix of the streams the bench creates (and deletes first if they exist).
    #[arg(long, default_value = "galgo-bench")]
    pub stream_prefix: String,
    /// Keep the streams afterwards.
    #[arg(long)]
    pub keep_streams: bool,
    /// Write the JSON report here.
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
    /// Write the HTML report here.
    #[arg(long)]
    #[serde(skip)]
    pub html: Option<PathBuf>,
    /// A name for this run in the reports.
    #[arg(long, default_value = "")]
    pub label: String,
}

impl Args {
    /// Streams the run uses.
    pub fn streams_count(&self) -> u32 {
        if self.streams > 0 {
            return self.streams;
        }
        if self.mode.measures_producers() {
            self.producers.max(1)
        } else {
            self.consumers.max(1)
        }
    }

    /// Checks the combinations clap cannot.
    pub fn validate(&self) -> Result<(), String> {
        let needs = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
        needs(
            self.messages_per_batch > 0,
            "--messages-per-batch must be at least 1",
        )?;
        needs(self.partitions > 0, "--partitions must be at least 1")?;
        needs(
            self.batches > 0 || self.duration_secs.is_some(),
            "--batches must be at least 1",
        )?;
        needs(
            !self.mode.measures_producers() || self.producers > 0,
            "this mode needs --producers of at least 1",
        )?;
        needs(
            !self.mode.measures_consumers() || self.consumers > 0,
            "this mode needs --consumers of at least 1",
        )?;
        needs(
            self.rate_msgs_per_sec.is_none_or(|rate| rate > 0.0),
            "--rate-msgs-per-sec must be positive",
        )?;
        needs(
            self.duration_secs.is_none_or(|secs| secs > 0.0),
            "--duration-secs must be positive",
        )
    }
}
