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
        // A table: SERIAL CN FINGERPRINT NOT AFTER STATUS.
        list.lines()
            .skip(1)
            .find(|l| l.split_whitespace().nth(1) == Some(cn))
            .unwrap()
            .split_whitespace()
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

/// Runs a CLI command that must fail; returns its standard error.
fn cli_refuses(config: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "gatehouse {args:?} succeeded");
    assert!(!stderr.contains("panicked"), "gatehouse {args:?}: {stderr}");
    stderr
}

/// Signs `csr_pem` with `gatehouse cert sign` (extra CLI `args`) and
/// returns the certificate's DER.
fn sign_csr(site: &Site, name: &str, csr_pem: &str, args: &[&str]) -> Vec<u8> {
    let (csr_path, out) = (
        site.path(&format!("{name}.csr")),
        site.path(&format!("{name}.crt")),
    );
    std::fs::write(&csr_path, csr_pem).unwrap();
    let mut all = vec![
        "cert",
        "sign",
        "--csr",
        csr_path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    cli(&site.config, &all);
    CertificateDer::from_pem_slice(&std::fs::read(&out).unwrap())
        .unwrap()
        .to_vec()
}

/// Asserts that `der` is exactly the client certificate the CA issues:
/// subject CN=`cn` and nothing else, the request's public key `spki`,
/// signed by the CA, valid for `days`, and exactly these extensions.
fn assert_client_leaf(site: &Site, der: &[u8], cn: &str, spki: &[u8], days: i64) {
    use sha2::Digest;
    use x509_parser::extensions::ParsedExtension;
    let ca_pem = std::fs::read(site.ca()).unwrap();
    let ca_der = CertificateDer::from_pem_slice(&ca_pem).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);

    // Subject: the identity's CN only; nothing else the request named.
    let subject: Vec<(String, String)> = cert
        .subject()
        .iter_attributes()
        .map(|a| (a.attr_type().to_id_string(), a.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(subject, [("2.5.4.3".to_owned(), cn.to_owned())]);
    assert_eq!(cert.issuer().as_raw(), ca.subject().as_raw());
    assert_eq!(cert.public_key().raw, spki, "not the request's public key");
    cert.verify_signature(Some(ca.public_key()))
        .expect("signed by the CA");
    let validity = cert.validity();
    let span = validity.not_after.timestamp() - validity.not_before.timestamp();
    assert_eq!(span, days * 86_400 + 300, "validity: {days} days + 5 min");

    // The whole extension set, with criticality, in the order written.
    let extensions: Vec<(String, bool)> = cert
        .extensions()
        .iter()
        .map(|e| (e.oid.to_id_string(), e.critical))
        .collect();
    let expected = [
        ("2.5.29.35", false), // authorityKeyIdentifier
        ("2.5.29.15", true),  // keyUsage
        ("2.5.29.37", false), // extendedKeyUsage
        ("2.5.29.14", false), // subjectKeyIdentifier
        ("2.5.29.19", true),  // basicConstraints
    ];
    assert_eq!(
        extensions,
        expected.map(|(oid, critical)| (oid.to_owned(), critical)),
        "extension set of the issued certificate"
    );
    let ca_key_id = match ca
        .get_extension_unique(&x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
    {
        Ok(Some(ext)) => match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => id.0.to_vec(),
            other => panic!("CA subjectKeyIdentifier: {other:?}"),
        },
        other => panic!("CA without subjectKeyIdentifier: {other:?}"),
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                assert_eq!(
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec()),
                    Some(ca_key_id.clone()),
                    "authorityKeyIdentifier is the CA's key"
                );
                assert!(aki.authority_cert_issuer.is_none() && aki.authority_cert_serial.is_none());
            }
            ParsedExtension::KeyUsage(usage) => {
                assert_eq!(
                    usage.flags, 1,
                    "keyUsage: digitalSignature only, got {usage}"
                );
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let expected = x509_parser::extensions::ExtendedKeyUsage {
                    any: false,
                    server_auth: false,
                    client_auth: true,
                    code_signing: false,
                    email_protection: false,
                    time_stamping: false,
                    ocsp_signing: false,
                    other: Vec::new(),
                };
                assert_eq!(*eku, expected, "extendedKeyUsage: clientAuth only");
            }
            ParsedExtension::SubjectKeyIdentifier(id) => {
                // rcgen's SHA-256 method: the first 20 bytes of the SPKI's hash.
                assert_eq!(
                    id.0,
                    &sha2::Sha256::digest(spki)[..20],
                    "subjectKeyIdentifier"
                );
            }
            ParsedExtension::BasicConstraints(bc) => {
                assert!(!bc.ca && bc.path_len_constraint.is_none(), "{bc:?}");
            }
            other => panic!("unexpected extension {other:?}"),
        }
    }
    assert!(!cert.is_ca());
}

#[test]
fn csr_asking_for_a_ca_gets_a_leaf() {
    let site = Site::new(true);
    let key = rcgen::KeyPair::generate().unwrap();
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    // Ask for everything: a CA with a path length, every key usage and
    // extended key usage (plus one unknown), SANs of each kind, a key
    // identifier of our choosing, a critical extension nobody knows, a CN
    // naming another user and more name parts.
    let mut params =
        rcgen::CertificateParams::new(vec!["evil.example".to_owned(), "10.0.0.1".to_owned()])
            .unwrap();
    params.subject_alt_names.extend([
        rcgen::SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()),
        rcgen::SanType::Rfc822Name("root@evil.example".try_into().unwrap()),
        rcgen::SanType::URI("https://evil.example/".try_into().unwrap()),
    ]);
    let name = &mut params.distinguished_name;
    name.push(rcgen::DnType::CommonName, "admin");
    name.push(rcgen::DnType::OrganizationName, "Evil Corp");
    name.push(rcgen::DnType::OrganizationalUnitName, "root");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(3));
    use rcgen::KeyUsagePurpose as Ku;
    params.key_usages = vec![
        Ku::DigitalSignature,
        Ku::ContentCommitment,
        Ku::KeyEncipherment,
        Ku::DataEncipherment,
        Ku::KeyAgreement,
        Ku::KeyCertSign,
        Ku::CrlSign,
    ];
    use rcgen::ExtendedKeyUsagePurpose as Eku;
    params.extended_key_usages = vec![
        Eku::Any,
        Eku::ServerAuth,
        Eku::ClientAuth,
        Eku::CodeSigning,
        Eku::EmailProtection,
        Eku::TimeStamping,
        Eku::OcspSigning,
        Eku::Other(vec![1, 3, 6, 1, 4, 1, 55555, 2]),
    ];
    let mut unknown = rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 55555, 1],
        vec![0x0C, 0x04, b'r', b'o', b'o', b't'],
    );
    unknown.set_criticality(true);
    let mut chosen_key_id = vec![0x04, 20];
    chosen_key_id.extend([0xEE; 20]);
    params.custom_extensions = vec![
        unknown,
        rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 14], chosen_key_id),
    ];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();

    // The operator names the user: the request's CN does not matter.
    let der = sign_csr(&site, "named", &csr, &["--cn", "device7", "--days", "7"]);
    assert_client_leaf(&site, &der, "device7", &spki, 7);
    // Without --cn the request's CN is the identity; the rest is dropped all the same.
    let der = sign_csr(&site, "unnamed", &csr, &[]);
    assert_client_leaf(&site, &der, "admin", &spki, 365);
    let list = cli(&site.config, &["cert", "list"]);
    let mut recorded: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    recorded.sort();
    assert_eq!(recorded, ["admin", "device7"], "{list}");

    // A CSR without a CN is refused, and so is one with two (which one
    // would be the user?) unless --cn names the user.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr_path = site.path("nameless.csr");
    std::fs::write(
        &csr_path,
        params.serialize_request(&key).unwrap().pem().unwrap(),
    )
    .unwrap();
    let sign = ["cert", "sign", "--csr", csr_path.to_str().unwrap()];
    assert!(cli_refuses(&site.config, &sign).contains("no common name"));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "device7");
    params
        .distinguished_name
        .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 3]), "admin");
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    std::fs::write(&csr_path, &csr).unwrap();
    assert!(cli_refuses(&site.config, &sign).contains("several common names"));
    let der = sign_csr(
        &site,
        "two-names",
        &csr,
        &["--cn", "device7", "--days", "1"],
    );
    assert_client_leaf(&site, &der, "device7", &spki, 1);

    // A request whose signature does not verify is refused.
    let mut tampered = x509_parser::pem::parse_x509_pem(csr.as_bytes())
        .unwrap()
        .1
        .contents;
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    std::fs::write(&csr_path, pem_of("CERTIFICATE REQUEST", &tampered)).unwrap();
    assert!(cli_refuses(&site.config, &sign).contains("signature"));

    // Validity out of range is an error, not a panic.
    std::fs::write(&csr_path, &csr).unwrap();
    for days in ["0", "4294967295"] {
        let err = cli_refuses(
            &site.config,
            &[&sign[..], &["--cn", "x", "--days", days]].concat(),
        );
        assert!(err.contains("out of range"), "--days {days}: {err}");
    }
}

/// PEM armour for `der`.
fn pem_of(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// The onboarding recipe of docs/tls.md with a P-384 key: openssl signs the
/// request with SHA-256 by default. The certificate must carry the P-384
/// key as it is (rcgen's CSR import labelled it P-256 from the signature
/// algorithm, producing a certificate nobody can parse) and work for mTLS.
#[tokio::test]
async fn csr_key_is_taken_from_the_key_not_the_signature_algorithm() {
    let site = Site::new(true);
    let (key, csr) = (site.path("p384.key"), site.path("p384.csr"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
        ])
        .args(["-sha256", "-nodes", "-subj", "/CN=p384"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .stderr(Stdio::null())
        .status()
        .expect("openssl (scripts/test.sh installs it)");
    assert!(status.success());
    let csr_pem = std::fs::read_to_string(&csr).unwrap();
    use x509_parser::prelude::FromDer;
    let pem = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .unwrap()
        .1;
    let (_, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .unwrap();
    assert_eq!(
        request.signature_algorithm.algorithm,
        x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
    );
    let spki = request.certification_request_info.subject_pki.raw.to_vec();
    let der = sign_csr(&site, "p384", &csr_pem, &[]);
    assert_client_leaf(&site, &der, "p384", &spki, 365);

    // The device logs in with it.
    cli(
        &site.config,
        &["user", "add", "p384", "--grant", "certificate"],
    );
    let grant = [
        "--context",
        "mqtt",
        "--resource",
        "p",
        "--operation",
        "readWrite",
    ];
    cli(
        &site.config,
        &[&["user", "grant", "p384"][..], &grant].concat(),
    );
    let _broker = site.start();
    let (ca, crt) = (site.ca(), site.path("p384.crt"));
    let tls = ["--cafile", &ca, "--cert", crt.to_str().unwrap()];
    let tls = [&tls[..], &["--key", key.to_str().unwrap(), "-V", "5"]].concat();
    let (status, out) = mosquitto_roundtrip(site.mqtts, "p", "p", "p-384", &tls, &tls).await;
    assert_eq!((status, out.trim()), (Some(0), "p-384"), "{out}");
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
