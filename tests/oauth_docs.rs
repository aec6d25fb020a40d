//! `docs/oauth.md` is exercised: its `sh` blocks run in order in one
//! bash against a broker (every grant's worked `curl` example, the
//! errors, introspection, revocation, `mosquitto_pub` with a token), and
//! its raw AUTH packet is what the codec encodes.

mod common;

use common::api::Api;
use common::*;
use gatehouse::protocol::{Auth, Packet, Properties, ProtocolVersion, ReasonCode, encode};
use std::time::Duration;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/oauth.md")).unwrap()
}

/// The `sh` blocks, in order.
fn shell_blocks(text: &str) -> Vec<String> {
    text.split("```sh\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_curl_examples_run() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let blocks = shell_blocks(&doc());
    assert!(blocks.len() >= 8, "{} blocks", blocks.len());
    let script = format!(
        "set -euo pipefail\nBASE=http://{}\nMQTT_PORT={}\nTOKEN={}\n{}\n\
         test \"$(jq -r .token_type cc.json)\" = Bearer\n\
         test \"$(jq -r .refresh_token refreshed.json)\" != null\n\
         test \"$(jq -r .token_type code.json)\" = Bearer\n\
         case \"$SPA_LOCATION\" in https://spa.example/#access_token=*) ;; *) exit 9 ;; esac\n\
         echo DOCS-OK\n",
        b.http_addr(),
        b.port(),
        admin.token.as_deref().unwrap(),
        blocks.join("\n")
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth-docs.sh");
    std::fs::write(&path, script).unwrap();
    let (status, out) = run_cmd(
        "bash",
        &[
            "-c",
            &format!("cd {} && bash oauth-docs.sh", dir.path().display()),
        ],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(status, Some(0), "docs/oauth.md examples failed:\n{out}");
    assert!(out.contains("DOCS-OK"), "{out}");
    assert!(out.contains("\"error\":\"invalid_client\""), "{out}");
    assert!(out.contains("{\"active\":false}"), "{out}");
    assert!(out.contains("\"active\":true"), "{out}");
    assert!(out.contains("state=xyz&iss=gatehouse"), "{out}");
    b.stop().await;
}

#[test]
fn the_raw_auth_answer_is_what_the_codec_sends() {
    let reply = Packet::Auth(Auth {
        reason: ReasonCode::SUCCESS,
        properties: Properties {
            authentication_method: Some("gatehouse-token".into()),
            ..Properties::default()
        },
    });
    let mut out = bytes::BytesMut::new();
    encode(&reply, ProtocolVersion::V5, &mut out);
    let hex: Vec<String> = out.iter().map(|b| format!("{b:02X}")).collect();
    let line = hex.join(" ");
    assert!(doc().contains(&line), "docs/oauth.md should show {line}");
}
