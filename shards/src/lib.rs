//! galgo-shards
