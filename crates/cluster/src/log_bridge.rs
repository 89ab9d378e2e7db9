//! raft-rs logs through slog; galgo logs through tracing. This drain hands every slog record
//! to tracing (target `raft`), with its key-value pairs as one field, so raft-rs needs no slog
//! backend of its own and its lines obey the server's log level like any other. Its info lines
//! (every vote of every election) go to debug.

use std::fmt::Write as _;

use slog::{Drain, KV, Level, OwnedKVList, Record, Serializer};

/// The slog drain that writes into tracing.
pub struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        // raft-rs logs at debug for every message it steps: formatting those fields only to
        // have tracing drop them would cost the shard an allocation per message.
        let enabled = match record.level() {
            Level::Critical | Level::Error => {
                tracing::enabled!(target: "raft", tracing::Level::ERROR)
            }
            Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            Level::Info | Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", fields = %fields, "{message}");
            }
            Level::Warning => tracing::warn!(target: "raft", fields = %fields, "{message}"),
            // raft-rs says at info what every election does; the driver logs the outcome (a
            // new leader) itself, so these lines are for debugging.
            Level::Info | Level::Debug => {
                tracing::debug!(target: "raft", fields = %fields, "{message}");
            }
            Level::Trace => tracing::trace!(target: "raft", fields = %fields, "{message}"),
        }
        Ok(())
    }
}

/// Key-value pairs as `key=value key=value`.
struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments<'_>) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={value}");
        Ok(())
    }
}

/// A logger for one Raft group.
pub fn logger(group: u64, node: u64) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("group" => group, "node" => node),
    )
}
