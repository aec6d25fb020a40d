//! TLS listeners, the built-in CA and mutual-TLS devices, with the real
//! mosquitto clients (`--cafile --cert --key`, -V 311 and -V 5), a rustls
//! client and a WebSocket-over-TLS client.

mod common;

use common::*;
use gatehouse::protocol::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn cli(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("CYBUS_BROKER_USE_MUTUAL_TLS")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "gatehouse {args:?}: {text}");
    text
}

struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    mqtts: u16,
    wss: u16,
}

impl Site {
    fn new(mutual: bool) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let (mqtts, wss) = (free_port(), free_port());
        let config = dir.path().join("broker.toml");
        std::fs::write(
            &config,
            format!(
                "[listeners]\nmqtt = \"\"\nws = \"\"\nmqtts = \"127.0.0.1:{mqtts}\"\nwss = \"127.0.0.1:{wss}\"\nhttp = \"\"\nhttps = \"\"\n\n[storage]\ndir = \"{data}\"\n\n[tls]\ndir = \"{certs}\"\nmutual_tls = {mutual}\n",
                data = dir.path().join("data").display(),
                certs = dir.path().join("certs").display(),
            ),
        )
        .unwrap();
        Site {
            dir,
            config,
            mqtts,
            wss,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn device(&self, cn: &str) -> (String, String) {
        let out = self.path("devices");
        cli(
            &self.config,
            &["cert", "issue", "--cn", cn, "--out", out.to_str().unwrap()],
        );
        (
            out.join(format!("{cn}.crt")).display().to_string(),
            out.join(format!("{cn}.key")).display().to_string(),
        )
    }

    fn serial_of(&self, cn: &str) -> String {
        let list = cli(&self.config, &["cert", "list"]);
        list.lines()
            .find(|l| l.split('\t').nth(1) == Some(cn))
            .unwrap()
            .split('\t')
            .next()
            .unwrap()
            .to_owned()
    }

    fn ca(&self) -> String {
        self.path("certs/ca.crt").display().to_string()
    }

    fn start(&self) -> Binary {
        Binary::start(&self.config, ([127, 0, 0, 1], self.mqtts).into())
    }
}

async fn mosquitto(args: &[&str]) -> (Option<i32>, String) {
    run_cmd(args[0], &args[1..], Duration::from_secs(8)).await
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn mutual_tls_devices_with_mosquitto() {
    let site = Site::new(true);
    cli(
        &site.config,
        &["user", "add", "device1", "--grant", "certificate"],
    );
    cli(
        &site.config,
        &[
            "user",
            "grant",
            "device1",
            "--context",
            "mqtt",
            "--resource",
            "devices/device1/#",
            "--operation",
            "readWrite",
        ],
    );
    cli(
        &site.config,
        &["user", "add", "parked", "--grant", "certificate"],
    );
    cli(&site.config, &["user", "disable", "parked"]);
    let (cert, key) = site.device("device1");
    let (ghost_cert, ghost_key) = site.device("ghost");
    let (parked_cert, parked_key) = site.device("parked");
    let (revoked_cert, revoked_key) = site.device("device1-old");
    cli(
        &site.config,
        &["cert", "revoke", &site.serial_of("device1-old")],
    );
    let ca = site.ca();
    let _broker = site.start();

    for version in ["311", "5"] {
        let tls = strings(&[
            "--cafile", &ca, "--cert", &cert, "--key", &key, "-V", version,
        ]);
        let tls_args: Vec<&str> = tls.iter().map(String::as_str).collect();
        let topic = "devices/device1/state";
        let (status, out) =
            mosquitto_roundtrip(site.mqtts, topic, topic, "over tls", &tls_args, &tls_args).await;
        assert_eq!((status, out.trim()), (Some(0), "over tls"), "-V {version}");

        // Held to the user's ACL: a topic outside devices/device1/# is refused.
        let mut denied = tls.clone();
        denied.extend(strings(&["-t", "elsewhere", "-C", "1", "-W", "2"]));
        let args: Vec<String> = [
            strings(&[
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &site.mqtts.to_string(),
            ]),
            denied,
        ]
        .concat();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, out) = mosquitto(&args).await;
        assert!(
            status != Some(0) || out.contains("denied"),
            "subscription outside the ACL: {out}"
        );

        let port = site.mqtts.to_string();
        let refused = |cert: &str, key: &str| {
            let (ca, port, cert, key) = (ca.clone(), port.clone(), cert.to_owned(), key.to_owned());
            async move {
                mosquitto(&[
                    "mosquitto_pub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "--cafile",
                    &ca,
                    "--cert",
                    &cert,
                    "--key",
                    &key,
                    "-V",
                    version,
                    "-t",
                    "devices/x",
                    "-m",
                    "x",
                ])
                .await
            }
        };
        let (status, out) = refused(&ghost_cert, &ghost_key).await;
        assert_ne!(status, Some(0), "unknown CN: {out}");
        let (status, out) = refused(&parked_cert, &parked_key).await;
        assert_ne!(status, Some(0), "disabled user: {out}");
        let (status, out) = refused(&revoked_cert, &revoked_key).await;
        assert_ne!(status, Some(0), "revoked certificate: {out}");
        // A password client without a certificate is refused at the handshake.
        let (status, out) = mosquitto(&[
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "--cafile",
            &ca,
            "-u",
            "admin",
            "-P",
            "admin",
            "-V",
            version,
            "-t",
            "x",
            "-m",
            "x",
        ])
        .await;
        assert_ne!(status, Some(0), "password client on mutual TLS: {out}");
    }

    // Self-signed and expired certificates are refused at the handshake.
    let self_signed = rcgen::generate_simple_self_signed(vec!["device1".into()]).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "device1");
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(site.path("certs/ca.key")).unwrap())
            .unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(&ca).unwrap(), ca_key).unwrap();
    let expired_key = rcgen::KeyPair::generate().unwrap();
    let expired = params.signed_by(&expired_key, &issuer).unwrap();
    for (name, cert_pem, key_pem) in [
        (
            "self-signed",
            self_signed.cert.pem(),
            self_signed.signing_key.serialize_pem(),
        ),
        ("expired", expired.pem(), expired_key.serialize_pem()),
    ] {
        let (c, k) = (
            site.path(&format!("{name}.crt")),
            site.path(&format!("{name}.key")),
        );
        std::fs::write(&c, cert_pem).unwrap();
        std::fs::write(&k, key_pem).unwrap();
        let (status, out) = mosquitto(&[
            "mosquitto_pub",
            "-h",
            "127.0.0.1",
            "-p",
            &site.mqtts.to_string(),
            "--cafile",
            &ca,
            "--cert",
            c.to_str().unwrap(),
            "--key",
            k.to_str().unwrap(),
            "-t",
            "devices/device1/x",
            "-m",
            "x",
        ])
        .await;
        assert_ne!(status, Some(0), "{name} certificate accepted: {out}");
    }
}

#[tokio::test]
async fn server_side_tls_with_passwords_and_generated_material() {
    let site = Site::new(false);
    let _broker = site.start();
    let ca = site.ca();
    for version in ["311", "5"] {
        let auth = ["--cafile", &ca, "-u", "admin", "-P", "admin", "-V", version];
        let (status, out) = mosquitto_roundtrip(
            site.mqtts,
            "tls/plain",
            "tls/plain",
            "over tls",
            &auth,
            &auth,
        )
        .await;
        assert_eq!((status, out.trim()), (Some(0), "over tls"));
    }
    // Wrong password over TLS is still refused.
    let (status, _) = mosquitto(&[
        "mosquitto_pub",
        "-h",
        "127.0.0.1",
        "-p",
        &site.mqtts.to_string(),
        "--cafile",
        &ca,
        "-u",
        "admin",
        "-P",
        "nope",
        "-t",
        "x",
        "-m",
        "x",
    ])
    .await;
    assert_ne!(status, Some(0));

    // Generated material: SANs, key modes.
    use std::os::unix::fs::PermissionsExt;
    for key in ["certs/ca.key", "certs/server.key"] {
        let mode = std::fs::metadata(site.path(key))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let pem = std::fs::read(site.path("certs/server.crt")).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let sans = format!(
        "{:?}",
        cert.subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
    );
    assert!(
        sans.contains("\"localhost\"") && sans.contains("[127, 0, 0, 1]"),
        "{sans}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(sans.contains(host.trim()), "host name missing: {sans}");

    // WebSocket over TLS.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, None)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", site.wss))
        .await
        .unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("wss://localhost:{}/mqtt", site.wss)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    let mut connect = connect_packet(ProtocolVersion::V5, "wss-client", true);
    connect.username = Some("admin".into());
    connect.password = Some(bytes::Bytes::from_static(b"admin"));
    let mut out = bytes::BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect)),
        ProtocolVersion::V5,
        &mut out,
    );
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        out.freeze(),
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
        .into_data();
    let mut buf = bytes::BytesMut::from(&reply[..]);
    match decode(&mut buf, Some(ProtocolVersion::V5), usize::MAX).unwrap() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason, ReasonCode::SUCCESS),
        other => panic!("{other:?}"),
    }
}

fn client_config(ca: &str, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    }
}

#[test]
fn csr_asking_for_a_ca_gets_a_leaf() {
    let site = Site::new(true);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sneaky");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let csr = params.serialize_request(&key).unwrap();
    let csr_path = site.path("sneaky.csr");
    std::fs::write(&csr_path, csr.pem().unwrap()).unwrap();
    let out = site.path("sneaky.crt");
    cli(
        &site.config,
        &[
            "cert",
            "sign",
            "--csr",
            csr_path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let der = CertificateDer::from_pem_slice(&std::fs::read(&out).unwrap()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(!cert.is_ca(), "a CSR must never yield a CA certificate");
    let usage = cert.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign() && !usage.crl_sign());
    assert!(
        cert.extended_key_usage()
            .unwrap()
            .unwrap()
            .value
            .client_auth
    );
    assert_eq!(
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "sneaky"
    );
    assert!(cli(&site.config, &["cert", "list"]).contains("sneaky"));

    // A CSR without a CN is refused.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params.serialize_request(&key).unwrap();
    std::fs::write(&csr_path, csr.pem().unwrap()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args([
            "cert",
            "sign",
            "--csr",
            csr_path.to_str().unwrap(),
            "--config",
            site.config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("common name"));
}

#[tokio::test]
async fn revoking_a_certificate_closes_the_live_session() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.listeners.mqtts = Some("127.0.0.1:0".parse().unwrap());
    config.tls.mutual_tls = true;
    // Issue the device certificate before the broker holds the store.
    let ca = gatehouse::tls::CertificateAuthority::load_or_create(&config.tls.dir).unwrap();
    let (issued, key_pem) = ca.issue("live-device", 30).unwrap();
    let (cert_path, key_path) = (dir.path().join("d.crt"), dir.path().join("d.key"));
    std::fs::write(&cert_path, &issued.pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    let broker = gatehouse::start(config.clone()).await.unwrap();
    let directory = broker.directory().unwrap().clone();
    directory.record_certificate((&issued).into()).unwrap();
    directory
        .add_user(gatehouse::identity::NewUser {
            username: "live-device".into(),
            grants: vec![gatehouse::identity::GrantMethod::Certificate],
            ..Default::default()
        })
        .unwrap();
    let addr = broker.mqtts_addr.unwrap();
    let ca_path = config.tls.dir.join("ca.crt");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(
        ca_path.to_str().unwrap(),
        Some((cert_path.to_str().unwrap(), key_path.to_str().unwrap())),
    )));
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let mut out = bytes::BytesMut::new();
        encode(
            &Packet::Connect(Box::new(connect_packet(ProtocolVersion::V5, "live", true))),
            ProtocolVersion::V5,
            &mut out,
        );
        tokio::io::AsyncWriteExt::write_all(&mut tls, &out).await?;
        let mut buf = bytes::BytesMut::new();
        loop {
            if let Some(packet) = decode(&mut buf, Some(ProtocolVersion::V5), usize::MAX).unwrap() {
                return Ok::<_, std::io::Error>((tls, packet, buf));
            }
            if tokio::io::AsyncReadExt::read_buf(&mut tls, &mut buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    };
    let (mut tls, packet, mut buf) = connect().await.unwrap();
    assert!(
        matches!(packet, Packet::ConnAck(ref a) if a.reason == ReasonCode::SUCCESS),
        "{packet:?}"
    );
    directory.revoke_certificate(&issued.serial).unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(packet) = decode(&mut buf, Some(ProtocolVersion::V5), usize::MAX).unwrap() {
                return packet;
            }
            assert!(
                tokio::io::AsyncReadExt::read_buf(&mut tls, &mut buf)
                    .await
                    .unwrap()
                    > 0
            );
        }
    })
    .await
    .expect("session not closed after revocation");
    assert!(
        matches!(closed, Packet::Disconnect(ref d) if d.reason == ReasonCode::ADMINISTRATIVE_ACTION),
        "{closed:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        connect().await.is_err(),
        "a revoked certificate must fail the handshake"
    );
    broker.shutdown().await;
}

fn server_fingerprint(ca: &str, port: u16) -> Result<Vec<u8>, std::io::Error> {
    let config = Arc::new(client_config(ca, None));
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn sighup_reloads_the_certificate_and_stalled_handshakes_time_out() {
    let site = Site::new(false);
    std::fs::write(
        &site.config,
        std::fs::read_to_string(&site.config).unwrap() + "handshake_timeout_secs = 1\n",
    )
    .unwrap();
    let broker = site.start();
    let ca = site.ca();
    let before = server_fingerprint(&ca, site.mqtts).unwrap();

    // An established TLS client stays connected across the reload.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, None)));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", site.mqtts))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut connect = connect_packet(ProtocolVersion::V311, "steady", true);
    connect.username = Some("admin".into());
    connect.password = Some(bytes::Bytes::from_static(b"admin"));
    let mut out = bytes::BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect)),
        ProtocolVersion::V311,
        &mut out,
    );
    encode(&Packet::PingReq, ProtocolVersion::V311, &mut out);
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(&out).await.unwrap();
    let mut reply = [0u8; 6];
    tls.read_exact(&mut reply).await.unwrap();
    assert_eq!(
        reply,
        [0x20, 0x02, 0x00, 0x00, 0xD0, 0x00],
        "CONNACK + PINGRESP"
    );

    // Renew: a new server certificate from the same CA, then SIGHUP.
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(site.path("certs/ca.key")).unwrap())
            .unwrap();
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(&ca).unwrap(), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let renewed = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(site.path("certs/server.crt"), renewed.pem()).unwrap();
    std::fs::write(site.path("certs/server.key"), key.serialize_pem()).unwrap();
    broker.signal("-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = server_fingerprint(&ca, site.mqtts).unwrap();
    assert_ne!(
        before, after,
        "SIGHUP did not pick up the renewed certificate"
    );
    assert_eq!(after, renewed.der().to_vec());
    tls.write_all(&[0xC0, 0x00]).await.unwrap();
    let mut pong = [0u8; 2];
    tls.read_exact(&mut pong).await.unwrap();
    assert_eq!(
        pong,
        [0xD0, 0x00],
        "established connection survived the reload"
    );

    // A client that never completes the handshake is cut off, and others
    // are served meanwhile.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", site.mqtts))
        .await
        .unwrap();
    assert!(server_fingerprint(&ca, site.mqtts).is_ok());
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), stalled.read(&mut buf))
        .await
        .expect("stalled handshake not cut off");
    assert!(matches!(n, Ok(0) | Err(_)));
    assert!(started.elapsed() < Duration::from_secs(3));
}
