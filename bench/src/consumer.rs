//! A consumer: polls its stream's partitions by offset (pinned modes) or as a member of its
//! stream's consumer group, until it has every message it is due.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use galgo_client::protocol::{Consumer, Identifier, PollMessages, PollingStrategy};
use galgo_client::{Client, LongPolls, PolledMessages};

use crate::actor::{ActorResult, Role, Shared, ns_between, wall_clock_us};
use crate::args::Mode;
use crate::plan::{GROUP, TOPIC};

/// How long a consumer waits after a round of empty polls before polling again. Only paces an
/// idle consumer; it never delays a message that is there.
const EMPTY_ROUND_PAUSE_US: u64 = 100;
/// Consumer ids start here, clear of ids other tools use.
const CONSUMER_ID_BASE: u32 = 1_000;

/// Runs consumer `index` to the end and reports.
pub async fn run(shared: Arc<Shared>, index: u32) -> ActorResult {
    let mut result = ActorResult::new(Role::Consumer, index);
    if let Err(error) = consume(&shared, index, &mut result).await {
        result.error = Some(error);
    }
    result
}

/// Where a consumer is and what it is due.
struct Cursor {
    stream: usize,
    /// Next offset of each partition (pinned modes).
    offsets: Vec<u64>,
    next_partition: u32,
    received: u64,
}

async fn consume(shared: &Shared, index: u32, result: &mut ActorResult) -> Result<(), String> {
    let mut client = match shared.connect().await {
        Ok(client) => client,
        Err(error) => {
            shared.start_together();
            return Err(error);
        }
    };
    let args = &shared.args;
    let stream = shared.plan.stream_of(index);
    let mut cursor = Cursor {
        stream,
        offsets: vec![0; args.partitions as usize],
        next_partition: 0,
        received: 0,
    };
    let joined = join_group(shared, &mut client, stream).await;
    let warmed = match joined {
        Ok(()) => warm_up(shared, &mut client, index, &mut cursor).await,
        Err(error) => Err(error),
    };
    let start = shared.start_together();
    warmed?;
    let deadline = shared.deadline(start);
    let idle_timeout = Duration::from_secs_f64(shared.args.idle_timeout_secs);
    let mut last_message = Instant::now();
    while !is_done(shared, &cursor, deadline) {
        let request = next_poll(shared, index, &mut cursor);
        let sent = Instant::now();
        let polled = client
            .poll_messages(&request)
            .await
            .map_err(|error| format!("poll: {error}"))?;
        let done = Instant::now();
        if polled.header.messages_count == 0 {
            result.empty_polls += 1;
            if done - last_message > idle_timeout {
                return Err(format!(
                    "received nothing for {idle_timeout:?} with {} of the stream's messages read",
                    cursor.received
                ));
            }
            if cursor.next_partition == 0 && client.long_polls() != LongPolls::Honoured {
                compio::time::sleep(Duration::from_micros(EMPTY_ROUND_PAUSE_US)).await;
            }
            continue;
        }
        last_message = done;
        record(
            shared,
            result,
            &mut cursor,
            &polled,
            request.partition_id,
            ns_between(sent, done),
            ns_between(start, done),
        )?;
    }
    Ok(())
}

async fn join_group(shared: &Shared, client: &mut Client, stream: usize) -> Result<(), String> {
    if shared.args.mode != Mode::BalancedConsumerGroup {
        return Ok(());
    }
    client
        .join_consumer_group(
            &shared.plan.stream_id(stream),
            &Identifier::Name(TOPIC.into()),
            &Identifier::Name(GROUP.into()),
        )
        .await
        .map_err(|error| format!("join consumer group: {error}"))
}

fn is_done(shared: &Shared, cursor: &Cursor, deadline: Option<Instant>) -> bool {
    let plan = &shared.plan;
    let progress = &plan.progress[cursor.stream];
    if shared.args.mode.prefills() && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
        return true;
    }
    let producing = plan.producers_running.load(Ordering::Acquire) > 0;
    let total = plan.stream_total(cursor.stream);
    let received = match shared.args.mode {
        Mode::BalancedConsumerGroup => progress.group_consumed.load(Ordering::Acquire),
        _ => cursor.received,
    };
    !producing && received >= total
}

fn next_poll(shared: &Shared, index: u32, cursor: &mut Cursor) -> PollMessages {
    let args = &shared.args;
    let stream = shared.plan.stream_id(cursor.stream);
    let topic = Identifier::Name(TOPIC.into());
    if args.mode == Mode::BalancedConsumerGroup {
        return PollMessages {
            consumer: Consumer::Group(Identifier::Name(GROUP.into())),
            stream,
            topic,
            partition_id: None,
            strategy: PollingStrategy::Next,
            count: args.messages_per_batch,
            auto_commit: true,
            wait_ms: poll_wait_ms(args),
        };
    }
    let partition = cursor.next_partition;
    cursor.next_partition = (partition + 1) % args.partitions;
    PollMessages {
        consumer: Consumer::Single(Identifier::Numeric(CONSUMER_ID_BASE + index)),
        stream,
        topic,
        partition_id: Some(partition),
        strategy: PollingStrategy::Offset(cursor.offsets[partition as usize]),
        count: args.messages_per_batch,
        auto_commit: false,
        wait_ms: poll_wait_ms(args),
    }
}

/// The long-poll wait of every poll: only with one partition to read (see `--poll-wait-ms`).
fn poll_wait_ms(args: &crate::args::Args) -> u32 {
    if args.partitions == 1 {
        args.poll_wait_ms
    } else {
        0
    }
}

fn record(
    shared: &Shared,
    result: &mut ActorResult,
    cursor: &mut Cursor,
    polled: &PolledMessages,
    partition: Option<u32>,
    latency_ns: u64,
    since_start_ns: u64,
) -> Result<(), String> {
    let received_us = wall_clock_us();
    let end_to_end = shared.args.mode == Mode::EndToEnd;
    let second = result.series.at((since_start_ns / 1_000_000_000) as usize);
    let (mut messages, mut bytes, mut last_offset) = (0u64, 0u64, None);
    for message in polled.iter() {
        let message = message.map_err(|error| format!("poll: {error}"))?;
        messages += 1;
        bytes += message.size() as u64;
        last_offset = Some(message.offset());
        if end_to_end {
            let ns = received_us.saturating_sub(message.origin_timestamp()) * 1_000;
            result.end_to_end.record_ns(ns);
            second.latencies.record_ns(ns);
        }
    }
    if !end_to_end {
        second.latencies.record_ns(latency_ns);
    }
    second.messages += messages;
    second.bytes += bytes;
    if let (Some(partition), Some(last)) = (partition, last_offset) {
        cursor.offsets[partition as usize] = last + 1;
    }
    cursor.received += messages;
    if shared.args.mode == Mode::BalancedConsumerGroup {
        shared.plan.progress[cursor.stream]
            .group_consumed
            .fetch_add(messages, Ordering::AcqRel);
    }
    result.messages += messages;
    result.bytes += bytes;
    result.requests += 1;
    result.latencies.record_ns(latency_ns);
    result.elapsed = Duration::from_nanos(since_start_ns);
    Ok(())
}

/// Pinned consumers of filled streams re-read from the start for the warm-up time, then start
/// the measurement from offset 0 again.
async fn warm_up(
    shared: &Shared,
    client: &mut Client,
    index: u32,
    cursor: &mut Cursor,
) -> Result<(), String> {
    if shared.args.warmup_secs <= 0.0 || shared.args.mode != Mode::PinnedConsumer {
        return Ok(());
    }
    let until = Instant::now() + Duration::from_secs_f64(shared.args.warmup_secs);
    while Instant::now() < until {
        let request = next_poll(shared, index, cursor);
        let polled = client
            .poll_messages(&request)
            .await
            .map_err(|error| format!("warm-up poll: {error}"))?;
        let partition = request.partition_id.unwrap_or(0) as usize;
        match polled.iter().last() {
            Some(Ok(last)) => cursor.offsets[partition] = last.offset() + 1,
            _ => cursor.offsets[partition] = 0,
        }
    }
    cursor.offsets.iter_mut().for_each(|offset| *offset = 0);
    cursor.next_partition = 0;
    Ok(())
}
