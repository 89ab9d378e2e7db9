//! Replication connections between nodes, on shard 0's runtime (the metadata group lives
//! there; partition groups will add one connection per shard pair).
//!
//! Each node dials every peer once and only writes on that connection; it reads what peers
//! dial in. Raft messages never wait: each peer has a bounded outbox, and a message that finds
//! it full is dropped and its group told the peer is unreachable (raft-rs resends). A reader
//! passes what it decodes into the driver's bounded input queue, so a slow driver slows the
//! peer through TCP rather than growing memory.

use std::{
    cell::Cell,
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use compio::{
    BufResult,
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use futures_channel::oneshot;
use raft::eraftpb::Message;

use crate::{
    disks::Disks,
    group::Input,
    replica::ReplicaError,
    view::ClusterView,
    wire::{
        FRAME_BYTES_MAX, FRAME_HEADER_BYTES, FRAME_PIECES_MAX, Frame, FrameBuilder,
        HANDSHAKE_FIXED_BYTES, Handshake, MAGIC, METADATA_GROUP, Pieces, SendOutcome, WireError,
        decode_frame, decode_frame_header, encode_answer, encode_keepalive, encode_outcome,
    },
};

/// Messages queued per peer before new ones are dropped.
const OUTBOX_MESSAGES_MAX: usize = 4096;
/// A connection with nothing to send writes a keepalive after this fraction of an election
/// timeout: 4 gives its peer four chances to hear from it within one.
const KEEPALIVES_PER_ELECTION_TIMEOUT: u32 = 4;
/// Buffers one vectored write takes at most (IOV_MAX on Linux).
const IOVECS_MAX: usize = 1024;
/// Frames are cut at about this many bytes.
const FRAME_TARGET_BYTES: usize = 1 << 20;
/// First and longest wait between dials of an unreachable peer.
const REDIAL_MS_MIN: u64 = 50;
const REDIAL_MS_MAX: u64 = 1_000;
/// How long a forwarded send may wait for its outcome on the leader (the origin waits as
/// long, and then answers "unknown").
pub const FORWARDED_SEND_WAIT: Duration = Duration::from_secs(10);
/// A dialer that sends nothing useful within this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up waits for the replication address to come free. A run killed a moment
/// ago still holds its listener for some milliseconds after it is reaped: the kernel closes
/// the files of an io_uring instance's pending requests from a worker, after the process
/// ended (7–8 ms measured here), and SO_REUSEADDR does not cover a listening socket.
const BIND_WAIT: Duration = Duration::from_secs(10);
/// Between two attempts within [`BIND_WAIT`].
const BIND_RETRY: Duration = Duration::from_millis(20);

/// What an outbox queues.
pub enum Outgoing {
    /// A Raft message of a group: many go in one frame.
    Raft(u64, Message),
    /// A frame of its own, encoded (a forwarded send or its outcome).
    Frame(Pieces),
}

/// The outboxes of every peer.
#[derive(Clone)]
pub struct Outboxes {
    peers: HashMap<u64, flume::Sender<Outgoing>>,
}

impl Outboxes {
    /// Queues `message` of `group` for its `to` node; false when it was dropped (the outbox is
    /// full or the node is not a peer).
    pub fn send(&self, group: u64, message: Message) -> bool {
        self.peers
            .get(&message.to)
            .is_some_and(|outbox| outbox.try_send(Outgoing::Raft(group, message)).is_ok())
    }

    /// Queues an encoded frame for node `to`; false when it was dropped.
    pub fn send_frame(&self, to: u64, frame: Pieces) -> bool {
        self.peers
            .get(&to)
            .is_some_and(|outbox| outbox.try_send(Outgoing::Frame(frame)).is_ok())
    }
}

/// What an outbox queues, read by its dialer.
type Queued = flume::Receiver<Outgoing>;

/// The dialers of every peer, not started yet: what their outboxes queue waits meanwhile.
pub struct Dialers {
    view: Arc<ClusterView>,
    /// This node's disk id, in every handshake.
    disk_id: u64,
    /// Per peer: its id, replication address and outbox.
    peers: Vec<(u64, SocketAddr, Queued)>,
}

/// Every peer's outbox, and its dialer to start once this node's client listeners are bound
/// (the handshake tells peers their ports).
pub fn outboxes(view: &Arc<ClusterView>, disk_id: u64) -> (Outboxes, Dialers) {
    let mut outboxes = HashMap::new();
    let mut dialers = Vec::new();
    for peer in view.settings.others() {
        let (outbox, queued) = flume::bounded(OUTBOX_MESSAGES_MAX);
        outboxes.insert(peer.id, outbox);
        dialers.push((peer.id, peer.replication_address, queued));
    }
    let dialers = Dialers {
        view: view.clone(),
        disk_id,
        peers: dialers,
    };
    (Outboxes { peers: outboxes }, dialers)
}

impl Dialers {
    /// Starts a dialer for every peer on this runtime.
    pub fn start(self) {
        for (peer, address, queued) in self.peers {
            let dial = dial_loop(self.view.clone(), (peer, address), self.disk_id, queued);
            compio::runtime::spawn(dial).detach();
        }
    }
}

async fn dial_loop(
    view: Arc<ClusterView>,
    (peer, address): (u64, SocketAddr),
    disk_id: u64,
    queued: Queued,
) {
    let mut wait = REDIAL_MS_MIN;
    let mut failures = 0u64;
    loop {
        let (tcp_port, websocket_port) = view.client_ports(view.node_id());
        let handshake = Handshake {
            from: view.node_id(),
            to: peer,
            shard: 0,
            tcp_port,
            websocket_port,
            disk_id,
            cluster_id: view.settings.cluster_id.clone(),
        };
        match TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                if failures > 0 {
                    tracing::info!(peer = handshake.to, %address, "replication connection to peer open");
                }
                failures = 0;
                wait = REDIAL_MS_MIN;
                let keepalive = view.settings.election_timeout() / KEEPALIVES_PER_ELECTION_TIMEOUT;
                match write_loop(stream, &handshake, &queued, keepalive).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::info!(peer = handshake.to, %address, %error, "replication connection to peer lost");
                    }
                }
            }
            Err(error) => {
                // One line when a peer goes away, not one per dial.
                if failures == 0 {
                    tracing::info!(peer = handshake.to, %address, %error, "cannot reach peer; retrying");
                }
                failures += 1;
            }
        }
        // What queued while the peer was away is stale; raft-rs resends what matters.
        queued.drain();
        compio::time::sleep(Duration::from_millis(wait)).await;
        wait = (wait * 2).min(REDIAL_MS_MAX);
    }
}

/// Writes the handshake and then frames of whatever is queued; `Ok` once the outbox closed.
/// After `keepalive` with nothing to send it writes an empty frame, so the peer hears from
/// this node even when no group of theirs has anything to say (two followers of the metadata
/// group, no partitions): GetClusterMetadata's status comes from what each node heard.
async fn write_loop(
    mut stream: TcpStream,
    handshake: &Handshake,
    queued: &Queued,
    keepalive: Duration,
) -> io::Result<()> {
    let BufResult(written, _) = stream.write_all(handshake.encode()).await;
    written?;
    let mut builder = FrameBuilder::default();
    loop {
        let first = match compio::time::timeout(keepalive, queued.recv_async()).await {
            Ok(Ok(first)) => first,
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                write_pieces(&mut stream, encode_keepalive()).await?;
                continue;
            }
        };
        let mut next = Some(first);
        while let Some(outgoing) = next.take() {
            match outgoing {
                Outgoing::Raft(group, message) => builder.push(group, message),
                Outgoing::Frame(frame) => {
                    if !builder.is_empty() {
                        write_pieces(&mut stream, builder.finish()).await?;
                    }
                    write_pieces(&mut stream, frame).await?;
                }
            }
            if builder.len() < FRAME_TARGET_BYTES && builder.pieces() + 2 < FRAME_PIECES_MAX {
                next = queued.try_recv().ok();
            }
        }
        if !builder.is_empty() {
            write_pieces(&mut stream, builder.finish()).await?;
        }
    }
}

/// Writes a frame's pieces, at most `IOVECS_MAX` per vectored write (more is EINVAL).
async fn write_pieces(stream: &mut TcpStream, mut pieces: Pieces) -> io::Result<()> {
    while !pieces.is_empty() {
        let rest = pieces.split_off(pieces.len().min(IOVECS_MAX));
        let BufResult(written, _) = stream.write_vectored_all(pieces).await;
        written?;
        pieces = rest;
    }
    Ok(())
}

/// Binds `address`, waiting up to [`BIND_WAIT`] while it is in use (see there).
async fn bind_when_free(address: SocketAddr) -> io::Result<TcpListener> {
    let started = Instant::now();
    loop {
        match TcpListener::bind(address).await {
            Err(error)
                if error.kind() == io::ErrorKind::AddrInUse && started.elapsed() < BIND_WAIT =>
            {
                if started.elapsed() < BIND_RETRY {
                    tracing::info!(%address, "replication address still in use; waiting for it");
                }
                compio::time::sleep(BIND_RETRY).await;
            }
            bound => return bound,
        }
    }
}

/// What this node's server answers to its peers' calls (galgo-server's remote partition
/// calls: a node that holds no replica of a partition reaches one through them). Served on
/// the runtime of the replication listener, each call in a task of its own.
pub trait CallServer {
    /// The answer to a call with `body` from node `from`.
    fn serve(&self, from: u64, body: Bytes) -> Pin<Box<dyn Future<Output = Pieces>>>;
}

/// Binds the replication listener and accepts peers on this runtime until it stops.
pub async fn listen(
    view: Arc<ClusterView>,
    inputs: flume::Sender<Input>,
    disks: Rc<Disks>,
    calls: Rc<dyn CallServer>,
) -> Result<(), String> {
    let address = view.settings.replication_address;
    let listener = bind_when_free(address)
        .await
        .map_err(|error| format!("cannot bind cluster.replication_address {address}: {error}"))?;
    let bound = listener.local_addr().map_or(address, |bound| bound);
    tracing::info!(address = %bound, node = view.node_id(), "replication listening");
    let refusals = Rc::new(RefusalLog::default());
    compio::runtime::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let task = serve_peer(
                        stream,
                        peer,
                        (view.clone(), disks.clone(), calls.clone()),
                        inputs.clone(),
                        refusals.clone(),
                    );
                    compio::runtime::spawn(task).detach();
                }
                Err(error) => {
                    tracing::warn!(%error, "replication accept failed");
                    compio::time::sleep(Duration::from_millis(REDIAL_MS_MIN)).await;
                }
            }
        }
    })
    .detach();
    Ok(())
}

async fn serve_peer(
    stream: TcpStream,
    address: SocketAddr,
    (view, disks, calls): (Arc<ClusterView>, Rc<Disks>, Rc<dyn CallServer>),
    inputs: flume::Sender<Input>,
    refusals: Rc<RefusalLog>,
) {
    let _ = stream.set_nodelay(true);
    match read_peer(stream, (&view, &disks, &calls), &inputs).await {
        Ok(from) => tracing::debug!(%address, peer = from, "replication connection closed by peer"),
        Err(why) => refusals.log(address, &why),
    }
}

/// Refused or broken replication connections log one line each, at most
/// [`REFUSALS_PER_WINDOW`] per [`REFUSAL_WINDOW`]: whoever opens connections to the replication
/// port cannot fill the log. What is left out is counted and reported with the next line.
#[derive(Default)]
struct RefusalLog {
    window_start: Cell<Option<Instant>>,
    logged: Cell<u32>,
    suppressed: Cell<u64>,
}

/// Lines per window.
const REFUSALS_PER_WINDOW: u32 = 10;
/// The window.
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);

impl RefusalLog {
    fn log(&self, address: SocketAddr, why: &str) {
        let now = Instant::now();
        let expired = self
            .window_start
            .get()
            .is_none_or(|start| now.duration_since(start) >= REFUSAL_WINDOW);
        if expired {
            self.window_start.set(Some(now));
            self.logged.set(0);
        }
        if self.logged.get() >= REFUSALS_PER_WINDOW {
            self.suppressed.set(self.suppressed.get() + 1);
            return;
        }
        self.logged.set(self.logged.get() + 1);
        let suppressed = self.suppressed.replace(0);
        tracing::warn!(%address, %why, suppressed, "replication connection refused or broken; closed");
    }
}

/// Reads a peer's handshake and then its frames until it closes (`Ok` with its node id) or
/// sends something wrong (`Err` saying what).
async fn read_peer(
    mut stream: TcpStream,
    (view, disks, calls): (&Arc<ClusterView>, &Disks, &Rc<dyn CallServer>),
    inputs: &flume::Sender<Input>,
) -> Result<u64, String> {
    let handshake = compio::time::timeout(HANDSHAKE_TIMEOUT, read_handshake(&mut stream))
        .await
        .map_err(|_| "no handshake in time".to_owned())??;
    check_handshake(&handshake, view)?;
    disks.check(handshake.from, handshake.disk_id).await?;
    let from = handshake.from;
    view.set_client_ports(from, handshake.tcp_port, handshake.websocket_port);
    let mut header = vec![0u8; FRAME_HEADER_BYTES];
    loop {
        let BufResult(read, returned) = stream.read_exact(header).await;
        header = returned;
        if let Err(error) = read {
            return if error.kind() == io::ErrorKind::UnexpectedEof {
                Ok(from)
            } else {
                Err(error.to_string())
            };
        }
        let fixed: &[u8; FRAME_HEADER_BYTES] = header[..].try_into().expect("header size");
        let (len, checksum) = decode_frame_header(fixed).map_err(|error| error.to_string())?;
        debug_assert!(len <= FRAME_BYTES_MAX);
        // `with_capacity` gives exactly `len` (Vec's guarantee): read_exact fills it whole,
        // with no zeroing first.
        let BufResult(read, body) = stream.read_exact(Vec::with_capacity(len)).await;
        read.map_err(|error| error.to_string())?;
        let frame =
            decode_frame(&Bytes::from(body), checksum).map_err(|error| error.to_string())?;
        view.heard_from(from);
        let Some(messages) = serve_frame(frame, from, view, calls) else {
            continue;
        };
        for (group, message) in messages {
            if message.from != from || message.to != view.node_id() {
                return Err(format!(
                    "message from {} to {} on node {from}'s connection",
                    message.from, message.to
                ));
            }
            if group != METADATA_GROUP {
                view.partitions.deliver(group, message);
            } else if inputs.send_async(Input::Message(message)).await.is_err() {
                return Ok(from);
            }
        }
    }
}

/// Serves a frame that is not Raft messages (a forwarded send or offset write, an outcome, a
/// call or an answer); the Raft messages of one that is.
fn serve_frame(
    frame: Frame,
    from: u64,
    view: &Arc<ClusterView>,
    calls: &Rc<dyn CallServer>,
) -> Option<Vec<(u64, Message)>> {
    match frame {
        Frame::Raft(messages) => Some(messages),
        Frame::Send(send) => {
            let call = send.call;
            serve_forwarded(view, from, call, view.partitions.propose_forwarded(send));
            None
        }
        Frame::Offset(write) => {
            let call = write.call;
            let pending = view.partitions.propose_forwarded_offset(write);
            serve_forwarded(view, from, call, pending);
            None
        }
        Frame::Outcome(call, outcome) => {
            view.partitions.complete(call, outcome);
            None
        }
        Frame::Call(call, body) => {
            let (view, answer) = (view.clone(), calls.serve(from, body));
            compio::runtime::spawn(async move {
                let answer = answer.await;
                view.partitions
                    .send_frame(from, encode_answer(call, answer));
            })
            .detach();
            None
        }
        Frame::Answer(call, answer) => {
            view.partitions.answered(call, answer);
            None
        }
    }
}

/// Answers a proposal another node forwarded to this one (it leads the partition, as that
/// node knew) on this node's own connection to it, from a task of its own: the reader goes on
/// meanwhile.
fn serve_forwarded<T>(
    view: &Arc<ClusterView>,
    from: u64,
    call: u64,
    proposed: Result<oneshot::Receiver<Result<T, ReplicaError>>, SendOutcome>,
) where
    T: 'static,
    SendOutcome: From<Result<T, ReplicaError>>,
{
    match proposed {
        Err(outcome) => {
            view.partitions
                .send_frame(from, encode_outcome(call, outcome));
        }
        Ok(pending) => {
            let view = view.clone();
            compio::runtime::spawn(async move {
                let outcome = match compio::time::timeout(FORWARDED_SEND_WAIT, pending).await {
                    Ok(Ok(result)) => SendOutcome::from(result),
                    Ok(Err(_)) | Err(_) => SendOutcome::Unknown,
                };
                view.partitions
                    .send_frame(from, encode_outcome(call, outcome));
            })
            .detach();
        }
    }
}

async fn read_handshake(stream: &mut TcpStream) -> Result<Handshake, String> {
    // The magic first: a stranger is refused on its first bytes, whatever follows.
    let BufResult(read, mut fixed) = stream.read_exact(vec![0u8; MAGIC.len()]).await;
    read.map_err(|error| format!("handshake: {error}"))?;
    if fixed[..] != MAGIC[..] {
        return Err(WireError::Magic.to_string());
    }
    let BufResult(read, rest) = stream
        .read_exact(vec![0u8; HANDSHAKE_FIXED_BYTES - MAGIC.len()])
        .await;
    read.map_err(|error| format!("handshake: {error}"))?;
    fixed.extend_from_slice(&rest);
    let fixed: &[u8; HANDSHAKE_FIXED_BYTES] = fixed[..].try_into().expect("handshake size");
    let (mut handshake, id_len) =
        Handshake::decode_fixed(fixed).map_err(|error| error.to_string())?;
    let BufResult(read, id) = stream.read_exact(vec![0u8; id_len]).await;
    read.map_err(|error| format!("handshake: {error}"))?;
    handshake.cluster_id =
        String::from_utf8(id).map_err(|_| "handshake: cluster id is not UTF-8".to_owned())?;
    Ok(handshake)
}

fn check_handshake(handshake: &Handshake, view: &ClusterView) -> Result<(), String> {
    let settings = &view.settings;
    if handshake.cluster_id != settings.cluster_id {
        return Err(format!(
            "peer of cluster {:?}, this node is in {:?}",
            handshake.cluster_id, settings.cluster_id
        ));
    }
    if handshake.to != settings.node_id {
        return Err(format!(
            "peer dialed node {}, this is node {}",
            handshake.to, settings.node_id
        ));
    }
    if handshake.from == settings.node_id || settings.peer(handshake.from).is_none() {
        return Err(format!("unknown node id {}", handshake.from));
    }
    if handshake.shard != 0 {
        return Err(format!(
            "no shard {} serves replication yet",
            handshake.shard
        ));
    }
    Ok(())
}
