//! Relay-to-relay forwarding (docs/protocol.md section 12): the outgoing
//! QUIC client with the destination's fingerprint pinned, one reused
//! connection per destination address, and one retry worker per
//! destination fingerprint that walks the durable forward queue in order,
//! giving each failing forward and each failing address its own retry time
//! (exponential backoff with jitter) so one bad entry delays only itself.
//!
//! Outgoing connections leave from the relay's listening endpoint, so a
//! destination sees this relay's address and port, never a client's.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, ForwardState, RelayError, Request, Response};
use enlace_protocol::forward::RelayKey;
use enlace_protocol::frame::{FrameReader, encode_frame};
use enlace_protocol::keys::Fingerprint;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use subtle::ConstantTimeEq;
use tokio::sync::{oneshot, watch};

use crate::core::{Core, FORWARD_STATUS_KEEP_SECS};
use crate::identity::cert_public_key;
use crate::metrics::Metrics;
use crate::server::{Clock, Writer, until_shutdown};
use crate::store::forward::{QueuedForward, STATE_EXPIRED, STATE_REFUSED, STATE_STORED};
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
/// Destinations resumed at start (bounded by the total queue limit anyway).
const MAX_DESTINATIONS: usize = 65_536;
/// Largest response frame read from another relay.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// Verifies a relay by its pinned key fingerprint (no CA, no names), and
/// the TLS 1.3 handshake signature, which proves possession of that key.
#[derive(Debug)]
struct PinnedRelayVerifier {
    pinned: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedRelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = cert_public_key(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        if bool::from(key.relay_fingerprint().0.ct_eq(&self.pinned.0)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Without this an impostor presenting the real certificate with
        // another key would pass the fingerprint check.
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
}

/// QUIC client configuration for a relay with fingerprint `pinned`.
pub fn client_config(pinned: Fingerprint) -> Result<quinn::ClientConfig, String> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedRelayVerifier {
        pinned,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![enlace_protocol::ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(15)))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
        .receive_window(quinn::VarInt::from_u32(1024 * 1024))
        .stream_receive_window(quinn::VarInt::from_u32(256 * 1024));
    config.transport_config(Arc::new(transport));
    Ok(config)
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
    /// Connections by full destination address (fingerprint, host and
    /// port), so a forward naming a wrong host never shares the real one's.
    peers: Mutex<Peers>,
    workers: Mutex<HashSet<[u8; 32]>>,
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
}

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
        if self.addresses.len() > MAX_SCHEDULED_ADDRESSES {
            let now = Instant::now();
            self.addresses.retain(|_, b| b.next > now);
        }
    }

    /// How long until something is due (at least 10 ms, at most
    /// [`RETRY_MAX`]).
    fn wait(&self, now: Instant) -> Duration {
        self.entries
            .values()
            .chain(self.addresses.values())
            .map(|b| b.next.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::ZERO)
            .clamp(Duration::from_millis(10), RETRY_MAX)
    }
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
        ttl_secs: u64,
        shutdown: watch::Receiver<bool>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            writer,
            store,
            clock,
            ttl_secs,
            shutdown,
            metrics,
            peers: Mutex::new(Peers::default()),
            workers: Mutex::new(HashSet::new()),
            waiters: Mutex::new(HashMap::new()),
            keys: Mutex::new(HashMap::new()),
        })
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

    /// Makes sure a worker drains `destination`'s queue.
    pub(crate) fn kick(self: &Arc<Self>, destination: [u8; 32]) {
        let mut workers = lock(&self.workers);
        if workers.insert(destination) {
            tokio::spawn(self.clone().worker(destination));
        }
    }

    /// The answer to a client's forward once it is queued: waits briefly for
    /// the destination, then says what is known.
    pub(crate) async fn answer(
        self: &Arc<Self>,
        forward_id: ForwardId,
        destination: [u8; 32],
    ) -> Response {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).entry(forward_id).or_default().push(tx);
        self.metrics.forwards_queued.fetch_add(1, Ordering::Relaxed);
        self.kick(destination);
        let queued = matches!(self.state(&forward_id), Ok(ForwardState::Queued));
        if queued {
            let _ = tokio::time::timeout(ANSWER_WAIT, rx).await;
        }
        lock(&self.waiters).remove(&forward_id);
        match self.state(&forward_id) {
            Ok(ForwardState::Queued) => Response::Queued,
            Ok(ForwardState::Stored) => Response::Stored,
            Ok(ForwardState::Refused(code)) => Response::Error(RelayError::from_code(code)),
            Ok(ForwardState::Expired) => Response::Error(RelayError::Unreachable),
            Ok(_) => Response::Error(RelayError::Internal),
            Err(e) => Response::Error(e),
        }
    }

    fn state(&self, id: &ForwardId) -> Result<ForwardState, RelayError> {
        self.store
            .forward_status(id)
            .map(Core::<dyn Store>::forward_state)
            .map_err(|e| crate::core::store_error(&e))
    }

    /// Fetches and checks `destination`'s signed key for a client.
    pub(crate) async fn fetch_key(&self, destination: &RelayAddress) -> Response {
        let fetched = async {
            let conn = self.connect(destination).await?;
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
    async fn connect(&self, destination: &RelayAddress) -> Result<quinn::Connection, RelayError> {
        let slot = self.slot(destination);
        let mut cached = slot.lock().await;
        if let Some(conn) = cached.as_ref() {
            if conn.close_reason().is_none() {
                return Ok(conn.clone());
            }
        }
        *cached = None;
        let unreachable = |what: &str| {
            tracing::debug!("relay {} unreachable: {what}", destination.fingerprint());
            RelayError::Unreachable
        };
        let host = destination
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let remote: SocketAddr = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::lookup_host((host, destination.port())),
        )
        .await
        .map_err(|_| unreachable("name lookup timed out"))?
        .map_err(|_| unreachable("name lookup failed"))?
        .next()
        .ok_or_else(|| unreachable("no address"))?;
        let config = client_config(*destination.fingerprint()).map_err(|e| {
            tracing::error!("relay client configuration: {e}");
            RelayError::Internal
        })?;
        let connecting = self
            .endpoint
            .connect_with(config, remote, "enlace-relay")
            .map_err(|e| unreachable(&e.to_string()))?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
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
        let exchange = async {
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let mut frame = Vec::new();
            encode_frame(&request.to_bytes(), &mut frame).map_err(|e| e.to_string())?;
            send.write_all(&frame).await.map_err(|e| e.to_string())?;
            let _ = send.finish();
            let mut reader = FrameReader::new();
            loop {
                match recv.read_chunk(MAX_READ_CHUNK, true).await {
                    Ok(Some(chunk)) => {
                        let mut rest: &[u8] = &chunk.bytes;
                        while !rest.is_empty() {
                            let used = reader.handle_bytes(rest).map_err(|e| e.to_string())?;
                            rest = rest.get(used..).unwrap_or_default();
                            if let Some(payload) = reader.poll_frame() {
                                return Response::decode(&payload).map_err(|e| e.to_string());
                            }
                            if used == 0 {
                                return Err("frame reader stalled".into());
                            }
                        }
                    }
                    Ok(None) => return Err("stream ended".into()),
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| "timed out".to_owned())?
    }

    /// Drains one destination's queue until it is empty or shutdown. Each
    /// pass walks the whole queue; a forward that fails (its address does
    /// not answer, or the destination defers it) waits for its own retry
    /// time while the pass goes on with the rest, so one bad forward only
    /// delays itself.
    async fn worker(self: Arc<Self>, destination: [u8; 32]) {
        let mut shutdown = self.shutdown.clone();
        let mut schedule = Schedule::default();
        let mut read_delay = Duration::ZERO;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.pass(&destination, &mut schedule).await {
                Err(e) => {
                    // A failing read backs off too: without the wait the
                    // loop would spin on the error at full CPU.
                    tracing::error!("reading the forward queue failed: {e}");
                    read_delay = next_delay(read_delay);
                    jitter(read_delay)
                }
                Ok(false) => {
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
                Ok(true) => {
                    read_delay = Duration::ZERO;
                    schedule.wait(Instant::now())
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = until_shutdown(&mut shutdown) => break,
            }
        }
        lock(&self.workers).remove(&destination);
    }

    /// One pass over the queue: tries every forward that is due. True if
    /// forwards were queued when the pass began (some may still be).
    async fn pass(
        &self,
        destination: &[u8; 32],
        schedule: &mut Schedule,
    ) -> Result<bool, crate::store::StoreError> {
        let mut from = 0;
        let mut seen = HashSet::new();
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
                self.attempt(entry, schedule).await;
            }
            match next {
                Some(n) if full => from = n,
                _ => break,
            }
        }
        // Forget the schedules of forwards no longer queued.
        schedule.entries.retain(|seq, _| seen.contains(seq));
        Ok(!seen.is_empty())
    }

    /// Tries one forward if it and its address are due; records when to
    /// try again if it fails.
    async fn attempt(&self, entry: QueuedForward, schedule: &mut Schedule) {
        let seq = entry.seq;
        if entry.arrival.saturating_add(self.ttl_secs) <= self.clock.now() {
            if self.settle(entry.forward_id, STATE_EXPIRED, 0).await {
                schedule.entries.remove(&seq);
            } else {
                Schedule::bump(&mut schedule.entries, seq, Instant::now());
            }
            return;
        }
        if !schedule.due(seq, &entry.destination, Instant::now()) {
            return;
        }
        let Ok(address) = RelayAddress::decode(&entry.destination) else {
            tracing::error!("corrupt destination in the forward queue");
            Schedule::bump(&mut schedule.entries, seq, Instant::now());
            return;
        };
        let Ok(conn) = self.connect(&address).await else {
            Schedule::bump(&mut schedule.addresses, entry.destination, Instant::now());
            schedule.trim();
            return;
        };
        schedule.addresses.remove(&entry.destination);
        let request = Request::RelayDeliver {
            sealed: entry.sealed,
        };
        let settled = match self.request(&conn, &request).await {
            Ok(Response::Stored) => self.settle(entry.forward_id, STATE_STORED, 0).await,
            Ok(Response::Error(e)) if is_permanent(&e) => {
                tracing::debug!("relay {} refused a forward: {e}", address.fingerprint());
                self.settle(entry.forward_id, STATE_REFUSED, e.code()).await
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
                self.forget(&address);
                Schedule::bump(&mut schedule.addresses, entry.destination, Instant::now());
                schedule.trim();
                false
            }
        };
        if settled {
            schedule.entries.remove(&seq);
        } else {
            Schedule::bump(&mut schedule.entries, seq, Instant::now());
        }
    }

    /// Records a forward's final state durably, then wakes its waiters.
    async fn settle(&self, forward_id: ForwardId, state: u8, code: u16) -> bool {
        let op = WriteOp::ForwardSettle {
            forward_id,
            state,
            code,
            keep_until: self.clock.now().saturating_add(FORWARD_STATUS_KEEP_SECS),
        };
        match self.writer.submit(op).await {
            Ok(_) => {
                let counter = match state {
                    STATE_STORED => &self.metrics.forwards_stored,
                    STATE_REFUSED => &self.metrics.forwards_refused,
                    _ => &self.metrics.forwards_expired,
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
    use super::*;

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
        let wait = schedule.wait(now);
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
        let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let (stop, shutdown) = watch::channel(false);
        let forwarder = Forwarder::new(
            endpoint,
            Writer::spawn(dyn_store.clone()).unwrap(),
            dyn_store,
            Clock::new(0),
            3600,
            shutdown,
            Arc::new(Metrics::default()),
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
}
