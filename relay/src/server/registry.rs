//! Which stream holds each mailbox's subscription, and what the rest of
//! the relay tells it: a new envelope, an ack, a takeover, a deletion
//! (docs/protocol.md 7.4).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use enlace_protocol::command::EndReason;
use enlace_protocol::envelope::{MailboxId, MessageId};
use tokio::sync::Notify;

/// Subscription state shared between the subscribed stream and the rest.
#[derive(Debug, Default)]
pub(crate) struct Sub {
    id: u64,
    pub(crate) notify: Notify,
    state: Mutex<SubState>,
}

#[derive(Debug, Default)]
pub(crate) struct SubState {
    pub(crate) ended: Option<EndReason>,
    pub(crate) acked: Vec<MessageId>,
}

impl Sub {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, SubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which stream currently holds each mailbox's subscription.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    subs: Mutex<HashMap<MailboxId, Arc<Sub>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, Arc<Sub>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new subscriber; the previous one, if any, is told it was
    /// taken over.
    pub(crate) fn subscribe(&self, id: MailboxId) -> Arc<Sub> {
        let sub = Arc::new(Sub {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            ..Sub::default()
        });
        if let Some(old) = self.lock().insert(id, sub.clone()) {
            old.lock().ended = Some(EndReason::TakenOver);
            old.notify.notify_one();
        }
        sub
    }

    pub(crate) fn unsubscribe(&self, id: &MailboxId, sub: &Sub) {
        let mut subs = self.lock();
        if subs.get(id).is_some_and(|s| s.id == sub.id) {
            subs.remove(id);
        }
    }

    fn with(&self, id: &MailboxId, f: impl FnOnce(&Sub)) {
        if let Some(sub) = self.lock().get(id).cloned() {
            f(&sub);
            sub.notify.notify_one();
        }
    }

    pub(crate) fn new_envelope(&self, id: &MailboxId) {
        self.with(id, |_| {});
    }

    pub(crate) fn acked(&self, id: &MailboxId, msg: MessageId) {
        self.with(id, |s| s.lock().acked.push(msg));
    }

    pub(crate) fn deleted(&self, id: &MailboxId) {
        self.with(id, |s| s.lock().ended = Some(EndReason::Deleted));
    }
}
