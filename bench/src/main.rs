//! `enlace-bench`: one load generator, the same workload for every system.
//!
//! N publishers each feed their own queue (an Enlace mailbox, a NATS
//! JetStream work-queue subject, a nostr author's events); N subscribers each
//! drain one and acknowledge every message so the server deletes it. Each
//! publisher keeps at most `--window` messages unacknowledged by the server.
//!
//! Modes (one per run; `bench/compare.sh` restarts the server between them):
//!
//! - `throughput`: all publishers as fast as the window allows;
//! - `rate`: a fixed total rate, latency from publish to delivery;
//! - `idle`: many connected, subscribed clients held for a while, to
//!   measure the server's memory per idle connection;
//! - `backlog`: deposit with no subscriber (disk per stored message), then
//!   drain.
//!
//! It measures the server process it is given (`--server-pid`) from /proc:
//! CPU time (user + system) over the measured phase, resident memory, and
//! the size of its data directory. Every load is bounded in count and in
//! time (`--deadline-secs`) and goes only to the loopback address given.
//! The result is one JSON object, appended as one line to `--out`.

#![forbid(unsafe_code)]

mod enlace;
mod measure;
mod nats;
mod nostr;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use crate::measure::Probe;
use crate::workload::{Config, Mode};

/// Systems under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    /// The Enlace relay (QUIC, signed envelopes, fsync before Stored).
    Enlace,
    /// NATS JetStream (WorkQueue stream, file storage, pull consumers).
    Nats,
    /// nostr-rs-relay (websocket, signed events, SQLite).
    Nostr,
}

/// Load generator comparing the Enlace relay with its peers on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(name = "enlace-bench")]
struct Args {
    /// System under test.
    #[arg(long, value_enum)]
    system: System,
    /// Workload.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Where the server listens: an `enlace://` relay address, a
    /// `nats://127.0.0.1:PORT` URL, or a `ws://127.0.0.1:PORT` URL.
    #[arg(long)]
    target: String,
    /// Name of this configuration in the results (e.g. nats-fsync-always).
    #[arg(long)]
    label: Option<String>,
    /// PID of the server process to measure (CPU time, RSS).
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server's data directory (disk bytes per stored message).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Publishers (and as many subscribers and queues).
    #[arg(long, default_value_t = 50)]
    publishers: usize,
    /// Messages in total (throughput mode).
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Messages each publisher may have unacknowledged by the server.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Messages per second in total (rate mode).
    #[arg(long, default_value_t = 1_000)]
    rate: u32,
    /// Seconds of load (rate mode).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Connected, subscribed clients (idle mode).
    #[arg(long, default_value_t = 5_000)]
    idle_clients: usize,
    /// Seconds the idle clients are held before measuring.
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
    /// Messages deposited before draining (backlog mode).
    #[arg(long, default_value_t = 100_000)]
    backlog: usize,
    /// Payload bytes per message (the chat text).
    #[arg(long, default_value_t = 1024)]
    payload: usize,
    /// Hard limit on the measured phase; the run fails past it.
    #[arg(long, default_value_t = 240)]
    deadline_secs: u64,
    /// Append the result (one JSON line) to this file; stdout always.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.publishers == 0 || args.window == 0 {
        bail!("--publishers and --window must be at least 1");
    }
    let config = Config {
        mode: args.mode,
        publishers: args.publishers,
        messages: match args.mode {
            Mode::Throughput => args.messages,
            Mode::Rate => usize::try_from(u64::from(args.rate) * args.duration_secs)?,
            Mode::Backlog => args.backlog,
            Mode::Idle => 0,
        },
        window: args.window,
        rate: args.rate,
        idle_clients: args.idle_clients,
        hold: Duration::from_secs(args.hold_secs),
        payload: args.payload.max(8),
        deadline: Duration::from_secs(args.deadline_secs),
    };
    let probe = Probe::new(args.server_pid, args.data_dir.clone());
    let mut result = match args.system {
        System::Enlace => {
            let sys = enlace::Enlace::new(&args.target)?;
            workload::run(&sys, &config, &probe).await?
        }
        System::Nats => {
            let sys = nats::Nats::new(&args.target)?;
            workload::run(&sys, &config, &probe).await?
        }
        System::Nostr => {
            let sys = nostr::Nostr::new(&args.target)?;
            workload::run(&sys, &config, &probe).await?
        }
    };
    let label = args
        .label
        .unwrap_or_else(|| format!("{:?}", args.system).to_lowercase());
    result.insert("system".into(), label.into());
    result.insert(
        "mode".into(),
        format!("{:?}", args.mode).to_lowercase().into(),
    );
    result.insert("load_average".into(), measure::load_average().into());
    let line = serde_json::to_string(&result)?;
    println!("{line}");
    if let Some(path) = args.out {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        writeln!(f, "{line}")?;
    }
    Ok(())
}
