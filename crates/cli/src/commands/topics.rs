//! `galgo topic …`.

use clap::{Args, Subcommand, ValueEnum};
use galgo_client::Client;
use galgo_protocol::Identifier;
use galgo_protocol::command::topics::{
    CompressionAlgorithm, CreateTopic, EXPIRY_NEVER, EXPIRY_SERVER_DEFAULT, PartitionInfo,
    TOPIC_SIZE_SERVER_DEFAULT, TOPIC_SIZE_UNLIMITED, TopicDetails, TopicHeader, UpdateTopic,
};
use serde_json::{Value, json};

use crate::args::{duration, identifier, show, size_bytes};
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, human_bytes, human_duration, human_time, render};

/// A topic's compression, as typed.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Compression {
    /// No compression.
    None,
    /// Gzip.
    Gzip,
}

impl From<Compression> for CompressionAlgorithm {
    fn from(compression: Compression) -> Self {
        match compression {
            Compression::None => CompressionAlgorithm::None,
            Compression::Gzip => CompressionAlgorithm::Gzip,
        }
    }
}

/// How long messages live: `never`, `server-default`, or a duration such as `7d`.
pub fn expiry_us(text: &str) -> Result<u64, String> {
    match text {
        "never" => Ok(EXPIRY_NEVER),
        "server-default" => Ok(EXPIRY_SERVER_DEFAULT),
        text => {
            let us = duration(text)?.as_micros();
            u64::try_from(us)
                .ok()
                .filter(|&us| us != EXPIRY_SERVER_DEFAULT && us != EXPIRY_NEVER)
                .ok_or_else(|| "the expiry must be at least 1µs and less than 584 000 years".into())
        }
    }
}

/// A topic size limit: `unlimited`, `server-default`, or a size such as `10GiB`.
pub fn max_size_bytes(text: &str) -> Result<u64, String> {
    match text {
        "unlimited" => Ok(TOPIC_SIZE_UNLIMITED),
        "server-default" => Ok(TOPIC_SIZE_SERVER_DEFAULT),
        text => size_bytes(text).and_then(|bytes| {
            (bytes != TOPIC_SIZE_SERVER_DEFAULT)
                .then_some(bytes)
                .ok_or_else(|| "a size limit of 0 bytes is not a limit".into())
        }),
    }
}

/// The settings `create` and `update` share.
#[derive(Args, Debug, Default)]
pub struct TopicSettings {
    /// Compression of stored messages.
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    /// How long messages are kept: a duration (30m, 7d), never or server-default.
    #[arg(long, value_parser = expiry_us)]
    pub expiry: Option<u64>,
    /// Largest size before the oldest segments go: a size (10GiB), unlimited or server-default.
    #[arg(long, value_parser = max_size_bytes)]
    pub max_size: Option<u64>,
}

/// `galgo topic …`.
#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Every topic of a stream.
    #[command(after_help = "Examples:\n  galgo topic list orders")]
    List {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
    },
    /// One topic with its partitions.
    #[command(after_help = "Examples:\n  galgo topic get orders created")]
    Get {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
    },
    /// Creates a topic; the server assigns its id.
    #[command(
        after_help = "Examples:\n  galgo topic create orders created --partitions 4\n  \
                            galgo topic create orders audit --expiry 7d --max-size 10GiB \
                            --compression gzip"
    )]
    Create {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The new topic's name.
        name: String,
        /// How many partitions (1 to 1000).
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// On a cluster, how many nodes hold each partition (at most the node count; not
        /// given: the server's default, min(3, nodes)). Fixed once the topic exists.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
        replication_factor: Option<u8>,
        #[command(flatten)]
        settings: TopicSettings,
    },
    /// Changes a topic's name or settings; what is not given stays as it is.
    #[command(
        after_help = "Examples:\n  galgo topic update orders created --expiry 1d\n  \
                            galgo topic update orders created --name created-v2"
    )]
    Update {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: TopicSettings,
    },
    /// Deletes a topic with its partitions and messages.
    #[command(after_help = "Examples:\n  galgo topic delete orders created")]
    Delete {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
    },
    /// Deletes every message of a topic, keeping its partitions.
    #[command(after_help = "Examples:\n  galgo topic purge orders created")]
    Purge {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
    },
}

/// Runs a `galgo topic` subcommand.
pub async fn run(client: &mut Client, command: TopicCommand) -> CliResult<Report> {
    match command {
        TopicCommand::List { stream } => Ok(topics_report(&client.get_topics(&stream).await?)),
        TopicCommand::Get { stream, topic } => {
            Ok(topic_report(&fetch(client, &stream, &topic).await?))
        }
        TopicCommand::Create {
            stream,
            name,
            partitions,
            replication_factor,
            settings,
        } => {
            let request = CreateTopic {
                stream: stream.clone(),
                partitions_count: partitions,
                compression: settings
                    .compression
                    .map_or(CompressionAlgorithm::None, Into::into),
                message_expiry_us: settings.expiry.unwrap_or(EXPIRY_SERVER_DEFAULT),
                max_topic_size_bytes: settings.max_size.unwrap_or(TOPIC_SIZE_SERVER_DEFAULT),
                // 0: not set, the server's default (as the Iggy SDKs send it).
                replication_factor: replication_factor.unwrap_or(0),
                name: name.clone(),
            };
            let created = client.create_topic_with(&request).await?;
            let text = format!(
                "created topic {name} (id {}) in stream {} with {} partition(s)",
                created.header.id,
                show(&stream),
                created.partitions.len()
            );
            Ok(Report::text(text, topic_json(&created.header)))
        }
        TopicCommand::Update {
            stream,
            topic,
            name,
            settings,
        } => update(client, stream, topic, name, settings).await,
        TopicCommand::Delete { stream, topic } => {
            client.delete_topic(&stream, &topic).await?;
            let text = format!("deleted topic {} of stream {}", show(&topic), show(&stream));
            Ok(Report::text(text, json!({ "deleted": show(&topic) })))
        }
        TopicCommand::Purge { stream, topic } => {
            client.purge_topic(&stream, &topic).await?;
            let text = format!("purged topic {} of stream {}", show(&topic), show(&stream));
            Ok(Report::text(text, json!({ "purged": show(&topic) })))
        }
    }
}

/// The topic, or a not-found error naming it.
pub async fn fetch(
    client: &mut Client,
    stream: &Identifier,
    topic: &Identifier,
) -> CliResult<TopicDetails> {
    client.get_topic(stream, topic).await?.ok_or_else(|| {
        CliError::NotFound(format!("topic {} of stream {}", show(topic), show(stream)))
    })
}

async fn update(
    client: &mut Client,
    stream: Identifier,
    topic: Identifier,
    name: Option<String>,
    settings: TopicSettings,
) -> CliResult<Report> {
    // UpdateTopic replaces every setting at once, so unchanged ones are read back first.
    let current = fetch(client, &stream, &topic).await?.header;
    let request = UpdateTopic {
        stream: stream.clone(),
        topic: topic.clone(),
        compression: Some(settings.compression.map_or(current.compression, Into::into)),
        message_expiry_us: Some(settings.expiry.unwrap_or(current.message_expiry_us)),
        max_topic_size_bytes: Some(settings.max_size.unwrap_or(current.max_topic_size_bytes)),
        replication_factor: current.replication_factor.max(1),
        name: name.unwrap_or(current.name),
    };
    client.update_topic(&request).await?;
    let updated = fetch(client, &stream, &Identifier::Numeric(current.id)).await?;
    let text = format!(
        "updated topic {} of stream {}",
        updated.header.name,
        show(&stream)
    );
    Ok(Report::text(text, topic_json(&updated.header)))
}

fn expiry_text(us: u64) -> String {
    match us {
        EXPIRY_NEVER => "never".to_owned(),
        EXPIRY_SERVER_DEFAULT => "server default".to_owned(),
        us => human_duration(us),
    }
}

fn max_size_text(bytes: u64) -> String {
    match bytes {
        TOPIC_SIZE_UNLIMITED => "unlimited".to_owned(),
        TOPIC_SIZE_SERVER_DEFAULT => "server default".to_owned(),
        bytes => human_bytes(bytes),
    }
}

fn compression_name(compression: CompressionAlgorithm) -> &'static str {
    match compression {
        CompressionAlgorithm::None => "none",
        CompressionAlgorithm::Gzip => "gzip",
    }
}

fn topic_json(t: &TopicHeader) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "created_at_us": t.created_at_us,
        "partitions_count": t.partitions_count,
        "message_expiry_us": t.message_expiry_us,
        "compression": compression_name(t.compression),
        "max_topic_size_bytes": t.max_topic_size_bytes,
        "replication_factor": t.replication_factor,
        "size_bytes": t.size_bytes,
        "messages_count": t.messages_count,
    })
}

/// A table of topics (also used inside `galgo stream get`).
pub fn topics_report(topics: &[TopicHeader]) -> Report {
    let rows = topics
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.name.clone(),
                t.partitions_count.to_string(),
                t.messages_count.to_string(),
                human_bytes(t.size_bytes),
                expiry_text(t.message_expiry_us),
                max_size_text(t.max_topic_size_bytes),
                compression_name(t.compression).to_owned(),
                human_time(t.created_at_us),
            ]
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec![
                "id",
                "name",
                "partitions",
                "messages",
                "size",
                "expiry",
                "max size",
                "compression",
                "created",
            ],
            rows,
        },
        json: Value::Array(topics.iter().map(topic_json).collect()),
    }
}

fn partition_json(p: &PartitionInfo) -> Value {
    json!({
        "id": p.id,
        "created_at_us": p.created_at_us,
        "segments_count": p.segments_count,
        "current_offset": p.current_offset,
        "size_bytes": p.size_bytes,
        "messages_count": p.messages_count,
    })
}

fn topic_report(details: &TopicDetails) -> Report {
    let t = &details.header;
    let mut text = render(&Human::Fields(vec![
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("created", human_time(t.created_at_us)),
        ("partitions", t.partitions_count.to_string()),
        ("messages", t.messages_count.to_string()),
        ("size", human_bytes(t.size_bytes)),
        ("expiry", expiry_text(t.message_expiry_us)),
        ("max size", max_size_text(t.max_topic_size_bytes)),
        ("compression", compression_name(t.compression).to_owned()),
    ]));
    let rows: Vec<Vec<String>> = details
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.segments_count.to_string(),
                p.current_offset.to_string(),
                p.messages_count.to_string(),
                human_bytes(p.size_bytes),
                human_time(p.created_at_us),
            ]
        })
        .collect();
    if !rows.is_empty() {
        text.push('\n');
        text.push_str(&render(&Human::Table {
            header: vec![
                "partition",
                "segments",
                "offset",
                "messages",
                "size",
                "created",
            ],
            rows,
        }));
    }
    let mut json = topic_json(t);
    json["partitions"] = Value::Array(details.partitions.iter().map(partition_json).collect());
    Report::text(text, json)
}
