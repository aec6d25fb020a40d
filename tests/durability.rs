//! Exactly once and durability across restarts and faults: QoS 2 in both
//! directions across a clean restart and across SIGKILL (sync durability),
//! checked on the wire; a failing store refuses what it cannot keep and
//! recovers by itself; nothing is acknowledged after the store closed;
//! retained messages reach the disk in memory's order; file modes.

mod common;

use common::*;
use gatehouse::protocol::*;
use gatehouse::store::Fault;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker that restarts either cleanly (in process) or by SIGKILL (the
/// binary, sync durability).
enum Restartable {
    Clean(Box<TestBroker>),
    Killed {
        binary: Option<Binary>,
        config: std::path::PathBuf,
        addr: SocketAddr,
        _dir: tempfile::TempDir,
    },
}

impl Restartable {
    async fn clean() -> Restartable {
        Restartable::Clean(Box::new(TestBroker::start().await))
    }

    fn killed() -> Restartable {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config = write_config(dir.path(), port, "sync");
        Restartable::Killed {
            binary: Some(Binary::start(&config, addr)),
            config,
            addr,
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Restartable::Clean(broker) => broker.addr(),
            Restartable::Killed { addr, .. } => *addr,
        }
    }

    async fn restart(&mut self) {
        match self {
            Restartable::Clean(broker) => broker.restart().await,
            Restartable::Killed {
                binary,
                config,
                addr,
                ..
            } => {
                drop(binary.take()); // SIGKILL
                *binary = Some(Binary::start(config, *addr));
            }
        }
    }
}

async fn resume(addr: SocketAddr, client_id: &str) -> (RawClient, ConnAck) {
    let mut client = RawClient::tcp(addr, V5).await;
    let mut connect = connect_packet(V5, client_id, false);
    connect.properties.session_expiry_interval = Some(3600);
    let ack = client.connect_with(connect).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    (client, ack)
}

/// Outbound: a restarted broker resends `PUBLISH dup=1` with the same
/// packet id, or the `PUBREL`, never a fresh PUBLISH.
async fn qos2_outbound_survives(mut broker: Restartable) {
    let (mut sub, _) = resume(broker.addr(), "q2-sub").await;
    sub.subscribe("q2/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "q2-pub").await;
    publisher
        .publish("q2/x", b"one", QoS::ExactlyOnce, false)
        .await;
    drop(publisher);

    let (mut sub, _) = resume(broker.addr(), "q2-sub").await;
    let first = sub.recv_publish().await;
    assert_eq!(
        (first.qos, first.payload.as_ref()),
        (QoS::ExactlyOnce, &b"one"[..])
    );
    drop(sub); // no PUBREC
    broker.restart().await;

    let (mut sub, ack) = resume(broker.addr(), "q2-sub").await;
    assert!(ack.session_present);
    let again = sub.recv_publish().await;
    assert!(again.dup, "a resend, not a fresh PUBLISH");
    assert_eq!(again.packet_id, first.packet_id, "the same packet id");
    assert_eq!(again.payload.as_ref(), b"one");
    sub.send(&Packet::PubRec(PubResponse::new(
        again.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, first.packet_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    drop(sub); // no PUBCOMP
    broker.restart().await;

    let (mut sub, _) = resume(broker.addr(), "q2-sub").await;
    match sub.recv().await {
        Some(Packet::PubRel(rel)) => assert_eq!(rel.packet_id, first.packet_id),
        other => panic!("expected the PUBREL again, never the PUBLISH: {other:?}"),
    }
    sub.send(&Packet::PubComp(PubResponse::new(
        first.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    sub.disconnect().await;
    broker.restart().await;

    // Completed: nothing comes back, except that a crash right after the
    // PUBCOMP may repeat the PUBREL (harmless: the client answers it).
    let killed = matches!(broker, Restartable::Killed { .. });
    let (mut sub, _) = resume(broker.addr(), "q2-sub").await;
    match sub.try_recv(Duration::from_millis(500)).await {
        Err(()) => {}
        Ok(Some(Packet::PubRel(rel))) if killed => {
            assert_eq!(rel.packet_id, first.packet_id);
            sub.expect_silence(Duration::from_millis(300)).await;
        }
        other => panic!("expected nothing after PUBCOMP, got {other:?}"),
    }
}

/// Inbound: a publisher's resend after a restart is recognised (PUBREC
/// again, not routed a second time) and its PUBREL completes it.
async fn qos2_inbound_survives(mut broker: Restartable) {
    let (mut watcher, _) = resume(broker.addr(), "q2-watch").await;
    watcher.subscribe("in/#", QoS::AtLeastOnce).await;
    watcher.disconnect().await;
    let (mut publisher, _) = resume(broker.addr(), "q2-in").await;
    let message = publish("in/x", b"once", QoS::ExactlyOnce, false, 9);
    publisher.send(&Packet::Publish(message.clone())).await;
    match publisher.recv().await {
        Some(Packet::PubRec(rec)) => assert_eq!(rec.packet_id, 9),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    drop(publisher); // no PUBREL
    broker.restart().await;

    let (mut publisher, ack) = resume(broker.addr(), "q2-in").await;
    assert!(ack.session_present);
    publisher
        .send(&Packet::Publish(Publish {
            dup: true,
            ..message
        }))
        .await;
    match publisher.recv().await {
        Some(Packet::PubRec(rec)) => assert_eq!(rec.packet_id, 9),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher
        .send(&Packet::PubRel(PubResponse::new(9, ReasonCode::SUCCESS)))
        .await;
    match publisher.recv().await {
        Some(Packet::PubComp(comp)) => {
            assert_eq!((comp.packet_id, comp.reason), (9, ReasonCode::SUCCESS))
        }
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let (mut watcher, _) = resume(broker.addr(), "q2-watch").await;
    let got = watcher.recv_publish().await;
    assert_eq!(got.payload.as_ref(), b"once");
    watcher
        .send(&Packet::PubAck(PubResponse::new(
            got.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    watcher.expect_silence(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn qos2_outbound_across_a_clean_restart() {
    qos2_outbound_survives(Restartable::clean().await).await;
}

#[tokio::test]
async fn qos2_outbound_across_sigkill() {
    qos2_outbound_survives(Restartable::killed()).await;
}

#[tokio::test]
async fn qos2_inbound_across_a_clean_restart() {
    qos2_inbound_survives(Restartable::clean().await).await;
}

#[tokio::test]
async fn qos2_inbound_across_sigkill() {
    qos2_inbound_survives(Restartable::killed()).await;
}

fn store(broker: &TestBroker) -> &std::sync::Arc<gatehouse::store::Store> {
    &broker.broker.as_ref().unwrap().services().store
}

async fn keeper(broker: &TestBroker, topic: &str) {
    let (mut keeper, _) = resume(broker.addr(), "keeper").await;
    keeper.subscribe(topic, QoS::AtLeastOnce).await;
    keeper.disconnect().await;
}

/// While commits fail, publishes that would be stored are refused before
/// routing (v5 0x80, 3.1.1 closed unacknowledged); the store recovers by
/// itself and nothing refused reached the subscriber.
#[tokio::test]
async fn a_failing_store_refuses_and_recovers() {
    let broker = TestBroker::start().await;
    keeper(&broker, "f/#").await;
    let mut watcher = RawClient::connect(broker.addr(), V5, "watcher").await;
    watcher.subscribe("f/#", QoS::AtLeastOnce).await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "p5").await;
    publisher
        .publish("f/ok", b"before", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"before");

    store(&broker).set_fault(Some(Fault::FailCommits));
    // The first publish finds the failure at its commit: routed, but not
    // acknowledged as stored.
    publisher
        .send_publish("f/x", b"failed", QoS::AtLeastOnce, 2)
        .await;
    match publisher.recv().await {
        Some(Packet::PubAck(ack)) => assert_eq!(ack.reason, ReasonCode::UNSPECIFIED_ERROR),
        other => panic!("expected PUBACK 0x80, got {other:?}"),
    }
    assert!(!store(&broker).is_healthy());
    assert!(store(&broker).commit_failures() >= 1);
    let _ = watcher.recv_publish().await; // it was routed before the failure
    // Now refused before routing: no copy fans out.
    publisher
        .send_publish("f/x", b"refused", QoS::AtLeastOnce, 3)
        .await;
    match publisher.recv().await {
        Some(Packet::PubAck(ack)) => {
            assert_eq!(
                (ack.packet_id, ack.reason),
                (3, ReasonCode::UNSPECIFIED_ERROR)
            )
        }
        other => panic!("expected PUBACK 0x80, got {other:?}"),
    }
    watcher.expect_silence(Duration::from_millis(300)).await;
    // A 3.1.1 publisher cannot be told: closed without acknowledgement.
    let mut old = RawClient::connect(broker.addr(), V3, "p3").await;
    old.send_publish("f/x", b"v3", QoS::AtLeastOnce, 4).await;
    assert!(old.recv().await.is_none(), "closed, not acknowledged");
    // Non-persisted traffic goes on.
    publisher
        .publish("other/x", b"free", QoS::AtLeastOnce, false)
        .await;
    let metrics = &broker.broker.as_ref().unwrap().services().metrics;
    assert!(metrics.publish_unstored.load(Ordering::Relaxed) >= 2);

    store(&broker).set_fault(None);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !store(&broker).is_healthy() {
        assert!(std::time::Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    publisher
        .publish("f/ok", b"after", QoS::AtLeastOnce, false)
        .await;
    assert_eq!(watcher.recv_publish().await.payload.as_ref(), b"after");
    // The keeper's queue on disk matches what was accepted: the failed
    // batch was retried, the refused publishes never queued.
    let mut broker = broker;
    broker.restart().await;
    let (mut keeper, _) = resume(broker.addr(), "keeper").await;
    let mut got = Vec::new();
    while let Ok(Some(Packet::Publish(p))) = keeper.try_recv(Duration::from_millis(500)).await {
        got.push(String::from_utf8(p.payload.to_vec()).unwrap());
        keeper
            .send(&Packet::PubAck(PubResponse::new(
                p.packet_id,
                ReasonCode::SUCCESS,
            )))
            .await;
    }
    assert_eq!(got, ["before", "failed", "after"]);
    broker.stop().await;
}

/// A duplicate QoS 2 PUBLISH gets its PUBREC only once the first copy is
/// stored.
#[tokio::test]
async fn a_duplicate_qos2_publish_waits_for_the_first_commit() {
    let broker = TestBroker::start().await;
    keeper(&broker, "d/#").await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "dup").await;
    store(&broker).set_fault(Some(Fault::Stall));
    let message = publish("d/x", b"x", QoS::ExactlyOnce, false, 5);
    publisher.send(&Packet::Publish(message.clone())).await;
    publisher
        .send(&Packet::Publish(Publish {
            dup: true,
            ..message
        }))
        .await;
    publisher.expect_silence(Duration::from_millis(400)).await;
    store(&broker).set_fault(None);
    for _ in 0..2 {
        match publisher.recv().await {
            Some(Packet::PubRec(rec)) => {
                assert_eq!((rec.packet_id, rec.reason), (5, ReasonCode::SUCCESS))
            }
            other => panic!("expected PUBREC, got {other:?}"),
        }
    }
    broker.stop().await;
}

/// Once shutdown has closed the store, a publish that would be stored is
/// refused, never acknowledged without persistence.
#[tokio::test]
async fn nothing_is_acknowledged_after_the_store_closed() {
    let broker = TestBroker::start().await;
    keeper(&broker, "c/#").await;
    let mut publisher = RawClient::connect(broker.addr(), V5, "late").await;
    store(&broker).close();
    publisher
        .send_publish("c/x", b"x", QoS::AtLeastOnce, 1)
        .await;
    match publisher.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    broker.stop().await;
}

/// Concurrent retained publishes on one topic: after a restart the stored
/// message is the one memory held.
#[tokio::test]
async fn retained_messages_reach_the_disk_in_memory_order() {
    let mut broker = TestBroker::start_with(|c| {
        c.storage.durability = gatehouse::config::Durability::Periodic;
        c.storage.commit_interval_ms = 5;
    })
    .await;
    // Persistent subscribers make each publish write more than its
    // retained message, so writers race while their operations are sent.
    for k in 0..4 {
        let (mut keeper, _) = resume(broker.addr(), &format!("keep{k}")).await;
        keeper.subscribe("ret/#", QoS::AtLeastOnce).await;
        keeper.disconnect().await;
    }
    let addr = broker.addr();
    let mut tasks = Vec::new();
    for writer in 0..6u8 {
        tasks.push(tokio::spawn(async move {
            let mut client = RawClient::connect(addr, V5, &format!("r{writer}")).await;
            for i in 0..150u8 {
                // Every fifth one deletes the topic's retained message.
                let payload: &[u8] = if i % 5 == 4 { b"" } else { &[writer, i] };
                client
                    .publish("ret/t", payload, QoS::AtLeastOnce, true)
                    .await;
            }
            client.disconnect().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let in_memory = broker
        .broker
        .as_ref()
        .unwrap()
        .services()
        .router
        .retained()
        .matching("ret/t");
    broker.restart().await;
    let mut sub = RawClient::connect(broker.addr(), V5, "reader").await;
    sub.subscribe("ret/t", QoS::AtMostOnce).await;
    match in_memory.first() {
        Some(kept) => assert_eq!(sub.recv_publish().await.payload, kept.payload),
        None => sub.expect_silence(Duration::from_millis(300)).await,
    }
    broker.stop().await;
}

/// The store holds password hashes and payloads: owner-only modes.
#[tokio::test]
async fn the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let broker = TestBroker::start().await;
    let dir = broker.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("gatehouse.redb")), 0o600);
    broker.stop().await;
}
