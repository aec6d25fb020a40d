//! The message-flow scenarios: fan-in QoS 0, QoS 1 publish, point-to-point
//! QoS 1, fan-out, latency at a fixed rate.

use anyhow::bail;
use futures_util::StreamExt as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::common::{
    Ctx, Flow, OnPublish, Qos0Pub, Qos1Pub, Qos1Sub, disconnect_all, join, measure, open_many,
    subscriber_loop,
};
use crate::conn::{BIG_READ, Conn};
use crate::mqtt::{self, Frame};
use crate::stats::{self, Interval, Sample};

const JOIN: Duration = Duration::from_secs(15);

/// Sets `stop` when dropped, so every spawned loop ends even when a
/// scenario fails half-way through its setup.
struct StopOnDrop(Arc<Flow>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop.store(true, Relaxed);
        self.0.notify.notify_waiters();
    }
}

fn counter() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(0))
}

async fn subscribe_all(conns: Vec<Conn>, filter: &str, qos: u8) -> anyhow::Result<Vec<Conn>> {
    futures_util::stream::iter(conns)
        .map(|mut c| async move {
            c.subscribe(filter, qos).await?;
            Ok(c)
        })
        .buffer_unordered(64)
        .collect::<Vec<anyhow::Result<Conn>>>()
        .await
        .into_iter()
        .collect()
}

/// P publishers → 1 subscriber on a wildcard filter, QoS 0.
pub async fn fanin_qos0(ctx: &Ctx) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let flow = Arc::new(Flow::default());
    let _guard = StopOnDrop(flow.clone());
    let received = counter();
    let mut sub = Conn::open(&ctx.target, &ctx.client_id("fanin-sub"), true, BIG_READ).await?;
    sub.subscribe("bench/fanin/#", 0).await?;
    let sub_task = tokio::spawn(subscriber_loop(
        sub,
        flow.clone(),
        received.clone(),
        k.batch,
        (),
    ));
    let (sent, lost, stalls) = (counter(), counter(), counter());
    let ids = (0..k.publishers)
        .map(|i| ctx.client_id(&format!("fanin-pub-{i}")))
        .collect();
    let pubs = open_many(ctx, &ctx.target, ids, true, 4096).await?;
    let mut handles = Vec::new();
    for (i, conn) in pubs.into_iter().enumerate() {
        let publisher = Qos0Pub {
            topic: format!("bench/fanin/{i}"),
            window: k.qos0_window,
            sent: sent.clone(),
            lost: lost.clone(),
            stalls: stalls.clone(),
        };
        let (flow, received, payload) = (flow.clone(), received.clone(), ctx.payload.clone());
        let (batch, max) = (k.batch, k.max_msgs);
        handles.push(tokio::spawn(async move {
            let delivered = move || received.load(Relaxed);
            publisher
                .run(conn, &payload, batch, max, flow, delivered)
                .await
        }));
    }
    let (d, iv) = measure(ctx, &flow, &[&received, &sent]).await;
    let mut conns = Vec::new();
    for h in handles {
        conns.push(join(h, JOIN, "publisher").await?);
    }
    conns.push(join(sub_task, JOIN, "subscriber").await?.0);
    disconnect_all(conns).await;
    Ok(format!(
        "publishers={} {} sent={} stalls={} written_off={}",
        k.publishers,
        iv.fields(d[0]),
        d[1],
        stalls.load(Relaxed),
        lost.load(Relaxed)
    ))
}

/// P QoS 1 publishers, each with `window` PUBLISHes in flight; optionally
/// one (persistent) QoS 1 subscriber to everything they publish.
pub async fn qos1(ctx: &Ctx) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let flow = Arc::new(Flow::default());
    let _guard = StopOnDrop(flow.clone());
    let delivered = counter();
    let sub_id = ctx.client_id("qos1-sub");
    let mut sub_task = None;
    if k.qos1_sub != Qos1Sub::None {
        let persistent = k.qos1_sub == Qos1Sub::Persistent;
        if persistent {
            // Start from an empty session.
            Conn::open(&ctx.target, &sub_id, true, 4096)
                .await?
                .disconnect(Duration::from_secs(2))
                .await;
        }
        let mut sub = Conn::open(&ctx.target, &sub_id, !persistent, BIG_READ).await?;
        sub.subscribe("bench/qos1/#", 1).await?;
        sub_task = Some(tokio::spawn(subscriber_loop(
            sub,
            flow.clone(),
            delivered.clone(),
            0,
            (),
        )));
    }
    let acked = counter();
    let ids = (0..k.publishers)
        .map(|i| ctx.client_id(&format!("qos1-pub-{i}")))
        .collect();
    let pubs = open_many(ctx, &ctx.target, ids, true, BIG_READ).await?;
    let mut handles = Vec::new();
    for (i, conn) in pubs.into_iter().enumerate() {
        let publisher = Qos1Pub {
            topic: format!("bench/qos1/{i}"),
            window: k.window,
            acked: acked.clone(),
            delivered: None,
        };
        let (flow, payload, max) = (flow.clone(), ctx.payload.clone(), k.max_msgs);
        handles.push(tokio::spawn(async move {
            publisher.run(conn, &payload, max, flow).await
        }));
    }
    let (d, iv) = measure(ctx, &flow, &[&acked, &delivered]).await;
    let mut conns = Vec::new();
    for h in handles {
        conns.push(join(h, JOIN, "publisher").await?);
    }
    if let Some(task) = sub_task {
        conns.push(join(task, JOIN, "subscriber").await?.0);
    }
    disconnect_all(conns).await;
    if k.qos1_sub == Qos1Sub::Persistent {
        // Discard the session and whatever it still queues.
        if let Ok(c) = Conn::open(&ctx.target, &sub_id, true, 4096).await {
            c.disconnect(Duration::from_secs(2)).await;
        }
    }
    Ok(format!(
        "publishers={} window={} sub={:?} {} delivered={} delivered_rate={:.1}",
        k.publishers,
        k.window,
        k.qos1_sub,
        iv.fields(d[0]),
        d[1],
        d[1] as f64 / iv.secs
    )
    .to_lowercase())
}

/// `pairs` × (publisher → its own subscriber), QoS 1 both ways, with an
/// end-to-end window: a publisher has at most `window` messages not yet
/// received (and acknowledged) by its subscriber.
pub async fn p2p_qos1(ctx: &Ctx) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let flow = Arc::new(Flow::default());
    let _guard = StopOnDrop(flow.clone());
    let acked = counter();
    let mut delivered = Vec::new();
    let mut sub_tasks = Vec::new();
    let mut pub_tasks = Vec::new();
    for i in 0..k.pairs {
        let got = counter();
        let mut sub = Conn::open(
            &ctx.target,
            &ctx.client_id(&format!("p2p-sub-{i}")),
            true,
            BIG_READ,
        )
        .await?;
        let topic = format!("bench/p2p/{i}");
        sub.subscribe(&topic, 1).await?;
        sub_tasks.push(tokio::spawn(subscriber_loop(
            sub,
            flow.clone(),
            got.clone(),
            (k.window / 8).max(1),
            (),
        )));
        let conn = Conn::open(
            &ctx.target,
            &ctx.client_id(&format!("p2p-pub-{i}")),
            true,
            BIG_READ,
        )
        .await?;
        let publisher = Qos1Pub {
            topic,
            window: k.window,
            acked: acked.clone(),
            delivered: Some(got.clone()),
        };
        delivered.push(got);
        let (flow, payload, max) = (flow.clone(), ctx.payload.clone(), k.max_msgs);
        pub_tasks.push(tokio::spawn(async move {
            publisher.run(conn, &payload, max, flow).await
        }));
    }
    let mut counters: Vec<&AtomicU64> = delivered.iter().map(|c| c.as_ref()).collect();
    counters.push(&acked);
    let (d, iv) = measure(ctx, &flow, &counters).await;
    let got: u64 = d[..k.pairs].iter().sum();
    let mut conns = Vec::new();
    for h in pub_tasks {
        conns.push(join(h, JOIN, "publisher").await?);
    }
    for h in sub_tasks {
        conns.push(join(h, JOIN, "subscriber").await?.0);
    }
    disconnect_all(conns).await;
    Ok(format!(
        "pairs={} window={} {} pub_acked={}",
        k.pairs,
        k.window,
        iv.fields(got),
        d[k.pairs]
    ))
}

/// 1 QoS 0 publisher → S subscribers of the same topic; counts deliveries.
pub async fn fanout(ctx: &Ctx) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let subs = k.subscribers.max(1) as u64;
    let flow = Arc::new(Flow::default());
    let _guard = StopOnDrop(flow.clone());
    let received = counter();
    let ids = (0..subs)
        .map(|i| ctx.client_id(&format!("fanout-sub-{i}")))
        .collect();
    let setup = Instant::now();
    let conns = open_many(ctx, &ctx.target, ids, true, 16 * 1024).await?;
    let conns = subscribe_all(conns, "bench/fanout/all", 0).await?;
    let setup_secs = setup.elapsed().as_secs_f64();
    ctx.check_rss()?;
    let sub_tasks: Vec<_> = conns
        .into_iter()
        .map(|c| tokio::spawn(subscriber_loop(c, flow.clone(), received.clone(), subs, ())))
        .collect();
    let (sent, lost, stalls) = (counter(), counter(), counter());
    let conn = Conn::open(&ctx.target, &ctx.client_id("fanout-pub"), true, 4096).await?;
    let publisher = Qos0Pub {
        topic: "bench/fanout/all".into(),
        window: k.fanout_window,
        sent: sent.clone(),
        lost: lost.clone(),
        stalls: stalls.clone(),
    };
    let (flow2, received2, payload) = (flow.clone(), received.clone(), ctx.payload.clone());
    let (batch, max) = (k.batch.min(k.fanout_window / 4).max(1), k.max_msgs);
    let pub_task = tokio::spawn(async move {
        let delivered = move || received2.load(Relaxed) / subs;
        publisher
            .run(conn, &payload, batch, max, flow2, delivered)
            .await
    });
    let (d, iv) = measure(ctx, &flow, &[&received, &sent]).await;
    let mut conns = vec![join(pub_task, JOIN, "publisher").await?];
    for h in sub_tasks {
        conns.push(join(h, JOIN, "subscriber").await?.0);
    }
    disconnect_all(conns).await;
    Ok(format!(
        "subscribers={subs} setup_secs={setup_secs:.2} {} published={} stalls={} written_off={}",
        iv.fields(d[0]),
        d[1],
        stalls.load(Relaxed),
        lost.load(Relaxed)
    ))
}

/// Records end-to-end latency from the timestamp in the first 8 payload
/// bytes (nanoseconds since `base`, same process so one clock).
struct Latency {
    base: Instant,
    recording: Arc<AtomicBool>,
    samples: Vec<u32>,
}

impl OnPublish for Latency {
    fn on_publish(&mut self, frame: &Frame<'_>) {
        if !self.recording.load(Relaxed) {
            return;
        }
        let Some((_, _, payload)) = frame.publish() else {
            return;
        };
        let Some(stamp) = payload.get(..8) else {
            return;
        };
        let sent = u64::from_be_bytes(stamp.try_into().expect("8 bytes"));
        let now = self.base.elapsed().as_nanos() as u64;
        let micros = now.saturating_sub(sent) / 1000;
        self.samples.push(micros.min(u32::MAX as u64) as u32);
    }
}

/// One publisher at a fixed rate → one subscriber; p50/p99/max.
pub async fn latency(ctx: &Ctx) -> anyhow::Result<String> {
    let k = &ctx.knobs;
    let qos = k.latency_qos.min(1);
    let flow = Arc::new(Flow::default());
    let _guard = StopOnDrop(flow.clone());
    let base = Instant::now();
    let recording = Arc::new(AtomicBool::new(false));
    let received = counter();
    let mut sub = Conn::open(&ctx.target, &ctx.client_id("lat-sub"), true, BIG_READ).await?;
    sub.subscribe("bench/lat", qos).await?;
    let hook = Latency {
        base,
        recording: recording.clone(),
        samples: Vec::with_capacity((k.rate * ctx.duration.as_secs().max(1)) as usize + 1024),
    };
    let sub_task = tokio::spawn(subscriber_loop(
        sub,
        flow.clone(),
        received.clone(),
        0,
        hook,
    ));
    let conn = Conn::open(&ctx.target, &ctx.client_id("lat-pub"), true, BIG_READ).await?;
    let sent = counter();
    let pub_task = tokio::spawn(paced_publisher(
        conn,
        qos,
        k.rate,
        k.max_msgs,
        ctx.payload.clone(),
        base,
        flow.clone(),
        sent.clone(),
    ));
    tokio::time::sleep(ctx.warmup).await;
    let (r0, p0) = (received.load(Relaxed), sent.load(Relaxed));
    recording.store(true, Relaxed);
    let s0 = Sample::take(ctx.broker_pid);
    let end = Instant::now() + ctx.duration;
    while Instant::now() < end && !flow.finished.load(Relaxed) {
        tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(50))).await;
    }
    let s1 = Sample::take(ctx.broker_pid);
    // Let the last in-flight messages land before the recording stops.
    let (p1, r_end) = (sent.load(Relaxed), received.load(Relaxed));
    tokio::time::sleep(Duration::from_millis(200)).await;
    recording.store(false, Relaxed);
    flow.stop.store(true, Relaxed);
    let iv = Interval::between(&s0, &s1);
    let conn = join(pub_task, JOIN, "publisher").await?;
    let (sub, mut hook) = join(sub_task, JOIN, "subscriber").await?;
    disconnect_all(vec![conn, sub]).await;
    let (p50, p99, max) = stats::percentiles(&mut hook.samples);
    let published = p1 - p0;
    Ok(format!(
        "target_rate={} qos={qos} {} published={published} p50_us={p50} p99_us={p99} max_us={max} samples={}",
        k.rate,
        iv.fields(r_end - r0),
        hook.samples.len()
    ))
}

/// Publishes `rate` messages per second with the send time in the first
/// 8 payload bytes; between bursts it reads (and drops) PUBACKs.
#[allow(clippy::too_many_arguments)]
async fn paced_publisher(
    mut conn: Conn,
    qos: u8,
    rate: u64,
    max_msgs: u64,
    payload: Vec<u8>,
    base: Instant,
    flow: Arc<Flow>,
    sent: Arc<AtomicU64>,
) -> anyhow::Result<Conn> {
    let tail = &payload[payload.len().min(8)..];
    let start = Instant::now();
    // `n`: messages scheduled so far; `actual`: messages really sent.
    let (mut n, mut actual) = (0u64, 0u64);
    while !flow.stop.load(Relaxed) {
        if n >= max_msgs {
            flow.finished.store(true, Relaxed);
            break;
        }
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(max_msgs);
        // After a stall, skip rather than burst more than 10 ms of messages.
        n = n.max(due.saturating_sub(rate / 100 + 1));
        while n < due {
            let stamp = (base.elapsed().as_nanos() as u64).to_be_bytes();
            let pid = (actual % 65_535) as u16 + 1;
            mqtt::publish(&mut conn.wbuf, b"bench/lat", qos, pid, &stamp, tail);
            n += 1;
            actual += 1;
        }
        sent.store(actual, Relaxed);
        conn.flush().await?;
        // Sleep about a millisecond, reading acknowledgements meanwhile.
        if conn.read_for(Duration::from_millis(1)).await? == Some(0) {
            bail!("broker closed the latency publisher");
        }
        conn.frames(|_, _| Ok(()))?;
    }
    Ok(conn)
}
