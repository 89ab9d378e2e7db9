//! What the crate's unit tests build states with.

use crate::{Change, Event, Metadata, TopicSettings};

/// Settings of a topic created with every server default.
pub(crate) fn settings() -> TopicSettings {
    TopicSettings {
        compression: 1,
        message_expiry_us: 0,
        max_topic_size_bytes: 0,
        replication_factor: 0,
    }
}

/// Applies `change` as the next event.
pub(crate) fn commit(metadata: &mut Metadata, change: impl Into<Change>) {
    let event = Event {
        version: metadata.version() + 1,
        change: change.into(),
    };
    metadata.apply(&event);
}
