//! Crash durability of forwarding (docs/protocol.md section 12): senders
//! forward through a home relay H to a mailbox on a destination relay D
//! while H is killed with SIGKILL at random moments (also during start-up),
//! and in some cycles D too, and both are restarted. At the end every
//! forward H answered `Queued` or `Stored` must be in D's mailbox, each
//! exactly once after dropping duplicates by message id, and every restart
//! must reopen its store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, ForwardState};
use enlace_protocol::envelope::{Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::limits::MAX_FORWARD_STATUS_IDS;
use enlace_quic::{ForwardOutcome, RelayConnection, SubscriptionEvent};
use enlace_tests::mailbox::{envelope, key};
use enlace_tests::measure::load_average;
use enlace_tests::relay::{Relay, RelayCommand};
use enlace_tests::{env_or, unix_now};

const ARGS: &[&str] = &["--quota", "1000000", "--max-connections-per-ip", "1000"];

/// A forward as the sender keeps it: the id stays the same on every retry.
#[derive(Clone)]
struct Pending {
    forward_id: ForwardId,
    envelope: Envelope,
}

/// A sender: an own client of H (a mailbox there, proved again with a
/// signed ack on each new connection).
struct Sender {
    home_mailbox: MailboxId,
    home_recipient: SigningKeyPair,
    signer: Arc<SigningKeyPair>,
    send_id: MailboxId,
}

async fn own_connection(home: &RelayAddress, s: &Sender) -> Option<RelayConnection> {
    let conn = RelayConnection::connect(home).await.ok()?;
    conn.ack(s.home_mailbox, MessageId([0; 16]), &s.home_recipient)
        .await
        .ok()?;
    Some(conn)
}

/// Waits until H reports no forward still queued (every one `Stored` or
/// refused), so that draining D cannot race a late delivery.
async fn wait_queue_empty(conn: &RelayConnection, ids: &[ForwardId], limit: Duration) -> usize {
    let until = Instant::now() + limit;
    loop {
        let mut queued = 0;
        for chunk in ids.chunks(MAX_FORWARD_STATUS_IDS) {
            let states = conn.forward_status(chunk).await.unwrap();
            queued += states
                .iter()
                .filter(|s| matches!(s, ForwardState::Queued))
                .count();
        }
        if queued == 0 || Instant::now() > until {
            return queued;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Returns (answered, drained, duplicates).
async fn fwd_crash_cycles(cycles: u64, senders: usize) -> (usize, usize, usize) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (home_data, dest_data) = (dir.path().join("home"), dir.path().join("dest"));
    // A relay that cannot reopen its store fails the test where it starts
    // (0 failed reopens). D comes back on its port; H on any.
    let mut dest = Relay::start(&dest_data, ARGS).await;
    let dest_address = dest.address().clone();
    let mut home = Relay::start(&home_data, ARGS).await;

    // One mailbox on D, secured for each sender's signing key in turn is not
    // possible (one sender key per mailbox): a mailbox per sender.
    let dconn = dest.connect().await;
    let hconn = home.connect().await;
    let mut all = Vec::new();
    let mut dest_boxes = Vec::new();
    for _ in 0..senders {
        let (recipient, signer) = (key(), key());
        let mb = dconn.create_mailbox(&recipient).await.unwrap();
        dconn
            .secure(mb.receive_id, *signer.public(), &recipient)
            .await
            .unwrap();
        let home_recipient = key();
        let hm = hconn.create_mailbox(&home_recipient).await.unwrap();
        all.push(Arc::new(Sender {
            home_mailbox: hm.receive_id,
            home_recipient,
            signer: Arc::new(signer),
            send_id: mb.send_id,
        }));
        dest_boxes.push((mb.receive_id, recipient, *mb.delivery_key.to_bytes()));
    }
    hconn.create_mailbox(&key()).await.unwrap();
    let dest_key = hconn
        .fetch_relay_key(&dest_address, unix_now())
        .await
        .unwrap();
    hconn.close().await;
    dconn.close().await;
    home.kill_9().await;

    let sent: Arc<Mutex<HashMap<MessageId, Envelope>>> = Arc::default();
    let ids: Arc<Mutex<Vec<ForwardId>>> = Arc::default();
    let answered: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<(usize, Pending)>>> = Arc::default();
    let (mut dest_kills, mut home_startup_kills) = (0u64, 0u64);
    for cycle in 0..cycles {
        if !dest.is_running() && cycle % 3 != 2 {
            // D comes back (it stays down for the cycle after it was killed
            // in some cycles, so H holds queued forwards across a kill).
            dest.restart().await;
        }
        if cycle % 5 == 4 {
            // H killed while it opens its store or recovers its queue.
            RelayCommand::new(&home_data)
                .args(ARGS)
                .kill_9_after(Duration::from_millis(rand::random_range(0..80)))
                .await;
            home_startup_kills += 1;
            continue;
        }
        let mut home = Relay::start(&home_data, ARGS).await;
        let retry = std::mem::take(&mut *unanswered.lock().unwrap());
        let inflight: Arc<Mutex<HashMap<MessageId, (usize, Pending)>>> = Arc::default();
        let mut tasks = tokio::task::JoinSet::new();
        for (s, sender) in all.iter().enumerate() {
            let Some(conn) = own_connection(home.address(), sender).await else {
                continue;
            };
            let (sent, ids, answered, inflight) = (
                sent.clone(),
                ids.clone(),
                answered.clone(),
                inflight.clone(),
            );
            let (sender, dest_address) = (sender.clone(), dest_address.clone());
            let mut retry: Vec<Pending> = retry
                .iter()
                .filter(|(i, _)| *i == s)
                .map(|(_, p)| p.clone())
                .collect();
            tasks.spawn(async move {
                loop {
                    let p = retry.pop().unwrap_or_else(|| {
                        let envelope = envelope(&sender.signer, sender.send_id);
                        let forward_id = ForwardId(rand::random());
                        sent.lock()
                            .unwrap()
                            .insert(envelope.message_id(), envelope.clone());
                        ids.lock().unwrap().push(forward_id);
                        Pending {
                            forward_id,
                            envelope,
                        }
                    });
                    let id = p.envelope.message_id();
                    inflight.lock().unwrap().insert(id, (s, p.clone()));
                    match conn
                        .forward(&dest_address, &dest_key, p.forward_id, &p.envelope)
                        .await
                    {
                        Ok(ForwardOutcome::Queued | ForwardOutcome::Stored) => {
                            answered.lock().unwrap().insert(id);
                            inflight.lock().unwrap().remove(&id);
                        }
                        Err(e) => {
                            if !matches!(e, enlace_quic::TransportError::Relay(_)) {
                                return;
                            }
                            // A typed refusal: the forward is not answered
                            // and the sender tries it again later.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
        }
        let run = Duration::from_millis(rand::random_range(100..1500));
        if cycle % 3 == 1 {
            // D dies too, before or after H.
            let d_at = run.mul_f64(rand::random_range(0.0..1.5));
            let (first, second) = if d_at < run { (d_at, run) } else { (run, d_at) };
            tokio::time::sleep(first).await;
            if d_at < run {
                dest.kill_9().await;
            } else {
                home.kill_9().await;
                tokio::time::sleep(second - first).await;
                dest.kill_9().await;
                dest_kills += 1;
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                unanswered
                    .lock()
                    .unwrap()
                    .extend(inflight.lock().unwrap().drain().map(|(_, v)| v));
                continue;
            }
            dest_kills += 1;
            tokio::time::sleep(second - first).await;
        } else {
            tokio::time::sleep(run).await;
        }
        home.kill_9().await;
        // A sender waiting on a dead relay would wait for the idle timeout:
        // stop them; what they had in flight is sent again next cycle.
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        unanswered
            .lock()
            .unwrap()
            .extend(inflight.lock().unwrap().drain().map(|(_, v)| v));
    }

    // Both come back; H tries every queued forward once more at start.
    if !dest.is_running() {
        dest.restart().await;
    }
    let home = Relay::start(&home_data, ARGS).await;
    let conn = own_connection(home.address(), &all[0]).await.unwrap();
    let ids = ids.lock().unwrap().clone();
    let still_queued = wait_queue_empty(&conn, &ids, Duration::from_secs(120)).await;
    assert_eq!(still_queued, 0, "forwards still queued at H after 120 s");

    // Drain D.
    let sent = sent.lock().unwrap().clone();
    let answered = answered.lock().unwrap().clone();
    let dconn = dest.connect().await;
    let mut seen: HashMap<MessageId, usize> = HashMap::new();
    let mut drained = 0;
    // Per mailbox: drain until every answered forward to it arrived (or a
    // generous timeout: what is missing then is reported as lost), then
    // deposit a marker directly at D and drain up to it, so that extras
    // (duplicates, unanswered forwards that made it) already stored are
    // counted without waiting on a silence.
    for ((receive_id, recipient, delivery), sender) in dest_boxes.iter().zip(&all) {
        let mut expected: HashSet<MessageId> = answered
            .iter()
            .filter(|id| sent.get(id).is_some_and(|e| e.send_id() == sender.send_id))
            .copied()
            .collect();
        let mut sub = dconn
            .subscribe(
                *receive_id,
                recipient,
                enlace_protocol::delivery::DeliveryKey::from_bytes(*delivery),
            )
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(120);
        let mut marker = None;
        loop {
            if expected.is_empty() && marker.is_none() {
                let m = envelope(&sender.signer, sender.send_id);
                marker = Some(m.message_id());
                dconn.send(&m).await.unwrap();
            }
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, sub.next()).await {
                Err(_) => break,
                Ok(Ok(SubscriptionEvent::Envelope(got))) => {
                    let id = got.message_id();
                    if Some(id) == marker {
                        sub.ack(id, recipient).await.unwrap();
                        break;
                    }
                    expected.remove(&id);
                    let original = sent.get(&id).expect("delivered an envelope never sent");
                    assert_eq!(&got, original, "delivered an altered envelope");
                    *seen.entry(id).or_default() += 1;
                    drained += 1;
                    sub.ack(id, recipient).await.unwrap();
                }
                Ok(other) => panic!("{other:?}"),
            }
        }
    }
    let lost = answered.iter().filter(|id| !seen.contains_key(id)).count();
    let duplicates = seen.values().map(|n| n - 1).sum::<usize>();
    println!(
        "FWD-CRASH: {cycles} cycles ({home_startup_kills} killing H in start-up, {dest_kills} killing D too), {senders} senders through H to D, {} forwards sent, {} answered Queued or Stored, {drained} drained from D, {lost} lost, {duplicates} delivered twice, 0 failed reopens, {:.0} s (load {})",
        sent.len(),
        answered.len(),
        started.elapsed().as_secs_f64(),
        load_average()
    );
    assert_eq!(
        lost, 0,
        "{lost} forwards answered Queued or Stored were lost"
    );
    conn.close().await;
    dconn.close().await;
    drop(home);
    drop(dest);
    (answered.len(), drained, duplicates)
}

#[tokio::test(flavor = "multi_thread")]
async fn forwards_survive_kill_9_of_home_and_destination() {
    let (answered, _, duplicates) =
        fwd_crash_cycles(env_or("ENLACE_FWD_CRASH_CYCLES", 10), 2).await;
    assert!(answered > 0);
    assert_eq!(duplicates, 0);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "long form: 100 kill cycles of H and D"]
async fn long_forward_kill_9_cycles() {
    let (answered, _, duplicates) =
        fwd_crash_cycles(env_or("ENLACE_FWD_CRASH_CYCLES", 100), 4).await;
    assert!(answered > 0);
    assert_eq!(duplicates, 0);
}
