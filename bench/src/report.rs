//! The report of a run: parameters, machine, server, every figure, ratios to the baseline.
//! Serialised as the JSON report and drawn by the console summary and the HTML report.

use serde::Serialize;

use crate::actor::{ActorResult, Role};
use crate::args::Args;
use crate::latency::{Latencies, LatencySummary};
use crate::machine::Machine;
use crate::series::{SecondPoint, Series};

/// The server as the run saw it.
#[derive(Clone, Debug, Serialize)]
pub struct ServerInfo {
    /// `host:port`.
    pub address: String,
    /// The transport (`tcp`, …).
    pub transport: String,
    /// The client generation spoken (`0.8` or `0.9`).
    pub protocol: String,
    /// The version GetStats reported.
    pub version: String,
    /// The durability mode given with `--durability`.
    pub durability: String,
}

/// The figures of a group of actors (all producers, all consumers, a baseline).
#[derive(Clone, Debug, Serialize)]
pub struct GroupFigures {
    /// Actors in the group.
    pub actors: usize,
    /// Messages sent or received by all of them.
    pub messages: u64,
    /// Message bytes.
    pub bytes: u64,
    /// Requests that carried messages.
    pub requests: u64,
    /// Polls that returned nothing.
    pub empty_polls: u64,
    /// From the common start to the last actor's last message.
    pub elapsed_secs: f64,
    /// `bytes / elapsed`, in MB/s (10^6 bytes).
    pub megabytes_per_sec: f64,
    /// `messages / elapsed`.
    pub messages_per_sec: f64,
    /// Request latency, merged over the actors.
    pub latency: Option<LatencySummary>,
    /// The merged percentile curve `(percentile, µs)`.
    pub latency_curve: Vec<(f64, f64)>,
    /// Per second, merged over the actors.
    pub series: Vec<SecondPoint>,
}

impl GroupFigures {
    /// Merges the results of one group.
    pub fn merge<'a>(results: impl IntoIterator<Item = &'a ActorResult>) -> GroupFigures {
        let (mut latencies, mut series) = (Latencies::new(), Series::default());
        let mut figures = GroupFigures {
            actors: 0,
            messages: 0,
            bytes: 0,
            requests: 0,
            empty_polls: 0,
            elapsed_secs: 0.0,
            megabytes_per_sec: 0.0,
            messages_per_sec: 0.0,
            latency: None,
            latency_curve: Vec::new(),
            series: Vec::new(),
        };
        for result in results {
            figures.actors += 1;
            figures.messages += result.messages;
            figures.bytes += result.bytes;
            figures.requests += result.requests;
            figures.empty_polls += result.empty_polls;
            figures.elapsed_secs = figures.elapsed_secs.max(result.elapsed.as_secs_f64());
            latencies.merge(&result.latencies);
            series.merge(&result.series);
        }
        if figures.elapsed_secs > 0.0 {
            figures.megabytes_per_sec = figures.bytes as f64 / 1e6 / figures.elapsed_secs;
            figures.messages_per_sec = figures.messages as f64 / figures.elapsed_secs;
        }
        figures.latency = latencies.summary();
        figures.latency_curve = latencies.curve();
        figures.series = series.points();
        figures
    }
}

/// End-to-end latency: origin timestamp to receipt, one sample per message.
#[derive(Clone, Debug, Serialize)]
pub struct EndToEnd {
    /// Percentiles in µs.
    pub latency: LatencySummary,
    /// The percentile curve.
    pub latency_curve: Vec<(f64, f64)>,
}

/// One actor's own figures.
#[derive(Clone, Debug, Serialize)]
pub struct ActorFigures {
    /// Producer or consumer.
    pub role: Role,
    /// Its number.
    pub index: u32,
    /// Messages.
    pub messages: u64,
    /// MB/s of this actor alone.
    pub megabytes_per_sec: f64,
    /// Its request latency.
    pub latency: Option<LatencySummary>,
    /// Why it stopped early.
    pub error: Option<String>,
}

/// A broker figure over the same figure of the baseline.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The broker's value.
    pub broker: f64,
    /// The baseline's value.
    pub baseline: f64,
    /// `broker / baseline`.
    pub ratio: f64,
}

/// The baselines measured in the run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Baselines {
    /// Producer-shaped: the batch frame out, an empty OK back.
    pub send: Option<GroupFigures>,
    /// Consumer-shaped: a poll frame out, a full poll's bytes back.
    pub poll: Option<GroupFigures>,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `galgo-bench`.
    pub tool: String,
    /// The bench's version.
    pub tool_version: String,
    /// `--label`.
    pub label: String,
    /// When the run started, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Every parameter.
    pub parameters: Args,
    /// The machine.
    pub machine: Machine,
    /// The server.
    pub server: ServerInfo,
    /// All producers, merged.
    pub producers: Option<GroupFigures>,
    /// All consumers, merged.
    pub consumers: Option<GroupFigures>,
    /// End-to-end latency (end-to-end mode).
    pub end_to_end: Option<EndToEnd>,
    /// The baselines.
    pub baseline: Baselines,
    /// Broker over baseline.
    pub ratios: Vec<Ratio>,
    /// Each actor.
    pub actors: Vec<ActorFigures>,
    /// Every actor error; a report with errors is not a valid measurement.
    pub errors: Vec<String>,
}

impl Report {
    /// Fills in the figures from the actors' results.
    pub fn add_results(&mut self, results: &[ActorResult]) {
        let of = |role| results.iter().filter(move |result| result.role == role);
        if self.parameters.mode.measures_producers() {
            self.producers = Some(GroupFigures::merge(of(Role::Producer)));
        }
        if self.parameters.mode.measures_consumers() {
            self.consumers = Some(GroupFigures::merge(of(Role::Consumer)));
        }
        let mut end_to_end = Latencies::new();
        for result in of(Role::Consumer) {
            end_to_end.merge(&result.end_to_end);
        }
        self.end_to_end = end_to_end.summary().map(|latency| EndToEnd {
            latency,
            latency_curve: end_to_end.curve(),
        });
        for result in results {
            let elapsed = result.elapsed.as_secs_f64();
            self.actors.push(ActorFigures {
                role: result.role,
                index: result.index,
                messages: result.messages,
                megabytes_per_sec: if elapsed > 0.0 {
                    result.bytes as f64 / 1e6 / elapsed
                } else {
                    0.0
                },
                latency: result.latencies.summary(),
                error: result.error.clone(),
            });
            if let Some(error) = &result.error {
                self.errors
                    .push(format!("{:?} {}: {error}", result.role, result.index));
            }
        }
    }

    /// Computes the ratios of the broker's figures to the baseline's.
    pub fn compute_ratios(&mut self) {
        let pairs = [
            ("producers", &self.producers, &self.baseline.send),
            ("consumers", &self.consumers, &self.baseline.poll),
        ];
        let mut ratios = Vec::new();
        for (group, broker, baseline) in pairs {
            let (Some(broker), Some(baseline)) = (broker, baseline) else {
                continue;
            };
            let mut push = |name: String, broker: f64, baseline: f64| {
                if baseline > 0.0 {
                    ratios.push(Ratio {
                        name,
                        broker,
                        baseline,
                        ratio: broker / baseline,
                    });
                }
            };
            push(
                format!("{group} MB/s"),
                broker.megabytes_per_sec,
                baseline.megabytes_per_sec,
            );
            for percentile in ["p50", "p99", "p99.9"] {
                let at = |figures: &GroupFigures| {
                    figures
                        .latency
                        .as_ref()
                        .and_then(|l| l.percentile_us(percentile))
                };
                if let (Some(b), Some(r)) = (at(broker), at(baseline)) {
                    push(format!("{group} latency {percentile}"), b, r);
                }
            }
        }
        self.ratios = ratios;
    }
}
