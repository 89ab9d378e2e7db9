//! Reaching partitions wherever they live: one call per owning shard, run in place for the
//! partitions of the calling shard.

use std::{collections::BTreeMap, future::Future, rc::Rc};

use galgo_metadata::{PartitionKey, ShardId};
use galgo_protocol::ErrorCode;
use galgo_storage::{PartitionLog, PartitionStats, StorageError};

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

/// Figures of many partitions, gathered with one call per owning shard.
pub async fn gather_figures(
    shard: &Rc<Shard>,
    partitions: Vec<(PartitionKey, ShardId)>,
) -> Result<BTreeMap<PartitionKey, PartitionFigures>, CommandError> {
    let mut figures = BTreeMap::new();
    for (owner, keys) in by_owner(partitions) {
        let gathered = shard
            .call(owner, move |shard| async move {
                keys.into_iter()
                    .filter_map(|key| Some((key, figures_of(&*shard.partition(&key)?))))
                    .collect::<Vec<_>>()
            })
            .await?;
        figures.extend(gathered);
    }
    Ok(figures)
}

/// A partition's figures, read on its owner.
pub fn figures_of(log: &PartitionLog) -> PartitionFigures {
    PartitionFigures {
        stats: log.stats(),
        current_offset: log.last_offset().unwrap_or(0),
    }
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
    async fn run(self, shard: &Shard, key: PartitionKey) -> Result<(), StorageError> {
        match self {
            Self::Open => {
                shard.open_partition(key, false).await?;
                crate::cluster::start_replica(shard, key).await
            }
            Self::OpenFresh => shard.open_partition(key, true).await,
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
