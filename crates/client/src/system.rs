//! System calls: Ping and GetStats.

use galgo_protocol::CommandCode;
use galgo_protocol::command::system::Stats;

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// Ping: an empty request answered with an empty response.
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.request(CommandCode::Ping, |_| {}).await.map(drop)
    }

    /// GetStats: the server's process, host and data statistics, including its version.
    pub async fn get_stats(&mut self) -> Result<Stats, ClientError> {
        let bytes = self.request(CommandCode::GetStats, |_| {}).await?;
        decoded(CommandCode::GetStats, &bytes, Stats::decode)
    }
}
