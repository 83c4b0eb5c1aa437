//! The forwarding half of a relay: one worker per destination with
//! forwards queued (`super::worker`), started when a forward is queued
//! and again after a restart; the wait for a client's forward; other
//! relays' keys for clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, Response};
use enlace_protocol::keys::Fingerprint;
use tokio::sync::{Notify, oneshot, watch};

use super::dialer::Dialer;
use super::keys::KeyBundles;
use super::shared::{Shared, lock};
use super::worker;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::relays::{OtherRelays, Pending};
use crate::store::forward::ForwardRecord;
use crate::store::writer::Writer;
use crate::store::{Store, StoreError};

/// How long a client's forward waits for the destination's answer before
/// it is told `Queued`: enough for a reachable relay's fsync, short enough
/// that a dead one does not hold the client.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// Destinations resumed at start (bounded by the total queue limit anyway).
const MAX_DESTINATIONS: usize = 65_536;

/// What a relay forwards, and for how long.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long a forward is retried from its arrival.
    pub ttl_secs: u64,
    /// Whether private, loopback and link-local destinations are allowed.
    pub allow_private: bool,
    /// This relay's own IPs (bound, public host): never a destination
    /// unless private ones are allowed (no hairpin through itself).
    pub own: Vec<IpAddr>,
}

/// The forwarding half of a relay.
pub struct Forwarder {
    shared: Arc<Shared>,
    bundles: KeyBundles,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// Forwards from `endpoint` (the relay's listening one, so destinations
    /// see this relay's address), committing through `writer`, until
    /// `shutdown`.
    pub fn new(
        endpoint: quinn::Endpoint,
        writer: Writer,
        store: Arc<dyn Store>,
        clock: Clock,
        policy: Policy,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                dialer: Dialer::new(endpoint, clock, policy.allow_private, policy.own),
                writer,
                store,
                clock,
                ttl_secs: policy.ttl_secs,
                shutdown,
                metrics,
                workers: Mutex::new(HashMap::new()),
                waiters: Mutex::new(HashMap::new()),
            }),
            bundles: KeyBundles::default(),
        }
    }

    /// The same forwarder with another connect timeout.
    #[cfg(test)]
    pub(crate) fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.dialer.connect_timeout = timeout;
        }
        self
    }

    /// The store, for tests that read forward states.
    #[cfg(test)]
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Starts a worker for every destination with forwards queued (after a
    /// restart).
    pub fn resume(&self) {
        match self.shared.store.forward_destinations(MAX_DESTINATIONS) {
            Ok(dests) => {
                if !dests.is_empty() {
                    tracing::info!("resuming forwards to {} relays", dests.len());
                }
                for d in dests {
                    self.kick(d);
                }
            }
            Err(e) => tracing::error!("cannot read the forward queue: {e}"),
        }
    }

    /// Makes sure a worker drains `destination`'s queue, and wakes it if it
    /// is already running.
    pub fn kick(&self, destination: Fingerprint) {
        let mut workers = lock(&self.shared.workers);
        match workers.entry(destination) {
            std::collections::hash_map::Entry::Occupied(worker) => worker.get().notify_one(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let kicked = Arc::new(Notify::new());
                slot.insert(kicked.clone());
                tokio::spawn(worker::run(self.shared.clone(), destination, kicked));
            }
        }
    }

    /// What became of a client's forward once it is queued: waits briefly
    /// for the destination ([`ANSWER_WAIT`]) while it is queued, then reads
    /// its record again.
    pub async fn await_forward(
        &self,
        forward_id: ForwardId,
        destination: Fingerprint,
    ) -> Result<Option<ForwardRecord>, StoreError> {
        let shared = &self.shared;
        let (tx, rx) = oneshot::channel();
        lock(&shared.waiters)
            .entry(forward_id)
            .or_default()
            .push(tx);
        shared
            .metrics
            .forwards_queued
            .fetch_add(1, Ordering::Relaxed);
        self.kick(destination);
        let queued =
            matches!(shared.store.forward_status(&forward_id), Ok(Some(r)) if r.is_queued());
        if queued {
            let _ = tokio::time::timeout(ANSWER_WAIT, rx).await;
        }
        lock(&shared.waiters).remove(&forward_id);
        shared.store.forward_status(&forward_id)
    }

    /// Fetches and checks `destination`'s signed key for a client.
    pub async fn fetch_key(&self, destination: &RelayAddress) -> Response {
        self.bundles
            .fetch(&self.shared.dialer, &self.shared.clock, destination)
            .await
    }
}

impl OtherRelays for Forwarder {
    fn fetch_key<'a>(&'a self, destination: &'a RelayAddress) -> Pending<'a, Response> {
        Box::pin(Forwarder::fetch_key(self, destination))
    }

    fn await_forward(
        &self,
        forward_id: ForwardId,
        destination: Fingerprint,
    ) -> Pending<'_, Result<Option<ForwardRecord>, StoreError>> {
        Box::pin(Forwarder::await_forward(self, forward_id, destination))
    }
}
