//! The harness shared by galgo-server's end-to-end tests.
//!
//! * [`server`]: start a real `galgo-server` child process on `127.0.0.1:0` with a temp data dir,
//!   wait for its ready line, stop it (SIGTERM), crash it (SIGKILL), restart it on the same dir.
//! * [`raw`]: speak the wire protocol byte by byte over a blocking TCP socket with timeouts.
//! * [`sdk`]: a connected, logged-in client of the official Iggy Rust SDK, over TCP, TCP+TLS,
//!   WebSocket or WSS.
//! * [`sdk_next`]: the same for the 0.9-generation SDK (`iggy` 0.11.0, VSR framing).
//! * [`vsr`]: raw 0.9-generation frames, built by hand, over a blocking TCP socket.
//! * [`certs`]: a test CA and a localhost certificate as PEM files.
//! * [`fault_proxy`]: a TCP proxy that cuts or delays a link between cluster nodes on command.
//!
//! Every wait here is a wait on a condition with a bounded timeout; nothing sleeps to wait.
//! Each test binary uses only part of the harness, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod certs;
pub mod fault_proxy;
pub mod raw;
pub mod sdk;
pub mod sdk_next;
pub mod server;
pub mod vsr;

#[allow(unused_imports)]
pub use server::TestServer;
