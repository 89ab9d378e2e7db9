//! galgo-protocol: the pure codec of the wire protocol (Apache Iggy 0.8 binary protocol).
//!
//! No I/O and no async live here: frames, command codes, request and response types,
//! identifiers and message layouts over `bytes`. See `../shared/design/PROTOCOL.md`.
#![warn(missing_docs)]

pub mod message;
