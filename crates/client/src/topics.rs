//! Topic calls.

use galgo_protocol::Identifier;
use galgo_protocol::command::topics::{
    CompressionAlgorithm, CreateTopic, DeleteTopic, EXPIRY_NEVER, GetTopic, TOPIC_SIZE_UNLIMITED,
    TopicDetails,
};

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// CreateTopic with `partitions_count` partitions, no compression, messages that never
    /// expire and no size limit.
    pub async fn create_topic(
        &mut self,
        stream: &Identifier,
        name: &str,
        partitions_count: u32,
    ) -> Result<TopicDetails, ClientError> {
        let request = CreateTopic {
            stream: stream.clone(),
            partitions_count,
            compression: CompressionAlgorithm::None,
            message_expiry_us: EXPIRY_NEVER,
            max_topic_size_bytes: TOPIC_SIZE_UNLIMITED,
            replication_factor: 1,
            name: name.into(),
        };
        let bytes = self
            .request(CreateTopic::CODE, |out| request.encode(out))
            .await?;
        decoded(CreateTopic::CODE, &bytes, TopicDetails::decode)
    }

    /// GetTopic, or `None` when the topic does not exist.
    pub async fn get_topic(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<Option<TopicDetails>, ClientError> {
        let request = GetTopic {
            stream: stream.clone(),
            topic: topic.clone(),
        };
        let bytes = self
            .request(GetTopic::CODE, |out| request.encode(out))
            .await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        decoded(GetTopic::CODE, &bytes, TopicDetails::decode).map(Some)
    }

    /// DeleteTopic.
    pub async fn delete_topic(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<(), ClientError> {
        let request = DeleteTopic {
            stream: stream.clone(),
            topic: topic.clone(),
        };
        self.request(DeleteTopic::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
