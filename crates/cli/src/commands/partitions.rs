//! `galgo partition …` and `galgo segment …`.

use clap::Subcommand;
use galgo_client::Client;
use galgo_protocol::Identifier;
use serde_json::json;

use crate::args::{identifier, show};
use crate::error::CliResult;
use crate::output::Report;

/// `galgo partition …`.
#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// Appends partitions to a topic.
    #[command(after_help = "Examples:\n  galgo partition create orders created 2")]
    Create {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// How many partitions to add.
        count: u32,
    },
    /// Removes a topic's highest-numbered partitions, with their messages.
    #[command(after_help = "Examples:\n  galgo partition delete orders created 1")]
    Delete {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// How many partitions to remove.
        count: u32,
    },
}

/// Runs a `galgo partition` subcommand.
pub async fn run(client: &mut Client, command: PartitionCommand) -> CliResult<Report> {
    let (stream, topic, count, added) = match command {
        PartitionCommand::Create {
            stream,
            topic,
            count,
        } => {
            client.create_partitions(&stream, &topic, count).await?;
            (stream, topic, count, true)
        }
        PartitionCommand::Delete {
            stream,
            topic,
            count,
        } => {
            client.delete_partitions(&stream, &topic, count).await?;
            (stream, topic, count, false)
        }
    };
    let topic_now = crate::commands::topics::fetch(client, &stream, &topic).await?;
    let partitions = topic_now.header.partitions_count;
    let verb = if added { "added" } else { "deleted" };
    let text = format!(
        "{verb} {count} partition(s) of topic {} of stream {}: {partitions} now",
        show(&topic),
        show(&stream)
    );
    let json = json!({ verb: count, "partitions_count": partitions });
    Ok(Report::text(text, json))
}

/// `galgo segment …`.
#[derive(Subcommand, Debug)]
pub enum SegmentCommand {
    /// Deletes a partition's oldest sealed segments, with their messages.
    #[command(after_help = "Examples:\n  galgo segment delete orders created 0 --count 2")]
    Delete {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// The partition.
        partition: u32,
        /// How many segments, oldest first (the open segment is never deleted).
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
}

/// Runs a `galgo segment` subcommand.
pub async fn run_segment(client: &mut Client, command: SegmentCommand) -> CliResult<Report> {
    let SegmentCommand::Delete {
        stream,
        topic,
        partition,
        count,
    } = command;
    client
        .delete_segments(&stream, &topic, partition, count)
        .await?;
    let text = format!(
        "deleted up to {count} segment(s) of partition {partition} of topic {} of stream {}",
        show(&topic),
        show(&stream)
    );
    Ok(Report::text(
        text,
        json!({ "partition_id": partition, "segments_count": count }),
    ))
}
