//! What a destination's worker and its lanes share: the store and the
//! writer, the dialer, who waits for which forward, and which workers run.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use enlace_protocol::command::ForwardId;
use enlace_protocol::keys::Fingerprint;
use tokio::sync::{Notify, oneshot, watch};

use super::dialer::Dialer;
use crate::clock::Clock;
use crate::logic::limits::FORWARD_STATUS_KEEP_SECS;
use crate::metrics::Metrics;
use crate::store::forward::QueueState;
use crate::store::writer::Writer;
use crate::store::{Store, WriteOp};

/// The forwarding half's shared state.
pub(crate) struct Shared {
    pub(crate) dialer: Dialer,
    pub(crate) writer: Writer,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    /// How long a forward is retried from its arrival.
    pub(crate) ttl_secs: u64,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) metrics: Arc<Metrics>,
    /// Running workers by destination fingerprint, each with the signal
    /// that wakes it when a forward is queued (a stored permit, so a kick
    /// that comes while the worker is busy is never lost).
    pub(crate) workers: Mutex<HashMap<Fingerprint, Arc<Notify>>>,
    /// Clients' forwards waiting for the destination's answer.
    pub(crate) waiters: Mutex<HashMap<ForwardId, Vec<oneshot::Sender<()>>>>,
}

/// Locks `m`, also if a task panicked holding it (the maps stay usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Records a forward's final state durably, then wakes its waiters.
    pub(crate) async fn settle(&self, forward_id: ForwardId, state: QueueState) -> bool {
        let op = WriteOp::ForwardSettle {
            forward_id,
            state,
            keep_until: self.clock.now().saturating_add(FORWARD_STATUS_KEEP_SECS),
        };
        match self.writer.submit(op).await {
            Ok(_) => {
                let counter = match state {
                    QueueState::Stored => &self.metrics.forwards_stored,
                    QueueState::Refused(_) => &self.metrics.forwards_refused,
                    QueueState::Expired | QueueState::Queued => &self.metrics.forwards_expired,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if let Some(waiters) = lock(&self.waiters).remove(&forward_id) {
                    for w in waiters {
                        let _ = w.send(());
                    }
                }
                true
            }
            Err(e) => {
                tracing::error!("recording a forward failed: {e}");
                false
            }
        }
    }
}
