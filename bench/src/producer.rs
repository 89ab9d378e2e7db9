//! A producer: sends the same prepared batch again and again, as fast as it can or at a fixed
//! rate, and times each send from the moment it was due.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use galgo_client::{Client, PreparedBatch};

use crate::actor::{ActorResult, Role, Shared, ns_between, wall_clock_us};
use crate::plan::{TOPIC, WARMUP_TOPIC, batch};

/// Runs producer `index` to the end and reports.
pub async fn run(shared: Arc<Shared>, index: u32) -> ActorResult {
    let mut result = ActorResult::new(Role::Producer, index);
    let outcome = produce(&shared, index, &mut result).await;
    shared.plan.producers_running.fetch_sub(1, Ordering::AcqRel);
    if let Err(error) = outcome {
        result.error = Some(error);
    }
    result
}

async fn produce(shared: &Shared, index: u32, result: &mut ActorResult) -> Result<(), String> {
    let connected = shared.connect().await;
    let mut client = match connected {
        Ok(client) => client,
        Err(error) => {
            shared.start_together();
            return Err(error);
        }
    };
    let (args, plan) = (&shared.args, &shared.plan);
    let stream = plan.stream_of(index);
    let stream_id = plan.stream_id(stream);
    let partitioning = plan.partitioning_of(args, index);
    let warm_up = warm_up(
        shared,
        &mut client,
        batch(args, &stream_id, WARMUP_TOPIC, &partitioning),
    )
    .await;
    let start = shared.start_together();
    warm_up?;
    let deadline = shared.deadline(start);
    let mut prepared = batch(args, &stream_id, TOPIC, &partitioning);
    let count = u64::from(prepared.messages_count());
    let interval = args
        .rate_msgs_per_sec
        .map(|rate| Duration::from_secs_f64(count as f64 / rate));
    let start_wall_us = wall_clock_us();
    for sent in 0u64.. {
        if deadline.is_none() && sent == args.batches {
            break;
        }
        // The time this batch is due: now when unpaced, its slot when paced, even if a stall
        // made it late, so the stall shows in its latency (no coordinated omission).
        let due = match interval {
            Some(interval) => start + interval.mul_f64(sent as f64),
            None => Instant::now(),
        };
        if deadline.is_some_and(|deadline| due >= deadline) {
            break;
        }
        if due > Instant::now() {
            compio::time::sleep_until(due).await;
        }
        let origin_us = match interval {
            Some(_) => start_wall_us + ns_between(start, due) / 1_000,
            None => wall_clock_us(),
        };
        prepared.set_origin_timestamps(origin_us);
        let (outcome, back) = client.send_prepared(prepared).await;
        prepared = back;
        outcome.map_err(|error| format!("send batch {sent}: {error}"))?;
        let done = Instant::now();
        record(
            result,
            &prepared,
            ns_between(due, done),
            ns_between(start, done),
        );
        plan.progress[stream]
            .produced
            .fetch_add(count, Ordering::AcqRel);
    }
    Ok(())
}

fn record(result: &mut ActorResult, batch: &PreparedBatch, latency_ns: u64, since_start_ns: u64) {
    let messages = u64::from(batch.messages_count());
    result.messages += messages;
    result.bytes += batch.messages_bytes();
    result.requests += 1;
    result.latencies.record_ns(latency_ns);
    result.elapsed = Duration::from_nanos(since_start_ns);
    let second = result.series.at((since_start_ns / 1_000_000_000) as usize);
    second.messages += messages;
    second.bytes += batch.messages_bytes();
    second.latencies.record_ns(latency_ns);
}

/// Sends to the warm-up topic for the warm-up time, so connections, caches and the server's
/// allocations are warm without a single warm-up message in the measured topic.
async fn warm_up(
    shared: &Shared,
    client: &mut Client,
    mut prepared: PreparedBatch,
) -> Result<(), String> {
    if shared.args.warmup_secs <= 0.0 {
        return Ok(());
    }
    let until = Instant::now() + Duration::from_secs_f64(shared.args.warmup_secs);
    while Instant::now() < until {
        let (outcome, back) = client.send_prepared(prepared).await;
        prepared = back;
        outcome.map_err(|error| format!("warm-up send: {error}"))?;
    }
    Ok(())
}
