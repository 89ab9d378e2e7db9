//! The clients (connections) a shard serves, as GetClients reports them. Part of the shard's
//! [`Context`](crate::context::Context).

use std::collections::HashMap;

/// Transport codes as the protocol reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Transport {
    /// Plain or TLS TCP.
    Tcp = 1,
    /// Plain or TLS WebSocket.
    WebSocket = 4,
}

/// One client as GetClients reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRecord {
    /// XXH32 of the peer address text.
    pub client_id: u32,
    /// The logged-in user, if any.
    pub user_id: Option<u32>,
    /// How it connected.
    pub transport: Transport,
    /// Peer address as text, e.g. "127.0.0.1:53412".
    pub address: String,
    /// A 0.9 connection's bound session: the client id of its Register and the session
    /// number, which a data connection's AttachConsumerSession names.
    pub vsr_session: Option<(u128, u64)>,
}

/// The clients of one shard. Lives on that shard only.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: HashMap<u32, ClientRecord>,
}

impl ClientTable {
    /// Registers a connection.
    pub fn insert(&mut self, record: ClientRecord) {
        self.clients.insert(record.client_id, record);
    }
    /// Forgets a connection.
    pub fn remove(&mut self, client_id: u32) {
        self.clients.remove(&client_id);
    }
    /// Records a login or logout.
    pub fn set_user(&mut self, client_id: u32, user_id: Option<u32>) {
        if let Some(record) = self.clients.get_mut(&client_id) {
            record.user_id = user_id;
        }
    }
    /// Records a 0.9 connection's bound session (None once it ends).
    pub fn set_vsr_session(&mut self, client_id: u32, bound: Option<(u128, u64)>) {
        if let Some(record) = self.clients.get_mut(&client_id) {
            record.vsr_session = bound;
        }
    }
    /// The connection bound to the 0.9 session `(client, session)`: its client id and user.
    pub fn find_vsr_session(&self, client: u128, session: u64) -> Option<(u32, Option<u32>)> {
        self.clients
            .values()
            .find(|record| record.vsr_session == Some((client, session)))
            .map(|record| (record.client_id, record.user_id))
    }
    /// Marks every client logged in as `user_id` as logged out (the user was deleted or
    /// deactivated); each connection ends its own session at its next request.
    pub fn log_out_user(&mut self, user_id: u32) {
        for record in self.clients.values_mut() {
            if record.user_id == Some(user_id) {
                record.user_id = None;
            }
        }
    }
    /// Every client of this shard.
    pub fn all(&self) -> Vec<ClientRecord> {
        self.clients.values().cloned().collect()
    }
    /// How many connected over `transport`.
    pub fn count(&self, transport: Transport) -> usize {
        self.clients
            .values()
            .filter(|record| record.transport == transport)
            .count()
    }
    /// How many.
    pub fn len(&self) -> usize {
        self.clients.len()
    }
}
