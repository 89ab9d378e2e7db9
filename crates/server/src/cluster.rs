//! A cluster node's side of the metadata group (docs/architecture.md, "Cluster"): how its
//! committed entries are applied on this node, and how the node joins the group at start-up.
//!
//! A committed change applies here exactly as a single node commits one, minus the metadata
//! log (raft-rs's log made it durable): the partitions it creates are opened on their owners
//! first, then it is applied and broadcast to every shard, then the partitions it removed are
//! deleted. An entry prepared against another metadata version changes nothing, on every
//! node alike (galgo_cluster::MetadataProposal).

use std::{future::Future, pin::Pin, rc::Rc, sync::Arc, time::Duration};

use galgo_cluster::{Applier, ClusterView, MetadataGroup, MetadataProposal};
use galgo_metadata::ROOT_USER_ID;

use crate::{
    context::{ContextSeed, RootCreated, Shard},
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
            if !replaying {
                let created = partitions_created_by(&shard0.metadata.borrow(), &change);
                if let Err(error) = on_owners(shard0, created, PartitionOp::OpenFresh).await {
                    tracing::error!(%error, "cannot open a partition a committed change created");
                }
            }
            let removed = shard0.metadata.borrow().partitions_removed_by(&change);
            shard0.publish(change).await;
            if !replaying && let Err(error) = on_owners(shard0, removed, PartitionOp::Remove).await
            {
                tracing::error!(%error, "cannot delete a partition a committed change removed");
            }
            if !self.root_created.is_initialized()
                && shard0.metadata.borrow().user_by_id(ROOT_USER_ID).is_some()
            {
                let _ = self.root_created.set(()).await;
            }
            true
        })
    }
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
    let group = MetadataGroup::start(view, seed.data_dir.join(GROUP_LOG), applier).await?;
    let owned: Vec<_> = shard0
        .metadata
        .borrow()
        .partitions()
        .map(|(key, partition)| (key, partition.owner))
        .collect();
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
