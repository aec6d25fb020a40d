//! Connection scenarios: connect storms (fresh and repeated clients) and
//! idle connections (the broker's memory per connection).

use anyhow::{anyhow, bail};
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use crate::common::{Ctx, Flow, disconnect_all, join, measure};
use crate::conn::Conn;
use crate::stats::{self, Interval, Sample};

/// CONNECT → CONNACK → DISCONNECT loops on `workers` parallel workers.
/// `repeat`: each worker reuses one client id and the main credentials
/// (a broker with a credential cache verifies the password once);
/// otherwise every connect has a fresh client id and, with
/// `--storm-users K`, cycles through the users `{username}-{0..K}`.
pub async fn connstorm(ctx: &Ctx, repeat: bool) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let flow = Arc::new(Flow::default());
    let (ok, failed, started) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let last_error = Arc::new(Mutex::new(None::<String>));
    let mut handles = Vec::new();
    for w in 0..k.workers.max(1) {
        let (flow, ok, failed, started) =
            (flow.clone(), ok.clone(), failed.clone(), started.clone());
        let last_error = last_error.clone();
        let target = ctx.target.clone();
        let (prefix, users, max) = (ctx.id_prefix.clone(), k.storm_users, k.max_msgs);
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !flow.stop.load(Relaxed) {
                let seq = started.fetch_add(1, Relaxed);
                if seq >= max {
                    flow.finished.store(true, Relaxed);
                    break;
                }
                let (id, target) = if repeat {
                    (format!("{prefix}-rep-{w}"), target.clone())
                } else if users > 0 {
                    let user = format!(
                        "{}-{}",
                        target.username.as_deref().unwrap_or("bench"),
                        seq % users as u64
                    );
                    (format!("{prefix}-cs-{w}-{n}"), target.with_username(user))
                } else {
                    (format!("{prefix}-cs-{w}-{n}"), target.clone())
                };
                n += 1;
                match Conn::open(&target, &id, true, 512).await {
                    Ok(conn) => {
                        conn.disconnect(Duration::from_secs(5)).await;
                        ok.fetch_add(1, Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        *last_error.lock().await = Some(format!("{e:#}"));
                        // Do not spin on a broker that refuses everything.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            Ok(())
        }));
    }
    let (d, iv) = measure(ctx, &flow, &[&ok, &failed]).await;
    for h in handles {
        // A connect may wait for its CONNACK up to the I/O timeout.
        join(h, Duration::from_secs(30), "connstorm worker").await?;
    }
    if d[0] == 0 {
        let err = last_error.lock().await.clone().unwrap_or_default();
        bail!("no successful connect in the measured interval; last error: {err}");
    }
    let mut line = format!(
        "workers={} users={} {} connects_per_sec={:.1} failed={}",
        k.workers,
        if repeat { 1 } else { k.storm_users.max(1) },
        iv.fields(d[0]),
        d[0] as f64 / iv.secs,
        d[1]
    );
    if d[1] > 0
        && let Some(err) = last_error.lock().await.clone()
    {
        line.push_str(&format!(" last_error={:?}", err));
    }
    Ok(line)
}

/// N idle connections, opened `concurrency` at a time: the broker's RSS
/// growth per connection, and its CPU while they sit idle for `--duration`.
pub async fn idle(ctx: &Ctx, concurrency: usize) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let pid = ctx
        .broker_pid
        .ok_or_else(|| anyhow!("idle needs --broker-pid to read the broker's RSS"))?;
    // One warm-up login first, kept open and not counted: what the first
    // login of a user costs once (Gatehouse compiles the user's ACL and
    // verifies the password; mosquitto did both at start-up) is not a cost
    // per connection.
    let warmup = Conn::open(&ctx.target, &ctx.client_id("idle-warmup"), true, 64).await?;
    // Let the broker settle from the previous scenario.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = stats::rss_bytes(pid).ok_or_else(|| anyhow!("cannot read RSS of {pid}"))?;
    let started = Instant::now();
    let deadline = Duration::from_secs(k.idle_connect_secs);
    let mut conns = Vec::with_capacity(k.conns);
    let mut stopped_by = "none";
    let target = &ctx.target;
    let mut stream = futures_util::stream::iter(0..k.conns)
        .map(|i| {
            let id = ctx.client_id(&format!("idle-{i}"));
            async move { Conn::open(target, &id, true, 64).await }
        })
        .buffer_unordered(concurrency.max(1));
    let mut first_error = None;
    // RSS once a tenth is connected: the slope from there on leaves out
    // one-off costs of the first logins (e.g. password hashing buffers).
    let mut rss_tenth = None;
    loop {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.next()).await {
            Err(_) => {
                stopped_by = "time";
                break;
            }
            Ok(None) => break,
            Ok(Some(Ok(conn))) => {
                conns.push(conn);
                if conns.len() == (k.conns / 10).max(1) {
                    rss_tenth = stats::rss_bytes(pid).map(|r| (conns.len(), r));
                }
            }
            Ok(Some(Err(e))) => {
                first_error.get_or_insert(format!("{e:#}"));
                stopped_by = "error";
                break;
            }
        }
        if conns.len() % 100 == 0 && ctx.check_rss().is_err() {
            stopped_by = "rss_guard";
            break;
        }
    }
    drop(stream);
    let connect_secs = started.elapsed().as_secs_f64();
    if conns.is_empty() {
        bail!(
            "no idle connection could be opened: {}",
            first_error.unwrap_or_default()
        );
    }
    // Let the broker finish whatever each CONNECT triggered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = stats::rss_bytes(pid).unwrap_or(rss_before);
    let s0 = Sample::take(Some(pid));
    tokio::time::sleep(ctx.duration).await;
    let s1 = Sample::take(Some(pid));
    let iv = Interval::between(&s0, &s1);
    // Still connected? Ping a few.
    let mut alive = 0;
    let n = conns.len();
    for conn in conns.iter_mut().step_by((n / 10).max(1)).take(10) {
        if conn.ping().await.is_ok() {
            alive += 1;
        }
    }
    let rss_after_idle = stats::rss_bytes(pid).unwrap_or(rss_after);
    let opened = conns.len();
    conns.push(warmup);
    let closing = tokio::spawn(disconnect_all(conns));
    let _ = tokio::time::timeout(Duration::from_secs(60), closing).await;
    let per_conn = rss_after.saturating_sub(rss_before) as f64 / opened as f64;
    let slope = match rss_tenth {
        Some((n, rss)) if opened > n => rss_after.saturating_sub(rss) as f64 / (opened - n) as f64,
        _ => per_conn,
    };
    let mut line = format!(
        "conns={opened} target_conns={} stopped_by={stopped_by} connect_secs={connect_secs:.2} \
         connects_per_sec={:.1} rss_before_bytes={rss_before} rss_after_bytes={rss_after} \
         rss_after_idle_bytes={rss_after_idle} rss_per_conn_bytes={per_conn:.0} \
         rss_slope_per_conn_bytes={slope:.0} \
         idle_broker_cpu={:.4} pings_ok={alive}",
        k.conns,
        opened as f64 / connect_secs,
        iv.broker_cpu.unwrap_or(0.0),
    );
    if let Some(e) = first_error {
        line.push_str(&format!(" first_error={e:?}"));
    }
    Ok(line)
}
