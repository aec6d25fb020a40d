//! The admin HTTP API through real clients: reqwest and curl against a
//! listening broker (login and `?apiToken=` as in Connectware's docs,
//! user and role life cycles, the 401/403 matrix over every documented
//! route, bad input, audit, rate limits), and in-process checks of the
//! route list against the OpenAPI document.

mod common;

use common::api::Api;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

async fn broker() -> TestBroker {
    TestBroker::start().await
}

#[tokio::test]
async fn curl_login_and_list_users_like_connectwares_docs() {
    let b = broker().await;
    let login = b.http_url("/api/login");
    let (status, out) = run_cmd(
        "curl",
        &[
            "-sS", "-X", "POST", &login, "-H", "accept: application/json",
            "-H", "Content-Type: application/json", "-d",
            r#"{"username": "admin", "password": "admin", "expireTimeInHours": 99999, "label": "test-token"}"#,
        ],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status, Some(0), "{out}");
    assert!(!out.is_empty());
    let token = serde_json::from_str::<Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = b.http_url(&format!("/api/users?apiToken={token}"));
    let (status, out) = run_cmd(
        "curl",
        &[
            "-sS",
            "--location",
            "--request",
            "GET",
            &users,
            "-w",
            "\n%{http_code}",
        ],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status, Some(0));
    let (body, code) = out.trim().rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    let users: Value = serde_json::from_str(body).unwrap();
    let admin = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "admin")
        .expect("admin listed");
    let tokens = admin["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["label"], "test-token");
    // 99999 hours from now, in milliseconds.
    let expires = tokens[0]["expiresAt"].as_u64().unwrap();
    let created = tokens[0]["createdAt"].as_u64().unwrap();
    assert!(
        (expires - created) / 3_600_000 >= 99_998,
        "{expires} {created}"
    );
    assert_eq!(admin["roles"][0]["name"], "gatehouse-admin");
    assert_eq!(admin["mfa_is_enrolled"], false);
    // Nothing with a token in it may be cached.
    let (_, out) = run_cmd(
        "curl",
        &[
            "-sS",
            "-i",
            "-X",
            "POST",
            &login,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"username": "admin", "password": "admin"}"#,
        ],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        out.to_ascii_lowercase().contains("cache-control: no-store"),
        "{out}"
    );
    // Without a token: 401 with the error body.
    let (_, out) = run_cmd(
        "curl",
        &["-sS", &b.http_url("/api/users"), "-w", "\n%{http_code}"],
        Duration::from_secs(20),
    )
    .await;
    assert!(out.trim().ends_with("401"), "{out}");
    assert!(out.contains(r#""error":"unauthorized""#), "{out}");
    b.stop().await;
}

#[tokio::test]
async fn user_and_role_life_cycle() {
    let b = broker().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let sensor = json!({"resource": "sensors/+/temp", "operation": "read", "context": "mqtt"});
    let role = admin
        .create_role(json!({"name": "readers", "permissions": [sensor]}))
        .await;
    // A duplicate permission is refused as Connectware does.
    let dup = admin
        .post(&format!("/api/roles/{role}/permissions"), sensor.clone())
        .await;
    assert_eq!(
        (dup.status.as_u16(), dup.code()),
        (409, "permission_already_declared")
    );
    assert!(
        dup.body["message"]
            .as_str()
            .unwrap()
            .contains("permission already declared")
    );
    let added = admin
        .post(
            &format!("/api/roles/{role}/permissions"),
            json!({"resource": "cmd/#", "operation": "write", "context": "mqtt"}),
        )
        .await;
    assert_eq!(added.status, 201);
    let cmd_id = added.body["id"].as_str().unwrap().to_owned();
    // copyFrom copies the permissions.
    let copy = admin
        .post("/api/roles", json!({"name": "readers-2", "copyFrom": role}))
        .await;
    assert_eq!(copy.status, 201);
    assert_eq!(copy.body["permissions"].as_array().unwrap().len(), 2);
    let by_name = admin.get("/api/roles?name[eq]=readers-2").await;
    assert_eq!(by_name.body.as_array().unwrap().len(), 1);
    assert_eq!(by_name.body[0]["id"], copy.body["id"]);

    // Connectware's full create body.
    let user = admin
        .create_user(json!({
            "username": "device-1", "password": "secret-1", "autoGenerated": false,
            "mqttPublishPrefix": "plant/", "identityProvider": "local",
            "grantTypes": [{"method": "password", "isRequired": false}], "certificates": [],
            "initialPermissions": [{"resource": "plant/#", "operation": "write", "context": "mqtt"}],
            "roles": [role], "enforceMFAEnrollment": false,
        }))
        .await;
    let got = admin.get(&format!("/api/users/{user}")).await;
    assert_eq!(got.status, 200);
    let u = &got.body;
    assert_eq!(u["username"], "device-1");
    assert_eq!(u["mqttPublishPrefix"], "plant/");
    assert_eq!(u["identityProvider"], "local");
    assert_eq!(u["roles"][0]["name"], "readers");
    assert_eq!(u["roles"][0]["permissions"].as_array().unwrap().len(), 2);
    assert_eq!(u["permissions"][0]["resource"], "plant/#");
    assert_eq!(u["enforceMFAEnrollment"], false);
    assert!(u.get("passwordHash").is_none() && !got.body.to_string().contains("argon2"));
    // Same name again: 409. Other providers: 422 until SSO exists.
    let again = admin
        .post("/api/users", json!({"username": "device-1"}))
        .await;
    assert_eq!(again.status, 409);
    let ldap = admin
        .post(
            "/api/users",
            json!({"username": "ldap-1", "identityProvider": "ldap"}),
        )
        .await;
    assert_eq!((ldap.status.as_u16(), ldap.code()), (422, "invalid_field"));
    // Filter and pages.
    let filtered = admin.get("/api/users?username[eq]=device-1").await;
    assert_eq!(filtered.body.as_array().unwrap().len(), 1);
    assert_eq!(filtered.headers["x-total-count"], "1");
    let page = admin.get("/api/listUsers?pageNumber=1&rowsPerPage=2").await;
    assert_eq!(page.body["users"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["pagination"]["totalRows"], 3); // admin, anonymous, device-1
    assert_eq!(page.body["pagination"]["totalPages"], 2);
    let too_many = admin.get("/api/listUsers?rowsPerPage=101").await;
    assert_eq!(too_many.status, 422);
    // Own permissions: add (409 on duplicate), remove.
    let p = json!({"resource": "plant/extra", "operation": "read", "context": "mqtt"});
    let added = admin
        .post(&format!("/api/users/{user}/permissions"), p.clone())
        .await;
    assert_eq!(added.status, 201);
    let dup = admin
        .post(&format!("/api/users/{user}/permissions"), p)
        .await;
    assert_eq!(dup.status, 409);
    let pid = added.body["id"].as_str().unwrap();
    let removed = admin
        .delete(&format!("/api/users/{user}/permissions/{pid}"))
        .await;
    assert_eq!(removed.status, 204);
    // Update: prefix removed, disabled, role list replaced.
    let updated = admin
        .put(
            &format!("/api/users/{user}"),
            json!({"mqttPublishPrefix": null, "enabled": false, "roles": [copy.body["id"]]}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["mqttPublishPrefix"], Value::Null);
    assert_eq!(updated.body["enabled"], false);
    assert_eq!(updated.body["roles"][0]["name"], "readers-2");
    // A disabled user cannot log in.
    let refused = Api::new(b.http_addr())
        .post(
            "/api/login",
            json!({"username": "device-1", "password": "secret-1"}),
        )
        .await;
    assert_eq!(
        (refused.status.as_u16(), refused.code()),
        (403, "user_disabled")
    );
    // Role permission removal, rename, delete (and gone from the user).
    let r = admin
        .delete(&format!("/api/roles/{role}/permissions/{cmd_id}"))
        .await;
    assert_eq!(r.status, 204);
    let renamed = admin
        .put(&format!("/api/roles/{role}"), json!({"name": "viewers"}))
        .await;
    assert_eq!(renamed.body["name"], "viewers");
    assert_eq!(renamed.body["permissions"].as_array().unwrap().len(), 1);
    let copy_id = copy.body["id"].as_str().unwrap();
    assert_eq!(
        admin.delete(&format!("/api/roles/{copy_id}")).await.status,
        204
    );
    let u = admin.get(&format!("/api/users/{user}")).await;
    assert!(u.body["roles"].as_array().unwrap().is_empty());
    // Every permission with its source.
    let all = admin.get("/api/permissions").await;
    assert!(all.body["permissions"].as_array().unwrap().iter().any(|p| {
        p["source"]["type"] == "role"
            && p["source"]["name"] == "viewers"
            && p["resource"] == "sensors/+/temp"
    }));
    assert_eq!(
        admin.delete(&format!("/api/users/{user}")).await.status,
        204
    );
    assert_eq!(admin.get(&format!("/api/users/{user}")).await.status, 404);
    // The audit log saw it all, with who and from where.
    let audit = admin.get("/api/audit?rowsPerPage=100").await;
    let entries = audit.body["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "role.create",
        "role.permission.add",
        "user.create",
        "user.update",
        "user.delete",
        "role.delete",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert_eq!(entries[0]["action"], "user.delete", "newest first");
    assert_eq!(entries[0]["actor"], "admin");
    assert_eq!(entries[0]["address"], "127.0.0.1");
    b.stop().await;
}

#[tokio::test]
async fn self_service_and_password_change() {
    let b = broker().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let id = admin
        .create_user(json!({"username": "carol", "password": "carol-pw"}))
        .await;
    let carol = Api::login(b.http_addr(), "carol", "carol-pw").await;
    // Reads itself, by id and as `me`; nobody else.
    assert_eq!(carol.get("/api/users/me").await.body["id"], id);
    assert_eq!(carol.get(&format!("/api/users/{id}")).await.status, 200);
    let admin_id = admin.get("/api/users/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = carol.get(&format!("/api/users/{admin_id}")).await;
    assert_eq!((other.status.as_u16(), other.code()), (403, "forbidden"));
    assert_eq!(carol.get("/api/users").await.status, 403);
    // Own password: the old one is needed and checked.
    let no_old = carol
        .put(
            "/api/users/me/password",
            json!({"newPassword": "carol-pw2"}),
        )
        .await;
    assert_eq!(no_old.status, 422);
    let wrong = carol
        .put(
            "/api/users/me/password",
            json!({"oldPassword": "nope", "newPassword": "carol-pw2"}),
        )
        .await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.code()),
        (403, "wrong_password")
    );
    let weak = carol
        .put(
            "/api/users/me/password",
            json!({"oldPassword": "carol-pw", "newPassword": "ab"}),
        )
        .await;
    assert_eq!(
        (weak.status.as_u16(), weak.code()),
        (422, "password_policy")
    );
    let ok = carol
        .put(
            "/api/users/me/password",
            json!({"oldPassword": "carol-pw", "newPassword": "carol-pw2"}),
        )
        .await;
    assert_eq!(ok.status, 204);
    Api::login(b.http_addr(), "carol", "carol-pw2").await;
    // An administrator needs no old password.
    let set = admin
        .put(
            &format!("/api/users/{id}/password"),
            json!({"newPassword": "carol-pw3"}),
        )
        .await;
    assert_eq!(set.status, 204);
    Api::login(b.http_addr(), "carol", "carol-pw3").await;
    // Carol may not change someone else's password.
    let foreign = carol
        .put(
            &format!("/api/users/{admin_id}/password"),
            json!({"oldPassword": "x", "newPassword": "y1234"}),
        )
        .await;
    assert_eq!(foreign.status, 403);
    b.stop().await;
}

/// Every documented operation: 401 without a token (or with a bad one),
/// 403 for a user without permissions (but for one's own routes), never
/// 401/403 for the administrator.
#[tokio::test]
async fn unauthorized_and_forbidden_matrix_over_every_route() {
    let b = broker().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(json!({"username": "nobody", "password": "nobody-pw"}))
        .await;
    let nobody = Api::login(b.http_addr(), "nobody", "nobody-pw").await;
    let anonymous = Api::new(b.http_addr());
    let garbage = anonymous.with_token("eyJhbGciOiJFUzI1NiJ9.e30.AAAA");
    let doc = anonymous.get("/api/openapi.json").await.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let public: BTreeSet<(&str, &str)> = [
        ("POST", "/api/login"),
        ("GET", "/api/health"),
        ("GET", "/api/openapi.json"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/api/client-registry/register"),
    ]
    .into();
    let own: BTreeSet<(&str, &str)> = [
        ("GET", "/api/users/me"),
        ("POST", "/api/mfa/enroll"),
        ("POST", "/api/mfa/confirm"),
        ("POST", "/api/mfa/disable"),
        ("POST", "/api/mfa/backup-codes"),
    ]
    .into();
    // The OAuth protocol endpoints take no Bearer token: clients and users
    // authenticate themselves there (tests/oauth_*.rs). Nor does the admin
    // page's own routes (sign-in by form or link, tests/admin_page.rs).
    let oauth = |path: &str| {
        path.starts_with("/oauth/")
            || path.ends_with("/oauth-authorization-server")
            || path == "/admin"
            || path.starts_with("/admin/")
    };
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            let method = method.to_uppercase();
            if oauth(path) {
                continue;
            }
            let concrete = path
                .replace("{id}", "someone-else")
                .replace("{permissionId}", "p1")
                .replace("{roleId}", "r1")
                .replace("{fingerprint}", "f1");
            let body = (method == "POST" || method == "PUT").then(|| json!({}));
            let key = (method.as_str(), path.as_str());
            for (who, api) in [("none", &anonymous), ("garbage", &garbage)] {
                let r = api.call(&method, &concrete, body.clone()).await;
                if public.contains(&key) {
                    assert_ne!(r.status, 401, "{who} {method} {path}");
                } else {
                    assert_eq!(r.status, 401, "{who} {method} {path}: {}", r.body);
                    assert!(r.headers.contains_key("www-authenticate"));
                }
            }
            let r = nobody.call(&method, &concrete, body.clone()).await;
            if public.contains(&key) || own.contains(&key) {
                assert!(
                    r.status != 401 && r.status != 403,
                    "nobody {method} {path}: {}",
                    r.body
                );
            } else {
                assert_eq!(
                    (r.status.as_u16(), r.code()),
                    (403, "forbidden"),
                    "nobody {method} {path}"
                );
            }
            let r = admin.call(&method, &concrete, body).await;
            assert!(
                r.status != 401 && r.status != 403,
                "admin {method} {path}: {}",
                r.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations documented");
    b.stop().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let b = TestBroker::start_with(|c| c.http.body_limit_bytes = 4096).await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let url = b.http_url("/api/users");
    let token = admin.token.clone().unwrap();
    let send = |body: Vec<u8>, content_type: &'static str| {
        let (client, url, token) = (admin.client.clone(), url.clone(), token.clone());
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = send(b"{not json".to_vec(), "application/json").await;
    assert_eq!((status, body["error"].as_str().unwrap()), (400, "bad_json"));
    let (status, body) = send(
        br#"{"username":"abc","color":"red"}"#.to_vec(),
        "application/json",
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().contains("color"),
        "{body}"
    );
    let (status, body) = send(br#"{"username":5}"#.to_vec(), "application/json").await;
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().contains("username"),
        "{body}"
    );
    let (status, body) = send(br#"{"username":"abc"}"#.to_vec(), "text/plain").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (415, "unsupported_media_type")
    );
    let big = format!(r#"{{"username":"{}"}}"#, "x".repeat(10_000));
    let (status, body) = send(big.into_bytes(), "application/json").await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (413, "payload_too_large")
    );
    let (status, _) = send(b"[]".to_vec(), "application/json").await;
    assert_eq!(status, 422);
    let (status, _) = send(vec![0xff, 0xfe, 0x00], "application/json").await;
    assert_eq!(status, 400);
    // Wrong credentials, unknown user: the same answer.
    let anon = Api::new(b.http_addr());
    let wrong = anon
        .post(
            "/api/login",
            json!({"username": "admin", "password": "nope"}),
        )
        .await;
    let unknown = anon
        .post(
            "/api/login",
            json!({"username": "ghost", "password": "nope"}),
        )
        .await;
    assert_eq!(
        (wrong.status.as_u16(), wrong.code()),
        (401, "invalid_credentials")
    );
    assert_eq!(unknown.body, wrong.body);
    let lifetime = anon
        .post(
            "/api/login",
            json!({"username": "admin", "password": "admin", "expireTimeInHours": -1}),
        )
        .await;
    assert_eq!(lifetime.status, 422);
    // Odd paths and queries.
    assert_eq!(admin.get("/api/users/%ff%fe").await.code(), "bad_path");
    assert_eq!(admin.get("/api/users?pageNumber=abc").await.status, 400);
    assert_eq!(admin.get("/api/users?pageNumber=0").await.status, 422);
    assert_eq!(admin.get("/api/nothing").await.code(), "no_route");
    b.stop().await;
}

#[tokio::test]
async fn login_is_rate_limited_per_user() {
    let b = TestBroker::start_with(|c| c.http.rate_per_user_per_minute = 3).await;
    let anon = Api::new(b.http_addr());
    for _ in 0..3 {
        let r = anon
            .post(
                "/api/login",
                json!({"username": "admin", "password": "bad"}),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    let r = anon
        .post(
            "/api/login",
            json!({"username": "admin", "password": "admin"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (429, "rate_limited"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Another user is not affected.
    let other = anon
        .post(
            "/api/login",
            json!({"username": "anonymous", "password": "x"}),
        )
        .await;
    assert_eq!(other.status, 401);
    b.stop().await;
}

#[tokio::test]
async fn concurrent_changes_to_one_user_are_all_kept() {
    let b = broker().await;
    let admin = std::sync::Arc::new(Api::login(b.http_addr(), "admin", "admin").await);
    let id = admin
        .create_user(json!({"username": "busy", "password": "busy-pw"}))
        .await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (admin, id) = (admin.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let p = json!({"resource": format!("t/{i}"), "operation": "read", "context": "mqtt"});
            let r = admin.post(&format!("/api/users/{id}/permissions"), p).await;
            assert_eq!(r.status, 201, "{}", r.body);
            let r = admin
                .put(
                    &format!("/api/users/{id}"),
                    json!({"mqttPublishPrefix": format!("p{i}/")}),
                )
                .await;
            assert_eq!(r.status, 200);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let user = admin.get(&format!("/api/users/{id}")).await.body;
    assert_eq!(user["permissions"].as_array().unwrap().len(), 20, "{user}");
    b.stop().await;
}

#[tokio::test]
async fn https_listener_uses_the_broker_certificate() {
    let b =
        TestBroker::start_with(|c| c.listeners.https = Some("127.0.0.1:0".parse().unwrap())).await;
    let addr = b.broker.as_ref().unwrap().https_addr.unwrap();
    let ca = b.dir.path().join("certs/ca.crt");
    let url = format!("https://localhost:{}/api/health", addr.port());
    let (status, out) = run_cmd(
        "curl",
        &[
            "-sS",
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("localhost:{}:127.0.0.1", addr.port()),
            &url,
        ],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(status, Some(0), "{out}");
    assert!(out.contains(r#""status":"ok""#), "{out}");
    b.stop().await;
}

#[tokio::test]
async fn jwks_verifies_issued_tokens() {
    let b = broker().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(
        Api::new(b.http_addr())
            .get("/.well-known/jwks.json")
            .await
            .body,
    )
    .unwrap();
    let token = admin.token.clone().unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["gatehouse"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["username"], "admin");
    for claim in ["iss", "sub", "iat", "exp", "jti"] {
        assert!(claims.get(claim).is_some(), "{claim}");
    }
    // No permissions inside: they are read on each request.
    assert!(claims.get("permissions").is_none() && claims.get("roles").is_none());
    b.stop().await;
}

#[tokio::test]
async fn http_permissions_match_paths_with_wildcards_and_deny() {
    let b = broker().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let admin_id = admin.get("/api/users/me").await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let role = admin
        .create_role(json!({"name": "user-readers", "permissions": [
            {"resource": "/api/users/+", "operation": "read", "context": "http"},
            {"resource": format!("/api/users/{admin_id}"), "operation": "read", "context": "http", "effect": "deny"}]}))
        .await;
    admin
        .create_user(json!({"username": "reader", "password": "reader-pw", "roles": [role]}))
        .await;
    let reader = Api::login(b.http_addr(), "reader", "reader-pw").await;
    let other = admin
        .create_user(json!({"username": "other", "password": "other-pw"}))
        .await;
    assert_eq!(reader.get(&format!("/api/users/{other}")).await.status, 200);
    // `+` matches one level only; the deny wins, also when percent-encoded.
    assert_eq!(
        reader
            .get(&format!("/api/users/{other}/tokens"))
            .await
            .status,
        403
    );
    assert_eq!(
        reader.get(&format!("/api/users/{admin_id}")).await.status,
        403
    );
    let encoded: String = admin_id.bytes().map(|b| format!("%{b:02x}")).collect();
    assert_eq!(
        reader.get(&format!("/api/users/{encoded}")).await.status,
        403
    );
    // read does not grant write.
    let r = reader
        .put(&format!("/api/users/{other}"), json!({"enabled": false}))
        .await;
    assert_eq!(r.status, 403);
    // A permission change applies to the next request of the same token.
    let perms = admin
        .get(&format!("/api/roles/{role}/permissions"))
        .await
        .body;
    let allow = perms
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["resource"] == "/api/users/+")
        .unwrap();
    let allow_id = allow["id"].as_str().unwrap();
    admin
        .delete(&format!("/api/roles/{role}/permissions/{allow_id}"))
        .await;
    assert_eq!(reader.get(&format!("/api/users/{other}")).await.status, 403);
    // Nobody deletes or disables themselves by accident.
    let me = format!("/api/users/{admin_id}");
    assert_eq!(admin.delete(&me).await.status, 409);
    assert_eq!(admin.put(&me, json!({"enabled": false})).await.status, 409);
    b.stop().await;
}

/// `me` stands for the caller's id when permissions are checked: a deny
/// on one's own id cannot be dodged by writing `me` instead.
#[tokio::test]
async fn me_cannot_dodge_a_deny_on_ones_own_id() {
    let b = broker().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let id = admin
        .create_user(json!({"username": "manager", "password": "manager-pw"}))
        .await;
    let allow = json!({"resource": "/api/users/#", "operation": "readWrite", "context": "http"});
    let deny = json!({"resource": format!("/api/users/{id}/#"), "operation": "write", "context": "http", "effect": "deny"});
    let deny_self = json!({"resource": format!("/api/users/{id}"), "operation": "write", "context": "http", "effect": "deny"});
    for p in [allow, deny, deny_self] {
        let r = admin.post(&format!("/api/users/{id}/permissions"), p).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let manager = Api::login(b.http_addr(), "manager", "manager-pw").await;
    for path in [
        "/api/users/me/permissions",
        &format!("/api/users/{id}/permissions"),
    ] {
        let body = json!({"resource": "#", "operation": "readWrite", "context": "mqtt"});
        let r = manager.post(path, body).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    let r = manager
        .put(&format!("/api/users/{id}"), json!({"enabled": true}))
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    b.stop().await;
}
