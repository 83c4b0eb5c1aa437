//! The workload, written once for every system: set up N queues, drain them
//! with N subscribers that acknowledge every message, feed them with N
//! publishers holding at most `window` messages unacknowledged, and measure.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use crate::measure::{self, Probe, Tracker};

/// Workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// As fast as the publishers' windows allow.
    Throughput,
    /// A fixed total rate; publish-to-delivery latency.
    Rate,
    /// Connected, subscribed, idle clients; server memory per connection.
    Idle,
    /// Deposit with no subscriber, then drain.
    Backlog,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub publishers: usize,
    pub messages: usize,
    pub window: usize,
    pub rate: u32,
    pub idle_clients: usize,
    pub hold: Duration,
    pub payload: usize,
    pub deadline: Duration,
}

/// When a publisher sends: as soon as its window allows, or message `k` at
/// `start + offset + k * period`.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    Free,
    Fixed {
        start: Instant,
        offset: Duration,
        period: Duration,
    },
}

impl Pace {
    pub async fn wait(&self, k: usize) {
        if let Pace::Fixed {
            start,
            offset,
            period,
        } = self
        {
            let at = *start + *offset + period.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

/// The chat payload of message `index`: the index (big-endian), then filler.
pub fn payload(index: u64, len: usize) -> Vec<u8> {
    let mut p = index.to_be_bytes().to_vec();
    p.extend((0..len.saturating_sub(8)).map(|i| b'a' + (i % 26) as u8));
    p
}

/// The message index a payload carries.
pub fn payload_index(p: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(p.get(..8)?.try_into().ok()?))
}

/// A system under test. Publishers and subscribers are moved into their own
/// tasks; a queue's publisher and subscriber use separate connections.
pub trait System: Sync {
    type Pub: Send + 'static;
    type Sub: Send + 'static;
    type Live: Send + 'static;
    type Prepared: Send;
    type Idle: Send;

    /// Creates one queue per plan (the message indices its publisher will
    /// send) with a connected publisher and a connected (not yet
    /// subscribed) subscriber, and prepares the messages.
    fn setup(
        &self,
        config: &Config,
        plans: Vec<Vec<u64>>,
    ) -> impl Future<Output = anyhow::Result<Vec<(Self::Pub, Self::Sub)>>> + Send;

    /// Publishes the queue's messages, at most `window` unacknowledged.
    fn publish(
        publisher: Self::Pub,
        pace: Pace,
        window: usize,
        tracker: Arc<Tracker>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static;

    /// Subscribes (returns once the server confirmed it).
    fn subscribe(sub: Self::Sub) -> impl Future<Output = anyhow::Result<Self::Live>> + Send;

    /// Receives `expect` messages, acknowledging each, and returns once the
    /// server has the acknowledgements.
    fn drain(
        live: Self::Live,
        expect: usize,
        tracker: Arc<Tracker>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static;

    /// Creates `clients` queues (mailboxes, consumers) for idle clients,
    /// over connections that are closed again, so that the memory the
    /// queues' storage takes is not counted as connection memory.
    fn prepare_idle(
        &self,
        clients: usize,
    ) -> impl Future<Output = anyhow::Result<Self::Prepared>> + Send;

    /// Connects one subscribed client per prepared queue.
    fn idle(
        &self,
        prepared: Self::Prepared,
    ) -> impl Future<Output = anyhow::Result<Self::Idle>> + Send;

    /// Disconnects idle clients.
    fn close_idle(idle: Self::Idle) -> impl Future<Output = ()> + Send;
}

/// Runs `future` with at most `limit` of them at once, collecting results.
pub async fn bounded<T, F>(futures: Vec<F>, limit: usize) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<T>>,
{
    futures_util::stream::iter(futures)
        .buffered(limit)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

fn plans(config: &Config) -> Vec<Vec<u64>> {
    let n = config.publishers;
    (0..n)
        .map(|p| (p..config.messages).step_by(n).map(|i| i as u64).collect())
        .collect()
}

fn paces(config: &Config) -> Vec<Pace> {
    let n = config.publishers;
    match config.mode {
        Mode::Rate => {
            let start = Instant::now() + Duration::from_millis(200);
            let gap = Duration::from_secs(1) / config.rate.max(1);
            (0..n)
                .map(|p| Pace::Fixed {
                    start,
                    offset: gap.saturating_mul(u32::try_from(p).unwrap_or(u32::MAX)),
                    period: gap.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX)),
                })
                .collect()
        }
        _ => vec![Pace::Free; n],
    }
}

async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    what: &str,
) -> anyhow::Result<()> {
    for t in tasks {
        t.await
            .with_context(|| format!("a {what} task failed"))?
            .with_context(|| format!("a {what} failed"))?;
    }
    Ok(())
}

/// Runs the configured mode against `sys` and returns the figures.
pub async fn run<S: System>(
    sys: &S,
    config: &Config,
    probe: &Probe,
) -> anyhow::Result<Map<String, Value>> {
    let mut out = Map::new();
    out.insert("publishers".into(), json!(config.publishers));
    out.insert("window".into(), json!(config.window));
    out.insert("payload_bytes".into(), json!(config.payload));
    if config.mode == Mode::Idle {
        return run_idle(sys, config, probe, out).await;
    }
    let plans = plans(config);
    let counts: Vec<usize> = plans.iter().map(Vec::len).collect();
    let tracker = Arc::new(Tracker::new(config.messages));
    let setup_start = Instant::now();
    let pairs = tokio::time::timeout(config.deadline, sys.setup(config, plans))
        .await
        .context("setup took longer than the deadline")??;
    out.insert(
        "setup_secs".into(),
        json!(setup_start.elapsed().as_secs_f64()),
    );
    let (pubs, subs): (Vec<_>, Vec<_>) = pairs.into_iter().unzip();
    let gen_cpu0 = measure::own_cpu_secs();
    let cpu0 = probe.cpu_secs();
    let disk0 = probe.disk_bytes();
    let deadline = tokio::time::Instant::now() + config.deadline;

    let run_publishers = |pubs: Vec<S::Pub>, tracker: &Arc<Tracker>| {
        let paces = paces(config);
        pubs.into_iter()
            .zip(paces)
            .map(|(p, pace)| tokio::spawn(S::publish(p, pace, config.window, tracker.clone())))
            .collect::<Vec<_>>()
    };
    let start_drains = |lives: Vec<S::Live>, tracker: &Arc<Tracker>| {
        lives
            .into_iter()
            .zip(&counts)
            .map(|(l, n)| tokio::spawn(S::drain(l, *n, tracker.clone())))
            .collect::<Vec<_>>()
    };

    let start;
    let mut drain_start = None;
    if config.mode == Mode::Backlog {
        start = Instant::now();
        let publishers = run_publishers(pubs, &tracker);
        tokio::time::timeout_at(deadline, join_all(publishers, "publisher"))
            .await
            .context("depositing the backlog took longer than the deadline")??;
        let deposit = start.elapsed().as_secs_f64();
        out.insert("deposit_secs".into(), json!(deposit));
        out.insert(
            "deposited_per_sec".into(),
            json!(config.messages as f64 / deposit),
        );
        if let (Some(d0), Some(d1)) = (disk0, probe.disk_bytes()) {
            out.insert(
                "disk_bytes_per_message".into(),
                json!(d1.saturating_sub(d0) as f64 / config.messages as f64),
            );
        }
        let subscribed = Instant::now();
        let lives = bounded(subs.into_iter().map(S::subscribe).collect(), 64).await?;
        drain_start = Some(subscribed);
        let drains = start_drains(lives, &tracker);
        tokio::time::timeout_at(deadline, join_all(drains, "subscriber"))
            .await
            .context("draining took longer than the deadline")??;
    } else {
        let lives = bounded(subs.into_iter().map(S::subscribe).collect(), 64).await?;
        let drains = start_drains(lives, &tracker);
        start = Instant::now();
        let publishers = run_publishers(pubs, &tracker);
        tokio::time::timeout_at(deadline, join_all(publishers, "publisher"))
            .await
            .context("publishing took longer than the deadline")??;
        tokio::time::timeout_at(deadline, join_all(drains, "subscriber"))
            .await
            .context("delivery took longer than the deadline")??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let delivered = tracker.delivered_count();
    if delivered != config.messages as u64 {
        bail!(
            "only {delivered} of {} messages were delivered",
            config.messages
        );
    }
    out.insert("messages".into(), json!(config.messages));
    out.insert("delivered".into(), json!(delivered));
    out.insert("duplicates".into(), json!(tracker.duplicates()));
    out.insert("elapsed_secs".into(), json!(elapsed));
    out.insert(
        "delivered_per_sec".into(),
        json!(delivered as f64 / elapsed),
    );
    if let Some(d) = drain_start {
        let drain = d.elapsed().as_secs_f64();
        out.insert("drain_secs".into(), json!(drain));
        out.insert("drained_per_sec".into(), json!(delivered as f64 / drain));
    }
    if let (Some(c0), Some(c1)) = (cpu0, probe.cpu_secs()) {
        out.insert("server_cpu_secs".into(), json!(c1 - c0));
        out.insert(
            "server_cpu_us_per_message".into(),
            json!((c1 - c0) * 1e6 / delivered as f64),
        );
    }
    if let (Some(c0), Some(c1)) = (gen_cpu0, measure::own_cpu_secs()) {
        out.insert("generator_cpu_secs".into(), json!(c1 - c0));
    }
    if let Some(p) = probe.peak_rss_kib() {
        out.insert("peak_rss_kib".into(), json!(p));
    }
    let lat = tracker.latencies_us();
    let mut l = Map::new();
    for (name, q) in [
        ("p50", 0.5),
        ("p90", 0.9),
        ("p99", 0.99),
        ("p999", 0.999),
        ("max", 1.0),
    ] {
        l.insert(name.into(), json!(measure::quantile(&lat, q)));
    }
    out.insert("latency_us".into(), Value::Object(l));
    if config.mode == Mode::Rate {
        out.insert("rate".into(), json!(config.rate));
        out.insert("latency_cdf".into(), json!(measure::cdf(&lat, 200)));
    }
    Ok(out)
}

async fn run_idle<S: System>(
    sys: &S,
    config: &Config,
    probe: &Probe,
    mut out: Map<String, Value>,
) -> anyhow::Result<Map<String, Value>> {
    let prepared = tokio::time::timeout(config.deadline, sys.prepare_idle(config.idle_clients))
        .await
        .context("creating the idle clients' queues took longer than the deadline")??;
    // Let the server finish closing the setup connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = probe.rss_kib();
    let start = Instant::now();
    let idle = tokio::time::timeout(config.deadline, sys.idle(prepared))
        .await
        .context("connecting the idle clients took longer than the deadline")??;
    out.insert("connect_secs".into(), json!(start.elapsed().as_secs_f64()));
    tokio::time::sleep(config.hold).await;
    let rss1 = probe.rss_kib();
    out.insert("idle_clients".into(), json!(config.idle_clients));
    if let (Some(r0), Some(r1)) = (rss0, rss1) {
        out.insert("rss_before_kib".into(), json!(r0));
        out.insert("rss_idle_kib".into(), json!(r1));
        out.insert(
            "rss_per_idle_connection_bytes".into(),
            json!(r1.saturating_sub(r0) as f64 * 1024.0 / config.idle_clients.max(1) as f64),
        );
    }
    if let Some(p) = probe.peak_rss_kib() {
        out.insert("peak_rss_kib".into(), json!(p));
    }
    S::close_idle(idle).await;
    Ok(out)
}
