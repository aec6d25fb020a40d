//! OAuth client registration (`/api/oauth/clients`) as Integration Server
//! does it: defaults, every validation rule (422 naming the field), the
//! unique name and version, the secret shown once, the client's account
//! (created, removed and recreated with the type), HTTP permissions, the
//! audit log, and a deleted client's tokens revoked.

mod common;

use common::api::Api;
use common::oauth::*;
use common::users::login;
use common::*;
use gatehouse::protocol::{ProtocolVersion, ReasonCode};
use serde_json::json;

const CB: &str = "https://app.example/cb";

#[tokio::test]
async fn register_with_defaults_secret_once_and_account() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let r = admin
        .post(
            "/api/oauth/clients",
            json!({"name": "Billing App", "version": "1.0", "type": "confidential",
                "description": "invoices", "redirectUris": [CB]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let body = &r.body;
    assert_eq!(body["allowedGrants"], json!(["authorization_code"]));
    assert_eq!(body["tokenExpiration"], "global");
    assert_eq!(body["refreshCount"], 0);
    let id = body["clientId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let secret = body["clientSecret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 36);
    assert!(
        secret
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    // Never again: not in reads.
    let one = admin.get(&format!("/api/oauth/clients/{id}")).await;
    assert_eq!(one.status, 200);
    assert!(one.body.get("clientSecret").is_none(), "{}", one.body);
    assert!(!one.body.to_string().contains(&secret));
    let all = admin.get("/api/oauth/clients").await;
    assert_eq!(all.body.as_array().unwrap().len(), 1);
    // The account: named by the client id, the secret as its password.
    let users = admin.get(&format!("/api/users?username[eq]={id}")).await;
    assert_eq!(users.body[0]["id"], body["userId"]);
    let (_, ack) = login(b.addr(), ProtocolVersion::V5, "billing", &id, &secret).await;
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // The audit log has the registration, not the secret.
    let audit = admin.get("/api/audit").await.body.to_string();
    assert!(audit.contains("oauth.client.create"), "{audit}");
    assert!(!audit.contains(&secret));

    // Public: no secret, no account. Changing the type creates one (the
    // new secret answered once) or removes it.
    let p = admin
        .post(
            "/api/oauth/clients",
            json!({"name": "Billing App", "version": "2.0", "type": "public", "redirectUris": [CB]}),
        )
        .await;
    assert_eq!(p.status, 201, "{}", p.body);
    assert!(p.body.get("clientSecret").is_none() && p.body.get("userId").is_none());
    let pid = p.body["clientId"].as_str().unwrap().to_owned();
    let c = admin
        .put(
            &format!("/api/oauth/clients/{pid}"),
            json!({"type": "confidential"}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["clientSecret"].as_str().unwrap().len(), 36);
    let account = c.body["userId"].as_str().unwrap().to_owned();
    assert_eq!(
        admin.get(&format!("/api/users/{account}")).await.status,
        200
    );
    let c = admin
        .put(
            &format!("/api/oauth/clients/{pid}"),
            json!({"type": "public"}),
        )
        .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(c.body.get("userId").is_none());
    assert_eq!(
        admin.get(&format!("/api/users/{account}")).await.status,
        404
    );

    // Delete: the account and the tokens go with the client.
    let svc = confidential(&admin, "svc", CB, json!("never"), json!("unlimited")).await;
    let t = curl(&[
        "-u",
        &svc.basic(),
        "-d",
        "grant_type=client_credentials",
        &b.http_url("/oauth/token"),
    ])
    .await;
    let token = t.body["access_token"].as_str().unwrap().to_owned();
    assert!(
        t.body.get("expires_in").is_none(),
        "never expires: {}",
        t.body
    );
    let as_svc = admin.with_token(&token);
    assert_eq!(as_svc.get("/api/users/me").await.status, 200);
    assert_eq!(
        admin
            .delete(&format!("/api/oauth/clients/{}", svc.id))
            .await
            .status,
        204
    );
    assert_eq!(as_svc.get("/api/users/me").await.status, 401);
    let uid = svc.user_id.unwrap();
    assert_eq!(admin.get(&format!("/api/users/{uid}")).await.status, 404);
    assert_eq!(
        admin
            .get(&format!("/api/oauth/clients/{}", svc.id))
            .await
            .status,
        404
    );
    assert_eq!(
        admin
            .delete(&format!("/api/oauth/clients/{}", svc.id))
            .await
            .status,
        404
    );
    b.stop().await;
}

#[tokio::test]
async fn every_rule_is_a_422_naming_the_field() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    let base = json!({"name": "app", "version": "1", "type": "confidential", "redirectUris": [CB]});
    let with = |change: serde_json::Value| {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let cases = [
        (json!({"name": "a/b"}), "name"),
        (json!({"name": "a:b"}), "name"),
        (json!({"name": "a<b"}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"version": "1;2"}), "version"),
        (json!({"version": "x,y"}), "version"),
        (json!({"version": null}), "version"),
        (json!({"type": null}), "type"),
        (json!({"type": "secret"}), "type"),
        (json!({"allowedGrants": []}), "allowedGrants"),
        (json!({"allowedGrants": ["magic"]}), "allowedGrants"),
        (json!({"redirectUris": []}), "redirectUris"),
        (
            json!({"allowedGrants": ["implicit"], "redirectUris": []}),
            "redirectUris",
        ),
        (json!({"redirectUris": ["/relative"]}), "redirectUris"),
        (
            json!({"redirectUris": ["https://a/cb#frag"]}),
            "redirectUris",
        ),
        (
            json!({"type": "public", "allowedGrants": ["client_credentials"]}),
            "allowedGrants",
        ),
        (
            json!({"type": "public", "allowedGrants": ["authorization_code", "password"]}),
            "allowedGrants",
        ),
        (json!({"tokenExpiration": 0}), "tokenExpiration"),
        (
            json!({"tokenExpiration": 2_147_483_648u64}),
            "tokenExpiration",
        ),
        (json!({"tokenExpiration": "soon"}), "tokenExpiration"),
        (json!({"refreshCount": -1}), "refreshCount"),
        (json!({"refreshCount": 2_147_483_648u64}), "refreshCount"),
        (json!({"refreshCount": "many"}), "refreshCount"),
        (json!({"secret": "mine"}), "secret"),
    ];
    for (change, field) in cases {
        let r = admin.post("/api/oauth/clients", with(change.clone())).await;
        assert_eq!(r.status, 422, "{change}: {}", r.body);
        let message = r.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{change}: {message}");
    }
    // The limits themselves are fine; so is a client with no browser grant.
    let ok = with(
        json!({"name": "limits", "tokenExpiration": 2_147_483_647u64, "refreshCount": 2_147_483_647u64}),
    );
    assert_eq!(admin.post("/api/oauth/clients", ok).await.status, 201);
    let machine =
        with(json!({"name": "m", "allowedGrants": ["client_credentials"], "redirectUris": null}));
    assert_eq!(admin.post("/api/oauth/clients", machine).await.status, 201);
    // Name and version are unique together.
    let dup = admin.post("/api/oauth/clients", base.clone()).await;
    assert_eq!(dup.status, 201);
    let again = admin.post("/api/oauth/clients", base.clone()).await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "already_exists")
    );
    let other_version = admin
        .post("/api/oauth/clients", with(json!({"version": "2"})))
        .await;
    assert_eq!(other_version.status, 201);
    // A change breaking a rule is refused and changes nothing.
    let id = dup.body["clientId"].as_str().unwrap();
    let r = admin
        .put(&format!("/api/oauth/clients/{id}"), json!({"version": "2"}))
        .await;
    assert_eq!(r.status, 409);
    let r = admin
        .put(
            &format!("/api/oauth/clients/{id}"),
            json!({"type": "public", "allowedGrants": ["password"]}),
        )
        .await;
    assert_eq!(r.status, 422);
    let now = admin.get(&format!("/api/oauth/clients/{id}")).await.body;
    assert_eq!(now["type"], "confidential");
    let r = admin
        .put(
            &format!("/api/oauth/clients/{id}"),
            json!({"refreshCount": "unlimited", "tokenExpiration": "never"}),
        )
        .await;
    assert_eq!(
        (
            r.body["refreshCount"].as_str(),
            r.body["tokenExpiration"].as_str()
        ),
        (Some("unlimited"), Some("never"))
    );
    assert_eq!(
        admin.put("/api/oauth/clients/nope", json!({})).await.status,
        404
    );
    b.stop().await;
}

#[tokio::test]
async fn registration_needs_http_permissions() {
    let b = TestBroker::start().await;
    let admin = Api::login(b.http_addr(), "admin", "admin").await;
    admin
        .create_user(
            json!({"username": "viewer", "password": "viewer-pw", "initialPermissions": [
            {"resource": "/api/oauth/clients", "operation": "read", "context": "http"}]}),
        )
        .await;
    admin
        .create_user(json!({"username": "nobody", "password": "nobody-pw"}))
        .await;
    let viewer = Api::login(b.http_addr(), "viewer", "viewer-pw").await;
    let nobody = Api::login(b.http_addr(), "nobody", "nobody-pw").await;
    let body = json!({"name": "x", "version": "1", "type": "public", "redirectUris": [CB]});
    assert_eq!(viewer.get("/api/oauth/clients").await.status, 200);
    assert_eq!(
        viewer.post("/api/oauth/clients", body.clone()).await.status,
        403
    );
    assert_eq!(nobody.get("/api/oauth/clients").await.status, 403);
    assert_eq!(
        Api::new(b.http_addr())
            .get("/api/oauth/clients")
            .await
            .status,
        401
    );
    assert_eq!(admin.post("/api/oauth/clients", body).await.status, 201);
    b.stop().await;
}
