//! Load generator for MQTT brokers (Gatehouse, mosquitto, any 3.1.1 broker).
//!
//! ```sh
//! cargo run --release --example load -- --broker-pid PID --duration 10 fanin_qos0 qos1
//! cargo run --release --example load -- seed-gatehouse --config broker.toml \
//!     --user bench --password benchpw --rules 10000
//! cargo run --release --example load -- seed-mosquitto-acl --user bench --rules 10000 > acl.conf
//! ```
//!
//! Prints one line per scenario, `scenario=NAME key=value ...`; `rate` is
//! events per wall second, `broker_cpu`/`tool_cpu` are CPU seconds per wall
//! second over the measured interval, `per_broker_cpu_sec` is events per
//! broker CPU second. Every scenario is bounded in time and in count and
//! talks to the given address only (use loopback).

mod api;
mod common;
mod conn;
mod connections;
mod mqtt;
mod scenarios;
mod seed;
mod stats;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{Ctx, Knobs, Qos1Sub};
use conn::Target;

const SCENARIOS: &[&str] = &[
    "fanin_qos0",
    "qos1",
    "p2p_qos1",
    "fanout",
    "latency",
    "connstorm",
    "connstorm_repeat",
    "connstorm_token",
    "idle",
    "idle_storm",
];

#[derive(Parser)]
#[command(
    name = "load",
    about = "MQTT 3.1.1 load generator",
    args_conflicts_with_subcommands = true,
    after_help = "Scenarios: fanin_qos0 qos1 p2p_qos1 fanout latency connstorm connstorm_repeat connstorm_token idle idle_storm (or all)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenarios to run, in order.
    scenarios: Vec<String>,
    /// Broker address (loopback).
    #[arg(long, default_value = "127.0.0.1:1883")]
    host: SocketAddr,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// Broker process id: its CPU (/proc/PID/stat) and RSS (/proc/PID/status) are sampled.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Measured seconds per scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before each measured interval.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Payload bytes per message (latency uses the first 8 for a timestamp).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Publishers of fanin_qos0 and qos1.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Subscribers of fanout.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publisher/subscriber pairs of p2p_qos1.
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// QoS 1 messages in flight per publisher (qos1, p2p_qos1 end to end).
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// QoS 0 messages published but not yet delivered, all fanin publishers
    /// together. Large enough to hide the round trip; larger backlogs only
    /// measure how a broker copes with a deep queue.
    #[arg(long, default_value_t = 4_000)]
    qos0_window: u64,
    /// Messages the fanout publisher may be ahead of the average subscriber.
    #[arg(long, default_value_t = 64)]
    fanout_window: u64,
    /// QoS 0 messages per write of a fan-in/fan-out publisher.
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// Messages per second of latency.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// QoS of latency (0 or 1).
    #[arg(long, default_value_t = 0)]
    latency_qos: u8,
    /// The subscriber of qos1.
    #[arg(long, value_enum, default_value_t = Qos1Sub::Persistent)]
    qos1_sub: Qos1Sub,
    /// Parallel workers of connstorm and connstorm_repeat.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// connstorm cycles through users USERNAME-0..K-1 (same password) so
    /// no login repeats; 0 uses --username for every connect.
    #[arg(long, default_value_t = 0)]
    storm_users: usize,
    /// Connections of idle.
    #[arg(long, default_value_t = 10_000)]
    conns: usize,
    /// Parallel connects when opening many connections (idle, fanout).
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// Upper bound on the seconds idle spends connecting.
    #[arg(long, default_value_t = 180)]
    idle_connect_secs: u64,
    /// Stop opening connections when the broker's RSS passes this (MiB).
    #[arg(long, default_value_t = 6144)]
    max_broker_rss_mb: u64,
    /// Count bound: messages (or connects) per scenario.
    #[arg(long, default_value_t = 200_000_000)]
    max_msgs: u64,
    /// Keep alive sent in CONNECT (seconds).
    #[arg(long, default_value_t = 1200)]
    keep_alive: u16,
    /// Gatehouse's admin API, where connstorm_token logs in for its token.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Tokio worker threads of the tool.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Create the benchmark user with an N-rule permission set in a STOPPED Gatehouse's store.
    SeedGatehouse {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value_t = 10_000)]
        rules: usize,
        /// Also create USER-0..K-1 (same role and password), for connstorm --storm-users.
        #[arg(long, default_value_t = 0)]
        extra_users: usize,
    },
    /// Print mosquitto ACL file lines for the same rules.
    SeedMosquittoAcl {
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 10_000)]
        rules: usize,
        /// Put the catch-all `bench/#` last (every check scans all lines) instead of first.
        #[arg(long)]
        catchall_last: bool,
    },
    /// Write many users and roles into a STOPPED Gatehouse's store (admin API scale).
    SeedDirectory {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 1_000)]
        roles: usize,
    },
    /// Time the admin API of a running Gatehouse: user pages, user creation, logins.
    ApiBench {
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        /// The `admin` password.
        #[arg(long, default_value = "admin")]
        password: String,
        #[arg(long, default_value_t = 2000)]
        pages: usize,
        #[arg(long, default_value_t = 50)]
        creates: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long, default_value_t = 10.0)]
        login_secs: f64,
    },
    /// Time and memory per `Directory::compile_acl` for USER, as each Gatehouse CONNECT calls it
    /// (the first call compiles; later ones may be ACL-cache hits).
    AclCost {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        user: String,
        #[arg(long, default_value_t = 100)]
        copies: usize,
    },
}

/// Raises the soft open-files limit to the hard one (idle needs ~N fds).
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::SeedGatehouse {
            config,
            user,
            password,
            rules,
            extra_users,
        }) => return seed::seed_gatehouse(config, user, password, *rules, *extra_users),
        Some(Command::SeedMosquittoAcl {
            user,
            rules,
            catchall_last,
        }) => {
            print!("{}", seed::mosquitto_acl(user, *rules, !catchall_last));
            return Ok(());
        }
        Some(Command::AclCost {
            config,
            user,
            copies,
        }) => return seed::acl_cost(config, user, *copies),
        Some(Command::SeedDirectory {
            config,
            users,
            roles,
        }) => return api::seed_directory(config, *users, *roles),
        Some(Command::ApiBench {
            api,
            password,
            pages,
            creates,
            workers,
            login_secs,
        }) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(cli.threads.max(1))
                .enable_all()
                .build()?;
            let line = runtime.block_on(api::bench(
                api,
                password,
                *pages,
                *creates,
                *workers,
                *login_secs,
            ))?;
            println!("scenario=api {line}");
            return Ok(());
        }
        None => {}
    }
    let mut scenarios = Vec::new();
    for s in &cli.scenarios {
        if s == "all" {
            scenarios.extend(SCENARIOS.iter().map(|s| s.to_string()));
        } else if SCENARIOS.contains(&s.as_str()) {
            scenarios.push(s.clone());
        } else {
            bail!("unknown scenario `{s}`; known: {}", SCENARIOS.join(" "));
        }
    }
    if scenarios.is_empty() {
        bail!("name at least one scenario: {}", SCENARIOS.join(" "));
    }
    if !cli.host.ip().is_loopback() {
        bail!("--host must be a loopback address (this tool only loads local brokers)");
    }
    if !(cli.duration > 0.0 && cli.duration <= 3600.0) {
        bail!("--duration must be in (0, 3600]");
    }
    let nofile = raise_nofile();
    if scenarios.iter().any(|s| s.starts_with("idle")) && (nofile as usize) < cli.conns + 64 {
        bail!(
            "idle needs {} open files but the limit is {nofile}",
            cli.conns + 64
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let failed = runtime.block_on(run(&cli, scenarios));
    runtime.shutdown_timeout(Duration::from_secs(2));
    if failed > 0 {
        // The failing lines are printed already; no backtrace needed.
        eprintln!("{failed} scenario(s) failed");
        std::process::exit(1);
    }
    Ok(())
}

async fn run(cli: &Cli, scenarios: Vec<String>) -> usize {
    let ctx = Ctx {
        target: Target {
            addr: cli.host,
            username: cli.username.clone(),
            password: cli.password.clone(),
            keep_alive: cli.keep_alive,
        },
        broker_pid: cli.broker_pid,
        duration: Duration::from_secs_f64(cli.duration),
        warmup: Duration::from_secs_f64(cli.warmup.max(0.0)),
        payload: (0..cli.payload).map(|i| b'a' + (i % 26) as u8).collect(),
        knobs: Knobs {
            publishers: cli.publishers.max(1),
            subscribers: cli.subscribers.max(1),
            pairs: cli.pairs.max(1),
            window: cli.window.max(1),
            qos0_window: cli.qos0_window.max(1),
            fanout_window: cli.fanout_window.max(1),
            rate: cli.rate.max(1),
            latency_qos: cli.latency_qos,
            qos1_sub: cli.qos1_sub,
            workers: cli.workers.max(1),
            storm_users: cli.storm_users,
            conns: cli.conns.max(1),
            connect_concurrency: cli.connect_concurrency.max(1),
            idle_connect_secs: cli.idle_connect_secs.max(1),
            max_broker_rss_mb: cli.max_broker_rss_mb,
            max_msgs: cli.max_msgs.max(1),
            batch: cli.batch.max(1),
        },
        id_prefix: format!("ld{}", std::process::id()),
        api: cli.api.clone(),
    };
    let mut failed = 0;
    for name in scenarios {
        // Hard cap: setup + warm-up + measurement + teardown.
        let setup = match name.as_str() {
            "idle" | "idle_storm" => ctx.knobs.idle_connect_secs + 90,
            "fanout" => 180,
            _ => 90,
        };
        let limit = ctx.duration + ctx.warmup + Duration::from_secs(setup);
        let result = tokio::time::timeout(limit, run_one(&ctx, &name)).await;
        match result {
            Ok(Ok(line)) => println!("scenario={name} {line}"),
            Ok(Err(e)) => {
                failed += 1;
                println!("scenario={name} error={:?}", format!("{e:#}"));
            }
            Err(_) => {
                failed += 1;
                println!("scenario={name} error=\"timed out after {limit:?}\"");
            }
        }
    }
    failed
}

async fn run_one(ctx: &Ctx, name: &str) -> anyhow::Result<String> {
    match name {
        "fanin_qos0" => scenarios::fanin_qos0(ctx).await,
        "qos1" => scenarios::qos1(ctx).await,
        "p2p_qos1" => scenarios::p2p_qos1(ctx).await,
        "fanout" => scenarios::fanout(ctx).await,
        "latency" => scenarios::latency(ctx).await,
        "connstorm" => connections::connstorm(ctx, false).await,
        "connstorm_repeat" => connections::connstorm(ctx, true).await,
        "connstorm_token" => {
            // The same storm, with a Gatehouse token as the password.
            let username = ctx.target.username.as_deref().unwrap_or("bench");
            let password = ctx.target.password.as_deref().unwrap_or_default();
            let token = api::login(&ctx.api, username, password, 1.0).await?;
            let mut with_token = ctx.clone();
            with_token.target.password = Some(token);
            connections::connstorm(&with_token, true).await
        }
        "idle" => connections::idle(ctx, ctx.knobs.connect_concurrency).await,
        // A fleet reconnecting after a restart: every connect at once.
        "idle_storm" => connections::idle(ctx, ctx.knobs.conns).await,
        other => bail!("unknown scenario {other}"),
    }
}
