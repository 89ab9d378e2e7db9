//! `galgo group …`: consumer groups.

use clap::Subcommand;
use galgo_client::Client;
use galgo_protocol::command::groups::{GroupDetails, GroupHeader};
use galgo_protocol::command::offsets::OffsetTarget;
use galgo_protocol::command::topics::PartitionInfo;
use galgo_protocol::{Consumer, Identifier};
use serde_json::{Value, json};

use crate::args::{identifier, show};
use crate::error::{CliError, CliResult};
use crate::output::{Human, Report, render};

/// `galgo group …`.
#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Every consumer group of a topic, with its lag: the messages of all partitions the group
    /// has not committed yet.
    #[command(after_help = "Examples:\n  galgo group list orders created\n  \
                            galgo group list orders created -o json | jq '.[] | {name, lag}'\n\n\
                            A group's lag on a partition is the partition's last offset minus \
                            the group's stored offset there; a partition where the group stored \
                            nothing counts all its messages, an empty one none.")]
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
            let lags = groups_lag(client, &stream, &topic, &groups).await?;
            Ok(groups_report(&groups, &lags))
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

/// Messages of `partition` the group has not committed, given its stored offset there: the
/// last offset minus the stored one, or every message when nothing is stored. Capped at the
/// messages the partition holds, so that an empty partition (whose last offset reads 0) and
/// one whose oldest segments were deleted count no message twice.
fn partition_lag(partition: &PartitionInfo, stored_offset: Option<u64>) -> u64 {
    let pending = match stored_offset {
        Some(stored) => partition.current_offset.saturating_sub(stored),
        None => partition.current_offset + 1,
    };
    pending.min(partition.messages_count)
}

/// The total lag of each group, in the order of `groups`: GetTopic gives the partitions' last
/// offsets and GetConsumerOffset, asked as the group, its stored ones.
pub async fn groups_lag(
    client: &mut Client,
    stream: &Identifier,
    topic: &Identifier,
    groups: &[GroupHeader],
) -> CliResult<Vec<u64>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let Some(details) = client.get_topic(stream, topic).await? else {
        return Err(CliError::NotFound(format!("topic {}", show(topic))));
    };
    let mut lags = Vec::with_capacity(groups.len());
    for group in groups {
        let mut lag = 0;
        for partition in &details.partitions {
            let target = OffsetTarget {
                consumer: Consumer::Group(Identifier::Numeric(group.id)),
                stream: stream.clone(),
                topic: topic.clone(),
                partition_id: Some(partition.id),
            };
            let stored = client.get_consumer_offset(&target).await?;
            lag += partition_lag(partition, stored.map(|info| info.stored_offset));
        }
        lags.push(lag);
    }
    Ok(lags)
}

fn groups_report(groups: &[GroupHeader], lags: &[u64]) -> Report {
    let rows = groups
        .iter()
        .zip(lags)
        .map(|(g, lag)| {
            vec![
                g.id.to_string(),
                g.name.clone(),
                g.partitions_count.to_string(),
                g.members_count.to_string(),
                lag.to_string(),
            ]
        })
        .collect();
    let json = groups
        .iter()
        .zip(lags)
        .map(|(g, lag)| {
            let mut json = group_json(g);
            json["lag"] = json!(lag);
            json
        })
        .collect();
    Report {
        human: Human::Table {
            header: vec!["id", "name", "partitions", "members", "lag"],
            rows,
        },
        json: Value::Array(json),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(current_offset: u64, messages_count: u64) -> PartitionInfo {
        PartitionInfo {
            id: 0,
            created_at_us: 0,
            segments_count: 1,
            current_offset,
            size_bytes: 0,
            messages_count,
        }
    }

    #[test]
    fn lag_counts_the_messages_not_committed() {
        // Offsets 0..=9: committed up to 3 leaves 4..=9.
        assert_eq!(partition_lag(&partition(9, 10), Some(3)), 6);
        assert_eq!(partition_lag(&partition(9, 10), Some(9)), 0);
        assert_eq!(partition_lag(&partition(9, 10), None), 10);
        assert_eq!(partition_lag(&partition(0, 1), None), 1);
        assert_eq!(partition_lag(&partition(0, 0), None), 0);
        // The first 8 messages deleted with their segments: 2 remain to be read.
        assert_eq!(partition_lag(&partition(9, 2), None), 2);
    }
}
