//! Segment calls.

use galgo_protocol::Command;
use galgo_protocol::Identifier;
use galgo_protocol::command::topics::DeleteSegments;

use crate::client::Client;
use crate::error::ClientError;

impl Client {
    /// DeleteSegments: deletes up to `segments_count` of the partition's oldest sealed
    /// segments, with their messages.
    pub async fn delete_segments(
        &mut self,
        stream: &Identifier,
        topic: &Identifier,
        partition_id: u32,
        segments_count: u32,
    ) -> Result<(), ClientError> {
        let request = DeleteSegments {
            stream: stream.clone(),
            topic: topic.clone(),
            partition_id,
            segments_count,
        };
        self.request(DeleteSegments::CODE, |out| request.encode(out))
            .await
            .map(drop)
    }
}
