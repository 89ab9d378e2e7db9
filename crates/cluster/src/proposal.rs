//! What the metadata group's entries hold: a change as a node prepared it, and the metadata
//! version it was prepared against.
//!
//! Any node prepares a change against its own replica (ids, names, validation, as a single
//! node does) and proposes it; raft-rs forwards a follower's proposal to the leader. Every node
//! applies the committed entry only if its replica is still at `expected_version`: otherwise
//! another change came first, the entry changes nothing anywhere (every replica skips it
//! alike), and the node that proposed it prepares again against the newer state. This makes a
//! proposal safe to send twice, too: once one copy applied, the version has moved and the
//! other is skipped.

use galgo_metadata::Change;
use rkyv::{Archive, Deserialize, Serialize, rancor, util::AlignedVec};

/// One proposed metadata change.
#[derive(Archive, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct MetadataProposal {
    /// The node that proposed it.
    pub origin: u64,
    /// Its number among that node's proposals in this run (with `origin`, whom to answer).
    pub sequence: u64,
    /// The metadata version of the replica it was prepared against.
    pub expected_version: u64,
    /// The change.
    pub change: Change,
}

impl MetadataProposal {
    /// The entry's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        rkyv::to_bytes::<rancor::Error>(self)
            .expect("serialising a proposal into memory cannot fail")
            .into_vec()
    }

    /// Reads a proposal back from an entry, validating the archive.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<MetadataProposal, rancor::Error>(&aligned)
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use galgo_metadata::{NewStream, StreamChange, StreamId};

    #[test]
    fn proposals_round_trip_and_garbage_is_refused() {
        let proposal = MetadataProposal {
            origin: 2,
            sequence: 9,
            expected_version: 41,
            change: Change::Stream(StreamChange::Create(NewStream {
                id: StreamId(3),
                name: "orders".into(),
                created_at_us: 5,
            })),
        };
        let bytes = proposal.to_bytes();
        assert_eq!(MetadataProposal::from_bytes(&bytes).unwrap(), proposal);
        assert!(MetadataProposal::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    }
}
