//! The metadata group's Raft log on disk: `state/cluster/metadata.raft`, a record file (the
//! metadata log's framing: length, XXH3, payload; fdatasynced per append; a torn tail cut at
//! open). Replaying it rebuilds the group's `MemStorage` (entries and hard state): metadata is
//! small, so the whole log lives in memory as well.
//!
//! ```text
//! record 0: "galgo-raft-log" | format u16 | node id u64 | cluster id (rest)      identity
//! record n: term u64 | vote u64 | commit u64 | entries u32 | per entry:
//!           length u32 | raft-rs `eraftpb.Entry`, protobuf-encoded            one Ready
//! ```
//!
//! Each Ready's entries and hard state go in one record, so a restart never finds a commit
//! past the entries it covers. Entries that overwrite a tail (a new leader's log) are appended
//! like any others; replaying them in order truncates as raft-rs did.

use std::path::PathBuf;

use galgo_storage::MetadataLog;
use protobuf::Message as _;
use raft::{
    eraftpb::{ConfState, Entry, HardState},
    storage::MemStorage,
};

const MAGIC: &[u8; 14] = b"galgo-raft-log";
/// 2: a consumer-group join names the node its client is on (`MembershipChange::Join`), and
/// nodes announce their start (`NodeStarted`). 3: the metadata leader removes the members of
/// a node lost for the member timeout (`NodeLost`), an entry format 2 builds cannot read.
/// A log of another format is refused, not read.
const FORMAT: u16 = 3;

/// The group's log file.
pub struct GroupLog {
    file: MetadataLog,
}

impl GroupLog {
    /// Opens (creating) the log of this node in this cluster and rebuilds its storage, with
    /// `voters` as the configuration of a new log. Refuses a log written by another node or
    /// cluster.
    pub async fn open(
        path: PathBuf,
        node_id: u64,
        cluster_id: &str,
        voters: Vec<u64>,
    ) -> Result<(GroupLog, MemStorage), String> {
        let shown = path.display().to_string();
        let (file, records) = MetadataLog::open(path)
            .await
            .map_err(|error| format!("cannot open the cluster log {shown}: {error}"))?;
        let identity = identity_record(node_id, cluster_id);
        let storage = MemStorage::new_with_conf_state(ConfState::from((voters, vec![])));
        let Some((first, readies)) = records.split_first() else {
            file.append(&identity)
                .await
                .map_err(|error| format!("cannot write the cluster log {shown}: {error}"))?;
            return Ok((GroupLog { file }, storage));
        };
        let format_at = MAGIC.len();
        if first.len() >= format_at + 2
            && first[..format_at] == MAGIC[..]
            && first[format_at..format_at + 2] != FORMAT.to_le_bytes()
        {
            let found = u16::from_le_bytes([first[format_at], first[format_at + 1]]);
            return Err(format!(
                "the cluster log {shown} is in format {found}, written by an earlier galgo; \
                 this galgo reads format {FORMAT} only and does not convert it"
            ));
        }
        if first[..] != identity[..] {
            return Err(format!(
                "the cluster log {shown} belongs to another node or cluster \
                 (this is node {node_id} of cluster {cluster_id:?}); refusing to start"
            ));
        }
        for record in readies {
            let (hard_state, entries) = decode_ready(record)
                .map_err(|why| format!("the cluster log {shown} is unreadable: {why}"))?;
            let mut core = storage.wl();
            if !entries.is_empty() {
                core.append(&entries)
                    .map_err(|error| format!("the cluster log {shown}: {error}"))?;
            }
            core.set_hardstate(hard_state);
        }
        Ok((GroupLog { file }, storage))
    }

    /// Makes one Ready durable: its entries and the hard state after it.
    pub async fn append(&self, hard_state: &HardState, entries: &[Entry]) -> Result<(), String> {
        self.file
            .append(&encode_ready(hard_state, entries))
            .await
            .map_err(|error| format!("cannot write the cluster log: {error}"))
    }
}

fn identity_record(node_id: u64, cluster_id: &str) -> Vec<u8> {
    let mut record = MAGIC.to_vec();
    record.extend_from_slice(&FORMAT.to_le_bytes());
    record.extend_from_slice(&node_id.to_le_bytes());
    record.extend_from_slice(cluster_id.as_bytes());
    record
}

fn encode_ready(hard_state: &HardState, entries: &[Entry]) -> Vec<u8> {
    let mut record =
        Vec::with_capacity(28 + entries.iter().map(|e| e.data.len() + 32).sum::<usize>());
    record.extend_from_slice(&hard_state.term.to_le_bytes());
    record.extend_from_slice(&hard_state.vote.to_le_bytes());
    record.extend_from_slice(&hard_state.commit.to_le_bytes());
    record.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        let encoded = entry
            .write_to_bytes()
            .expect("encoding an entry into memory cannot fail");
        record.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        record.extend_from_slice(&encoded);
    }
    record
}

fn decode_ready(record: &[u8]) -> Result<(HardState, Vec<Entry>), &'static str> {
    let u64_at = |at: usize| -> Result<u64, &'static str> {
        record
            .get(at..at + 8)
            .map(|bytes| u64::from_le_bytes(bytes.try_into().expect("8")))
            .ok_or("truncated record")
    };
    let hard_state = HardState {
        term: u64_at(0)?,
        vote: u64_at(8)?,
        commit: u64_at(16)?,
        ..HardState::default()
    };
    let count = record
        .get(24..28)
        .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4")))
        .ok_or("truncated record")?;
    let mut rest = &record[28..];
    let mut entries = Vec::with_capacity(count.min(1 << 16) as usize);
    for _ in 0..count {
        let len = rest
            .get(..4)
            .map(|bytes| u32::from_le_bytes(bytes.try_into().expect("4")) as usize)
            .ok_or("truncated entry")?;
        let encoded = rest.get(4..4 + len).ok_or("truncated entry")?;
        entries.push(Entry::parse_from_bytes(encoded).map_err(|_| "undecodable entry")?);
        rest = &rest[4 + len..];
    }
    Ok((hard_state, entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Entry::default()
        }
    }

    fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..HardState::default()
        }
    }

    #[compio::test]
    async fn a_reopened_log_has_the_entries_and_state_written_and_overwritten_tails_stay_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.raft");
        let (log, storage) = GroupLog::open(path.clone(), 1, "c", vec![1, 2, 3])
            .await
            .unwrap();
        assert_eq!(storage.last_index().unwrap(), 0);
        log.append(
            &hard_state(1, 1, 0),
            &[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")],
        )
        .await
        .unwrap();
        // A new leader of term 2 replaces index 3 onwards.
        log.append(
            &hard_state(2, 2, 3),
            &[entry(3, 2, b"C"), entry(4, 2, b"D")],
        )
        .await
        .unwrap();
        drop(log);
        let (_log, storage) = GroupLog::open(path.clone(), 1, "c", vec![1, 2, 3])
            .await
            .unwrap();
        let state = storage.initial_state().unwrap();
        assert_eq!(state.hard_state, hard_state(2, 2, 3));
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        let entries = storage
            .entries(1, 5, None, raft::GetEntriesContext::empty(false))
            .unwrap();
        let data: Vec<&[u8]> = entries.iter().map(|entry| &entry.data[..]).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"C", b"D"]);
        assert_eq!(entries[2].term, 2);
        let refused = GroupLog::open(path, 2, "c", vec![1, 2, 3]).await;
        assert!(refused.is_err(), "another node's log is refused");
    }

    #[compio::test]
    async fn a_log_of_another_format_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.raft");
        let (file, _) = MetadataLog::open(path.clone()).await.unwrap();
        let mut older = identity_record(1, "c");
        older[MAGIC.len()..MAGIC.len() + 2].copy_from_slice(&2u16.to_le_bytes());
        file.append(&older).await.unwrap();
        drop(file);
        let refused = GroupLog::open(path, 1, "c", vec![1]).await;
        let why = refused.err().expect("refused");
        assert!(why.contains("in format 2"), "{why}");
    }
}
