//! `galgo stream …`.

use clap::Subcommand;
use galgo_client::Client;
use galgo_protocol::Identifier;
use galgo_protocol::command::streams::{StreamDetails, StreamHeader};
use serde_json::{Value, json};

use crate::args::{identifier, show};
use crate::commands::topics::topics_report;
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, human_bytes, human_time};

/// `galgo stream …`.
#[derive(Subcommand, Debug)]
pub enum StreamCommand {
    /// Every stream.
    #[command(after_help = "Examples:\n  galgo stream list\n  galgo stream list -o json")]
    List,
    /// One stream with its topics.
    #[command(after_help = "Examples:\n  galgo stream get orders\n  galgo stream get 0")]
    Get {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
    },
    /// Creates a stream; the server assigns its id.
    #[command(after_help = "Examples:\n  galgo stream create orders")]
    Create {
        /// The new stream's name.
        name: String,
    },
    /// Renames a stream.
    #[command(after_help = "Examples:\n  galgo stream update orders orders-v2")]
    Update {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The new name.
        name: String,
    },
    /// Deletes a stream with all its topics and messages.
    #[command(after_help = "Examples:\n  galgo stream delete orders")]
    Delete {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
    },
    /// Deletes every message of every topic of a stream, keeping the topics.
    #[command(after_help = "Examples:\n  galgo stream purge orders")]
    Purge {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
    },
}

/// Runs a `galgo stream` subcommand.
pub async fn run(client: &mut Client, command: StreamCommand) -> CliResult<Report> {
    match command {
        StreamCommand::List => Ok(streams_report(&client.get_streams().await?)),
        StreamCommand::Get { stream } => match client.get_stream(&stream).await? {
            Some(details) => Ok(stream_report(&details)),
            None => Err(CliError::NotFound(format!("stream {}", show(&stream)))),
        },
        StreamCommand::Create { name } => {
            let created = client.create_stream(&name).await?;
            let id = created.header.id;
            let json = stream_json(&created.header);
            Ok(Report::text(
                format!("created stream {name} (id {id})"),
                json,
            ))
        }
        StreamCommand::Update { stream, name } => {
            client.update_stream(&stream, &name).await?;
            let text = format!("renamed stream {} to {name}", show(&stream));
            Ok(Report::text(
                text,
                json!({ "stream": show(&stream), "name": name }),
            ))
        }
        StreamCommand::Delete { stream } => {
            client.delete_stream(&stream).await?;
            let text = format!("deleted stream {}", show(&stream));
            Ok(Report::text(text, json!({ "deleted": show(&stream) })))
        }
        StreamCommand::Purge { stream } => {
            client.purge_stream(&stream).await?;
            let text = format!("purged stream {}", show(&stream));
            Ok(Report::text(text, json!({ "purged": show(&stream) })))
        }
    }
}

fn stream_json(stream: &StreamHeader) -> Value {
    json!({
        "id": stream.id,
        "name": stream.name,
        "created_at_us": stream.created_at_us,
        "topics_count": stream.topics_count,
        "size_bytes": stream.size_bytes,
        "messages_count": stream.messages_count,
    })
}

fn streams_report(streams: &[StreamHeader]) -> Report {
    let rows = streams
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.name.clone(),
                s.topics_count.to_string(),
                s.messages_count.to_string(),
                human_bytes(s.size_bytes),
                human_time(s.created_at_us),
            ]
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec!["id", "name", "topics", "messages", "size", "created"],
            rows,
        },
        json: Value::Array(streams.iter().map(stream_json).collect()),
    }
}

fn stream_report(details: &StreamDetails) -> Report {
    let s = &details.header;
    let topics = topics_report(&details.topics);
    let mut text = crate::output::render(&Human::Fields(vec![
        ("id", s.id.to_string()),
        ("name", s.name.clone()),
        ("created", human_time(s.created_at_us)),
        ("topics", s.topics_count.to_string()),
        ("messages", s.messages_count.to_string()),
        ("size", human_bytes(s.size_bytes)),
    ]));
    if !details.topics.is_empty() {
        text.push('\n');
        text.push_str(&crate::output::render(&topics.human));
    }
    let mut json = stream_json(s);
    json["topics"] = topics.json;
    Report::text(text, json)
}
