//! Topic and partition calls.

use galgo_protocol::Command;
use galgo_protocol::Identifier;
use galgo_protocol::command::topics::{
    CompressionAlgorithm, CreatePartitions, CreateTopic, DeletePartitions, DeleteTopic,
    EXPIRY_NEVER, GetTopic, GetTopics, PurgeTopic, TOPIC_SIZE_UNLIMITED, TopicDetails, TopicHeader,
    UpdateTopic,
};

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// CreateTopic with `partitions_count` partitions, no compression, messages that never
    /// expire, no size limit and the server's replication factor (min(3, nodes) on a
    /// cluster).
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
            replication_factor: 0,
            name: name.into(),
        };
        self.create_topic_with(&request).await
    }

    /// CreateTopic with every setting the request carries (compression, expiry, size limit).
    pub async fn create_topic_with(
        &mut self,
        request: &CreateTopic,
    ) -> Result<TopicDetails, ClientError> {
        let bytes = self
            .request(CreateTopic::CODE, |out| request.encode(out))
            .await?;
        decoded(CreateTopic::CODE, &bytes, TopicDetails::decode)
    }

    /// GetTopics: every topic of a stream.
    pub async fn get_topics(
        &mut self,
        stream: &Identifier,
    ) -> Result<Vec<TopicHeader>, ClientError> {
        let request = GetTopics {
            stream: stream.clone(),
        };
        let bytes = self
            .request(GetTopics::CODE, |out| request.encode(out))
            .await?;
        decoded(GetTopics::CODE, &bytes, TopicHeader::decode_list)
    }

    /// UpdateTopic: the name, compression, expiry and size limit, all replaced at once.
    pub async fn update_topic(&mut self, request: &UpdateTopic) -> Result<(), ClientError> {
        self.request(UpdateTopic::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// PurgeTopic: deletes every message, keeping the partitions.
    pub async fn purge_topic(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<(), ClientError> {
        let request = PurgeTopic {
            stream: stream.clone(),
            topic: topic.clone(),
        };
        self.request(PurgeTopic::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// CreatePartitions: appends `partitions_count` partitions to the topic.
    pub async fn create_partitions(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        partitions_count: u32,
    ) -> Result<(), ClientError> {
        let request = CreatePartitions {
            stream: stream.clone(),
            topic: topic.clone(),
            partitions_count,
        };
        self.request(CreatePartitions::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// DeletePartitions: removes the topic's `partitions_count` highest-numbered partitions.
    pub async fn delete_partitions(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        partitions_count: u32,
    ) -> Result<(), ClientError> {
        let request = DeletePartitions {
            stream: stream.clone(),
            topic: topic.clone(),
            partitions_count,
        };
        self.request(DeletePartitions::CODE, |out| request.encode(out))
            .await
            .map(drop)
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
