//! Consumer group calls.

use galgo_protocol::Command;
use galgo_protocol::Identifier;
use galgo_protocol::command::groups::{
    CreateConsumerGroup, DeleteConsumerGroup, GetConsumerGroup, GetConsumerGroups, GroupDetails,
    GroupHeader, JoinConsumerGroup, LeaveConsumerGroup,
};

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// CreateConsumerGroup; the server assigns the id.
    pub async fn create_consumer_group(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        name: &str,
    ) -> Result<GroupDetails, ClientError> {
        let request = CreateConsumerGroup {
            stream: stream.clone(),
            topic: topic.clone(),
            name: name.into(),
        };
        let code = CreateConsumerGroup::CODE;
        let bytes = self.request(code, |out| request.encode(out)).await?;
        decoded(code, &bytes, GroupDetails::decode)
    }

    /// JoinConsumerGroup: this connection becomes a member.
    pub async fn join_consumer_group(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
    ) -> Result<(), ClientError> {
        let request = JoinConsumerGroup {
            stream: stream.clone(),
            topic: topic.clone(),
            group: group.clone(),
        };
        self.request(JoinConsumerGroup::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// LeaveConsumerGroup.
    pub async fn leave_consumer_group(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
    ) -> Result<(), ClientError> {
        let request = LeaveConsumerGroup {
            stream: stream.clone(),
            topic: topic.clone(),
            group: group.clone(),
        };
        self.request(LeaveConsumerGroup::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// GetConsumerGroup, or `None` when the group does not exist.
    pub async fn get_consumer_group(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
    ) -> Result<Option<GroupDetails>, ClientError> {
        let request = GetConsumerGroup {
            stream: stream.clone(),
            topic: topic.clone(),
            group: group.clone(),
        };
        let code = GetConsumerGroup::CODE;
        let bytes = self.request(code, |out| request.encode(out)).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        decoded(code, &bytes, GroupDetails::decode).map(Some)
    }

    /// GetConsumerGroups: every group of a topic.
    pub async fn get_consumer_groups(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
    ) -> Result<Vec<GroupHeader>, ClientError> {
        let request = GetConsumerGroups {
            stream: stream.clone(),
            topic: topic.clone(),
        };
        let code = GetConsumerGroups::CODE;
        let bytes = self.request(code, |out| request.encode(out)).await?;
        decoded(code, &bytes, GroupHeader::decode_list)
    }

    /// DeleteConsumerGroup, with its stored offsets.
    pub async fn delete_consumer_group(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        group: &Identifier,
    ) -> Result<(), ClientError> {
        let request = DeleteConsumerGroup {
            stream: stream.clone(),
            topic: topic.clone(),
            group: group.clone(),
        };
        self.request(DeleteConsumerGroup::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
