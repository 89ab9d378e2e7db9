//! One file per command family; each declares its clap subcommands and runs them.

pub mod groups;
pub mod login;
pub mod messages;
pub mod offsets;
pub mod partitions;
pub mod streams;
pub mod system;
pub mod tokens;
pub mod top;
pub mod topics;
pub mod users;
