//! The operators' HTTP endpoint (`[http]`): `/metrics` (OpenMetrics text, metrics.rs) and
//! `/health` (200 once every shard serves, 503 while starting or stopping).
//!
//! It runs on threads of its own, never on a shard: an accept thread, and one short-lived
//! thread per connection (at most `connections_max` at once; more are answered 503). A scrape
//! reaches the shards only through the engine's `ShardsHandle`, one job per shard. Requests
//! are parsed by httparse; every answer closes its connection.
//!
//! Bad input: a request that does not parse is answered 400; one that does not arrive whole
//! within `request_timeout_ms` (or is larger than [`REQUEST_BYTES_MAX`]) is cut; an unknown
//! path is 404 and a method other than GET or HEAD is 405. Each gets one log line.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use galgo_shards::ShardsHandle;

use crate::{config::HttpConfig, context::Context, listener, metrics};

/// Largest request head read; a longer one is cut.
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Connections the kernel queues for the accept thread.
const LISTEN_BACKLOG: i32 = 64;
/// Headers parsed at most in one request.
const HEADERS_MAX: usize = 32;
/// The content type of /metrics.
const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where the server is in its life, as /health reports it. Shared by the control thread
/// (which moves it on) and the HTTP threads (which read it).
#[derive(Debug, Default)]
pub struct Health(AtomicU8);

impl Health {
    const STARTING: u8 = 0;
    const SERVING: u8 = 1;
    const STOPPING: u8 = 2;

    /// Every shard serves.
    pub fn serving(&self) {
        let _ = self.0.compare_exchange(
            Self::STARTING,
            Self::SERVING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// A graceful shutdown began.
    pub fn stopping(&self) {
        self.0.store(Self::STOPPING, Ordering::Release);
    }

    fn word(&self) -> Option<&'static str> {
        match self.0.load(Ordering::Acquire) {
            Self::SERVING => None,
            Self::STARTING => Some("starting"),
            _ => Some("stopping"),
        }
    }
}

/// Binds `[http] address` (step 2 of start-up, so a taken port fails the start before any
/// shard runs).
pub fn bind(config: &HttpConfig) -> Result<TcpListener, String> {
    let address = config.address;
    let bind = || -> io::Result<TcpListener> {
        let socket = listener::bound_socket(address, false)?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|error| format!("cannot listen on {address} ([http] address): {error}"))
}

/// What every connection thread shares.
struct Endpoint {
    config: HttpConfig,
    health: Arc<Health>,
    shards: ShardsHandle<Context>,
    active: AtomicUsize,
}

/// Serves `listener` on a thread of its own until the process ends.
pub fn start(
    listener: TcpListener,
    config: HttpConfig,
    health: Arc<Health>,
    shards: ShardsHandle<Context>,
) -> io::Result<()> {
    let endpoint = Arc::new(Endpoint {
        config,
        health,
        shards,
        active: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("galgo-http".into())
        .spawn(move || accept_loop(&listener, &endpoint))
        .map(drop)
}

fn accept_loop(listener: &TcpListener, endpoint: &Arc<Endpoint>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            continue;
        };
        let peer = stream.peer_addr().ok();
        if endpoint.active.fetch_add(1, Ordering::AcqRel) >= endpoint.config.connections_max {
            endpoint.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(?peer, "HTTP connection refused: too many at once");
            let _ = respond(&stream, "503 Service Unavailable", "text/plain", b"busy\n");
            continue;
        }
        let endpoint = endpoint.clone();
        let spawned = std::thread::Builder::new()
            .name("galgo-http-conn".into())
            .spawn(move || {
                serve(stream, peer, &endpoint);
                endpoint.active.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start an HTTP connection thread");
        }
    }
}

/// A request head as far as this endpoint needs it.
struct Head {
    method: String,
    path: String,
}

/// Why a request was not read.
enum Unread {
    /// Not HTTP: 400.
    Malformed(String),
    /// Too slow, too long, or the peer left: the connection is closed.
    Cut(String),
}

fn serve(mut stream: TcpStream, peer: Option<SocketAddr>, endpoint: &Endpoint) {
    let timeout = Duration::from_millis(endpoint.config.request_timeout_ms);
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let head = match read_head(&mut stream) {
        Ok(head) => head,
        Err(Unread::Malformed(why)) => {
            tracing::warn!(?peer, why, "malformed HTTP request; answered 400");
            let _ = respond(&stream, "400 Bad Request", "text/plain", b"bad request\n");
            return;
        }
        Err(Unread::Cut(why)) => {
            tracing::info!(?peer, why, "HTTP request cut");
            return;
        }
    };
    let (status, content_type, body) = route(&head, endpoint);
    if status.starts_with('4') {
        tracing::info!(
            ?peer,
            method = head.method,
            path = head.path,
            status,
            "HTTP request refused"
        );
    }
    let send_body = head.method != "HEAD";
    if let Err(error) = respond_with(&stream, status, content_type, &body, send_body) {
        tracing::debug!(?peer, %error, "HTTP response not delivered");
    }
}

fn read_head(stream: &mut TcpStream) -> Result<Head, Unread> {
    let mut buffer = vec![0; REQUEST_BYTES_MAX];
    let mut filled = 0;
    loop {
        if filled == buffer.len() {
            return Err(Unread::Cut(format!(
                "request head over {REQUEST_BYTES_MAX} bytes"
            )));
        }
        let read = stream
            .read(&mut buffer[filled..])
            .map_err(|error| Unread::Cut(error.to_string()))?;
        if read == 0 {
            return Err(Unread::Cut("the peer closed before a whole request".into()));
        }
        filled += read;
        let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buffer[..filled]) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok(Head {
                    method: request.method.unwrap_or_default().to_owned(),
                    path: request.path.unwrap_or_default().to_owned(),
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(error) => return Err(Unread::Malformed(error.to_string())),
        }
    }
}

fn route(head: &Head, endpoint: &Endpoint) -> (&'static str, &'static str, Vec<u8>) {
    if head.method != "GET" && head.method != "HEAD" {
        return (
            "405 Method Not Allowed",
            "text/plain",
            b"GET or HEAD\n".to_vec(),
        );
    }
    let path = head.path.split('?').next().unwrap_or_default();
    match path {
        "/health" => match endpoint.health.word() {
            None => ("200 OK", "text/plain", b"serving\n".to_vec()),
            Some(word) => (
                "503 Service Unavailable",
                "text/plain",
                format!("{word}\n").into(),
            ),
        },
        "/metrics" => {
            let timeout = Duration::from_millis(endpoint.config.request_timeout_ms);
            let figures = metrics::gather(&endpoint.shards, timeout);
            (
                "200 OK",
                OPENMETRICS_TYPE,
                metrics::encode(&figures).into_bytes(),
            )
        }
        _ => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    }
}

fn respond(stream: &TcpStream, status: &str, content_type: &str, body: &[u8]) -> io::Result<()> {
    respond_with(stream, status, content_type, body, true)
}

/// Writes a response; with `send_body` false (HEAD) only its head, which still names the
/// body's length.
fn respond_with(
    mut stream: &TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
    send_body: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if send_body {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_starting_then_serving_then_stopping() {
        let health = Health::default();
        assert_eq!(health.word(), Some("starting"));
        health.serving();
        assert_eq!(health.word(), None);
        health.stopping();
        assert_eq!(health.word(), Some("stopping"));
        // A server stopped during start-up never reports serving.
        health.serving();
        assert_eq!(health.word(), Some("stopping"));
    }
}
