//! A cluster node's side of the metadata group (docs/architecture.md, "Cluster"): how its
//! committed entries are applied on this node, and how the node joins the group at start-up.
//!
//! A committed change applies here exactly as a single node commits one, minus the metadata
//! log (raft-rs's log made it durable): the partitions it creates are opened on their owners
//! first, then it is applied and broadcast to every shard, then the partitions it removed are
//! deleted. An entry prepared against another metadata version changes nothing, on every
//! node alike (galgo_cluster::MetadataProposal).

use std::{collections::HashSet, future::Future, pin::Pin, rc::Rc, sync::Arc, time::Duration};

use galgo_cluster::{
    Applier, ClusterView, MetadataGroup, MetadataProposal,
    replica::{GroupConfig, GroupView, Sink, start_group},
    wire::METADATA_GROUP,
};
use galgo_metadata::{
    Change, Metadata, PartitionKey, PartitionsChange, ROOT_USER_ID, ShardId, TopicChange, TopicKey,
};
use galgo_storage::StorageError;
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    context::{self, ContextSeed, RootCreated, Shard},
    handler::{self, PartitionOp, on_owners, partitions_created_by},
};

/// Where the metadata group's log lives, under the data directory.
const GROUP_LOG: &str = "state/cluster/metadata.raft";
/// How long the root creation waits before it tries again (no quorum yet).
const ROOT_RETRY: Duration = Duration::from_secs(1);

/// Applies the metadata group's committed entries on shard 0.
struct ReplicatedMetadata {
    shard0: Rc<Shard>,
    root_created: RootCreated,
}

impl Applier for ReplicatedMetadata {
    fn apply(
        &self,
        proposal: MetadataProposal,
        replaying: bool,
    ) -> Pin<Box<dyn Future<Output = bool> + '_>> {
        Box::pin(async move {
            let shard0 = &self.shard0;
            if shard0.metadata.borrow().version() != proposal.expected_version {
                return false;
            }
            let change = proposal.change;
            // At start-up the partitions are opened once the whole log is applied, keeping
            // what their files hold; only a change committed while serving makes new ones.
            // Only what this node holds a replica of has a log here.
            let created = if replaying {
                Vec::new()
            } else {
                let metadata = shard0.metadata.borrow();
                created_here(shard0, &metadata, &change)
            };
            if let Err(error) = on_owners(shard0, created.clone(), PartitionOp::OpenFresh).await {
                tracing::error!(%error, "cannot open a partition a committed change created");
            }
            let removed = shard0.metadata.borrow().partitions_removed_by(&change);
            shard0.publish(change).await;
            // A partition's group is named by what the change created: started once applied.
            if let Err(error) = on_owners(shard0, created, PartitionOp::Replicate).await {
                tracing::error!(%error, "cannot start the group of a partition a change created");
            }
            if !replaying && let Err(error) = on_owners(shard0, removed, PartitionOp::Remove).await
            {
                tracing::error!(%error, "cannot delete a partition a committed change removed");
            }
            self.note_root().await;
            true
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        self.shard0.metadata.borrow().snapshot()
    }

    fn restore<'a>(
        &'a self,
        data: &'a [u8],
        replaying: bool,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + 'a>> {
        Box::pin(async move {
            let shard0 = &self.shard0;
            let restored = Metadata::from_snapshot(data, &shard0.metadata.borrow())
                .map_err(|error| error.to_string())?;
            // At start-up the partitions are opened once the log is applied, as they are.
            let (created, removed) = if replaying {
                (Vec::new(), Vec::new())
            } else {
                let (created, removed) = partitions_changed(&shard0.metadata.borrow(), &restored);
                (held_here(shard0, &restored, created), removed)
            };
            // Removed first: a partition id the snapshot reuses (a new creation time) names
            // the same directory as the partition it replaces.
            if let Err(error) = on_owners(shard0, removed, PartitionOp::Remove).await {
                tracing::error!(%error, "cannot delete a partition a metadata snapshot removed");
            }
            if let Err(error) = on_owners(shard0, created.clone(), PartitionOp::OpenFresh).await {
                tracing::error!(%error, "cannot open a partition a metadata snapshot created");
            }
            shard0.replace_metadata(restored).await;
            if let Err(error) = on_owners(shard0, created, PartitionOp::Replicate).await {
                tracing::error!(%error, "cannot start the group of a partition a snapshot created");
            }
            self.note_root().await;
            Ok(())
        })
    }
}

impl ReplicatedMetadata {
    /// Lets logins in once the root user exists.
    async fn note_root(&self) {
        if !self.root_created.is_initialized()
            && self
                .shard0
                .metadata
                .borrow()
                .user_by_id(ROOT_USER_ID)
                .is_some()
        {
            let _ = self.root_created.set(()).await;
        }
    }
}

/// Partitions with the shard that owns each.
type Placed = Vec<(PartitionKey, ShardId)>;

/// The partitions `new` has that `old` has not, with the owners `new` gives them, and those
/// `old` has that `new` has not, with their owners in `old`. A partition is the same one only
/// with the same key and creation time (Iggy reuses partition ids).
fn partitions_changed(old: &Metadata, new: &Metadata) -> (Placed, Placed) {
    let births = |metadata: &Metadata| -> HashSet<(PartitionKey, u64)> {
        metadata
            .partitions()
            .map(|(key, partition)| (key, partition.created_at_us))
            .collect()
    };
    let (old_births, new_births) = (births(old), births(new));
    let only_in = |metadata: &Metadata, other: &HashSet<(PartitionKey, u64)>| {
        metadata
            .partitions()
            .filter(|(key, partition)| !other.contains(&(*key, partition.created_at_us)))
            .map(|(key, partition)| (key, partition.owner))
            .collect::<Placed>()
    };
    (only_in(new, &old_births), only_in(old, &new_births))
}

/// Refuses a data directory of the other kind: a cluster node's in a single node, or a single
/// node's (metadata already logged) in a cluster node. Their metadata histories cannot be
/// merged, and starting on one would hide it.
pub fn check_data_dir(seed: &ContextSeed, single_node_version: u64) -> Result<(), String> {
    let group_log = seed.data_dir.join(GROUP_LOG);
    match &seed.cluster {
        None if group_log.exists() => Err(format!(
            "{} belongs to a cluster node ({} exists); enable [cluster] or use another data directory",
            seed.data_dir.display(),
            group_log.display()
        )),
        Some(_) if single_node_version > 0 => Err(format!(
            "{} holds a single node's metadata (state/metadata.log); a cluster node starts on a new data directory",
            seed.data_dir.display()
        )),
        _ => Ok(()),
    }
}

/// Start-up of a cluster node, on shard 0 before the listeners: joins the metadata group
/// (applying what its log holds), then opens every partition the replica places on this
/// node's shards.
pub async fn join(shard0: &Rc<Shard>, view: Arc<ClusterView>) -> Result<(), String> {
    let seed = &shard0.state().seed;
    let applier = Rc::new(ReplicatedMetadata {
        shard0: shard0.clone(),
        root_created: seed.root_created.clone(),
    });
    let calls = Rc::new(handler::RemoteCalls::new(shard0.clone()));
    let group = MetadataGroup::start(view, seed.data_dir.join(GROUP_LOG), applier, calls).await?;
    let owned: Vec<_> = {
        let metadata = shard0.metadata.borrow();
        let all = metadata
            .partitions()
            .map(|(key, partition)| (key, partition.owner))
            .collect();
        held_here(shard0, &metadata, all)
    };
    on_owners(shard0, owned, PartitionOp::Open)
        .await
        .map_err(|error| format!("cannot open the partitions: {error}"))?;
    shard0.state().set_metadata_group(group);
    Ok(())
}

/// Once the client listeners are bound: records their ports as this node's in the view
/// (peers learn them from its handshakes) and dials the peers.
pub fn connect_peers(shard0: &Rc<Shard>, view: &ClusterView) {
    let bound = &shard0.state().seed.bound;
    let port = |address: Option<&std::net::SocketAddr>| address.map_or(0, |address| address.port());
    view.set_client_ports(
        view.node_id(),
        port(bound.tcp.get()),
        port(bound.websocket.get()),
    );
    if let Some(group) = shard0.state().metadata_group() {
        group.connect_peers();
    }
}

/// A cluster node's root user: proposed once the password is hashed, again until the group
/// has a root user (this node's proposal or another's; the first committed wins). Runs in
/// the background: a node serves (and answers its peers) while the cluster has no quorum.
pub async fn create_root(shard0: Rc<Shard>, pending: Option<handler::PendingRoot>) {
    let Some(pending) = pending else {
        return;
    };
    let hash = match pending.hash().await {
        Ok(hash) => hash,
        Err(why) => {
            tracing::error!(%why, "cannot create the root user");
            return;
        }
    };
    let seed = &shard0.state().seed;
    loop {
        if shard0.metadata.borrow().user_by_id(ROOT_USER_ID).is_some() {
            return;
        }
        match handler::create_root(&shard0, &seed.root.username, hash.clone()).await {
            Ok(()) => {
                tracing::info!(username = %seed.root.username, "root user created");
                return;
            }
            // Another node's root came first.
            Err(_) if shard0.metadata.borrow().user_by_id(ROOT_USER_ID).is_some() => return,
            Err(error) => {
                tracing::info!(%error, "root user not created yet; trying again");
                compio::time::sleep(ROOT_RETRY).await;
            }
        }
    }
}

/// A cluster node, once it serves: the consumer-group members that joined through it before
/// this start are gone (their connections ended with the process), so their partitions go to
/// live members. Proposed in the background until the metadata group takes it, as the root
/// user is; nothing is proposed when there is no such member.
pub async fn forget_members_from_before(shard0: Rc<Shard>, started_us: u64) {
    let Some(view) = shard0.state().seed.cluster.clone() else {
        return;
    };
    let node = view.node_id();
    loop {
        if shard0
            .metadata
            .borrow()
            .prepare_node_started(node, started_us)
            .is_none()
        {
            return;
        }
        let prepare = move |_: &galgo_metadata::Metadata| {
            Ok(galgo_metadata::MembershipChange::NodeStarted { node, started_us })
        };
        match handler::change_metadata(&shard0, prepare).await {
            Ok(_) => {
                tracing::info!(
                    node,
                    "consumer-group members from before this start removed"
                );
                return;
            }
            Err(error) => {
                tracing::info!(%error, "members from before this start not removed yet; trying again");
                compio::time::sleep(ROOT_RETRY).await;
            }
        }
    }
}

/// How often the metadata leader looks for nodes silent for the member timeout.
const LOST_CHECK: Duration = Duration::from_secs(1);

/// On the metadata leader, for as long as this node runs: the consumer-group members that
/// joined through a node not heard from for `[cluster] member_timeout_ms` leave their groups
/// (`NodeLost`), so that their partitions go to members that can consume them. If that node
/// was only cut off, its clients are no longer members and join again (as after a Kafka
/// session timeout). Looked at every second; a change that does not commit is proposed again
/// at the next look, by whichever node leads then.
pub async fn forget_members_of_lost_nodes(shard0: Rc<Shard>) {
    let Some(view) = shard0.state().seed.cluster.clone() else {
        return;
    };
    let timeout = view.settings.member_timeout;
    loop {
        compio::time::sleep(LOST_CHECK).await;
        if view.leader() != Some(view.node_id()) {
            continue;
        }
        let lost: Vec<u64> = view
            .settings
            .others()
            .map(|peer| peer.id)
            .filter(|&node| view.silent_for(node) >= timeout)
            .collect();
        for node in lost {
            // The leader's clock: a member that joins through the node once it is back (by
            // that node's clock, which may run a little ahead) stays.
            let lost_us = context::now_us();
            let found = shard0.metadata.borrow().prepare_node_lost(node, lost_us);
            let Some(change) = found else {
                continue;
            };
            let prepare = move |_: &galgo_metadata::Metadata| Ok(change.clone());
            match handler::change_metadata(&shard0, prepare).await {
                Ok(_) => tracing::warn!(
                    node,
                    silent_ms = view.silent_for(node).as_millis() as u64,
                    "node not heard from for the member timeout: the consumer-group members that joined through it removed"
                ),
                Err(error) => {
                    tracing::info!(node, %error, "members of a lost node not removed yet; trying again");
                }
            }
        }
    }
}

/// A partition's Raft group id: the same on every node, and never the id of a deleted
/// partition's group (Iggy reuses partition ids; the creation time, assigned where the
/// change was prepared and replicated with it, tells them apart).
pub fn group_id(key: PartitionKey, created_at_us: u64) -> u64 {
    let mut bytes = Vec::with_capacity(20);
    bytes.extend_from_slice(&key.stream.0.to_le_bytes());
    bytes.extend_from_slice(&key.topic.0.to_le_bytes());
    bytes.extend_from_slice(&key.partition.0.to_le_bytes());
    bytes.extend_from_slice(&created_at_us.to_le_bytes());
    match xxh3_64(&bytes) {
        METADATA_GROUP => METADATA_GROUP + 1,
        id => id,
    }
}

/// On a cluster node, keeps retention off a partition just opened until its group starts and
/// bounds it by what the group durably committed (docs/architecture.md, "Snapshots and
/// retention").
pub fn hold_retention(shard: &Shard, key: PartitionKey) {
    if shard.state().seed.cluster.is_some()
        && let Some(log) = shard.partition(&key)
    {
        log.set_retention_end(0);
    }
}

/// Where a partition is replicated: its group and the nodes holding its replicas, the first
/// the preferred leader (docs/architecture.md, "Partition groups").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The partition's Raft group.
    pub group: u64,
    /// The nodes holding a replica.
    pub replicas: Vec<u64>,
}

impl Placement {
    /// Whether `node` holds a replica.
    pub fn on(&self, node: u64) -> bool {
        self.replicas.contains(&node)
    }
}

/// Whether this node holds a replica of partition `key` as `metadata` has it (`None`: no such
/// partition), without building its replica set.
pub fn held(metadata: &Metadata, view: &ClusterView, key: PartitionKey) -> Option<bool> {
    let (group, factor) = group_and_factor(metadata, key)?;
    Some(view.settings.holds(group, factor, view.node_id()))
}

/// A partition's group id and its topic's replication factor.
fn group_and_factor(metadata: &Metadata, key: PartitionKey) -> Option<(u64, u8)> {
    let topic = metadata
        .topic_by_key(TopicKey {
            stream: key.stream,
            topic: key.topic,
        })
        .ok()?;
    let partition = topic.partitions.get(key.partition.0 as usize)?;
    Some((
        group_id(key, partition.created_at_us),
        topic.settings.replication_factor,
    ))
}

/// The placement of partition `key` as `metadata` has it: the same on every node, derived
/// from what the metadata entries replicated (the partition's creation time, the topic's
/// replication factor) and the fixed roster. `None` when `metadata` has no such partition.
pub fn placement(metadata: &Metadata, view: &ClusterView, key: PartitionKey) -> Option<Placement> {
    let (group, factor) = group_and_factor(metadata, key)?;
    Some(Placement {
        group,
        replicas: view.settings.replicas(group, factor),
    })
}

/// The partitions `change` creates (applied to `metadata`, which has not got them yet) that
/// this node holds a replica of.
fn created_here(
    shard: &Shard,
    metadata: &Metadata,
    change: &Change,
) -> Vec<(PartitionKey, ShardId)> {
    let created = partitions_created_by(metadata, change);
    let Some(view) = shard.state().seed.cluster.as_deref() else {
        return created;
    };
    let (created_at_us, factor) = match change {
        Change::Topic(TopicChange::Create(new)) => {
            (new.created_at_us, new.settings.replication_factor)
        }
        Change::Partitions(PartitionsChange::Create {
            stream_id,
            topic_id,
            created_at_us,
            ..
        }) => {
            let topic = TopicKey {
                stream: *stream_id,
                topic: *topic_id,
            };
            let Ok(topic) = metadata.topic_by_key(topic) else {
                return Vec::new();
            };
            (*created_at_us, topic.settings.replication_factor)
        }
        _ => return Vec::new(),
    };
    created
        .into_iter()
        .filter(|&(key, _)| {
            let group = group_id(key, created_at_us);
            view.settings.holds(group, factor, view.node_id())
        })
        .collect()
}

/// Of `partitions` (as `metadata` has them), those this node holds a replica of: all of them
/// on a single node.
pub fn held_here(
    shard: &Shard,
    metadata: &Metadata,
    partitions: Vec<(PartitionKey, ShardId)>,
) -> Vec<(PartitionKey, ShardId)> {
    let Some(view) = shard.state().seed.cluster.as_deref() else {
        return partitions;
    };
    partitions
        .into_iter()
        .filter(|&(key, _)| held(metadata, view, key) == Some(true))
        .collect()
}

/// On a cluster node, starts the Raft group of a partition this shard owns, once its log is
/// open (only a node holding a replica opens one); the preferred leader, the replica that
/// campaigns first, rotates with the group id so that leaders spread over the nodes.
pub async fn start_replica(shard: &Rc<Shard>, key: PartitionKey) -> Result<(), StorageError> {
    let Some(view) = shard.state().seed.cluster.clone() else {
        return Ok(());
    };
    let Some(placed) = placement(&shard.metadata.borrow(), &view, key) else {
        return Ok(());
    };
    let Some(log) = shard.partition(&key) else {
        return Ok(());
    };
    let config = GroupConfig {
        group: placed.group,
        node_id: view.node_id(),
        preferred_leader: placed.replicas[0],
        voters: placed.replicas,
        ack: view.settings.ack,
        tick: view.settings.tick,
    };
    let group = config.group;
    let router = view.clone();
    let sink: Sink = Rc::new(move |group, message| router.partitions.send(group, message));
    let handle = start_group(config, &shard.partition_dir(&key), log, sink)
        .await
        .map_err(|why| StorageError::Io(std::io::Error::other(why)))?;
    view.partitions.register(group, handle.inputs());
    let watched = handle.view().clone();
    shard.state().add_replica(key, group, handle);
    compio::runtime::spawn(restart_after_failure(shard.clone(), key, watched)).detach();
    Ok(())
}

/// How long a partition group that stopped on a storage failure waits before it is opened
/// again, in election timeouts.
const RESTART_ELECTION_TIMEOUTS: u32 = 5;

/// A partition group that stops on its own (its log or Raft files cannot be written: a full
/// disk) has acknowledged nothing it could not store and takes no part meanwhile (the others
/// elect a leader without it; polls here stay at its last high watermark, sends are refused
/// with 58). It is opened again from its files every few election timeouts, one error line
/// each time, until it starts, and then catches up like a restarted replica.
async fn restart_after_failure(shard: Rc<Shard>, key: PartitionKey, view: Rc<GroupView>) {
    view.wait_stopped().await;
    if !view.failed() {
        return;
    }
    let Some(cluster) = shard.state().seed.cluster.clone() else {
        return;
    };
    let backoff = cluster.settings.election_timeout() * RESTART_ELECTION_TIMEOUTS;
    loop {
        compio::time::sleep(backoff).await;
        let current = shard.state().replica(&key);
        if shard.is_stopping() || !current.is_some_and(|handle| Rc::ptr_eq(handle.view(), &view)) {
            return;
        }
        match start_replica(&shard, key).await {
            Ok(()) => {
                tracing::info!(partition = %key, group = view.group(),
                    "partition group opened again after a storage failure");
                return;
            }
            Err(error) => {
                tracing::error!(partition = %key, group = view.group(), %error,
                    "partition group still cannot start; trying again");
            }
        }
    }
}

/// Stops the Raft group of a partition this shard owns (before its log is closed).
pub fn stop_replica(shard: &Shard, key: PartitionKey) {
    if let Some((group, handle)) = shard.state().take_replica(&key) {
        if let Some(view) = &shard.state().seed.cluster {
            view.partitions.unregister(group);
        }
        handle.stop();
    }
}
