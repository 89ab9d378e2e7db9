//! The client and server sides of every adapter stack, talking to each other over a loopback
//! socket: TCP, TCP+TLS, WebSocket and WSS. Frames go out through both writes (one buffer,
//! handed back, and chunks), whole and large (past rustls's send buffer and the WebSocket
//! receive room, and in more chunks than one socket write takes), and come back as the same
//! byte stream; then the client closes, the server sees the end of the stream and answers in
//! kind.

use std::{net::SocketAddr, path::Path, sync::Arc};

use bytes::{Bytes, BytesMut};
use compio::{
    BufResult,
    net::{TcpListener, TcpStream},
};
use galgo_transport::{
    ByteStream, Client, Server, TlsStream, WsStream,
    limits::{IOVECS_MAX, SEND_BUFFER_BYTES, WS_RECEIVE_BYTES_MAX},
    tls_config::{client_config, server_config, server_name},
};
use tungstenite::protocol::WebSocketConfig;

/// What the client sends: a small frame, a large one, and one in chunks.
fn frames() -> (Vec<u8>, Vec<u8>, Vec<Vec<u8>>) {
    let small = b"hello".to_vec();
    let large: Vec<u8> = (0..SEND_BUFFER_BYTES.max(WS_RECEIVE_BYTES_MAX) * 2 + 12_345)
        .map(|index| (index * 31 % 251) as u8)
        .collect();
    let chunks = vec![b"a".to_vec(), vec![7; 70_000], b"tail".to_vec()];
    (small, large, chunks)
}

fn expected() -> Vec<u8> {
    let (small, large, chunks) = frames();
    [small, large, chunks.concat()].concat()
}

/// Reads until `len` bytes arrived.
async fn read_exactly<S: ByteStream>(stream: &mut S, len: usize) -> Vec<u8> {
    let mut buffer = BytesMut::new();
    while buffer.len() < len {
        let BufResult(read, returned) = stream.read(buffer).await;
        buffer = returned;
        assert!(read.expect("read") > 0, "the stream ended early");
    }
    assert_eq!(buffer.len(), len, "no more than was sent");
    buffer.to_vec()
}

/// The client's half: sends the frames both ways, reads the echo, closes; a `polite` stream
/// (TLS, WebSocket) waits for the server's answer to its close, plain TCP just goes.
async fn client_half<S: ByteStream>(mut stream: S, polite: bool) {
    let (small, large, chunks) = frames();
    for frame in [small, large] {
        let buffer = BytesMut::from(&frame[..]);
        let BufResult(written, returned) = stream.write(buffer).await;
        written.expect("write");
        assert_eq!(&returned[..], &frame[..], "the buffer comes back unchanged");
    }
    let chunks = chunks.into_iter().map(Bytes::from).collect();
    stream.write_vectored(chunks).await.expect("write chunks");
    let echoed = read_exactly(&mut stream, expected().len()).await;
    assert!(echoed == expected(), "the echo differs");
    stream.close().await.expect("close");
    if polite {
        // The server answers in kind: close_notify, a Close reply.
        let BufResult(read, _) = stream.read(BytesMut::new()).await;
        assert_eq!(read.expect("end of stream"), 0, "the server closed");
    }
}

/// The server's half: reads everything, echoes it in two frames (chunks, then one buffer),
/// then waits for the end of the stream.
async fn server_half<S: ByteStream>(mut stream: S) {
    let received = read_exactly(&mut stream, expected().len()).await;
    assert!(received == expected(), "the request bytes differ");
    // Two thirds in chunks: more than rustls buffers (SEND_BUFFER_BYTES) at once.
    let (head, rest) = received.split_at(received.len() * 2 / 3);
    assert!(head.len() > SEND_BUFFER_BYTES);
    // Small chunks, as a 0.9 poll reply has (a frame header and a body a message): more
    // than one socket write takes (IOVECS_MAX), and an empty one among them.
    let mut chunks = head
        .chunks(300)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    assert!(chunks.len() > 2 * IOVECS_MAX);
    chunks.insert(5, Bytes::new());
    stream.write_vectored(chunks).await.expect("echo chunks");
    let BufResult(written, _) = stream.write(BytesMut::from(rest)).await;
    written.expect("echo buffer");
    let BufResult(read, _) = stream.read(BytesMut::new()).await;
    assert_eq!(read.expect("end of stream"), 0, "the client closed");
    stream.close().await.expect("close");
}

#[derive(Clone, Copy, Debug)]
enum Stack {
    Tcp,
    Tls,
    WebSocket,
    Wss,
}

async fn run(stack: Stack, certs: &Path) {
    let cert_file = certs.join("cert.pem");
    let key_file = certs.join("key.pem");
    let server_tls = server_config(&cert_file, &key_file, true).expect("server identity");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("address");
    let server = compio::runtime::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let websocket = WebSocketConfig::default();
        match stack {
            Stack::Tcp => server_half(tcp).await,
            Stack::Tls => server_half(TlsStream::accept(tcp, server_tls).await.expect("TLS")).await,
            Stack::WebSocket => {
                server_half(WsStream::accept(tcp, websocket).await.expect("upgrade")).await
            }
            Stack::Wss => {
                let tls = TlsStream::accept(tcp, server_tls).await.expect("TLS");
                server_half(WsStream::accept(tls, websocket).await.expect("upgrade")).await
            }
        }
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let address = format!("localhost:{}", addr.port());
    match stack {
        Stack::Tcp => client_half(tcp, false).await,
        Stack::Tls => client_half(client_tls(tcp, &cert_file, &address).await, true).await,
        Stack::WebSocket => {
            let url = format!("ws://{address}");
            let ws = WsStream::<_, Client>::connect(tcp, &url).await;
            client_half(ws.expect("upgrade"), true).await
        }
        Stack::Wss => {
            let url = format!("wss://{address}");
            let tls = client_tls(tcp, &cert_file, &address).await;
            let ws = WsStream::<_, Client>::connect(tls, &url).await;
            client_half(ws.expect("upgrade"), true).await
        }
    }
    server.await.expect("the server's half");
}

/// The client's TLS session with `address`, trusting the server's self-signed `cert_file`.
async fn client_tls(
    tcp: TcpStream,
    cert_file: &Path,
    address: &str,
) -> TlsStream<TcpStream, Client> {
    let config = client_config(true, Some(cert_file)).expect("client config");
    let name = server_name("", address).expect("name");
    TlsStream::connect(tcp, Arc::new(config), name)
        .await
        .expect("TLS handshake")
}

#[compio::test]
async fn every_stack_carries_frames_both_ways() {
    let dir = tempfile::tempdir().expect("temp dir");
    for stack in [Stack::Tcp, Stack::Tls, Stack::WebSocket, Stack::Wss] {
        run(stack, dir.path()).await;
    }
}

#[compio::test]
async fn a_request_that_is_not_an_upgrade_gets_400() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = compio::runtime::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        WsStream::<_, Server>::accept(tcp, WebSocketConfig::default())
            .await
            .err()
    });
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let request = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"[..]);
    let BufResult(written, _) = tcp.write(request).await;
    written.expect("request");
    let error = server.await.expect("server task").expect("refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    let mut answer = BytesMut::new();
    loop {
        let BufResult(read, returned) = tcp.read(answer).await;
        answer = returned;
        if read.expect("read") == 0 {
            break;
        }
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 400 Bad Request\r\n"),
        "{answer:?}"
    );
}
