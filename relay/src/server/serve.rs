//! Serving: the accept loop until the relay is told to stop, then the
//! shutdown in order (docs/protocol.md 7.6, "Relay shutdown"): refuse new
//! connections, answer every request already read (deposits commit
//! first), wait for clients to acknowledge the answers, then close.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::admission::accept;
use super::background::Background;
use super::flight::{FLUSH_GRACE, InFlight};
use super::gate::{PriorityGate, UNPROVEN_PERMITS};
use super::registry::Registry;
use super::shared::Shared;
use super::sweep::sweep;
use super::transport::codes;
use crate::clock::Clock;
use crate::config::Config;
use crate::logic::Core;
use crate::metrics::Metrics;
use crate::policy::hosts::HostLimits;
use crate::relays::OtherRelays;
use crate::store::Store;
use crate::store::writer::Writer;

/// Longest the relay waits at shutdown for answered requests to flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The server half of a relay: built, then serving an endpoint.
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

/// What a server is made of.
pub struct Parts {
    /// The request logic over the store.
    pub core: Core<dyn Store>,
    /// The group-commit writer.
    pub writer: Writer,
    /// The forwarding half.
    pub relays: Arc<dyn OtherRelays>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Clock,
    /// Set to true when the relay shuts down.
    pub shutdown: watch::Receiver<bool>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts").finish_non_exhaustive()
    }
}

impl Server {
    /// A server with `config`'s connection limits (and its priority gate's
    /// low-priority thread started).
    pub fn new(config: &Config, parts: Parts) -> Self {
        let shared = Arc::new(Shared {
            core: parts.core,
            writer: parts.writer,
            relays: parts.relays,
            registry: Registry::default(),
            metrics: parts.metrics,
            clock: parts.clock,
            in_flight: InFlight::default(),
            streams: Arc::default(),
            unacked: Arc::default(),
            flushes_given_up: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            shutdown: parts.shutdown,
            per_ip: Mutex::new(HashMap::new()),
            hosts: Arc::new(HostLimits::new(config.hosts)),
            gate: PriorityGate::new(UNPROVEN_PERMITS, Background::start(UNPROVEN_PERMITS)),
            max_per_ip: config.max_connections_per_ip,
            max_connections: config.max_connections,
        });
        Self { shared }
    }

    /// Starts the sweeps, every `interval_secs`.
    pub fn spawn_sweeps(&self, interval_secs: u64) -> JoinHandle<()> {
        tokio::spawn(sweep(self.shared.clone(), interval_secs))
    }

    /// Serves `endpoint` until `stop` resolves, then shuts down: signals
    /// `shutdown`, stops `sweeper`, drains, stops the writer and closes.
    pub async fn serve(
        self,
        endpoint: quinn::Endpoint,
        stop: impl Future<Output = ()>,
        shutdown: watch::Sender<bool>,
        sweeper: JoinHandle<()>,
    ) {
        let shared = self.shared;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => accept(&shared, incoming),
                    None => break,
                },
                () = &mut stop => break,
            }
        }

        // Shutdown: refuse new connections, let every request already read get
        // its answer (deposits commit first), then close.
        tracing::info!("shutting down");
        endpoint.set_server_config(None);
        shared.draining.store(true, Ordering::SeqCst);
        let _ = shutdown.send(true);
        sweeper.abort();
        if tokio::time::timeout(SHUTDOWN_GRACE, shared.in_flight.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("requests still in flight after the grace period");
        }
        shared.writer.stop().await;
        // Answers written are only in send buffers; closing now would discard
        // any that still need a retransmission. Wait for the stream tasks, which
        // end once their last bytes are acknowledged.
        if tokio::time::timeout(SHUTDOWN_GRACE, shared.streams.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!("streams still open after the grace period");
        }
        let unacked = shared.unacked.load(Ordering::SeqCst);
        let given_up = shared.flushes_given_up.load(Ordering::SeqCst);
        if unacked > 0 || given_up > 0 {
            // Their envelopes are stored; a client that missed the answer
            // retries, and the duplicate is dropped by message id.
            tracing::warn!(
                "closing with {unacked} deposit answers unacknowledged after the grace period \
                 ({given_up} more, since the relay started, went unacknowledged for {} s \
                 and were not waited for)",
                FLUSH_GRACE.as_secs()
            );
        }
        endpoint.close(codes::SHUTDOWN, b"relay shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
        tracing::info!("stopped");
    }
}
