//! Stream calls.

use galgo_protocol::Command;
use galgo_protocol::Identifier;
use galgo_protocol::command::streams::{
    CreateStream, DeleteStream, GetStream, GetStreams, PurgeStream, StreamDetails, StreamHeader,
    UpdateStream,
};

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// CreateStream; the server assigns the id.
    pub async fn create_stream(&mut self, name: &str) -> Result<StreamDetails, ClientError> {
        let request = CreateStream { name: name.into() };
        let bytes = self
            .request(CreateStream::CODE, |out| request.encode(out))
            .await?;
        decoded(CreateStream::CODE, &bytes, StreamDetails::decode)
    }

    /// GetStream, or `None` when the stream does not exist.
    pub async fn get_stream(
        &mut self,
        stream: &Identifier,
    ) -> Result<Option<StreamDetails>, ClientError> {
        let request = GetStream {
            stream: stream.clone(),
        };
        let bytes = self
            .request(GetStream::CODE, |out| request.encode(out))
            .await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        decoded(GetStream::CODE, &bytes, StreamDetails::decode).map(Some)
    }

    /// GetStreams.
    pub async fn get_streams(&mut self) -> Result<Vec<StreamHeader>, ClientError> {
        let bytes = self
            .request(GetStreams::CODE, |out| GetStreams.encode(out))
            .await?;
        decoded(GetStreams::CODE, &bytes, StreamHeader::decode_list)
    }

    /// DeleteStream, with its topics and messages.
    pub async fn delete_stream(&mut self, stream: &Identifier) -> Result<(), ClientError> {
        let request = DeleteStream {
            stream: stream.clone(),
        };
        self.request(DeleteStream::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// UpdateStream: renames the stream.
    pub async fn update_stream(
        &mut self,
        stream: &Identifier,
        name: &str,
    ) -> Result<(), ClientError> {
        let request = UpdateStream {
            stream: stream.clone(),
            name: name.into(),
        };
        self.request(UpdateStream::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// PurgeStream: deletes every message of every topic, keeping the topics.
    pub async fn purge_stream(&mut self, stream: &Identifier) -> Result<(), ClientError> {
        let request = PurgeStream {
            stream: stream.clone(),
        };
        self.request(PurgeStream::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
