//! The QUIC driver: listens, maps streams to requests (docs/protocol.md section 7),
//! runs the group-commit writer, pushes deliveries, sweeps expired
//! envelopes and shuts down cleanly.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enlace_protocol::DecodeError;
use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{
    BINDING_EXPORTER_LABEL, ConnectionBinding, EndReason, RelayError, Request, Response,
};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{MailboxId, MessageId};
use enlace_quic::config::{ServerLimits, SetupError};
use enlace_quic::frame::{FrameError, FrameStream, frame_with};
use quinn::VarInt;
use tokio::sync::{Notify, oneshot, watch};

use crate::clock::Clock;
use crate::config::Config;
use crate::forwarding::Forwarder;
use crate::identity::Identity;
use crate::logic::{ConnState, Core, Effect, Step, Then, store_error};
use crate::metrics::{Metrics, Refusal};
use crate::policy::admission::{Admission, admission};
use crate::policy::hosts::{HostLimits, limit_key};
use crate::policy::standing::Standing;
use crate::shutdown::until_shutdown;
use crate::store::writer::Writer;
use crate::store::{Committed, Store, WriteOp, WriteOutcome};

/// Deliveries pushed on one subscription and not yet acked: enough to keep
/// a mobile link busy, small enough that a recipient that never acks holds
/// at most this many sealed envelopes in flight.
pub const DELIVERY_WINDOW: usize = 32;
/// Acks already received on a stream that are queued for one commit at
/// most (see `StreamTask::acks`).
const ACK_RUN: usize = DELIVERY_WINDOW;
/// Concurrent client-opened bidirectional streams per connection. quinn
/// keeps a hash-map slot per allowed stream for the connection's whole
/// life: up to 28 fit its smallest table of 32 buckets, 32 doubled it
/// (about 1.3 KiB more per idle connection). 24 still leaves room for a
/// window of 16 pipelined sends beside the subscription and a few requests.
pub const MAX_STREAMS: u32 = 24;
/// Per-stream receive window: two of the largest frames, so one request can
/// be pipelined behind another.
pub const STREAM_RECEIVE_WINDOW: u32 = 2 * 67 * 1024;
/// Per-connection receive window (quinn's default is unbounded): bounds the
/// memory one connection can make the relay buffer across all its streams.
/// A connection gets it once one of its signature checks passed; before,
/// [`UNPROVEN_RECEIVE_WINDOW`].
pub const CONNECTION_RECEIVE_WINDOW: u32 = 1024 * 1024;
/// Receive window of a connection none of whose checks has passed yet
/// (see [`ConnState::is_proven`]). A connection that only sends garbage is
/// closed after a few failed checks; what it made the relay receive and
/// decrypt before that (packets, acks) was most of its cost: with 1 MiB, a
/// many-address attacker's 10^6 frames took honest p99 to 5x its baseline,
/// with 8 KiB to 1.3x. Honest first requests are small; a first-contact
/// `Send` of a 64 KiB envelope still goes through, a window update at a time.
pub const UNPROVEN_RECEIVE_WINDOW: u32 = 8 * 1024;
/// Per-connection send buffer.
pub const SEND_WINDOW: u64 = 1024 * 1024;
/// Streams a connection may break (malformed frames) before the relay
/// closes the whole connection.
pub const MAX_MALFORMED_STREAMS: u32 = 8;
/// Envelopes removed per expiry commit.
const EXPIRY_BATCH: usize = 4096;
/// Requests of connections not yet proven (see [`ConnState::is_proven`])
/// whose parse and checks may run at once. An attacker's connections never
/// pass a check, so however many of their streams are ready, at most this
/// many of their signature checks sit in the scheduler's run queue ahead
/// of a proven connection's request; the rest wait in the gate's queue.
/// One: the relay's core is the bottleneck under attack, and an idle
/// relay still serves a new connection's first request at once.
pub const UNPROVEN_PERMITS: usize = 1;
/// Longest the relay waits at shutdown for answered requests to flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Longest a finished stream waits for the client to acknowledge the
/// relay's last bytes (a client that never does cannot hold a task longer).
const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Application error codes (QUIC `STOP_SENDING`, `RESET_STREAM`,
/// `CONNECTION_CLOSE`), see docs/protocol.md section 7.
pub mod codes {
    use quinn::VarInt;
    /// Connection closed because the relay is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// Too many malformed streams on a connection.
    pub const PROTOCOL_VIOLATION: VarInt = VarInt::from_u32(1);
    /// A stream stopped after a malformed or oversized frame.
    pub const STREAM_MALFORMED: VarInt = VarInt::from_u32(2);
    /// Too many requests refused with `Auth` on a connection.
    pub const TOO_MANY_AUTH_FAILURES: VarInt = VarInt::from_u32(3);
    /// A connection closed by the client normally.
    pub const CLIENT_DONE: VarInt = VarInt::from_u32(0);
}

/// Subscription state shared between the subscribed stream and the rest.
#[derive(Debug, Default)]
struct Sub {
    id: u64,
    notify: Notify,
    state: Mutex<SubState>,
}

#[derive(Debug, Default)]
struct SubState {
    ended: Option<EndReason>,
    acked: Vec<MessageId>,
}

impl Sub {
    fn lock(&self) -> std::sync::MutexGuard<'_, SubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Which stream currently holds each mailbox's subscription.
#[derive(Debug, Default)]
struct Registry {
    subs: Mutex<HashMap<MailboxId, Arc<Sub>>>,
    next_id: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MailboxId, Arc<Sub>>> {
        self.subs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new subscriber; the previous one, if any, is told it was
    /// taken over.
    fn subscribe(&self, id: MailboxId) -> Arc<Sub> {
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

    fn unsubscribe(&self, id: &MailboxId, sub: &Sub) {
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

    fn new_envelope(&self, id: &MailboxId) {
        self.with(id, |_| {});
    }

    fn acked(&self, id: &MailboxId, msg: MessageId) {
        self.with(id, |s| s.lock().acked.push(msg));
    }

    fn deleted(&self, id: &MailboxId) {
        self.with(id, |s| s.lock().ended = Some(EndReason::Deleted));
    }
}

/// Counts requests between being read and being answered, for shutdown.
#[derive(Debug, Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

struct InFlightGuard<'a>(&'a InFlight);

impl InFlight {
    fn enter(&self) -> InFlightGuard<'_> {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self)
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Deposit answers of one stream counted in [`Shared::unacked`] until the
/// client acknowledged them (or the stream task ended).
struct UnackedAnswers {
    counter: Arc<AtomicU64>,
    n: u64,
}

impl UnackedAnswers {
    fn enter(counter: &Arc<AtomicU64>, n: u64) -> Self {
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
struct OwnedInFlightGuard(Arc<InFlight>);

impl OwnedInFlightGuard {
    fn enter(counter: &Arc<InFlight>) -> Self {
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

struct Shared {
    core: Core<dyn Store>,
    writer: Writer,
    forwarder: Arc<Forwarder>,
    registry: Registry,
    metrics: Arc<Metrics>,
    clock: Clock,
    in_flight: InFlight,
    /// Stream tasks alive: each lives until the client has acknowledged
    /// everything it wrote, so closing after they end loses no answer.
    streams: Arc<InFlight>,
    /// Deposit answers (`Stored`) written on streams whose client has not
    /// yet acknowledged everything: what a close now could cut off.
    unacked: Arc<AtomicU64>,
    /// Deposit answers, since the relay started, on streams whose client
    /// left them unacknowledged for [`FLUSH_GRACE`] before shutdown began
    /// (their task gave up waiting; the connection still retransmits them
    /// while it lives).
    flushes_given_up: AtomicU64,
    draining: AtomicBool,
    shutdown: watch::Receiver<bool>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    hosts: Arc<HostLimits>,
    gate: PriorityGate,
    max_per_ip: u32,
    max_connections: u32,
}

/// The relay's QUIC server configuration: its certificate and the
/// transport limits of this module.
pub fn server_config(
    identity: &Identity,
    idle_timeout_secs: u64,
) -> Result<quinn::ServerConfig, SetupError> {
    enlace_quic::config::server_config(
        identity.cert().clone(),
        identity.pkcs8(),
        &ServerLimits {
            max_streams: MAX_STREAMS,
            stream_receive_window: STREAM_RECEIVE_WINDOW,
            receive_window: UNPROVEN_RECEIVE_WINDOW,
            send_window: SEND_WINDOW,
            idle_timeout: Duration::from_secs(idle_timeout_secs),
        },
    )
}

/// Setup errors are reported to the operator as one line of text.
fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// A running relay, for the binary and for in-process tools.
#[derive(Debug)]
pub struct Running {
    /// The address clients paste.
    pub address: RelayAddress,
    /// The bound UDP address.
    pub local_addr: SocketAddr,
}

/// Runs the relay until `stop` resolves, then shuts down cleanly.
/// `on_ready` is called once with the address, after the socket is bound.
pub async fn run(
    config: Config,
    store: Arc<dyn Store>,
    identity: Identity,
    stop: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(&Running),
) -> Result<(), String> {
    let endpoint = quinn::Endpoint::server(
        server_config(&identity, config.idle_timeout_secs).map_err(msg)?,
        config.listen,
    )
    .map_err(|e| format!("cannot listen on UDP {}: {e}", config.listen))?;
    let local_addr = endpoint.local_addr().map_err(msg)?;
    let port = config.public_port.unwrap_or(local_addr.port());
    let address = RelayAddress::new(
        identity.fingerprint(),
        &config.address_host(&local_addr),
        port,
    )
    .map_err(|e| format!("{e} (check --public-host)"))?;

    let metrics = Arc::new(Metrics::default());
    let writer = Writer::spawn(store.clone()).map_err(|e| format!("cannot start writer: {e}"))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let clock = Clock::new(config.clock_offset_secs);
    let (allow_private, why) = crate::policy::destinations::private_policy(
        config.forward_allow_private,
        config.public_host.as_deref(),
        config.listen.ip(),
    );
    let public_ip = config.public_host.as_deref().and_then(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
    });
    let decision = if allow_private { "allowed" } else { "refused" };
    tracing::info!("forwarding to private addresses: {decision} ({why})");
    let forwarder = Forwarder::new(
        endpoint.clone(),
        writer.clone(),
        store.clone(),
        clock,
        crate::forwarding::Policy {
            ttl_secs: config.limits.ttl_secs,
            allow_private,
            own: [Some(local_addr.ip()), public_ip]
                .into_iter()
                .flatten()
                .filter(|ip| !ip.is_unspecified())
                .collect(),
        },
        shutdown_rx.clone(),
        metrics.clone(),
    );
    let shared = Arc::new(Shared {
        core: Core::new(store.clone(), config.limits).with_identity(Arc::new(identity)),
        writer,
        forwarder: forwarder.clone(),
        registry: Registry::default(),
        metrics: metrics.clone(),
        clock,
        in_flight: InFlight::default(),
        streams: Arc::default(),
        unacked: Arc::default(),
        flushes_given_up: AtomicU64::new(0),
        draining: AtomicBool::new(false),
        shutdown: shutdown_rx,
        per_ip: Mutex::new(HashMap::new()),
        hosts: Arc::new(HostLimits::new(config.hosts)),
        gate: PriorityGate::new(UNPROVEN_PERMITS, Background::start()),
        max_per_ip: config.max_connections_per_ip,
        max_connections: config.max_connections,
    });

    if let Some(addr) = config.metrics {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        tracing::info!("metrics on http://{addr}/metrics");
        tokio::spawn(crate::metrics::serve(
            listener,
            metrics.clone(),
            store.clone(),
            shared.shutdown.clone(),
        ));
    }
    let sweeper = tokio::spawn(sweep(shared.clone(), config.sweep_interval_secs));
    forwarder.resume();

    let running = Running {
        address,
        local_addr,
    };
    on_ready(&running);

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
    let _ = shutdown_tx.send(true);
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
    Ok(())
}

fn accept(shared: &Arc<Shared>, incoming: quinn::Incoming) {
    let ip = limit_key(incoming.remote_address().ip());
    {
        let mut per_ip = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = shared.metrics.connections.load(Ordering::Relaxed);
        let count = per_ip.entry(ip).or_insert(0);
        let validated = incoming.remote_address_validated();
        let decision = match admission(
            *count,
            total,
            shared.max_per_ip,
            shared.max_connections,
            validated,
        ) {
            Admission::Accept => match shared.hosts.admit(ip, shared.clock.now_ms(), validated) {
                Admission::Accept => Ok(()),
                Admission::Retry => Err((Admission::Retry, Refusal::ConnectionRate)),
                Admission::Refuse => Err((Admission::Refuse, Refusal::ConnectionRate)),
                Admission::Ignore => Err((Admission::Ignore, Refusal::ConnectionRate)),
            },
            // Answered before the host's rates are looked at: a Retry
            // takes no new-connection token.
            other => Err((other, Refusal::ConnectionLimit)),
        };
        if let Err((decision, reason)) = decision {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            drop(per_ip);
            match decision {
                Admission::Retry => {
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().refuse();
                    }
                }
                Admission::Ignore => {
                    shared.metrics.reject(reason);
                    incoming.ignore();
                }
                _ => {
                    shared.metrics.reject(reason);
                    incoming.refuse();
                }
            }
            return;
        }
        *count += 1;
    }
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    let shared = shared.clone();
    // The handshake state is large and only needed until the connection is
    // up: boxed, it is freed then instead of sizing the connection's task.
    let handshake = Box::pin(std::future::IntoFuture::into_future(incoming));
    tokio::spawn(async move {
        let _slot = ConnSlot {
            shared: shared.clone(),
            ip,
        };
        match handshake.await {
            Ok(conn) => serve_connection(shared, conn).await,
            Err(e) => tracing::debug!("handshake failed: {e}"),
        }
    });
}

/// Releases a connection's slot when its task ends.
struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.shared
            .metrics
            .connections
            .fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = per_ip.get_mut(&self.ip) {
            *c -= 1;
            if *c == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

async fn serve_connection(shared: Arc<Shared>, conn: quinn::Connection) {
    tracing::debug!(remote = %conn.remote_address(), "connection open");
    let mut binding = [0u8; 32];
    if conn
        .export_keying_material(&mut binding, BINDING_EXPORTER_LABEL, b"")
        .is_err()
    {
        conn.close(codes::PROTOCOL_VIOLATION, b"no exporter");
        return;
    }
    let state = Arc::new(ConnState::with_host(
        ConnectionBinding(binding),
        shared.clock.now(),
        shared.hosts.clone(),
        limit_key(conn.remote_address().ip()),
    ));
    let malformed = Arc::new(AtomicU64::new(0));
    let window_raised = Arc::new(AtomicBool::new(false));
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("connection closed: {e}");
                return;
            }
        };
        let alive = OwnedInFlightGuard::enter(&shared.streams);
        let stream = StreamTask {
            shared: shared.clone(),
            state: state.clone(),
            conn: conn.clone(),
            malformed: malformed.clone(),
            window_raised: window_raised.clone(),
            turn: turn.clone(),
            send,
            frames: FrameStream::new(recv),
            abandoned: false,
            answered: false,
            deposits_answered: 0,
        };
        tokio::spawn(async move {
            let _alive = alive;
            stream.run().await;
        });
    }
}

/// The low-priority lanes for connections not proven: their requests' CPU
/// work (parse, signature check, the core's decision) runs under one of
/// [`UNPROVEN_PERMITS`] permits of their lane, taken in arrival order and
/// released before anything is awaited (a commit, a write), then the task
/// yields. Proven connections skip both. Each connection queues at most
/// one request at a time (its streams take turns through the connection's
/// own lock first), so a queue is as long as the number of its
/// connections, not of their streams. Connections none of whose checks
/// ever passed that failed something (an attacker's, after its first
/// garbage) queue apart from those that only have not proven themselves
/// yet, and their work runs on the
/// [`Background`] thread at the lowest CPU priority: an honest newcomer
/// waits behind other newcomers' first requests only, at normal priority,
/// and an attacker's failing checks take no time slices from anyone.
#[derive(Debug)]
struct PriorityGate {
    unproven: tokio::sync::Semaphore,
    suspect: tokio::sync::Semaphore,
    background: Option<Background>,
}

impl PriorityGate {
    fn new(permits: usize, background: Option<Background>) -> Self {
        Self {
            unproven: tokio::sync::Semaphore::new(permits),
            suspect: tokio::sync::Semaphore::new(permits),
            background,
        }
    }

    /// Runs `work` in the lane `lane` says, asked again once the
    /// connection's `turn` is taken (a request queued behind one that
    /// proved the connection runs at once).
    async fn run<T: Send + 'static>(
        &self,
        lane: impl Fn() -> Standing,
        turn: &tokio::sync::Mutex<()>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        if lane() == Standing::Proven {
            return work();
        }
        let turn = turn.lock().await;
        // The semaphores are never closed; were one, the work runs ungated.
        let out = match lane() {
            Standing::Proven => work(),
            Standing::Unproven => {
                let _permit = self.unproven.acquire().await.ok();
                work()
            }
            Standing::Suspect => {
                let _permit = self.suspect.acquire().await.ok();
                match &self.background {
                    Some(background) => background.run(work).await,
                    None => work(),
                }
            }
        };
        drop(turn);
        tokio::task::yield_now().await;
        out
    }
}

/// A job for the [`Background`] thread.
type BackgroundJob = Box<dyn FnOnce() + Send>;

/// Niceness of the [`Background`] thread: the kernel gives it CPU time
/// only when the relay's other threads leave some (about 1.5 % of a core
/// against one busy thread at the default 0), so under a flood the checks
/// of suspect connections (an attacker's garbage: X25519
/// exchanges to open forwarded deliveries, failing Ed25519 checks) take
/// no time slices from other clients' requests.
pub const BACKGROUND_NICE: i32 = 19;

/// One thread, at [`BACKGROUND_NICE`], that runs the suspect lane's work.
/// The lane lets one job in at a time ([`UNPROVEN_PERMITS`]), so its
/// queue never holds more than that.
#[derive(Debug)]
struct Background {
    jobs: std::sync::mpsc::SyncSender<BackgroundJob>,
}

impl Background {
    /// Starts the thread. `None` if it cannot be started (said at warn
    /// level); the lane's work then runs on the runtime's threads, in the
    /// same order.
    fn start() -> Option<Self> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<BackgroundJob>(UNPROVEN_PERMITS);
        let started = std::thread::Builder::new()
            .name("enlace-suspect".into())
            .spawn(move || {
                // Linux keeps a nice value per thread: this lowers only
                // this one. Failing that, it runs at the default.
                if let Err(e) = rustix::process::setpriority_process(
                    Some(rustix::thread::gettid()),
                    BACKGROUND_NICE,
                ) {
                    tracing::warn!("cannot lower the priority of the suspect-check thread: {e}");
                }
                while let Ok(job) = queue.recv() {
                    job();
                }
            });
        if let Err(e) = started {
            tracing::warn!("cannot start the suspect-check thread, checking on the others: {e}");
            return None;
        }
        Some(Self { jobs })
    }

    /// Runs `work` on the thread and waits for its result; runs it here if
    /// the thread is gone. A panic in `work` is resumed here, where it
    /// ends the request's task as it would have without the thread.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = oneshot::channel();
        let job: BackgroundJob = Box::new(move || {
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = tx.send(out);
        });
        if let Err(
            std::sync::mpsc::TrySendError::Full(job)
            | std::sync::mpsc::TrySendError::Disconnected(job),
        ) = self.jobs.try_send(job)
        {
            job();
        }
        match rx.await {
            Ok(Ok(out)) => out,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // The job is dropped only unrun with the thread, which runs
            // every job it receives.
            Err(_) => std::panic::panic_any("the suspect-check thread dropped a job"),
        }
    }
}

async fn write(send: &mut quinn::SendStream, response: &Response) -> bool {
    // A response too large for a frame cannot happen (the protocol's limits
    // bound every answer); should one, the client is told `Internal`.
    let frame = frame_with(|out| response.encode(out))
        .or_else(|_| frame_with(|out| Response::Error(RelayError::Internal).encode(out)));
    match frame {
        Ok(frame) => send.write_all(&frame).await.is_ok(),
        Err(_) => false,
    }
}

struct StreamTask {
    shared: Arc<Shared>,
    state: Arc<ConnState>,
    conn: quinn::Connection,
    malformed: Arc<AtomicU64>,
    /// The connection's receive window was raised to
    /// [`CONNECTION_RECEIVE_WINDOW`] (once a check passed).
    window_raised: Arc<AtomicBool>,
    /// The connection's place in the low-priority lane (see
    /// [`PriorityGate`]).
    turn: Arc<tokio::sync::Mutex<()>>,
    send: quinn::SendStream,
    frames: FrameStream,
    /// Reset at shutdown with a delivery half written: nothing to flush.
    abandoned: bool,
    /// Whether an answer went out on this stream.
    answered: bool,
    /// `Stored` answers written on this stream.
    deposits_answered: u64,
}

/// The answer to one request of a run (see `StreamTask::acks`).
enum Answer<F> {
    /// Known now (a refusal).
    Now(Response),
    /// Once the queued write is committed.
    Later(Then, F),
}

/// What a decoded frame led to.
enum Handled {
    /// Answered; keep reading.
    Continue,
    /// The stream is done (error frame sent, or the peer is gone).
    Close,
    /// Start a subscription.
    Subscribe(MailboxId, DeliveryKey),
}

impl StreamTask {
    async fn run(mut self) {
        self.serve().await;
        if self.abandoned {
            // Reset at shutdown: deposit answers written here and not yet
            // acknowledged are cut off, and counted so (never released:
            // the relay is closing).
            self.shared
                .unacked
                .fetch_add(self.deposits_answered, Ordering::SeqCst);
            return;
        }
        // Ends the stream (a no-op if it already is) and waits until the
        // client has everything, so a shutdown that follows loses no answer.
        let _ = self.send.finish();
        let shared = self.shared.clone();
        let _unacked = UnackedAnswers::enter(&shared.unacked, self.deposits_answered);
        let stopped = self.send.stopped();
        tokio::pin!(stopped);
        if tokio::time::timeout(FLUSH_GRACE, &mut stopped)
            .await
            .is_ok()
        {
            return;
        }
        // FLUSH_GRACE bounds a client that never acknowledges. Once the
        // relay is shutting down, an answer's wait goes on to the end of the
        // relay's own grace period instead (closing the endpoint then ends
        // it), so no answer is cut off while that period runs.
        if !self.answered {
            return;
        }
        if self.shared.draining.load(Ordering::SeqCst) {
            let _ = stopped.await;
        } else {
            self.shared
                .flushes_given_up
                .fetch_add(self.deposits_answered, Ordering::Relaxed);
        }
    }

    async fn serve(&mut self) {
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            if self.shared.draining.load(Ordering::SeqCst) {
                break;
            }
            let frame = tokio::select! {
                f = self.frames.next() => f,
                () = until_shutdown(&mut shutdown) => break,
            };
            // Boxed: handling a request (a commit, a forward) is a large
            // future, and every idle stream task would otherwise carry its
            // size for as long as the stream stays open.
            match Box::pin(self.on_frame(frame)).await {
                Handled::Continue => {}
                Handled::Close => return,
                Handled::Subscribe(id, key) => {
                    if !self.subscription(id, key).await {
                        return;
                    }
                }
            }
            // Frames pipelined on one stream are all in the receive buffer:
            // without a yield this task would handle them back to back (a
            // signature check each) while other connections wait.
            tokio::task::yield_now().await;
        }
        let _ = self.send.finish();
    }

    async fn malformed(&mut self, error: RelayError) -> Handled {
        self.shared.metrics.reject_error(&error);
        write(&mut self.send, &Response::Error(error)).await;
        let _ = self.send.finish();
        self.frames.stop(codes::STREAM_MALFORMED);
        let n = self.malformed.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= u64::from(MAX_MALFORMED_STREAMS) {
            self.conn
                .close(codes::PROTOCOL_VIOLATION, b"too many malformed streams");
        }
        Handled::Close
    }

    async fn on_frame(&mut self, frame: Result<Option<Vec<u8>>, FrameError>) -> Handled {
        let payload = match frame {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ = self.send.finish();
                return Handled::Close;
            }
            Err(FrameError::Decode(DecodeError::FrameTooLarge(_))) => {
                return self.malformed(RelayError::TooLarge).await;
            }
            Err(FrameError::Decode(_)) => return self.malformed(RelayError::Malformed).await,
            Err(_) => return Handled::Close,
        };
        let shared = self.shared.clone();
        let _guard = shared.in_flight.enter();
        let state = self.state.clone();
        let turn = self.turn.clone();
        let work = {
            let (shared, state) = (shared.clone(), state.clone());
            move || {
                let request = Request::decode(&payload)?;
                // Checked before the request's signature is: a connection
                // over its budget gets no further check.
                if state.over_budget() {
                    return Ok(None);
                }
                let is_ack = matches!(request, Request::Ack(_));
                let step = shared.core.handle(&state, request, shared.clock.now());
                Ok(Some((is_ack, step)))
            }
        };
        let decided = shared.gate.run(|| state.standing(), &turn, work).await;
        state.charge_host(shared.clock.now());
        self.raise_window_once_proven();
        let (is_ack, step) = match decided {
            Ok(Some(decided)) => decided,
            Ok(None) => {
                self.over_auth_budget();
                return Handled::Close;
            }
            Err(DecodeError::UnknownTag(_)) => {
                return self.malformed(RelayError::UnknownCommand).await;
            }
            Err(DecodeError::FrameTooLarge(_)) => {
                return self.malformed(RelayError::TooLarge).await;
            }
            Err(_) => return self.malformed(RelayError::Malformed).await,
        };
        let response = match step {
            Step::Reply(r) => r,
            Step::Write { op, then } if is_ack => return self.acks(op, then).await,
            Step::Write { op, then } => self.commit(op, then).await,
            Step::Subscribe {
                receive_id,
                delivery_key,
            } => {
                if !write(&mut self.send, &Response::Ok).await {
                    return Handled::Close;
                }
                return Handled::Subscribe(receive_id, delivery_key);
            }
            Step::FetchRelayKey { destination } => {
                self.shared.forwarder.fetch_key(&destination).await
            }
        };
        if let Response::Error(e) = &response {
            self.shared.metrics.reject_error(e);
        }
        let written = write(&mut self.send, &response).await;
        if self.over_auth_budget() {
            return Handled::Close;
        }
        if written {
            self.answered = true;
            if matches!(response, Response::Stored) {
                self.deposits_answered += 1;
            }
            Handled::Continue
        } else {
            Handled::Close
        }
    }

    /// Answers a run of acks. A subscriber acks as deliveries arrive, so
    /// acks often wait on the stream back to back: every one already
    /// received is checked and queued before the first commit is awaited,
    /// so they share one commit instead of taking one each. Each is still
    /// its own command with its own signature and its own answer, in order.
    async fn acks(&mut self, op: WriteOp, then: Then) -> Handled {
        let shared = self.shared.clone();
        let mut answers = vec![self.queue(op, then).await];
        while answers.len() < ACK_RUN {
            // One signature check per scheduling turn, as between frames,
            // and none once the connection is over its budget.
            tokio::task::yield_now().await;
            if self.state.over_budget() {
                break;
            }
            let Some(frame) = self.frames.ready() else {
                break;
            };
            let ack = match frame {
                Ok(Some(payload)) => match Request::decode(&payload) {
                    Ok(r @ Request::Ack(_)) => r,
                    // Anything else is handled as usual once these are.
                    _ => {
                        self.frames.push_back(Ok(Some(payload)));
                        break;
                    }
                },
                other => {
                    self.frames.push_back(other);
                    break;
                }
            };
            let state = self.state.clone();
            let turn = self.turn.clone();
            let work = {
                let (shared, state) = (shared.clone(), state.clone());
                move || shared.core.handle(&state, ack, shared.clock.now())
            };
            let step = shared.gate.run(|| state.standing(), &turn, work).await;
            state.charge_host(shared.clock.now());
            answers.push(match step {
                Step::Write { op, then } => self.queue(op, then).await,
                Step::Reply(r) => Answer::Now(r),
                // An ack is answered or written, nothing else.
                _ => Answer::Now(Response::Error(RelayError::Internal)),
            });
        }
        for answer in answers {
            let response = match answer {
                Answer::Now(r) => r,
                Answer::Later(then, done) => self.committed(done.await, then).await,
            };
            if let Response::Error(e) = &response {
                shared.metrics.reject_error(e);
            }
            if !write(&mut self.send, &response).await {
                return Handled::Close;
            }
            self.answered = true;
        }
        if self.over_auth_budget() {
            return Handled::Close;
        }
        Handled::Continue
    }

    /// Gives the connection its full receive window the first time one of
    /// its checks has passed.
    fn raise_window_once_proven(&self) {
        if self.state.has_passed_a_check() && !self.window_raised.swap(true, Ordering::Relaxed) {
            self.conn
                .set_receive_window(VarInt::from_u32(CONNECTION_RECEIVE_WINDOW));
        }
    }

    /// True, and the connection closed, once its requests have failed
    /// [`MAX_AUTH_FAILURES`] signature checks (counted by the core where
    /// they fail: see [`ConnState::failed_checks`]).
    fn over_auth_budget(&mut self) -> bool {
        if !self.state.over_budget() {
            return false;
        }
        if self.state.host_exhausted() {
            self.shared.metrics.reject(Refusal::HostFailedChecks);
        }
        let _ = self.send.finish();
        self.conn.close(
            codes::TOO_MANY_AUTH_FAILURES,
            b"too many failed signature checks",
        );
        true
    }

    /// Queues `op` for the next commit without waiting for it.
    async fn queue(
        &self,
        op: WriteOp,
        then: Then,
    ) -> Answer<impl Future<Output = Committed> + use<>> {
        match self.shared.writer.queue(op).await {
            Ok(done) => Answer::Later(then, done),
            Err(e) => Answer::Now(Response::Error(store_error(&e))),
        }
    }

    async fn commit(&self, op: WriteOp, then: Then) -> Response {
        let outcome = self.shared.writer.submit(op).await;
        self.committed(outcome, then).await
    }

    /// The answer to a write once committed: what [`Core::finish`] decides,
    /// with its effect carried out.
    async fn committed(&self, outcome: Committed, then: Then) -> Response {
        let finished = self.shared.core.finish(&self.state, then, outcome);
        let registry = &self.shared.registry;
        match finished.effect {
            None => {}
            Some(Effect::Deposited { receive_id }) => {
                self.shared.metrics.deposits.fetch_add(1, Ordering::Relaxed);
                registry.new_envelope(&receive_id);
            }
            Some(Effect::Acked {
                receive_id,
                message_id,
            }) => registry.acked(&receive_id, message_id),
            Some(Effect::Deleted { receive_id }) => registry.deleted(&receive_id),
            Some(Effect::AwaitForward(pending)) => {
                let record = self
                    .shared
                    .forwarder
                    .await_forward(pending.forward_id, pending.destination)
                    .await;
                return pending.answered(&self.state, record);
            }
        }
        finished.response
    }

    /// Pushes deliveries until the subscription ends. Returns true if the
    /// stream goes on as a plain request stream: after `SubscriptionEnded`
    /// the relay still answers requests (acks) the client already sent on
    /// it, until the client finishes the stream.
    async fn subscription(&mut self, id: MailboxId, key: DeliveryKey) -> bool {
        let shared = self.shared.clone();
        let sub = shared.registry.subscribe(id);
        let mut shutdown = shared.shutdown.clone();
        let mut in_flight: HashSet<MessageId> = HashSet::new();
        let mut cursor: Option<u64> = None;
        loop {
            let (ended, acked) = {
                let mut st = sub.lock();
                (st.ended, std::mem::take(&mut st.acked))
            };
            if let Some(reason) = ended {
                let ok = write(&mut self.send, &Response::SubscriptionEnded(reason)).await;
                shared.registry.unsubscribe(&id, &sub);
                return ok;
            }
            for m in acked {
                in_flight.remove(&m);
            }
            // One envelope is read and sealed at a time: a subscriber that
            // does not read blocks the write, and whatever was read ahead
            // would sit in memory (a window of large envelopes is 2 MiB per
            // stream, 64 MiB per connection).
            let mut room = DELIVERY_WINDOW.saturating_sub(in_flight.len());
            let mut failed = false;
            while room > 0 {
                let now = shared.clock.now();
                match shared.core.deliveries(&id, &key, cursor, now, 1) {
                    Ok(batch) => {
                        let Some(d) = batch.into_iter().next() else {
                            break;
                        };
                        // A subscriber that does not read must not hold up a
                        // shutdown: the half-written frame is abandoned with
                        // a reset (the envelope stays stored, unacked).
                        let deliver = Response::Deliver(d.sealed);
                        let written = tokio::select! {
                            ok = write(&mut self.send, &deliver) => Some(ok),
                            () = until_shutdown(&mut shutdown) => None,
                        };
                        let written = written.unwrap_or_else(|| {
                            let _ = self.send.reset(codes::SHUTDOWN);
                            self.abandoned = true;
                            false
                        });
                        if !written {
                            shared.registry.unsubscribe(&id, &sub);
                            return false;
                        }
                        shared.metrics.deliveries.fetch_add(1, Ordering::Relaxed);
                        in_flight.insert(d.message_id);
                        cursor = Some(d.seq);
                        room -= 1;
                    }
                    Err(e) => {
                        let err = store_error(&e);
                        tracing::error!("reading deliveries failed: {e}");
                        write(&mut self.send, &Response::Error(err)).await;
                        let _ = self.send.finish();
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                break;
            }
            if shared.draining.load(Ordering::SeqCst) {
                let _ = self.send.finish();
                break;
            }
            tokio::select! {
                () = sub.notify.notified() => {}
                frame = self.frames.next() => {
                    if let Ok(Some(payload)) = &frame {
                        // One subscription per stream.
                        if matches!(Request::decode(payload), Ok(Request::Subscribe(_))) {
                            self.malformed(RelayError::Malformed).await;
                            break;
                        }
                    }
                    match Box::pin(self.on_frame(frame)).await {
                        Handled::Continue => {}
                        Handled::Close | Handled::Subscribe(..) => break,
                    }
                }
                () = until_shutdown(&mut shutdown) => {
                    let _ = self.send.finish();
                    break;
                }
            }
        }
        shared.registry.unsubscribe(&id, &sub);
        false
    }
}

async fn sweep(shared: Arc<Shared>, interval_secs: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(interval_secs));
    loop {
        tick.tick().await;
        loop {
            let op = shared.core.expiry_op(shared.clock.now(), EXPIRY_BATCH);
            match shared.writer.submit(op).await {
                Ok(WriteOutcome::Expired { count }) => {
                    if count > 0 {
                        tracing::info!("expired {count} envelopes");
                    }
                    if count < EXPIRY_BATCH {
                        break;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::error!("expiry sweep failed: {e}");
                    break;
                }
            }
        }
        // Forwards past their TTL, and final states past their keep time.
        let now = shared.clock.now();
        let op = WriteOp::ForwardExpire {
            now,
            keep_until: now.saturating_add(crate::logic::limits::FORWARD_STATUS_KEEP_SECS),
            limit: EXPIRY_BATCH,
        };
        match shared.writer.submit(op).await {
            Ok(WriteOutcome::Expired { count }) if count > 0 => {
                shared
                    .metrics
                    .forwards_expired
                    .fetch_add(count as u64, Ordering::Relaxed);
                tracing::info!("{count} forwards expired undelivered");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("forward expiry sweep failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unproven_requests_wait_for_the_gate_and_proven_ones_do_not() {
        let gate = Arc::new(PriorityGate::new(1, None));
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        // An unproven request's check is under way (it holds the permit).
        let held = gate.unproven.acquire().await.unwrap();
        let ran = Arc::new(AtomicUsize::new(0));
        let unproven = tokio::spawn({
            let (gate, ran, turn) = (gate.clone(), ran.clone(), turn.clone());
            async move {
                gate.run(
                    || Standing::Unproven,
                    &turn,
                    move || ran.fetch_add(1, Ordering::SeqCst),
                )
                .await;
            }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(ran.load(Ordering::SeqCst), 0, "ran without the permit");
        // A proven connection's request runs at once.
        assert_eq!(gate.run(|| Standing::Proven, &turn, || 7).await, 7);
        drop(held);
        tokio::time::timeout(Duration::from_secs(60), unproven)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        // The permit is back: the next unproven request runs.
        assert_eq!(gate.run(|| Standing::Unproven, &turn, || 8).await, 8);
    }

    /// One unproven connection queues one request at a time: however many
    /// of its streams wait, another connection's request is next in line.
    #[tokio::test]
    async fn an_unproven_connection_queues_one_request_at_a_time() {
        let gate = Arc::new(PriorityGate::new(1, None));
        let (busy, newcomer) = (
            Arc::new(tokio::sync::Mutex::new(())),
            Arc::new(tokio::sync::Mutex::new(())),
        );
        let held = gate.unproven.acquire().await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = tokio::task::JoinSet::new();
        // Ten streams of one connection queue first...
        for i in 0..10 {
            let (gate, busy, order) = (gate.clone(), busy.clone(), order.clone());
            tasks.spawn(async move {
                gate.run(
                    || Standing::Unproven,
                    &busy,
                    move || order.lock().unwrap().push(i),
                )
                .await;
            });
        }
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        // ...then another connection's one request.
        tasks.spawn({
            let (gate, newcomer, order) = (gate.clone(), newcomer.clone(), order.clone());
            async move {
                gate.run(
                    || Standing::Unproven,
                    &newcomer,
                    move || order.lock().unwrap().push(99),
                )
                .await;
            }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        drop(held);
        tokio::time::timeout(Duration::from_secs(60), async {
            while tasks.join_next().await.is_some() {}
        })
        .await
        .unwrap();
        let order = order.lock().unwrap().clone();
        assert_eq!(order.len(), 11);
        let at = order.iter().position(|&i| i == 99).unwrap();
        assert!(at <= 1, "the newcomer ran {at}th: {order:?}");
    }

    /// The suspect lane's work runs on its own thread at the lowest CPU
    /// priority; the other lanes' where they are asked for. A panic there
    /// ends the waiting task (as it did inline) and the thread goes on.
    #[tokio::test]
    async fn suspect_work_runs_on_a_thread_at_the_lowest_priority() {
        let gate = Arc::new(PriorityGate::new(1, Background::start()));
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let here = std::thread::current().id();
        let (thread, nice) = gate
            .run(
                || Standing::Suspect,
                &turn,
                || {
                    let nice = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
                    (std::thread::current().id(), nice.unwrap())
                },
            )
            .await;
        assert_ne!(thread, here);
        assert_eq!(nice, BACKGROUND_NICE);
        for lane in [Standing::Proven, Standing::Unproven] {
            let ran = gate
                .run(|| lane, &turn, || std::thread::current().id())
                .await;
            assert_eq!(ran, here, "{lane:?}");
        }
        let panicked = tokio::spawn({
            let gate = gate.clone();
            async move {
                let turn = tokio::sync::Mutex::new(());
                gate.run(|| Standing::Suspect, &turn, || panic!("a bad job"))
                    .await
            }
        })
        .await;
        assert!(panicked.unwrap_err().is_panic());
        let after = gate
            .run(|| Standing::Suspect, &turn, || std::thread::current().id())
            .await;
        assert_eq!(after, thread, "the same thread goes on");
    }

    /// A newcomer does not queue behind connections that failed something,
    /// and a request that waited for its connection's turn while another
    /// proved the connection runs at once, without a permit.
    #[tokio::test]
    async fn lanes_are_apart_and_asked_again_after_the_turn() {
        let gate = Arc::new(PriorityGate::new(1, None));
        let suspect = gate.suspect.acquire().await.unwrap();
        let turn = Arc::new(tokio::sync::Mutex::new(()));
        let newcomer = gate.run(|| Standing::Unproven, &turn, || 1);
        let newcomer = tokio::time::timeout(Duration::from_secs(60), newcomer).await;
        assert_eq!(
            newcomer.ok(),
            Some(1),
            "the newcomer waited for the suspect lane"
        );
        drop(suspect);
        let unproven = gate.unproven.acquire().await.unwrap();
        let proven = Arc::new(AtomicBool::new(false));
        let held = turn.clone().lock_owned().await;
        let waiting = tokio::spawn({
            let (gate, turn, proven) = (gate.clone(), turn.clone(), proven.clone());
            async move {
                let lane = || {
                    if proven.load(Ordering::SeqCst) {
                        Standing::Proven
                    } else {
                        Standing::Unproven
                    }
                };
                gate.run(lane, &turn, || 2).await
            }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        proven.store(true, Ordering::SeqCst);
        drop(held);
        let ran = tokio::time::timeout(Duration::from_secs(60), waiting).await;
        assert_eq!(
            ran.unwrap().unwrap(),
            2,
            "it waited for the unproven permit"
        );
        drop(unproven);
    }
}
