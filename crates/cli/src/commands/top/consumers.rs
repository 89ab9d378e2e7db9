//! Single consumers' lag for `galgo top`, read from the server's /metrics: the protocol has no
//! call that lists consumers (their stored offsets can be read only by id), while /metrics
//! exports `galgo_consumer_lag_messages` for every stored consumer offset.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// How long fetching /metrics may take before the view says it is unreachable.
const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// The metric read.
const CONSUMER_LAG: &str = "galgo_consumer_lag_messages";

/// One consumer's lag on one topic (summed over the topic's partitions).
#[derive(Debug, PartialEq, Eq)]
pub struct ConsumerLag {
    /// The stream's name.
    pub stream: String,
    /// The topic's name.
    pub topic: String,
    /// The consumer's id.
    pub consumer: String,
    /// Messages after its stored offsets.
    pub lag: u64,
}

/// What a refresh knows of single consumers.
#[derive(Debug)]
pub enum Consumers {
    /// No `--metrics-url`: not shown.
    NotAsked,
    /// /metrics could not be read: why.
    Unreachable(String),
    /// Every consumer with a stored offset, sorted by stream, topic and consumer.
    Read(Vec<ConsumerLag>),
}

/// Reads the consumers' lag from `url` (`http://HOST:PORT/PATH`).
pub fn fetch(url: &str) -> Consumers {
    match fetch_text(url).and_then(|text| parse(&text)) {
        Ok(lags) => Consumers::Read(lags),
        Err(why) => Consumers::Unreachable(format!("{url}: {why}")),
    }
}

fn fetch_text(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are read")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let address = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|error| error.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream =
        TcpStream::connect_timeout(&address, FETCH_TIMEOUT).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(FETCH_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("not an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.lines().next().unwrap_or_default().to_owned());
    }
    Ok(body.to_owned())
}

/// The consumers' lag in an exposition, summed per stream, topic and consumer.
fn parse(text: &str) -> Result<Vec<ConsumerLag>, String> {
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).map_err(|error| error.to_string())?;
    let mut lags: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == CONSUMER_LAG) {
        let value = match sample.value {
            prometheus_parse::Value::Gauge(value) | prometheus_parse::Value::Untyped(value) => {
                value
            }
            _ => continue,
        };
        let label = |name: &str| sample.labels.get(name).unwrap_or_default().to_owned();
        let key = (label("stream"), label("topic"), label("consumer"));
        *lags.entry(key).or_insert(0) += value as u64;
    }
    Ok(lags
        .into_iter()
        .map(|((stream, topic, consumer), lag)| ConsumerLag {
            stream,
            topic,
            consumer,
            lag,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_summed_per_consumer_and_topic() {
        let text = "# TYPE galgo_consumer_lag_messages gauge\n\
            galgo_consumer_lag_messages{stream=\"s\",topic=\"t\",partition=\"0\",consumer=\"7\"} 2\n\
            galgo_consumer_lag_messages{stream=\"s\",topic=\"t\",partition=\"1\",consumer=\"7\"} 3\n\
            galgo_consumer_lag_messages{stream=\"s\",topic=\"t\",partition=\"1\",consumer=\"9\"} 1\n\
            # EOF\n";
        let lags = parse(text).expect("parse");
        let of = |consumer: &str| lags.iter().find(|l| l.consumer == consumer).map(|l| l.lag);
        assert_eq!((of("7"), of("9"), lags.len()), (Some(5), Some(1), 2));
    }

    #[test]
    fn only_http_urls_are_read() {
        assert!(matches!(
            fetch("https://x/metrics"),
            Consumers::Unreachable(_)
        ));
    }
}
