//! What the requests of one shard did: count and latency per command, answers per error code,
//! and the messages and bytes in and out of each partition it owns. Plain cells owned by the
//! shard (its `Context`), written by its connections and partition calls with no lock and no
//! atomic, copied out when /metrics gathers them.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use galgo_metadata::PartitionKey;
use galgo_protocol::{CommandCode, ErrorCode};

/// Upper bounds of the latency buckets, in µs (a request's handling, from decoded to
/// answered): from a cached read to a slow fsync.
pub const LATENCY_BUCKETS_US: [u64; 13] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// One command's figures.
#[derive(Clone, Debug, Default)]
pub struct CommandStats {
    /// Requests handled.
    pub count: u64,
    /// Sum of their latencies, µs.
    pub latency_sum_us: u64,
    /// Requests per latency bucket (not cumulative); the last counts those over every bound.
    pub buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
}

/// Messages and bytes into and out of one partition, counted on its owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages appended (duplicates dropped by deduplication not counted).
    pub messages_in: u64,
    /// Bytes of the batches appended, as received.
    pub bytes_in: u64,
    /// Messages returned by polls.
    pub messages_out: u64,
    /// Bytes of the messages returned by polls.
    pub bytes_out: u64,
}

/// The shard's request figures. Lives in its `Context`.
#[derive(Debug)]
pub struct RequestStats {
    commands: RefCell<Vec<CommandStats>>,
    errors: RefCell<BTreeMap<u32, u64>>,
    traffic: RefCell<HashMap<PartitionKey, Traffic>>,
}

impl Default for RequestStats {
    fn default() -> Self {
        Self {
            // One slot per command of the table, in its order.
            commands: RefCell::new(vec![CommandStats::default(); CommandCode::ALL.len()]),
            errors: RefCell::default(),
            traffic: RefCell::default(),
        }
    }
}

impl RequestStats {
    /// Counts one handled request of `command` that took `latency`.
    pub fn record(&self, command: CommandCode, latency: Duration) {
        let index = CommandCode::ALL
            .iter()
            .position(|&code| code == command)
            .expect("every command is in the table");
        let mut commands = self.commands.borrow_mut();
        let stats = &mut commands[index];
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        stats.count += 1;
        stats.latency_sum_us = stats.latency_sum_us.saturating_add(latency_us);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|&bound| latency_us <= bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        stats.buckets[bucket] += 1;
    }

    /// Counts one error answer.
    pub fn record_error(&self, code: ErrorCode) {
        *self.errors.borrow_mut().entry(code.as_u32()).or_insert(0) += 1;
    }

    /// Counts a batch appended to `partition` (on its owner).
    pub fn record_in(&self, partition: PartitionKey, messages: u64, bytes: u64) {
        let mut traffic = self.traffic.borrow_mut();
        let entry = traffic.entry(partition).or_default();
        entry.messages_in += messages;
        entry.bytes_in += bytes;
    }

    /// Counts messages a poll returned from `partition` (on its owner).
    pub fn record_out(&self, partition: PartitionKey, messages: u64, bytes: u64) {
        let mut traffic = self.traffic.borrow_mut();
        let entry = traffic.entry(partition).or_default();
        entry.messages_out += messages;
        entry.bytes_out += bytes;
    }

    /// A partition's traffic since the shard started (or since it took the partition).
    pub fn traffic(&self, partition: PartitionKey) -> Traffic {
        self.traffic
            .borrow()
            .get(&partition)
            .copied()
            .unwrap_or_default()
    }

    /// Forgets a partition this shard no longer owns.
    pub fn forget(&self, partition: PartitionKey) {
        self.traffic.borrow_mut().remove(&partition);
    }

    /// The figures of every command that was handled at least once.
    pub fn commands(&self) -> Vec<(CommandCode, CommandStats)> {
        let commands = self.commands.borrow();
        CommandCode::ALL
            .iter()
            .zip(commands.iter())
            .filter(|(_, stats)| stats.count > 0)
            .map(|(code, stats)| (*code, stats.clone()))
            .collect()
    }

    /// Error answers per protocol error code.
    pub fn errors(&self) -> Vec<(u32, u64)> {
        self.errors.borrow().iter().map(|(c, n)| (*c, *n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_land_in_their_bucket_and_errors_by_code() {
        let stats = RequestStats::default();
        stats.record(CommandCode::Ping, Duration::from_micros(40));
        stats.record(CommandCode::Ping, Duration::from_micros(300));
        stats.record(CommandCode::SendMessages, Duration::from_secs(3));
        stats.record_error(ErrorCode::InvalidCommand);
        stats.record_error(ErrorCode::InvalidCommand);
        let commands = stats.commands();
        assert_eq!(commands.len(), 2);
        let (code, ping) = &commands[0];
        assert_eq!(*code, CommandCode::Ping);
        assert_eq!((ping.count, ping.latency_sum_us), (2, 340));
        assert_eq!(ping.buckets[0], 1, "40 µs <= 50");
        assert_eq!(ping.buckets[3], 1, "300 µs <= 500");
        let (_, send) = &commands[1];
        assert_eq!(
            send.buckets[LATENCY_BUCKETS_US.len()],
            1,
            "3 s is over every bound"
        );
        assert_eq!(
            stats.errors(),
            vec![(ErrorCode::InvalidCommand.as_u32(), 2)]
        );
    }
}
