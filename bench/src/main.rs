//! galgo-bench: the throughput and tail-latency profiler of galgo, for any server of Apache
//! Iggy's binary protocol (galgo, Apache Iggy): nothing in it assumes galgo.
//!
//! ```text
//! main ── set up streams (and fill them for consumer-only modes) ── one thread + compio
//!   │     runtime per actor (optionally pinned) ── barrier ── measure ── join
//!   │        each actor: hdrhistogram of its requests (+ end-to-end per message), per second
//!   ├── baseline: the same frames through the same client over loopback to an idle echo peer
//!   └── merge histograms (never average percentiles) → console, JSON, self-contained HTML
//! ```
//! Latency is a request's round trip, measured from the moment the request was due: at a fixed
//! rate that is its slot in the schedule, so a stalled server cannot hide its stall by delaying
//! the requests that would have seen it (coordinated omission).

mod actor;
mod args;
mod baseline;
mod console;
mod consumer;
mod html;
mod latency;
mod machine;
mod plan;
mod producer;
mod report;
mod series;

use std::process::ExitCode;
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use galgo_client::{Client, ConnectionString};

use crate::actor::{ActorResult, Shared, core_for, spawn};
use crate::args::Args;
use crate::plan::Plan;
use crate::report::{Baselines, GroupFigures, Report, ServerInfo};

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(error) = args.validate() {
        eprintln!("galgo-bench: {error}");
        return ExitCode::from(2);
    }
    match run(args) {
        Ok(report) if report.errors.is_empty() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("galgo-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<Report, String> {
    let mut connection =
        ConnectionString::parse(&args.server).map_err(|error| error.to_string())?;
    connection.protocol = args.protocol.unwrap_or(connection.protocol);
    let plan = Plan::new(&args);
    let started_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let runtime = compio::runtime::Runtime::new().map_err(|error| error.to_string())?;
    let mut admin = runtime
        .block_on(Client::connect(&connection))
        .map_err(|error| format!("connect to {}: {error}", connection.server_address))?;
    let version = runtime
        .block_on(admin.get_stats())
        .map(|stats| stats.iggy_server_version)
        .map_err(|error| format!("get stats: {error}"))?;
    runtime
        .block_on(async {
            plan::set_up(&mut admin, &args, &plan).await?;
            if args.mode.prefills() {
                plan::prefill(&mut admin, &args, &plan).await?;
            }
            Ok::<_, galgo_client::ClientError>(())
        })
        .map_err(|error| format!("set up: {error}"))?;

    eprintln!(
        "galgo-bench: measuring {:?} against {} (protocol {})",
        args.mode, connection.server_address, connection.protocol
    );
    let results = run_actors(&args, &connection, &plan);
    if !args.keep_streams {
        runtime
            .block_on(plan::tear_down(&mut admin, &plan))
            .map_err(|error| format!("clean up: {error}"))?;
    }
    drop(admin);

    let mut report = Report {
        tool: "galgo-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        label: args.label.clone(),
        started_at_unix_ms,
        parameters: args.clone(),
        machine: machine::Machine::describe(),
        server: ServerInfo {
            address: connection.server_address.clone(),
            transport: connection.transport.to_string(),
            protocol: connection.protocol.to_string(),
            version,
            durability: args.durability.clone(),
        },
        producers: None,
        consumers: None,
        end_to_end: None,
        baseline: Baselines::default(),
        ratios: Vec::new(),
        actors: Vec::new(),
        errors: Vec::new(),
    };
    report.add_results(&results);
    report.baseline = run_baselines(&args);
    report.compute_ratios();
    write_outputs(&args, &report)?;
    print!("{}", console::summary(&report));
    Ok(report)
}

fn run_actors(args: &Args, connection: &ConnectionString, plan: &Arc<Plan>) -> Vec<ActorResult> {
    let producers = if args.mode.measures_producers() {
        args.producers
    } else {
        0
    };
    let consumers = if args.mode.measures_consumers() {
        args.consumers
    } else {
        0
    };
    let shared = Arc::new(Shared {
        args: args.clone(),
        connection: connection.clone(),
        plan: plan.clone(),
        barrier: Barrier::new((producers + consumers) as usize),
        start: OnceLock::new(),
    });
    let mut handles = Vec::new();
    for index in 0..producers {
        let shared = shared.clone();
        let core = core_for(args.pin, handles.len());
        handles.push(spawn(format!("producer-{index}"), core, move || {
            producer::run(shared, index)
        }));
    }
    for index in 0..consumers {
        let shared = shared.clone();
        let core = core_for(args.pin, handles.len());
        handles.push(spawn(format!("consumer-{index}"), core, move || {
            consumer::run(shared, index)
        }));
    }
    handles
        .into_iter()
        .map(|handle| handle.join().expect("an actor panicked"))
        .collect()
}

fn run_baselines(args: &Args) -> Baselines {
    if args.baseline_secs <= 0.0 {
        return Baselines::default();
    }
    let measure = |shape, actors| {
        let results = baseline::run(args, shape, actors);
        GroupFigures::merge(&results)
    };
    Baselines {
        send: args
            .mode
            .measures_producers()
            .then(|| measure(baseline::Shape::Send, args.producers)),
        poll: args
            .mode
            .measures_consumers()
            .then(|| measure(baseline::Shape::Poll, args.consumers)),
    }
}

fn write_outputs(args: &Args, report: &Report) -> Result<(), String> {
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(report).map_err(|error| error.to_string())?;
        std::fs::write(path, json).map_err(|error| format!("write {}: {error}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(report))
            .map_err(|error| format!("write {}: {error}", path.display()))?;
    }
    Ok(())
}
