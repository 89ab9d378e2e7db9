//! Permissions as typed on the command line and as shown back.
//!
//! ```text
//! --global manage-streams,read-users      global grants (or `all`)
//! --stream 3:read-stream,poll-messages    grants on stream id 3
//! --topic 3/1:send-messages               grants on topic id 1 of stream id 3
//! ```
//! The protocol keys stream and topic grants by numeric id, so names are not accepted there.

use clap::Args;
use galgo_protocol::{GlobalPermissions, Permissions, StreamPermissions, TopicPermissions};
use serde_json::{Value, json};

use crate::error::{CliError, CliResult};

/// Permission flags of `user create` and `user permissions`.
#[derive(Args, Debug, Default)]
pub struct PermissionArgs {
    /// Global grants, comma-separated: manage-servers, read-servers, manage-users, read-users,
    /// manage-streams, read-streams, manage-topics, read-topics, poll-messages, send-messages,
    /// or all.
    #[arg(long, value_name = "GRANTS")]
    pub global: Option<String>,
    /// Grants on one stream, STREAM_ID:GRANTS (manage-stream, read-stream, manage-topics,
    /// read-topics, poll-messages, send-messages or all); repeatable.
    #[arg(long = "stream", value_name = "STREAM_ID:GRANTS")]
    pub streams: Vec<String>,
    /// Grants on one topic, STREAM_ID/TOPIC_ID:GRANTS (manage-topic, read-topic,
    /// poll-messages, send-messages or all); repeatable.
    #[arg(long = "topic", value_name = "STREAM_ID/TOPIC_ID:GRANTS")]
    pub topics: Vec<String>,
}

impl PermissionArgs {
    /// The permissions the flags describe, or `None` when no flag was given.
    pub fn permissions(&self) -> CliResult<Option<Permissions>> {
        if self.global.is_none() && self.streams.is_empty() && self.topics.is_empty() {
            return Ok(None);
        }
        let mut permissions = Permissions::default();
        if let Some(grants) = &self.global {
            permissions.global = global(grants)?;
        }
        for spec in &self.streams {
            let (id, grants) = split_spec(spec)?;
            let stream_id = parse_id(id, spec)?;
            let entry = permissions.streams.entry(stream_id).or_default();
            apply_stream(entry, grants)?;
        }
        for spec in &self.topics {
            let (ids, grants) = split_spec(spec)?;
            let (stream_id, topic_id) = ids.split_once('/').ok_or_else(|| {
                CliError::usage(format!("{spec:?}: expected STREAM_ID/TOPIC_ID:GRANTS"))
            })?;
            let (stream_id, topic_id) = (parse_id(stream_id, spec)?, parse_id(topic_id, spec)?);
            let stream = permissions.streams.entry(stream_id).or_default();
            let topic = stream.topics.entry(topic_id).or_default();
            apply_topic(topic, grants)?;
        }
        Ok(Some(permissions))
    }
}

fn split_spec(spec: &str) -> CliResult<(&str, &str)> {
    spec.split_once(':')
        .ok_or_else(|| CliError::usage(format!("{spec:?}: expected ID:GRANTS")))
}

fn parse_id(text: &str, spec: &str) -> CliResult<u32> {
    text.parse()
        .map_err(|_| CliError::usage(format!("{spec:?}: {text:?} is not a numeric id")))
}

fn grants(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .map(|grant| grant.trim().replace('_', "-"))
        .filter(|grant| !grant.is_empty())
}

fn unknown(grant: &str, scope: &str) -> CliError {
    CliError::usage(format!("unknown {scope} grant {grant:?}"))
}

fn global(text: &str) -> CliResult<GlobalPermissions> {
    let mut g = GlobalPermissions::default();
    for grant in grants(text) {
        match grant.as_str() {
            "all" => g = GlobalPermissions::all(),
            "manage-servers" => g.manage_servers = true,
            "read-servers" => g.read_servers = true,
            "manage-users" => g.manage_users = true,
            "read-users" => g.read_users = true,
            "manage-streams" => g.manage_streams = true,
            "read-streams" => g.read_streams = true,
            "manage-topics" => g.manage_topics = true,
            "read-topics" => g.read_topics = true,
            "poll-messages" => g.poll_messages = true,
            "send-messages" => g.send_messages = true,
            other => return Err(unknown(other, "global")),
        }
    }
    Ok(g)
}

fn apply_stream(s: &mut StreamPermissions, text: &str) -> CliResult<()> {
    for grant in grants(text) {
        match grant.as_str() {
            "all" => {
                s.manage_stream = true;
                s.read_stream = true;
                s.manage_topics = true;
                s.read_topics = true;
                s.poll_messages = true;
                s.send_messages = true;
            }
            "manage-stream" => s.manage_stream = true,
            "read-stream" => s.read_stream = true,
            "manage-topics" => s.manage_topics = true,
            "read-topics" => s.read_topics = true,
            "poll-messages" => s.poll_messages = true,
            "send-messages" => s.send_messages = true,
            other => return Err(unknown(other, "stream")),
        }
    }
    Ok(())
}

fn apply_topic(t: &mut TopicPermissions, text: &str) -> CliResult<()> {
    for grant in grants(text) {
        match grant.as_str() {
            "all" => {
                *t = TopicPermissions {
                    manage_topic: true,
                    read_topic: true,
                    poll_messages: true,
                    send_messages: true,
                }
            }
            "manage-topic" => t.manage_topic = true,
            "read-topic" => t.read_topic = true,
            "poll-messages" => t.poll_messages = true,
            "send-messages" => t.send_messages = true,
            other => return Err(unknown(other, "topic")),
        }
    }
    Ok(())
}

fn names(flags: &[(bool, &'static str)]) -> Vec<&'static str> {
    flags
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, name)| *name)
        .collect()
}

fn global_names(g: &GlobalPermissions) -> Vec<&'static str> {
    names(&[
        (g.manage_servers, "manage-servers"),
        (g.read_servers, "read-servers"),
        (g.manage_users, "manage-users"),
        (g.read_users, "read-users"),
        (g.manage_streams, "manage-streams"),
        (g.read_streams, "read-streams"),
        (g.manage_topics, "manage-topics"),
        (g.read_topics, "read-topics"),
        (g.poll_messages, "poll-messages"),
        (g.send_messages, "send-messages"),
    ])
}

fn stream_names(s: &StreamPermissions) -> Vec<&'static str> {
    names(&[
        (s.manage_stream, "manage-stream"),
        (s.read_stream, "read-stream"),
        (s.manage_topics, "manage-topics"),
        (s.read_topics, "read-topics"),
        (s.poll_messages, "poll-messages"),
        (s.send_messages, "send-messages"),
    ])
}

fn topic_names(t: &TopicPermissions) -> Vec<&'static str> {
    names(&[
        (t.manage_topic, "manage-topic"),
        (t.read_topic, "read-topic"),
        (t.poll_messages, "poll-messages"),
        (t.send_messages, "send-messages"),
    ])
}

/// One line per scope, in the syntax the flags take.
pub fn describe(permissions: Option<&Permissions>) -> Vec<String> {
    let Some(p) = permissions else {
        return vec!["none".to_owned()];
    };
    let mut lines = vec![format!("global: {}", global_names(&p.global).join(","))];
    for (stream_id, s) in &p.streams {
        lines.push(format!("stream {stream_id}: {}", stream_names(s).join(",")));
        for (topic_id, t) in &s.topics {
            lines.push(format!(
                "topic {stream_id}/{topic_id}: {}",
                topic_names(t).join(",")
            ));
        }
    }
    lines
}

/// The permissions as JSON: grant names per scope.
pub fn to_json(permissions: Option<&Permissions>) -> Value {
    let Some(p) = permissions else {
        return Value::Null;
    };
    let streams: serde_json::Map<String, Value> = p
        .streams
        .iter()
        .map(|(id, s)| {
            let topics: serde_json::Map<String, Value> = s
                .topics
                .iter()
                .map(|(id, t)| (id.to_string(), json!(topic_names(t))))
                .collect();
            (
                id.to_string(),
                json!({ "grants": stream_names(s), "topics": topics }),
            )
        })
        .collect();
    json!({ "global": global_names(&p.global), "streams": streams })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_build_permissions_and_describe_them_back() {
        let args = PermissionArgs {
            global: Some("read-streams,poll_messages".into()),
            streams: vec!["3:manage-stream".into()],
            topics: vec!["3/1:send-messages,read-topic".into()],
        };
        let permissions = args.permissions().unwrap().unwrap();
        assert!(permissions.global.read_streams && permissions.global.poll_messages);
        assert!(!permissions.global.manage_users);
        let stream = &permissions.streams[&3];
        assert!(stream.manage_stream && !stream.read_stream);
        assert!(stream.topics[&1].send_messages && stream.topics[&1].read_topic);
        assert_eq!(
            describe(Some(&permissions)),
            [
                "global: read-streams,poll-messages",
                "stream 3: manage-stream",
                "topic 3/1: read-topic,send-messages"
            ]
        );
        assert!(PermissionArgs::default().permissions().unwrap().is_none());
    }

    #[test]
    fn malformed_flags_are_usage_errors() {
        for (global, stream, topic) in [
            (Some("fly"), None, None),
            (None, Some("x:read-stream"), None),
            (None, Some("3"), None),
            (None, None, Some("3:send-messages")),
            (None, None, Some("3/1:manage-stream")),
        ] {
            let args = PermissionArgs {
                global: global.map(Into::into),
                streams: stream.into_iter().map(Into::into).collect(),
                topics: topic.into_iter().map(Into::into).collect(),
            };
            assert!(matches!(args.permissions(), Err(CliError::Usage(_))));
        }
    }
}
