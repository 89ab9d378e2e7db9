//! Listeners: every shard binds the same address with SO_REUSEPORT and accepts its share.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    os::fd::AsRawFd,
    rc::Rc,
    time::Duration,
};

use galgo_shards::{Serve, Shard};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    connection,
    context::{Context, ContextSeed},
};

/// Listen backlog per shard.
const LISTEN_BACKLOG: i32 = 1024;
/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY_MS: u64 = 20;

/// The engine's `serve` step: shard 0 binds first (learning the real port when the address
/// has port 0), then every other shard binds that same address.
pub fn serve(seed: ContextSeed) -> Serve {
    Box::new(move |shard0: Rc<Shard>| {
        Box::pin(async move {
            crate::handler::start_shard0_tasks(&shard0, &seed);
            if !seed.tcp.enabled {
                return Ok(());
            }
            let first = bind_reuseport(seed.tcp.address)?;
            let address = first
                .local_addr()
                .map_err(|error| format!("cannot read the bound address: {error}"))?;
            start_tcp(&shard0, seed.clone(), first)?;
            for target in shard0.all_shards().filter(|&id| id != shard0.id()) {
                let seed = seed.clone();
                shard0
                    .call(target, move |shard| async move {
                        start_tcp(&shard, seed, bind_reuseport(address)?)
                    })
                    .await
                    .map_err(|error| error.to_string())??;
            }
            let _ = seed.bound.set(address);
            tracing::info!(%address, shards = shard0.shard_count(), "TCP listening on every shard");
            Ok(())
        })
    })
}

fn bind_reuseport(address: SocketAddr) -> Result<StdListener, String> {
    let bind = || -> std::io::Result<StdListener> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|error| format!("cannot listen on {address}: {error}"))
}

fn start_tcp(shard: &Rc<Shard>, seed: ContextSeed, listener: StdListener) -> Result<(), String> {
    let listener = compio::net::TcpListener::from_std(listener).map_err(|error| {
        format!(
            "shard {}: cannot register the listener: {error}",
            shard.id()
        )
    })?;
    let context = Rc::new(Context::new(seed));
    compio::runtime::spawn(accept_loop(shard.clone(), context, listener)).detach();
    Ok(())
}

async fn accept_loop(shard: Rc<Shard>, context: Rc<Context>, listener: compio::net::TcpListener) {
    let fd = listener.as_raw_fd();
    shard.register_socket(fd);
    let connections_max = context.seed.tcp.connections_per_shard_max;
    loop {
        let accepted = listener.accept().await;
        if shard.is_stopping() {
            break;
        }
        match accepted {
            Ok((stream, peer)) => {
                if shard.clients.borrow().len() >= connections_max {
                    tracing::warn!(shard = shard.id().0, %peer, connections_max, "connection refused: shard is full");
                    continue;
                }
                let task = connection::serve_tcp(shard.clone(), context.clone(), stream, peer);
                compio::runtime::spawn(task).detach();
            }
            Err(error) => {
                tracing::warn!(shard = shard.id().0, %error, "accept failed");
                compio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
            }
        }
    }
    shard.unregister_socket(fd);
}
