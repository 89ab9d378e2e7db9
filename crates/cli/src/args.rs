//! Parsers for the values subcommands take: identifiers, consumers, durations, times, sizes.

use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use galgo_protocol::{Consumer, Identifier};

/// An identifier from the command line: digits are a numeric id, anything else a name.
pub fn identifier(text: &str) -> Result<Identifier, String> {
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text
            .parse::<u32>()
            .map(Identifier::Numeric)
            .map_err(|_| format!("{text} is larger than a 32-bit id"));
    }
    Identifier::named(text).map_err(|_| "a name is 1 to 255 bytes".to_owned())
}

/// Shows an identifier as the user would type it.
pub fn show(id: &Identifier) -> String {
    match id {
        Identifier::Numeric(id) => id.to_string(),
        Identifier::Name(name) => name.clone(),
    }
}

/// A duration such as `90s`, `15m`, `1h 30m`, `7d`.
pub fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|error| format!("{error} (try 30s, 15m, 2h or 7d)"))
}

/// A point in time: RFC 3339 (`2024-05-01T12:00:00Z`) or microseconds since the epoch.
pub fn timestamp_us(text: &str) -> Result<u64, String> {
    if let Ok(us) = text.parse::<u64>() {
        return Ok(us);
    }
    let time = humantime::parse_rfc3339_weak(text)
        .map_err(|_| format!("{text:?} is neither RFC 3339 nor microseconds since the epoch"))?;
    let since = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "times before 1970 are not supported".to_owned())?;
    Ok(since.as_micros() as u64)
}

/// A size such as `512`, `64KiB`, `10MB`, `1GiB` (decimal and binary units).
pub fn size_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (try 512, 64KiB, 10MB, 1GiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text} is too large"))
}

/// Who polls or whose offset it is: a single consumer (the default, id 1) or a group.
#[derive(Args, Clone, Debug)]
pub struct ConsumerArgs {
    /// As this single consumer (id or name).
    #[arg(long, value_parser = identifier, default_value = "1", conflicts_with = "group")]
    pub consumer: Identifier,
    /// As this consumer group (id or name) instead of a single consumer.
    #[arg(long, value_parser = identifier)]
    pub group: Option<Identifier>,
}

impl ConsumerArgs {
    /// The protocol's consumer.
    pub fn consumer(&self) -> Consumer {
        match &self.group {
            Some(group) => Consumer::Group(group.clone()),
            None => Consumer::Single(self.consumer.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_numbers_or_names() {
        assert_eq!(identifier("7"), Ok(Identifier::Numeric(7)));
        assert_eq!(identifier("orders"), Ok(Identifier::Name("orders".into())));
        assert_eq!(identifier("7a"), Ok(Identifier::Name("7a".into())));
        assert!(identifier("").is_err());
        assert!(identifier("99999999999").is_err());
    }

    #[test]
    fn times_sizes_and_durations_parse() {
        assert_eq!(timestamp_us("42"), Ok(42));
        assert_eq!(
            timestamp_us("2023-11-14T22:13:20Z"),
            Ok(1_700_000_000_000_000)
        );
        assert!(timestamp_us("yesterday").is_err());
        assert_eq!(size_bytes("64KiB"), Ok(65_536));
        assert_eq!(size_bytes("10MB"), Ok(10_000_000));
        assert_eq!(size_bytes("512"), Ok(512));
        assert!(size_bytes("1XB").is_err());
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(duration("soon").is_err());
    }
}
