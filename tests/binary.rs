//! The `gatehouse` binary: configuration errors, SIGTERM shutdown, and no
//! acknowledged message lost to SIGKILL under `durability = "sync"`.

mod common;

use common::*;
use gatehouse::protocol::*;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn password_policy_and_initial_admin_settings_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("[storage]\ndir = \"{}\"\n", data.display()),
    )
    .unwrap();
    // The default initial password `admin` fails a stricter policy.
    let (ok, out) = gatehouse_cli(
        &config,
        &["user", "list"],
        None,
        &[(
            "CYBUS_AUTH_PASSWORD_POLICY_RULES",
            r#"{"min": 8, "upper": 1}"#,
        )],
    );
    assert!(!ok);
    assert!(
        out.contains("initial admin password") && out.contains("8"),
        "{out}"
    );
    for (rules, needle) in [
        ("{\"min\": 8", "CYBUS_AUTH_PASSWORD_POLICY_RULES"),
        (r#"{"minimum": 3}"#, "minimum"),
        (r#"{"min": -1}"#, "min"),
    ] {
        let (ok, out) = gatehouse_cli(
            &config,
            &["user", "list"],
            None,
            &[("CYBUS_AUTH_PASSWORD_POLICY_RULES", rules)],
        );
        assert!(!ok, "{rules}");
        assert!(out.contains(needle), "{rules}: {out}");
    }
    // The TOML form is checked as strictly.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[auth]\npassword_policy = { min = 5, digits = 1 }\n").unwrap();
    let (ok, out) = gatehouse_cli(&bad, &["user", "list"], None, &[]);
    assert!(!ok && out.contains("digits"), "{out}");

    // A base64 initial password that satisfies the policy starts fine.
    let (ok, out) = gatehouse_cli(
        &config,
        &["user", "list"],
        None,
        &[
            (
                "CYBUS_AUTH_PASSWORD_POLICY_RULES",
                r#"{"min": 8, "upper": 1}"#,
            ),
            ("GATEHOUSE_INITIAL_ADMIN_PASSWORD", "U3Ryb25nZXJQYXNz"),
        ],
    );
    assert!(ok, "{out}");
    assert!(row(&out, "admin").contains(" enabled "), "{out}");
    // CYBUS_ADMIN_USER_ENABLED=false disables the admin.
    let (ok, out) = gatehouse_cli(
        &config,
        &["user", "list"],
        None,
        &[("CYBUS_ADMIN_USER_ENABLED", "false")],
    );
    assert!(ok && row(&out, "admin").contains(" disabled "), "{out}");
}

/// The table row that starts with `name`.
fn row<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_default()
}

#[tokio::test]
async fn user_and_role_commands() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "periodic");
    let cli = |args: &[&str], stdin: Option<&str>| gatehouse_cli(&config, args, stdin, &[]);
    let (ok, out) = cli(
        &[
            "user",
            "add",
            "newuser",
            "--password-stdin",
            "--prefix",
            "route-to-downstream/",
        ],
        Some("newpassword\n"),
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "add", "weak", "--password-stdin"], Some("abc\n"));
    assert!(!ok && out.contains("at least 5"), "{out}");
    let (ok, out) = cli(&["role", "add", "writers"], None);
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &[
            "role",
            "grant",
            "writers",
            "--context",
            "mqtt",
            "--resource",
            "route-to-downstream/#",
            "--operation",
            "write",
        ],
        None,
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &[
            "role",
            "grant",
            "writers",
            "--context",
            "mqtt",
            "--resource",
            "a/#/b",
            "--operation",
            "write",
        ],
        None,
    );
    assert!(!ok && out.contains("a/#/b"), "{out}");
    let (ok, out) = cli(&["user", "assign", "newuser", "writers"], None);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "list"], None);
    let line = row(&out, "newuser");
    assert!(ok, "{out}");
    for cell in ["enabled", "writers", "password", "route-to-downstream/"] {
        assert!(line.contains(cell), "{cell}: {out}");
    }
    let (ok, out) = cli(&["role", "list"], None);
    assert!(
        ok && out.contains("gatehouse-admin") && out.contains("route-to-downstream/#"),
        "{out}"
    );

    // Against a running broker the CLI needs a login first (tests/cli.rs).
    let broker = Binary::start(&config, ([127, 0, 0, 1], port).into());
    let out = gatehouse_run(&config, &["user", "list"], None, &[]);
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(out.stderr.contains("gatehouse login"), "{}", out.stderr);
    // The user created offline logs in.
    let mut c = RawClient::tcp(broker.addr, ProtocolVersion::V5).await;
    let mut connect = connect_packet(ProtocolVersion::V5, "nu", true);
    connect.username = Some("newuser".into());
    connect.password = Some(bytes::Bytes::from_static(b"newpassword"));
    assert_eq!(c.connect_with(connect).await.reason, ReasonCode::SUCCESS);
    drop(broker);
    let (ok, out) = cli(&["user", "del", "newuser"], None);
    assert!(ok, "{out}");
}

#[test]
fn bad_configuration_refuses_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("[limits]\nmax_conections = 10\n", "max_conections"),
        ("[limits]\nmax_packet_size = 1\n", "limits.max_packet_size"),
        ("[storage]\ndurability = \"sometimes\"\n", "durability"),
        ("[listeners]\nmqtt = \"not an address\"\n", "mqtt"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{needle} not named in: {stderr}");
    }
}

#[tokio::test]
async fn sigterm_disconnects_clients_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port, "sync");
    let mut broker = Binary::start(&config, ([127, 0, 0, 1], port).into());
    let mut client = RawClient::connect(broker.addr, ProtocolVersion::V5, "c").await;
    broker.signal("-TERM");
    match client.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "broker did not exit within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_message_in_sync_mode() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = write_config(dir.path(), port, "sync");
    let broker = Binary::start(&config, addr);

    let persistent = || {
        let mut c = connect_packet(ProtocolVersion::V5, "durable-sub", false);
        c.properties.session_expiry_interval = Some(3600);
        c
    };
    let mut sub = RawClient::tcp(addr, ProtocolVersion::V5).await;
    sub.connect_with(persistent()).await;
    sub.subscribe("load/#", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    // Publish QoS 1 with a window of 20 in flight; record what was acknowledged.
    let mut publ = RawClient::connect(addr, ProtocolVersion::V5, "loader").await;
    let mut acked = HashSet::new();
    let mut next: u16 = 1;
    let mut in_flight = 0;
    let started = Instant::now();
    while acked.len() < 400 && started.elapsed() < Duration::from_secs(20) {
        while in_flight < 20 {
            publ.send(&Packet::Publish(publish(
                "load/x",
                &next.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                next,
            )))
            .await;
            next += 1;
            in_flight += 1;
        }
        if let Some(Packet::PubAck(ack)) = publ.recv().await {
            acked.insert(ack.packet_id);
            in_flight -= 1;
        }
    }
    drop(broker); // SIGKILL while messages are still in flight
    assert!(acked.len() >= 400, "only {} acknowledged", acked.len());

    let _broker = Binary::start(&config, addr);
    let mut sub = RawClient::tcp(addr, ProtocolVersion::V5).await;
    let ack = sub.connect_with(persistent()).await;
    assert!(ack.session_present);
    let mut received = HashSet::new();
    while let Ok(Some(Packet::Publish(p))) = sub.try_recv(Duration::from_secs(1)).await {
        received.insert(u16::from_be_bytes([p.payload[0], p.payload[1]]));
        sub.send(&Packet::PubAck(PubResponse::new(
            p.packet_id,
            ReasonCode::SUCCESS,
        )))
        .await;
    }
    let lost: Vec<_> = acked.difference(&received).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
}
