//! What was answered `stored` survives kill -9, SIGTERM and restarts; TTL
//! expiry uses the relay's clock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::MessageId;
use enlace_quic::{RelayConnection, SubscriptionEvent, TransportError};

use crate::support::{WAIT, envelope, frame, free_port, key, lossy_proxy, metric, metrics, start};

#[tokio::test]
async fn envelopes_survive_kill_9_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = start(&data, &[]).await;
    let fingerprint = *relay.address.fingerprint();
    let conn = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = conn.create_mailbox(&recipient).await.unwrap();
    let dk = *mb.delivery_key.to_bytes();
    conn.secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    let sent: Vec<_> = (0..3).map(|_| envelope(&sender, mb.send_id)).collect();
    for env in &sent {
        conn.send(env).await.unwrap();
    }
    relay.kill9().await;

    let relay = start(&data, &[]).await;
    assert_eq!(*relay.address.fingerprint(), fingerprint, "identity kept");
    let conn = relay.connect().await;
    let mut sub = conn
        .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
        .await
        .unwrap();
    for env in &sent {
        match tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
        {
            SubscriptionEvent::Envelope(got) => assert_eq!(&got, env),
            e => panic!("{e:?}"),
        }
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
    let relay = start(&data, &["--quota", "100000"]).await;
    let setup = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = setup.create_mailbox(&recipient).await.unwrap();
    let dk = *mb.delivery_key.to_bytes();
    setup
        .secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
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
    relay.signal("-TERM");
    let status = relay.wait().await;
    assert!(status.success(), "exit status {status:?}");
    for t in tasks {
        tokio::time::timeout(WAIT, t).await.unwrap().unwrap();
    }
    let stored = stored.lock().unwrap().clone();
    assert!(stored.len() >= 200);

    let relay = start(&data, &[]).await;
    let conn = relay.connect().await;
    let mut sub = conn
        .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
        .await
        .unwrap();
    let mut missing = stored.clone();
    while !missing.is_empty() {
        match tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
        {
            SubscriptionEvent::Envelope(got) => {
                missing.remove(&got.message_id());
                sub.ack(got.message_id(), &recipient).await.unwrap();
            }
            e => panic!("{e:?}"),
        }
    }
    conn.close().await;
}

#[tokio::test]
async fn ttl_expiry_uses_the_relays_arrival_time() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let relay = start(&data, &[]).await;
    let conn = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = conn.create_mailbox(&recipient).await.unwrap();
    let dk = *mb.delivery_key.to_bytes();
    conn.secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    let old = envelope(&sender, mb.send_id);
    conn.send(&old).await.unwrap();
    conn.close().await;
    // SIGINT stops it cleanly too.
    relay.signal("-INT");
    assert!(relay.wait().await.success());

    // 22 days later (default TTL 21 days).
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let later = (22 * 24 * 3600).to_string();
    let relay = start(
        &data,
        &[
            "--clock-offset-secs",
            &later,
            "--metrics",
            &metrics_addr,
            "--sweep-interval-secs",
            "1",
        ],
    )
    .await;
    let conn = relay.connect().await;
    let fresh = envelope(&sender, mb.send_id);
    conn.send(&fresh).await.unwrap();
    let mut sub = conn
        .subscribe(mb.receive_id, &recipient, DeliveryKey::from_bytes(dk))
        .await
        .unwrap();
    // Arrival order would put `old` first if it were still there.
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
    {
        SubscriptionEvent::Envelope(got) => assert_eq!(got, fresh),
        e => panic!("{e:?}"),
    }
    // The background sweep removes it from disk.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics(port).await;
        if metric(&text, "enlace_stored_envelopes") == Some(1) {
            assert_eq!(metric(&text, "enlace_mailboxes"), Some(1));
            assert!(metric(&text, "enlace_deposits_total").unwrap() >= 1);
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
    let relay = start(&data, &["--quota", "100000"]).await;
    let setup = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = setup.create_mailbox(&recipient).await.unwrap();
    setup
        .secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    setup.close().await;
    let relay_addr = format!("127.0.0.1:{}", relay.address.port())
        .parse()
        .unwrap();
    let proxy = lossy_proxy(relay_addr, 3).await;
    let via_proxy = format!("127.0.0.1:{proxy}").parse().unwrap();

    let answered = Arc::new(AtomicU64::new(0));
    let enough = Arc::new(tokio::sync::Notify::new());
    let sender = Arc::new(sender);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let conn = Arc::new(
            RelayConnection::connect_to(via_proxy, *relay.address.fingerprint())
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
    relay.signal("-TERM");
    let status = relay.wait().await;
    let shutdown = stopping.elapsed();
    assert!(status.success(), "exit status {status:?}");
    tokio::time::timeout(WAIT, async { while tasks.join_next().await.is_some() {} })
        .await
        .unwrap();
    let answered = answered.load(Ordering::SeqCst);
    let (cut_off, given_up) =
        unacknowledged_answers(&std::fs::read_to_string(data.with_extension("log")).unwrap());

    let port = free_port();
    let relay = start(&data, &["--metrics", &format!("127.0.0.1:{port}")]).await;
    let on_disk = metric(&metrics(port).await, "enlace_stored_envelopes").unwrap();
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
    relay.signal("-TERM");
    relay.wait().await;
}

/// A UDP forwarder between one client and `relay` that passes everything
/// until `cut` is set, then nothing from the relay to the client: the
/// client gets no answer and acknowledges nothing, while the relay still
/// gets its requests.
async fn one_way_proxy(
    relay: std::net::SocketAddr,
    cut: Arc<std::sync::atomic::AtomicBool>,
) -> std::net::SocketAddr {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(relay).await.unwrap();
        let mut buf = vec![0u8; 65536];
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            return;
        };
        let _ = back.send(&buf[..n]).await;
        let (back2, front2) = (back.clone(), front.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = back2.recv(&mut buf).await {
                if !cut.load(Ordering::SeqCst) {
                    let _ = front2.send_to(&buf[..n], client).await;
                }
            }
        });
        while let Ok((n, _)) = front.recv_from(&mut buf).await {
            let _ = back.send(&buf[..n]).await;
        }
    });
    addr
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
    let port = free_port();
    let relay = start(&data, &["--metrics", &format!("127.0.0.1:{port}")]).await;
    let setup = relay.connect().await;
    let (recipient, sender) = (key(), key());
    let mb = setup.create_mailbox(&recipient).await.unwrap();
    setup
        .secure(mb.receive_id, *sender.public(), &recipient)
        .await
        .unwrap();
    setup.close().await;

    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay_addr = format!("127.0.0.1:{}", relay.address.port())
        .parse()
        .unwrap();
    let proxy = one_way_proxy(relay_addr, cut.clone()).await;
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(
        enlace_quic::client_config(*relay.address.fingerprint()).unwrap(),
    );
    let conn = endpoint
        .connect(proxy, "enlace-relay")
        .unwrap()
        .await
        .unwrap();
    // Hello and a mailbox creation, answered before the cut: its proof of
    // possession proves the connection, which opens its receive window (an
    // unproven one has 8 KiB, and with the relay's packets cut the client
    // would never learn of more room for the ten deposits below). Not a
    // deposit, so its answer is not one the relay counts.
    let mut binding = [0u8; 32];
    conn.export_keying_material(
        &mut binding,
        enlace_protocol::command::BINDING_EXPORTER_LABEL,
        b"",
    )
    .unwrap();
    let dh = enlace_protocol::delivery::DhKeyPair::generate(&mut rand::rng());
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut bytes = frame(&Request::hello());
    bytes.extend_from_slice(&frame(&Request::create_mailbox(
        &key(),
        *dh.public(),
        &enlace_protocol::command::ConnectionBinding(binding),
    )));
    send.write_all(&bytes).await.unwrap();
    send.finish().unwrap();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let mut header = [0u8; 4];
        tokio::time::timeout(WAIT, recv.read_exact(&mut header))
            .await
            .unwrap()
            .unwrap();
        let mut payload = vec![0u8; enlace_protocol::frame::payload_len(header).unwrap()];
        recv.read_exact(&mut payload).await.unwrap();
        answers.push(Response::decode(&payload).unwrap());
    }
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
    while metric(&metrics(port).await, "enlace_stored_envelopes") != Some(DEPOSITS) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "deposits not stored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    relay.signal("-TERM");
    let status = relay.wait().await;
    assert!(status.success(), "exit status {status:?}");
    let (cut_off, given_up) =
        unacknowledged_answers(&std::fs::read_to_string(data.with_extension("log")).unwrap());
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
