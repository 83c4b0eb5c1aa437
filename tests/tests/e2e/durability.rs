//! What was answered `stored` survives kill -9, SIGTERM and restarts; TTL
//! expiry uses the relay's clock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::MessageId;
use enlace_quic::{RelayConnection, TransportError};
use enlace_tests::WAIT;
use enlace_tests::mailbox::{envelope, key, next_envelope, secured_mailbox};
use enlace_tests::net::{self, frame};
use enlace_tests::proxy;
use enlace_tests::relay::{Relay, RelayCommand};
use rustix::process::Signal;

#[tokio::test]
async fn envelopes_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = Relay::start(&data, &[]).await;
    let fingerprint = *relay.address().fingerprint();
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    let dk = *mb.delivery_key.to_bytes();
    let sent: Vec<_> = (0..3).map(|_| envelope(&sender, mb.send_id)).collect();
    for env in &sent {
        conn.send(env).await.unwrap();
    }
    relay.kill_9().await;

    relay.restart().await;
    assert_eq!(*relay.address().fingerprint(), fingerprint, "identity kept");
    let conn = relay.connect().await;
    let mut sub = conn
        .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
        .await
        .unwrap();
    for env in &sent {
        assert_eq!(&next_envelope(&mut sub).await, env);
    }
    // Still secured after the restart.
    assert!(matches!(
        conn.send(&envelope(&key(), mb.send_id)).await,
        Err(TransportError::Relay(_))
    ));
    conn.close().await;
}

#[tokio::test]
async fn sigterm_with_deposits_in_flight_loses_nothing_answered_stored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = Relay::start(&data, &["--quota", "100000"]).await;
    let setup = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&setup, &sender).await;
    let dk = *mb.delivery_key.to_bytes();
    setup.close().await;

    let stored: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
    let enough = Arc::new(tokio::sync::Notify::new());
    let sender = Arc::new(sender);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let conn = relay.connect().await;
        let (stored, enough, sender) = (stored.clone(), enough.clone(), sender.clone());
        let send_id = mb.send_id;
        tasks.push(tokio::spawn(async move {
            // Deposit until the relay goes away.
            loop {
                let env = envelope(&sender, send_id);
                if conn.send(&env).await.is_err() {
                    return;
                }
                let mut s = stored.lock().unwrap();
                s.insert(env.message_id());
                if s.len() >= 200 {
                    enough.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(WAIT, enough.notified()).await.unwrap();
    relay.stop().await;
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
    }
    let stored = stored.lock().unwrap().clone();
    assert!(stored.len() >= 200);

    let relay = Relay::start(&data, &[]).await;
    let conn = relay.connect().await;
    let mut sub = conn
        .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
        .await
        .unwrap();
    let mut missing = stored.clone();
    while !missing.is_empty() {
        let got = next_envelope(&mut sub).await;
        missing.remove(&got.message_id());
        sub.ack(got.message_id(), &recipient).await.unwrap();
    }
    conn.close().await;
}

#[tokio::test]
async fn ttl_expiry_uses_the_relays_arrival_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = Relay::start(&data, &[]).await;
    let conn = relay.connect().await;
    let sender = key();
    let (recipient, mb) = secured_mailbox(&conn, &sender).await;
    let dk = *mb.delivery_key.to_bytes();
    let old = envelope(&sender, mb.send_id);
    conn.send(&old).await.unwrap();
    conn.close().await;
    // SIGINT stops it cleanly too.
    relay.signal(Signal::INT);
    assert!(relay.wait().await.success());

    // 22 days later (default TTL 21 days).
    let later = (22 * 24 * 3600).to_string();
    let relay = RelayCommand::new(&data)
        .args(&["--clock-offset-secs", &later, "--sweep-interval-secs", "1"])
        .metrics()
        .start()
        .await;
    let conn = relay.connect().await;
    let fresh = envelope(&sender, mb.send_id);
    conn.send(&fresh).await.unwrap();
    let mut sub = conn
        .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
        .await
        .unwrap();
    // Arrival order would put `old` first if it were still there.
    assert_eq!(next_envelope(&mut sub).await, fresh);
    // The background sweep removes it from disk.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = relay.metrics().await;
        if text.get("enlace_stored_envelopes") == Some(1) {
            assert_eq!(text.get("enlace_mailboxes"), Some(1));
            assert!(text.get("enlace_deposits_total").unwrap() >= 1);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not swept:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    conn.close().await;
}

#[tokio::test]
async fn sigterm_delivers_every_answer_over_a_lossy_link() {
    // Every envelope on disk after a SIGTERM was answered `Stored` to its
    // sender, even when the packet carrying an answer was lost and had to be
    // sent again: the relay closes connections only after its answers are
    // acknowledged, or once its grace period is over, and then it says how
    // many answers it cut off.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = Relay::start(&data, &["--quota", "100000"]).await;
    let setup = relay.connect().await;
    let sender = key();
    let (_, mb) = secured_mailbox(&setup, &sender).await;
    setup.close().await;
    let via_proxy = proxy::lossy(relay.socket_addr(), 3).await;

    let answered = Arc::new(AtomicU64::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let sender = Arc::new(sender);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let conn = Arc::new(
            RelayConnection::connect_to(via_proxy, *relay.address().fingerprint())
                .await
                .unwrap(),
        );
        // Several deposits in flight per connection.
        for _ in 0..8 {
            let (conn, answered, enough, sender) = (
                conn.clone(),
                answered.clone(),
                enough.clone(),
                sender.clone(),
            );
            let send_id = mb.send_id;
            tasks.spawn(async move {
                while conn.send(&envelope(&sender, send_id)).await.is_ok() {
                    if answered.fetch_add(1, Ordering::SeqCst) + 1 >= 200 {
                        enough.notify_one();
                    }
                }
            });
        }
    }
    tokio::time::timeout(WAIT, enough.notified()).await.unwrap();
    let stopping = std::time::Instant::now();
    relay.stop().await;
    let shutdown = stopping.elapsed();
    tokio::time::timeout(WAIT, async { while tasks.join_next().await.is_some() {} })
        .await
        .unwrap();
    let answered = answered.load(Ordering::SeqCst);
    let (cut_off, given_up) = unacknowledged_answers(&relay.log_text());

    let mut relay = RelayCommand::new(&data).metrics().start().await;
    let on_disk = relay
        .metrics()
        .await
        .get("enlace_stored_envelopes")
        .unwrap();
    eprintln!(
        "{answered} answered, {on_disk} on disk; shutdown took {shutdown:?}, \
         {cut_off} answers cut off at close, {given_up} given up earlier"
    );
    // The promise: nothing answered `stored` is lost.
    assert!(
        on_disk >= answered,
        "{answered} answered, {on_disk} on disk"
    );
    // The mechanism: every envelope stored whose answer the client never
    // got is a deposit answer the relay counted as not acknowledged: cut
    // off when it closed, or left unacknowledged for 5 s before the
    // shutdown began (a client that got no answer retries; the duplicate is
    // dropped by message id). Both counts are of `Stored` answers, not
    // streams. A relay that closed without waiting would lose the answers
    // of deposits in flight without counting them.
    assert!(
        on_disk - answered <= cut_off + given_up,
        "{} envelopes stored whose answer was lost; the relay counted {cut_off} + {given_up} \
         deposit answers unacknowledged",
        on_disk - answered
    );
    // And it cuts answers off only once its 10 s grace period is over.
    if cut_off > 0 {
        assert!(
            shutdown >= std::time::Duration::from_secs(10),
            "{cut_off} answers cut off after {shutdown:?}"
        );
    }
    relay.signal(Signal::TERM);
    relay.wait().await;
}

/// The relay counts cut-off answers, not streams: ten deposits pipelined
/// on one stream whose answers never reach the client are ten answers
/// unacknowledged at shutdown (the relay before this count said one).
#[tokio::test]
async fn answers_cut_off_at_shutdown_are_counted_one_by_one() {
    use enlace_protocol::command::{Request, Response};
    const DEPOSITS: u64 = 10;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let mut relay = RelayCommand::new(&data).metrics().start().await;
    let setup = relay.connect().await;
    let sender = key();
    let (_, mb) = secured_mailbox(&setup, &sender).await;
    setup.close().await;

    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = proxy::one_way(relay.socket_addr(), cut.clone()).await;
    let endpoint = net::endpoint(*relay.address().fingerprint());
    let conn = net::handshake(&endpoint, proxy).await.unwrap();
    // Hello and a mailbox creation, answered before the cut: its proof of
    // possession proves the connection, which opens its receive window (an
    // unproven one has 8 KiB, and with the relay's packets cut the client
    // would never learn of more room for the ten deposits below). Not a
    // deposit, so its answer is not one the relay counts.
    let answers = net::hello_and_create_mailbox(&conn, &key()).await;
    assert!(
        matches!(
            answers[..],
            [Response::Hello { .. }, Response::MailboxCreated { .. }]
        ),
        "{answers:?}"
    );

    // From now on nothing the relay sends arrives.
    cut.store(true, Ordering::SeqCst);
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    let mut bytes = Vec::new();
    for _ in 0..DEPOSITS {
        bytes.extend_from_slice(&frame(&Request::Send(envelope(&sender, mb.send_id))));
    }
    send.write_all(&bytes).await.unwrap();
    send.finish().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while relay.metrics().await.get("enlace_stored_envelopes") != Some(DEPOSITS) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deposits not stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    relay.stop().await;
    let (cut_off, given_up) = unacknowledged_answers(&relay.log_text());
    // Cut off at close, or given up 5 s after they were written if the
    // shutdown began later than that.
    assert_eq!(
        cut_off + given_up,
        DEPOSITS,
        "{cut_off} + {given_up} deposit answers counted as unacknowledged"
    );
    conn.close(0u32.into(), b"");
}

/// The relay's counts, from its log ("closing with N deposit answers
/// unacknowledged ... (M more, since the relay started, ...)"), of deposit
/// answers it closed without seeing acknowledged and of those it gave up
/// waiting for before the shutdown; zeros if it logged none.
fn unacknowledged_answers(log: &str) -> (u64, u64) {
    let Some(at) = log.find("closing with ") else {
        return (0, 0);
    };
    let line = log[at..].lines().next().unwrap();
    let counts: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (counts[0], counts[1])
}
