//! Every transport of the client against a real galgo-server: TCP, WebSocket, TCP+TLS and WSS
//! each ping, log in, create a stream and topic, send and poll a small and a 1 MiB message; TLS
//! with an untrusted CA or the wrong name fails cleanly, and the server keeps serving.

mod support {
    #[path = "../../../server/tests/support/certs.rs"]
    pub mod certs;
    // Each test binary uses a different part of the harness.
    #[allow(dead_code)]
    pub mod galgo_server;
}

use galgo_client::protocol::message::encode_message;
use galgo_client::protocol::{Consumer, Identifier, Partitioning, PollMessages, PollingStrategy};
use galgo_client::{Client, ClientError};
use support::certs::TestCertificates;
use support::galgo_server::GalgoServer;
use tempfile::TempDir;

/// Large enough to span many TLS records, WebSocket reads and socket reads.
const LARGE_PAYLOAD_BYTES: usize = 1024 * 1024;

fn run<F: Future>(future: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(future)
}

/// A server with TLS on its TCP port and WSS on its WebSocket port, certificates from one CA.
fn tls_server() -> (GalgoServer, TestCertificates, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let certificates = TestCertificates::generate(dir.path());
    let mut flags = certificates.server_flags("tcp");
    flags.extend(certificates.server_flags("websocket"));
    (GalgoServer::start_with(&flags), certificates, dir)
}

/// The round trip every transport must carry, named `label` so that runs can share a server.
async fn exercise(connection_string: &str, label: &str) {
    let mut client = Client::from_connection_string(connection_string)
        .await
        .unwrap_or_else(|error| panic!("{label}: connect and log in: {error}"));
    client.ping().await.unwrap();
    let stream = client
        .create_stream(&format!("over-{label}"))
        .await
        .unwrap();
    let stream = Identifier::Numeric(stream.header.id);
    client.create_topic(&stream, "events", 1).await.unwrap();
    let topic = Identifier::Name("events".into());

    let large: Vec<u8> = (0..LARGE_PAYLOAD_BYTES).map(|i| (i % 251) as u8).collect();
    for payload in [label.as_bytes(), &large] {
        let mut message = Vec::new();
        encode_message(0, 0, payload, b"", &mut message);
        client
            .send_messages(&stream, &topic, &Partitioning::PartitionId(0), &[&message])
            .await
            .unwrap();
    }
    let polled = client
        .poll_messages(&PollMessages {
            consumer: Consumer::Single(Identifier::Numeric(1)),
            stream: stream.clone(),
            topic,
            partition_id: Some(0),
            strategy: PollingStrategy::Offset(0),
            count: 10,
            auto_commit: false,
            wait_ms: 0,
        })
        .await
        .unwrap();
    let payloads: Vec<Vec<u8>> = polled
        .iter()
        .map(|message| message.unwrap().payload().to_vec())
        .collect();
    assert_eq!(payloads.len(), 2, "{label}");
    assert_eq!(payloads[0], label.as_bytes(), "{label}");
    assert!(
        payloads[1] == large,
        "{label}: the 1 MiB payload came back changed"
    );
    client.delete_stream(&stream).await.unwrap();
    client.ping().await.unwrap();
}

#[test]
fn tcp_and_websocket() {
    let server = GalgoServer::start();
    run(async {
        exercise(&format!("iggy://iggy:iggy@{}", server.addr), "tcp").await;
        let ws = format!("iggy+ws://iggy:iggy@{}?nodelay=true", server.websocket_addr);
        exercise(&ws, "ws").await;
    });
}

#[test]
fn tls_and_wss() {
    let (server, certificates, _dir) = tls_server();
    let ca = certificates.ca_file.display();
    run(async {
        let tls = format!(
            "iggy+tcp://iggy:iggy@{}?tls=true&tls_domain=localhost&tls_ca_file={ca}",
            server.addr
        );
        exercise(&tls, "tls").await;
        // The domain defaults to the host of the address, which the certificate names too.
        let wss = format!(
            "iggy+ws://iggy:iggy@{}?tls=true&tls_ca_file={ca}&tls_validate_certificate=true",
            server.websocket_addr
        );
        exercise(&wss, "wss").await;
        // Over WebSocket the SDK does not validate certificates unless asked to.
        let unchecked = format!("iggy+ws://iggy:iggy@{}?tls=true", server.websocket_addr);
        exercise(&unchecked, "wss-unchecked").await;
    });
}

#[test]
fn untrusted_certificates_fail_cleanly() {
    let (server, certificates, _dir) = tls_server();
    let other_dir = tempfile::tempdir().expect("temp dir");
    let other_ca = TestCertificates::generate(other_dir.path()).ca_file;
    let other_ca = other_ca.display();
    run(async {
        for (address, scheme, extra) in [
            (server.addr, "iggy+tcp", ""),
            (
                server.websocket_addr,
                "iggy+ws",
                "&tls_validate_certificate=true",
            ),
        ] {
            let wrong_ca =
                format!("{scheme}://iggy:iggy@{address}?tls=true&tls_ca_file={other_ca}{extra}");
            let error = Client::from_connection_string(&wrong_ca).await.err();
            assert!(
                matches!(&error, Some(ClientError::Tls(why)) if why.contains("invalid peer certificate")),
                "{scheme}: {error:?}"
            );
        }
        // Trusted CA, but a name the certificate does not carry.
        let wrong_name = format!(
            "iggy+tcp://iggy:iggy@{}?tls=true&tls_domain=example.com&tls_ca_file={}",
            server.addr,
            certificates.ca_file.display()
        );
        let error = Client::from_connection_string(&wrong_name).await.err();
        assert!(
            matches!(&error, Some(ClientError::Tls(why)) if why.contains("not valid for name")),
            "{error:?}"
        );
        let missing = format!(
            "iggy+tcp://iggy:iggy@{}?tls=true&tls_ca_file=/nonexistent/ca.pem",
            server.addr
        );
        let error = Client::from_connection_string(&missing).await.err();
        assert!(matches!(error, Some(ClientError::Tls(_))), "{error:?}");
        // Plain TCP to a TLS port is not a hang: the server drops what is not a handshake.
        let plain = format!("iggy://iggy:iggy@{}", server.addr);
        assert!(Client::from_connection_string(&plain).await.is_err());
        // The server is unharmed.
        let good = format!(
            "iggy+tcp://iggy:iggy@{}?tls=true&tls_domain=localhost&tls_ca_file={}",
            server.addr,
            certificates.ca_file.display()
        );
        Client::from_connection_string(&good).await.unwrap();
    });
}
