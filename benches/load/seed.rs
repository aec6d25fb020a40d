//! Benchmark identities: a Gatehouse user holding an N-rule permission set
//! (written into a stopped broker's store), and the same rules as a
//! mosquitto ACL file.

use anyhow::{Context as _, bail};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gatehouse::identity::{Context, Directory, Effect, NewUser, Operation, Permission, Role};
use gatehouse::store::IdentityTable;

pub const ROLE: &str = "bench-rules";

/// The N patterns: `bench/r{i}/+/#` for i in 0..N-1, plus `bench/#` (the
/// one the scenarios' topics need), all readWrite.
pub fn patterns(rules: usize) -> Vec<String> {
    let mut out: Vec<String> = (0..rules.saturating_sub(1))
        .map(|i| format!("bench/r{i}/+/#"))
        .collect();
    out.push("bench/#".into());
    out
}

fn open(config: &gatehouse::Config) -> anyhow::Result<Arc<Directory>> {
    let store = gatehouse::broker::open_store(config).context("opening the store")?;
    Ok(gatehouse::broker::open_directory(config, store)?)
}

/// Creates role `bench-rules` with the N rules, user `user` holding it,
/// and `extra_users` more users `{user}-{j}` with the same role and
/// password (for connect storms that must miss the credential cache).
/// Existing ones are kept, so running it twice is harmless.
pub fn seed_gatehouse(
    config_path: &Path,
    user: &str,
    password: &str,
    rules: usize,
    extra_users: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = gatehouse::Config::load(config_path)?;
    let mut directory = open(&config)?;
    if directory.role(ROLE).is_none() {
        let role = directory.add_role(ROLE)?;
        // Directory::grant_role commits every permission durably and
        // rewrites the whole role each time (N fsyncs, O(N²) bytes), which
        // takes minutes for 10,000 rules; so the role record is written
        // once through the store, and the directory reopened to load it.
        let role = Role {
            permissions: patterns(rules)
                .into_iter()
                .map(|resource| Permission {
                    resource,
                    operation: Operation::ReadWrite,
                    context: Context::Mqtt,
                    effect: Effect::Allow,
                })
                .collect(),
            ..role
        };
        let json = serde_json::to_vec(&role)?;
        // Dropping the directory closes the store it held.
        drop(directory);
        let store = gatehouse::broker::open_store(&config)?;
        store.put_identity(IdentityTable::Roles, &role.id, Some(&json))?;
        drop(store);
        directory = open(&config)?;
        let loaded = directory.role(ROLE).map_or(0, |r| r.permissions.len());
        if loaded != rules.max(1) {
            bail!("role {ROLE} has {loaded} permissions after seeding, expected {rules}");
        }
    }
    let add = |directory: &Directory, name: String| -> anyhow::Result<()> {
        if directory.user(&name).is_some() {
            return Ok(());
        }
        directory
            .add_user(NewUser {
                username: name.clone(),
                password: Some(password.to_owned()),
                roles: vec![ROLE.to_owned()],
                ..NewUser::default()
            })
            .with_context(|| format!("adding user {name}"))?;
        Ok(())
    };
    add(&directory, user.to_owned())?;
    // argon2 hashing dominates: one thread per core.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let directory = &directory;
                let add = &add;
                scope.spawn(move || -> anyhow::Result<()> {
                    for j in (t..extra_users).step_by(threads) {
                        add(directory, format!("{user}-{j}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("seeding thread panicked")?;
        }
        Ok(())
    })?;
    let seeded = directory.user(user).context("user missing after seeding")?;
    let acl = directory.compile_acl(&seeded, "probe");
    println!(
        "seeded user={user} role={ROLE} rules={} compiled_rules={} extra_users={extra_users} secs={:.1}",
        rules.max(1),
        acl.rule_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The mosquitto ACL file for the same rules. `catchall_first` puts
/// `bench/#` first (mosquitto stops at the first matching line, so this is
/// its cheapest order); otherwise last (every check scans all N lines).
pub fn mosquitto_acl(user: &str, rules: usize, catchall_first: bool) -> String {
    let mut lines = patterns(rules);
    if catchall_first {
        lines.rotate_right(1);
    }
    let mut out = format!("user {user}\n");
    for p in lines {
        out.push_str("topic readwrite ");
        out.push_str(&p);
        out.push('\n');
    }
    out
}

/// Cost of `Directory::compile_acl` for the user as every CONNECT calls it
/// (with distinct client ids): average time per call and resident memory
/// per result (`copies` kept alive). Calls after the first may be hits of
/// the broker's ACL cache, which is what a CONNECT pays too.
pub fn acl_cost(config_path: &Path, user: &str, copies: usize) -> anyhow::Result<()> {
    let config = gatehouse::Config::load(config_path)?;
    let directory = open(&config)?;
    let u = directory.user(user).context("no such user")?;
    let rss = || crate::stats::rss_bytes(std::process::id()).unwrap_or(0);
    let before = rss();
    let started = Instant::now();
    let acls: Vec<_> = (0..copies.max(1))
        .map(|i| directory.compile_acl(&u, &format!("c{i}")))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let after = rss();
    println!(
        "acl_cost user={user} rules={} copies={} compile_us={:.0} rss_per_acl_bytes={:.0}",
        acls[0].rule_count(),
        acls.len(),
        secs * 1e6 / acls.len() as f64,
        after.saturating_sub(before) as f64 / acls.len() as f64
    );
    Ok(())
}
