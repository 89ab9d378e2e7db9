//! System calls: Ping, GetStats, GetMe, GetClient, GetClients and GetClusterMetadata.

use galgo_protocol::Command;
use galgo_protocol::CommandCode;
use galgo_protocol::command::system::{
    ClientInfo, ClientSummary, ClusterMetadata, GetClient, Stats,
};

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

    /// GetClusterMetadata: the cluster's name and nodes, each with its advertised addresses,
    /// role and status (a single node names itself).
    pub async fn get_cluster_metadata(&mut self) -> Result<ClusterMetadata, ClientError> {
        let bytes = self
            .request(CommandCode::GetClusterMetadata, |_| {})
            .await?;
        decoded(
            CommandCode::GetClusterMetadata,
            &bytes,
            ClusterMetadata::decode,
        )
    }

    /// GetMe: this connection's own client record.
    pub async fn get_me(&mut self) -> Result<ClientInfo, ClientError> {
        let bytes = self.request(CommandCode::GetMe, |_| {}).await?;
        decoded(CommandCode::GetMe, &bytes, ClientInfo::decode_details)
    }

    /// GetClient, or `None` when no connected client has that id.
    pub async fn get_client(&mut self, client_id: u32) -> Result<Option<ClientInfo>, ClientError> {
        let request = GetClient { client_id };
        let bytes = self
            .request(GetClient::CODE, |out| request.encode(out))
            .await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        decoded(GetClient::CODE, &bytes, ClientInfo::decode_details).map(Some)
    }

    /// GetClients: every connected client, without their group lists.
    pub async fn get_clients(&mut self) -> Result<Vec<ClientSummary>, ClientError> {
        let bytes = self.request(CommandCode::GetClients, |_| {}).await?;
        decoded(
            CommandCode::GetClients,
            &bytes,
            ClientInfo::decode_summary_list,
        )
    }
}
