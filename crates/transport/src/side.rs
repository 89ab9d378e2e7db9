//! Which end of a connection an adapter serves: [`Client`] or [`Server`], a type parameter of
//! [`TlsStream`](crate::TlsStream) and [`WsStream`](crate::WsStream).
//!
//! ```text
//!               Client                               Server
//!   TLS         rustls ClientConnection: connect     rustls ServerConnection: accept
//!   WebSocket   connect; masks every frame it sends  accept; unmasks binary frames into the
//!               (one pass), reads through tungstenite  frame loop's buffer, answers unmasked
//! ```
//!
//! Everything else (buffers, record and frame plumbing, errors, closing) is written once.

use std::ops::DerefMut;

use rustls::{
    ClientConnection, ConnectionCommon, ServerConnection, client::ClientConnectionData,
    server::ServerConnectionData,
};

use crate::{ws_mask::Masks, ws_unframing::Unframing};

/// The client end: connects, and masks what it sends over WebSocket.
#[derive(Debug)]
pub enum Client {}

/// The server end: accepts, and unmasks what it receives over WebSocket.
#[derive(Debug)]
pub enum Server {}

/// What distinguishes the two ends, as types. Implemented by [`Client`] and [`Server`] only.
pub trait Side: sealed::Sealed + 'static {
    /// Who is at the other end, for errors ("the server left during the TLS handshake").
    const PEER: &'static str;
    /// rustls's connection for this end.
    type TlsConnection: DerefMut<Target = ConnectionCommon<Self::TlsData>>;
    /// The side data of that connection.
    type TlsData;
    /// What a WebSocket of this end keeps besides tungstenite's state: the client's frame
    /// masks, or where the server stands in the binary frame it is passing on.
    type WsFraming;
}

impl Side for Client {
    const PEER: &'static str = "the server";
    type TlsConnection = ClientConnection;
    type TlsData = ClientConnectionData;
    type WsFraming = Masks;
}

impl Side for Server {
    const PEER: &'static str = "the client";
    type TlsConnection = ServerConnection;
    type TlsData = ServerConnectionData;
    type WsFraming = Unframing;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Client {}
    impl Sealed for super::Server {}
}
