//! What the relay knows about one client connection, shared by its
//! streams: the binding both ends derived, whether it said hello and owns
//! a mailbox here, its allowances, where it stands, and its host.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use enlace_protocol::command::{ConnectionBinding, RelayError, Response};

use crate::policy::allowance::Allowances;
use crate::policy::hosts::HostLimits;
use crate::policy::standing::{Counters, Standing, Tally};

/// Per-connection state shared by the connection's streams.
#[derive(Debug)]
pub struct ConnState {
    /// The connection binding recipient commands are signed over.
    pub(crate) binding: ConnectionBinding,
    inner: Mutex<ConnInner>,
    host: Option<(Arc<HostLimits>, IpAddr)>,
    counters: Counters,
}

#[derive(Debug)]
struct ConnInner {
    hello: bool,
    /// Created a mailbox here or proved it holds one: may forward.
    own: bool,
    allowances: Allowances,
}

impl ConnState {
    /// State of a new connection with the binding both ends derived.
    pub fn new(binding: ConnectionBinding, now: u64) -> Self {
        Self {
            binding,
            inner: Mutex::new(ConnInner {
                hello: false,
                own: false,
                allowances: Allowances::new(now),
            }),
            host: None,
            counters: Counters::default(),
        }
    }

    /// State of a new connection from `host` (its per-host limit key), whose
    /// mailbox creations also count against the host's allowance in `limits`.
    pub fn with_host(
        binding: ConnectionBinding,
        now: u64,
        limits: Arc<HostLimits>,
        host: IpAddr,
    ) -> Self {
        Self {
            host: Some((limits, host)),
            ..Self::new(binding, now)
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnInner> {
        // A poisoned lock only means another stream task panicked while
        // holding it; the plain counters inside stay meaningful.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn hello_done(&self) -> bool {
        self.lock().hello
    }

    pub(crate) fn said_hello(&self) {
        self.lock().hello = true;
    }

    /// Marks the connection as one of this relay's own clients.
    pub fn mark_own(&self) {
        self.lock().own = true;
    }

    /// True once the connection created or proved a mailbox here.
    pub fn is_own(&self) -> bool {
        self.lock().own
    }

    /// Notes that this connection names relay `address` (encoded); refuses
    /// a new one past the per-connection cap, saying how long to wait.
    pub(crate) fn note_destination(&self, address: &[u8], now: u64) -> Result<(), u32> {
        self.lock().allowances.note_destination(address, now)
    }

    /// Takes one unsigned-send token, or says how long to wait.
    pub(crate) fn take_first_contact_token(&self, now: u64) -> Result<(), u32> {
        self.lock().allowances.take_first_contact(now)
    }

    /// Takes one mailbox-creation token of the connection, then one of its
    /// host, or says how long to wait.
    pub(crate) fn take_create_token(&self, now: u64) -> Result<(), u32> {
        self.lock().allowances.take_create(now)?;
        match &self.host {
            Some((limits, host)) => limits.take_create(*host, now),
            None => Ok(()),
        }
    }

    /// The connection's counts now (see [`crate::policy::standing`]).
    pub fn tally(&self) -> Tally {
        self.counters.tally()
    }

    /// Which lane its requests take.
    pub fn standing(&self) -> Standing {
        self.tally().standing()
    }

    /// True once a budget that closes the connection is spent
    /// ([`Tally::over_budget`]).
    pub fn over_budget(&self) -> bool {
        self.tally().over_budget()
    }

    /// Signature checks this connection's own requests have failed: a
    /// recipient command, `Send` or proof of possession whose signature did
    /// not verify (or was made for another connection). Other `Auth`
    /// refusals do not count (a used-up first-contact allowance, a commit
    /// that found the sender key changed, a `Forward` the destination
    /// refused), nor do forwarded deliveries (`RelayDeliver`): a home relay
    /// passes on what its clients sealed. The driver closes the connection
    /// once this reaches its budget.
    pub fn failed_checks(&self) -> u32 {
        self.tally().failed_checks
    }

    /// See [`Tally::is_proven`].
    pub fn is_proven(&self) -> bool {
        self.tally().is_proven()
    }

    /// See [`Tally::is_suspect`].
    pub fn is_suspect(&self) -> bool {
        self.tally().is_suspect()
    }

    /// True once a signature check of this connection's own requests
    /// passed (whether or not others failed since).
    pub fn has_passed_a_check(&self) -> bool {
        self.tally().passed_check
    }

    /// True once the host's failed-check budget ran out on this
    /// connection's failures: the driver closes it.
    pub fn host_exhausted(&self) -> bool {
        self.tally().host_exhausted
    }

    /// Forwarded deliveries on this connection that failed to open or to
    /// verify. A home relay passes on what its clients sealed, so these
    /// are not the connection's own failures: they neither close the
    /// connection (that would delay every honest forward it carries) nor
    /// count against its host. Past
    /// [`RELAYED_FAILURES_DEMOTE`](crate::policy::standing::RELAYED_FAILURES_DEMOTE)
    /// they demote it to the low-priority lane instead (unless enough
    /// passed), so that no connection makes the relay open mostly garbage
    /// ahead of proven clients.
    pub fn failed_relayed_checks(&self) -> u32 {
        self.tally().failed_relayed
    }

    /// See [`Tally::forwards_over_budget`].
    pub fn forwards_over_budget(&self) -> bool {
        self.tally().forwards_over_budget()
    }

    /// Counts a forwarded delivery that failed: the refusal to answer.
    pub(crate) fn failed_relayed_check(&self) -> RelayError {
        self.counters.failed_relayed();
        RelayError::Auth
    }

    /// Notes a signature check that passed.
    pub(crate) fn passed_check(&self) {
        self.counters.passed_check();
    }

    /// Counts a failed signature check here, and one to charge to the
    /// host (by [`ConnState::charge_host`]): the refusal to answer.
    pub(crate) fn failed_check(&self) -> RelayError {
        self.counters.failed_check();
        RelayError::Auth
    }

    /// Counts a forwarded signed `Send` stored anew.
    pub(crate) fn passed_relayed(&self) {
        self.counters.passed_relayed();
    }

    /// Charges the failed checks counted since the last call to the host's
    /// budget, noting when it runs out. The driver calls it after each
    /// request's check, on the runtime's threads: the check itself may run
    /// on the low-priority thread, which must not hold the host table's
    /// lock (a nice-19 thread preempted there would stall the accept loop
    /// and every other connection's charge).
    pub fn charge_host(&self, now: u64) {
        let n = self.counters.take_uncharged();
        if let Some((limits, host)) = &self.host {
            for _ in 0..n {
                if !limits.fail_check(*host, now.saturating_mul(1000)) {
                    self.counters.host_exhausted();
                }
            }
        }
    }

    /// Counts the destination's answer to a `Forward` this connection
    /// queued (not one it repeated: a known forward id is answered from
    /// its record and counted once, when it was queued).
    pub(crate) fn forward_answered(&self, answer: &Response) {
        match answer {
            Response::Stored => self.counters.forward_stored(),
            Response::Error(RelayError::Auth) => self.counters.forward_refused(),
            _ => {}
        }
    }
}
