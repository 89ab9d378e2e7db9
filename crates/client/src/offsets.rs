//! Consumer offset calls.

use galgo_protocol::Command;
use galgo_protocol::command::offsets::{
    ConsumerOffsetInfo, DeleteConsumerOffset, GetConsumerOffset, OffsetTarget, StoreConsumerOffset,
};

use crate::client::{Client, decoded};
use crate::error::ClientError;

impl Client {
    /// GetConsumerOffset, or `None` when the consumer has no stored offset there.
    pub async fn get_consumer_offset(
        &mut self,
        target: &OffsetTarget,
    ) -> Result<Option<ConsumerOffsetInfo>, ClientError> {
        let request = GetConsumerOffset {
            target: target.clone(),
        };
        let code = GetConsumerOffset::CODE;
        let bytes = self.request(code, |out| request.encode(out)).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        decoded(code, &bytes, ConsumerOffsetInfo::decode).map(Some)
    }

    /// StoreConsumerOffset.
    pub async fn store_consumer_offset(
        &mut self,
        target: &OffsetTarget,
        offset: u64,
    ) -> Result<(), ClientError> {
        let request = StoreConsumerOffset {
            target: target.clone(),
            offset,
        };
        self.request(StoreConsumerOffset::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }

    /// DeleteConsumerOffset.
    pub async fn delete_consumer_offset(
        &mut self,
        target: &OffsetTarget,
    ) -> Result<(), ClientError> {
        let request = DeleteConsumerOffset {
            target: target.clone(),
        };
        self.request(DeleteConsumerOffset::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
