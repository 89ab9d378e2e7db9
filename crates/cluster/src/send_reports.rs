//! What a driver's sends in one pass leave for raft-rs to hear, for the metadata group and
//! every partition group alike: peers whose message was dropped (`report_unreachable`) and
//! snapshots sent or dropped (`report_snapshot`, so the follower is probed again either way).

use raft::{RawNode, SnapshotStatus, Storage, eraftpb::Message, eraftpb::MessageType};

/// The reports of one pass.
#[derive(Debug, Default)]
pub(crate) struct SendReports {
    unreachable: Vec<u64>,
    snapshots: Vec<(u64, SnapshotStatus)>,
}

impl SendReports {
    /// Hands `message` to `send` (false: dropped) and notes what raft-rs must hear of it.
    pub(crate) fn send(&mut self, message: Message, send: impl FnOnce(Message) -> bool) {
        let to = message.to;
        let snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let sent = send(message);
        if snapshot {
            let status = if sent {
                SnapshotStatus::Finish
            } else {
                SnapshotStatus::Failure
            };
            self.snapshots.push((to, status));
        }
        if !sent && !self.unreachable.contains(&to) {
            self.unreachable.push(to);
        }
    }

    /// Tells `node` what this pass's sends noted, and starts the next pass empty.
    pub(crate) fn report<T: Storage>(&mut self, node: &mut RawNode<T>) {
        for peer in self.unreachable.drain(..) {
            node.report_unreachable(peer);
        }
        for (peer, status) in self.snapshots.drain(..) {
            node.report_snapshot(peer, status);
        }
    }
}
