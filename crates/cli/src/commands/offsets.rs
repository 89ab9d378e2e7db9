//! `galgo offset …`: consumer offsets.

use clap::{Args, Subcommand};
use galgo_client::Client;
use galgo_protocol::command::offsets::OffsetTarget;
use galgo_protocol::{Consumer, Identifier};
use serde_json::json;

use crate::args::{ConsumerArgs, identifier, show};
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report};

/// Whose offset, and where.
#[derive(Args, Debug)]
pub struct Target {
    /// The stream (id or name).
    #[arg(value_parser = identifier)]
    stream: Identifier,
    /// The topic (id or name).
    #[arg(value_parser = identifier)]
    topic: Identifier,
    #[command(flatten)]
    consumer: ConsumerArgs,
    /// The partition [default: 0 for a single consumer; a group's own otherwise].
    #[arg(long)]
    partition: Option<u32>,
}

impl Target {
    fn offset_target(&self) -> OffsetTarget {
        OffsetTarget {
            consumer: self.consumer.consumer(),
            stream: self.stream.clone(),
            topic: self.topic.clone(),
            partition_id: self.partition,
        }
    }
}

/// `galgo offset …`.
#[derive(Subcommand, Debug)]
pub enum OffsetCommand {
    /// Shows a consumer's stored offset and the partition's current offset.
    #[command(
        after_help = "Examples:\n  galgo offset get orders created --consumer 1\n  \
                            galgo offset get orders created --group billing --partition 2"
    )]
    Get {
        #[command(flatten)]
        target: Target,
    },
    /// Stores a consumer's offset.
    #[command(after_help = "Examples:\n  galgo offset set orders created 41 --consumer 1")]
    Set {
        #[command(flatten)]
        target: Target,
        /// The offset of the last message consumed.
        offset: u64,
    },
    /// Forgets a consumer's stored offset.
    #[command(after_help = "Examples:\n  galgo offset delete orders created --consumer 1")]
    Delete {
        #[command(flatten)]
        target: Target,
    },
}

fn consumer_text(consumer: &Consumer) -> String {
    match consumer {
        Consumer::Single(id) => format!("consumer {}", show(id)),
        Consumer::Group(id) => format!("group {}", show(id)),
    }
}

/// Runs a `galgo offset` subcommand.
pub async fn run(client: &mut Client, command: OffsetCommand) -> CliResult<Report> {
    match command {
        OffsetCommand::Get { target } => {
            let request = target.offset_target();
            let who = consumer_text(&request.consumer);
            let Some(info) = client.get_consumer_offset(&request).await? else {
                return Err(CliError::NotFound(format!("no stored offset for {who}")));
            };
            let json = json!({
                "partition_id": info.partition_id,
                "current_offset": info.current_offset,
                "stored_offset": info.stored_offset,
            });
            let fields = vec![
                ("consumer", who),
                ("partition", info.partition_id.to_string()),
                ("stored offset", info.stored_offset.to_string()),
                ("current offset", info.current_offset.to_string()),
                (
                    "lag",
                    info.current_offset
                        .saturating_sub(info.stored_offset)
                        .to_string(),
                ),
            ];
            Ok(Report {
                human: Human::Fields(fields),
                json,
            })
        }
        OffsetCommand::Set { target, offset } => {
            let request = target.offset_target();
            client.store_consumer_offset(&request, offset).await?;
            let who = consumer_text(&request.consumer);
            Ok(Report::text(
                format!("stored offset {offset} for {who}"),
                json!({ "stored_offset": offset }),
            ))
        }
        OffsetCommand::Delete { target } => {
            let request = target.offset_target();
            client.delete_consumer_offset(&request).await?;
            let who = consumer_text(&request.consumer);
            Ok(Report::text(
                format!("deleted the stored offset of {who}"),
                json!({ "deleted": true }),
            ))
        }
    }
}
