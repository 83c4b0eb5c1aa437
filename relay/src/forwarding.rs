//! Relay-to-relay forwarding (docs/protocol.md section 12): the outgoing
//! QUIC client with the destination's fingerprint pinned, one reused
//! connection per destination address, and one retry worker per
//! destination fingerprint that walks the durable forward queue in order,
//! giving each failing forward and each failing address its own retry time
//! (exponential backoff with jitter) so one bad entry delays only itself.
//! The worker never waits on the network itself: each address's forwards
//! go to a lane (a task of their own), so a slow or dead address does not
//! delay the others at all, and new forwards wake the worker at once.
//!
//! Outgoing connections leave from the relay's listening endpoint, so a
//! destination sees this relay's address and port, never a client's.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, RelayError, Request, Response};
use enlace_protocol::forward::RelayKey;
use enlace_quic::config::{SERVER_NAME, relay_dialer_config};
use enlace_quic::frame::exchange;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::clock::Clock;
use crate::logic::limits::FORWARD_STATUS_KEEP_SECS;
use crate::metrics::Metrics;
use crate::policy::destinations::{MAX_DESTINATIONS_PER_HOUR, RecentDestinations, refused};
use crate::shutdown::until_shutdown;
use crate::store::StoreError;
use crate::store::forward::ForwardRecord;
use crate::store::forward::{QueueState, QueuedForward};
use crate::store::writer::Writer;
use crate::store::{Store, WriteOp};

/// How long connecting to another relay may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one relay-to-relay request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client's forward waits for the destination's answer before
/// it is told `Queued`: enough for a reachable relay's fsync, short enough
/// that a dead one does not hold the client.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);
/// First retry delay after a failed attempt.
pub const RETRY_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay: a blocked relay is tried about every five minutes.
pub const RETRY_MAX: Duration = Duration::from_secs(300);
/// Queued forwards a worker reads at a time.
const WORKER_BATCH: usize = 32;
/// Forwards one lane takes per run (it reads each from the store when its
/// turn comes, so waiting forwards are not held in memory).
const LANE_BATCH: usize = 32;
/// Addresses of one destination tried at once; the rest wait for a lane.
const MAX_LANES: usize = 64;
/// Deliveries one lane has under way at once, each on its own stream
/// (below the 24 concurrent streams a relay allows a connection, leaving
/// room for key fetches on the same connection).
const LANE_IN_FLIGHT: usize = 16;
/// Deliveries under way at once over all lanes of one destination: what
/// one lane per address had before lanes went concurrent, so a
/// destination whose addresses accept deliveries and never answer holds
/// no more forwards in memory than it did (each until its request times
/// out).
const DESTINATION_IN_FLIGHT: usize = MAX_LANES;
/// Destinations resumed at start (bounded by the total queue limit anyway).
const MAX_DESTINATIONS: usize = 65_536;
/// What a relay forwards, and for how long.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// How long a forward is retried from its arrival.
    pub(crate) ttl_secs: u64,
    /// Whether private, loopback and link-local destinations are allowed.
    pub(crate) allow_private: bool,
    /// This relay's own IPs (bound, public host): never a destination
    /// unless private ones are allowed (no hairpin through itself).
    pub(crate) own: Vec<IpAddr>,
}

/// Why a connection to another relay was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnectError {
    /// It did not answer (or this relay is at its destination cap): try
    /// again later.
    Unreachable,
    /// The destination policy refuses the address: never tried.
    Refused,
}

/// How often the destination cap warning is logged at most.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Counts refusals so their warning is logged once a minute with a count,
/// not once per refused connect (review L-C).
#[derive(Debug, Default)]
struct RateLimitedWarning {
    last: Option<Instant>,
    count: u64,
}

impl RateLimitedWarning {
    /// Another refusal at `now`: the number of refusals to report if a
    /// warning is due, else `None`.
    fn refused(&mut self, now: Instant) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < WARNING_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

/// One destination's cached connection; the async lock makes concurrent
/// users share one connection attempt.
type Slot = Arc<tokio::sync::Mutex<Option<quinn::Connection>>>;

/// The forwarding half of a relay.
pub(crate) struct Forwarder {
    endpoint: quinn::Endpoint,
    writer: Writer,
    store: Arc<dyn Store>,
    clock: Clock,
    ttl_secs: u64,
    shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    /// How long connecting may take ([`CONNECT_TIMEOUT`]; longer in tests).
    connect_timeout: Duration,
    /// Whether private, loopback and link-local destinations are allowed.
    allow_private: bool,
    /// This relay's own IPs, refused as destinations like private ones.
    own: Vec<IpAddr>,
    recent: Mutex<RecentDestinations>,
    cap_warning: Mutex<RateLimitedWarning>,
    /// Connections by full destination address (fingerprint, host and
    /// port), so a forward naming a wrong host never shares the real one's.
    peers: Mutex<Peers>,
    /// Running workers by destination fingerprint, each with the signal
    /// that wakes it when a forward is queued (a stored permit, so a kick
    /// that comes while the worker is busy is never lost).
    workers: Mutex<HashMap<[u8; 32], Arc<Notify>>>,
    waiters: Mutex<HashMap<ForwardId, Vec<oneshot::Sender<()>>>>,
    /// Destinations' bundles last fetched, handed out while a destination
    /// is unreachable so clients can still seal to it (the bundle is
    /// signed by the destination: this relay cannot forge one).
    keys: Mutex<HashMap<[u8; 32], Box<RelayKey>>>,
}

/// Destinations whose key bundles are remembered.
const MAX_CACHED_KEYS: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The retry delay after another failure: doubled, within
/// [`RETRY_MIN`, `RETRY_MAX`].
fn next_delay(delay: Duration) -> Duration {
    delay.saturating_mul(2).clamp(RETRY_MIN, RETRY_MAX)
}

/// A delay drawn from the second half of `delay` (jitter), so relays
/// that lost the same peer do not retry in step.
fn jitter(delay: Duration) -> Duration {
    let half = delay / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// When to try something again, and the delay that led there.
#[derive(Clone, Copy, Debug)]
struct Backoff {
    next: Instant,
    delay: Duration,
}

/// One worker's retry times, in memory: per queued forward (by queue
/// position) and per destination address (encoded). Lost on restart, when
/// everything is tried once again.
#[derive(Debug, Default)]
struct Schedule {
    entries: HashMap<u64, Backoff>,
    addresses: HashMap<Vec<u8>, Backoff>,
    /// When each address last answered: those that did within
    /// [`ANSWERED_RECENTLY`] always find a lane.
    answered: HashMap<Vec<u8>, Instant>,
    /// When each address last got a lane: the least recently served go
    /// first (round robin over addresses).
    started: HashMap<Vec<u8>, Instant>,
}

/// Lanes kept for addresses that answered recently (review M-D): forwards
/// to many dead addresses hold at most `MAX_LANES - RESERVED_LANES`.
const RESERVED_LANES: usize = 8;
/// How long an address that answered counts as live.
const ANSWERED_RECENTLY: Duration = Duration::from_secs(3600);

/// Address failures one worker remembers before it drops those that are
/// due anyway.
const MAX_SCHEDULED_ADDRESSES: usize = 4096;

impl Schedule {
    /// Another failure of `key`: doubles its delay, from `now`.
    fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Backoff>, key: K, now: Instant) {
        let b = map.entry(key).or_insert(Backoff {
            next: now,
            delay: Duration::ZERO,
        });
        b.delay = next_delay(b.delay);
        b.next = now + jitter(b.delay);
    }

    /// Whether the forward at `seq` to `address` may be tried at `now`.
    fn due(&self, seq: u64, address: &[u8], now: Instant) -> bool {
        let ready = |b: Option<&Backoff>| b.is_none_or(|b| b.next <= now);
        ready(self.entries.get(&seq)) && ready(self.addresses.get(address))
    }

    /// Drops the address failures that are due anyway once there are too
    /// many.
    fn trim(&mut self) {
        let now = Instant::now();
        if self.addresses.len() > MAX_SCHEDULED_ADDRESSES {
            self.addresses.retain(|_, b| b.next > now);
        }
        let recent = |t: &Instant| now.saturating_duration_since(*t) < ANSWERED_RECENTLY;
        if self.answered.len() > MAX_SCHEDULED_ADDRESSES {
            self.answered.retain(|_, t| recent(t));
        }
        if self.started.len() > MAX_SCHEDULED_ADDRESSES {
            // Forgetting when an address was served only moves it ahead.
            self.started.retain(|_, t| recent(t));
            if self.started.len() > MAX_SCHEDULED_ADDRESSES {
                self.started.clear();
            }
        }
    }

    /// Whether `key` answered within [`ANSWERED_RECENTLY`] of `now`.
    fn live(&self, key: &[u8], now: Instant) -> bool {
        self.answered
            .get(key)
            .is_some_and(|t| now.saturating_duration_since(*t) < ANSWERED_RECENTLY)
    }

    /// The lanes to start out of `candidates` (one per address, all due and
    /// idle): addresses that answered recently first, then those served
    /// least recently, within [`MAX_LANES`] running lanes of which at most
    /// `MAX_LANES - RESERVED_LANES` for addresses not known to answer, so
    /// forwards to many dead addresses cannot take every lane.
    fn choose(
        &mut self,
        candidates: HashMap<Vec<u8>, Run>,
        lanes: &Lanes,
        now: Instant,
    ) -> Vec<(Vec<u8>, Run)> {
        let mut free = MAX_LANES.saturating_sub(lanes.busy.len());
        let unknown_busy = lanes.busy.iter().filter(|k| !self.live(k, now)).count();
        let mut free_unknown = (MAX_LANES - RESERVED_LANES).saturating_sub(unknown_busy);
        let mut candidates: Vec<(Vec<u8>, Run)> = candidates.into_iter().collect();
        candidates.sort_by_key(|(k, run)| {
            (
                !self.live(k, now),
                self.started.get(k).copied(),
                run.seqs.first().copied(),
            )
        });
        let mut chosen = Vec::new();
        for (key, run) in candidates {
            if free == 0 {
                break;
            }
            if !self.live(&key, now) {
                if free_unknown == 0 {
                    continue;
                }
                free_unknown -= 1;
            }
            free -= 1;
            self.started.insert(key.clone(), now);
            chosen.push((key, run));
        }
        self.trim();
        chosen
    }

    /// How long until something not yet due at `planned` (when the last
    /// pass planned) becomes due, at least 10 ms, at most [`RETRY_MAX`].
    /// What was due at `planned` either went to a lane or waits for one (its
    /// address is busy, or every lane is): a lane's report wakes the worker
    /// for those, so they must not make it poll (review H-A: a due backoff
    /// of a running lane kept the worker re-reading its queue every 10 ms).
    /// With every lane busy nothing can start before a report.
    fn wait(&self, lanes: &Lanes, planned: Instant, now: Instant) -> Duration {
        if lanes.busy.len() >= MAX_LANES {
            return RETRY_MAX;
        }
        let entries = self
            .entries
            .iter()
            .filter(|(seq, _)| !lanes.given.contains(*seq))
            .map(|(_, b)| b);
        let addresses = self
            .addresses
            .iter()
            .filter(|(key, _)| !lanes.busy.contains(*key))
            .map(|(_, b)| b);
        entries
            .chain(addresses)
            .filter(|b| b.next > planned)
            .map(|b| b.next.saturating_duration_since(now))
            .min()
            .unwrap_or(RETRY_MAX)
            .clamp(Duration::from_millis(10), RETRY_MAX)
    }

    /// Records what a lane found.
    fn apply(&mut self, report: &LaneReport, now: Instant) {
        match report.address {
            AddressOutcome::Answered => {
                self.addresses.remove(&report.key);
                self.answered.insert(report.key.clone(), now);
                self.trim();
            }
            AddressOutcome::Failed => {
                Self::bump(&mut self.addresses, report.key.clone(), now);
                self.trim();
            }
            AddressOutcome::Untried => {}
        }
        for seq in &report.settled {
            self.entries.remove(seq);
        }
        for seq in &report.failed {
            Self::bump(&mut self.entries, *seq, now);
        }
    }
}

/// Whether a lane reached its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AddressOutcome {
    /// Connected, and every request got an answer.
    Answered,
    /// The connection or a request failed: the address waits.
    Failed,
    /// Shut down before connecting.
    Untried,
}

/// What one lane did with the forwards it was given.
#[derive(Debug)]
struct LaneReport {
    /// The address (encoded).
    key: Vec<u8>,
    /// Every forward the lane was given.
    given: Vec<u64>,
    address: AddressOutcome,
    /// Forwards settled for good (stored, refused).
    settled: Vec<u64>,
    /// Forwards that failed and wait for their own retry time.
    failed: Vec<u64>,
}

/// Sends a lane's report when the lane ends, also if it panics, so the
/// worker never waits for a lane that is gone.
struct ReportOnDrop {
    report: Option<LaneReport>,
    done: mpsc::Sender<LaneReport>,
}

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            // The channel holds MAX_LANES reports and at most MAX_LANES
            // lanes run, so this never finds it full; after the worker
            // stopped nobody needs the report.
            let _ = self.done.try_send(report);
        }
    }
}

/// A worker's running lanes.
#[derive(Debug, Default)]
struct Lanes {
    /// Addresses with a lane running.
    busy: HashSet<Vec<u8>>,
    /// Forwards given to a running lane.
    given: HashSet<u64>,
}

impl Lanes {
    fn finish(&mut self, report: &LaneReport) {
        self.busy.remove(&report.key);
        for seq in &report.given {
            self.given.remove(seq);
        }
    }
}

/// A lane to start: one address and the forwards due for it.
struct Run {
    address: RelayAddress,
    seqs: Vec<u64>,
}

/// How one delivery attempt ended.
enum Delivery {
    /// Stored or refused for good, and recorded.
    Settled,
    /// Deferred by the destination, or not recorded: retried later.
    Failed,
    /// The connection failed: the address waits.
    AddressFailed,
}

/// Outgoing connections kept open at most; past it the least recently
/// used is dropped (quinn closes a connection when its last handle goes).
const MAX_PEERS: usize = 256;

/// Cached outgoing connections by full address, least recently used
/// evicted past [`MAX_PEERS`].
#[derive(Default)]
struct Peers {
    slots: HashMap<Vec<u8>, (Slot, u64)>,
    /// Use counter: the last use of each slot orders them.
    tick: u64,
}

impl Peers {
    /// The slot of `key`, made the most recently used; evicts first if a
    /// new one would pass the cap.
    fn slot(&mut self, key: Vec<u8>) -> Slot {
        self.tick = self.tick.wrapping_add(1);
        let tick = self.tick;
        if let Some((slot, used)) = self.slots.get_mut(&key) {
            *used = tick;
            return slot.clone();
        }
        if self.slots.len() >= MAX_PEERS {
            // Slots whose connection is gone (or never came) first.
            self.slots.retain(|_, (s, _)| {
                s.try_lock()
                    .map(|c| c.as_ref().is_some_and(|c| c.close_reason().is_none()))
                    .unwrap_or(true)
            });
        }
        while self.slots.len() >= MAX_PEERS {
            let Some(oldest) = self
                .slots
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.slots.remove(&oldest);
        }
        let slot = Slot::default();
        self.slots.insert(key, (slot.clone(), tick));
        slot
    }

    fn remove(&mut self, key: &[u8]) {
        self.slots.remove(key);
    }
}

/// The key of a connection: the full encoded address.
fn address_key(address: &RelayAddress) -> Vec<u8> {
    let mut key = Vec::new();
    address.encode(&mut key);
    key
}

/// Errors a destination gives for a forward that retrying cannot fix.
fn is_permanent(e: &RelayError) -> bool {
    matches!(
        e,
        RelayError::Malformed
            | RelayError::UnsupportedVersion { .. }
            | RelayError::Auth
            | RelayError::UnknownMailbox
            | RelayError::TooLarge
            | RelayError::UnknownCommand
    )
}

impl Forwarder {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        writer: Writer,
        store: Arc<dyn Store>,
        clock: Clock,
        policy: Policy,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            writer,
            store,
            clock,
            ttl_secs: policy.ttl_secs,
            shutdown,
            metrics,
            connect_timeout: CONNECT_TIMEOUT,
            allow_private: policy.allow_private,
            own: policy.own,
            recent: Mutex::new(RecentDestinations::default()),
            cap_warning: Mutex::new(RateLimitedWarning::default()),
            peers: Mutex::new(Peers::default()),
            workers: Mutex::new(HashMap::new()),
            waiters: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// The same forwarder with another connect timeout.
    #[cfg(test)]
    fn with_connect_timeout(self: Arc<Self>, timeout: Duration) -> Arc<Self> {
        let mut this = Arc::into_inner(self).expect("not shared yet");
        this.connect_timeout = timeout;
        Arc::new(this)
    }

    /// Starts a worker for every destination with forwards queued (after a
    /// restart).
    pub(crate) fn resume(self: &Arc<Self>) {
        match self.store.forward_destinations(MAX_DESTINATIONS) {
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
    pub(crate) fn kick(self: &Arc<Self>, destination: [u8; 32]) {
        let mut workers = lock(&self.workers);
        match workers.entry(destination) {
            std::collections::hash_map::Entry::Occupied(worker) => worker.get().notify_one(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let kicked = Arc::new(Notify::new());
                slot.insert(kicked.clone());
                tokio::spawn(self.clone().worker(destination, kicked));
            }
        }
    }

    /// What became of a client's forward once it is queued: waits briefly
    /// for the destination ([`ANSWER_WAIT`]) while it is queued, then reads
    /// its record again.
    pub(crate) async fn await_forward(
        self: &Arc<Self>,
        forward_id: ForwardId,
        destination: [u8; 32],
    ) -> Result<Option<ForwardRecord>, StoreError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).entry(forward_id).or_default().push(tx);
        self.metrics.forwards_queued.fetch_add(1, Ordering::Relaxed);
        self.kick(destination);
        let queued = matches!(self.store.forward_status(&forward_id), Ok(Some(r)) if r.is_queued());
        if queued {
            let _ = tokio::time::timeout(ANSWER_WAIT, rx).await;
        }
        lock(&self.waiters).remove(&forward_id);
        self.store.forward_status(&forward_id)
    }

    /// Fetches and checks `destination`'s signed key for a client.
    pub(crate) async fn fetch_key(&self, destination: &RelayAddress) -> Response {
        let fetched = async {
            let conn = self
                .connect(destination)
                .await
                .map_err(|_| RelayError::Unreachable)?;
            let request = Request::FetchRelayKey {
                destination: destination.clone(),
            };
            match self.request(&conn, &request).await {
                Ok(Response::RelayKey(key)) => Ok(key),
                Ok(Response::Error(e)) => Err(e),
                _ => {
                    self.forget(destination);
                    Err(RelayError::Unreachable)
                }
            }
        };
        let fp = destination.fingerprint();
        let now = self.clock.now();
        match fetched.await {
            // Checked here too, so a client is never handed another
            // relay's key by a confused destination.
            Ok(key) => match key.verify(fp, now) {
                Ok(_) => {
                    let mut keys = lock(&self.keys);
                    if keys.len() >= MAX_CACHED_KEYS {
                        keys.retain(|_, k| k.expires() > now);
                    }
                    if keys.len() < MAX_CACHED_KEYS {
                        keys.insert(fp.0, key.clone());
                    }
                    Response::RelayKey(key)
                }
                Err(_) => Response::Error(RelayError::Unreachable),
            },
            Err(e) => match lock(&self.keys).get(&fp.0) {
                Some(key) if key.verify(fp, now).is_ok() => Response::RelayKey(key.clone()),
                _ => Response::Error(e),
            },
        }
    }

    fn slot(&self, address: &RelayAddress) -> Slot {
        lock(&self.peers).slot(address_key(address))
    }

    fn forget(&self, address: &RelayAddress) {
        lock(&self.peers).remove(&address_key(address));
    }

    /// The open connection to `destination`, connecting (and saying hello)
    /// if there is none.
    async fn connect(&self, destination: &RelayAddress) -> Result<quinn::Connection, ConnectError> {
        let slot = self.slot(destination);
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref()
            && conn.close_reason().is_none()
        {
            lock(&self.recent).touch(&address_key(destination), Instant::now());
            return Ok(conn.clone());
        }
        *cached = None;
        let unreachable = |what: &str| {
            tracing::debug!("relay {} unreachable: {what}", destination.fingerprint());
            ConnectError::Unreachable
        };
        let host = destination
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let remote: SocketAddr = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::lookup_host((host, destination.port())),
        )
        .await
        .map_err(|_| unreachable("name lookup timed out"))?
        .map_err(|_| unreachable("name lookup failed"))?
        .next()
        .ok_or_else(|| unreachable("no address"))?;
        if refused(self.allow_private, &self.own, remote.ip()) {
            tracing::debug!(
                "relay {} refused: its address is in a private range or this relay's own",
                destination.fingerprint()
            );
            return Err(ConnectError::Refused);
        }
        // Counted after the policy, so refused addresses use up no slot.
        if !lock(&self.recent).admit(&address_key(destination), Instant::now()) {
            if let Some(count) = lock(&self.cap_warning).refused(Instant::now()) {
                tracing::warn!(
                    "forwarding paused for {count} connects to new destinations: {MAX_DESTINATIONS_PER_HOUR} distinct destinations in the last hour"
                );
            }
            return Err(ConnectError::Unreachable);
        }
        let config = relay_dialer_config(*destination.fingerprint()).map_err(|e| {
            tracing::error!("relay client configuration: {e}");
            ConnectError::Unreachable
        })?;
        let connecting = self
            .endpoint
            .connect_with(config, remote, SERVER_NAME)
            .map_err(|e| unreachable(&e.to_string()))?;
        let conn = tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| unreachable("connect timed out"))?
            .map_err(|e| unreachable(&e.to_string()))?;
        tracing::debug!(
            remote = %conn.remote_address(),
            "connected to relay {}",
            destination.fingerprint()
        );
        match self.request(&conn, &Request::hello()).await {
            Ok(Response::Hello { .. }) => {}
            _ => return Err(unreachable("no hello")),
        }
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// One request on a new stream, one response frame back.
    async fn request(
        &self,
        conn: &quinn::Connection,
        request: &Request,
    ) -> Result<Response, String> {
        tokio::time::timeout(REQUEST_TIMEOUT, exchange(conn, request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())
    }

    /// Drains one destination's queue until it is empty or shutdown. Each
    /// pass walks the whole queue (local reads only) and hands the forwards
    /// that are due to one lane per address; the worker then sleeps until
    /// the next retry time, a new forward or a lane's report. A forward that
    /// fails (its address does not answer, or the destination defers it)
    /// waits for its own retry time, and a slow address holds only its own
    /// lane, so one bad forward or address delays nothing else.
    async fn worker(self: Arc<Self>, destination: [u8; 32], kicked: Arc<Notify>) {
        let mut shutdown = self.shutdown.clone();
        let mut schedule = Schedule::default();
        let mut lanes = Lanes::default();
        let (done, mut reports) = mpsc::channel(MAX_LANES);
        let in_flight = Arc::new(tokio::sync::Semaphore::new(DESTINATION_IN_FLIGHT));
        let mut read_delay = Duration::ZERO;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let planned = Instant::now();
            let wait = match self
                .pass(
                    &destination,
                    planned,
                    &mut schedule,
                    &mut lanes,
                    &done,
                    &in_flight,
                )
                .await
            {
                Err(e) => {
                    // A failing read backs off too: without the wait the
                    // loop would spin on the error at full CPU.
                    tracing::error!("reading the forward queue failed: {e}");
                    read_delay = next_delay(read_delay);
                    jitter(read_delay)
                }
                Ok(false) if lanes.busy.is_empty() => {
                    read_delay = Duration::ZERO;
                    let mut workers = lock(&self.workers);
                    // An enqueue that committed before this lock is visible
                    // now; one after it will find no worker and start one.
                    if matches!(self.store.forward_queue(&destination, 1), Ok(b) if b.is_empty()) {
                        workers.remove(&destination);
                        return;
                    }
                    continue;
                }
                Ok(_) => {
                    read_delay = Duration::ZERO;
                    schedule.wait(&lanes, planned, Instant::now())
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = kicked.notified() => {}
                Some(report) = reports.recv() => {
                    lanes.finish(&report);
                    schedule.apply(&report, Instant::now());
                }
                () = until_shutdown(&mut shutdown) => break,
            }
            while let Ok(report) = reports.try_recv() {
                lanes.finish(&report);
                schedule.apply(&report, Instant::now());
            }
        }
        lock(&self.workers).remove(&destination);
    }

    /// One pass over the queue: settles expired forwards and starts a lane
    /// for every address with forwards due and no lane running. True if
    /// forwards were queued when the pass began (some may still be).
    /// Everything is judged due or not at `now`, so the wait that follows
    /// knows exactly what this pass saw as due.
    async fn pass(
        self: &Arc<Self>,
        destination: &[u8; 32],
        now: Instant,
        schedule: &mut Schedule,
        lanes: &mut Lanes,
        done: &mpsc::Sender<LaneReport>,
        in_flight: &Arc<tokio::sync::Semaphore>,
    ) -> Result<bool, crate::store::StoreError> {
        let mut from = 0;
        let mut seen = HashSet::new();
        let mut runs: HashMap<Vec<u8>, Run> = HashMap::new();
        loop {
            let batch = self
                .store
                .forward_queue_from(destination, from, WORKER_BATCH)?;
            let full = batch.len() == WORKER_BATCH;
            let Some(next) = batch.last().map(|e| e.seq.checked_add(1)) else {
                break;
            };
            for entry in batch {
                if *self.shutdown.borrow() {
                    return Ok(true);
                }
                seen.insert(entry.seq);
                if lanes.given.contains(&entry.seq) {
                    continue;
                }
                self.plan(entry, now, schedule, lanes, &mut runs).await;
            }
            match next {
                Some(n) if full => from = n,
                _ => break,
            }
        }
        // Forget the schedules of forwards no longer queued.
        schedule.entries.retain(|seq, _| seen.contains(seq));
        for (key, run) in schedule.choose(runs, lanes, now) {
            lanes.busy.insert(key.clone());
            lanes.given.extend(run.seqs.iter().copied());
            let guard = ReportOnDrop {
                report: Some(LaneReport {
                    key,
                    given: run.seqs.clone(),
                    address: AddressOutcome::Untried,
                    settled: Vec::new(),
                    failed: Vec::new(),
                }),
                done: done.clone(),
            };
            tokio::spawn(
                self.clone()
                    .lane(*destination, run, in_flight.clone(), guard),
            );
        }
        Ok(!seen.is_empty())
    }

    /// Settles `entry` if it expired; otherwise adds it to its address's
    /// lane if it and its address are due and a lane is free.
    async fn plan(
        &self,
        entry: QueuedForward,
        now: Instant,
        schedule: &mut Schedule,
        lanes: &Lanes,
        runs: &mut HashMap<Vec<u8>, Run>,
    ) {
        let seq = entry.seq;
        if entry.arrival.saturating_add(self.ttl_secs) <= self.clock.now() {
            if self.settle(entry.forward_id, QueueState::Expired).await {
                schedule.entries.remove(&seq);
            } else {
                Schedule::bump(&mut schedule.entries, seq, Instant::now());
            }
            return;
        }
        if !schedule.due(seq, &entry.destination, now) || lanes.busy.contains(&entry.destination) {
            return;
        }
        if let Some(run) = runs.get_mut(&entry.destination) {
            if run.seqs.len() < LANE_BATCH {
                run.seqs.push(seq);
            }
            return;
        }
        // Every due idle address is a candidate; `Schedule::choose` picks
        // which get a lane (bounded by the queue: at most one per entry).
        let Ok(address) = RelayAddress::decode(&entry.destination) else {
            tracing::error!("corrupt destination in the forward queue");
            Schedule::bump(&mut schedule.entries, seq, Instant::now());
            return;
        };
        runs.insert(
            entry.destination,
            Run {
                address,
                seqs: vec![seq],
            },
        );
    }

    /// Delivers `run`'s forwards over one connection to its address, in
    /// queue order, and reports what happened through `guard`.
    async fn lane(
        self: Arc<Self>,
        destination: [u8; 32],
        run: Run,
        in_flight: Arc<tokio::sync::Semaphore>,
        mut guard: ReportOnDrop,
    ) {
        let Some(report) = guard.report.as_mut() else {
            return;
        };
        if *self.shutdown.borrow() {
            return;
        }
        let conn = match self.connect(&run.address).await {
            Ok(conn) => conn,
            Err(ConnectError::Unreachable) => {
                report.address = AddressOutcome::Failed;
                return;
            }
            Err(ConnectError::Refused) => {
                // Never sent: refused for good, with code 13 (unreachable).
                for seq in run.seqs {
                    let Ok(mut batch) = self.store.forward_queue_from(&destination, seq, 1) else {
                        report.failed.push(seq);
                        continue;
                    };
                    match batch.pop() {
                        Some(entry) if entry.seq == seq => {
                            let refused = QueueState::Refused(RelayError::Unreachable.code());
                            if self.settle(entry.forward_id, refused).await {
                                report.settled.push(seq);
                            } else {
                                report.failed.push(seq);
                            }
                        }
                        _ => {}
                    }
                }
                return;
            }
        };
        report.address = AddressOutcome::Answered;
        // Up to LANE_IN_FLIGHT deliveries at once (within the
        // destination's DESTINATION_IN_FLIGHT), each on a stream of its
        // own, started in queue order: one slow answer (a destination's
        // fsync) or one refused forward does not hold the next one for a
        // round trip, and their settlements share group commits.
        let address = Arc::new(run.address);
        let mut pending = run.seqs.into_iter().peekable();
        let mut flying = tokio::task::JoinSet::new();
        let mut flying_seqs = HashMap::new();
        let mut failed = false;
        loop {
            while !failed && flying.len() < LANE_IN_FLIGHT && pending.peek().is_some() {
                // A permit before the forward is read: what is held in
                // memory stays bounded per destination.
                let permit = match in_flight.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) if !flying.is_empty() => break,
                    Err(_) => match in_flight.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        // Never closed; were it, the rest waits a pass.
                        Err(_) => break,
                    },
                };
                let Some(seq) = pending.next() else { break };
                if *self.shutdown.borrow() {
                    failed = true;
                    break;
                }
                // Read now, not when planned: it may have been settled since.
                let entry = match self.store.forward_queue_from(&destination, seq, 1) {
                    Ok(mut batch) => match batch.pop() {
                        Some(entry) if entry.seq == seq => entry,
                        _ => continue,
                    },
                    Err(e) => {
                        tracing::error!("reading the forward queue failed: {e}");
                        report.failed.push(seq);
                        continue;
                    }
                };
                let (this, conn, address) = (self.clone(), conn.clone(), address.clone());
                let task = flying.spawn(async move {
                    let delivery = this.deliver(&conn, &address, entry).await;
                    drop(permit);
                    (seq, delivery)
                });
                flying_seqs.insert(task.id(), seq);
            }
            match flying.join_next_with_id().await {
                None => break,
                // A delivery that panicked waits for its retry time like
                // a failed one (a panic every time must not spin).
                Some(Err(e)) => {
                    if let Some(seq) = flying_seqs.remove(&e.id()) {
                        report.failed.push(seq);
                    }
                }
                Some(Ok((id, result))) => {
                    flying_seqs.remove(&id);
                    match result {
                        (seq, Delivery::Settled) => report.settled.push(seq),
                        (seq, Delivery::Failed) => report.failed.push(seq),
                        (seq, Delivery::AddressFailed) => {
                            // The rest are not sent; those already under way
                            // end on their own (each within the request
                            // timeout).
                            report.failed.push(seq);
                            report.address = AddressOutcome::Failed;
                            failed = true;
                        }
                    }
                }
            }
        }
    }

    /// Sends one forward to its destination and records the answer.
    async fn deliver(
        &self,
        conn: &quinn::Connection,
        address: &RelayAddress,
        entry: QueuedForward,
    ) -> Delivery {
        let request = Request::RelayDeliver {
            sealed: entry.sealed,
        };
        let settled = match self.request(conn, &request).await {
            Ok(Response::Stored) => self.settle(entry.forward_id, QueueState::Stored).await,
            Ok(Response::Error(e)) if is_permanent(&e) => {
                tracing::debug!("relay {} refused a forward: {e}", address.fingerprint());
                self.settle(entry.forward_id, QueueState::Refused(e.code()))
                    .await
            }
            Ok(Response::Error(e)) => {
                // Quota, rate limit, full disk: this forward waits, the
                // others go on.
                tracing::debug!("relay {} deferred a forward: {e}", address.fingerprint());
                false
            }
            Ok(_) => false,
            Err(e) => {
                tracing::debug!("forward to relay {} failed: {e}", address.fingerprint());
                self.forget(address);
                return Delivery::AddressFailed;
            }
        };
        if settled {
            Delivery::Settled
        } else {
            Delivery::Failed
        }
    }

    /// Records a forward's final state durably, then wakes its waiters.
    async fn settle(&self, forward_id: ForwardId, state: QueueState) -> bool {
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

#[cfg(test)]
mod tests {
    use enlace_protocol::keys::Fingerprint;
    use enlace_quic::frame::{FrameStream, frame_with};

    use enlace_protocol::command::ForwardState;

    use super::*;

    impl Forwarder {
        fn state(&self, id: &ForwardId) -> Result<ForwardState, RelayError> {
            self.store
                .forward_status(id)
                .map(crate::logic::forward::forward_state)
                .map_err(|e| crate::logic::store_error(&e))
        }
    }

    #[test]
    fn permanent_refusals() {
        assert!(is_permanent(&RelayError::UnknownMailbox));
        assert!(is_permanent(&RelayError::Auth));
        assert!(!is_permanent(&RelayError::Quota));
        assert!(!is_permanent(&RelayError::StorageFull));
        assert!(!is_permanent(&RelayError::RateLimited {
            retry_after_secs: 1
        }));
        assert!(!is_permanent(&RelayError::Internal));
    }

    #[test]
    fn retry_delay_doubles_within_bounds() {
        assert_eq!(next_delay(Duration::ZERO), RETRY_MIN);
        assert_eq!(next_delay(RETRY_MIN), RETRY_MIN * 2);
        assert_eq!(next_delay(RETRY_MAX), RETRY_MAX);
        assert_eq!(next_delay(Duration::MAX), RETRY_MAX);
    }

    #[test]
    fn one_failing_forward_or_address_waits_alone() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        assert!(schedule.due(1, b"a", now));
        Schedule::bump(&mut schedule.entries, 1, now);
        Schedule::bump(&mut schedule.addresses, b"bad".to_vec(), now);
        // The failed forward and the failed address wait; others do not.
        assert!(!schedule.due(1, b"a", now));
        assert!(!schedule.due(2, b"bad", now));
        assert!(schedule.due(2, b"a", now));
        let later = now + RETRY_MIN;
        assert!(schedule.due(1, b"a", later));
        assert!(schedule.due(2, b"bad", later));
        let wait = schedule.wait(&Lanes::default(), now, now);
        assert!(wait >= RETRY_MIN / 2 && wait <= RETRY_MIN, "{wait:?}");
        // Delays double per failure.
        Schedule::bump(&mut schedule.entries, 1, now);
        assert_eq!(schedule.entries[&1].delay, RETRY_MIN * 2);
    }

    #[test]
    fn cached_connections_are_capped_least_recently_used_first() {
        let mut peers = Peers::default();
        let key = |n: usize| n.to_be_bytes().to_vec();
        // Every slot busy (a connection attempt holds its lock), so none is
        // dropped as dead: the cap has to evict.
        let first = peers.slot(key(0));
        let mut busy = vec![first.clone().try_lock_owned().unwrap()];
        for n in 1..MAX_PEERS {
            busy.push(peers.slot(key(n)).try_lock_owned().unwrap());
        }
        // Slot 0 is used again, so slot 1 is now the oldest.
        assert!(Arc::ptr_eq(&first, &peers.slot(key(0))));
        peers.slot(key(MAX_PEERS));
        assert_eq!(peers.slots.len(), MAX_PEERS);
        assert!(peers.slots.contains_key(&key(0)));
        assert!(!peers.slots.contains_key(&key(1)));
        assert!(peers.slots.contains_key(&key(MAX_PEERS)));
        for n in 0..4 * MAX_PEERS {
            busy.push(peers.slot(key(1_000_000 + n)).try_lock_owned().unwrap());
            assert!(peers.slots.len() <= MAX_PEERS);
        }
        drop(busy);
        // Dead slots go first, before any live one is evicted.
        peers.slot(key(7));
        assert_eq!(peers.slots.len(), 1);
    }

    /// A store whose forward queue cannot be read; counts the attempts.
    struct Unreadable {
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Store for Unreadable {
        fn apply(
            &self,
            _ops: &[WriteOp],
        ) -> Result<Vec<crate::store::WriteOutcome>, crate::store::StoreError> {
            Err(crate::store::StoreError::Backend("broken".into()))
        }
        fn mailbox(
            &self,
            _id: &enlace_protocol::envelope::MailboxId,
        ) -> Result<Option<crate::store::MailboxRecord>, crate::store::StoreError> {
            Ok(None)
        }
        fn mailbox_by_send_id(
            &self,
            _id: &enlace_protocol::envelope::MailboxId,
        ) -> Result<
            Option<(
                enlace_protocol::envelope::MailboxId,
                crate::store::MailboxRecord,
            )>,
            crate::store::StoreError,
        > {
            Ok(None)
        }
        fn pending(
            &self,
            _id: &enlace_protocol::envelope::MailboxId,
            _after: Option<u64>,
            _not_before: u64,
            _limit: usize,
        ) -> Result<Vec<crate::store::StoredEnvelope>, crate::store::StoreError> {
            Ok(Vec::new())
        }
        fn stats(&self) -> Result<crate::store::Stats, crate::store::StoreError> {
            Ok(crate::store::Stats::default())
        }
        fn forward_queue_from(
            &self,
            _destination: &[u8; 32],
            _from_seq: u64,
            _limit: usize,
        ) -> Result<Vec<QueuedForward>, crate::store::StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Err(crate::store::StoreError::Backend("unreadable".into()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_queue_read_backs_off_instead_of_spinning() {
        let store = Arc::new(Unreadable {
            reads: std::sync::atomic::AtomicUsize::new(0),
        });
        let dyn_store: Arc<dyn Store> = store.clone();
        let (forwarder, stop) = test_forwarder(
            Writer::spawn(dyn_store.clone()).unwrap(),
            dyn_store,
            Clock::new(0),
            false,
        );
        forwarder.kick([7; 32]);
        // A blocking sleep: a spinning worker that never yields must not
        // keep this check from running.
        std::thread::sleep(Duration::from_millis(400));
        let reads = store.reads.load(Ordering::SeqCst);
        stop.send(true).unwrap();
        // The first failure waits at least RETRY_MIN / 2 = 500 ms.
        assert!(reads <= 2, "{reads} reads of a failing queue in 400 ms");
        assert!(reads >= 1);
    }

    /// A forwarder for tests: a fresh client endpoint, a TTL of an hour, no
    /// own addresses. Sending `true` on the returned sender stops it.
    fn test_forwarder(
        writer: Writer,
        store: Arc<dyn Store>,
        clock: Clock,
        allow_private: bool,
    ) -> (Arc<Forwarder>, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let forwarder = Forwarder::new(
            quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap(),
            writer,
            store,
            clock,
            Policy {
                ttl_secs: 3600,
                allow_private,
                own: Vec::new(),
            },
            shutdown,
            Arc::new(Metrics::default()),
        );
        (forwarder, stop)
    }

    /// A destination relay that answers hello and stores every forward,
    /// answering forwards only in groups of `together` received at once.
    fn fake_destination(dir: &std::path::Path, together: usize) -> (RelayAddress, quinn::Endpoint) {
        let group = Arc::new(tokio::sync::Barrier::new(together));
        let identity = crate::identity::Identity::load_or_create(dir).unwrap();
        let endpoint = quinn::Endpoint::server(
            crate::server::server_config(&identity, 30).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let address = RelayAddress::new(
            identity.fingerprint(),
            "127.0.0.1",
            endpoint.local_addr().unwrap().port(),
        )
        .unwrap();
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let group = group.clone();
                tokio::spawn(async move {
                    let Ok(conn) = incoming.await else { return };
                    while let Ok((mut send, recv)) = conn.accept_bi().await {
                        let group = group.clone();
                        tokio::spawn(async move {
                            let mut frames = FrameStream::new(recv);
                            let payload = frames.next().await.unwrap().unwrap();
                            // The sealed bytes are not a real forward: a
                            // fake destination stores whatever comes.
                            let response = match Request::decode(&payload) {
                                Ok(Request::Hello { .. }) => Response::Hello { version: 1 },
                                _ => {
                                    group.wait().await;
                                    Response::Stored
                                }
                            };
                            let frame = frame_with(|out| response.encode(out)).unwrap();
                            send.write_all(&frame).await.unwrap();
                            send.finish().unwrap();
                            let _ = send.stopped().await;
                        });
                    }
                });
            }
        });
        (address, endpoint)
    }

    async fn enqueue(writer: &Writer, clock: Clock, id: u8, to: &RelayAddress) -> ForwardId {
        let forward_id = ForwardId([id; 16]);
        writer
            .submit(WriteOp::ForwardEnqueue(Box::new(
                crate::store::forward::Enqueue {
                    forward_id,
                    destination_fp: to.fingerprint().0,
                    destination: address_key(to),
                    sealed: vec![id; 100],
                    arrival: clock.now(),
                    deadline: clock.now() + 3600,
                    per_destination: 100,
                    total: 1000,
                },
            )))
            .await
            .unwrap();
        forward_id
    }

    /// A forward to an address that swallows every packet is being tried
    /// (its connect would take 120 s); a forward to the destination's real
    /// address queued meanwhile is delivered at once: connects to different
    /// addresses do not wait for each other, and the new forward wakes the
    /// busy worker. The old worker tried both in turn within one task, and
    /// saw forwards queued during a pass only after its next sleep.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_address_does_not_delay_a_live_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (live, _destination) = fake_destination(tmp.path(), 1);
        let black_hole = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dead = RelayAddress::new(
            *live.fingerprint(),
            "127.0.0.1",
            black_hole.local_addr().unwrap().port(),
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::redb::RedbStore::in_memory().unwrap());
        let writer = Writer::spawn(store.clone()).unwrap();
        let clock = Clock::new(0);
        let (forwarder, stop) = test_forwarder(writer.clone(), store, clock, true);
        let forwarder = forwarder.with_connect_timeout(Duration::from_secs(120));
        let fp = live.fingerprint().0;
        let stuck = enqueue(&writer, clock, 1, &dead).await;
        forwarder.kick(fp);
        // The worker is connecting to the dead address.
        let mut buf = [0u8; 2048];
        tokio::time::timeout(Duration::from_secs(60), black_hole.recv_from(&mut buf))
            .await
            .expect("the dead address is tried")
            .unwrap();
        let real = enqueue(&writer, clock, 2, &live).await;
        forwarder.kick(fp);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(forwarder.state(&real), Ok(ForwardState::Stored)) {
            assert!(
                Instant::now() < deadline,
                "the live forward waited behind the dead address: {:?}",
                forwarder.state(&real)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(matches!(forwarder.state(&stuck), Ok(ForwardState::Queued)));
        stop.send(true).unwrap();
    }

    /// A lane has several deliveries under way at once: this destination
    /// answers none until eight are waiting together, so a lane that sent
    /// one, then waited for its answer before the next (as lanes did), never
    /// gets one (each request times out after 10 s and the address backs
    /// off).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lane_has_several_deliveries_under_way() {
        let tmp = tempfile::tempdir().unwrap();
        let (destination, _endpoint) = fake_destination(tmp.path(), 8);
        let store: Arc<dyn Store> = Arc::new(crate::store::redb::RedbStore::in_memory().unwrap());
        let writer = Writer::spawn(store.clone()).unwrap();
        let clock = Clock::new(0);
        let (forwarder, stop) = test_forwarder(writer.clone(), store, clock, true);
        let mut ids = Vec::new();
        for id in 1..=8 {
            ids.push(enqueue(&writer, clock, id, &destination).await);
        }
        forwarder.kick(destination.fingerprint().0);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ids
            .iter()
            .all(|id| matches!(forwarder.state(id), Ok(ForwardState::Stored)))
        {
            assert!(
                Instant::now() < deadline,
                "the lane sent its forwards one at a time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
    }

    #[test]
    fn due_work_held_by_a_lane_does_not_make_the_worker_poll() {
        let now = Instant::now();
        let mut schedule = Schedule::default();
        Schedule::bump(&mut schedule.entries, 1, now);
        Schedule::bump(&mut schedule.addresses, b"dead".to_vec(), now);
        let later = now + RETRY_MIN;
        let mut lanes = Lanes::default();
        // Both due and taken by a lane: the lane's report wakes the worker.
        lanes.given.insert(1);
        lanes.busy.insert(b"dead".to_vec());
        assert_eq!(schedule.wait(&lanes, later, later), RETRY_MAX);
        // Due at planning but held back (address busy elsewhere, lane cap):
        // also a report's business.
        let idle = Lanes::default();
        assert_eq!(schedule.wait(&idle, later, later), RETRY_MAX);
        // Not yet due at planning: its own time.
        let wait = schedule.wait(&idle, now, now);
        assert!(wait >= RETRY_MIN / 2 && wait <= RETRY_MIN, "{wait:?}");
        // Every lane busy: nothing can start before a report.
        let mut full = Lanes::default();
        for n in 0..MAX_LANES {
            full.busy.insert(n.to_be_bytes().to_vec());
        }
        assert_eq!(schedule.wait(&full, now, now), RETRY_MAX);
    }

    /// A redb store that counts reads of the forward queue.
    struct Counting {
        inner: crate::store::redb::RedbStore,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Store for Counting {
        fn apply(
            &self,
            ops: &[WriteOp],
        ) -> Result<Vec<crate::store::WriteOutcome>, crate::store::StoreError> {
            self.inner.apply(ops)
        }
        fn mailbox(
            &self,
            id: &enlace_protocol::envelope::MailboxId,
        ) -> Result<Option<crate::store::MailboxRecord>, crate::store::StoreError> {
            self.inner.mailbox(id)
        }
        fn mailbox_by_send_id(
            &self,
            id: &enlace_protocol::envelope::MailboxId,
        ) -> Result<
            Option<(
                enlace_protocol::envelope::MailboxId,
                crate::store::MailboxRecord,
            )>,
            crate::store::StoreError,
        > {
            self.inner.mailbox_by_send_id(id)
        }
        fn pending(
            &self,
            id: &enlace_protocol::envelope::MailboxId,
            after: Option<u64>,
            not_before: u64,
            limit: usize,
        ) -> Result<Vec<crate::store::StoredEnvelope>, crate::store::StoreError> {
            self.inner.pending(id, after, not_before, limit)
        }
        fn stats(&self) -> Result<crate::store::Stats, crate::store::StoreError> {
            self.inner.stats()
        }
        fn forward_status(
            &self,
            id: &ForwardId,
        ) -> Result<Option<crate::store::forward::ForwardRecord>, crate::store::StoreError>
        {
            self.inner.forward_status(id)
        }
        fn forward_queue(
            &self,
            destination: &[u8; 32],
            limit: usize,
        ) -> Result<Vec<QueuedForward>, crate::store::StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.forward_queue(destination, limit)
        }
        fn forward_queue_from(
            &self,
            destination: &[u8; 32],
            from_seq: u64,
            limit: usize,
        ) -> Result<Vec<QueuedForward>, crate::store::StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.forward_queue_from(destination, from_seq, limit)
        }
        fn forward_destinations(
            &self,
            limit: usize,
        ) -> Result<Vec<[u8; 32]>, crate::store::StoreError> {
            self.inner.forward_destinations(limit)
        }
    }

    /// While a lane is stuck connecting to an address that failed before
    /// (its backoff is due, and stays so until the lane reports), the
    /// worker sleeps: a handful of queue reads over seconds, not one every
    /// 10 ms (the old worker read its queue about 100 times a second here).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_lane_does_not_make_the_worker_reread_its_queue() {
        let black_hole = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dead = RelayAddress::new(
            Fingerprint([5; 32]),
            "127.0.0.1",
            black_hole.local_addr().unwrap().port(),
        )
        .unwrap();
        let store = Arc::new(Counting {
            inner: crate::store::redb::RedbStore::in_memory().unwrap(),
            reads: std::sync::atomic::AtomicUsize::new(0),
        });
        let dyn_store: Arc<dyn Store> = store.clone();
        let writer = Writer::spawn(dyn_store.clone()).unwrap();
        let clock = Clock::new(0);
        let (forwarder, stop) = test_forwarder(writer.clone(), dyn_store, clock, true);
        let forwarder = forwarder.with_connect_timeout(Duration::from_secs(1));
        enqueue(&writer, clock, 1, &dead).await;
        forwarder.kick(dead.fingerprint().0);
        // The first connect fails after 1 s; the second starts 0.5 to 1 s
        // later on an address whose backoff is due, and is stuck for 1 s;
        // the third starts 1 to 2 s after that.
        tokio::time::sleep(Duration::from_millis(4000)).await;
        let mut buf = [0u8; 2048];
        assert!(black_hole.try_recv_from(&mut buf).is_ok(), "never tried");
        let reads = store.reads.load(Ordering::SeqCst);
        stop.send(true).unwrap();
        assert!(reads <= 12, "{reads} queue reads while one lane was stuck");
    }

    #[test]
    fn the_cap_warning_is_logged_once_a_minute_with_a_count() {
        let now = Instant::now();
        let mut warning = RateLimitedWarning::default();
        assert_eq!(warning.refused(now), Some(1));
        for _ in 0..99 {
            assert_eq!(warning.refused(now + Duration::from_secs(30)), None);
        }
        assert_eq!(warning.refused(now + WARNING_INTERVAL), Some(100));
        assert_eq!(warning.refused(now + WARNING_INTERVAL), None);
    }

    /// Forwards to many dead addresses, queued first, do not take every
    /// lane: an address that answered recently gets one, and the dead ones
    /// take turns (review M-D).
    #[test]
    fn dead_addresses_cannot_take_every_lane() {
        let now = Instant::now();
        let run = |port: u16| {
            let address = RelayAddress::new(Fingerprint([1; 32]), "192.0.2.1", port).unwrap();
            (
                address_key(&address),
                Run {
                    address,
                    seqs: vec![u64::from(port)],
                },
            )
        };
        let (live, live_run) = run(1);
        let mut schedule = Schedule::default();
        schedule.answered.insert(live.clone(), now);
        // The dead ones come first in the queue.
        let mut candidates: HashMap<Vec<u8>, Run> =
            (100..100 + 2 * MAX_LANES as u16).map(run).collect();
        candidates.insert(live.clone(), live_run);
        let chosen = schedule.choose(candidates, &Lanes::default(), now);
        assert_eq!(chosen.len(), MAX_LANES - RESERVED_LANES + 1);
        assert!(chosen.iter().any(|(k, _)| *k == live));

        // Every unknown lane busy: the live address still gets one.
        let mut lanes = Lanes::default();
        for (k, _) in &chosen {
            if *k != live {
                lanes.busy.insert(k.clone());
            }
        }
        let mut candidates: HashMap<Vec<u8>, Run> = (1000..1010).map(run).collect();
        candidates.insert(live.clone(), run(1).1);
        let chosen2 = schedule.choose(candidates, &lanes, now);
        assert_eq!(chosen2.len(), 1);
        assert_eq!(chosen2[0].0, live);

        // Round robin: dead addresses never served go before those served.
        let served: HashSet<Vec<u8>> = chosen.into_iter().map(|(k, _)| k).collect();
        let candidates: HashMap<Vec<u8>, Run> =
            (100..100 + 2 * MAX_LANES as u16).map(run).collect();
        let chosen3 = schedule.choose(candidates, &Lanes::default(), now + RETRY_MIN);
        assert_eq!(chosen3.len(), MAX_LANES - RESERVED_LANES);
        assert!(chosen3.iter().all(|(k, _)| !served.contains(k)));
    }

    /// A relay that may not forward to private ranges refuses a forward to
    /// 127.0.0.1 for good without sending a packet there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_private_destination_is_refused_without_a_packet() {
        let black_hole = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let private = RelayAddress::new(
            Fingerprint([9; 32]),
            "127.0.0.1",
            black_hole.local_addr().unwrap().port(),
        )
        .unwrap();
        let store: Arc<dyn Store> = Arc::new(crate::store::redb::RedbStore::in_memory().unwrap());
        let writer = Writer::spawn(store.clone()).unwrap();
        let clock = Clock::new(0);
        let (forwarder, stop) = test_forwarder(writer.clone(), store, clock, false);
        let id = enqueue(&writer, clock, 3, &private).await;
        forwarder.kick(private.fingerprint().0);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match forwarder.state(&id) {
                Ok(ForwardState::Refused(code)) => {
                    assert_eq!(code, RelayError::Unreachable.code());
                    break;
                }
                other => assert!(Instant::now() < deadline, "{other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut buf = [0u8; 2048];
        assert!(
            black_hole.try_recv_from(&mut buf).is_err(),
            "a packet was sent"
        );
        assert!(matches!(
            forwarder.fetch_key(&private).await,
            Response::Error(RelayError::Unreachable)
        ));
        assert!(
            black_hole.try_recv_from(&mut buf).is_err(),
            "a packet was sent"
        );
        stop.send(true).unwrap();
    }
}
