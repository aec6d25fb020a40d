//! Test helpers: an in-process broker on 127.0.0.1:0 with a temporary data
//! directory, and a raw MQTT client built on the crate's own codec for
//! exact control over what goes on the wire.
#![allow(dead_code)]

pub mod api;
pub mod oauth;
mod process;
pub mod registry;
pub mod users;
#[allow(unused_imports)] // not every test binary starts the broker process
pub use process::{
    Binary, CliOutput, free_port, gatehouse_cli, gatehouse_run, wait_port, write_config,
};

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use gatehouse::protocol::*;
use gatehouse::{Config, RunningBroker};

pub const TIMEOUT: Duration = Duration::from_secs(5);

pub struct TestBroker {
    pub broker: Option<RunningBroker>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.listeners.mqtt = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.ws = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.mqtts = None;
    config.listeners.wss = None;
    config.listeners.http = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.https = None;
    config.tls.dir = dir.join("certs");
    config.storage.dir = dir.join("data");
    config.auth.allow_anonymous = true;
    config.mqtt.sys_interval_secs = 1;
    config
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        TestBroker::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestBroker {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        edit(&mut config);
        let broker = gatehouse::start(config.clone()).await.unwrap();
        open_up_anonymous(&broker);
        TestBroker {
            broker: Some(broker),
            dir,
            config,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.broker.as_ref().unwrap().mqtt_addr.unwrap()
    }

    pub fn ws_addr(&self) -> SocketAddr {
        self.broker.as_ref().unwrap().ws_addr.unwrap()
    }

    /// The admin API (plain HTTP).
    pub fn http_addr(&self) -> SocketAddr {
        self.broker.as_ref().unwrap().http_addr.unwrap()
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http_addr())
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.storage.dir.clone()
    }

    /// Stops and starts again on the same data directory and port.
    pub async fn restart(&mut self) {
        let addr = self.addr();
        self.broker.take().unwrap().shutdown().await;
        let mut config = self.config.clone();
        config.listeners.mqtt = Some(addr);
        config.listeners.ws = Some("127.0.0.1:0".parse().unwrap());
        self.broker = Some(gatehouse::start(config).await.unwrap());
    }

    pub async fn stop(mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }
}

/// Broker logs in test output, filtered by `RUST_LOG`.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Lets the built-in `anonymous` user read and write everything, including
/// `$SYS`, so that broker-core tests are not about permissions.
pub fn open_up_anonymous(broker: &RunningBroker) {
    use gatehouse::identity::{Context, Effect, Operation, Permission};
    let directory = broker.directory().expect("identity directory");
    for (resource, operation) in [("#", Operation::ReadWrite), ("$SYS/#", Operation::Read)] {
        let permission = Permission {
            resource: resource.into(),
            operation,
            context: Context::Mqtt,
            effect: Effect::Allow,
        };
        directory.grant_user("anonymous", permission).unwrap();
    }
}

/// A client speaking raw MQTT through the crate's codec.
pub struct RawClient {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    buf: BytesMut,
}

impl RawClient {
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// Connects and expects a successful CONNACK.
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
        let mut client = RawClient::tcp(addr, version).await;
        let ack = client
            .connect_with(connect_packet(version, client_id, true))
            .await;
        assert_eq!(ack.reason, ReasonCode::SUCCESS, "{ack:?}");
        client
    }

    pub async fn connect_with(&mut self, connect: Connect) -> ConnAck {
        self.send(&Packet::Connect(Box::new(connect))).await;
        match self.recv().await {
            Some(Packet::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Next packet, or `None` when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, self.recv_inner())
            .await
            .expect("timed out waiting for a packet")
    }

    /// Next packet within `wait`, `Err(())` on timeout.
    pub async fn try_recv(&mut self, wait: Duration) -> Result<Option<Packet>, ()> {
        tokio::time::timeout(wait, self.recv_inner())
            .await
            .map_err(|_| ())
    }

    async fn recv_inner(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = decode(&mut self.buf, Some(self.version), usize::MAX).unwrap() {
                return Some(packet);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Next PUBLISH, skipping other packets.
    pub async fn recv_publish(&mut self) -> Publish {
        loop {
            match self.recv().await {
                Some(Packet::Publish(p)) => return p,
                Some(_) => continue,
                None => panic!("connection closed while waiting for PUBLISH"),
            }
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> ReasonCode {
        let options = SubscriptionOptions {
            qos,
            ..Default::default()
        };
        self.subscribe_with(filter, options, Properties::default())
            .await
    }

    pub async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        properties: Properties,
    ) -> ReasonCode {
        let packet_id = 77;
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            filters: vec![(filter.into(), options)],
            properties,
        }))
        .await;
        loop {
            match self.recv().await {
                Some(Packet::SubAck(ack)) => {
                    assert_eq!(ack.packet_id, packet_id);
                    return ack.reasons[0];
                }
                Some(_) => continue,
                None => panic!("closed while waiting for SUBACK"),
            }
        }
    }

    /// Sends a PUBLISH with `packet_id` and waits for nothing.
    pub async fn send_publish(&mut self, topic: &str, payload: &[u8], qos: QoS, packet_id: u16) {
        self.send(&Packet::Publish(publish(
            topic, payload, qos, false, packet_id,
        )))
        .await;
    }

    pub async fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool) {
        self.send(&Packet::Publish(publish(topic, payload, qos, retain, 1)))
            .await;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.recv().await, Some(Packet::PubAck(_)))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv().await, Some(Packet::PubRec(_))));
                self.send(&Packet::PubRel(PubResponse::new(1, ReasonCode::SUCCESS)))
                    .await;
                assert!(matches!(self.recv().await, Some(Packet::PubComp(_))));
            }
        }
    }

    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))
            .await;
        // Wait for the broker to close its side.
        let _ = self.try_recv(Duration::from_secs(2)).await;
    }

    /// Asserts that nothing arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        match self.try_recv(wait).await {
            Err(()) => {}
            Ok(packet) => panic!("expected nothing, got {packet:?}"),
        }
    }
}

pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: clean,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

pub fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: topic.into(),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    }
}

/// A will on `topic` without properties.
pub fn will(topic: &str, payload: &'static [u8], qos: QoS) -> Will {
    Will {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos,
        retain: false,
        properties: Properties::default(),
    }
}

/// Runs a command with a timeout, returning (status, stdout).
pub async fn run_cmd(program: &str, args: &[&str], wait: Duration) -> (Option<i32>, String) {
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (install mosquitto-clients)"));
    match tokio::time::timeout(wait, child.wait_with_output()).await {
        Ok(Ok(output)) => (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        ),
        _ => (None, String::new()),
    }
}

/// `mosquitto_sub -C 1` on `sub_topic` in the background, then
/// `mosquitto_pub -m MESSAGE` on `pub_topic`; asserts the publish
/// succeeded and returns the subscriber's (status, output).
pub async fn mosquitto_roundtrip(
    port: u16,
    sub_topic: &str,
    pub_topic: &str,
    message: &str,
    sub_args: &[&str],
    pub_args: &[&str],
) -> (Option<i32>, String) {
    let port = port.to_string();
    let base = |topic: &str| -> Vec<String> {
        ["-h", "127.0.0.1", "-p", &port, "-t", topic]
            .map(String::from)
            .to_vec()
    };
    let mut sub = base(sub_topic);
    sub.extend(["-C", "1", "-W", "5"].map(String::from));
    sub.extend(sub_args.iter().map(|a| a.to_string()));
    let subscriber = tokio::spawn(async move {
        let args: Vec<&str> = sub.iter().map(String::as_str).collect();
        run_cmd("mosquitto_sub", &args, Duration::from_secs(8)).await
    });
    // Give the subscription time to be in place.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut publ = base(pub_topic);
    publ.extend(["-m", message].map(String::from));
    publ.extend(pub_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = publ.iter().map(String::as_str).collect();
    let (status, out) = run_cmd("mosquitto_pub", &args, Duration::from_secs(5)).await;
    assert_eq!(status, Some(0), "mosquitto_pub {args:?}: {out}");
    subscriber.await.unwrap()
}

/// Expects the broker to close `client` for its 1-second keep-alive: a v5
/// DISCONNECT 0x8D, 1.5 s (± scheduling) after `since`.
pub async fn expect_keep_alive_close(client: &mut RawClient, since: std::time::Instant) {
    match client.recv().await {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, ReasonCode::KEEP_ALIVE_TIMEOUT),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    let waited = since.elapsed();
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_millis(2500),
        "closed after {waited:?}"
    );
}
