//! CONNECT authentication cost: with a warm verified-credential cache
//! (the reconnecting-device case) and, for contrast, a full argon2 check.

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
        Arc::new(Directory::open(store, PasswordPolicy::default(), "admin", true).unwrap());
    directory
        .add_user(NewUser {
            username: "device".into(),
            password: Some("device-password".into()),
            ..NewUser::default()
        })
        .unwrap();
    let auth = DirectoryAuthenticator::new(directory, &config.auth);
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
