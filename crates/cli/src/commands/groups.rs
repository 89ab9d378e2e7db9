//! `galgo group …`: consumer groups.

use clap::Subcommand;
use galgo_client::Client;
use galgo_protocol::Identifier;
use galgo_protocol::command::groups::{GroupDetails, GroupHeader};
use serde_json::{Value, json};

use crate::args::{identifier, show};
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, render};

/// `galgo group …`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Every consumer group of a topic.
    #[command(after_help = "Examples:\n  galgo group list orders created")]
    List {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
    },
    /// One consumer group with its members and their partitions.
    #[command(after_help = "Examples:\n  galgo group get orders created billing")]
    Get {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// The group (id or name).
        #[arg(value_parser = identifier)]
        group: Identifier,
    },
    /// Creates a consumer group; the server assigns its id.
    #[command(after_help = "Examples:\n  galgo group create orders created billing")]
    Create {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// The new group's name.
        name: String,
    },
    /// Deletes a consumer group and its stored offsets.
    #[command(after_help = "Examples:\n  galgo group delete orders created billing")]
    Delete {
        /// The stream (id or name).
        #[arg(value_parser = identifier)]
        stream: Identifier,
        /// The topic (id or name).
        #[arg(value_parser = identifier)]
        topic: Identifier,
        /// The group (id or name).
        #[arg(value_parser = identifier)]
        group: Identifier,
    },
}

/// Runs a `galgo group` subcommand.
pub async fn run(client: &mut Client, command: GroupCommand) -> CliResult<Report> {
    match command {
        GroupCommand::List { stream, topic } => {
            let groups = client.get_consumer_groups(&stream, &topic).await?;
            Ok(groups_report(&groups))
        }
        GroupCommand::Get {
            stream,
            topic,
            group,
        } => match client.get_consumer_group(&stream, &topic, &group).await? {
            Some(details) => Ok(group_report(&details)),
            None => Err(CliError::NotFound(format!(
                "consumer group {}",
                show(&group)
            ))),
        },
        GroupCommand::Create {
            stream,
            topic,
            name,
        } => {
            let created = client.create_consumer_group(&stream, &topic, &name).await?;
            let text = format!(
                "created consumer group {name} (id {}) on topic {} of stream {}",
                created.header.id,
                show(&topic),
                show(&stream)
            );
            Ok(Report::text(text, group_json(&created.header)))
        }
        GroupCommand::Delete {
            stream,
            topic,
            group,
        } => {
            client
                .delete_consumer_group(&stream, &topic, &group)
                .await?;
            let text = format!("deleted consumer group {}", show(&group));
            Ok(Report::text(text, json!({ "deleted": show(&group) })))
        }
    }
}

fn group_json(group: &GroupHeader) -> Value {
    json!({
        "id": group.id,
        "name": group.name,
        "partitions_count": group.partitions_count,
        "members_count": group.members_count,
    })
}

fn groups_report(groups: &[GroupHeader]) -> Report {
    let rows = groups
        .iter()
        .map(|g| {
            vec![
                g.id.to_string(),
                g.name.clone(),
                g.partitions_count.to_string(),
                g.members_count.to_string(),
            ]
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec!["id", "name", "partitions", "members"],
            rows,
        },
        json: Value::Array(groups.iter().map(group_json).collect()),
    }
}

fn group_report(details: &GroupDetails) -> Report {
    let g = &details.header;
    let mut text = render(&Human::Fields(vec![
        ("id", g.id.to_string()),
        ("name", g.name.clone()),
        ("partitions", g.partitions_count.to_string()),
        ("members", g.members_count.to_string()),
    ]));
    let partitions_text = |partitions: &[u32]| {
        partitions
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<Vec<String>> = details
        .members
        .iter()
        .map(|m| vec![m.id.to_string(), partitions_text(&m.partitions)])
        .collect();
    if !rows.is_empty() {
        text.push('\n');
        text.push_str(&render(&Human::Table {
            header: vec!["member (client id)", "partitions"],
            rows,
        }));
    }
    let mut json = group_json(g);
    json["members"] = details
        .members
        .iter()
        .map(|m| json!({ "id": m.id, "partitions": m.partitions }))
        .collect();
    Report::text(text, json)
}
