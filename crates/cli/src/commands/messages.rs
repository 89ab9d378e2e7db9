//! `galgo message send` and `galgo message poll`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand, ValueEnum};
use galgo_client::PolledMessage;
use galgo_client::messages::PolledMessages;
use galgo_client::{Client, LongPolls};
use galgo_protocol::command::offsets::OffsetTarget;
use galgo_protocol::message::encode_message;
use galgo_protocol::{Consumer, Identifier, Partitioning, PollMessages, PollingStrategy};
use serde_json::{Value, json};

use crate::args::{ConsumerArgs, duration, identifier, show, timestamp_us};
use crate::error::{CliError, CliResult};
use crate::headers::{decode_headers, encode_headers, headers_json, hex_encode, parse_header};
use crate::output::{Human, OutputFormat, Report, human_bytes, human_time, now_us};

/// Bytes of messages sent in one request at most, so that a large file or a long stdin stream
/// goes in frames any server of the protocol accepts.
const SEND_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// The longest messages key the protocol carries.
const MESSAGES_KEY_BYTES_MAX: usize = 255;

/// `galgo message …`.
#[derive(Subcommand, Debug)]
pub enum MessageCommand {
    /// Sends messages: the arguments, else --file, else one message per line of stdin.
    #[command(
        after_help = "Examples:\n  galgo message send orders created 'hello' 'world'\n  \
                            galgo message send orders created --key user-42 -H source=web \
                            -H attempt:u32=1 'payload'\n  \
                            galgo message send orders created --file order.json --partition 2\n  \
                            tail -f app.log | galgo message send logs app --batch 1"
    )]
    Send(SendArgs),
    /// Polls messages from every partition, from one partition, or as a consumer group.
    #[command(
        after_help = "Examples:\n  galgo message poll orders created --first --count 100\n  \
                            galgo message poll orders created --partition 1 --offset 42\n  \
                            galgo message poll orders created --last --count 5 -o json\n  \
                            galgo message poll orders created --timestamp 2024-05-01T12:00:00Z\n  \
                            galgo message poll orders created --next --consumer 7 --auto-commit\n  \
                            galgo message poll orders created --follow\n\n\
                            Without --partition (and without --group) every partition of the \
                            topic is polled with the same start and count, and the messages are \
                            merged by timestamp, each labelled with its partition; --count then \
                            keeps the earliest N of the merged list (the latest N with --last), \
                            and --auto-commit stores, per partition, the last message shown. \
                            Without a start flag the poll starts at each partition's first \
                            message. --follow keeps polling for new messages until interrupted \
                            (one line, or one JSON object, per message; across partitions, \
                            merged by timestamp within each round of polls)."
    )]
    Poll(PollArgs),
}

/// `galgo message send`.
#[derive(Args, Debug)]
pub struct SendArgs {
    /// The stream (id or name).
    #[arg(value_parser = identifier)]
    stream: Identifier,
    /// The topic (id or name).
    #[arg(value_parser = identifier)]
    topic: Identifier,
    /// Payloads, one message each.
    messages: Vec<String>,
    /// Sends the whole file as one message.
    #[arg(long, conflicts_with = "messages")]
    file: Option<PathBuf>,
    /// A header on every message: key=value (a string) or key:kind=value with kind raw (hex),
    /// string, bool, i8…i128, u8…u128, f32 or f64; repeatable.
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    headers: Vec<(String, u8, Vec<u8>)>,
    /// Into this partition [default: balanced across partitions].
    #[arg(long, conflicts_with = "key")]
    partition: Option<u32>,
    /// Into the partition this key hashes to (1 to 255 bytes), so equal keys stay in order.
    #[arg(long)]
    key: Option<String>,
    /// Messages per request at most.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
}

/// Where payloads come from.
enum Source {
    Arguments(std::vec::IntoIter<String>),
    File(Option<Vec<u8>>),
    Stdin(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Source {
    fn next(&mut self) -> CliResult<Option<Vec<u8>>> {
        match self {
            Source::Arguments(arguments) => Ok(arguments.next().map(String::into_bytes)),
            Source::File(contents) => Ok(contents.take()),
            Source::Stdin(lines) => match lines.next() {
                None => Ok(None),
                Some(Ok(line)) => Ok(Some(line.into_bytes())),
                Some(Err(error)) => Err(CliError::local(format!("read stdin: {error}"))),
            },
        }
    }
}

impl SendArgs {
    fn partitioning(&self) -> CliResult<Partitioning> {
        match (&self.partition, &self.key) {
            (Some(partition), _) => Ok(Partitioning::PartitionId(*partition)),
            (None, Some(key)) if (1..=MESSAGES_KEY_BYTES_MAX).contains(&key.len()) => Ok(
                Partitioning::MessagesKey(Bytes::from(key.clone().into_bytes())),
            ),
            (None, Some(_)) => Err(CliError::usage("--key must be 1 to 255 bytes")),
            (None, None) => Ok(Partitioning::Balanced),
        }
    }

    fn source(&mut self) -> CliResult<Source> {
        if let Some(path) = &self.file {
            let contents = std::fs::read(path)
                .map_err(|error| CliError::local(format!("read {}: {error}", path.display())))?;
            return Ok(Source::File(Some(contents)));
        }
        if self.messages.is_empty() {
            return Ok(Source::Stdin(std::io::stdin().lock().lines()));
        }
        Ok(Source::Arguments(
            std::mem::take(&mut self.messages).into_iter(),
        ))
    }
}

async fn send(client: &mut Client, mut args: SendArgs) -> CliResult<Report> {
    let partitioning = args.partitioning()?;
    let headers = encode_headers(&args.headers).map_err(CliError::Usage)?;
    let mut source = args.source()?;
    let (mut sent, mut sent_bytes) = (0u64, 0u64);
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0;
    loop {
        let payload = source.next()?;
        let full = batch.len() >= args.batch as usize || batch_bytes >= SEND_BATCH_BYTES_MAX;
        if !batch.is_empty() && (payload.is_none() || full) {
            let views: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            client
                .send_messages(&args.stream, &args.topic, &partitioning, &views)
                .await?;
            sent += batch.len() as u64;
            sent_bytes += batch_bytes as u64;
            batch.clear();
            batch_bytes = 0;
        }
        let Some(payload) = payload else { break };
        let mut message = Vec::with_capacity(64 + payload.len() + headers.len());
        encode_message(0, now_us(), &payload, &headers, &mut message);
        batch_bytes += message.len();
        batch.push(message);
    }
    if sent == 0 {
        return Err(CliError::usage("nothing to send: no message given"));
    }
    let text = format!(
        "sent {sent} message(s) ({}) to topic {} of stream {}",
        human_bytes(sent_bytes),
        show(&args.topic),
        show(&args.stream)
    );
    Ok(Report::text(
        text,
        json!({ "messages_count": sent, "bytes": sent_bytes }),
    ))
}

/// How payloads are shown.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PayloadFormat {
    /// As UTF-8 text (invalid bytes replaced).
    Text,
    /// As lower-case hex.
    Hex,
}

/// `galgo message poll`.
#[derive(Args, Debug)]
pub struct PollArgs {
    /// The stream (id or name).
    #[arg(value_parser = identifier)]
    stream: Identifier,
    /// The topic (id or name).
    #[arg(value_parser = identifier)]
    topic: Identifier,
    /// Only this partition [default: every partition, merged by timestamp, for a single
    /// consumer; the group's own for a group].
    #[arg(long)]
    partition: Option<u32>,
    /// Start at this offset.
    #[arg(long, group = "start")]
    offset: Option<u64>,
    /// Start at the first message stored at or after this time (RFC 3339 or µs since epoch).
    #[arg(long, group = "start", value_parser = timestamp_us)]
    timestamp: Option<u64>,
    /// Start at the partition's first message (the default).
    #[arg(long, group = "start")]
    first: bool,
    /// The last --count messages.
    #[arg(long, group = "start")]
    last: bool,
    /// After the consumer's stored offset.
    #[arg(long, group = "start")]
    next: bool,
    /// Messages at most: per poll of a partition, and of the merged list when polling every
    /// partition without --follow.
    #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    #[command(flatten)]
    consumer: ConsumerArgs,
    /// Store the offset of the last message polled as the consumer's offset.
    #[arg(long)]
    auto_commit: bool,
    /// Keep polling and print new messages as they arrive, until interrupted. Polls of one
    /// partition (or as a group) wait on the server for new messages (galgo's long polls);
    /// every partition at once, or a server that does not wait, is polled every --interval.
    #[arg(long, short = 'f')]
    follow: bool,
    /// How long --follow waits after an empty poll the server did not hold.
    #[arg(long, default_value = "200ms", value_parser = duration)]
    interval: Duration,
    /// How long the server holds a --follow poll that finds nothing (galgo's long polls).
    #[arg(long, default_value = "10s", value_parser = duration)]
    wait: Duration,
    /// How payloads are shown.
    #[arg(long, value_enum, default_value = "text")]
    payload: PayloadFormat,
}

impl PollArgs {
    fn request(&self) -> PollMessages {
        let strategy = match (self.offset, self.timestamp) {
            (Some(offset), _) => PollingStrategy::Offset(offset),
            (_, Some(timestamp)) => PollingStrategy::Timestamp(timestamp),
            _ if self.last => PollingStrategy::Last,
            _ if self.next => PollingStrategy::Next,
            _ => PollingStrategy::First,
        };
        let consumer = self.consumer.consumer();
        let partition_id = match consumer {
            Consumer::Single(_) => Some(self.partition.unwrap_or(0)),
            Consumer::Group(_) => self.partition,
        };
        PollMessages {
            consumer,
            stream: self.stream.clone(),
            topic: self.topic.clone(),
            partition_id,
            strategy,
            count: self.count,
            auto_commit: self.auto_commit,
            wait_ms: 0,
        }
    }
}

fn payload_text(payload: &[u8], format: PayloadFormat) -> String {
    match format {
        PayloadFormat::Text => String::from_utf8_lossy(payload).into_owned(),
        PayloadFormat::Hex => hex_encode(payload),
    }
}

fn headers_text(bytes: &[u8]) -> String {
    match decode_headers(bytes) {
        Some(headers) => headers
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        None => format!("raw:{}", hex_encode(bytes)),
    }
}

fn message_json(partition_id: u32, m: &PolledMessage<'_>, format: PayloadFormat) -> Value {
    json!({
        "partition_id": partition_id,
        "offset": m.offset(),
        "id": format!("{:032x}", m.id()),
        "timestamp_us": m.timestamp(),
        "origin_timestamp_us": m.origin_timestamp(),
        "checksum": m.checksum(),
        "size_bytes": m.size(),
        "headers": headers_json(m.user_headers()),
        "payload": payload_text(m.payload(), format),
    })
}

/// A table row; its first cell is the partition when `partition_id` is given.
fn message_row(
    partition_id: Option<u32>,
    m: &PolledMessage<'_>,
    format: PayloadFormat,
) -> Vec<String> {
    let partition = partition_id.map(|id| id.to_string());
    partition
        .into_iter()
        .chain([
            m.offset().to_string(),
            human_time(m.timestamp()),
            format!("{:032x}", m.id()),
            human_bytes(m.size() as u64),
            headers_text(m.user_headers()),
            payload_text(m.payload(), format),
        ])
        .collect()
}

/// The columns of a poll's table, after the partition's when every partition is polled.
const MESSAGE_COLUMNS: [&str; 6] = ["offset", "timestamp", "id", "size", "headers", "payload"];

async fn poll(client: &mut Client, args: PollArgs, format: OutputFormat) -> CliResult<Report> {
    let request = args.request();
    match &request.consumer {
        Consumer::Group(group) => {
            // Only members poll as a group; the membership ends with this connection.
            client
                .join_consumer_group(&request.stream, &request.topic, group)
                .await?;
        }
        // A single consumer's offsets are per partition, so each partition is polled as it
        // would be alone, --next included.
        Consumer::Single(_) if args.partition.is_none() => {
            let partitions = topic_partitions(client, &args.stream, &args.topic).await?;
            if args.follow {
                return follow_all(client, request, &partitions, &args, format).await;
            }
            return poll_all(client, request, &partitions, &args).await;
        }
        Consumer::Single(_) => {}
    }
    if args.follow {
        return follow(client, request, &args, format).await;
    }
    let polled = client.poll_messages(&request).await?;
    let partition_id = polled.header.partition_id;
    let mut rows = Vec::new();
    let mut messages = Vec::new();
    for message in polled.iter() {
        let message = message?;
        rows.push(message_row(None, &message, args.payload));
        messages.push(message_json(partition_id, &message, args.payload));
    }
    let json = json!({
        "partition_id": partition_id,
        "current_offset": polled.header.current_offset,
        "messages": messages,
    });
    Ok(Report {
        human: Human::Table {
            header: MESSAGE_COLUMNS.to_vec(),
            rows,
        },
        json,
    })
}

/// The ids of the topic's partitions.
async fn topic_partitions(
    client: &mut Client,
    stream: &Identifier,
    topic: &Identifier,
) -> CliResult<Vec<u32>> {
    match client.get_topic(stream, topic).await? {
        Some(details) => Ok(details.partitions.iter().map(|p| p.id).collect()),
        None => Err(CliError::NotFound(format!(
            "topic {} of stream {}",
            show(topic),
            show(stream)
        ))),
    }
}

/// Polls each of `partitions` as `request` says, one request per partition.
async fn poll_each(
    client: &mut Client,
    request: &PollMessages,
    partitions: &[(u32, PollingStrategy)],
) -> CliResult<Vec<PolledMessages>> {
    let mut responses = Vec::with_capacity(partitions.len());
    for &(partition_id, strategy) in partitions {
        let one = PollMessages {
            partition_id: Some(partition_id),
            strategy,
            ..request.clone()
        };
        responses.push(client.poll_messages(&one).await?);
    }
    Ok(responses)
}

/// The messages of every response, ordered by timestamp, then partition, then offset.
fn merged(responses: &[PolledMessages]) -> CliResult<Vec<(u32, PolledMessage<'_>)>> {
    let mut messages = Vec::new();
    for polled in responses {
        for message in polled.iter() {
            messages.push((polled.header.partition_id, message?));
        }
    }
    messages.sort_by_key(|(partition_id, m)| (m.timestamp(), *partition_id, m.offset()));
    Ok(messages)
}

/// Polls every partition, merges the messages by timestamp and keeps `--count` of them (the
/// latest with --last, else the earliest).
async fn poll_all(
    client: &mut Client,
    request: PollMessages,
    partitions: &[u32],
    args: &PollArgs,
) -> CliResult<Report> {
    // Committing is done here, after the cut, so that no message the user did not see counts
    // as consumed.
    let without_commit = PollMessages {
        auto_commit: false,
        ..request.clone()
    };
    let starts: Vec<_> = partitions.iter().map(|&p| (p, request.strategy)).collect();
    let responses = poll_each(client, &without_commit, &starts).await?;
    let mut messages = merged(&responses)?;
    let count = args.count as usize;
    if messages.len() > count {
        if args.last {
            messages.drain(..messages.len() - count);
        } else {
            messages.truncate(count);
        }
    }
    if request.auto_commit {
        commit_shown(client, &request, &messages).await?;
    }
    let rows = messages
        .iter()
        .map(|(partition_id, m)| message_row(Some(*partition_id), m, args.payload))
        .collect();
    let json = json!({
        "partitions": responses.iter().map(|polled| json!({
            "partition_id": polled.header.partition_id,
            "current_offset": polled.header.current_offset,
        })).collect::<Vec<_>>(),
        "messages": messages
            .iter()
            .map(|(partition_id, m)| message_json(*partition_id, m, args.payload))
            .collect::<Vec<_>>(),
    });
    let mut header = vec!["partition"];
    header.extend(MESSAGE_COLUMNS);
    Ok(Report {
        human: Human::Table { header, rows },
        json,
    })
}

/// Stores, for each partition among `shown`, the offset of its last message shown as the
/// consumer's offset.
async fn commit_shown(
    client: &mut Client,
    request: &PollMessages,
    shown: &[(u32, PolledMessage<'_>)],
) -> CliResult<()> {
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for (partition_id, m) in shown {
        let offset = last.entry(*partition_id).or_default();
        *offset = (*offset).max(m.offset());
    }
    for (partition_id, offset) in last {
        let target = OffsetTarget {
            consumer: request.consumer.clone(),
            stream: request.stream.clone(),
            topic: request.topic.clone(),
            partition_id: Some(partition_id),
        };
        client.store_consumer_offset(&target, offset).await?;
    }
    Ok(())
}

/// Polls forever, printing each message as it comes; returns only on an error.
async fn follow(
    client: &mut Client,
    mut request: PollMessages,
    args: &PollArgs,
    format: OutputFormat,
) -> CliResult<Report> {
    request.wait_ms = u32::try_from(args.wait.as_millis()).unwrap_or(u32::MAX);
    loop {
        let polled = client.poll_messages(&request).await?;
        let partition_id = polled.header.partition_id;
        let mut last_offset = None;
        for message in polled.iter() {
            let message = message?;
            print_followed(partition_id, &message, args.payload, format)
                .map_err(|error| CliError::local(format!("write stdout: {error}")))?;
            last_offset = Some(message.offset());
        }
        match (&request.consumer, last_offset) {
            // A group's partition changes from poll to poll; its stored offset says where to
            // go on, so following as a group commits what it has shown.
            (Consumer::Group(_), _) => {
                request.strategy = PollingStrategy::Next;
                request.auto_commit = true;
            }
            (Consumer::Single(_), Some(offset)) => {
                request.strategy = PollingStrategy::Offset(offset + 1);
            }
            (Consumer::Single(_), None) => {}
        }
        if last_offset.is_none() && client.long_polls() != LongPolls::Honoured {
            compio::time::sleep(args.interval).await;
        }
    }
}

/// Follows every partition: each round polls each partition from where it stopped and prints
/// the round's messages merged by timestamp; returns only on an error.
async fn follow_all(
    client: &mut Client,
    request: PollMessages,
    partitions: &[u32],
    args: &PollArgs,
    format: OutputFormat,
) -> CliResult<Report> {
    let mut next: Vec<_> = partitions.iter().map(|&p| (p, request.strategy)).collect();
    // With one partition the server can hold the poll; with more, waiting on one would hold
    // back the others, so they are polled every --interval.
    let mut request = request;
    if let [_] = partitions {
        request.wait_ms = u32::try_from(args.wait.as_millis()).unwrap_or(u32::MAX);
    }
    loop {
        let responses = poll_each(client, &request, &next).await?;
        let messages = merged(&responses)?;
        for (partition_id, message) in &messages {
            print_followed(*partition_id, message, args.payload, format)
                .map_err(|error| CliError::local(format!("write stdout: {error}")))?;
        }
        for ((_, strategy), polled) in next.iter_mut().zip(&responses) {
            if let Some(last) = polled.iter().last() {
                *strategy = PollingStrategy::Offset(last?.offset() + 1);
            }
        }
        if messages.is_empty()
            && (partitions.len() > 1 || client.long_polls() != LongPolls::Honoured)
        {
            compio::time::sleep(args.interval).await;
        }
    }
}

fn print_followed(
    partition_id: u32,
    message: &PolledMessage<'_>,
    payload: PayloadFormat,
    format: OutputFormat,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => writeln!(out, "{}", message_json(partition_id, message, payload)),
        OutputFormat::Table => {
            let headers = headers_text(message.user_headers());
            let headers = if headers.is_empty() {
                String::new()
            } else {
                format!("  [{headers}]")
            };
            writeln!(
                out,
                "{partition_id}:{}  {}{headers}  {}",
                message.offset(),
                human_time(message.timestamp()),
                payload_text(message.payload(), payload)
            )
        }
    }
}

/// Runs a `galgo message` subcommand.
pub async fn run(
    client: &mut Client,
    command: MessageCommand,
    format: OutputFormat,
) -> CliResult<Report> {
    match command {
        MessageCommand::Send(args) => send(client, args).await,
        MessageCommand::Poll(args) => poll(client, args, format).await,
    }
}
