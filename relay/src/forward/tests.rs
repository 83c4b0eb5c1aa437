//! The forwarding half against real QUIC endpoints on 127.0.0.1: a fake
//! destination, addresses that swallow every packet, stores that fail.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, ForwardState, RelayError, Request, Response};
use enlace_protocol::keys::Fingerprint;
use enlace_quic::config::ServerLimits;
use enlace_quic::frame::{FrameStream, frame_with};
use tokio::sync::watch;

use super::forwarder::{Forwarder, Policy};
use super::peers::address_key;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::store::forward::QueuedForward;
use crate::store::writer::Writer;
use crate::store::{Store, WriteOp};

impl Forwarder {
    /// What the forward's record says to its client.
    fn state(&self, id: &ForwardId) -> Result<ForwardState, RelayError> {
        self.store()
            .forward_status(id)
            .map(crate::logic::forward::forward_state)
            .map_err(|e| crate::logic::store_error(&e))
    }
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
        _destination: &Fingerprint,
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
    forwarder.kick(Fingerprint([7; 32]));
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
) -> (Forwarder, watch::Sender<bool>) {
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
        enlace_quic::config::server_config(
            identity.cert().clone(),
            identity.pkcs8(),
            &ServerLimits {
                max_streams: 24,
                stream_receive_window: 2 * 67 * 1024,
                receive_window: 1024 * 1024,
                send_window: 1024 * 1024,
                idle_timeout: Duration::from_secs(30),
            },
        )
        .unwrap(),
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
                destination_fp: *to.fingerprint(),
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
    let fp = *live.fingerprint();
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
    forwarder.kick(*destination.fingerprint());
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
    ) -> Result<Option<crate::store::forward::ForwardRecord>, crate::store::StoreError> {
        self.inner.forward_status(id)
    }
    fn forward_queue(
        &self,
        destination: &Fingerprint,
        limit: usize,
    ) -> Result<Vec<QueuedForward>, crate::store::StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.forward_queue(destination, limit)
    }
    fn forward_queue_from(
        &self,
        destination: &Fingerprint,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<QueuedForward>, crate::store::StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.forward_queue_from(destination, from_seq, limit)
    }
    fn forward_destinations(
        &self,
        limit: usize,
    ) -> Result<Vec<Fingerprint>, crate::store::StoreError> {
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
    forwarder.kick(*dead.fingerprint());
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
    forwarder.kick(*private.fingerprint());
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
