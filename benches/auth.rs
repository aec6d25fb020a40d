//! CONNECT authentication cost: with a warm verified-credential cache
//! (the reconnecting-device case), with an API token as the password
//! (verified once, then from the verified-token cache), the token's
//! signature check alone, and, for contrast, a full argon2 check.

use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;

use gatehouse::auth::{AuthOutcome, Authenticator, Credentials, DirectoryAuthenticator};
use gatehouse::identity::{Directory, NewUser, PasswordPolicy};
use gatehouse::{Config, broker};

#[path = "alloc_counter.rs"]
mod alloc_counter;

#[global_allocator]
static GLOBAL: alloc_counter::Counting = alloc_counter::Counting;

fn bench_auth(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.storage.dir = dir.path().join("data");
    let _guard = runtime.enter();
    let store = broker::open_store(&config).unwrap();
    let directory =
        Arc::new(Directory::open(store.clone(), PasswordPolicy::default(), "admin", true).unwrap());
    directory
        .add_user(NewUser {
            username: "device".into(),
            password: Some("device-password".into()),
            ..NewUser::default()
        })
        .unwrap();
    let auth = DirectoryAuthenticator::new(directory.clone(), &config.auth);
    let tokens = Arc::new(
        gatehouse::identity::tokens::TokenService::open(dir.path(), "gatehouse", store, |_| true)
            .unwrap(),
    );
    auth.accept_tokens(tokens.clone());
    let device = directory.user("device").unwrap();
    let (token, _) = tokens
        .issue(&device, std::time::Duration::from_secs(3600), None, None)
        .unwrap();
    let token: &'static [u8] = Box::leak(token.into_bytes().into_boxed_slice());
    let peer = "127.0.0.1:5000".parse().unwrap();
    let client_id = gatehouse::protocol::MqttStr::from("device-1".to_owned());
    let attempt = |password: &'static [u8]| Credentials {
        client_id: &client_id,
        username: Some("device"),
        password: Some(password),
        peer,
        certificate: None,
    };
    let check = |outcome: AuthOutcome| assert!(matches!(outcome, AuthOutcome::Allowed(_)));
    // Warm the cache.
    check(runtime.block_on(auth.authenticate(attempt(b"device-password"))));

    alloc_counter::report("auth/connect_cached", 1000, || {
        check(runtime.block_on(auth.authenticate(attempt(b"device-password"))))
    });
    c.bench_function("auth/connect_cached", |b| {
        b.iter(|| check(runtime.block_on(auth.authenticate(attempt(b"device-password")))))
    });
    check(runtime.block_on(auth.authenticate(attempt(token))));
    alloc_counter::report("auth/connect_token", 1000, || {
        check(runtime.block_on(auth.authenticate(attempt(token))))
    });
    c.bench_function("auth/connect_token", |b| {
        b.iter(|| check(runtime.block_on(auth.authenticate(attempt(token)))))
    });
    // What a token not yet in the verified-token cache costs on top: the
    // ES256 signature and claims check.
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(tokens.jwks()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwks.keys[0]).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["gatehouse"]);
    let text = std::str::from_utf8(token).unwrap();
    c.bench_function("auth/token_es256_verify", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<serde_json::Value>(text, &key, &validation).unwrap();
        })
    });
    let mut group = c.benchmark_group("auth");
    group.sample_size(10);
    group.bench_function("argon2_verify", |b| {
        let hash = gatehouse::identity::password::hash_password("device-password");
        b.iter(|| {
            assert!(gatehouse::identity::password::verify_password(
                b"device-password",
                &hash
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_auth);
criterion_main!(benches);
