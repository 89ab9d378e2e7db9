//! Disk ids (docs/architecture.md, "Disk ids"): a random id a node's data directory gets when
//! it is first used, and the id of each peer's directory as this node first saw it in the
//! peer's handshake. A node whose directory was wiped or replaced comes back with the same
//! node id but a new disk id, having forgotten its votes and the entries it acknowledged;
//! Raft's safety assumes it did not, so its peers refuse its connections instead of letting
//! it vote or count towards a majority.
//!
//! The file, `disks` beside the metadata Raft log, is text, replaced whole (write, fdatasync,
//! rename) when a peer is first seen:
//!
//! ```text
//! galgo-cluster-disks 1
//! self 5f0c8e3a9b1d2c47
//! 2 a81e44c07b93d215
//! 3 0d6b2f9c5e1a7384
//! ```

use std::{
    cell::RefCell,
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// The file's name, in the metadata Raft log's directory.
const FILE: &str = "disks";
/// Its first line.
const HEADER: &str = "galgo-cluster-disks 1";

/// This node's disk id and its peers' as first seen.
pub struct Disks {
    path: PathBuf,
    own: u64,
    peers: RefCell<BTreeMap<u64, u64>>,
    /// One rewrite of the file at a time.
    writing: async_lock::Mutex<()>,
}

impl Disks {
    /// Reads the file in `dir`, or gives the directory a new random disk id when there is
    /// none (a new node, or one whose directory predates disk ids).
    pub async fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join(FILE);
        let shown = path.display().to_string();
        let (own, peers, new) = match compio::fs::read(&path).await {
            Ok(bytes) => {
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("the disk id file {shown} is not text"))?;
                let (own, peers) =
                    parse(&text).map_err(|why| format!("the disk id file {shown}: {why}"))?;
                (own, peers, false)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 8];
                getrandom::fill(&mut bytes).map_err(|error| error.to_string())?;
                (u64::from_le_bytes(bytes), BTreeMap::new(), true)
            }
            Err(error) => return Err(format!("cannot read {shown}: {error}")),
        };
        let disks = Disks {
            path,
            own,
            peers: RefCell::new(peers),
            writing: async_lock::Mutex::new(()),
        };
        // Written only when new: a node whose disk is full still starts (and takes no part
        // until it can write again, as its Raft log says).
        if new {
            disks.save().await?;
        }
        Ok(disks)
    }

    /// This node's disk id.
    pub fn own(&self) -> u64 {
        self.own
    }

    /// Accepts `disk` as node `node`'s: recorded (durably) the first time, and from then on
    /// the only one accepted.
    pub async fn check(&self, node: u64, disk: u64) -> Result<(), String> {
        let _turn = self.writing.lock().await;
        let known = self.peers.borrow().get(&node).copied();
        match known {
            Some(known) if known == disk => Ok(()),
            Some(known) => Err(format!(
                "node {node} comes with disk id {disk:016x}, but its disk is known here as \
                 {known:016x}: its data directory was replaced, and a node that lost its \
                 Raft state cannot rejoin under its old id"
            )),
            None => {
                self.peers.borrow_mut().insert(node, disk);
                if let Err(why) = self.save().await {
                    self.peers.borrow_mut().remove(&node);
                    return Err(why);
                }
                tracing::info!(node, disk = %format!("{disk:016x}"), "a peer's disk id recorded");
                Ok(())
            }
        }
    }

    async fn save(&self) -> Result<(), String> {
        let text = render(self.own, &self.peers.borrow());
        galgo_storage::replace_file(&self.path, text.into_bytes(), true)
            .await
            .map_err(|error| format!("cannot write {}: {error}", self.path.display()))
    }
}

fn render(own: u64, peers: &BTreeMap<u64, u64>) -> String {
    let mut text = format!("{HEADER}\nself {own:016x}\n");
    for (node, disk) in peers {
        text.push_str(&format!("{node} {disk:016x}\n"));
    }
    text
}

fn parse(text: &str) -> Result<(u64, BTreeMap<u64, u64>), String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("its first line is not {HEADER:?}"));
    }
    let hex = |value: &str| {
        u64::from_str_radix(value, 16).map_err(|_| format!("{value:?} is not a disk id"))
    };
    let own = match lines.next().and_then(|line| line.split_once(' ')) {
        Some(("self", disk)) => hex(disk)?,
        _ => return Err("its second line is not this node's disk id".into()),
    };
    let mut peers = BTreeMap::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let (node, disk) = line
            .split_once(' ')
            .ok_or_else(|| format!("{line:?} is not \"node disk\""))?;
        let node: u64 = node
            .parse()
            .map_err(|_| format!("{node:?} is not a node id"))?;
        peers.insert(node, hex(disk)?);
    }
    Ok((own, peers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_and_garbage_is_refused() {
        let peers = BTreeMap::from([(2, 0xa81e_44c0_7b93_d215), (3, 7)]);
        let text = render(0x5f0c_8e3a_9b1d_2c47, &peers);
        assert_eq!(parse(&text), Ok((0x5f0c_8e3a_9b1d_2c47, peers)));
        assert!(parse("").is_err());
        assert!(parse("galgo-cluster-disks 1\nself zz\n").is_err());
        assert!(parse("galgo-cluster-disks 1\nself 1\nx 2\n").is_err());
        assert!(parse("galgo-cluster-disks 2\nself 1\n").is_err());
    }

    #[compio::test]
    async fn a_peer_keeps_the_disk_id_it_was_first_seen_with() {
        let dir = tempfile::tempdir().unwrap();
        let disks = Disks::open(dir.path()).await.unwrap();
        let own = disks.own();
        disks.check(2, 11).await.unwrap();
        disks.check(2, 11).await.unwrap();
        assert!(disks.check(2, 12).await.is_err());
        drop(disks);
        let again = Disks::open(dir.path()).await.unwrap();
        assert_eq!(again.own(), own, "the directory keeps its id");
        assert!(
            again.check(2, 12).await.is_err(),
            "and remembers its peers'"
        );
        again.check(3, 12).await.unwrap();
        // A wiped directory is a new disk.
        let wiped = tempfile::tempdir().unwrap();
        assert_ne!(Disks::open(wiped.path()).await.unwrap().own(), own);
    }
}
