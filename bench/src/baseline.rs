//! The machine's baseline, measured in the same run: request/response over loopback TCP with
//! the workload's sizes, through the same client I/O path (galgo-client's `Client` and
//! `Transport`), against an echo peer that does no work at all. The broker's figures are
//! reported as ratios to it.
//!
//! A producer-shaped baseline sends the very batch frame the producers send and gets an empty
//! OK back; a consumer-shaped one sends a poll frame and gets a response as large as a full
//! poll. Each baseline actor has its own peer thread, the most favourable server possible.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use galgo_client::protocol::command::messages::POLLED_MESSAGES_HEADER_BYTES;
use galgo_client::protocol::message::MESSAGE_HEADER_BYTES;
use galgo_client::protocol::{
    CommandCode, Consumer, Identifier, Partitioning, PollMessages, PollingStrategy,
};
use galgo_client::{Client, Transport};

use crate::actor::{ActorResult, Role, core_for, ns_between, spawn};
use crate::args::Args;
use crate::plan::batch;

/// Which way the bulk of the bytes flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Big requests, empty responses (producers).
    Send,
    /// Small requests, big responses (consumers).
    Poll,
}

/// Runs `actors` baseline actors of `shape` for `args.baseline_secs`.
pub fn run(args: &Args, shape: Shape, actors: u32) -> Vec<ActorResult> {
    let response_bytes = match shape {
        Shape::Send => 0,
        Shape::Poll => {
            let message = MESSAGE_HEADER_BYTES + args.message_size as usize;
            POLLED_MESSAGES_HEADER_BYTES + message * args.messages_per_batch as usize
        }
    };
    let barrier = Arc::new(Barrier::new(actors as usize));
    let handles: Vec<_> = (0..actors)
        .map(|index| {
            let addr = start_peer(response_bytes);
            let (args, barrier) = (args.clone(), barrier.clone());
            let core = core_for(args.pin, index as usize);
            spawn(format!("baseline-{index}"), core, move || async move {
                measure(args, shape, index, addr, barrier).await
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|handle| handle.join().expect("baseline actor panicked"))
        .collect()
}

async fn measure(
    args: Args,
    shape: Shape,
    index: u32,
    addr: SocketAddr,
    barrier: Arc<Barrier>,
) -> ActorResult {
    let role = match shape {
        Shape::Send => Role::Producer,
        Shape::Poll => Role::Consumer,
    };
    let mut result = ActorResult::new(role, index);
    let transport = Transport::connect_tcp(&addr.to_string(), true).await;
    let mut client = match transport {
        Ok(transport) => Client::new(transport),
        Err(error) => {
            barrier.wait();
            result.error = Some(format!("baseline connect: {error}"));
            return result;
        }
    };
    let stream = Identifier::Name("baseline".into());
    let mut prepared = batch(&args, &stream, "baseline", &Partitioning::PartitionId(0));
    let poll = PollMessages {
        consumer: Consumer::Single(Identifier::Numeric(index)),
        stream: stream.clone(),
        topic: stream,
        partition_id: Some(0),
        strategy: PollingStrategy::Offset(0),
        count: args.messages_per_batch,
        auto_commit: false,
        wait_ms: 0,
    };
    let messages = u64::from(prepared.messages_count());
    barrier.wait();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.baseline_secs);
    while Instant::now() < until {
        let sent = Instant::now();
        let outcome = match shape {
            Shape::Send => {
                let (outcome, back) = client.send_prepared(prepared).await;
                prepared = back;
                outcome
            }
            Shape::Poll => client
                .request(CommandCode::PollMessages, |out| poll.encode(out))
                .await
                .map(drop),
        };
        if let Err(error) = outcome {
            result.error = Some(format!("baseline request: {error}"));
            break;
        }
        let done = Instant::now();
        result.messages += messages;
        result.bytes += prepared.messages_bytes();
        result.requests += 1;
        result.latencies.record_ns(ns_between(sent, done));
        result.elapsed = done - start;
    }
    result
}

/// Starts an echo peer on 127.0.0.1:0 for one connection; it answers every request frame with
/// an OK response of `response_bytes` zero bytes, and ends when the client leaves.
fn start_peer(response_bytes: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    thread::Builder::new()
        .name("baseline-peer".into())
        .spawn(move || {
            let runtime = compio::runtime::Runtime::new().expect("a compio runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("compio listener");
                if let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    let _ = echo(stream, response_bytes).await;
                }
            });
        })
        .expect("spawn the baseline peer");
    addr
}

async fn echo(mut stream: TcpStream, response_bytes: usize) -> std::io::Result<()> {
    let mut response = BytesMut::with_capacity(8 + response_bytes);
    response.put_u32_le(0);
    response.put_u32_le(response_bytes as u32);
    response.resize(8 + response_bytes, 0);
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    loop {
        if !fill(&mut stream, &mut buffer, 8).await? {
            return Ok(());
        }
        let length = u32::from_le_bytes(buffer[..4].try_into().expect("4 bytes")) as usize;
        buffer.advance(8);
        let payload = length.saturating_sub(4);
        if !fill(&mut stream, &mut buffer, payload).await? {
            return Ok(());
        }
        buffer.advance(payload);
        let BufResult(written, back) = stream.write_all(response).await;
        response = back;
        written?;
    }
}

/// Reads until `buffer` holds `wanted` bytes; false when the peer closed first.
async fn fill(
    stream: &mut TcpStream,
    buffer: &mut BytesMut,
    wanted: usize,
) -> std::io::Result<bool> {
    if buffer.len() < wanted {
        buffer.reserve(wanted.max(64 * 1024));
    }
    while buffer.len() < wanted {
        let BufResult(read, back) = stream.append(std::mem::take(buffer)).await;
        *buffer = back;
        if read? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}
