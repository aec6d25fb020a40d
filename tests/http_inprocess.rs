//! The app driven in-process (`tower::ServiceExt::oneshot`): the route
//! list equals the OpenAPI document's, and the initial `admin` password
//! works only from loopback addresses (HTTP and MQTT).

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use common::*;
use gatehouse::auth::{AuthOutcome, Authenticator, Credentials, DirectoryAuthenticator};
use gatehouse::http::{self, AppState};
use gatehouse::protocol::{MqttStr, ReasonCode};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use tower::ServiceExt;

fn state(b: &TestBroker) -> AppState {
    let broker = b.broker.as_ref().unwrap();
    AppState::new(
        broker.identity().unwrap().clone(),
        broker.registry().clone(),
    )
}

async fn status(
    app: &axum::Router,
    method: &str,
    path: &str,
    peer: Option<SocketAddr>,
    body: &str,
) -> (StatusCode, String) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Every routed path and method is documented, and every documented
/// operation is routed.
#[tokio::test]
async fn documented_routes_equal_the_routers() {
    let b = TestBroker::start().await;
    let doc = http::document();
    let documented: BTreeSet<(String, String)> =
        http::openapi::operations_of(&doc).into_iter().collect();
    // The router's paths, as axum lists them.
    let router = http::router(&state(&b));
    let debug = format!("{router:?}");
    let mut paths = BTreeSet::new();
    for piece in debug.split('"').skip(1).step_by(2) {
        // axum's own fallback routes ("/", "/{*__private__axum_fallback}").
        if piece.starts_with('/') && piece != "/" && !piece.contains("__private__axum") {
            paths.insert(piece.to_owned());
        }
    }
    let doc_paths: BTreeSet<String> = documented.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(paths, doc_paths, "router paths vs documented paths");
    // Each path's methods: a method is routed unless it answers 405.
    let app = http::app(state(&b).services, state(&b).registry);
    let mut routed = BTreeSet::new();
    for path in &paths {
        let concrete = path
            .replace("{id}", "x")
            .replace("{permissionId}", "p")
            .replace("{roleId}", "r")
            .replace("{fingerprint}", "f");
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let (code, body) = status(&app, method, &concrete, None, "{}").await;
            assert!(code.as_u16() < 500, "{method} {path}: {code} {body}");
            if code != StatusCode::METHOD_NOT_ALLOWED {
                routed.insert((method.to_owned(), path.clone()));
            } else {
                assert!(body.contains("method_not_allowed"), "{body}");
            }
        }
    }
    assert_eq!(routed, documented, "routed operations vs documented ones");
    // Gatehouse's own routes are marked as extensions.
    let json = doc.to_json().unwrap();
    assert!(json.contains("x-gatehouse-extension"));
    b.stop().await;
}

#[tokio::test]
async fn initial_admin_password_only_from_loopback() {
    let b = TestBroker::start().await;
    let s = state(&b);
    let app = http::app(s.services.clone(), s.registry.clone());
    let login = r#"{"username":"admin","password":"admin"}"#;
    let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
    let (code, body) = status(&app, "POST", "/api/login", Some(remote), login).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("initial_admin_password"), "{body}");
    let (code, _) = status(&app, "POST", "/api/login", None, login).await;
    assert_eq!(
        code,
        StatusCode::FORBIDDEN,
        "an unknown address is not loopback"
    );
    for peer in [local, mapped] {
        let (code, body) = status(&app, "POST", "/api/login", Some(peer), login).await;
        assert_eq!(code, StatusCode::OK, "{peer}: {body}");
    }
    // MQTT: the same rule at CONNECT.
    let directory = b.broker.as_ref().unwrap().directory().unwrap().clone();
    let auth = DirectoryAuthenticator::new(directory.clone(), &b.config.auth);
    let client_id = MqttStr::from("c");
    let connect = |peer: SocketAddr, password: &'static str| Credentials {
        client_id: &client_id,
        username: Some("admin"),
        password: Some(password.as_bytes()),
        peer,
        certificate: None,
    };
    let denied = auth.authenticate(connect(remote, "admin")).await;
    assert!(
        matches!(denied, AuthOutcome::Denied(ReasonCode::NOT_AUTHORIZED)),
        "{denied:?}"
    );
    assert!(matches!(
        auth.authenticate(connect(local, "admin")).await,
        AuthOutcome::Allowed(_)
    ));
    // Once changed, remote logins work.
    directory.set_password("admin", "a-new-admin-pw").unwrap();
    assert!(matches!(
        auth.authenticate(connect(remote, "a-new-admin-pw")).await,
        AuthOutcome::Allowed(_)
    ));
    let (code, body) = status(
        &app,
        "POST",
        "/api/login",
        Some(remote),
        r#"{"username":"admin","password":"a-new-admin-pw"}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    b.stop().await;
}
