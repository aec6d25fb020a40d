//! Identity changes win against logins in flight and reach live sessions:
//! a password change or disable during a CONNECT, concurrent changes to
//! one user, a removed grant, `%c` that cannot be substituted, a publish
//! prefix too long for a topic.

mod common;

use bytes::Bytes;
use common::users::*;
use common::*;
use gatehouse::identity::{GrantMethod, GrantType, NewUser, Operation};
use gatehouse::protocol::*;
use std::time::Duration;

const V5: ProtocolVersion = ProtocolVersion::V5;

async fn quick() -> TestBroker {
    TestBroker::start_with(|c| {
        c.auth.failure_delay_ms = 1;
        c.auth.failure_delay_max_ms = 1;
    })
    .await
}

/// A password changed while a login with the old one is being verified:
/// once the change is done, the old password never works again (it was
/// not cached on the way).
#[tokio::test]
async fn a_password_change_wins_against_a_login_in_flight() {
    let broker = quick().await;
    let dir = directory(&broker);
    add_user(&dir, "racer", "old-password", vec![]);
    for round in 0..12u64 {
        let (old, new) = if round % 2 == 0 {
            ("old-password", "new-password")
        } else {
            ("new-password", "old-password")
        };
        let addr = broker.addr();
        let login =
            tokio::spawn(
                async move { login(addr, V5, &format!("r{round}"), "racer", old).await.1 },
            );
        tokio::time::sleep(Duration::from_millis(round % 6 * 3)).await;
        let changer = dir.clone();
        tokio::task::spawn_blocking(move || changer.set_password("racer", new).unwrap())
            .await
            .unwrap();
        let _ = login.await.unwrap();
        let (_, ack) = login_with(addr, "racer", old).await;
        assert_eq!(
            ack.reason,
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            "round {round}: the old password still works after the change"
        );
    }
    broker.stop().await;
}

async fn login_with(
    addr: std::net::SocketAddr,
    user: &str,
    password: &str,
) -> (RawClient, ConnAck) {
    login(addr, V5, "after", user, password).await
}

/// A user disabled while its CONNECT is in flight is never left running.
#[tokio::test]
async fn a_user_disabled_during_connect_is_not_left_running() {
    let broker = quick().await;
    let dir = directory(&broker);
    add_user(&dir, "flaky", "flaky-pw", vec![]);
    for round in 0..10u64 {
        dir.set_enabled("flaky", true).unwrap();
        let addr = broker.addr();
        let login = tokio::spawn(async move {
            login(addr, V5, &format!("f{round}"), "flaky", "flaky-pw").await
        });
        tokio::time::sleep(Duration::from_millis(round * 3)).await;
        dir.set_enabled("flaky", false).unwrap();
        let (mut client, ack) = login.await.unwrap();
        if ack.reason == ReasonCode::SUCCESS {
            match client.recv().await {
                Some(Packet::Disconnect(d)) => {
                    assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION)
                }
                None => {}
                other => panic!("round {round}: a disabled user's connection goes on: {other:?}"),
            }
        }
    }
    broker.stop().await;
}

/// Concurrent changes to one user never lose each other's update.
#[tokio::test]
async fn concurrent_changes_to_one_user_are_all_kept() {
    let broker = quick().await;
    let dir = directory(&broker);
    add_user(&dir, "busy", "busy-pw", vec![]);
    let mut threads = Vec::new();
    for t in 0..8 {
        let dir = dir.clone();
        threads.push(std::thread::spawn(move || {
            for i in 0..15 {
                dir.grant_user("busy", perm(&format!("t{t}/p{i}"), Operation::Read))
                    .unwrap();
            }
        }));
    }
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(dir.user("busy").unwrap().permissions.len(), 8 * 15);
    broker.stop().await;
}

/// Removing the password grant closes the sessions that logged in with a
/// password.
#[tokio::test]
async fn removing_the_grant_a_session_used_closes_it() {
    let broker = quick().await;
    let dir = directory(&broker);
    add_user(&dir, "granted", "granted-pw", vec![]);
    let mut client = login_ok(broker.addr(), V5, "g1", "granted", "granted-pw").await;
    dir.set_grants(
        "granted",
        vec![GrantType {
            method: GrantMethod::Certificate,
            is_required: false,
        }],
    )
    .unwrap();
    match client.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    broker.stop().await;
}

/// Deleting a user revokes its certificates; a new user of the same name
/// does not get them back.
#[tokio::test]
async fn deleting_a_user_revokes_its_certificates() {
    let broker = quick().await;
    let dir = directory(&broker);
    let ca = gatehouse::tls::CertificateAuthority::load_or_create(&broker.config.tls.dir).unwrap();
    let (issued, _key) = ca.issue("device9", 30).unwrap();
    dir.add_user(NewUser {
        username: "device9".into(),
        grants: vec![GrantMethod::Certificate],
        ..NewUser::default()
    })
    .unwrap();
    dir.record_certificate((&issued).into()).unwrap();
    assert!(!dir.is_revoked(&issued.serial));
    dir.delete_user("device9").unwrap();
    assert!(dir.is_revoked(&issued.serial));
    dir.add_user(NewUser {
        username: "device9".into(),
        grants: vec![GrantMethod::Certificate],
        ..NewUser::default()
    })
    .unwrap();
    assert!(dir.is_revoked(&issued.serial), "not revived by a new user");
    broker.stop().await;
}

/// A deny rule that needs `%c` is never silently dropped: a client id
/// that cannot stand for `%c` is refused (0x85).
#[tokio::test]
async fn a_deny_needing_the_client_id_refuses_an_unusable_one() {
    let broker = quick().await;
    let dir = directory(&broker);
    add_user(
        &dir,
        "scoped",
        "scoped-pw",
        vec![
            perm("dev/#", Operation::ReadWrite),
            deny("dev/%c/secret", Operation::Read),
        ],
    );
    let (_, ack) = login(broker.addr(), V5, "a/b", "scoped", "scoped-pw").await;
    assert_eq!(ack.reason, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    let mut ok = login_ok(broker.addr(), V5, "plain", "scoped", "scoped-pw").await;
    assert_eq!(
        ok.subscribe("dev/plain/secret", QoS::AtMostOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
    broker.stop().await;
}

/// A connection sharing its user's snapshot (no `%c` rule when it
/// connected) gets a later `%c` deny as a deny of the whole level.
#[tokio::test]
async fn a_later_client_id_deny_reaches_shared_snapshots() {
    let broker = quick().await;
    let dir = directory(&broker);
    add_user(
        &dir,
        "later",
        "later-pw",
        vec![perm("dev/#", Operation::ReadWrite)],
    );
    let mut client = login_ok(broker.addr(), V5, "c1", "later", "later-pw").await;
    let mut watcher = login_ok(broker.addr(), V5, "w", "admin", "admin").await;
    watcher.subscribe("dev/#", QoS::AtLeastOnce).await;
    dir.grant_user("later", deny("dev/%c/#", Operation::Write))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut denied = publish("dev/c1/x", b"no", QoS::AtLeastOnce, false, 3);
    denied.packet_id = 3;
    client.send(&Packet::Publish(denied)).await;
    match client.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    watcher.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

/// User names cannot carry placeholders; a publish prefix longer than a
/// topic can be is refused when set (it used to panic at CONNECT).
#[tokio::test]
async fn names_and_prefixes_that_break_topics_are_refused() {
    let broker = quick().await;
    let dir = directory(&broker);
    let bad = dir.add_user(NewUser {
        username: "al%cice".into(),
        password: Some("secret1".into()),
        ..NewUser::default()
    });
    assert!(bad.is_err(), "{bad:?}");
    add_user(
        &dir,
        "prefixed",
        "prefixed-pw",
        vec![perm("#", Operation::Write)],
    );
    assert!(
        dir.set_prefix("prefixed", Some("p".repeat(70_000)))
            .is_err()
    );
    assert!(dir.set_prefix("prefixed", Some("p/".into())).is_ok());
    let mut client = RawClient::tcp(broker.addr(), V5).await;
    let mut connect = connect_packet(V5, "px", true);
    connect.username = Some("prefixed".into());
    connect.password = Some(Bytes::from_static(b"prefixed-pw"));
    assert_eq!(
        client.connect_with(connect).await.reason,
        ReasonCode::SUCCESS
    );
    broker.stop().await;
}

/// A mosquitto `$7$` (PBKDF2-SHA512) hash of `password`, as an import
/// brings it in; `iterations` makes each verification take a while, so
/// that logins are still being verified when a rehash lands.
fn pbkdf2_hash(password: &str, iterations: u32) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let salt = b"0123456789abcdef";
    let mut out = [0u8; 64];
    aws_lc_rs::pbkdf2::derive(
        aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA512,
        std::num::NonZeroU32::new(iterations).unwrap(),
        salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// `name` imported from a mosquitto password file, with `password`.
fn import_user(broker: &TestBroker, name: &str, password: &str) {
    use gatehouse::identity::audit::Actor;
    use gatehouse::identity::import::Plan;
    let services = broker.broker.as_ref().unwrap().identity().unwrap().clone();
    let mut plan = Plan::default();
    plan.read_passwd(&format!("{name}:{}\n", pbkdf2_hash(password, 20_000)))
        .unwrap();
    plan.settle();
    let report = plan.apply(&services, &Actor::system()).unwrap();
    assert_eq!(report.users_created, vec![name.to_owned()]);
}

/// Waits until no rehash of `name` is queued or running.
async fn rehash_settled(dir: &gatehouse::identity::Directory, name: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while dir.hashing().is_rehashing(name) {
        assert!(std::time::Instant::now() < deadline, "rehash never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 50 devices sharing one account imported from mosquitto reconnect at
/// once (after a restart): every one is admitted — the rehash to argon2id
/// that the first success starts is not a password change — and the
/// stored hash ends up argon2id, with the password's generation unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_of_an_imported_user_all_succeed() {
    let broker = quick().await;
    let dir = directory(&broker);
    import_user(&broker, "fleet", "fleet-pass");
    let before = dir.user("fleet").unwrap();
    assert!(before.password_hash.as_deref().unwrap().starts_with("$7$"));
    let addr = broker.addr();
    // They keep arriving (5 ms apart) while earlier ones are verified, so
    // that the rehash lands while many are between verification and
    // admission.
    let mut logins = Vec::new();
    for i in 0..50 {
        logins.push(tokio::spawn(async move {
            let (client, ack) = login(addr, V5, &format!("dev-{i}"), "fleet", "fleet-pass").await;
            (client, ack.reason)
        }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut refused = 0;
    let mut clients = Vec::new();
    for login in logins {
        let (client, reason) = login.await.unwrap();
        if reason != ReasonCode::SUCCESS {
            refused += 1;
        }
        clients.push(client);
    }
    assert_eq!(
        refused, 0,
        "{refused} of 50 logins of one imported user refused"
    );
    rehash_settled(&dir, "fleet").await;
    let after = dir.user("fleet").unwrap();
    let hash = after.password_hash.as_deref().unwrap();
    assert!(hash.starts_with("$argon2id$"), "not rehashed: {hash}");
    assert_eq!(after.password_generation, before.password_generation);
    let (_, ack) = login(addr, V5, "after", "fleet", "fleet-pass").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    broker.stop().await;
}

/// A real password change while logins of an imported user are in
/// flight (and its rehash pending) wins: the old password is refused
/// afterwards, the new one works, and the rehash did not bring the old
/// password back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_during_imported_logins_refuses_the_old_password() {
    let broker = quick().await;
    let dir = directory(&broker);
    import_user(&broker, "fleet2", "old-fleet-pass");
    let addr = broker.addr();
    let logins: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                login(addr, V5, &format!("d-{i}"), "fleet2", "old-fleet-pass")
                    .await
                    .1
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let changer = dir.clone();
    tokio::task::spawn_blocking(move || changer.set_password("fleet2", "new-fleet-pass").unwrap())
        .await
        .unwrap();
    for login in logins {
        let _ = login.await.unwrap();
    }
    rehash_settled(&dir, "fleet2").await;
    let (_, ack) = login(addr, V5, "old", "fleet2", "old-fleet-pass").await;
    assert_eq!(ack.reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let (_, ack) = login(addr, V5, "new", "fleet2", "new-fleet-pass").await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    broker.stop().await;
}
