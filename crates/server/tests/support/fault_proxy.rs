//! A fault-injecting TCP proxy for the links between cluster nodes: it forwards what its
//! listener receives to one target, and on command drops every connection (and closes new ones
//! at once), or delays what it forwards. Used one per direction of a node pair, it cuts a node
//! off, partitions one way, or slows a link, then heals.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::Duration,
};

/// One proxied link.
pub struct FaultProxy {
    /// Where the proxy listens: give this address to the dialing node as its peer's.
    pub address: SocketAddr,
    state: Arc<State>,
}

struct State {
    target: SocketAddr,
    dropping: AtomicBool,
    delay_ms: AtomicU64,
    /// Both sockets of every forwarded connection, to cut them.
    open: Mutex<Vec<TcpStream>>,
    stopped: AtomicBool,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let state = Arc::new(State {
            target,
            dropping: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
            open: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let accepting = state.clone();
        thread::spawn(move || accept_loop(listener, accepting));
        FaultProxy { address, state }
    }

    /// Drops every connection now and every new one until [`FaultProxy::heal`].
    pub fn cut(&self) {
        self.state.dropping.store(true, Ordering::SeqCst);
        for socket in self.state.open.lock().expect("lock").drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Forwards again, without delay.
    pub fn heal(&self) {
        self.state.delay_ms.store(0, Ordering::SeqCst);
        self.state.dropping.store(false, Ordering::SeqCst);
    }

    /// Holds every chunk it forwards for `delay` first.
    pub fn delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(self.address);
    }
}

fn accept_loop(listener: TcpListener, state: Arc<State>) {
    for incoming in listener.incoming() {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = incoming else { continue };
        if state.dropping.load(Ordering::SeqCst) {
            continue;
        }
        let Ok(outbound) = TcpStream::connect(state.target) else {
            continue;
        };
        let (Ok(inbound_copy), Ok(outbound_copy)) = (inbound.try_clone(), outbound.try_clone())
        else {
            continue;
        };
        {
            let mut open = state.open.lock().expect("lock");
            open.push(inbound_copy);
            open.push(outbound_copy);
        }
        let forward_state = state.clone();
        let (Ok(inbound_reader), Ok(outbound_reader)) = (inbound.try_clone(), outbound.try_clone())
        else {
            continue;
        };
        thread::spawn(move || pump(inbound_reader, outbound, forward_state));
        let back_state = state.clone();
        thread::spawn(move || pump(outbound_reader, inbound, back_state));
    }
}

/// Copies `from` to `to` until either ends or the link is cut.
fn pump(mut from: TcpStream, mut to: TcpStream, state: Arc<State>) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            // The fault itself, not a wait of the test.
            thread::sleep(Duration::from_millis(delay));
        }
        if state.dropping.load(Ordering::SeqCst) || to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
