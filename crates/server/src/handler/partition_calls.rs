//! Reaching partitions wherever they live: one call per owning shard, run in place for the
//! partitions of the calling shard.

use std::{collections::BTreeMap, future::Future, rc::Rc};

use galgo_metadata::{PartitionKey, ShardId};
use galgo_protocol::ErrorCode;
use galgo_storage::{PartitionLog, PartitionStats, StorageError};

use super::remote;
use crate::{context::Shard, error::CommandError};

/// What statistics need of one partition.
#[derive(Clone, Copy, Debug, Default)]
pub struct PartitionFigures {
    /// Messages, bytes and segments.
    pub stats: PartitionStats,
    /// The last assigned offset, 0 when empty (as the protocol reports it).
    pub current_offset: u64,
}

/// Runs `job` on the owner of `key` with that partition's log.
pub async fn on_partition<T, F, Fut>(
    shard: &Rc<Shard>,
    key: PartitionKey,
    owner: ShardId,
    job: F,
) -> Result<T, CommandError>
where
    F: FnOnce(Rc<Shard>, Rc<PartitionLog>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, CommandError>> + 'static,
    T: Send + 'static,
{
    shard
        .call(owner, move |shard| async move {
            let log = shard
                .partition(&key)
                .ok_or(CommandError::Protocol(ErrorCode::PartitionNotFound))?;
            job(shard, log).await
        })
        .await?
}

/// Figures of many partitions, gathered with one call per owning shard; on a cluster node,
/// those of the partitions it holds no replica of with one call per replica node asked
/// (`remote::figures`, missing when it does not answer).
pub async fn gather_figures(
    shard: &Rc<Shard>,
    partitions: Vec<(PartitionKey, ShardId)>,
) -> Result<BTreeMap<PartitionKey, PartitionFigures>, CommandError> {
    let mut figures = BTreeMap::new();
    let (remote, partitions): (Vec<_>, Vec<_>) = partitions
        .into_iter()
        .map(|(key, owner)| (key, owner, remote::placement(shard, key)))
        .partition(|(_, _, remote)| remote.is_some());
    let held = partitions
        .into_iter()
        .map(|(key, owner, _)| (key, owner))
        .collect();
    figures.extend(figures_here(shard, held).await?);
    let remote = remote
        .into_iter()
        .filter_map(|(key, _, remote)| Some((key, remote?)))
        .collect();
    figures.extend(remote::figures(remote).await);
    Ok(figures)
}

/// The figures of partitions this node holds a log of, with one call per owning shard.
pub(super) async fn figures_here(
    shard: &Rc<Shard>,
    partitions: Vec<(PartitionKey, ShardId)>,
) -> Result<BTreeMap<PartitionKey, PartitionFigures>, CommandError> {
    let mut figures = BTreeMap::new();
    for (owner, keys) in by_owner(partitions) {
        let gathered = shard
            .call(
                owner,
                move |shard| async move { figures_owned(&shard, keys) },
            )
            .await?;
        figures.extend(gathered);
    }
    Ok(figures)
}

/// The figures of those of `keys` this shard owns a log of: a replicated partition's as
/// clients may read it (committed messages only).
fn figures_owned(shard: &Shard, keys: Vec<PartitionKey>) -> Vec<(PartitionKey, PartitionFigures)> {
    keys.into_iter()
        .filter_map(|key| {
            let mut figures = figures_of(&*shard.partition(&key)?);
            if let Some(group) = shard.state().replica(&key) {
                committed_only(&mut figures, group.view().high_watermark());
            }
            Some((key, figures))
        })
        .collect()
}

/// A partition's figures, read on its owner.
pub fn figures_of(log: &PartitionLog) -> PartitionFigures {
    PartitionFigures {
        stats: log.stats(),
        current_offset: log.last_offset().unwrap_or(0),
    }
}

/// A replicated partition's figures as clients may read it: its messages below the high
/// watermark `committed_end` (the log also holds batches not committed yet).
fn committed_only(figures: &mut PartitionFigures, committed_end: u64) {
    let held_end = figures.current_offset + u64::from(figures.stats.messages_count > 0);
    let uncommitted = held_end.saturating_sub(committed_end);
    figures.stats.messages_count = figures.stats.messages_count.saturating_sub(uncommitted);
    figures.current_offset = committed_end.saturating_sub(1);
}

/// What [`on_owners`] does to each partition on its owning shard.
#[derive(Clone, Copy, Debug)]
pub enum PartitionOp {
    /// Open (recovering) an existing partition's log: at start-up.
    Open,
    /// Open a new partition's log, wiping an orphan left by an unfinished change.
    OpenFresh,
    /// A cluster node: start the Raft group of a new partition, once the change that
    /// created it is applied (`Open` starts an existing partition's).
    Replicate,
    /// Close the log and delete its files.
    Remove,
    /// Delete every message (journal included) and the stored offsets.
    Purge,
}

impl PartitionOp {
    async fn run(self, shard: &Rc<Shard>, key: PartitionKey) -> Result<(), StorageError> {
        match self {
            Self::Open => {
                shard.open_partition(key, false).await?;
                crate::cluster::hold_retention(shard, key);
                crate::cluster::start_replica(shard, key).await
            }
            Self::OpenFresh => {
                shard.open_partition(key, true).await?;
                crate::cluster::hold_retention(shard, key);
                Ok(())
            }
            Self::Replicate => crate::cluster::start_replica(shard, key).await,
            Self::Remove => {
                shard.state().requests.forget(key);
                crate::cluster::stop_replica(shard, key);
                shard.remove_partition(key).await
            }
            Self::Purge => match shard.partition(&key) {
                Some(log) => log.purge().await,
                None => Ok(()),
            },
        }
    }
}

/// Runs `op` on every given partition, with one call per owning shard.
pub async fn on_owners(
    shard: &Rc<Shard>,
    partitions: Vec<(PartitionKey, ShardId)>,
    op: PartitionOp,
) -> Result<(), CommandError> {
    for (owner, keys) in by_owner(partitions) {
        shard
            .call(owner, move |shard| async move {
                for key in keys {
                    op.run(&shard, key).await?;
                }
                Ok::<_, StorageError>(())
            })
            .await??;
    }
    Ok(())
}

/// Groups partitions by the shard that owns them.
pub fn by_owner(partitions: Vec<(PartitionKey, ShardId)>) -> BTreeMap<ShardId, Vec<PartitionKey>> {
    let mut grouped: BTreeMap<ShardId, Vec<PartitionKey>> = BTreeMap::new();
    for (key, owner) in partitions {
        grouped.entry(owner).or_default().push(key);
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(messages_count: u64, current_offset: u64) -> PartitionFigures {
        PartitionFigures {
            stats: PartitionStats {
                messages_count,
                ..PartitionStats::default()
            },
            current_offset,
        }
    }

    #[test]
    fn a_replicated_partition_shows_its_committed_messages_only() {
        // Offsets 0..=9 held, 0..=6 committed.
        let mut held = figures(10, 9);
        committed_only(&mut held, 7);
        assert_eq!((held.stats.messages_count, held.current_offset), (7, 6));
        // Retention kept 5..=9: 5 and 6 committed.
        let mut held = figures(5, 9);
        committed_only(&mut held, 7);
        assert_eq!((held.stats.messages_count, held.current_offset), (2, 6));
        // Everything committed: unchanged.
        let mut held = figures(10, 9);
        committed_only(&mut held, 10);
        assert_eq!((held.stats.messages_count, held.current_offset), (10, 9));
        // Nothing committed yet.
        let mut held = figures(3, 2);
        committed_only(&mut held, 0);
        assert_eq!((held.stats.messages_count, held.current_offset), (0, 0));
    }
}
