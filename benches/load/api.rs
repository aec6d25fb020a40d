//! The admin API at scale: a directory of many users and roles written
//! into a stopped broker's store in a few transactions, and timings of
//! the API against the running broker (page reads, user creation next to
//! one argon2 hash, logins), plus the token a JWT connect storm uses.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

use gatehouse::identity::{
    Context, Effect, GrantMethod, GrantType, Operation, Permission, Role, User,
};
use gatehouse::store::IdentityTable;

/// Logs in through the API and returns the token.
pub async fn login(
    api: &str,
    username: &str,
    password: &str,
    hours: f64,
) -> anyhow::Result<String> {
    let reply: Value = reqwest::Client::new()
        .post(format!("{api}/api/login"))
        .json(&json!({"username": username, "password": password, "expireTimeInHours": hours, "label": "load"}))
        .send()
        .await
        .context("login request")?
        .json()
        .await?;
    reply["token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("login refused: {reply}"))
}

/// Writes `roles` roles (5 permissions each) and `users` users (each with
/// 2 of the roles, no password) straight into the store, 10,000 records a
/// transaction. Safe only on a stopped broker.
pub fn seed_directory(config_path: &Path, users: usize, roles: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = gatehouse::Config::load(config_path)?;
    // Opening once creates the built-in users and roles.
    let store = gatehouse::broker::open_store(&config)?;
    drop(gatehouse::broker::open_directory(&config, store.clone())?);
    let role_ids: Vec<String> = (0..roles)
        .map(|i| format!("{:032x}", 0xa000_0000u128 + i as u128))
        .collect();
    let mut records: Vec<(IdentityTable, String, Vec<u8>)> = Vec::new();
    for (i, id) in role_ids.iter().enumerate() {
        let role = Role {
            id: id.clone(),
            name: format!("scale-role-{i:04}"),
            permissions: (0..5)
                .map(|j| Permission {
                    resource: format!("site/{i}/line/{j}/#"),
                    operation: Operation::ReadWrite,
                    context: if j == 4 { Context::Http } else { Context::Mqtt },
                    effect: Effect::Allow,
                })
                .map(|mut p| {
                    if p.context == Context::Http {
                        p.resource = format!("/api/roles/{id}");
                    }
                    p
                })
                .collect(),
        };
        records.push((
            IdentityTable::Roles,
            role.id.clone(),
            serde_json::to_vec(&role)?,
        ));
    }
    let now = gatehouse::router::now_millis();
    for i in 0..users {
        let user = User {
            id: format!("{:032x}", 0xb000_0000_0000u128 + i as u128),
            username: format!("scale-user-{i:06}"),
            password_hash: None,
            password_generation: 0,
            grant_types: vec![GrantType {
                method: GrantMethod::Certificate,
                is_required: false,
            }],
            roles: if roles == 0 {
                Vec::new()
            } else {
                vec![
                    role_ids[i % roles].clone(),
                    role_ids[(i * 7 + 3) % roles].clone(),
                ]
            },
            permissions: Vec::new(),
            mqtt_publish_prefix: None,
            enabled: true,
            created_at: now,
            updated_at: now,
            certificates: Vec::new(),
        };
        records.push((
            IdentityTable::Users,
            user.id.clone(),
            serde_json::to_vec(&user)?,
        ));
    }
    for chunk in records.chunks(10_000) {
        let writes: Vec<(IdentityTable, &str, Option<&[u8]>)> = chunk
            .iter()
            .map(|(t, id, json)| (*t, id.as_str(), Some(json.as_slice())))
            .collect();
        store.put_identity_batch(&writes)?;
    }
    store.close();
    eprintln!(
        "seeded {users} users and {roles} roles in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn summary(name: &str, mut samples: Vec<Duration>) -> String {
    samples.sort();
    format!(
        "{name}_n={} {name}_p50_ms={:.3} {name}_p99_ms={:.3} {name}_max_ms={:.3}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        percentile(&samples, 1.0)
    )
}

/// Timings against a running broker: `GET /api/users` pages of 100 over
/// the whole directory, user creation (each one argon2 hash), and logins
/// from `workers` parallel clients for `login_secs`.
pub async fn bench(
    api: &str,
    password: &str,
    pages: usize,
    creates: usize,
    workers: usize,
    login_secs: f64,
) -> anyhow::Result<String> {
    let client = reqwest::Client::new();
    let token = login(api, "admin", password, 1.0).await?;
    let first: reqwest::Response = client
        .get(format!("{api}/api/users?rowsPerPage=1"))
        .bearer_auth(&token)
        .send()
        .await?;
    let total: usize = first
        .headers()
        .get("x-total-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let last_page = total.div_ceil(100).max(1);
    let mut page_times = Vec::with_capacity(pages);
    for i in 0..pages {
        // Spread over the directory, the last pages included.
        let page = 1 + (i * 7919) % last_page;
        let t = Instant::now();
        let r = client
            .get(format!("{api}/api/users?pageNumber={page}&rowsPerPage=100"))
            .bearer_auth(&token)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        page_times.push(t.elapsed());
        if !status.is_success() {
            bail!("page {page}: {status}");
        }
        if page < last_page && body.len() < 1000 {
            bail!("page {page} is nearly empty");
        }
    }
    // One argon2 hash, as the broker makes it, for comparison.
    let hash_started = Instant::now();
    let hashes = 5;
    for _ in 0..hashes {
        std::hint::black_box(gatehouse::identity::password::hash_password(
            "bench-password-1",
        ));
    }
    let hash_ms = hash_started.elapsed().as_secs_f64() * 1000.0 / hashes as f64;
    let mut create_times = Vec::with_capacity(creates);
    let run = std::process::id();
    for i in 0..creates {
        let t = Instant::now();
        let r = client
            .post(format!("{api}/api/users"))
            .bearer_auth(&token)
            .json(&json!({"username": format!("created-{run}-{i}"), "password": "bench-password-1",
                "roles": [], "initialPermissions": [{"resource": format!("c/{i}/#"), "operation": "read", "context": "mqtt"}]}))
            .send()
            .await?;
        create_times.push(t.elapsed());
        if r.status() != 201 {
            bail!("create {i}: {}", r.status());
        }
    }
    let mut sorted = create_times.clone();
    sorted.sort();
    let create_p50 = percentile(&sorted, 0.5);
    // The same without a password: everything a creation costs but the hash.
    let mut bare_times = Vec::with_capacity(creates);
    for i in 0..creates {
        let t = Instant::now();
        let r = client
            .post(format!("{api}/api/users"))
            .bearer_auth(&token)
            .json(&json!({"username": format!("bare-{run}-{i}"),
                "initialPermissions": [{"resource": format!("c/{i}/#"), "operation": "read", "context": "mqtt"}]}))
            .send()
            .await?;
        bare_times.push(t.elapsed());
        if r.status() != 201 {
            bail!("create without password {i}: {}", r.status());
        }
    }
    // Logins: every one verifies a password with argon2.
    let deadline = Instant::now() + Duration::from_secs_f64(login_secs);
    let mut tasks = Vec::new();
    for _ in 0..workers.max(1) {
        let (client, api, password) = (client.clone(), api.to_owned(), password.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let r = client
                    .post(format!("{api}/api/login"))
                    .json(&json!({"username": "admin", "password": password, "expireTimeInHours": 0.1}))
                    .send()
                    .await;
                if matches!(r, Ok(ref r) if r.status().is_success()) {
                    n += 1;
                }
            }
            n
        }));
    }
    let started = Instant::now();
    let mut logins = 0;
    for t in tasks {
        logins += t.await.unwrap_or(0);
    }
    let login_rate = logins as f64 / started.elapsed().as_secs_f64();
    Ok(format!(
        "users={total} {} {} {} create_minus_hash_p50_ms={:.3} hash_ms={hash_ms:.3} logins_per_sec={login_rate:.1} login_workers={workers}",
        summary("page", page_times),
        summary("create", create_times),
        summary("create_nopw", bare_times),
        create_p50 - hash_ms,
    ))
}
