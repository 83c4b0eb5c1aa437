//! What shutdown waits for: requests read and not yet answered, stream
//! tasks whose last bytes the client has not acknowledged, and the deposit
//! answers a close now could cut off.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Longest a finished stream waits for the client to acknowledge the
/// relay's last bytes (a client that never does cannot hold a task longer).
pub(crate) const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Counts requests between being read and being answered, for shutdown.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

pub(crate) struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    pub(crate) fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    pub(crate) async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Deposit answers of one stream counted in `Shared::unacked` until the
/// client acknowledged them (or the stream task ended).
pub(crate) struct UnackedAnswers {
    counter: Arc<AtomicU64>,
    n: u64,
}

impl UnackedAnswers {
    pub(crate) fn enter(counter: &Arc<AtomicU64>, n: u64) -> Self {
        counter.fetch_add(n, Ordering::SeqCst);
        Self {
            counter: counter.clone(),
            n,
        }
    }
}

impl Drop for UnackedAnswers {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// An [`InFlight`] entry that a spawned task can own.
pub(crate) struct OwnedInFlightGuard(Arc<InFlight>);

impl OwnedInFlightGuard {
    pub(crate) fn enter(counter: &Arc<InFlight>) -> Self {
        counter.count.fetch_add(1, Ordering::SeqCst);
        Self(counter.clone())
    }
}

impl Drop for OwnedInFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}
