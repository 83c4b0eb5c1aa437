//! Relay-to-relay forwarding with three real relays on loopback: a sender
//! whose home relay is H reaches a mailbox on D through H only; H learns
//! only D, D sees only H's address; H queues durably while D is down and
//! delivers exactly once after restarts of both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{Forward, ForwardId, ForwardState, RelayError, Request, Response};
use enlace_protocol::envelope::{Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::limits::BODY_SMALL;
use enlace_quic::{ForwardOutcome, RelayConnection, TransportError, VerifiedRelayKey};
use enlace_tests::mailbox::{envelope_with_body, key, next_envelope, secured_mailbox};
use enlace_tests::net::raw_exchange;
use enlace_tests::relay::{Relay, RelayCommand};
use enlace_tests::{WAIT, unix_now};

/// A relay with `extra` arguments that logs at debug level (the tests read
/// which peers it saw).
async fn start_node(dir: &Path, extra: &[&str]) -> Relay {
    RelayCommand::new(dir).args(extra).debug_log().start().await
}

/// An envelope with a random body, so the test can look for its bytes.
fn sealed_envelope(sender: &SigningKeyPair, send_id: MailboxId) -> Envelope {
    let body: Vec<u8> = (0..BODY_SMALL).map(|_| rand::random::<u8>()).collect();
    envelope_with_body(sender, send_id, &body)
}

/// A connection to `home` that holds a mailbox there (an own client).
async fn own_client(home: &Relay) -> RelayConnection {
    let conn = home.connect().await;
    conn.create_mailbox(&key()).await.unwrap();
    conn
}

/// `dest`'s forwarding key, fetched through `client`'s home relay.
async fn forward_key(client: &RelayConnection, dest: &Relay) -> VerifiedRelayKey {
    client
        .fetch_relay_key(dest.address(), unix_now())
        .await
        .unwrap()
}

/// Polls the home relay until every forward is stored at the destination.
async fn wait_stored(home: &RelayConnection, ids: &[ForwardId]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let states = home.forward_status(ids).await.unwrap();
        if states.iter().all(|s| *s == ForwardState::Stored) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "forwards not delivered in time: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn forward_reaches_the_destination_which_sees_only_the_home_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let mut home = RelayCommand::new(&tmp.path().join("home"))
        .debug_log()
        .metrics()
        .start()
        .await;
    let mut dest = start_node(&tmp.path().join("dest"), &[]).await;
    let mut other = start_node(&tmp.path().join("other"), &[]).await;

    let sender = key();
    let dest_conn = dest.connect().await;
    let (recipient, mb) = secured_mailbox(&dest_conn, &sender).await;

    // (d) A connection holding no mailbox on H is refused, for every
    // forwarding command; H's own key is public.
    let stranger = home.connect().await;
    let relay_key = stranger
        .fetch_relay_key(home.address(), unix_now())
        .await
        .unwrap();
    assert!(relay_key.expires > unix_now());
    match stranger.fetch_relay_key(dest.address(), unix_now()).await {
        Err(TransportError::Relay(RelayError::NotOwnClient)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    let d_key = {
        let own = own_client(&home).await;
        forward_key(&own, &dest).await
    };
    let env = sealed_envelope(&sender, mb.send_id);
    match stranger
        .forward(dest.address(), &d_key, ForwardId(rand::random()), &env)
        .await
    {
        Err(TransportError::Relay(RelayError::NotOwnClient)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    match stranger.forward_status(&[ForwardId([1; 16])]).await {
        Err(TransportError::Relay(RelayError::NotOwnClient)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }

    // (a) An own client forwards through H; D stores it synchronously.
    let client = own_client(&home).await;
    let client_port = client.local_addr().unwrap().port();
    let key_d = forward_key(&client, &dest).await;
    let fid = ForwardId(rand::random());
    assert_eq!(
        client
            .forward(dest.address(), &key_d, fid, &env)
            .await
            .unwrap(),
        ForwardOutcome::Stored
    );
    // Retrying the same forward id does not send it twice.
    assert_eq!(
        client
            .forward(dest.address(), &key_d, fid, &env)
            .await
            .unwrap(),
        ForwardOutcome::Stored
    );
    assert_eq!(
        client.forward_status(&[fid]).await.unwrap(),
        vec![ForwardState::Stored]
    );
    let mut sub = dest_conn
        .subscribe(mb.receive_id, &recipient, mb.delivery_key)
        .await
        .unwrap();
    let got = next_envelope(&mut sub).await;
    assert_eq!(got, env);
    sub.ack(got.message_id(), &recipient).await.unwrap();

    // A forward to an unknown mailbox comes back as D's refusal.
    let stray = sealed_envelope(&sender, MailboxId(rand::random()));
    let stray_id = ForwardId(rand::random());
    match client
        .forward(dest.address(), &key_d, stray_id, &stray)
        .await
    {
        Err(TransportError::Relay(RelayError::UnknownMailbox)) => {}
        other => panic!("expected unknown mailbox, got {other:?}"),
    }
    assert_eq!(
        client.forward_status(&[stray_id]).await.unwrap(),
        vec![ForwardState::Refused(4)]
    );

    // (f) A bundle for another relay, or one whose key was swapped, does not
    // verify against D's pinned fingerprint; asking H for "D" at an address
    // whose fingerprint is not D's fails (H cannot pin it).
    // (H has never fetched `other`'s bundle yet, so it has none cached to
    // fall back on.)
    let impostor = RelayAddress::new(
        *other.address().fingerprint(),
        "127.0.0.1",
        dest.address().port(),
    )
    .unwrap();
    match client.fetch_relay_key(&impostor, unix_now()).await {
        Err(TransportError::Relay(RelayError::Unreachable)) => {}
        other => panic!("expected unreachable, got {other:?}"),
    }
    let other_bundle = {
        match client
            .request(&Request::FetchRelayKey {
                destination: other.address().clone(),
            })
            .await
            .unwrap()
        {
            Response::RelayKey(k) => k,
            r => panic!("{r:?}"),
        }
    };
    assert!(
        other_bundle
            .verify(dest.address().fingerprint(), unix_now())
            .is_err()
    );
    assert!(
        other_bundle
            .with_forward_dh_unsigned([7; 32])
            .verify(other.address().fingerprint(), unix_now())
            .is_err()
    );
    assert!(
        other_bundle
            .verify(other.address().fingerprint(), unix_now())
            .is_ok()
    );
    // A forward sealed to another relay's key is refused by D and never
    // stored.
    let wrong_key = VerifiedRelayKey {
        forward_dh: other_bundle
            .verify(other.address().fingerprint(), unix_now())
            .unwrap(),
        expires: u64::MAX,
    };
    let misdirected = sealed_envelope(&sender, mb.send_id);
    match client
        .forward(
            dest.address(),
            &wrong_key,
            ForwardId(rand::random()),
            &misdirected,
        )
        .await
    {
        Err(TransportError::Relay(RelayError::Auth)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }

    // H counted what happened (aggregate counts only).
    let text = home.metrics().await;
    let count = |name| text.get(name).unwrap();
    assert_eq!(count("enlace_forwards_stored_total"), 1);
    assert_eq!(count("enlace_forwards_refused_total"), 2);
    assert_eq!(
        text.get("enlace_rejections_total{reason=\"not_own_client\"}"),
        Some(3)
    );

    // The destination's log (debug) shows H's address as the peer, never
    // the sending client's.
    let d_log = dest.log_text();
    let home_peer = format!("remote=127.0.0.1:{}", home.address().port());
    assert!(d_log.contains(&home_peer), "no {home_peer} in D's log");
    assert!(
        !d_log.contains(&format!("127.0.0.1:{client_port}")),
        "the client's address is in D's log"
    );

    // (c) H's data directory and debug log never hold the destination
    // mailbox id (bytes, hex) or the plaintext body.
    home.stop().await;
    let home_log = std::fs::read(home.log()).unwrap();
    let hex = mb.send_id.to_hex();
    let body_probe = &env.body()[100..132];
    let mut haystacks = files(home.data_dir());
    haystacks.push((home.log(), home_log));
    assert!(haystacks.len() >= 4, "{} files", haystacks.len());
    for (path, bytes) in &haystacks {
        for needle in [
            &mb.send_id.0[..],
            hex.as_bytes(),
            hex.to_uppercase().as_bytes(),
            body_probe,
            &env.message_id().0[..],
        ] {
            assert!(
                !contains(bytes, needle),
                "{} holds the destination mailbox id or the plaintext",
                path.display()
            );
        }
    }
    drop(sub);
    dest.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn queued_forwards_survive_outages_and_restarts_and_arrive_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut home = start_node(&tmp.path().join("home"), &[]).await;
    let mut dest = start_node(&tmp.path().join("dest"), &[]).await;

    let sender = key();
    let (recipient, mb) = {
        let c = dest.connect().await;
        secured_mailbox(&c, &sender).await
    };
    let client = own_client(&home).await;
    let key_d = forward_key(&client, &dest).await;
    let dest_address = dest.address().clone();

    // D goes down; forwards are answered Queued (after H's fsync).
    dest.stop().await;
    let mut sent: HashMap<MessageId, ForwardId> = HashMap::new();
    for _ in 0..3 {
        let env = sealed_envelope(&sender, mb.send_id);
        let fid = ForwardId(rand::random());
        assert_eq!(
            client
                .forward(&dest_address, &key_d, fid, &env)
                .await
                .unwrap(),
            ForwardOutcome::Queued
        );
        sent.insert(env.message_id(), fid);
    }
    let ids: Vec<ForwardId> = sent.values().copied().collect();
    assert!(
        client
            .forward_status(&ids)
            .await
            .unwrap()
            .iter()
            .all(|s| *s == ForwardState::Queued)
    );

    // H restarts (same data directory, same port); the queue is still there.
    drop(client);
    home.stop().await;
    home.restart().await;
    let client = own_client(&home).await;
    for _ in 0..2 {
        let env = sealed_envelope(&sender, mb.send_id);
        let fid = ForwardId(rand::random());
        assert_eq!(
            client
                .forward(&dest_address, &key_d, fid, &env)
                .await
                .unwrap(),
            ForwardOutcome::Queued
        );
        sent.insert(env.message_id(), fid);
    }
    let ids: Vec<ForwardId> = sent.values().copied().collect();
    assert!(
        client
            .forward_status(&ids)
            .await
            .unwrap()
            .iter()
            .all(|s| *s == ForwardState::Queued)
    );

    // D comes back on the same port: H's retries deliver everything.
    dest.restart().await;
    assert_eq!(*dest.address(), dest_address);
    wait_stored(&client, &ids).await;

    // Drain D's mailbox: every message exactly once.
    let dest_conn = dest.connect().await;
    let dk_bytes = *mb.delivery_key.to_bytes();
    let mut sub = dest_conn
        .subscribe(mb.receive_id, &recipient, mb.delivery_key)
        .await
        .unwrap();
    let mut seen: HashMap<MessageId, u32> = HashMap::new();
    for _ in 0..sent.len() {
        let env = next_envelope(&mut sub).await;
        *seen.entry(env.message_id()).or_default() += 1;
        sub.ack(env.message_id(), &recipient).await.unwrap();
    }
    assert_eq!(seen.len(), sent.len());
    assert!(seen.values().all(|n| *n == 1), "{seen:?}");
    assert!(sent.keys().all(|m| seen.contains_key(m)));
    sub.finish().await.unwrap();
    // Nothing more arrives on a fresh subscription: no duplicate was stored.
    let mut sub = dest_conn
        .subscribe(
            mb.receive_id,
            &recipient,
            enlace_protocol::delivery::DeliveryKey::from_bytes(dk_bytes),
        )
        .await
        .unwrap();
    let extra = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
    assert!(extra.is_err(), "an extra delivery: {extra:?}");
    drop(sub);
    home.stop().await;
    dest.stop().await;
}

#[tokio::test]
async fn a_full_queue_and_an_unreachable_relay_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let mut home = start_node(&tmp.path().join("home"), &["--forward-queue-limit", "2"]).await;
    let mut dest = start_node(&tmp.path().join("dest"), &[]).await;
    let sender = key();
    let client = own_client(&home).await;
    let key_d = forward_key(&client, &dest).await;
    let dest_address = dest.address().clone();
    dest.stop().await;

    // While D is down, H hands out the bundle it fetched before (signed by
    // D, so clients can still seal to D); a relay H never reached is
    // unreachable.
    assert_eq!(
        client
            .fetch_relay_key(&dest_address, unix_now())
            .await
            .unwrap(),
        key_d
    );
    let never = RelayAddress::new(
        enlace_protocol::keys::Fingerprint(rand::random()),
        "127.0.0.1",
        dest_address.port(),
    )
    .unwrap();
    match client.fetch_relay_key(&never, unix_now()).await {
        Err(TransportError::Relay(RelayError::Unreachable)) => {}
        other => panic!("expected unreachable, got {other:?}"),
    }
    let send_id = MailboxId(rand::random());
    for _ in 0..2 {
        let env = sealed_envelope(&sender, send_id);
        assert_eq!(
            client
                .forward(&dest_address, &key_d, ForwardId(rand::random()), &env)
                .await
                .unwrap(),
            ForwardOutcome::Queued
        );
    }
    let env = sealed_envelope(&sender, send_id);
    match client
        .forward(&dest_address, &key_d, ForwardId(rand::random()), &env)
        .await
    {
        Err(TransportError::Relay(RelayError::ForwardQueueFull)) => {}
        other => panic!("expected a full queue, got {other:?}"),
    }
    // A sealed forward of a length no size class has is refused before it
    // is queued.
    let mut bad = Request::Forward(Forward {
        destination: dest_address.clone(),
        forward_id: ForwardId([9; 16]),
        sealed: Vec::new(),
    })
    .to_bytes();
    bad.extend_from_slice(&[0; 10]);
    let mut framed = Vec::new();
    enlace_protocol::frame::encode_frame(&bad, &mut framed).unwrap();
    assert_eq!(
        raw_exchange(client.quic(), &framed).await,
        Some(Response::Error(RelayError::Malformed))
    );
    home.stop().await;
}

/// The `enlace` CLI with two nuclei, each on its own relay: invitation,
/// messages and receipts cross between relays through each sender's home
/// relay, and a message to a relay that is down waits at the home relay
/// (`queued at home relay`) until it is stored there.
#[test]
fn cli_two_nuclei_talk_through_their_home_relays() {
    use enlace_tests::home::{Home, connect};
    use enlace_tests::relay::BlockingRelay;
    let tmp = tempfile::tempdir().unwrap();
    let relay_a = BlockingRelay::start(&tmp.path().join("relay-a"));
    let mut relay_b = BlockingRelay::start(&tmp.path().join("relay-b"));
    let ana = Home::new(tmp.path(), "ana", relay_a.address());
    let ben = Home::new(tmp.path(), "ben", relay_b.address());
    // Ben's handshake reaches Ana's mailbox on A through B.
    connect(&ana, "Ben", &ben, "Ana");
    ben.ok(&["send", "Ana", "hola desde el otro núcleo"]);
    assert_eq!(ana.read_texts(), ["hola desde el otro núcleo"]);
    ana.ok(&["send", "Ben", "recibido, nos vemos el jueves"]);
    assert_eq!(ben.read_texts(), ["recibido, nos vemos el jueves"]);

    // B is down: Ana's home relay A queues her message.
    relay_b.kill_9();
    let sent = ana.json(&["send", "Ben", "la asamblea cambia de sitio"]);
    assert_eq!(sent[0]["status"], "queued at home relay", "{sent:?}");
    assert!(ana.statuses().contains(&"queued at home relay".to_owned()));
    relay_b.restart();
    // A delivers it on its own; Ana's next read learns it was stored.
    let deadline = Instant::now() + WAIT;
    loop {
        ana.json(&["read"]);
        if !ana.statuses().iter().any(|s| s.starts_with("queued")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never stored: {:?}",
            ana.statuses()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(ben.read_texts(), ["la asamblea cambia de sitio"]);
    // Ben's receipt comes back through B.
    ana.json(&["read"]);
    assert!(
        ana.statuses().iter().all(|s| s == "delivered"),
        "{:?}",
        ana.statuses()
    );
}

/// A mailbox at its quota on the destination defers only the forwards to
/// it: forwards to other mailboxes there still arrive, and the deferred one
/// goes in once the recipient made room.
#[tokio::test]
async fn a_full_mailbox_does_not_hold_up_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let mut home = start_node(&tmp.path().join("home"), &[]).await;
    let mut dest = start_node(&tmp.path().join("dest"), &["--quota", "1"]).await;
    let sender = key();
    let dest_conn = dest.connect().await;
    let (full_owner, full) = secured_mailbox(&dest_conn, &sender).await;
    let (_, other) = secured_mailbox(&dest_conn, &sender).await;
    let client = own_client(&home).await;
    let key_d = forward_key(&client, &dest).await;

    let first = sealed_envelope(&sender, full.send_id);
    let f1 = ForwardId(rand::random());
    assert_eq!(
        client
            .forward(dest.address(), &key_d, f1, &first)
            .await
            .unwrap(),
        ForwardOutcome::Stored
    );
    // The mailbox is full: this one waits at H.
    let f2 = ForwardId(rand::random());
    assert_eq!(
        client
            .forward(
                dest.address(),
                &key_d,
                f2,
                &sealed_envelope(&sender, full.send_id)
            )
            .await
            .unwrap(),
        ForwardOutcome::Queued
    );
    // Another mailbox on D is not held up behind it.
    let f3 = ForwardId(rand::random());
    client
        .forward(
            dest.address(),
            &key_d,
            f3,
            &sealed_envelope(&sender, other.send_id),
        )
        .await
        .unwrap();
    wait_stored(&client, &[f3]).await;
    assert_eq!(
        client.forward_status(&[f2]).await.unwrap(),
        vec![ForwardState::Queued]
    );
    // Room is made; the deferred forward goes in.
    dest_conn
        .ack(full.receive_id, first.message_id(), &full_owner)
        .await
        .unwrap();
    wait_stored(&client, &[f2]).await;
    home.stop().await;
    dest.stop().await;
}

/// A forward that names the destination's real fingerprint but a host that
/// never answers delays only itself: later forwards to the real address go
/// out at once (review C2: the worker used to connect to the first queued
/// forward's address for the whole queue; then it still tried addresses one
/// after another, so the real forward waited out each 5 s connect to the
/// dead one, and a forward queued during a pass waited for the next).
#[tokio::test]
async fn a_forward_to_a_dead_address_does_not_block_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let mut home = start_node(&tmp.path().join("home"), &[]).await;
    let mut dest = start_node(&tmp.path().join("dest"), &[]).await;
    let sender = key();
    let dest_conn = dest.connect().await;
    let (owner, mb) = secured_mailbox(&dest_conn, &sender).await;
    let client = own_client(&home).await;
    let key_d = forward_key(&client, &dest).await;
    drop(client);
    // A restart, so H holds no connection to D when the dead address comes
    // first in D's queue.
    home.stop().await;
    home.restart().await;
    let client = own_client(&home).await;
    // A UDP port that swallows everything: connecting there times out.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = RelayAddress::new(
        *dest.address().fingerprint(),
        "127.0.0.1",
        black_hole.local_addr().unwrap().port(),
    )
    .unwrap();
    let stuck = ForwardId(rand::random());
    assert_eq!(
        client
            .forward(&dead, &key_d, stuck, &sealed_envelope(&sender, mb.send_id))
            .await
            .unwrap(),
        ForwardOutcome::Queued
    );
    let env = sealed_envelope(&sender, mb.send_id);
    let real = ForwardId(rand::random());
    client
        .forward(dest.address(), &key_d, real, &env)
        .await
        .unwrap();
    wait_stored(&client, &[real]).await;
    assert_eq!(
        client.forward_status(&[stuck]).await.unwrap(),
        vec![ForwardState::Queued]
    );
    let mut sub = dest_conn
        .subscribe(mb.receive_id, &owner, mb.delivery_key)
        .await
        .unwrap();
    let got = next_envelope(&mut sub).await;
    assert_eq!(got.message_id(), env.message_id());
    drop(black_hole);
    home.stop().await;
    dest.stop().await;
}

/// A relay whose address is public (here a name) never sends a packet to a
/// loopback or private address for its clients, so they cannot probe the
/// operator's network through it (review H1): fetching a key from, and
/// forwarding to, a relay on 127.0.0.1 is refused with `unreachable`. With
/// `--forward-allow-private` it forwards there; relays whose own address is
/// private (every other test here) federate with no setting.
#[tokio::test]
async fn a_public_relay_does_not_forward_to_private_addresses_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dest = start_node(&tmp.path().join("dest"), &[]).await;
    let sender = key();
    let dest_conn = dest.connect().await;
    let (owner, mb) = secured_mailbox(&dest_conn, &sender).await;
    let own_client_of = |home: &Relay| {
        let (port, fp) = (home.address().port(), *home.address().fingerprint());
        async move {
            let conn =
                RelayConnection::connect_to(format!("127.0.0.1:{port}").parse().unwrap(), fp)
                    .await
                    .unwrap();
            conn.create_mailbox(&key()).await.unwrap();
            conn
        }
    };

    let mut allowed = start_node(
        &tmp.path().join("allowed"),
        &[
            "--public-host",
            "relay.example.org",
            "--forward-allow-private",
        ],
    )
    .await;
    let client = own_client_of(&allowed).await;
    let key_d = forward_key(&client, &dest).await;
    let env = sealed_envelope(&sender, mb.send_id);
    let delivered = ForwardId(rand::random());
    client
        .forward(dest.address(), &key_d, delivered, &env)
        .await
        .unwrap();
    wait_stored(&client, &[delivered]).await;
    drop(client);
    allowed.stop().await;

    let mut public = start_node(
        &tmp.path().join("public"),
        &["--public-host", "relay.example.org"],
    )
    .await;
    let client = own_client_of(&public).await;
    assert!(matches!(
        client.fetch_relay_key(dest.address(), unix_now()).await,
        Err(TransportError::Relay(RelayError::Unreachable))
    ));
    let refused = ForwardId(rand::random());
    match client
        .forward(
            dest.address(),
            &key_d,
            refused,
            &sealed_envelope(&sender, mb.send_id),
        )
        .await
    {
        Err(TransportError::Relay(RelayError::Unreachable)) => {}
        Ok(ForwardOutcome::Queued) => {
            let deadline = Instant::now() + WAIT;
            while client.forward_status(&[refused]).await.unwrap()
                != vec![ForwardState::Refused(RelayError::Unreachable.code())]
            {
                assert!(Instant::now() < deadline, "not refused");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        other => panic!("{other:?}"),
    }
    // Only the allowed relay's forward arrived: a marker sent to the
    // mailbox directly after the refusal comes right after it, with no
    // envelope from the public relay in between.
    let marker = sealed_envelope(&sender, mb.send_id);
    dest_conn.send(&marker).await.unwrap();
    let mut sub = dest_conn
        .subscribe(mb.receive_id, &owner, mb.delivery_key)
        .await
        .unwrap();
    let got = next_envelope(&mut sub).await;
    assert_eq!(got.message_id(), env.message_id());
    let got = next_envelope(&mut sub).await;
    assert_eq!(
        got.message_id(),
        marker.message_id(),
        "an envelope other than the marker arrived"
    );
    drop(sub);
    let log = public.log_text();
    assert!(
        !log.contains("connected to relay"),
        "the public relay connected:\n{log}"
    );
    public.stop().await;
    dest.stop().await;
}
