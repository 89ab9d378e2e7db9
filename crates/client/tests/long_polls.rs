//! galgo's long polls, end to end: a poll that finds nothing waits on the server and is
//! answered by the append that brings its messages; one that finds nothing answers at the end
//! of its wait; the server's bound cuts longer waits; in both client generations.

mod support {
    // Each test binary uses a different part of the harness.
    #[allow(dead_code)]
    pub mod galgo_server;
}

use std::time::{Duration, Instant};

use galgo_client::protocol::message::encode_message;
use galgo_client::protocol::{Consumer, Identifier, Partitioning, PollMessages, PollingStrategy};
use galgo_client::{Client, LongPolls};
use support::galgo_server::GalgoServer;

fn run<F: Future>(future: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(future)
}

fn poll_from(offset: u64, wait_ms: u32) -> PollMessages {
    PollMessages {
        consumer: Consumer::Single(Identifier::Numeric(1)),
        stream: Identifier::Name("waits".into()),
        topic: Identifier::Name("t".into()),
        partition_id: Some(0),
        strategy: PollingStrategy::Offset(offset),
        count: 10,
        auto_commit: false,
        wait_ms,
    }
}

async fn connect(server: &GalgoServer, protocol: &str) -> Client {
    let url = format!("{}?protocol={protocol}", server.connection_string());
    Client::from_connection_string(&url)
        .await
        .expect("connect and log in")
}

async fn send(client: &mut Client, payload: &[u8]) {
    let mut message = Vec::new();
    encode_message(0, 0, payload, b"", &mut message);
    let (stream, topic) = (
        Identifier::Name("waits".into()),
        Identifier::Name("t".into()),
    );
    client
        .send_messages(&stream, &topic, &Partitioning::PartitionId(0), &[&message])
        .await
        .expect("send");
}

#[test]
fn a_waiting_poll_is_answered_by_the_append() {
    for protocol in ["0.8", "0.9"] {
        let server = GalgoServer::start();
        run(async {
            let mut producer = connect(&server, protocol).await;
            producer.create_stream("waits").await.unwrap();
            let stream = Identifier::Name("waits".into());
            producer.create_topic(&stream, "t", 1).await.unwrap();
            let mut consumer = connect(&server, protocol).await;
            // The poll waits (up to 20 s, far longer than the test) for offset 0; the
            // producer's send, on another connection, is what answers it.
            let waiting = compio::runtime::spawn(async move {
                let polled = consumer.poll_messages(&poll_from(0, 20_000)).await;
                (polled.expect("poll"), consumer)
            });
            send(&mut producer, b"wake up").await;
            let (polled, consumer) = waiting.await.expect("the poll task");
            assert_eq!(polled.header.messages_count, 1, "{protocol}");
            let message = polled.iter().next().unwrap().unwrap();
            assert_eq!((message.offset(), message.payload()), (0, &b"wake up"[..]));
            drop(consumer);
        });
    }
}

#[test]
fn a_poll_of_an_offset_further_on_waits_for_that_offset() {
    let server = GalgoServer::start();
    run(async {
        let mut producer = connect(&server, "0.8").await;
        producer.create_stream("waits").await.unwrap();
        let stream = Identifier::Name("waits".into());
        producer.create_topic(&stream, "t", 1).await.unwrap();
        let mut consumer = connect(&server, "0.8").await;
        let waiting =
            compio::runtime::spawn(
                async move { consumer.poll_messages(&poll_from(2, 20_000)).await },
            );
        // Offsets 0 and 1 wake the poll, which finds nothing at 2 and waits again.
        for payload in [&b"zero"[..], b"one", b"two"] {
            send(&mut producer, payload).await;
        }
        let polled = waiting.await.expect("the poll task").expect("poll");
        assert_eq!(polled.header.messages_count, 1);
        let message = polled.iter().next().unwrap().unwrap();
        assert_eq!((message.offset(), message.payload()), (2, &b"two"[..]));
    });
}

#[test]
fn a_wait_that_runs_out_answers_empty_and_the_bound_cuts_long_asks() {
    // The server holds polls at most 300 ms, whatever they ask.
    let server = GalgoServer::start_with(&["--set".into(), "limits.poll_wait_ms_max=300".into()]);
    run(async {
        let mut client = connect(&server, "0.8").await;
        client.create_stream("waits").await.unwrap();
        let stream = Identifier::Name("waits".into());
        client.create_topic(&stream, "t", 1).await.unwrap();
        assert_eq!(client.long_polls(), LongPolls::Unknown);
        let started = Instant::now();
        let polled = client.poll_messages(&poll_from(0, 200)).await.unwrap();
        assert_eq!(polled.header.messages_count, 0);
        assert!(started.elapsed() >= Duration::from_millis(200), "it waited");
        assert_eq!(client.long_polls(), LongPolls::Honoured);
        // Asking an hour gets the server's 300 ms: the test ends.
        let polled = client
            .poll_messages(&poll_from(0, 3_600_000))
            .await
            .unwrap();
        assert_eq!(polled.header.messages_count, 0);
        // A poll without a wait is answered at once, as by any Iggy server.
        let polled = client.poll_messages(&poll_from(0, 0)).await.unwrap();
        assert_eq!(polled.header.messages_count, 0);
    });
}
