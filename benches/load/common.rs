//! What every scenario shares: options, the measuring window, subscriber
//! loops, windowed publishers, bounded waits.

use anyhow::{anyhow, bail};
use bytes::BytesMut;
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;
use tokio::time::timeout;

use crate::conn::{Conn, IO_TIMEOUT, Target};
use crate::mqtt::{self, Frame};
use crate::stats::{self, Interval, Sample};

/// Scenario knobs (from the command line).
#[derive(Clone, Debug)]
pub struct Knobs {
    pub publishers: usize,
    pub subscribers: usize,
    pub pairs: usize,
    pub window: u64,
    pub qos0_window: u64,
    pub fanout_window: u64,
    pub rate: u64,
    pub latency_qos: u8,
    pub qos1_sub: Qos1Sub,
    pub workers: usize,
    pub storm_users: usize,
    pub conns: usize,
    pub connect_concurrency: usize,
    pub idle_connect_secs: u64,
    pub max_broker_rss_mb: u64,
    pub max_msgs: u64,
    pub batch: u64,
}

/// The subscriber of the `qos1` scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Qos1Sub {
    /// clean session 0: deliveries are queued (and persisted by brokers that persist).
    Persistent,
    /// clean session 1.
    Clean,
    /// No subscriber: acknowledgements only.
    None,
}

#[derive(Clone)]
pub struct Ctx {
    pub target: Target,
    pub broker_pid: Option<u32>,
    pub duration: Duration,
    pub warmup: Duration,
    pub payload: Vec<u8>,
    pub knobs: Knobs,
    /// Prefix of every client id, so runs never collide.
    pub id_prefix: String,
    /// Gatehouse's admin API base URL (connstorm_token).
    pub api: String,
}

impl Ctx {
    pub fn client_id(&self, what: &str) -> String {
        format!("{}-{what}", self.id_prefix)
    }

    /// Errors when the broker's RSS is beyond the guard (protects a shared
    /// machine from a broker that grows per connection).
    pub fn check_rss(&self) -> anyhow::Result<()> {
        if let Some(rss) = self.broker_pid.and_then(stats::rss_bytes)
            && rss > self.knobs.max_broker_rss_mb * 1024 * 1024
        {
            bail!(
                "broker RSS {} MiB is beyond --max-broker-rss-mb {}",
                rss / (1024 * 1024),
                self.knobs.max_broker_rss_mb
            );
        }
        Ok(())
    }
}

/// Shared flags and wake-ups of one scenario run.
#[derive(Default)]
pub struct Flow {
    /// Set when the measuring window is over: every loop ends.
    pub stop: AtomicBool,
    /// Set by a producer that reached its count bound.
    pub finished: AtomicBool,
    pub notify: Notify,
}

/// Waits until `ready()` or `limit`; true when ready. Wake-ups come from
/// `notify.notify_waiters()`, registered before the check so none is lost.
pub async fn wait_for(notify: &Notify, ready: impl Fn() -> bool, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if ready() {
            return true;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let _ = timeout(left, notified).await;
    }
}

/// Warm-up, then the measured interval: returns the deltas of `counters`
/// and the interval. Ends early when `flow.finished` is set.
pub async fn measure(ctx: &Ctx, flow: &Flow, counters: &[&AtomicU64]) -> (Vec<u64>, Interval) {
    tokio::time::sleep(ctx.warmup).await;
    let before: Vec<u64> = counters.iter().map(|c| c.load(Relaxed)).collect();
    let s0 = Sample::take(ctx.broker_pid);
    let end = Instant::now() + ctx.duration;
    while Instant::now() < end && !flow.finished.load(Relaxed) {
        tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(50))).await;
    }
    let s1 = Sample::take(ctx.broker_pid);
    let after: Vec<u64> = counters.iter().map(|c| c.load(Relaxed)).collect();
    flow.stop.store(true, Relaxed);
    flow.notify.notify_waiters();
    let deltas = before.iter().zip(&after).map(|(a, b)| b - a).collect();
    (deltas, Interval::between(&s0, &s1))
}

/// Opens `ids.len()` connections, `concurrency` at a time, checking the
/// broker's RSS guard as it goes. Order of the result is not `ids`' order.
pub async fn open_many(
    ctx: &Ctx,
    target: &Target,
    ids: Vec<String>,
    clean: bool,
    read_chunk: usize,
) -> anyhow::Result<Vec<Conn>> {
    let total = ids.len();
    let mut stream = futures_util::stream::iter(ids)
        .map(|id| {
            let target = target.clone();
            async move { Conn::open(&target, &id, clean, read_chunk).await }
        })
        .buffer_unordered(ctx.knobs.connect_concurrency.max(1));
    let mut out = Vec::with_capacity(total);
    while let Some(conn) = stream.next().await {
        out.push(conn?);
        if out.len() % 50 == 0 {
            ctx.check_rss()?;
        }
    }
    Ok(out)
}

/// What a subscriber loop does per PUBLISH (besides counting and acking).
pub trait OnPublish: Send + 'static {
    fn on_publish(&mut self, frame: &Frame<'_>);
}

impl OnPublish for () {
    fn on_publish(&mut self, _: &Frame<'_>) {}
}

/// Reads until `flow.stop`: counts PUBLISH packets into `counter`, acks
/// QoS 1 ones (one write per read batch), and wakes waiting publishers
/// each time `counter` crosses a multiple of `notify_every` (0: never;
/// fewer wake-ups keep the tool's CPU low). Returns the connection (to
/// disconnect) and the hook.
pub async fn subscriber_loop<H: OnPublish>(
    mut conn: Conn,
    flow: Arc<Flow>,
    counter: Arc<AtomicU64>,
    notify_every: u64,
    mut hook: H,
) -> anyhow::Result<(Conn, H)> {
    while !flow.stop.load(Relaxed) {
        match conn.read_for(Duration::from_millis(100)).await? {
            None => continue,
            Some(0) => bail!("broker closed a subscriber connection"),
            Some(_) => {}
        }
        let mut n = 0u64;
        conn.frames(|frame, wbuf| {
            if frame.kind() == mqtt::PUBLISH {
                n += 1;
                if frame.qos() > 0
                    && let Some((_, pid, _)) = frame.publish()
                {
                    mqtt::puback(wbuf, pid);
                }
                hook.on_publish(&frame);
            }
            Ok(())
        })?;
        if n > 0 {
            let before = counter.fetch_add(n, Relaxed);
            if notify_every > 0 && (before + n) / notify_every != before / notify_every {
                flow.notify.notify_waiters();
            }
        }
        conn.flush().await?;
    }
    Ok((conn, hook))
}

/// QoS 0 publisher with a flow window: at most `window` messages may be
/// published and not yet delivered (`delivered()` in messages, summed over
/// every publisher sharing `sent`). A window that makes no progress for
/// 500 ms counts its messages as lost (dropped by the broker) and goes on.
pub struct Qos0Pub {
    pub topic: String,
    pub window: u64,
    pub sent: Arc<AtomicU64>,
    /// Messages given up on (a window that made no progress for 500 ms).
    pub lost: Arc<AtomicU64>,
    /// Windows that made no progress for 500 ms.
    pub stalls: Arc<AtomicU64>,
}

impl Qos0Pub {
    pub async fn run(
        self,
        mut conn: Conn,
        ctx_payload: &[u8],
        batch: u64,
        max_msgs: u64,
        flow: Arc<Flow>,
        delivered: impl Fn() -> u64,
    ) -> anyhow::Result<Conn> {
        let batch = batch.clamp(1, self.window.max(1));
        let mut chunk = BytesMut::new();
        for _ in 0..batch {
            mqtt::publish(&mut chunk, self.topic.as_bytes(), 0, 0, &[], ctx_payload);
        }
        let in_flight = || {
            self.sent
                .load(Relaxed)
                .saturating_sub(delivered() + self.lost.load(Relaxed))
        };
        while !flow.stop.load(Relaxed) {
            if self.sent.load(Relaxed) >= max_msgs {
                flow.finished.store(true, Relaxed);
                break;
            }
            if in_flight() + batch > self.window {
                let ready = || flow.stop.load(Relaxed) || in_flight() + batch <= self.window;
                if !wait_for(&flow.notify, ready, Duration::from_millis(500)).await
                    && !flow.stop.load(Relaxed)
                {
                    // Idempotent across publishers that time out together:
                    // afterwards nothing counts as in flight.
                    let delivered_now = delivered();
                    let sent_now = self.sent.load(Relaxed);
                    self.lost
                        .fetch_max(sent_now.saturating_sub(delivered_now), Relaxed);
                    self.stalls.fetch_add(1, Relaxed);
                }
                continue;
            }
            self.sent.fetch_add(batch, Relaxed);
            timeout(IO_TIMEOUT, conn.stream.write_all(&chunk))
                .await
                .map_err(|_| anyhow!("publisher write timed out"))??;
        }
        Ok(conn)
    }
}

/// QoS 1 publisher keeping up to `window` PUBLISHes unacknowledged (and,
/// with `delivered`, also at most `window` not yet delivered end to end).
pub struct Qos1Pub {
    pub topic: String,
    pub window: u64,
    /// PUBACKs received, summed over publishers.
    pub acked: Arc<AtomicU64>,
    /// Deliveries of this publisher's messages (end-to-end window).
    pub delivered: Option<Arc<AtomicU64>>,
}

impl Qos1Pub {
    pub async fn run(
        self,
        mut conn: Conn,
        payload: &[u8],
        max_msgs: u64,
        flow: Arc<Flow>,
    ) -> anyhow::Result<Conn> {
        let (mut sent, mut acked) = (0u64, 0u64);
        let mut lost = 0u64;
        let mut last_progress = Instant::now();
        let delivered = || self.delivered.as_ref().map(|d| d.load(Relaxed));
        loop {
            if flow.stop.load(Relaxed) {
                break;
            }
            let outstanding = |sent: u64, acked: u64| {
                let unacked = sent - acked.min(sent);
                let undelivered = delivered().map_or(0, |d| sent.saturating_sub(d + lost));
                unacked.max(undelivered)
            };
            let allow = self.window.saturating_sub(outstanding(sent, acked));
            if allow > 0 && sent < max_msgs {
                for _ in 0..allow.min(max_msgs - sent) {
                    let pid = (sent % 65_535) as u16 + 1;
                    mqtt::publish(&mut conn.wbuf, self.topic.as_bytes(), 1, pid, &[], payload);
                    sent += 1;
                }
                conn.flush().await?;
            } else if sent >= max_msgs && acked >= sent {
                flow.finished.store(true, Relaxed);
                break;
            }
            // Wait for PUBACKs or for the subscriber's progress.
            let notified = flow.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.delivered.is_some() && sent < max_msgs && self.window > outstanding(sent, acked)
            {
                continue;
            }
            let subscriber_progress = async {
                if self.delivered.is_some() {
                    notified.await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                read = conn.read_for(Duration::from_millis(200)) => match read? {
                    Some(0) => bail!("broker closed a publisher connection"),
                    Some(_) => {
                        let mut n = 0;
                        conn.frames(|f, _| {
                            if f.kind() == mqtt::PUBACK {
                                n += 1;
                            }
                            Ok(())
                        })?;
                        if n > 0 {
                            acked += n;
                            self.acked.fetch_add(n, Relaxed);
                            last_progress = Instant::now();
                        }
                    }
                    None => {}
                },
                _ = subscriber_progress => { last_progress = Instant::now(); }
            }
            if last_progress.elapsed() > Duration::from_secs(1) {
                // Nothing moved for a second: count what is outstanding end
                // to end as lost rather than stall the run.
                if let Some(d) = delivered() {
                    lost = sent.saturating_sub(d);
                }
                last_progress = Instant::now();
            }
        }
        Ok(conn)
    }
}

/// Awaits a task for at most `limit`; its error or panic becomes an error.
pub async fn join<T>(
    handle: tokio::task::JoinHandle<anyhow::Result<T>>,
    limit: Duration,
    what: &str,
) -> anyhow::Result<T> {
    match timeout(limit, handle).await {
        Err(_) => Err(anyhow!("{what} did not finish within {limit:?}")),
        Ok(Err(e)) => Err(anyhow!("{what} panicked: {e}")),
        Ok(Ok(result)) => result,
    }
}

/// Disconnects every connection, `concurrency` at a time, bounded.
pub async fn disconnect_all(conns: Vec<Conn>) {
    let wait = Duration::from_secs(2);
    let _ = timeout(
        Duration::from_secs(30),
        futures_util::stream::iter(conns)
            .map(|c| c.disconnect(wait))
            .buffer_unordered(256)
            .collect::<Vec<()>>(),
    )
    .await;
}
