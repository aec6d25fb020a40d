//! Running the real binary as a service: systemd's notify protocol over a
//! socket the test creates, Prometheus metrics at `/metrics`, and the log
//! lines of connects, disconnects and authentication failures.

mod common;

use common::api::Api;
use common::*;
use gatehouse::protocol::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn config(dir: &Path, extra: &str) -> (PathBuf, SocketAddr, SocketAddr) {
    let (mqtt, http) = (free_port(), free_port());
    let path = dir.join("broker.toml");
    let text = format!(
        "[listeners]\nmqtt = \"127.0.0.1:{mqtt}\"\nhttp = \"127.0.0.1:{http}\"\n\n[storage]\ndir = \"{}\"\n{extra}",
        dir.join("data").display()
    );
    std::fs::write(&path, text).unwrap();
    (
        path,
        ([127, 0, 0, 1], mqtt).into(),
        ([127, 0, 0, 1], http).into(),
    )
}

/// The next datagram within `wait`.
fn next(socket: &UnixDatagram, wait: Duration) -> Option<String> {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn tells_systemd_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mqtt, http) = config(dir.path(), "");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let started = Instant::now();
    let mut broker = Binary::start_with(
        &config,
        mqtt,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
        std::process::Stdio::null(),
    );
    let ready = next(&socket, Duration::from_secs(10)).expect("READY=1");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", broker.child.id())),
        "{ready}"
    );
    // READY=1 comes after every listener is bound: both answer now.
    std::net::TcpStream::connect(mqtt).expect("MQTT bound before READY=1");
    std::net::TcpStream::connect(http).expect("HTTP bound before READY=1");
    // Watchdog pings at half of WATCHDOG_USEC.
    let mut pings = 0;
    while pings < 3 {
        let message = next(&socket, Duration::from_secs(2)).expect("WATCHDOG=1");
        assert_eq!(message, "WATCHDOG=1");
        pings += 1;
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    broker.signal("-TERM");
    let mut stopping = false;
    while let Some(message) = next(&socket, Duration::from_secs(5)) {
        if message == "STOPPING=1" {
            stopping = true;
            break;
        }
        assert_eq!(message, "WATCHDOG=1");
    }
    assert!(stopping, "no STOPPING=1");
    let status = broker.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Whatever is in `text` for `name{labels}`.
fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name_and_labels} not in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_need_a_permission_and_count_what_happens() {
    let dir = tempfile::tempdir().unwrap();
    let (config, mqtt, http) = config(dir.path(), "");
    let log = dir.path().join("broker.log");
    let _broker = Binary::start_with(
        &config,
        mqtt,
        &[],
        std::fs::File::create(&log).unwrap().into(),
    );
    wait_port(http);
    let client = reqwest::Client::new();
    let url = format!("http://{http}/metrics");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let admin = Api::login(http, "admin", "admin").await;
    admin
        .create_user(json!({"username": "viewer", "password": "viewer-pass"}))
        .await;
    let viewer = Api::login(http, "viewer", "viewer-pass").await;
    assert_eq!(viewer.get("/metrics").await.status, 403);
    admin
        .create_user(json!({"username": "dev-1", "password": "secret-1",
            "initialPermissions": [{"resource": "t/#", "operation": "readWrite", "context": "mqtt"}]}))
        .await;

    // Traffic: a subscriber, QoS 1 publishes, a failed login, a denied publish.
    let auth = ["-V", "5", "-u", "dev-1", "-P", "secret-1", "-q", "1"];
    let with_id = |id: &'static str| -> Vec<&str> { [&auth[..], &["-i", id]].concat() };
    let (status, out) = mosquitto_roundtrip(
        mqtt.port(),
        "t/#",
        "t/x",
        "hello",
        &with_id("metrics-sub"),
        &with_id("metrics-pub"),
    )
    .await;
    assert_eq!(status, Some(0), "{out}");
    let (_, ack) = users::login(
        mqtt,
        ProtocolVersion::V5,
        "bad",
        "dev-1",
        "wrong-password-42",
    )
    .await;
    assert_eq!(ack.reason, ReasonCode::BAD_USERNAME_OR_PASSWORD);
    let (mut c, _) = users::login(mqtt, ProtocolVersion::V5, "denied", "dev-1", "secret-1").await;
    c.send(&Packet::Publish(publish(
        "elsewhere",
        b"x",
        QoS::AtLeastOnce,
        false,
        3,
    )))
    .await;
    let _ = c.recv().await;

    // Invented methods (any token is one) share one label.
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{i}").as_bytes()).unwrap();
        let r = client.request(method, &url).send().await.unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    let response = client
        .get(&url)
        .bearer_auth(admin.token.as_ref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(metric(&text, "gatehouse_connections{listener=\"mqtt\"}") >= 1.0);
    assert!(metric(&text, "gatehouse_connections_total{listener=\"mqtt\"}") >= 3.0);
    assert!(metric(&text, "gatehouse_messages_received_total{qos=\"1\"}") >= 1.0);
    assert!(metric(&text, "gatehouse_messages_sent_total{qos=\"1\"}") >= 1.0);
    assert!(metric(&text, "gatehouse_payload_received_bytes_total{qos=\"1\"}") >= 5.0);
    assert_eq!(
        metric(
            &text,
            "gatehouse_auth_total{method=\"password\",result=\"failure\"}"
        ),
        1.0
    );
    assert!(
        metric(
            &text,
            "gatehouse_auth_total{method=\"password\",result=\"success\"}"
        ) >= 3.0
    );
    assert_eq!(
        metric(&text, "gatehouse_acl_denied_total{operation=\"publish\"}"),
        1.0
    );
    assert_eq!(metric(&text, "gatehouse_store_healthy"), 1.0);
    assert!(text.contains(
        "gatehouse_http_requests_total{route=\"/api/login\",method=\"POST\",status=\"200\"}"
    ));
    assert!(text.contains("# TYPE gatehouse_auth_total counter"));
    assert!(!text.contains("INVENTED"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    // Every metric the exporter renders is documented.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    for (name, _) in gatehouse::prometheus::DESCRIPTIONS {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is not in docs/operations.md"
        );
    }

    // One log line per connect, disconnect and failed login; no secret.
    c.disconnect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logs.contains("wrong-password-42") && !logs.contains("secret-1"),
        "{logs}"
    );
    let line = |needle: &str, client: &str| {
        logs.lines()
            .find(|l| l.contains(needle) && l.contains(client))
            .unwrap_or_else(|| panic!("no `{needle}` line for {client}:\n{logs}"))
            .to_owned()
    };
    for (needle, client) in [
        ("client connected", "client_id=denied"),
        ("client disconnected", "client_id=denied"),
        ("authentication failed", "client_id=bad"),
    ] {
        let l = line(needle, client);
        assert!(l.contains("dev-1") && l.contains("127.0.0.1:"), "{l}");
    }
}

#[tokio::test]
async fn json_logs_and_public_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "\n[log]\nformat = \"json\"\nlevel = \"info\"\n\n[http]\nmetrics_public = true\n\n[auth]\nallow_anonymous = true\n";
    let (config, mqtt, http) = config(dir.path(), extra);
    let log = dir.path().join("broker.log");
    let broker = Binary::start_with(
        &config,
        mqtt,
        &[],
        std::fs::File::create(&log).unwrap().into(),
    );
    wait_port(http);
    let text = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    let mut c = RawClient::connect(mqtt, ProtocolVersion::V5, "json-client").await;
    c.send(&Packet::PingReq).await;
    let _ = c.recv().await;
    c.disconnect().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(broker);
    let logs = std::fs::read_to_string(&log).unwrap();
    let entries: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let connected = entries
        .iter()
        .find(|e| e["message"] == "client connected")
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(connected["client_id"], "json-client");
    assert_eq!(connected["login"], "Anonymous");
    assert!(
        connected["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert_eq!(connected["level"], "INFO");
    assert!(
        entries
            .iter()
            .any(|e| e["message"] == "client disconnected"),
        "{logs}"
    );
    assert!(entries.iter().any(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("open ports: mqtt"))
    }));
}
