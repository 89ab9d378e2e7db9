//! Users, permissions and personal access tokens, driven with the official `iggy` 0.10.0 SDK
//! (and raw frames where a session must be watched byte by byte): every users and tokens
//! command, the permission matrix, token logins on fresh clients, expiry and cleanup, sessions
//! of deleted users, root credentials from the environment, persistence across restarts, and
//! that no password or token ever reaches the logs.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use iggy::prelude::*;
use support::TestServer;
use support::raw::{RawConn, login_payload};
use support::sdk::{self, TEST_TIMEOUT, id, name, within};

/// How long a condition (a token expiring, the cleaner running) may take to come true.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(20);
/// Pause between two looks at a condition.
const CONDITION_POLL: Duration = Duration::from_millis(20);

const LOGIN_USER: u32 = 38;
const GET_ME: u32 = 20;

/// The protocol code of a failed SDK call.
#[track_caller]
fn code<T: std::fmt::Debug>(result: Result<T, IggyError>) -> u32 {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(error) => error.as_code(),
    }
}

/// Waits until `condition` holds, at most [`CONDITION_TIMEOUT`].
async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + CONDITION_TIMEOUT;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(CONDITION_POLL).await;
    }
}

/// A connected client logged in as `username`.
async fn client_as(addr: SocketAddr, username: &str, password: &str) -> IggyClient {
    let client = sdk::client_without_login(addr).await;
    client
        .login_user(username, password)
        .await
        .unwrap_or_else(|error| panic!("login as {username}: {error}"));
    client
}

fn reader_of(stream_id: u32) -> Permissions {
    let grant = StreamPermissions {
        read_stream: true,
        ..StreamPermissions::default()
    };
    Permissions {
        global: GlobalPermissions::default(),
        streams: Some(BTreeMap::from([(stream_id as usize, grant)])),
    }
}

#[tokio::test]
async fn every_users_command_works_with_the_sdk() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let root = sdk::client(server.addr).await;
        create_get_and_list_users(&root).await;

        // Inactive users cannot log in; activating them lets them.
        let fresh = sdk::client_without_login(server.addr).await;
        activate_and_rename_bob(&root, &fresh).await;

        // A user changes its own password; the old one stops working.
        let alice = client_as(server.addr, "alice", "alice-pass").await;
        change_own_password_only(&alice, &fresh).await;

        root.update_permissions(&id(1), None)
            .await
            .expect("clear permissions");
        let cleared = root.get_user(&id(1)).await.expect("get").expect("found");
        assert_eq!(cleared.permissions, None);

        assert_root_user_stays(&root).await;
        delete_robert(&root, &fresh).await;
    })
    .await;
}

/// Root creates alice (a reader of stream 3) and bob (inactive, no permissions); a duplicate
/// name is refused, and both are found by name, by id and in the list.
async fn create_get_and_list_users(root: &IggyClient) {
    let permissions = reader_of(3);
    let created = root
        .create_user(
            "alice",
            "alice-pass",
            UserStatus::Active,
            Some(permissions.clone()),
        )
        .await
        .expect("create user");
    assert_eq!(created.id, 1);
    assert_eq!(created.username, "alice");
    assert_eq!(created.permissions, Some(permissions.clone()));
    let bare = root
        .create_user("bob", "bob-pass", UserStatus::Inactive, None)
        .await
        .expect("create user without permissions");
    assert_eq!(
        (bare.id, bare.status, bare.permissions),
        (2, UserStatus::Inactive, None)
    );
    assert_eq!(
        code(
            root.create_user("alice", "other", UserStatus::Active, None)
                .await
        ),
        46
    );

    let by_name = root
        .get_user(&name("alice"))
        .await
        .expect("get")
        .expect("found");
    assert_eq!((by_name.id, by_name.permissions), (1, Some(permissions)));
    assert!(root.get_user(&id(77)).await.expect("get").is_none());
    let users = root.get_users().await.expect("list");
    let names: Vec<_> = users
        .iter()
        .map(|user| (user.id, user.username.as_str()))
        .collect();
    assert_eq!(names, [(0, "iggy"), (1, "alice"), (2, "bob")]);
}

/// Inactive bob cannot log in; once root renames him robert and activates him, `fresh` logs in
/// under the new name. A rename onto a taken name is refused.
async fn activate_and_rename_bob(root: &IggyClient, fresh: &IggyClient) {
    assert_eq!(code(fresh.login_user("bob", "bob-pass").await), 47);
    root.update_user(&name("bob"), Some("robert"), Some(UserStatus::Active))
        .await
        .expect("rename and activate");
    assert_eq!(code(fresh.login_user("bob", "bob-pass").await), 42);
    assert_eq!(
        fresh
            .login_user("robert", "bob-pass")
            .await
            .expect("login")
            .user_id,
        2
    );
    assert_eq!(
        code(root.update_user(&id(2), Some("alice"), None).await),
        46
    );
}

/// Alice changes her own password (only with the right old one), after which `fresh` logs in
/// with the new one; she may read her own user but manage no one else.
async fn change_own_password_only(alice: &IggyClient, fresh: &IggyClient) {
    assert_eq!(
        code(
            alice
                .change_password(&id(1), "wrong-pass", "new-pass")
                .await
        ),
        42
    );
    alice
        .change_password(&id(1), "alice-pass", "alice-new")
        .await
        .expect("change own password");
    assert_eq!(code(fresh.login_user("alice", "alice-pass").await), 42);
    fresh
        .login_user("alice", "alice-new")
        .await
        .expect("new password");
    // …but not somebody else's, nor anything of users management.
    assert_eq!(
        code(alice.change_password(&id(0), "iggy", "hacked").await),
        41
    );
    assert_eq!(code(alice.get_users().await), 41);
    assert_eq!(code(alice.get_user(&id(0)).await), 41);
    assert_eq!(
        alice
            .get_user(&id(1))
            .await
            .expect("self")
            .expect("found")
            .id,
        1
    );
    assert_eq!(
        code(
            alice
                .create_user("eve", "eve-pass", UserStatus::Active, None)
                .await
        ),
        41
    );
    assert_eq!(code(alice.delete_user(&id(2)).await), 41);
}

/// The root user stays: it cannot be deleted, have its permissions changed or be deactivated.
async fn assert_root_user_stays(root: &IggyClient) {
    assert_eq!(code(root.delete_user(&id(0)).await), 48);
    assert_eq!(code(root.update_permissions(&id(0), None).await), 49);
    assert_eq!(
        code(
            root.update_user(&id(0), None, Some(UserStatus::Inactive))
                .await
        ),
        45
    );
}

/// Root deletes robert: he is gone, cannot log in, cannot be deleted twice; `fresh` then logs
/// out and is unauthenticated.
async fn delete_robert(root: &IggyClient, fresh: &IggyClient) {
    root.delete_user(&name("robert"))
        .await
        .expect("delete user");
    assert!(root.get_user(&id(2)).await.expect("get").is_none());
    assert_eq!(code(fresh.login_user("robert", "bob-pass").await), 42);
    assert_eq!(code(root.delete_user(&id(2)).await), 20);
    fresh.logout_user().await.expect("logout");
    assert_eq!(code(fresh.get_me().await), 40);
}

#[tokio::test]
async fn a_user_limited_to_reading_one_stream_can_poll_it_and_nothing_more() {
    let server = TestServer::start(&[]);
    within(TEST_TIMEOUT, async {
        let root = sdk::client(server.addr).await;
        let (readable, topic) = sdk::create_stream_and_topic(&root, "readable", "t", 1).await;
        let (other, other_topic) = sdk::create_stream_and_topic(&root, "other", "t", 1).await;
        for stream in [readable, other] {
            let mut batch = sdk::messages("m", 0..3);
            root.send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(0),
                &mut batch,
            )
            .await
            .expect("send as root");
        }
        root.create_user(
            "reader",
            "reader-pass",
            UserStatus::Active,
            Some(reader_of(readable)),
        )
        .await
        .expect("create reader");
        let reader = client_as(server.addr, "reader", "reader-pass").await;

        assert_reads_but_cannot_send(&reader, readable, topic).await;
        assert_other_stream_refused(&reader, other, other_topic).await;
        assert_nothing_else_allowed(&reader, readable).await;

        // Nothing the reader was refused happened.
        let intact = sdk::poll_offset(&root, other, other_topic, 0, 0, 10).await;
        assert_eq!(intact.messages.len(), 3);
        assert_eq!(
            sdk::poll_offset(&root, readable, topic, 0, 0, 10)
                .await
                .messages
                .len(),
            3
        );
        assert!(server.logs().contains("refused"));

        // Granting send on the stream takes effect on the live session.
        grant_send_then_send(&root, &reader, readable, topic).await;
    })
    .await;
}

/// The reader polls its stream, stores an offset there and reads the stream's details, but may
/// not send to it.
async fn assert_reads_but_cannot_send(reader: &IggyClient, readable: u32, topic: u32) {
    let polled = sdk::poll_offset(reader, readable, topic, 0, 0, 10).await;
    assert_eq!(
        sdk::payload_strings(&polled.messages),
        ["m-0", "m-1", "m-2"]
    );
    reader
        .store_consumer_offset(&Consumer::new(id(1)), &id(readable), &id(topic), Some(0), 1)
        .await
        .expect("store an offset where it may read");
    assert_eq!(
        reader
            .get_stream(&id(readable))
            .await
            .expect("get")
            .expect("found")
            .id,
        readable
    );

    let mut batch = sdk::messages("no", 0..1);
    let send_here = reader
        .send_messages(
            &id(readable),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut batch,
        )
        .await;
    assert_eq!(code(send_here), 41, "send to the readable stream");
}

/// Every read or write of a stream the reader was not granted is refused.
async fn assert_other_stream_refused(reader: &IggyClient, other: u32, other_topic: u32) {
    let poll_there = reader
        .poll_messages(
            &id(other),
            &id(other_topic),
            Some(0),
            &Consumer::new(id(1)),
            &PollingStrategy::offset(0),
            10,
            false,
        )
        .await;
    assert_eq!(code(poll_there), 41, "poll another stream");
    let mut batch = sdk::messages("no", 0..1);
    let send_there = reader
        .send_messages(
            &id(other),
            &id(other_topic),
            &Partitioning::partition_id(0),
            &mut batch,
        )
        .await;
    assert_eq!(code(send_there), 41, "send to another stream");
    assert_eq!(code(reader.get_stream(&id(other)).await), 41);
    assert_eq!(
        code(reader.get_topic(&id(other), &id(other_topic)).await),
        41
    );
    assert_eq!(code(reader.get_topics(&id(other)).await), 41);
    assert_eq!(code(reader.delete_stream(&id(other)).await), 41);
    assert_eq!(
        code(reader.purge_topic(&id(other), &id(other_topic)).await),
        41
    );
    let offset_there = reader
        .get_consumer_offset(&Consumer::new(id(1)), &id(other), &id(other_topic), Some(0))
        .await;
    assert_eq!(code(offset_there), 41);
    let flush_there = reader
        .flush_unsaved_buffer(&id(other), &id(other_topic), 0, false)
        .await;
    assert_eq!(code(flush_there), 41);
}

/// Creating or deleting streams and topics, listing streams, and the server-wide reads are
/// refused too, even on the readable stream.
async fn assert_nothing_else_allowed(reader: &IggyClient, readable: u32) {
    assert_eq!(code(reader.create_stream("mine").await), 41);
    assert_eq!(code(reader.get_streams().await), 41);
    assert_eq!(code(reader.delete_stream(&id(readable)).await), 41);
    let topic_here = reader
        .create_topic(
            &id(readable),
            "new",
            1,
            CompressionAlgorithm::None,
            None,
            IggyExpiry::ServerDefault,
            MaxTopicSize::ServerDefault,
        )
        .await;
    assert_eq!(code(topic_here), 41);
    assert_eq!(code(reader.get_stats().await), 41);
    assert_eq!(code(reader.get_clients().await), 41);
}

/// Root adds send to the reader's permissions; the reader's already open session may then send.
async fn grant_send_then_send(root: &IggyClient, reader: &IggyClient, readable: u32, topic: u32) {
    let mut permissions = reader_of(readable);
    let grant = permissions
        .streams
        .as_mut()
        .expect("streams")
        .get_mut(&(readable as usize));
    grant.expect("grant").send_messages = true;
    root.update_permissions(&name("reader"), Some(permissions))
        .await
        .expect("grant send");
    let mut batch = sdk::messages("yes", 0..1);
    reader
        .send_messages(
            &id(readable),
            &id(topic),
            &Partitioning::partition_id(0),
            &mut batch,
        )
        .await
        .expect("send once granted");
}

#[tokio::test]
async fn personal_access_tokens_work_with_the_sdk() {
    let server = TestServer::start(&[
        "--set",
        "personal_access_tokens.tokens_per_user_max=3",
        "--set",
        "personal_access_tokens.cleanup_interval_ms=50",
    ]);
    within(TEST_TIMEOUT, async {
        let root = sdk::client(server.addr).await;
        root.create_user("tina", "tina-pass", UserStatus::Active, None)
            .await
            .expect("create user");
        let tina = client_as(server.addr, "tina", "tina-pass").await;
        let token = create_first_token(&tina).await;

        // A fresh client logs in with the token alone, as its owner.
        assert_token_logs_in_as_owner(server.addr, &token).await;

        // Tokens belong to their owner: root sees none of tina's.
        let expiring = assert_tokens_are_per_owner_and_bounded(&root, &tina).await;

        // The expiring token stops working, then the cleaner removes it.
        assert_expired_token_cleaned_up(server.addr, &tina, &expiring).await;

        tina.delete_personal_access_token("ci-token")
            .await
            .expect("delete token");
        assert_eq!(
            code(tina.delete_personal_access_token("ci-token").await),
            20
        );
        let fresh = sdk::client_without_login(server.addr).await;
        assert_eq!(
            code(fresh.login_with_personal_access_token(&token).await),
            20
        );

        // Deleting the owner deletes its tokens.
        let last = tina
            .create_personal_access_token("last", IggyExpiry::NeverExpire)
            .await
            .expect("token")
            .token;
        root.delete_user(&id(1)).await.expect("delete owner");
        assert_eq!(
            code(fresh.login_with_personal_access_token(&last).await),
            20
        );
        assert_no_token_logged(&server, [&token, &expiring, &last]);
    })
    .await;
}

/// Tina creates her first token, 68 characters long; a second one of the same name and one
/// with a too short name are refused.
async fn create_first_token(tina: &IggyClient) -> String {
    let token = tina
        .create_personal_access_token("ci-token", IggyExpiry::NeverExpire)
        .await
        .expect("create token")
        .token;
    assert_eq!(token.len(), 68);
    assert_eq!(
        code(
            tina.create_personal_access_token("ci-token", IggyExpiry::NeverExpire)
                .await
        ),
        51
    );
    assert_eq!(
        code(
            tina.create_personal_access_token("x", IggyExpiry::NeverExpire)
                .await
        ),
        50
    );
    token
}

/// A fresh client logging in with `token` becomes user 1 (its owner); an unknown token is
/// refused.
async fn assert_token_logs_in_as_owner(addr: SocketAddr, token: &str) {
    let fresh = sdk::client_without_login(addr).await;
    let identity = fresh
        .login_with_personal_access_token(token)
        .await
        .expect("token login");
    assert_eq!(identity.user_id, 1);
    assert_eq!(fresh.get_me().await.expect("me").user_id, Some(1));
    assert_eq!(
        code(
            sdk::client_without_login(addr)
                .await
                .login_with_personal_access_token("no-such-token")
                .await
        ),
        20
    );
}

/// Root lists none of tina's tokens; tina lists hers with their expiries and is refused a
/// fourth. Returns the token that expires after 300 ms.
async fn assert_tokens_are_per_owner_and_bounded(root: &IggyClient, tina: &IggyClient) -> String {
    assert!(
        root.get_personal_access_tokens()
            .await
            .expect("list")
            .is_empty()
    );
    let expiring = tina
        .create_personal_access_token(
            "short",
            IggyExpiry::ExpireDuration(IggyDuration::from(Duration::from_millis(300))),
        )
        .await
        .expect("create expiring token")
        .token;
    let listed = tina.get_personal_access_tokens().await.expect("list");
    let names: Vec<_> = listed.iter().map(|token| token.name.as_str()).collect();
    assert_eq!(names, ["ci-token", "short"]);
    assert!(listed[0].expiry_at.is_none());
    assert!(listed[1].expiry_at.is_some());
    tina.create_personal_access_token("third", IggyExpiry::ServerDefault)
        .await
        .expect("third token");
    assert_eq!(
        code(
            tina.create_personal_access_token("fourth", IggyExpiry::NeverExpire)
                .await
        ),
        52
    );
    expiring
}

/// Logins with the `expiring` token start failing, then the cleaner drops it from tina's list.
async fn assert_expired_token_cleaned_up(addr: SocketAddr, tina: &IggyClient, expiring: &str) {
    eventually("the short token to expire", || async {
        let client = sdk::client_without_login(addr).await;
        match client.login_with_personal_access_token(expiring).await {
            Ok(_) => false,
            Err(error) => [54, 20].contains(&error.as_code()),
        }
    })
    .await;
    eventually("the cleaner to delete the expired token", || async {
        let tokens = tina.get_personal_access_tokens().await.expect("list");
        tokens.iter().all(|token| token.name != "short")
    })
    .await;
}

/// None of the raw tokens reached the server's logs, while the failed logins did.
fn assert_no_token_logged(server: &TestServer, tokens: [&str; 3]) {
    let logs = server.logs();
    for secret in tokens {
        assert!(!logs.contains(secret), "a raw token reached the logs");
    }
    assert!(logs.contains("failed login"));
}

#[tokio::test]
async fn deleting_or_deactivating_a_user_ends_its_sessions_on_every_shard() {
    let server = TestServer::start(&["--shards", "2"]);
    let root = RawConn::connect_logged_in(server.addr);
    let mut root = root;
    let create = |name: &str| {
        let mut payload = support::raw::str8(name.as_bytes());
        payload.extend(support::raw::str8(b"pass-word"));
        payload.extend([1, 0]);
        payload
    };
    for user in ["gone", "paused"] {
        root.request(33, &create(user)).ok();
    }
    // Enough connections that the kernel spreads them over both shards.
    const SESSIONS: usize = 8;
    let mut sessions: Vec<(RawConn, &str)> = Vec::new();
    for user in ["gone", "paused"] {
        for _ in 0..SESSIONS {
            let mut conn = RawConn::connect(server.addr);
            conn.request(LOGIN_USER, &login_payload(user, "pass-word"))
                .ok();
            conn.request(GET_ME, &[]).ok();
            sessions.push((conn, user));
        }
    }
    root.request(34, &support::raw::id_named("gone")).ok();
    let mut deactivate = support::raw::id_named("paused");
    deactivate.extend([0, 1, 2]);
    root.request(35, &deactivate).ok();
    // The user id is reused by a new user: old sessions must not become theirs.
    root.request(33, &create("newcomer")).ok();
    for (conn, user) in &mut sessions {
        conn.request(GET_ME, &[]).assert_error(40);
        // The connection stays open and in sync: a new login answers.
        let status = conn
            .request(LOGIN_USER, &login_payload(user, "pass-word"))
            .status;
        assert_eq!(status, if *user == "gone" { 42 } else { 47 });
    }
    // Reactivation does not revive ended sessions, but allows new logins.
    let mut activate = support::raw::id_named("paused");
    activate.extend([0, 1, 1]);
    root.request(35, &activate).ok();
    let mut conn = RawConn::connect(server.addr);
    conn.request(LOGIN_USER, &login_payload("paused", "pass-word"))
        .ok();
    conn.request(GET_ME, &[]).ok();
}

#[test]
fn users_tokens_and_root_credentials_survive_restarts() {
    let mut server = TestServer::start_with_env(
        &[],
        &[
            ("IGGY_ROOT_USERNAME", "admin"),
            ("IGGY_ROOT_PASSWORD", "env-root-secret"),
        ],
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let token = runtime.block_on(within(TEST_TIMEOUT, async {
        let fresh = sdk::client_without_login(server.addr).await;
        assert_eq!(code(fresh.login_user("iggy", "iggy").await), 42);
        let root = client_as(server.addr, "admin", "env-root-secret").await;
        root.create_user(
            "keeper",
            "keeper-one",
            UserStatus::Active,
            Some(reader_of(0)),
        )
        .await
        .expect("create user");
        root.change_password(&id(0), "env-root-secret", "root-second")
            .await
            .expect("root changes its password");
        let keeper = client_as(server.addr, "keeper", "keeper-one").await;
        keeper
            .change_password(&name("keeper"), "keeper-one", "keeper-two")
            .await
            .expect("change password");
        keeper
            .create_personal_access_token("kept", IggyExpiry::NeverExpire)
            .await
            .expect("token")
            .token
    }));
    // A restart without the variables keeps what was stored, passwords included.
    server.restart_with_args(&[]);
    runtime.block_on(within(TEST_TIMEOUT, async {
        let fresh = sdk::client_without_login(server.addr).await;
        assert_eq!(code(fresh.login_user("admin", "env-root-secret").await), 42);
        assert_eq!(code(fresh.login_user("iggy", "iggy").await), 42);
        let root = client_as(server.addr, "admin", "root-second").await;
        let keeper = root
            .get_user(&name("keeper"))
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(keeper.permissions, Some(reader_of(0)));
        assert_eq!(code(fresh.login_user("keeper", "keeper-one").await), 42);
        client_as(server.addr, "keeper", "keeper-two").await;
        let by_token = sdk::client_without_login(server.addr).await;
        let identity = by_token
            .login_with_personal_access_token(&token)
            .await
            .expect("token login");
        assert_eq!(identity.user_id, keeper.id);
    }));
    server.stop();
    let logs = server.logs();
    for secret in [
        "env-root-secret",
        "root-second",
        "keeper-one",
        "keeper-two",
        token.as_str(),
    ] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    assert!(logs.contains("root user created"));
}

/// A first start accepts connections while the root user's password is still being hashed
/// (tens of milliseconds of Argon2): a ping is answered at once, and logins that arrive before
/// root exists wait for it on whichever shard took the connection, then succeed (or fail, for
/// a wrong password) as usual.
#[test]
fn a_first_start_accepts_connections_before_root_exists_and_logins_wait_for_it() {
    let mut server = TestServer::launch(&["--shards", "2", "--set", "logging.level=debug"]);
    let addr = server.wait_listening();
    // Enough connections that the kernel spreads them over both shards.
    let mut conns: Vec<RawConn> = (0..6).map(|_| RawConn::connect(addr)).collect();
    for conn in &mut conns {
        conn.ping();
    }
    for (index, conn) in conns.iter_mut().enumerate() {
        let password = if index == 0 { "wrong" } else { "iggy" };
        conn.send_frame(LOGIN_USER, &login_payload("iggy", password));
    }
    for (index, conn) in conns.iter_mut().enumerate() {
        let response = conn.read_response();
        if index == 0 {
            response.assert_error(support::raw::error::INVALID_CREDENTIALS);
        } else {
            response.ok();
            conn.request(GET_ME, &[]).ok();
        }
    }
    server.wait_ready();
    assert_eq!(
        server.addr, addr,
        "the ready line names the listener that was logged"
    );
    let mut late = RawConn::connect_logged_in(server.addr);
    late.request(GET_ME, &[]).ok();
}
