//! `galgo top`: a view of the whole server refreshed every interval, the first thing an
//! operator opens. Each refresh samples the server through the protocol (no HTTP):
//!
//! ```text
//! GetStreams                         every stream
//!   GetTopics(stream)                its topics, with their message counts
//!     GetConsumerGroups(topic)       their groups
//!       GetTopic + GetConsumerOffset the lag of each group (as `galgo group list` computes it)
//! ```
//!
//! A topic's `new` column is the difference between its message count in this sample and in
//! the previous one, and `msg/s` that difference over the time between the two samples; the
//! first sample has neither. Single consumers are not shown: the protocol has no command that
//! lists them, and their offsets can only be read by someone who already knows their ids.
//!
//! On a terminal the view is drawn on the alternate screen with the cursor hidden, and both
//! are restored on exit, Ctrl-C included; anywhere else (a pipe, a file) each refresh prints a
//! plain block, or one JSON document per line with `-o json`.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use galgo_client::Client;
use galgo_protocol::Identifier;
use serde_json::{Value, json};

mod consumers;

use consumers::Consumers;

use crate::commands::groups::groups_lag;
use crate::error::{CliError, CliResult};
use crate::output::{OutputFormat, human_time, now_us};

/// The shortest interval between refreshes: shorter would mostly measure the sampling itself.
const INTERVAL_MS_MIN: u64 = 100;
/// How often a wait between refreshes checks for Ctrl-C.
const STOP_CHECK_MS: u64 = 50;
/// Stream, topic and group names are cut to this many characters so that a row fits 80 columns.
const NAME_WIDTH_MAX: usize = 16;
/// Spaces between columns.
const COLUMN_GAP: &str = "  ";

/// `galgo top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(INTERVAL_MS_MIN..))]
    pub interval_ms: u64,
    /// Stops after this many refreshes [default: runs until Ctrl-C].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,
    /// The server's /metrics (e.g. http://127.0.0.1:8091/metrics), where single consumers'
    /// lag is read: the protocol cannot list consumers [default: consumers not shown].
    #[arg(long, env = "GALGO_METRICS_URL")]
    pub metrics_url: Option<String>,
}

/// One consumer group of a topic, as sampled.
struct GroupSample {
    name: String,
    members: u32,
    lag: u64,
}

/// One topic, as sampled.
struct TopicSample {
    /// (stream id, topic id): what matches a topic with itself in the previous sample.
    key: (u32, u32),
    stream: String,
    topic: String,
    partitions: u32,
    messages: u64,
    groups: Vec<GroupSample>,
}

/// Everything one refresh shows, topics sorted by stream and topic name, groups by name.
struct Sample {
    taken: Instant,
    taken_us: u64,
    topics: Vec<TopicSample>,
    consumers: Consumers,
}

/// Samples the server: 1 + streams + topics requests, and for a topic with groups one GetTopic
/// and one GetConsumerOffset per group and partition.
async fn sample(client: &mut Client, metrics_url: Option<&str>) -> CliResult<Sample> {
    let mut topics = Vec::new();
    for stream in client.get_streams().await? {
        let stream_id = Identifier::Numeric(stream.id);
        for topic in client.get_topics(&stream_id).await? {
            let topic_id = Identifier::Numeric(topic.id);
            let mut headers = client.get_consumer_groups(&stream_id, &topic_id).await?;
            headers.sort_by(|a, b| a.name.cmp(&b.name));
            let lags = groups_lag(client, &stream_id, &topic_id, &headers).await?;
            let groups = headers
                .into_iter()
                .zip(lags)
                .map(|(header, lag)| GroupSample {
                    name: header.name,
                    members: header.members_count,
                    lag,
                })
                .collect();
            topics.push(TopicSample {
                key: (stream.id, topic.id),
                stream: stream.name.clone(),
                topic: topic.name,
                partitions: topic.partitions_count,
                messages: topic.messages_count,
                groups,
            });
        }
    }
    topics.sort_by(|a, b| (&a.stream, &a.topic).cmp(&(&b.stream, &b.topic)));
    Ok(Sample {
        taken: Instant::now(),
        taken_us: now_us(),
        topics,
        consumers: metrics_url.map_or(Consumers::NotAsked, consumers::fetch),
    })
}

/// What changed in a topic since the previous sample: new messages and their rate per second.
/// `None` on the first sample, for a topic the previous sample did not have, and when the
/// count went down (a purge or expired segments), where a difference would mean nothing.
fn change(previous: Option<&Sample>, current: &Sample, topic: &TopicSample) -> Option<(u64, f64)> {
    let previous = previous?;
    let before = previous.topics.iter().find(|t| t.key == topic.key)?;
    let new = topic.messages.checked_sub(before.messages)?;
    let seconds = current.taken.duration_since(previous.taken).as_secs_f64();
    let rate = if seconds > 0.0 {
        new as f64 / seconds
    } else {
        0.0
    };
    Some((new, rate))
}

/// `name`, cut to [`NAME_WIDTH_MAX`] characters with an ellipsis.
fn cut(name: &str) -> String {
    if name.chars().count() <= NAME_WIDTH_MAX {
        return name.to_owned();
    }
    let mut short: String = name.chars().take(NAME_WIDTH_MAX - 1).collect();
    short.push('…');
    short
}

/// Rows under a header, columns two spaces apart: text left-aligned, numbers right-aligned.
fn aligned(header: &[&str], numeric: &[bool], rows: &[Vec<String>]) -> Vec<String> {
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(numeric)
            .map(|((cell, &width), &number)| {
                let pad = " ".repeat(width - cell.chars().count());
                if number {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        padded.join(COLUMN_GAP).trim_end().to_owned()
    };
    let mut lines = vec![line(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|row| line(row.iter().map(String::as_str).collect())),
    );
    lines
}

/// The view of one refresh as lines of text.
fn view_lines(
    previous: Option<&Sample>,
    current: &Sample,
    refresh: u64,
    interval_ms: u64,
) -> Vec<String> {
    let mut lines = vec![
        format!(
            "galgo top  refresh {refresh}  {}  every {interval_ms} ms",
            human_time(current.taken_us)
        ),
        String::new(),
    ];
    let topic_rows: Vec<Vec<String>> = current
        .topics
        .iter()
        .map(|topic| {
            let (new, rate) = match change(previous, current, topic) {
                Some((new, rate)) => (new.to_string(), format!("{rate:.1}")),
                None => ("-".to_owned(), "-".to_owned()),
            };
            let (stream, name) = (cut(&topic.stream), cut(&topic.topic));
            let (partitions, messages) = (topic.partitions.to_string(), topic.messages.to_string());
            vec![stream, name, partitions, messages, new, rate]
        })
        .collect();
    if topic_rows.is_empty() {
        lines.push("(no topics)".to_owned());
    } else {
        let header = ["STREAM", "TOPIC", "PARTS", "MESSAGES", "NEW", "MSG/S"];
        let numeric = [false, false, true, true, true, true];
        lines.extend(aligned(&header, &numeric, &topic_rows));
    }
    lines.push(String::new());
    let group_rows: Vec<Vec<String>> = current
        .topics
        .iter()
        .flat_map(|topic| {
            topic.groups.iter().map(|group| {
                let (stream, name) = (cut(&topic.stream), cut(&topic.topic));
                let members = group.members.to_string();
                vec![
                    stream,
                    name,
                    cut(&group.name),
                    members,
                    group.lag.to_string(),
                ]
            })
        })
        .collect();
    if group_rows.is_empty() {
        lines.push("(no consumer groups)".to_owned());
    } else {
        let header = ["STREAM", "TOPIC", "GROUP", "MEMBERS", "LAG"];
        let numeric = [false, false, false, true, true];
        lines.extend(aligned(&header, &numeric, &group_rows));
    }
    lines.extend(consumer_lines(&current.consumers));
    lines
}

/// The single consumers' part of the view, when asked for.
fn consumer_lines(consumers: &Consumers) -> Vec<String> {
    match consumers {
        Consumers::NotAsked => Vec::new(),
        Consumers::Unreachable(why) => vec![String::new(), format!("consumers: {why}")],
        Consumers::Read(lags) if lags.is_empty() => {
            vec![String::new(), "(no consumer offsets)".to_owned()]
        }
        Consumers::Read(lags) => {
            let rows: Vec<Vec<String>> = lags
                .iter()
                .map(|lag| {
                    let consumer = cut(&lag.consumer);
                    vec![
                        cut(&lag.stream),
                        cut(&lag.topic),
                        consumer,
                        lag.lag.to_string(),
                    ]
                })
                .collect();
            let header = ["STREAM", "TOPIC", "CONSUMER", "LAG"];
            let mut lines = vec![String::new()];
            lines.extend(aligned(&header, &[false, false, false, true], &rows));
            lines
        }
    }
}

/// The view of one refresh as one JSON document.
fn view_json(previous: Option<&Sample>, current: &Sample, refresh: u64, interval_ms: u64) -> Value {
    let topics: Vec<Value> = current
        .topics
        .iter()
        .map(|topic| {
            let change = change(previous, current, topic);
            json!({
                "stream": topic.stream,
                "topic": topic.topic,
                "partitions_count": topic.partitions,
                "messages_count": topic.messages,
                "new_messages": change.map(|(new, _)| new),
                "messages_per_second": change.map(|(_, rate)| rate),
                "groups": topic.groups.iter().map(|group| json!({
                    "name": group.name,
                    "members_count": group.members,
                    "lag": group.lag,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let consumers = match &current.consumers {
        Consumers::Read(lags) => json!(
            lags.iter()
                .map(|lag| json!({
                    "stream": lag.stream,
                    "topic": lag.topic,
                    "consumer": lag.consumer,
                    "lag": lag.lag,
                }))
                .collect::<Vec<_>>()
        ),
        Consumers::Unreachable(why) => json!({ "error": why }),
        Consumers::NotAsked => Value::Null,
    };
    json!({
        "refresh": refresh,
        "time_us": current.taken_us,
        "interval_ms": interval_ms,
        "topics": topics,
        "consumers": consumers,
    })
}

/// Where refreshes go: the alternate screen of a terminal, or plain blocks on stdout.
enum Screen {
    /// Redrawn in place; restores the screen and the cursor when dropped.
    Terminal,
    /// One block of text per refresh, a blank line after each.
    Plain,
    /// One JSON document per line per refresh.
    Json,
}

/// Enters the alternate screen and hides the cursor.
const SCREEN_ENTER: &str = "\x1b[?1049h\x1b[?25l";
/// Shows the cursor and leaves the alternate screen: the terminal as it was.
const SCREEN_LEAVE: &str = "\x1b[?25h\x1b[?1049l";
/// Cursor home, before a redraw.
const CURSOR_HOME: &str = "\x1b[H";
/// Clears the rest of a line, and the rest of the screen.
const CLEAR_LINE: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";

impl Screen {
    fn open(format: OutputFormat) -> CliResult<Screen> {
        let screen = match format {
            OutputFormat::Json => Screen::Json,
            OutputFormat::Table if std::io::stdout().is_terminal() => Screen::Terminal,
            OutputFormat::Table => Screen::Plain,
        };
        if let Screen::Terminal = screen {
            write_stdout(SCREEN_ENTER)?;
        }
        Ok(screen)
    }

    fn show(
        &self,
        previous: Option<&Sample>,
        current: &Sample,
        refresh: u64,
        args: &TopArgs,
    ) -> CliResult<()> {
        let interval_ms = args.interval_ms;
        match self {
            Screen::Json => write_stdout(&format!(
                "{}\n",
                view_json(previous, current, refresh, interval_ms)
            )),
            Screen::Plain => {
                let lines = view_lines(previous, current, refresh, interval_ms);
                write_stdout(&format!("{}\n\n", lines.join("\n")))
            }
            Screen::Terminal => {
                let mut lines = view_lines(previous, current, refresh, interval_ms);
                lines.push(String::new());
                lines.push("Ctrl-C quits".to_owned());
                write_stdout(&redraw(&lines, terminal_size()))
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Screen::Terminal = self {
            let _ = write_stdout(SCREEN_LEAVE);
        }
    }
}

/// The bytes that redraw the screen with `lines`, cut to the terminal's `(rows, columns)` so
/// that nothing wraps or scrolls.
fn redraw(lines: &[String], size: Option<(usize, usize)>) -> String {
    let (rows, columns) = size.unwrap_or((usize::MAX, usize::MAX));
    let shown: Vec<String> = lines
        .iter()
        .take(rows)
        .map(|line| {
            format!(
                "{}{CLEAR_LINE}",
                line.chars().take(columns).collect::<String>()
            )
        })
        .collect();
    format!("{CURSOR_HOME}{}{CLEAR_BELOW}", shown.join("\n"))
}

/// The terminal's rows and columns, when stdout is one that says.
fn terminal_size() -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ only writes the winsize struct we own.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let answered = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (answered && size.ws_row > 0 && size.ws_col > 0)
        .then(|| (usize::from(size.ws_row), usize::from(size.ws_col)))
}

fn write_stdout(text: &str) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|error| CliError::local(format!("write stdout: {error}")))
}

/// A flag that Ctrl-C (SIGINT) and SIGTERM raise, so that the loop stops and the terminal is
/// restored. A second Ctrl-C while a request hangs exits at once (code 130), as an impatient
/// operator expects. signal-hook is already in the workspace (the server uses it).
fn stop_flag() -> CliResult<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::flag;
    const EXIT_INTERRUPTED: i32 = 130;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = |error: std::io::Error| CliError::local(format!("watch Ctrl-C: {error}"));
    for signal in [SIGINT, SIGTERM] {
        flag::register_conditional_shutdown(signal, EXIT_INTERRUPTED, Arc::clone(&stop))
            .map_err(failed)?;
        flag::register(signal, Arc::clone(&stop)).map_err(failed)?;
    }
    Ok(stop)
}

/// Waits `interval`, or less when `stop` is raised meanwhile.
async fn wait(interval: Duration, stop: &AtomicBool) {
    let until = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        compio::time::sleep(left.min(Duration::from_millis(STOP_CHECK_MS))).await;
    }
}

/// Runs `galgo top` until `--iterations` refreshes were shown, or Ctrl-C.
pub async fn run(client: &mut Client, args: TopArgs, format: OutputFormat) -> CliResult<()> {
    let stop = stop_flag()?;
    let screen = Screen::open(format)?;
    let interval = Duration::from_millis(args.interval_ms);
    let mut previous = None;
    let mut refresh = 0;
    while !stop.load(Ordering::Relaxed) {
        let current = sample(client, args.metrics_url.as_deref()).await?;
        refresh += 1;
        screen.show(previous.as_ref(), &current, refresh, &args)?;
        previous = Some(current);
        if args
            .iterations
            .is_some_and(|iterations| refresh >= iterations)
        {
            break;
        }
        wait(interval, &stop).await;
    }
    drop(screen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_after(previous: Option<&Sample>, after: Duration, messages: u64) -> Sample {
        let taken = previous.map_or_else(Instant::now, |p| p.taken + after);
        Sample {
            taken,
            taken_us: 1_700_000_000_000_000,
            consumers: Consumers::NotAsked,
            topics: vec![TopicSample {
                key: (0, 0),
                stream: "orders".into(),
                topic: "a-topic-with-a-very-long-name".into(),
                partitions: 2,
                messages,
                groups: vec![GroupSample {
                    name: "billing".into(),
                    members: 1,
                    lag: 7,
                }],
            }],
        }
    }

    #[test]
    fn the_first_sample_has_no_rate_and_the_next_one_does() {
        let first = sample_after(None, Duration::ZERO, 10);
        let second = sample_after(Some(&first), Duration::from_millis(500), 60);
        assert_eq!(change(None, &first, &first.topics[0]), None);
        assert_eq!(
            change(Some(&first), &second, &second.topics[0]),
            Some((50, 100.0))
        );
        // A purge makes the count go down: no difference is shown rather than a wrong one.
        assert_eq!(change(Some(&second), &first, &first.topics[0]), None);
        let lines = view_lines(Some(&first), &second, 2, 500);
        assert_eq!(
            lines[0],
            "galgo top  refresh 2  2023-11-14T22:13:20Z  every 500 ms"
        );
        assert_eq!(
            lines[2],
            "STREAM  TOPIC             PARTS  MESSAGES  NEW  MSG/S"
        );
        assert_eq!(
            lines[3],
            "orders  a-topic-with-a-…      2        60   50  100.0"
        );
        assert_eq!(lines[5], "STREAM  TOPIC             GROUP    MEMBERS  LAG");
        assert_eq!(lines[6], "orders  a-topic-with-a-…  billing        1    7");
        assert!(lines.iter().all(|line| line.chars().count() <= 80));
    }

    #[test]
    fn a_redraw_fits_the_terminal() {
        let lines = vec!["abcdef".to_owned(), "gh".to_owned(), "ij".to_owned()];
        assert_eq!(
            redraw(&lines, Some((2, 4))),
            "\x1b[Habcd\x1b[K\ngh\x1b[K\x1b[J"
        );
    }
}
