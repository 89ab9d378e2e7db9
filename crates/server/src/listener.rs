//! Listeners: every shard binds the same addresses with SO_REUSEPORT and accepts its share;
//! each accepted socket becomes a connection task on that shard (connection.rs).

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    os::fd::AsRawFd,
    rc::Rc,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    connection::{self, Listener},
    context::Shard,
};

/// Listen backlog per shard.
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_MS: u64 = 20;

/// Binds every enabled listener (TCP, WebSocket) on every shard: shard 0 first (learning the
/// real ports when an address has port 0), then every other shard the same addresses. Each
/// shard accepts its share from then on.
pub async fn listen_on_every_shard(shard0: &Rc<Shard>) -> Result<(), String> {
    let seed = &shard0.state().seed;
    let mut wanted = Vec::new();
    if seed.tcp.enabled {
        wanted.push((Listener::Tcp, seed.tcp.address));
    }
    if seed.websocket.enabled {
        wanted.push((Listener::WebSocket, seed.websocket.address));
    }
    refuse_if_served(&wanted)?;
    let first = bind_all(&wanted)?;
    let bound = first
        .iter()
        .map(|(kind, socket)| {
            let address = socket
                .local_addr()
                .map_err(|error| format!("cannot read the bound address: {error}"))?;
            Ok((*kind, address))
        })
        .collect::<Result<Vec<_>, String>>()?;
    start_accepting(shard0, first)?;
    for target in shard0.all_shards().filter(|&id| id != shard0.id()) {
        let bound = bound.clone();
        shard0
            .call(target, move |shard| async move {
                start_accepting(&shard, bind_all(&bound)?)
            })
            .await
            .map_err(|error| error.to_string())??;
    }
    for (kind, address) in bound {
        publish(shard0, kind, address);
    }
    Ok(())
}

/// SO_REUSEPORT lets any process of the same user bind an address galgo already serves, and
/// the kernel then splits new connections between them: a second server started on the same
/// address by mistake would silently take part of the clients, each server with its own data.
/// So before shard 0 binds, a plain bind of each configured address (SO_REUSEADDR, which on
/// Linux still refuses an address with a listening socket on it, but not one with only
/// TIME_WAIT leftovers of an earlier run) tells whether anyone listens there. Port 0 is always
/// free.
fn refuse_if_served(wanted: &[(Listener, SocketAddr)]) -> Result<(), String> {
    for &(kind, address) in wanted.iter().filter(|(_, address)| address.port() != 0) {
        if let Err(error) = bound_socket(address, false) {
            let key = match kind {
                Listener::Tcp => "[tcp] address",
                Listener::WebSocket => "[websocket] address",
            };
            return Err(format!(
                "cannot listen on {address} ({key}): {error}; another process serves it"
            ));
        }
    }
    Ok(())
}

fn bind_all(wanted: &[(Listener, SocketAddr)]) -> Result<Vec<(Listener, StdListener)>, String> {
    wanted
        .iter()
        .map(|&(kind, address)| Ok((kind, bind_reuseport(address)?)))
        .collect()
}

/// Records a bound address for the ready line and GetClusterMetadata, and logs it.
fn publish(shard0: &Shard, kind: Listener, address: SocketAddr) {
    let shards = shard0.shard_count();
    let seed = &shard0.state().seed;
    match kind {
        Listener::Tcp => {
            let _ = seed.bound.tcp.set(address);
            let tls = seed.tcp_tls.is_some();
            tracing::info!(%address, tls, shards, "TCP listening on every shard");
        }
        Listener::WebSocket => {
            let _ = seed.bound.websocket.set(address);
            let tls = seed.websocket_tls.is_some();
            tracing::info!(%address, tls, shards, "WebSocket listening on every shard");
        }
    }
}

fn bind_reuseport(address: SocketAddr) -> Result<StdListener, String> {
    let bind = || -> std::io::Result<StdListener> {
        let socket = bound_socket(address, true)?;
        socket.set_nonblocking(true)?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|error| format!("cannot listen on {address}: {error}"))
}

/// A TCP socket bound to `address` with SO_REUSEADDR (a restart is not refused over the
/// TIME_WAIT leftovers of the previous run), and SO_REUSEPORT when every shard binds it.
pub fn bound_socket(address: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&address.into())?;
    Ok(socket)
}

/// Starts this shard's accept loops.
fn start_accepting(
    shard: &Rc<Shard>,
    listeners: Vec<(Listener, StdListener)>,
) -> Result<(), String> {
    for (kind, listener) in listeners {
        let listener = compio::net::TcpListener::from_std(listener).map_err(|error| {
            format!(
                "shard {}: cannot register the listener: {error}",
                shard.id()
            )
        })?;
        let task = accept_loop(shard.clone(), kind, listener);
        compio::runtime::spawn(task).detach();
    }
    Ok(())
}

async fn accept_loop(shard: Rc<Shard>, kind: Listener, listener: compio::net::TcpListener) {
    let fd = listener.as_raw_fd();
    shard.register_socket(fd);
    let connections_max = shard.state().seed.limits.connections_per_shard_max;
    loop {
        let accepted = listener.accept().await;
        if shard.is_stopping() {
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                if shard.state().clients.borrow().len() >= connections_max {
                    tracing::warn!(shard = shard.id().0, %peer, ?kind, connections_max, "connection refused: shard is full");
                    continue;
                }
                let task = connection::serve(shard.clone(), stream, peer, kind);
                compio::runtime::spawn(task).detach();
            }
            Err(error) => {
                tracing::warn!(shard = shard.id().0, ?kind, %error, "accept failed");
                compio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
    shard.unregister_socket(fd);
}
