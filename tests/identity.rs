//! Identity enforced on CONNECT, SUBSCRIBE, PUBLISH and delivery, with
//! real clients: password checks, ACL allow/deny, placeholders, the
//! publish prefix, live changes, backoff and anonymous access.

mod common;

use bytes::Bytes;
use common::users::*;
use common::*;
use gatehouse::identity::{NewUser, Operation};
use gatehouse::protocol::*;
use std::time::{Duration, Instant};

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

async fn no_backoff() -> TestBroker {
    TestBroker::start_with(|c| {
        c.auth.failure_delay_ms = 1;
        c.auth.failure_delay_max_ms = 1;
    })
    .await
}

#[tokio::test]
async fn connect_outcomes_for_each_version() {
    let broker = no_backoff().await;
    let dir = directory(&broker);
    add_user(&dir, "alice", "secret1", vec![]);
    add_user(&dir, "mallory", "secret2", vec![]);
    dir.set_enabled("mallory", false).unwrap();
    dir.add_user(NewUser {
        username: "device-7".into(),
        grants: vec![gatehouse::identity::GrantMethod::Certificate],
        ..NewUser::default()
    })
    .unwrap();
    for (version, bad, unauthorized) in [
        (
            V5,
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ),
        (
            V3,
            ReasonCode::BAD_USERNAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ),
    ] {
        login_ok(broker.addr(), version, "a", "alice", "secret1").await;
        login_ok(broker.addr(), version, "adm", "admin", "admin").await;
        assert_eq!(
            login(broker.addr(), version, "a", "alice", "wrong")
                .await
                .1
                .reason,
            bad
        );
        assert_eq!(
            login(broker.addr(), version, "a", "nobody", "secret1")
                .await
                .1
                .reason,
            bad
        );
        assert_eq!(
            login(broker.addr(), version, "m", "mallory", "secret2")
                .await
                .1
                .reason,
            unauthorized
        );
        assert_eq!(
            login(broker.addr(), version, "d", "device-7", "x")
                .await
                .1
                .reason,
            bad
        );
    }
    // On the wire, 3.1.1 gets return codes 4 and 5.
    let mut raw = RawClient::tcp(broker.addr(), V3).await;
    let mut connect = connect_packet(V3, "w", true);
    connect.username = Some("alice".into());
    connect.password = Some(Bytes::from_static(b"nope"));
    raw.send(&Packet::Connect(Box::new(connect))).await;
    let mut bytes = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut raw.stream, &mut bytes)
        .await
        .unwrap();
    assert_eq!(bytes, [0x20, 0x02, 0x00, 0x04]);
    broker.stop().await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let broker = no_backoff().await;
    add_user(&directory(&broker), "timing", "secret1", vec![]);
    let mut known = Duration::ZERO;
    let mut unknown = Duration::ZERO;
    for i in 0..6 {
        let started = Instant::now();
        login(broker.addr(), V5, "t", "timing", &format!("wrong{i}")).await;
        known += started.elapsed();
        let started = Instant::now();
        login(broker.addr(), V5, "t", &format!("ghost{i}"), "wrong").await;
        unknown += started.elapsed();
    }
    let ratio = known.as_secs_f64() / unknown.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "known {known:?} vs unknown {unknown:?}"
    );
    broker.stop().await;
}

#[tokio::test]
async fn repeated_failures_are_slowed() {
    let broker = TestBroker::start_with(|c| {
        c.auth.failure_delay_ms = 300;
        c.auth.failure_delay_max_ms = 1200;
    })
    .await;
    add_user(&directory(&broker), "victim", "secret1", vec![]);
    let mut times = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        login(broker.addr(), V5, "x", "victim", "guess").await;
        times.push(started.elapsed());
    }
    assert!(times[0] < Duration::from_millis(300), "{times:?}");
    assert!(times[1] >= Duration::from_millis(300), "{times:?}");
    assert!(times[2] >= Duration::from_millis(600), "{times:?}");
    assert!(times[3] >= Duration::from_millis(1200), "{times:?}");
    broker.stop().await;
}

#[tokio::test]
async fn acl_allow_and_deny_for_publish_subscribe_and_delivery() {
    let broker = no_backoff().await;
    let dir = directory(&broker);
    dir.add_role("plant-reader").unwrap();
    dir.grant_role("plant-reader", perm("plant/#", Operation::Read))
        .unwrap();
    dir.grant_role("plant-reader", deny("plant/secret/#", Operation::Read))
        .unwrap();
    add_user(
        &dir,
        "operator",
        "secret1",
        vec![perm("plant/+/temp", Operation::Write)],
    );
    dir.assign_role("operator", "plant-reader", true).unwrap();

    for (version, refused) in [(V5, ReasonCode::NOT_AUTHORIZED), (V3, ReasonCode(0x80))] {
        let mut op = login_ok(broker.addr(), version, "op", "operator", "secret1").await;
        assert_eq!(
            op.subscribe("plant/#", QoS::AtLeastOnce).await,
            ReasonCode::GRANTED_QOS_1
        );
        assert_eq!(
            op.subscribe("plant/a/+", QoS::AtMostOnce).await,
            ReasonCode::GRANTED_QOS_0
        );
        assert_eq!(op.subscribe("other/#", QoS::AtMostOnce).await, refused);
        assert_eq!(op.subscribe("#", QoS::AtMostOnce).await, refused);
        assert_eq!(
            op.subscribe("plant/secret/#", QoS::AtMostOnce).await,
            refused
        );
        op.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            filters: vec!["plant/a/+".into()],
            properties: Properties::default(),
        }))
        .await;
        assert!(matches!(op.recv().await, Some(Packet::UnsubAck(_))));

        let mut admin = login_ok(broker.addr(), V5, "adm", "admin", "admin").await;
        // Deny narrower than the filter: plant/secret/x is not delivered.
        admin
            .publish("plant/secret/x", b"hidden", QoS::AtMostOnce, false)
            .await;
        admin
            .publish("plant/open/x", b"visible", QoS::AtMostOnce, false)
            .await;
        assert_eq!(op.recv_publish().await.payload.as_ref(), b"visible");

        // Publishing: allowed topic passes, another is refused (0x87 in v5).
        let mut watcher = login_ok(broker.addr(), V5, "w", "admin", "admin").await;
        watcher.subscribe("plant/#", QoS::AtMostOnce).await;
        op.send(&Packet::Publish(publish(
            "plant/a/temp",
            b"21",
            QoS::AtLeastOnce,
            false,
            5,
        )))
        .await;
        match op.recv().await {
            Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
            other => panic!("{other:?}"),
        }
        assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"21");
        let _ = op.try_recv(Duration::from_millis(100)).await; // own delivery
        op.send(&Packet::Publish(publish(
            "plant/a/humidity",
            b"99",
            QoS::AtLeastOnce,
            false,
            6,
        )))
        .await;
        let expected = if version == V5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        loop {
            match op.recv().await {
                Some(Packet::PubAck(ack)) => {
                    assert_eq!((ack.packet_id, ack.reason), (6, expected));
                    break;
                }
                Some(Packet::Publish(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
        op.send(&Packet::Publish(publish(
            "plant/a/humidity",
            b"0",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
        watcher.expect_silence(Duration::from_millis(300)).await;
    }
    assert!(
        broker
            .broker
            .as_ref()
            .unwrap()
            .services()
            .metrics
            .publish_denied
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 4
    );
    broker.stop().await;
}

#[tokio::test]
async fn on_publish_denied_disconnect() {
    let broker = TestBroker::start_with(|c| {
        c.auth.on_publish_denied = gatehouse::config::OnPublishDenied::Disconnect
    })
    .await;
    add_user(&directory(&broker), "strict", "secret1", vec![]);
    let mut c = login_ok(broker.addr(), V5, "s", "strict", "secret1").await;
    c.send(&Packet::Publish(publish(
        "x",
        b"1",
        QoS::AtMostOnce,
        false,
        0,
    )))
    .await;
    match c.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn placeholders_resolve_per_connection() {
    let broker = no_backoff().await;
    let dir = directory(&broker);
    dir.add_role("devices").unwrap();
    dir.grant_role("devices", perm("devices/%u/#", Operation::ReadWrite))
        .unwrap();
    dir.grant_role("devices", perm("clients/%c/status", Operation::Write))
        .unwrap();
    for name in ["dev-one", "dev-two"] {
        add_user(&dir, name, "secret1", vec![]);
        dir.assign_role(name, "devices", true).unwrap();
    }
    let mut one = login_ok(broker.addr(), V5, "cid-1", "dev-one", "secret1").await;
    assert_eq!(
        one.subscribe("devices/dev-one/#", QoS::AtMostOnce).await,
        ReasonCode::GRANTED_QOS_0
    );
    assert_eq!(
        one.subscribe("devices/dev-two/#", QoS::AtMostOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
    let mut admin = login_ok(broker.addr(), V5, "adm", "admin", "admin").await;
    admin.subscribe("clients/#", QoS::AtMostOnce).await;
    one.publish("clients/cid-1/status", b"up", QoS::AtMostOnce, false)
        .await;
    one.publish("clients/cid-2/status", b"spoof", QoS::AtMostOnce, false)
        .await;
    assert_eq!(admin.recv_publish().await.payload.as_ref(), b"up");
    admin.expect_silence(Duration::from_millis(300)).await;
    broker.stop().await;
}

#[tokio::test]
async fn publish_prefix_seed_example_with_mosquitto() {
    let broker = no_backoff().await;
    let dir = directory(&broker);
    dir.add_user(NewUser {
        username: "newuser".into(),
        password: Some("newpassword".into()),
        permissions: vec![perm("route-to-downstream/my-topic", Operation::Write)],
        mqtt_publish_prefix: Some("route-to-downstream/".into()),
        ..NewUser::default()
    })
    .unwrap();
    for version in ["311", "5"] {
        let (status, out) = mosquitto_roundtrip(
            broker.port(),
            "route-to-downstream/my-topic",
            "my-topic",
            "Hello World",
            &["-V", version, "-u", "admin", "-P", "admin", "-v"],
            &["-V", version, "-u", "newuser", "-P", "newpassword"],
        )
        .await;
        assert_eq!(status, Some(0), "{out}");
        assert_eq!(out.trim(), "route-to-downstream/my-topic Hello World");
    }
    // Without the prefix in the permission, the unprefixed topic is not writable.
    let mut nu = login_ok(broker.addr(), V5, "nu", "newuser", "newpassword").await;
    nu.send(&Packet::Publish(publish(
        "other",
        b"x",
        QoS::AtLeastOnce,
        false,
        3,
    )))
    .await;
    match nu.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED),
        other => panic!("{other:?}"),
    }
    broker.stop().await;
}

#[tokio::test]
async fn wrong_credentials_via_mosquitto_are_refused() {
    let broker = no_backoff().await;
    let port = broker.port().to_string();
    for version in ["311", "5"] {
        let (status, out) = run_cmd(
            "mosquitto_pub",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-u",
                "admin",
                "-P",
                "wrong",
                "-t",
                "t",
                "-m",
                "x",
            ],
            Duration::from_secs(5),
        )
        .await;
        assert_ne!(status, Some(0));
        assert!(
            out.to_lowercase().contains("bad user name or password")
                || out.to_lowercase().contains("not authorised")
                || out.to_lowercase().contains("refused"),
            "{out}"
        );
    }
    broker.stop().await;
}

#[tokio::test]
async fn live_revoke_stops_delivery_within_a_second() {
    let broker = no_backoff().await;
    let dir = directory(&broker);
    dir.add_role("readers").unwrap();
    dir.grant_role("readers", perm("live/#", Operation::Read))
        .unwrap();
    add_user(&dir, "reader", "secret1", vec![]);
    dir.assign_role("reader", "readers", true).unwrap();
    let mut reader = login_ok(broker.addr(), V5, "r", "reader", "secret1").await;
    reader.subscribe("live/#", QoS::AtMostOnce).await;
    let mut admin = login_ok(broker.addr(), V5, "adm", "admin", "admin").await;
    admin
        .publish("live/a", b"before", QoS::AtMostOnce, false)
        .await;
    assert_eq!(reader.recv_publish().await.payload.as_ref(), b"before");

    dir.revoke_role("readers", &perm("live/#", Operation::Read))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    admin
        .publish("live/a", b"after", QoS::AtMostOnce, false)
        .await;
    reader.expect_silence(Duration::from_millis(500)).await;
    // The subscription itself was removed: a later grant does not revive it.
    dir.grant_role("readers", perm("live/#", Operation::Read))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin
        .publish("live/a", b"again", QoS::AtMostOnce, false)
        .await;
    reader.expect_silence(Duration::from_millis(500)).await;
    broker.stop().await;
}

#[tokio::test]
async fn deleted_or_disabled_user_is_disconnected() {
    let broker = no_backoff().await;
    let dir = directory(&broker);
    add_user(&dir, "temp-user", "secret1", vec![]);
    add_user(&dir, "other-user", "secret1", vec![]);
    let mut a = login_ok(broker.addr(), V5, "a", "temp-user", "secret1").await;
    let mut b = login_ok(broker.addr(), V5, "b", "other-user", "secret1").await;
    dir.delete_user("temp-user").unwrap();
    match a.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("{other:?}"),
    }
    dir.set_enabled("other-user", false).unwrap();
    match b.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        login(broker.addr(), V5, "b", "other-user", "secret1")
            .await
            .1
            .reason,
        ReasonCode::NOT_AUTHORIZED
    );
    broker.stop().await;
}

#[tokio::test]
async fn system_topics_need_an_explicit_permission() {
    let broker = no_backoff().await;
    let mut admin = login_ok(broker.addr(), V5, "adm", "admin", "admin").await;
    assert_eq!(
        admin.subscribe("$SYS/#", QoS::AtMostOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        admin.subscribe("#", QoS::AtMostOnce).await,
        ReasonCode::GRANTED_QOS_0
    );
    admin.expect_silence(Duration::from_millis(1300)).await;
    directory(&broker)
        .grant_user("admin", perm("$SYS/#", Operation::Read))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        admin.subscribe("$SYS/#", QoS::AtMostOnce).await,
        ReasonCode::GRANTED_QOS_0
    );
    assert!(admin.recv_publish().await.topic.starts_with("$SYS/broker/"));
    broker.stop().await;
}

#[tokio::test]
async fn will_topic_must_be_writable() {
    let broker = no_backoff().await;
    add_user(
        &directory(&broker),
        "willy",
        "secret1",
        vec![perm("ok/#", Operation::Write)],
    );
    for (topic, expected) in [
        ("ok/will", ReasonCode::SUCCESS),
        ("forbidden", ReasonCode::NOT_AUTHORIZED),
    ] {
        let mut c = RawClient::tcp(broker.addr(), V5).await;
        let mut connect = connect_packet(V5, "w", true);
        connect.username = Some("willy".into());
        connect.password = Some(Bytes::from_static(b"secret1"));
        connect.will = Some(Will {
            topic: topic.into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        });
        assert_eq!(c.connect_with(connect).await.reason, expected);
    }
    broker.stop().await;
}

#[tokio::test]
async fn anonymous_on_and_off() {
    let off = TestBroker::start_with(|c| c.auth.allow_anonymous = false).await;
    let mut c = RawClient::tcp(off.addr(), V5).await;
    assert_eq!(
        c.connect_with(connect_packet(V5, "anon", true))
            .await
            .reason,
        ReasonCode::NOT_AUTHORIZED
    );
    let mut c = RawClient::tcp(off.addr(), V3).await;
    assert_eq!(
        c.connect_with(connect_packet(V3, "anon", true))
            .await
            .reason,
        ReasonCode::NOT_AUTHORIZED
    );
    off.stop().await;

    // On: anonymous gets exactly the `anonymous` user's permissions.
    let on = TestBroker::start().await;
    let dir = directory(&on);
    dir.revoke_user("anonymous", &perm("#", Operation::ReadWrite))
        .unwrap();
    dir.grant_user("anonymous", perm("public/#", Operation::ReadWrite))
        .unwrap();
    let mut c = RawClient::connect(on.addr(), V5, "anon").await;
    assert_eq!(
        c.subscribe("public/#", QoS::AtMostOnce).await,
        ReasonCode::GRANTED_QOS_0
    );
    assert_eq!(
        c.subscribe("private/#", QoS::AtMostOnce).await,
        ReasonCode::NOT_AUTHORIZED
    );
    on.stop().await;
}

#[tokio::test]
async fn password_hash_with_old_parameters_is_replaced_on_login() {
    use argon2::PasswordHasher;
    let broker = no_backoff().await;
    let dir = directory(&broker);
    add_user(&dir, "legacy", "secret1", vec![]);
    // A hash made with weaker, older parameters (m = 4 MiB, t = 1).
    let params = argon2::Params::new(4096, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let old = hasher.hash_password(b"secret1").unwrap().to_string();
    let current = dir.user("legacy").unwrap().password_hash.unwrap();
    dir.rehash("legacy", &current, old.clone()).unwrap();
    assert!(gatehouse::identity::password::needs_rehash(&old));
    login_ok(broker.addr(), V5, "l", "legacy", "secret1").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stored = dir.user("legacy").unwrap().password_hash.unwrap();
        if stored != old {
            assert!(
                !gatehouse::identity::password::needs_rehash(&stored),
                "{stored}"
            );
            assert!(gatehouse::identity::password::verify_password(
                b"secret1", &stored
            ));
            break;
        }
        assert!(Instant::now() < deadline, "hash was not upgraded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    broker.stop().await;
}

#[tokio::test]
async fn disabling_a_user_closes_every_connection_of_it() {
    // Connections of one user share one ACL snapshot (no `%c` rule); each
    // must still hear of the revocation, busy or hibernating.
    let broker = no_backoff().await;
    let dir = directory(&broker);
    add_user(
        &dir,
        "fleet",
        "secret1",
        vec![perm("fleet/#", Operation::ReadWrite)],
    );
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(login_ok(broker.addr(), V5, &format!("fleet-{i}"), "fleet", "secret1").await);
    }
    clients[0].subscribe("fleet/a", QoS::AtMostOnce).await;
    clients[1]
        .publish("fleet/a", b"shared", QoS::AtMostOnce, false)
        .await;
    assert_eq!(clients[0].recv_publish().await.payload.as_ref(), b"shared");
    dir.set_enabled("fleet", false).unwrap();
    for c in &mut clients {
        match c.recv().await {
            Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::ADMINISTRATIVE_ACTION),
            other => panic!("{other:?}"),
        }
    }
    // Enabled again: a new login gets a fresh snapshot, not the revoked one.
    dir.set_enabled("fleet", true).unwrap();
    let mut again = login_ok(broker.addr(), V5, "fleet-9", "fleet", "secret1").await;
    again.send(&Packet::PingReq).await;
    assert_eq!(again.recv().await, Some(Packet::PingResp));
    broker.stop().await;
}
