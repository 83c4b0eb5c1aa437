//! The relay's request logic, without sockets.
//!
//! [`Core::handle`] turns one decoded request into a [`Step`]: an immediate
//! response, a [`WriteOp`] for the group-commit writer (answered by
//! [`Core::finish`] once the batch is durable), or the start of a
//! subscription. Time is an argument (Unix seconds from the relay's clock);
//! the only randomness is mailbox ids, delivery keys and sealing nonces.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{
    ConnectionBinding, ForwardId, ForwardState, RelayError, Request, Response,
};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{MailboxId, MessageId};
use enlace_protocol::forward::RelayKey;
use enlace_protocol::keys::PublicKey;
use enlace_protocol::{PROTOCOL_VERSION, command::negotiate_version};

use crate::identity::Identity;
use crate::store::forward::{Enqueue, ForwardRecord, QueueState};
use crate::store::{MailboxRecord, Store, StoreError, WriteOp, WriteOutcome};

/// Default per-mailbox quota: a week of steady chat for a busy member
/// without letting one mailbox fill the disk.
pub const DEFAULT_QUOTA: u32 = 128;
/// Default envelope lifetime: 21 days, long enough to ride out a seized or
/// offline phone, short enough that a seized relay holds little history.
pub const DEFAULT_TTL_SECS: u64 = 21 * 24 * 3600;
/// Envelopes an unsecured mailbox accepts without a signature check: the
/// first contact needs one (a handshake), a few more cover retries; anyone
/// holding the send id could otherwise fill the mailbox before it is secured.
pub const FIRST_CONTACT_LIMIT: u32 = 8;
/// Unsigned (first-contact) sends one connection may burst.
pub const FIRST_CONTACT_BURST: u32 = 4;
/// Seconds to earn one more unsigned send on a connection.
pub const FIRST_CONTACT_REFILL_SECS: u64 = 15;
/// Mailboxes one connection may create in a burst: a new member sets up a
/// handful (one per contact and a spare relay), not thousands.
pub const CREATE_BURST: u32 = 16;
/// Seconds to earn one more mailbox creation on a connection; with the
/// burst this bounds how fast one connection can grow the database.
pub const CREATE_REFILL_SECS: u64 = 10;
/// Mailboxes all connections from one host (IPv4 address or IPv6 /64) may
/// create in a burst: a household or office behind one NAT, not a client
/// that reconnects to get a fresh per-connection burst each time.
pub const HOST_CREATE_BURST: u32 = 64;
/// Hosts whose creation buckets are remembered before full (idle) ones are
/// forgotten; a forgotten bucket is the same as a new one.
const HOST_TABLE_PRUNE_AT: usize = 4096;

/// Forwards queued for one destination relay: a few days of a busy
/// nucleus's traffic to a blocked relay, small enough that one client
/// cannot fill the disk through one destination.
pub const DEFAULT_FORWARD_QUEUE_LIMIT: u32 = 4096;
/// Forwards queued for all destinations together (an own client could
/// otherwise name many made-up destinations): about 280 MiB of small ones.
pub const FORWARD_QUEUE_TOTAL: u64 = 131_072;
/// Seconds a forward's final state (stored, refused, expired) is kept for
/// status queries: a client offline for a week still learns it.
pub const FORWARD_STATUS_KEEP_SECS: u64 = 7 * 24 * 3600;
/// Failed forwarded deliveries (`RelayDeliver`) after which a connection
/// is served in the low-priority lane (see [`ConnState::is_proven`]),
/// unless its passed ones keep up (see [`RELAYED_FAILURES_PER_PASS`]).
pub const RELAYED_FAILURES_DEMOTE: u32 = 64;
/// Failed forwarded deliveries a connection may have per one whose
/// signature check passed before it is demoted: a home relay carrying its
/// honest clients' forwards along with one client's garbage stays in the
/// proven lane (demoting it would queue every honest forward it carries
/// behind unproven strangers), while garbage costs the sender at least
/// one valid signed send per this many.
pub const RELAYED_FAILURES_PER_PASS: u32 = 8;
/// `Forward`s of one connection the destination refused `auth` after
/// which the home relay closes the connection (code 3), unless more than
/// one in [`RELAYED_FAILURES_PER_PASS`] + 1 of its forwards were stored:
/// see [`ConnState::forwards_over_budget`].
pub const MAX_REFUSED_FORWARDS: u32 = 16;
/// Lifetime of a signed relay key bundle: clients may cache it this long.
pub const RELAY_KEY_VALIDITY_SECS: u64 = 30 * 24 * 3600;

/// Limits the core enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Envelopes per mailbox.
    pub quota: u32,
    /// Envelope lifetime from its arrival at this relay; also how long a
    /// forward waits in the queue.
    pub ttl_secs: u64,
    /// Unsigned envelopes per unsecured mailbox.
    pub first_contact_limit: u32,
    /// Forwards queued per destination relay.
    pub forward_queue_limit: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            quota: DEFAULT_QUOTA,
            ttl_secs: DEFAULT_TTL_SECS,
            first_contact_limit: FIRST_CONTACT_LIMIT,
            forward_queue_limit: DEFAULT_FORWARD_QUEUE_LIMIT,
        }
    }
}

/// Hosts whose failed-check and connection buckets are remembered before
/// fresh ones (full, not refusing) are forgotten.
const HOST_RATE_PRUNE_AT: usize = 4096;
/// Connection attempts a blocked host is answered `CONNECTION_REFUSED` per
/// second; the rest are dropped unanswered, so a host that keeps trying
/// does not make the relay send a packet per attempt.
pub const REFUSALS_PER_SEC: u32 = 8;

/// Per-host allowances across connections (see docs/protocol.md 7.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostPolicy {
    /// Failed signature checks a host's connections may make in a burst.
    pub failed_checks: u32,
    /// Milliseconds to earn one more failed check.
    pub failed_check_refill_ms: u64,
    /// New connections a host may open in a burst.
    pub new_connections: u32,
    /// Milliseconds to earn one more new connection.
    pub new_connection_refill_ms: u64,
}

/// Failed signature checks one host (IPv4 address or IPv6 /64) may make
/// in a burst: four connections' worth of [`MAX_AUTH_FAILURES`], more than
/// a household of honest clients with a wrong key ever fails.
///
/// [`MAX_AUTH_FAILURES`]: crate::server::MAX_AUTH_FAILURES
pub const DEFAULT_HOST_FAILED_CHECKS: u32 = 64;
/// Seconds to earn one more failed check per host.
pub const DEFAULT_HOST_FAILED_CHECK_REFILL_SECS: u64 = 10;
/// New connections one host may open in a burst: 64 organizers behind one
/// NAT reconnect at once after a network change.
pub const DEFAULT_HOST_NEW_CONNECTIONS: u32 = 64;
/// New connections per second per host, past the burst: a busy NAT, and a
/// client opening a connection per request, both stay far below it.
pub const DEFAULT_HOST_NEW_CONNECTIONS_PER_SEC: u32 = 20;

impl Default for HostPolicy {
    fn default() -> Self {
        Self {
            failed_checks: DEFAULT_HOST_FAILED_CHECKS,
            failed_check_refill_ms: DEFAULT_HOST_FAILED_CHECK_REFILL_SECS * 1000,
            new_connections: DEFAULT_HOST_NEW_CONNECTIONS,
            new_connection_refill_ms: 1000 / u64::from(DEFAULT_HOST_NEW_CONNECTIONS_PER_SEC),
        }
    }
}

/// What to do with a new connection from a host, by its rates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAdmission {
    /// Admit it (a new-connection token was taken).
    Accept,
    /// Ask for a Retry first: the host's bucket is below half and the
    /// address is not validated (spoofed sources cannot drain it further).
    Retry,
    /// Refuse it (`CONNECTION_REFUSED`).
    Refuse,
    /// Drop it unanswered: the host was refused [`REFUSALS_PER_SEC`] times
    /// this second already.
    Ignore,
}

/// Allowances per host, shared by all of a host's connections and
/// outliving them, so reconnecting earns nothing.
#[derive(Debug, Default)]
pub struct HostLimits {
    creates: Mutex<HostTable>,
    rates: Mutex<RateTable>,
    policy: HostPolicy,
}

#[derive(Debug, Default)]
struct HostTable {
    buckets: HashMap<IpAddr, Bucket>,
    /// Size at which full buckets are next pruned; doubles when pruning
    /// frees little, so the scan stays amortized O(1) per creation.
    prune_at: usize,
}

#[derive(Debug, Default)]
struct RateTable {
    hosts: HashMap<IpAddr, HostRates>,
    /// As [`HostTable::prune_at`].
    prune_at: usize,
}

/// One host's failed-check and new-connection buckets.
#[derive(Debug)]
struct HostRates {
    failures: MsBucket,
    connections: MsBucket,
    /// Start (ms) of the second whose refusals `refused` counts.
    refused_since: u64,
    refused: u32,
}

impl HostRates {
    fn new(policy: &HostPolicy, now_ms: u64) -> Self {
        Self {
            failures: MsBucket::full(policy.failed_checks, now_ms),
            connections: MsBucket::full(policy.new_connections, now_ms),
            refused_since: now_ms,
            refused: 0,
        }
    }

    /// Equal to a fresh entry at `now_ms`: both buckets full.
    fn is_fresh(&mut self, policy: &HostPolicy, now_ms: u64) -> bool {
        self.failures
            .refill(policy.failed_checks, policy.failed_check_refill_ms, now_ms);
        self.connections.refill(
            policy.new_connections,
            policy.new_connection_refill_ms,
            now_ms,
        );
        self.failures.tokens >= policy.failed_checks
            && self.connections.tokens >= policy.new_connections
    }

    /// Refuse, or past [`REFUSALS_PER_SEC`] this second, ignore.
    fn refuse(&mut self, now_ms: u64) -> HostAdmission {
        if now_ms.saturating_sub(self.refused_since) >= 1000 {
            self.refused_since = now_ms;
            self.refused = 0;
        }
        self.refused = self.refused.saturating_add(1);
        if self.refused > REFUSALS_PER_SEC {
            HostAdmission::Ignore
        } else {
            HostAdmission::Refuse
        }
    }
}

/// A token bucket over milliseconds: up to `burst` tokens, one more every
/// `refill_ms` (both kept by the caller, so an entry is 16 bytes).
#[derive(Debug, Clone, Copy)]
struct MsBucket {
    tokens: u32,
    refilled_at: u64,
}

impl MsBucket {
    fn full(burst: u32, now_ms: u64) -> Self {
        Self {
            tokens: burst,
            refilled_at: now_ms,
        }
    }

    fn refill(&mut self, burst: u32, refill_ms: u64, now_ms: u64) {
        let refill_ms = refill_ms.max(1);
        let earned = now_ms.saturating_sub(self.refilled_at) / refill_ms;
        if earned == 0 {
            return;
        }
        let earned = u32::try_from(earned).unwrap_or(u32::MAX);
        self.tokens = self.tokens.saturating_add(earned).min(burst);
        // Time not yet worth a token is kept, unless the bucket is full.
        self.refilled_at = if self.tokens >= burst {
            now_ms
        } else {
            self.refilled_at
                .saturating_add(u64::from(earned).saturating_mul(refill_ms))
        };
    }
}

impl HostLimits {
    /// Limits with `policy` for failed checks and new connections.
    pub fn new(policy: HostPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Takes one creation token for `host`, or says how long to wait.
    fn take_create(&self, host: IpAddr, now: u64) -> Result<(), u32> {
        let mut table = self.creates.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        if table.buckets.len() >= table.prune_at.max(HOST_TABLE_PRUNE_AT) {
            // A bucket that has refilled completely equals a fresh one.
            table.buckets.retain(|_, b| !b.is_full(now));
            table.prune_at = table.buckets.len().saturating_mul(2);
        }
        table
            .buckets
            .entry(host)
            .or_insert_with(|| Bucket::new(HOST_CREATE_BURST, CREATE_REFILL_SECS, now))
            .take(now)
    }

    /// `f` over `host`'s entry, created fresh if absent; prunes fresh
    /// entries first when the table has grown.
    fn with_rates<T>(&self, host: IpAddr, now_ms: u64, f: impl FnOnce(&mut HostRates) -> T) -> T {
        let mut table = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let table = &mut *table;
        let policy = &self.policy;
        if table.hosts.len() >= table.prune_at.max(HOST_RATE_PRUNE_AT) {
            table.hosts.retain(|_, h| !h.is_fresh(policy, now_ms));
            table.prune_at = table.hosts.len().saturating_mul(2);
        }
        let entry = table
            .hosts
            .entry(host)
            .or_insert_with(|| HostRates::new(policy, now_ms));
        f(entry)
    }

    /// Counts a failed signature check against `host`; false once the host
    /// has none left (its failing connection is then closed).
    pub fn fail_check(&self, host: IpAddr, now_ms: u64) -> bool {
        let p = self.policy;
        self.with_rates(host, now_ms, |h| {
            h.failures
                .refill(p.failed_checks, p.failed_check_refill_ms, now_ms);
            match h.failures.tokens.checked_sub(1) {
                Some(left) => {
                    h.failures.tokens = left;
                    left > 0
                }
                None => false,
            }
        })
    }

    /// Decides on a new connection from `host` (whose address is
    /// `validated` by a Retry round trip or not), taking a new-connection
    /// token when it is admitted.
    pub fn admit(&self, host: IpAddr, now_ms: u64, validated: bool) -> HostAdmission {
        let p = self.policy;
        self.with_rates(host, now_ms, |h| {
            h.failures
                .refill(p.failed_checks, p.failed_check_refill_ms, now_ms);
            h.connections
                .refill(p.new_connections, p.new_connection_refill_ms, now_ms);
            // A host out of failed checks is still admitted: each of its
            // connections is closed at its first failure (`fail_check`), so
            // it pays a handshake per failure, while its neighbours behind
            // the same address (a workplace network, a carrier NAT) who fail
            // nothing keep connecting. Refusing the host would let one
            // attacker there lock them all out.
            if h.connections.tokens == 0 {
                return h.refuse(now_ms);
            }
            if !validated && h.connections.tokens <= p.new_connections / 2 {
                return HostAdmission::Retry;
            }
            h.connections.tokens -= 1;
            HostAdmission::Accept
        })
    }

    /// Hosts in the failed-check/new-connection table.
    pub fn tracked_hosts(&self) -> usize {
        self.rates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .hosts
            .len()
    }
}

/// Per-connection state shared by the connection's streams.
#[derive(Debug)]
pub struct ConnState {
    binding: ConnectionBinding,
    inner: Mutex<ConnInner>,
    host: Option<(Arc<HostLimits>, IpAddr)>,
    /// Signature checks this connection's own requests failed (see
    /// [`ConnState::failed_checks`]).
    failed_checks: AtomicU32,
    /// A check of this connection's own requests passed (see
    /// [`ConnState::is_proven`]).
    passed_check: AtomicBool,
    /// The host's failed-check budget ran out on one of this connection's
    /// failures.
    host_exhausted: AtomicBool,
    /// Forwarded deliveries (`RelayDeliver`) that failed to open or to
    /// verify (see [`ConnState::failed_relayed_checks`]).
    failed_relayed: AtomicU32,
    /// Failed checks not yet charged to the host (see
    /// [`ConnState::charge_host`]).
    uncharged: AtomicU32,
    /// Forwarded deliveries whose signed `Send` passed its check and was
    /// stored anew (not a replay).
    passed_relayed: AtomicU32,
    /// This connection's `Forward`s that the destination refused `auth`.
    refused_forwards: AtomicU32,
    /// This connection's `Forward`s that the destination stored.
    stored_forwards: AtomicU32,
}

#[derive(Debug)]
struct ConnInner {
    hello: bool,
    /// Created a mailbox here or proved it holds one: may forward.
    own: bool,
    first_contact: Bucket,
    creates: Bucket,
    /// Other relays' addresses (encoded) this connection named in
    /// `FetchRelayKey` or `Forward`, with when each was first named.
    destinations: Vec<(Vec<u8>, u64)>,
}

/// Distinct relay addresses one connection may name per
/// [`DESTINATION_WINDOW_SECS`]: each makes this relay send QUIC handshakes
/// there, so a client cannot aim it at many hosts (128: twice the
/// fan-out of a full 64-member nucleus whose members all use other relays).
pub const MAX_DESTINATIONS_PER_CONN: usize = 128;
/// The window of [`MAX_DESTINATIONS_PER_CONN`].
pub const DESTINATION_WINDOW_SECS: u64 = 600;

/// A token bucket over whole seconds.
#[derive(Debug)]
struct Bucket {
    tokens: u32,
    burst: u32,
    refill_secs: u64,
    refilled_at: u64,
}

impl Bucket {
    fn new(burst: u32, refill_secs: u64, now: u64) -> Self {
        Self {
            tokens: burst,
            burst,
            refill_secs,
            refilled_at: now,
        }
    }

    /// Takes a token, or says how many seconds to wait for one.
    fn take(&mut self, now: u64) -> Result<(), u32> {
        let earned = now.saturating_sub(self.refilled_at) / self.refill_secs;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(self.burst);
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            let wait = (self.refilled_at + self.refill_secs).saturating_sub(now);
            return Err(u32::try_from(wait).unwrap_or(u32::MAX).max(1));
        }
        self.tokens -= 1;
        Ok(())
    }

    /// True if the bucket would be full at `now`.
    fn is_full(&self, now: u64) -> bool {
        let earned = now.saturating_sub(self.refilled_at) / self.refill_secs;
        u64::from(self.tokens).saturating_add(earned) >= u64::from(self.burst)
    }
}

impl ConnState {
    /// State of a new connection with the binding both ends derived.
    pub fn new(binding: ConnectionBinding, now: u64) -> Self {
        Self {
            binding,
            inner: Mutex::new(ConnInner {
                hello: false,
                own: false,
                first_contact: Bucket::new(FIRST_CONTACT_BURST, FIRST_CONTACT_REFILL_SECS, now),
                creates: Bucket::new(CREATE_BURST, CREATE_REFILL_SECS, now),
                destinations: Vec::new(),
            }),
            host: None,
            failed_checks: AtomicU32::new(0),
            passed_check: AtomicBool::new(false),
            host_exhausted: AtomicBool::new(false),
            failed_relayed: AtomicU32::new(0),
            uncharged: AtomicU32::new(0),
            passed_relayed: AtomicU32::new(0),
            refused_forwards: AtomicU32::new(0),
            stored_forwards: AtomicU32::new(0),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnInner> {
        // A poisoned lock only means another stream task panicked while
        // holding it; the plain counters inside stay meaningful.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn hello_done(&self) -> bool {
        self.lock().hello
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
    fn note_destination(&self, address: &[u8], now: u64) -> Result<(), u32> {
        let mut inner = self.lock();
        inner
            .destinations
            .retain(|(_, t)| t.saturating_add(DESTINATION_WINDOW_SECS) > now);
        if inner.destinations.iter().any(|(a, _)| a == address) {
            return Ok(());
        }
        if inner.destinations.len() >= MAX_DESTINATIONS_PER_CONN {
            let oldest = inner
                .destinations
                .iter()
                .map(|(_, t)| *t)
                .min()
                .unwrap_or(now);
            let wait = oldest
                .saturating_add(DESTINATION_WINDOW_SECS)
                .saturating_sub(now)
                .max(1);
            return Err(u32::try_from(wait).unwrap_or(u32::MAX));
        }
        inner.destinations.push((address.to_vec(), now));
        Ok(())
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
        self.failed_checks.load(Ordering::SeqCst)
    }

    /// True once a signature check of this connection's own requests
    /// passed and none failed: its requests then skip the driver's
    /// low-priority gate. Proof of possession when creating a mailbox, a
    /// recipient command, a signed `Send` (also inside a `RelayDeliver`)
    /// prove a connection; an unsigned first-contact `Send` does not.
    /// A connection on which [`RELAYED_FAILURES_DEMOTE`] forwarded
    /// deliveries failed, more than [`RELAYED_FAILURES_PER_PASS`] per one
    /// that passed, is not proven either.
    pub fn is_proven(&self) -> bool {
        let failed = self.failed_relayed_checks();
        let passed = self.passed_relayed.load(Ordering::SeqCst);
        self.passed_check.load(Ordering::SeqCst)
            && self.failed_checks() == 0
            && (failed < RELAYED_FAILURES_DEMOTE
                || failed <= passed.saturating_mul(RELAYED_FAILURES_PER_PASS))
    }

    /// True if none of the connection's checks ever passed and it failed
    /// something: a signature check of its own, or a forwarded delivery.
    /// Its requests then wait in a queue of their own, checked at the
    /// lowest CPU priority, apart from connections that only have not
    /// proven themselves yet (newcomers, first-contact senders). A
    /// connection that passed a check and then failed one (an honest
    /// member whose sends a malicious contact's re-secured mailbox refuses,
    /// a home relay demoted for its clients' garbage) is not proven any
    /// more but not suspect either: it waits with the newcomers, at normal
    /// priority.
    pub fn is_suspect(&self) -> bool {
        !self.has_passed_a_check() && (self.failed_checks() > 0 || self.failed_relayed_checks() > 0)
    }

    /// True once a signature check of this connection's own requests
    /// passed (whether or not others failed since).
    pub fn has_passed_a_check(&self) -> bool {
        self.passed_check.load(Ordering::SeqCst)
    }

    /// True once the host's failed-check budget ran out on this
    /// connection's failures: the driver closes it.
    pub fn host_exhausted(&self) -> bool {
        self.host_exhausted.load(Ordering::SeqCst)
    }

    /// Forwarded deliveries on this connection that failed to open or to
    /// verify. A home relay passes on what its clients sealed, so these
    /// are not the connection's own failures: they neither close the
    /// connection (that would delay every honest forward it carries) nor
    /// count against its host. Past [`RELAYED_FAILURES_DEMOTE`] they demote
    /// it to the low-priority lane instead (unless at least one in
    /// [`RELAYED_FAILURES_PER_PASS`] + 1 passed), so that no connection
    /// makes the relay open mostly garbage ahead of proven clients.
    pub fn failed_relayed_checks(&self) -> u32 {
        self.failed_relayed.load(Ordering::SeqCst)
    }

    /// Counts a forwarded delivery that failed: the refusal to answer.
    fn failed_relayed_check(&self) -> RelayError {
        self.failed_relayed.fetch_add(1, Ordering::SeqCst);
        RelayError::Auth
    }

    /// Notes a signature check that passed.
    fn passed_check(&self) {
        self.passed_check.store(true, Ordering::SeqCst);
    }

    /// Counts a failed signature check here, and one to charge to the
    /// host (by [`ConnState::charge_host`]): the refusal to answer.
    fn failed_check(&self) -> RelayError {
        self.failed_checks.fetch_add(1, Ordering::SeqCst);
        self.uncharged.fetch_add(1, Ordering::SeqCst);
        RelayError::Auth
    }

    /// Charges the failed checks counted since the last call to the host's
    /// budget, noting when it runs out. The driver calls it after each
    /// request's check, on the runtime's threads: the check itself may run
    /// on the low-priority thread, which must not hold the host table's
    /// lock (a nice-19 thread preempted there would stall the accept loop
    /// and every other connection's charge).
    pub fn charge_host(&self, now: u64) {
        let n = self.uncharged.swap(0, Ordering::SeqCst);
        if let Some((limits, host)) = &self.host {
            for _ in 0..n {
                if !limits.fail_check(*host, now.saturating_mul(1000)) {
                    self.host_exhausted.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Counts the destination's answer to a `Forward` this connection
    /// queued (not one it repeated: a known forward id is answered from
    /// its record and counted once, when it was queued).
    pub fn forward_answered(&self, answer: &Response) {
        match answer {
            Response::Stored => {
                self.stored_forwards.fetch_add(1, Ordering::SeqCst);
            }
            Response::Error(RelayError::Auth) => {
                self.refused_forwards.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    /// True once [`MAX_REFUSED_FORWARDS`] of this connection's `Forward`s
    /// were refused `auth` by their destination, more than
    /// [`RELAYED_FAILURES_PER_PASS`] per one stored: its client seals
    /// blobs that do not open, or signs with keys the mailboxes do not
    /// hold. The driver then closes it (code 3), so an own client's garbage
    /// costs it a handshake and a proof of ownership per 16, not only the
    /// destination. Neither its priority nor its host's budget is touched:
    /// the destination is the one that says `auth`, and a hostile one must
    /// not be able to push this relay's honest clients, or their
    /// neighbours behind the same address, into the slow lane; an honest
    /// client whose forwards to one destination all come back `auth` (a
    /// used-up first-contact allowance answers `auth` too) loses this
    /// connection after 16 of them unless others get through.
    pub fn forwards_over_budget(&self) -> bool {
        let refused = self.refused_forwards.load(Ordering::SeqCst);
        let stored = self.stored_forwards.load(Ordering::SeqCst);
        refused >= MAX_REFUSED_FORWARDS
            && refused > stored.saturating_mul(RELAYED_FAILURES_PER_PASS)
    }

    /// Takes one unsigned-send token, or says how long to wait.
    fn take_first_contact_token(&self, now: u64) -> Result<(), u32> {
        self.lock().first_contact.take(now)
    }

    /// Takes one mailbox-creation token, or says how long to wait.
    fn take_create_token(&self, now: u64) -> Result<(), u32> {
        self.lock().creates.take(now)?;
        match &self.host {
            Some((limits, host)) => limits.take_create(*host, now),
            None => Ok(()),
        }
    }
}

/// What the driver does next with a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Answer now.
    Reply(Response),
    /// Commit `op` durably, then answer [`Core::finish`]`(then, outcome)`.
    Write {
        /// The mutation.
        op: WriteOp,
        /// How to answer once committed.
        then: Then,
    },
    /// Answer `Ok` and start pushing the mailbox's envelopes on this stream.
    Subscribe {
        /// The mailbox.
        receive_id: MailboxId,
        /// Its delivery key.
        delivery_key: DeliveryKey,
    },
    /// Fetch another relay's signed key over a relay-to-relay connection
    /// and answer with it.
    FetchRelayKey {
        /// The relay.
        destination: RelayAddress,
    },
}

/// The answer to a committed write.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Then {
    /// A mailbox was created.
    Created {
        /// Receive id.
        receive_id: MailboxId,
        /// Send id.
        send_id: MailboxId,
        /// The relay's X25519 public key.
        relay_dh: [u8; 32],
    },
    /// Secured.
    Secured,
    /// An envelope deposit.
    Deposited {
        /// The mailbox it went to.
        receive_id: MailboxId,
        /// A forwarded (`RelayDeliver`) `Send` whose signature passed.
        relayed_signed: bool,
    },
    /// An ack.
    Acked {
        /// Mailbox.
        receive_id: MailboxId,
        /// Acked message.
        message_id: MessageId,
    },
    /// A mailbox deletion.
    Deleted {
        /// Mailbox.
        receive_id: MailboxId,
    },
    /// A forward was queued (or was known already).
    Forwarded {
        /// The client's id for it.
        forward_id: ForwardId,
        /// The destination's fingerprint.
        destination: [u8; 32],
    },
}

/// One sealed delivery.
#[derive(Debug)]
pub struct Delivery {
    /// Arrival sequence number.
    pub seq: u64,
    /// The envelope's message id (what the recipient acks).
    pub message_id: MessageId,
    /// The envelope sealed under the delivery key.
    pub sealed: Vec<u8>,
}

/// The relay's request logic over a store.
#[derive(Debug)]
pub struct Core<S: ?Sized> {
    store: Arc<S>,
    limits: Limits,
    identity: Option<Arc<Identity>>,
    keys: KeyCache,
    recipients: RecipientCache,
}

/// Recipient keys by receive id, for acks.
///
/// A subscriber acks every message; reading the mailbox record from the
/// store for each only to learn its recipient key cost a read transaction
/// per ack. A mailbox's recipient key is fixed when it is created and never
/// changes (Secure sets the sender key; ids are random 128-bit values and a
/// create whose id is taken is refused), so an entry can only be outlived by
/// its mailbox: it is removed when a Delete commits, and the Ack commit
/// itself checks that the mailbox still exists (`WriteOp::Ack` answers
/// `UnknownMailbox` otherwise), so a key cached for a mailbox deleted
/// meanwhile authorizes nothing. Bounded like [`KeyCache`].
#[derive(Debug, Default)]
struct RecipientCache(Mutex<HashMap<MailboxId, PublicKey>>);

impl RecipientCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, PublicKey>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, id: MailboxId, key: PublicKey) {
        let mut map = self.lock();
        if map.len() >= KEY_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(id, key);
    }
}

/// Most parsed keys [`KeyCache`] holds before it starts over.
pub const KEY_CACHE_ENTRIES: usize = 8192;

/// Parsed ed25519 public keys by their 32-byte encoding.
///
/// Parsing (point decompression, the canonical-encoding and small-order
/// checks) costs about as much as half a verification, and every Send and
/// recipient command parses a key read from the store. The cache maps bytes
/// to what [`PublicKey::from_bytes`] returns for them: a pure function, so an
/// entry is never stale and needs no invalidation. Which key a mailbox
/// accepts is still read from the store on every request (and re-checked
/// inside the commit for deposits); only the parse is skipped. Bounded:
/// cleared when full, so a flood of distinct keys costs at most one parse
/// each, as before.
#[derive(Debug, Default)]
struct KeyCache(Mutex<HashMap<[u8; 32], PublicKey>>);

impl KeyCache {
    fn get(&self, bytes: &[u8; 32]) -> Result<PublicKey, RelayError> {
        let lock = || {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(key) = lock().get(bytes) {
            return Ok(*key);
        }
        // Parsed outside the lock (half a signature check): a thread at low
        // priority must not hold it while the others wait.
        // A stored key that does not parse is a corrupt record.
        let key = PublicKey::from_bytes(bytes).map_err(|_| RelayError::Internal)?;
        let mut map = lock();
        if map.len() >= KEY_CACHE_ENTRIES {
            map.clear();
        }
        map.insert(*bytes, key);
        Ok(key)
    }
}

/// Maps a storage failure to what the client is told.
pub fn store_error(e: &StoreError) -> RelayError {
    match e {
        StoreError::Full => RelayError::StorageFull,
        _ => RelayError::Internal,
    }
}

fn error(e: RelayError) -> Step {
    Step::Reply(Response::Error(e))
}

impl<S: Store + ?Sized> Core<S> {
    /// A core over `store`.
    pub fn new(store: Arc<S>, limits: Limits) -> Self {
        Self {
            store,
            limits,
            identity: None,
            keys: KeyCache::default(),
            recipients: RecipientCache::default(),
        }
    }

    /// The same core, able to publish its relay key and open forwards
    /// sealed to `identity`.
    pub fn with_identity(mut self, identity: Arc<Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    fn identity(&self) -> Result<&Identity, RelayError> {
        // A core without an identity (unit tests) does not forward.
        self.identity.as_deref().ok_or(RelayError::UnknownCommand)
    }

    /// The signed relay key bundle, valid from `now`.
    pub fn relay_key(&self, now: u64) -> Result<RelayKey, RelayError> {
        let id = self.identity()?;
        Ok(RelayKey::sign(
            id.key(),
            *id.forward_key().public(),
            now.saturating_add(RELAY_KEY_VALIDITY_SECS),
        ))
    }

    /// What a status record says to the client.
    pub fn forward_state(record: Option<ForwardRecord>) -> ForwardState {
        match record {
            None => ForwardState::Unknown,
            Some(r) => match r.state {
                QueueState::Queued => ForwardState::Queued,
                QueueState::Stored => ForwardState::Stored,
                QueueState::Expired => ForwardState::Expired,
                QueueState::Refused(code) => ForwardState::Refused(code),
            },
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn load(&self, id: &MailboxId) -> Result<MailboxRecord, RelayError> {
        match self.store.mailbox(id) {
            Ok(Some(rec)) => Ok(rec),
            Ok(None) => Err(RelayError::UnknownMailbox),
            Err(e) => Err(store_error(&e)),
        }
    }

    /// Forgets what is cached about a mailbox: called once its Delete
    /// committed.
    pub fn forget(&self, receive_id: &MailboxId) {
        self.recipients.lock().remove(receive_id);
    }

    /// Checks a recipient command against the mailbox's recipient key.
    fn verify<'a, T>(
        &self,
        signed: &'a enlace_protocol::command::Signed<T>,
        conn: &ConnState,
        rec: &MailboxRecord,
    ) -> Result<&'a T, RelayError> {
        let key = self.keys.get(&rec.recipient_key)?;
        let cmd = signed
            .verify(&conn.binding, &key)
            .map_err(|_| conn.failed_check())?;
        conn.passed_check();
        Ok(cmd)
    }

    /// Decides what to do with one request on connection `conn` at `now`.
    pub fn handle(&self, conn: &ConnState, request: Request, now: u64) -> Step {
        if let Request::Hello {
            min_version,
            max_version,
        } = request
        {
            return match negotiate_version(min_version, max_version) {
                Ok(version) => {
                    conn.lock().hello = true;
                    Step::Reply(Response::Hello { version })
                }
                Err(e) => error(e),
            };
        }
        if !conn.hello_done() {
            // Nothing is served before the version is agreed.
            return error(RelayError::Malformed);
        }
        match self.handle_command(conn, request, now, false) {
            Ok(step) => step,
            Err(e) => error(e),
        }
    }

    /// `relayed`: the request is the `Send` inside a `RelayDeliver`, whose
    /// signature the connection's peer (another relay) did not make.
    fn handle_command(
        &self,
        conn: &ConnState,
        request: Request,
        now: u64,
        relayed: bool,
    ) -> Result<Step, RelayError> {
        let binding = &conn.binding;
        Ok(match request {
            Request::CreateMailbox(signed) => {
                let cmd = signed.unverified();
                // Proof of possession of the new recipient key.
                let cmd = signed
                    .verify(binding, &cmd.recipient_key)
                    .map_err(|_| conn.failed_check())?;
                conn.take_create_token(now)
                    .map_err(|retry_after_secs| RelayError::RateLimited { retry_after_secs })?;
                let mut rng = rand::rng();
                let (delivery_key, relay_dh) = DeliveryKey::for_relay(&mut rng, &cmd.recipient_dh)
                    .map_err(|_| RelayError::Malformed)?;
                // Proven only by a creation that goes ahead (and uses up
                // the host's allowance), not by a proof alone.
                conn.passed_check();
                let receive_id = MailboxId(rand::random());
                let send_id = MailboxId(rand::random());
                Step::Write {
                    op: WriteOp::Create {
                        receive_id,
                        record: Box::new(MailboxRecord {
                            send_id,
                            recipient_key: *cmd.recipient_key.as_bytes(),
                            sender_key: None,
                            delivery_key: *delivery_key.to_bytes(),
                            first_contact: 0,
                            next_seq: 0,
                            stored: 0,
                        }),
                    },
                    then: Then::Created {
                        receive_id,
                        send_id,
                        relay_dh,
                    },
                }
            }
            Request::Secure(signed) => {
                let rec = self.load(&signed.unverified().receive_id)?;
                let cmd = self.verify(&signed, conn, &rec)?;
                conn.mark_own();
                Step::Write {
                    op: WriteOp::Secure {
                        receive_id: cmd.receive_id,
                        sender_key: *cmd.sender_key.as_bytes(),
                    },
                    then: Then::Secured,
                }
            }
            Request::Send(envelope) => {
                let (receive_id, rec) = match self.store.mailbox_by_send_id(&envelope.send_id()) {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        if relayed {
                            // An opened seal naming no mailbox cost the
                            // exchange as much as one that did not open,
                            // and replaying it costs its sender nothing.
                            let _ = conn.failed_relayed_check();
                        }
                        return Err(RelayError::UnknownMailbox);
                    }
                    Err(e) => return Err(store_error(&e)),
                };
                match &rec.sender_key {
                    Some(key) => {
                        let key = self.keys.get(key)?;
                        envelope.verify(&key).map_err(|_| {
                            if relayed {
                                conn.failed_relayed_check()
                            } else if conn.has_passed_a_check() {
                                // The mailbox's owner chose the key: one
                                // who secured it with a key its senders do
                                // not hold (a malicious contact) must not
                                // get their connections demoted and closed.
                                // A connection that proved itself pays for
                                // a failing send what it pays for a
                                // duplicate valid one: a check.
                                RelayError::Auth
                            } else {
                                conn.failed_check()
                            }
                        })?;
                        conn.passed_check();
                    }
                    None => {
                        if rec.first_contact >= self.limits.first_contact_limit {
                            return Err(RelayError::Auth);
                        }
                        conn.take_first_contact_token(now)
                            .map_err(|retry_after_secs| RelayError::RateLimited {
                                retry_after_secs,
                            })?;
                    }
                }
                Step::Write {
                    op: WriteOp::Deposit {
                        receive_id,
                        message_id: envelope.message_id(),
                        arrival: now,
                        verified_with: rec.sender_key,
                        quota: self.limits.quota,
                        first_contact_limit: self.limits.first_contact_limit,
                        bytes: envelope.into_bytes(),
                    },
                    then: Then::Deposited {
                        receive_id,
                        relayed_signed: relayed && rec.sender_key.is_some(),
                    },
                }
            }
            Request::Subscribe(signed) => {
                let rec = self.load(&signed.unverified().receive_id)?;
                let cmd = self.verify(&signed, conn, &rec)?;
                conn.mark_own();
                Step::Subscribe {
                    receive_id: cmd.receive_id,
                    delivery_key: DeliveryKey::from_bytes(rec.delivery_key),
                }
            }
            Request::Ack(signed) => {
                let receive_id = signed.unverified().receive_id;
                let cached = self.recipients.lock().get(&receive_id).copied();
                let (key, cache) = match cached {
                    Some(key) => (key, false),
                    None => (self.keys.get(&self.load(&receive_id)?.recipient_key)?, true),
                };
                let cmd = signed
                    .verify(binding, &key)
                    .map_err(|_| conn.failed_check())?;
                conn.passed_check();
                // Cached only once a signature verified with it: otherwise
                // anyone knowing receive ids could churn the cache.
                if cache {
                    self.recipients.insert(receive_id, key);
                }
                conn.mark_own();
                Step::Write {
                    op: WriteOp::Ack {
                        receive_id: cmd.receive_id,
                        message_id: cmd.message_id,
                    },
                    then: Then::Acked {
                        receive_id: cmd.receive_id,
                        message_id: cmd.message_id,
                    },
                }
            }
            Request::Delete(signed) => {
                let rec = self.load(&signed.unverified().receive_id)?;
                let cmd = self.verify(&signed, conn, &rec)?;
                Step::Write {
                    op: WriteOp::Delete {
                        receive_id: cmd.receive_id,
                    },
                    then: Then::Deleted {
                        receive_id: cmd.receive_id,
                    },
                }
            }
            Request::Hello { .. } => Step::Reply(Response::Hello {
                version: PROTOCOL_VERSION,
            }),
            Request::FetchRelayKey { destination } => {
                let me = self.identity()?.fingerprint();
                if *destination.fingerprint() == me {
                    Step::Reply(Response::RelayKey(Box::new(self.relay_key(now)?)))
                } else if conn.is_own() {
                    let mut address = Vec::new();
                    destination.encode(&mut address);
                    conn.note_destination(&address, now)
                        .map_err(|retry_after_secs| RelayError::RateLimited { retry_after_secs })?;
                    Step::FetchRelayKey { destination }
                } else {
                    return Err(RelayError::NotOwnClient);
                }
            }
            Request::Forward(forward) => {
                let me = self.identity()?.fingerprint();
                if !conn.is_own() {
                    return Err(RelayError::NotOwnClient);
                }
                if *forward.destination.fingerprint() == me {
                    // A mailbox here is reached with a plain send.
                    return Err(RelayError::Malformed);
                }
                let destination = forward.destination.fingerprint().0;
                let mut address = Vec::new();
                forward.destination.encode(&mut address);
                conn.note_destination(&address, now)
                    .map_err(|retry_after_secs| RelayError::RateLimited { retry_after_secs })?;
                Step::Write {
                    op: WriteOp::ForwardEnqueue(Box::new(Enqueue {
                        forward_id: forward.forward_id,
                        destination_fp: destination,
                        destination: address,
                        sealed: forward.sealed,
                        arrival: now,
                        deadline: now.saturating_add(self.limits.ttl_secs),
                        per_destination: self.limits.forward_queue_limit,
                        total: FORWARD_QUEUE_TOTAL,
                    })),
                    then: Then::Forwarded {
                        forward_id: forward.forward_id,
                        destination,
                    },
                }
            }
            Request::RelayDeliver { sealed } => {
                // Any failure to open is one coarse refusal.
                let envelope = self
                    .identity()?
                    .forward_key()
                    .open(&sealed)
                    .map_err(|_| conn.failed_relayed_check())?;
                return self.handle_command(conn, Request::Send(envelope), now, true);
            }
            Request::ForwardStatus { ids } => {
                if !conn.is_own() {
                    return Err(RelayError::NotOwnClient);
                }
                let mut states = Vec::with_capacity(ids.len());
                for id in &ids {
                    let record = self.store.forward_status(id).map_err(|e| store_error(&e))?;
                    states.push(Self::forward_state(record));
                }
                Step::Reply(Response::ForwardStatus(states))
            }
            _ => return Err(RelayError::UnknownCommand),
        })
    }

    /// What a commit tells about the connection that asked for it: a
    /// forwarded signed `Send` stored anew counts for the connection
    /// against its failed forwarded deliveries (see
    /// [`RELAYED_FAILURES_PER_PASS`]); a replay of one already stored
    /// (answered `Stored` too) does not, or one valid sealed send replayed
    /// would buy any number of garbage ones.
    pub fn note_commit(conn: &ConnState, then: &Then, outcome: &Result<WriteOutcome, StoreError>) {
        if let (
            Then::Deposited {
                relayed_signed: true,
                ..
            },
            Ok(WriteOutcome::Stored { .. }),
        ) = (then, outcome)
        {
            conn.passed_relayed.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The answer to a write once its batch committed (or failed).
    pub fn finish(then: &Then, outcome: Result<WriteOutcome, StoreError>) -> Response {
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return Response::Error(store_error(&e)),
        };
        match (then, outcome) {
            (
                Then::Created {
                    receive_id,
                    send_id,
                    relay_dh,
                },
                WriteOutcome::Done,
            ) => Response::MailboxCreated {
                receive_id: *receive_id,
                send_id: *send_id,
                relay_dh: *relay_dh,
            },
            (Then::Deposited { .. }, WriteOutcome::Stored { .. } | WriteOutcome::Duplicate) => {
                Response::Stored
            }
            // Acking what is gone (acked before, expired) is not an error:
            // delivery is at-least-once and acks may be retried.
            (Then::Acked { .. }, WriteOutcome::Done | WriteOutcome::NotFound) => Response::Ok,
            (Then::Secured | Then::Deleted { .. }, WriteOutcome::Done) => Response::Ok,
            // The driver then waits briefly for the destination's answer.
            (Then::Forwarded { .. }, WriteOutcome::Stored { .. } | WriteOutcome::Duplicate) => {
                Response::Queued
            }
            (Then::Forwarded { .. }, WriteOutcome::Quota) => {
                Response::Error(RelayError::ForwardQueueFull)
            }
            (_, WriteOutcome::UnknownMailbox) => Response::Error(RelayError::UnknownMailbox),
            (_, WriteOutcome::Quota) => Response::Error(RelayError::Quota),
            (_, WriteOutcome::Full) => Response::Error(RelayError::StorageFull),
            (_, WriteOutcome::Refused) => Response::Error(RelayError::Auth),
            // A 128-bit id collision, or an outcome that does not fit.
            _ => Response::Error(RelayError::Internal),
        }
    }

    /// Up to `limit` envelopes after `after`, sealed for delivery. Envelopes
    /// past their TTL are skipped even before the sweeper removes them.
    pub fn deliveries(
        &self,
        receive_id: &MailboxId,
        key: &DeliveryKey,
        after: Option<u64>,
        now: u64,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let not_before = now.saturating_sub(self.limits.ttl_secs);
        let mut rng = rand::rng();
        Ok(self
            .store
            .pending(receive_id, after, not_before, limit)?
            .into_iter()
            .map(|env| Delivery {
                seq: env.seq,
                message_id: env.message_id,
                sealed: key.seal(&mut rng, receive_id, &env.bytes),
            })
            .collect())
    }

    /// The expiry batch to commit at `now`.
    pub fn expiry_op(&self, now: u64, limit: usize) -> WriteOp {
        WriteOp::Expire {
            before: now.saturating_sub(self.limits.ttl_secs),
            limit,
        }
    }

    /// Handles a request completely, committing writes one at a time: for
    /// tests and tools without a writer thread.
    pub fn handle_now(&self, conn: &ConnState, request: Request, now: u64) -> (Response, Step) {
        let step = self.handle(conn, request, now);
        conn.charge_host(now);
        match step {
            Step::Write { op, then } => {
                let outcome = self
                    .store
                    .apply(std::slice::from_ref(&op))
                    .and_then(|mut o| o.pop().ok_or(StoreError::Corrupt("empty batch result")));
                Self::note_commit(conn, &then, &outcome);
                let resp = Self::finish(&then, outcome);
                if matches!(resp, Response::MailboxCreated { .. }) {
                    conn.mark_own();
                }
                if let (Then::Deleted { receive_id }, Response::Ok) = (&then, &resp) {
                    self.forget(receive_id);
                }
                (resp.clone(), Step::Reply(resp))
            }
            Step::Reply(r) => (r.clone(), Step::Reply(r)),
            step @ Step::Subscribe { .. } => (Response::Ok, step),
            step @ Step::FetchRelayKey { .. } => (Response::Error(RelayError::Unreachable), step),
        }
    }
}

#[cfg(test)]
mod tests {
    use enlace_protocol::delivery::DhKeyPair;
    use enlace_protocol::envelope::{CoarseTime, Envelope};
    use enlace_protocol::keys::SigningKeyPair;
    use enlace_protocol::limits::BODY_SMALL;

    use super::*;
    use crate::store::redb::RedbStore;

    struct World {
        core: Core<RedbStore>,
        conn: ConnState,
        recipient: SigningKeyPair,
        sender: SigningKeyPair,
        receive_id: MailboxId,
        send_id: MailboxId,
        key: DeliveryKey,
    }

    const NOW: u64 = 1_800_000_000;

    fn world(limits: Limits) -> World {
        let core = Core::new(Arc::new(RedbStore::in_memory().unwrap()), limits);
        let conn = ConnState::new(ConnectionBinding([1; 32]), NOW);
        let mut rng = rand::rng();
        let recipient = SigningKeyPair::generate(&mut rng);
        let sender = SigningKeyPair::generate(&mut rng);
        assert_eq!(
            core.handle_now(&conn, Request::hello(), NOW).0,
            Response::Hello { version: 1 }
        );
        let dh = DhKeyPair::generate(&mut rng);
        let req = Request::create_mailbox(&recipient, *dh.public(), &conn.binding);
        let Response::MailboxCreated {
            receive_id,
            send_id,
            relay_dh,
        } = core.handle_now(&conn, req, NOW).0
        else {
            panic!("not created")
        };
        assert_ne!(receive_id, send_id);
        let key = DeliveryKey::for_recipient(&dh, &relay_dh).unwrap();
        World {
            core,
            conn,
            recipient,
            sender,
            receive_id,
            send_id,
            key,
        }
    }

    fn envelope(w: &World, signer: &SigningKeyPair, msg: u8) -> Envelope {
        Envelope::sign(
            signer,
            w.send_id,
            MessageId([msg; 16]),
            CoarseTime(1),
            &[msg; BODY_SMALL],
        )
        .unwrap()
    }

    fn send(w: &World, env: Envelope, now: u64) -> Response {
        w.core.handle_now(&w.conn, Request::Send(env), now).0
    }

    fn secure(w: &World) {
        let req = Request::secure(
            w.receive_id,
            *w.sender.public(),
            &w.recipient,
            &w.conn.binding,
        );
        assert_eq!(w.core.handle_now(&w.conn, req, NOW).0, Response::Ok);
    }

    #[test]
    fn nothing_before_hello() {
        let core = Core::new(Arc::new(RedbStore::in_memory().unwrap()), Limits::default());
        let conn = ConnState::new(ConnectionBinding([1; 32]), NOW);
        let k = SigningKeyPair::from_secret_bytes(&[1; 32]);
        let req = Request::create_mailbox(&k, [9; 32], &conn.binding);
        assert_eq!(
            core.handle_now(&conn, req, NOW).0,
            Response::Error(RelayError::Malformed)
        );
        let bad = Request::Hello {
            min_version: 2,
            max_version: 9,
        };
        assert_eq!(
            core.handle_now(&conn, bad, NOW).0,
            Response::Error(RelayError::UnsupportedVersion { min: 1, max: 1 })
        );
    }

    #[test]
    fn send_deliver_ack_with_reencryption() {
        let w = world(Limits::default());
        secure(&w);
        let env = envelope(&w, &w.sender, 1);
        assert_eq!(send(&w, env.clone(), NOW), Response::Stored);
        // Duplicate message id: answered, not stored twice.
        assert_eq!(send(&w, env.clone(), NOW), Response::Stored);
        let sub = Request::subscribe(w.receive_id, &w.recipient, &w.conn.binding);
        let (resp, step) = w.core.handle_now(&w.conn, sub, NOW);
        assert_eq!(resp, Response::Ok);
        assert!(matches!(step, Step::Subscribe { .. }));
        let d = w
            .core
            .deliveries(&w.receive_id, &w.key, None, NOW, 10)
            .unwrap();
        assert_eq!(d.len(), 1);
        assert_ne!(d[0].sealed, env.as_bytes());
        assert!(
            !d[0]
                .sealed
                .windows(64)
                .any(|win| env.as_bytes().ends_with(win))
        );
        assert_eq!(w.key.open(&w.receive_id, &d[0].sealed).unwrap(), env);
        let ack = Request::ack(
            w.receive_id,
            env.message_id(),
            &w.recipient,
            &w.conn.binding,
        );
        assert_eq!(w.core.handle_now(&w.conn, ack, NOW).0, Response::Ok);
        assert!(
            w.core
                .deliveries(&w.receive_id, &w.key, None, NOW, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn secured_mailbox_refuses_other_signers() {
        let w = world(Limits::default());
        secure(&w);
        let stranger = SigningKeyPair::from_secret_bytes(&[9; 32]);
        assert_eq!(
            send(&w, envelope(&w, &stranger, 1), NOW),
            Response::Error(RelayError::Auth)
        );
    }

    /// Only signature checks this connection's requests failed count
    /// against its budget: not a used-up first-contact allowance (anyone
    /// knowing an unsecured mailbox's send id can use it up), not the
    /// `Send` inside a `RelayDeliver`.
    #[test]
    fn only_failed_signature_checks_count_against_the_budget() {
        let w = world(Limits {
            first_contact_limit: 2,
            ..Limits::default()
        });
        let stranger = SigningKeyPair::from_secret_bytes(&[9; 32]);
        assert_eq!(send(&w, envelope(&w, &stranger, 1), NOW), Response::Stored);
        assert_eq!(send(&w, envelope(&w, &stranger, 2), NOW), Response::Stored);
        for msg in 3..30 {
            assert_eq!(
                send(&w, envelope(&w, &stranger, msg), NOW),
                Response::Error(RelayError::Auth)
            );
        }
        assert_eq!(w.conn.failed_checks(), 0);

        secure(&w);
        // A connection that passed a check (this one created the mailbox)
        // is not charged for a send the mailbox's key refuses: the owner
        // chose that key. One that never passed a check is.
        assert!(w.conn.has_passed_a_check());
        assert_eq!(
            send(&w, envelope(&w, &stranger, 40), NOW),
            Response::Error(RelayError::Auth)
        );
        assert_eq!(w.conn.failed_checks(), 0);
        assert!(w.conn.is_proven());
        let fresh = ConnState::new(ConnectionBinding([7; 32]), NOW);
        w.core.handle_now(&fresh, Request::hello(), NOW);
        assert_eq!(
            w.core
                .handle_now(&fresh, Request::Send(envelope(&w, &stranger, 41)), NOW)
                .0,
            Response::Error(RelayError::Auth)
        );
        assert_eq!(fresh.failed_checks(), 1);
        let other_binding = ConnectionBinding([2; 32]);
        for req in [
            Request::subscribe(w.receive_id, &w.recipient, &other_binding),
            Request::delete(w.receive_id, &w.sender, &w.conn.binding),
            Request::ack(w.receive_id, MessageId([1; 16]), &w.sender, &w.conn.binding),
            Request::secure(w.receive_id, *stranger.public(), &w.sender, &w.conn.binding),
            Request::create_mailbox(
                &stranger,
                *DhKeyPair::generate(&mut rand::rng()).public(),
                &other_binding,
            ),
        ] {
            assert_eq!(
                w.core.handle_now(&w.conn, req, NOW).0,
                Response::Error(RelayError::Auth)
            );
        }
        assert_eq!(w.conn.failed_checks(), 5);
    }

    /// An ack whose signature fails leaves the recipient key uncached:
    /// anyone knowing receive ids could otherwise churn the cache.
    #[test]
    fn only_a_verified_ack_caches_the_recipient_key() {
        let w = world(Limits::default());
        let ack = |signer: &SigningKeyPair| {
            Request::ack(w.receive_id, MessageId([1; 16]), signer, &w.conn.binding)
        };
        assert_eq!(
            w.core.handle_now(&w.conn, ack(&w.sender), NOW).0,
            Response::Error(RelayError::Auth)
        );
        assert!(!w.core.recipients.lock().contains_key(&w.receive_id));
        assert_eq!(
            w.core.handle_now(&w.conn, ack(&w.recipient), NOW).0,
            Response::Ok
        );
        assert!(w.core.recipients.lock().contains_key(&w.receive_id));
    }

    #[test]
    fn first_contact_is_limited() {
        let w = world(Limits {
            first_contact_limit: 2,
            ..Limits::default()
        });
        let stranger = SigningKeyPair::from_secret_bytes(&[9; 32]);
        assert_eq!(send(&w, envelope(&w, &stranger, 1), NOW), Response::Stored);
        assert_eq!(send(&w, envelope(&w, &stranger, 2), NOW), Response::Stored);
        assert_eq!(
            send(&w, envelope(&w, &stranger, 3), NOW),
            Response::Error(RelayError::Auth)
        );
    }

    #[test]
    fn unsigned_sends_are_rate_limited_per_connection() {
        let w = world(Limits {
            first_contact_limit: 100,
            ..Limits::default()
        });
        for i in 0..FIRST_CONTACT_BURST as u8 {
            assert_eq!(send(&w, envelope(&w, &w.sender, i), NOW), Response::Stored);
        }
        assert_eq!(
            send(&w, envelope(&w, &w.sender, 50), NOW),
            Response::Error(RelayError::RateLimited {
                retry_after_secs: FIRST_CONTACT_REFILL_SECS as u32
            })
        );
        let later = NOW + FIRST_CONTACT_REFILL_SECS;
        assert_eq!(
            send(&w, envelope(&w, &w.sender, 51), later),
            Response::Stored
        );
    }

    #[test]
    fn mailbox_creation_is_rate_limited_per_connection() {
        let core = Core::new(Arc::new(RedbStore::in_memory().unwrap()), Limits::default());
        let conn = ConnState::new(ConnectionBinding([1; 32]), NOW);
        core.handle_now(&conn, Request::hello(), NOW);
        let create = |now| {
            let k = SigningKeyPair::generate(&mut rand::rng());
            let dh = DhKeyPair::generate(&mut rand::rng());
            let req = Request::create_mailbox(&k, *dh.public(), &conn.binding);
            core.handle_now(&conn, req, now).0
        };
        for _ in 0..CREATE_BURST {
            assert!(matches!(create(NOW), Response::MailboxCreated { .. }));
        }
        assert_eq!(
            create(NOW),
            Response::Error(RelayError::RateLimited {
                retry_after_secs: CREATE_REFILL_SECS as u32
            })
        );
        assert!(matches!(
            create(NOW + CREATE_REFILL_SECS),
            Response::MailboxCreated { .. }
        ));
        assert_eq!(core.store().stats().unwrap().mailboxes, 17);
    }

    #[test]
    fn reconnecting_does_not_reset_the_hosts_creation_allowance() {
        let core = Core::new(Arc::new(RedbStore::in_memory().unwrap()), Limits::default());
        let hosts = Arc::new(HostLimits::default());
        let host: IpAddr = "192.0.2.1".parse().unwrap();
        let mut created = 0;
        let mut refused = None;
        // Each connection spends its own burst, then the client reconnects.
        for c in 0..=(HOST_CREATE_BURST / CREATE_BURST) {
            let conn =
                ConnState::with_host(ConnectionBinding([c as u8; 32]), NOW, hosts.clone(), host);
            core.handle_now(&conn, Request::hello(), NOW);
            for _ in 0..CREATE_BURST {
                let k = SigningKeyPair::generate(&mut rand::rng());
                let dh = DhKeyPair::generate(&mut rand::rng());
                let req = Request::create_mailbox(&k, *dh.public(), &conn.binding);
                match core.handle_now(&conn, req, NOW).0 {
                    Response::MailboxCreated { .. } => created += 1,
                    other => {
                        refused = Some(other);
                        break;
                    }
                }
            }
        }
        assert_eq!(created, HOST_CREATE_BURST);
        assert_eq!(
            refused,
            Some(Response::Error(RelayError::RateLimited {
                retry_after_secs: CREATE_REFILL_SECS as u32
            }))
        );
        // Another host is not affected.
        let other = ConnState::with_host(
            ConnectionBinding([99; 32]),
            NOW,
            hosts,
            "192.0.2.2".parse().unwrap(),
        );
        core.handle_now(&other, Request::hello(), NOW);
        let k = SigningKeyPair::generate(&mut rand::rng());
        let dh = DhKeyPair::generate(&mut rand::rng());
        let req = Request::create_mailbox(&k, *dh.public(), &other.binding);
        assert!(matches!(
            core.handle_now(&other, req, NOW).0,
            Response::MailboxCreated { .. }
        ));
    }

    #[test]
    fn the_host_table_is_pruned_of_full_buckets_only() {
        let hosts = HostLimits::default();
        let n = HOST_TABLE_PRUNE_AT + 10;
        for i in 0..n {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from_bits((i as u128) << 64));
            hosts.take_create(ip, NOW).unwrap();
        }
        // Nothing was full yet: all kept, and the next prune is further out.
        let table = hosts.creates.lock().unwrap();
        assert_eq!(table.buckets.len(), n);
        assert!(table.prune_at >= 2 * HOST_TABLE_PRUNE_AT);
        drop(table);
        // Long after, every old bucket is full again and is forgotten.
        let later = NOW + u64::from(HOST_CREATE_BURST) * CREATE_REFILL_SECS;
        for i in 0..(2 * HOST_TABLE_PRUNE_AT) {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from_bits(((n + i) as u128) << 64));
            hosts.take_create(ip, later).unwrap();
        }
        assert!(hosts.creates.lock().unwrap().buckets.len() < n + HOST_TABLE_PRUNE_AT);
    }

    #[test]
    fn ms_buckets_refill_at_their_rate_and_keep_partial_time() {
        let mut b = MsBucket::full(4, 1_000);
        b.tokens = 0;
        b.refill(4, 100, 1_050);
        assert_eq!(b.tokens, 0);
        b.refill(4, 100, 1_150);
        assert_eq!(b.tokens, 1);
        // The 50 ms left over from the first token count toward the next.
        b.refill(4, 100, 1_200);
        assert_eq!(b.tokens, 2);
        b.refill(4, 100, 9_000);
        assert_eq!(b.tokens, 4);
        // A clock that goes back earns nothing.
        b.tokens = 0;
        b.refill(4, 100, 10);
        assert_eq!(b.tokens, 0);
    }

    fn policy() -> HostPolicy {
        HostPolicy {
            failed_checks: 4,
            failed_check_refill_ms: 1_000,
            new_connections: 8,
            new_connection_refill_ms: 100,
        }
    }

    #[test]
    fn a_host_out_of_failed_checks_is_still_admitted_and_fails_one_at_a_time() {
        let hosts = HostLimits::new(policy());
        let (bad, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = 5_000_000;
        assert!(hosts.fail_check(bad, t));
        assert!(hosts.fail_check(bad, t));
        assert!(hosts.fail_check(bad, t));
        // The fourth uses the budget up: that connection is closed, and so
        // is every connection of the host at its first failure until one
        // is earned back.
        assert!(!hosts.fail_check(bad, t));
        assert!(!hosts.fail_check(bad, t));
        // Neighbours behind the same address who fail nothing still
        // connect (only the new-connection rate limits them).
        assert_eq!(hosts.admit(bad, t, true), HostAdmission::Accept);
        assert_eq!(hosts.admit(other, t, true), HostAdmission::Accept);
        assert!(!hosts.fail_check(bad, t + 999));
        // One earned back after the refill time, then spent at once.
        assert!(!hosts.fail_check(bad, t + 1_999));
        assert!(!hosts.fail_check(bad, t + 2_000));
        assert!(hosts.fail_check(bad, t + 10_000));
    }

    #[test]
    fn refusals_past_a_few_per_second_are_dropped_unanswered() {
        let hosts = HostLimits::new(HostPolicy {
            new_connection_refill_ms: 60_000,
            ..policy()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = 5_000_000;
        for _ in 0..8 {
            assert_eq!(hosts.admit(ip, t, true), HostAdmission::Accept);
        }
        for _ in 0..REFUSALS_PER_SEC {
            assert_eq!(hosts.admit(ip, t, true), HostAdmission::Refuse);
        }
        assert_eq!(hosts.admit(ip, t + 10, true), HostAdmission::Ignore);
        // A new second: refused (answered) again.
        assert_eq!(hosts.admit(ip, t + 1_010, true), HostAdmission::Refuse);
    }

    #[test]
    fn new_connections_past_the_burst_are_refused_and_past_half_need_a_retry() {
        let hosts = HostLimits::new(policy());
        let (ip, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = 5_000_000;
        for _ in 0..4 {
            assert_eq!(hosts.admit(ip, t, false), HostAdmission::Accept);
        }
        // Half the burst is left: unvalidated (maybe spoofed) attempts get
        // a Retry and take no token, validated ones go on.
        for _ in 0..100 {
            assert_eq!(hosts.admit(ip, t, false), HostAdmission::Retry);
        }
        for _ in 0..4 {
            assert_eq!(hosts.admit(ip, t, true), HostAdmission::Accept);
        }
        assert_eq!(hosts.admit(ip, t, true), HostAdmission::Refuse);
        assert_eq!(hosts.admit(other, t, false), HostAdmission::Accept);
        // One more per 100 ms.
        assert_eq!(hosts.admit(ip, t + 100, true), HostAdmission::Accept);
        assert_eq!(hosts.admit(ip, t + 150, true), HostAdmission::Refuse);
    }

    #[test]
    fn the_host_rate_table_is_pruned_of_fresh_entries_only() {
        let hosts = HostLimits::new(policy());
        let t = 5_000_000;
        let ip = |i: usize| IpAddr::V6(std::net::Ipv6Addr::from_bits((i as u128) << 64));
        let n = HOST_RATE_PRUNE_AT + 10;
        for i in 0..n {
            hosts.fail_check(ip(i), t);
        }
        // Nothing has refilled: all kept, and the next prune is further out.
        assert_eq!(hosts.tracked_hosts(), n);
        assert!(hosts.rates.lock().unwrap().prune_at >= 2 * HOST_RATE_PRUNE_AT);
        // A host still refused is remembered across a prune.
        for _ in 0..4 {
            hosts.fail_check(ip(0), t);
        }
        // Once refilled, the old entries equal fresh ones and are forgotten.
        let later = t + 1_000;
        for i in 0..(2 * HOST_RATE_PRUNE_AT) {
            hosts.admit(ip(n + i), later, true);
        }
        assert!(hosts.tracked_hosts() < n + HOST_RATE_PRUNE_AT);
        assert!(hosts.rates.lock().unwrap().hosts.contains_key(&ip(0)));
    }

    #[test]
    fn a_connection_is_proven_by_a_passed_check_and_loses_it_on_a_failed_one() {
        let w = world(Limits::default());
        // The world's connection created a mailbox: proof of possession.
        assert!(w.conn.is_proven());
        let fresh = ConnState::new(ConnectionBinding([2; 32]), NOW);
        w.core.handle_now(&fresh, Request::hello(), NOW);
        assert!(!fresh.is_proven());
        // An unsigned first-contact send proves nothing.
        assert_eq!(
            w.core
                .handle_now(&fresh, Request::Send(envelope(&w, &w.sender, 1)), NOW)
                .0,
            Response::Stored
        );
        assert!(!fresh.is_proven());
        secure(&w);
        assert_eq!(
            w.core
                .handle_now(&fresh, Request::Send(envelope(&w, &w.sender, 2)), NOW)
                .0,
            Response::Stored
        );
        assert!(fresh.is_proven());
        let stranger = SigningKeyPair::generate(&mut rand::rng());
        assert_eq!(
            w.core
                .handle_now(&fresh, Request::Send(envelope(&w, &stranger, 3)), NOW)
                .0,
            Response::Error(RelayError::Auth)
        );
        // A send the mailbox's key refuses does not demote a connection
        // that proved itself (the owner chose the key); a recipient
        // command that fails its check does.
        assert!(fresh.is_proven());
        let forged = Request::ack(w.receive_id, MessageId([1; 16]), &stranger, &fresh.binding);
        assert_eq!(
            w.core.handle_now(&fresh, forged, NOW).0,
            Response::Error(RelayError::Auth)
        );
        assert!(!fresh.is_proven());
    }

    /// A proof of possession alone proves nothing: only a creation that goes
    /// ahead (and uses up the host's allowance) does, so an attacker cannot
    /// earn the fast lane with fresh keys and refused creations.
    #[test]
    fn a_refused_mailbox_creation_does_not_prove_a_connection() {
        let core = Core::new(Arc::new(RedbStore::in_memory().unwrap()), Limits::default());
        let limits = Arc::new(HostLimits::default());
        let host: IpAddr = "192.0.2.7".parse().unwrap();
        let create = |conn: &ConnState| {
            let k = SigningKeyPair::generate(&mut rand::rng());
            let dh = DhKeyPair::generate(&mut rand::rng());
            let req = Request::create_mailbox(&k, *dh.public(), &conn.binding);
            core.handle_now(conn, req, NOW).0
        };
        // Use up the host's creations over several connections.
        let mut c = 0u8;
        loop {
            let conn = ConnState::with_host(ConnectionBinding([c; 32]), NOW, limits.clone(), host);
            core.handle_now(&conn, Request::hello(), NOW);
            c += 1;
            let refused = (0..CREATE_BURST).any(|_| {
                matches!(
                    create(&conn),
                    Response::Error(RelayError::RateLimited { .. })
                )
            });
            if refused {
                break;
            }
        }
        let fresh = ConnState::with_host(ConnectionBinding([200; 32]), NOW, limits, host);
        core.handle_now(&fresh, Request::hello(), NOW);
        assert!(matches!(
            create(&fresh),
            Response::Error(RelayError::RateLimited { .. })
        ));
        assert!(!fresh.is_proven());
        assert!(!fresh.has_passed_a_check());
    }

    #[test]
    fn failed_checks_count_against_the_host_across_connections() {
        let w = world(Limits::default());
        secure(&w);
        let limits = Arc::new(HostLimits::new(policy()));
        let host: IpAddr = "192.0.2.9".parse().unwrap();
        let stranger = SigningKeyPair::generate(&mut rand::rng());
        let mut closed = Vec::new();
        for c in 0..2u8 {
            let conn = ConnState::with_host(ConnectionBinding([c; 32]), NOW, limits.clone(), host);
            w.core.handle_now(&conn, Request::hello(), NOW);
            for m in 0..2 {
                let env = envelope(&w, &stranger, c * 2 + m);
                w.core.handle_now(&conn, Request::Send(env), NOW);
            }
            closed.push(conn.host_exhausted());
        }
        // Two failures each: the second connection used the host's four up.
        assert_eq!(closed, vec![false, true]);
        // A third connection of the host is closed at its first failure.
        let third = ConnState::with_host(ConnectionBinding([7; 32]), NOW, limits.clone(), host);
        w.core.handle_now(&third, Request::hello(), NOW);
        w.core
            .handle_now(&third, Request::Send(envelope(&w, &stranger, 9)), NOW);
        assert!(third.host_exhausted());
    }

    #[test]
    fn full_host_buckets_are_forgotten_only_when_equal_to_new_ones() {
        let mut b = Bucket::new(4, 10, NOW);
        assert!(b.is_full(NOW));
        b.take(NOW).unwrap();
        assert!(!b.is_full(NOW + 9));
        assert!(b.is_full(NOW + 10));
    }

    #[test]
    fn quota_and_unknown_mailbox() {
        let w = world(Limits {
            quota: 2,
            ..Limits::default()
        });
        secure(&w);
        assert_eq!(send(&w, envelope(&w, &w.sender, 1), NOW), Response::Stored);
        assert_eq!(send(&w, envelope(&w, &w.sender, 2), NOW), Response::Stored);
        assert_eq!(
            send(&w, envelope(&w, &w.sender, 3), NOW),
            Response::Error(RelayError::Quota)
        );
        let other = Envelope::sign(
            &w.sender,
            MailboxId([0xee; 16]),
            MessageId([1; 16]),
            CoarseTime(1),
            &[0; BODY_SMALL],
        )
        .unwrap();
        assert_eq!(
            send(&w, other, NOW),
            Response::Error(RelayError::UnknownMailbox)
        );
    }

    #[test]
    fn recipient_commands_bound_to_connection_and_key() {
        let w = world(Limits::default());
        let other_conn = ConnectionBinding([2; 32]);
        let replayed = Request::subscribe(w.receive_id, &w.recipient, &other_conn);
        assert_eq!(
            w.core.handle_now(&w.conn, replayed, NOW).0,
            Response::Error(RelayError::Auth)
        );
        let wrong_key = Request::delete(w.receive_id, &w.sender, &w.conn.binding);
        assert_eq!(
            w.core.handle_now(&w.conn, wrong_key, NOW).0,
            Response::Error(RelayError::Auth)
        );
        let del = Request::delete(w.receive_id, &w.recipient, &w.conn.binding);
        assert_eq!(w.core.handle_now(&w.conn, del, NOW).0, Response::Ok);
        assert_eq!(
            send(&w, envelope(&w, &w.sender, 1), NOW),
            Response::Error(RelayError::UnknownMailbox)
        );
    }

    #[test]
    fn a_cached_recipient_key_authorizes_nothing_once_the_mailbox_is_gone() {
        let w = world(Limits::default());
        secure(&w);
        let env = envelope(&w, &w.sender, 1);
        assert_eq!(send(&w, env.clone(), NOW), Response::Stored);
        let ack = |signer: &SigningKeyPair| {
            Request::ack(w.receive_id, env.message_id(), signer, &w.conn.binding)
        };
        // The first ack caches the recipient key; a wrong signer is still
        // refused against the cached key.
        assert_eq!(
            w.core.handle_now(&w.conn, ack(&w.recipient), NOW).0,
            Response::Ok
        );
        assert_eq!(
            w.core.handle_now(&w.conn, ack(&w.sender), NOW).0,
            Response::Error(RelayError::Auth)
        );
        // A delete committed behind the cache's back (as a concurrent one
        // racing the check would be): the ack's own commit refuses it.
        w.core
            .store()
            .apply(&[WriteOp::Delete {
                receive_id: w.receive_id,
            }])
            .unwrap();
        assert_eq!(
            w.core.handle_now(&w.conn, ack(&w.recipient), NOW).0,
            Response::Error(RelayError::UnknownMailbox)
        );
    }

    #[test]
    fn a_delete_forgets_the_cached_recipient_key() {
        let w = world(Limits::default());
        let ack = Request::ack(
            w.receive_id,
            MessageId([9; 16]),
            &w.recipient,
            &w.conn.binding,
        );
        assert_eq!(w.core.handle_now(&w.conn, ack.clone(), NOW).0, Response::Ok);
        assert!(w.core.recipients.lock().contains_key(&w.receive_id));
        let del = Request::delete(w.receive_id, &w.recipient, &w.conn.binding);
        assert_eq!(w.core.handle_now(&w.conn, del, NOW).0, Response::Ok);
        assert!(!w.core.recipients.lock().contains_key(&w.receive_id));
        assert_eq!(
            w.core.handle_now(&w.conn, ack, NOW).0,
            Response::Error(RelayError::UnknownMailbox)
        );
    }

    #[test]
    fn ttl_uses_arrival_time() {
        let w = world(Limits {
            ttl_secs: 100,
            ..Limits::default()
        });
        secure(&w);
        assert_eq!(send(&w, envelope(&w, &w.sender, 1), NOW), Response::Stored);
        assert_eq!(
            send(&w, envelope(&w, &w.sender, 2), NOW + 50),
            Response::Stored
        );
        let at = NOW + 120;
        let d = w
            .core
            .deliveries(&w.receive_id, &w.key, None, at, 10)
            .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message_id, MessageId([2; 16]));
        let out = w.core.store().apply(&[w.core.expiry_op(at, 100)]).unwrap();
        assert_eq!(out, vec![WriteOutcome::Expired { count: 1 }]);
        assert_eq!(w.core.store().stats().unwrap().envelopes, 1);
    }

    #[test]
    fn one_connection_names_few_relays() {
        use enlace_protocol::keys::Fingerprint;

        let dir = tempfile::tempdir().unwrap();
        let id = Arc::new(Identity::load_or_create(dir.path()).unwrap());
        let w = world(Limits::default());
        let core = Core::new(w.core.store().clone(), Limits::default()).with_identity(id);
        let conn = ConnState::new(ConnectionBinding([3; 32]), NOW);
        core.handle_now(&conn, Request::hello(), NOW);
        conn.mark_own();
        let fetch = |port: u16| Request::FetchRelayKey {
            destination: RelayAddress::new(Fingerprint([5; 32]), "127.0.0.1", port).unwrap(),
        };
        let allowed = |r: Response| r == Response::Error(RelayError::Unreachable);
        for port in 0..MAX_DESTINATIONS_PER_CONN as u16 {
            assert!(allowed(core.handle_now(&conn, fetch(1000 + port), NOW).0));
        }
        // One more host is refused; one already named is not.
        assert_eq!(
            core.handle_now(&conn, fetch(2000), NOW + 10).0,
            Response::Error(RelayError::RateLimited {
                retry_after_secs: DESTINATION_WINDOW_SECS as u32 - 10
            })
        );
        assert!(allowed(core.handle_now(&conn, fetch(1000), NOW + 10).0));
        // After the window a new one may be named again.
        let later = NOW + DESTINATION_WINDOW_SECS;
        assert!(allowed(core.handle_now(&conn, fetch(2000), later).0));
    }

    #[test]
    fn forwarding_is_for_own_clients_and_relay_deliver_is_a_send() {
        use enlace_protocol::command::{Forward, ForwardId, ForwardState};
        use enlace_protocol::forward::seal_send;
        use enlace_protocol::keys::Fingerprint;

        let dir = tempfile::tempdir().unwrap();
        let id = Arc::new(Identity::load_or_create(dir.path()).unwrap());
        let w = world(Limits::default());
        secure(&w);
        let limits = Limits {
            forward_queue_limit: 1,
            ..Limits::default()
        };
        let core = Core::new(w.core.store().clone(), limits).with_identity(id.clone());
        let me = RelayAddress::new(id.fingerprint(), "127.0.0.1", 4433).unwrap();
        let other = RelayAddress::new(Fingerprint([5; 32]), "127.0.0.1", 9).unwrap();

        // A stranger gets this relay's own key, and nothing else.
        let stranger = ConnState::new(ConnectionBinding([2; 32]), NOW);
        core.handle_now(&stranger, Request::hello(), NOW);
        let own_key = match core
            .handle_now(
                &stranger,
                Request::FetchRelayKey {
                    destination: me.clone(),
                },
                NOW,
            )
            .0
        {
            Response::RelayKey(k) => k,
            r => panic!("{r:?}"),
        };
        let forward_dh = own_key.verify(&id.fingerprint(), NOW).unwrap();
        let sealed = |env: &Envelope| {
            seal_send(&mut rand::rng(), &id.fingerprint(), &forward_dh, env).unwrap()
        };
        let forward = |fid: u8, sealed: Vec<u8>, to: &RelayAddress| {
            Request::Forward(Forward {
                destination: to.clone(),
                forward_id: ForwardId([fid; 16]),
                sealed,
            })
        };
        let env = envelope(&w, &w.sender, 1);
        for req in [
            Request::FetchRelayKey {
                destination: other.clone(),
            },
            forward(1, sealed(&env), &other),
            Request::ForwardStatus {
                ids: vec![ForwardId([1; 16])],
            },
        ] {
            assert_eq!(
                core.handle_now(&stranger, req, NOW).0,
                Response::Error(RelayError::NotOwnClient)
            );
        }

        // Anyone may deliver a sealed send; it is handled as that send.
        assert_eq!(
            core.handle_now(
                &stranger,
                Request::RelayDeliver {
                    sealed: sealed(&env)
                },
                NOW
            )
            .0,
            Response::Stored
        );
        let delivered = core
            .deliveries(&w.receive_id, &w.key, None, NOW, 10)
            .unwrap();
        assert_eq!(delivered.len(), 1);
        assert_eq!(delivered[0].message_id, env.message_id());
        let mut tampered = sealed(&envelope(&w, &w.sender, 2));
        tampered[60] ^= 1;
        assert_eq!(
            core.handle_now(&stranger, Request::RelayDeliver { sealed: tampered }, NOW)
                .0,
            Response::Error(RelayError::Auth)
        );
        // A stranger's signature inside is refused like a direct send.
        let forged = sealed(&envelope(
            &w,
            &SigningKeyPair::from_secret_bytes(&[9; 32]),
            3,
        ));
        assert_eq!(
            core.handle_now(&stranger, Request::RelayDeliver { sealed: forged }, NOW)
                .0,
            Response::Error(RelayError::Auth)
        );
        // Neither counts against the forwarding relay's connection: its
        // clients sealed them.
        assert_eq!(stranger.failed_checks(), 0);
        // The delivered signed send proved it; enough failed deliveries
        // demote it to the low-priority lane, without closing it.
        assert!(stranger.is_proven());
        for _ in 2..RELAYED_FAILURES_DEMOTE {
            let mut tampered = sealed(&envelope(&w, &w.sender, 4));
            tampered[60] ^= 1;
            core.handle_now(&stranger, Request::RelayDeliver { sealed: tampered }, NOW);
        }
        assert_eq!(stranger.failed_relayed_checks(), RELAYED_FAILURES_DEMOTE);
        assert!(!stranger.is_proven());
        assert_eq!(stranger.failed_checks(), 0);
        assert!(!stranger.host_exhausted());
        // A home relay whose honest deliveries keep up with one client's
        // garbage (at least one in RELAYED_FAILURES_PER_PASS + 1) stays
        // proven: demoting it would queue its honest forwards too. Ten
        // passes allow 80 failures, past the 64 that demote a connection
        // with none.
        let home = ConnState::new(ConnectionBinding([3; 32]), NOW);
        core.handle_now(&home, Request::hello(), NOW);
        let valid = |n: u8| Request::RelayDeliver {
            sealed: sealed(&envelope(&w, &w.sender, n)),
        };
        for n in 10..20 {
            core.handle_now(&home, valid(n), NOW);
        }
        // Replays of a stored one are answered Stored but buy nothing.
        for _ in 0..20 {
            assert_eq!(core.handle_now(&home, valid(10), NOW).0, Response::Stored);
        }
        let garbage = || {
            let mut tampered = sealed(&envelope(&w, &w.sender, 4));
            tampered[60] ^= 1;
            Request::RelayDeliver { sealed: tampered }
        };
        for _ in 0..10 * RELAYED_FAILURES_PER_PASS {
            core.handle_now(&home, garbage(), NOW);
        }
        assert!(home.is_proven());
        assert!(!home.is_suspect());
        core.handle_now(&home, garbage(), NOW);
        assert!(!home.is_proven());
        // Demoted, but its checks passed before: it waits with newcomers,
        // at normal priority, not on the suspect thread.
        assert!(!home.is_suspect());
        // One more honest delivery and it is back.
        core.handle_now(&home, valid(20), NOW);
        assert!(home.is_proven());
        // A connection none of whose checks passed is suspect after one
        // failed delivery, also one whose seal opens but names no mailbox
        // (it cost the X25519 exchange all the same).
        let nowhere = Envelope::sign(
            &w.sender,
            MailboxId([0xee; 16]),
            MessageId([7; 16]),
            CoarseTime(1),
            &[0u8; BODY_SMALL],
        )
        .unwrap();
        let fresh = ConnState::new(ConnectionBinding([4; 32]), NOW);
        core.handle_now(&fresh, Request::hello(), NOW);
        assert!(!fresh.is_suspect());
        let sealed_nowhere = sealed(&nowhere);
        assert_eq!(
            core.handle_now(
                &fresh,
                Request::RelayDeliver {
                    sealed: sealed_nowhere
                },
                NOW
            )
            .0,
            Response::Error(RelayError::UnknownMailbox)
        );
        assert_eq!(fresh.failed_relayed_checks(), 1);
        assert!(fresh.is_suspect());

        // The connection that created a mailbox is an own client: its
        // forward is queued, the queue limit holds, a forward to this relay
        // itself is refused.
        assert!(w.conn.is_own());
        assert_eq!(
            core.handle_now(&w.conn, forward(1, sealed(&env), &other), NOW)
                .0,
            Response::Queued
        );
        assert_eq!(
            core.handle_now(&w.conn, forward(1, sealed(&env), &other), NOW)
                .0,
            Response::Queued
        );
        assert_eq!(
            core.handle_now(&w.conn, forward(2, sealed(&env), &other), NOW)
                .0,
            Response::Error(RelayError::ForwardQueueFull)
        );
        assert_eq!(
            core.handle_now(&w.conn, forward(3, sealed(&env), &me), NOW)
                .0,
            Response::Error(RelayError::Malformed)
        );
        assert_eq!(
            core.handle_now(
                &w.conn,
                Request::ForwardStatus {
                    ids: vec![ForwardId([1; 16]), ForwardId([2; 16])]
                },
                NOW
            )
            .0,
            Response::ForwardStatus(vec![ForwardState::Queued, ForwardState::Unknown])
        );
        // A recipient command proves ownership on another connection.
        let other_conn = ConnState::new(ConnectionBinding([3; 32]), NOW);
        core.handle_now(&other_conn, Request::hello(), NOW);
        assert!(!other_conn.is_own());
        let ack = Request::ack(
            w.receive_id,
            MessageId([0; 16]),
            &w.recipient,
            &other_conn.binding,
        );
        assert_eq!(core.handle_now(&other_conn, ack, NOW).0, Response::Ok);
        assert!(other_conn.is_own());
    }
}
