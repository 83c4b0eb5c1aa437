//! The request logic's unit tests. They drive [`Core`] as the server does
//! (`server/stream.rs`): [`Core::handle`], the host charged, the write
//! committed, [`Core::finish`] and its effect. Only the I/O is stood in
//! for: the store commits in place of the writer thread, no other relay
//! answers a key fetch, and a forward's destination is given no time.

use std::net::IpAddr;
use std::sync::Arc;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ConnectionBinding, RelayError, Request, Response};
use enlace_protocol::delivery::{DeliveryKey, DhKeyPair};
use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::limits::BODY_SMALL;

use super::*;
use crate::identity::Identity;
use crate::policy::allowance::{
    CREATE_BURST, CREATE_REFILL_SECS, DESTINATION_WINDOW_SECS, FIRST_CONTACT_BURST,
    FIRST_CONTACT_REFILL_SECS, MAX_DESTINATIONS_PER_CONN,
};
use crate::policy::hosts::{HOST_CREATE_BURST, HostLimits, HostPolicy};
use crate::policy::standing::{RELAYED_FAILURES_DEMOTE, RELAYED_FAILURES_PER_PASS};
use crate::store::redb::RedbStore;
use crate::store::writer::Writer;
use crate::store::{
    MailboxRecord, Stats, Store, StoreError, StoredEnvelope, WriteOp, WriteOutcome,
};

/// One request as the server handles it: the answer, and the step it took
/// (a write's step is its answer).
fn exchange<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    request: Request,
    now: u64,
) -> (Response, Step) {
    let step = core.handle(conn, request, now);
    conn.charge_host(now);
    match step {
        Step::Write { op, then } => {
            let outcome = core
                .store()
                .apply(std::slice::from_ref(&op))
                .and_then(|mut o| o.pop().ok_or(StoreError::Corrupt("empty batch result")));
            let finished = core.finish(conn, then, outcome);
            let response = match finished.effect {
                Some(Effect::AwaitForward(pending)) => {
                    let record = core.store().forward_status(&pending.forward_id);
                    pending.answered(conn, record)
                }
                _ => finished.response,
            };
            (response.clone(), Step::Reply(response))
        }
        Step::Reply(r) => (r.clone(), Step::Reply(r)),
        step @ Step::Subscribe { .. } => (Response::Ok, step),
        step @ Step::FetchRelayKey { .. } => (Response::Error(RelayError::Unreachable), step),
    }
}

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
        exchange(&core, &conn, Request::hello(), NOW).0,
        Response::Hello { version: 1 }
    );
    let dh = DhKeyPair::generate(&mut rng);
    let req = Request::create_mailbox(&recipient, *dh.public(), &conn.binding);
    let Response::MailboxCreated {
        receive_id,
        send_id,
        relay_dh,
    } = exchange(&core, &conn, req, NOW).0
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
    exchange(&w.core, &w.conn, Request::Send(env), now).0
}

fn secure(w: &World) {
    let req = Request::secure(
        w.receive_id,
        *w.sender.public(),
        &w.recipient,
        &w.conn.binding,
    );
    assert_eq!(exchange(&w.core, &w.conn, req, NOW).0, Response::Ok);
}

#[test]
fn nothing_before_hello() {
    let core = Core::new(Arc::new(RedbStore::in_memory().unwrap()), Limits::default());
    let conn = ConnState::new(ConnectionBinding([1; 32]), NOW);
    let k = SigningKeyPair::from_secret_bytes(&[1; 32]);
    let req = Request::create_mailbox(&k, [9; 32], &conn.binding);
    assert_eq!(
        exchange(&core, &conn, req, NOW).0,
        Response::Error(RelayError::Malformed)
    );
    let bad = Request::Hello {
        min_version: 2,
        max_version: 9,
    };
    assert_eq!(
        exchange(&core, &conn, bad, NOW).0,
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
    let (resp, step) = exchange(&w.core, &w.conn, sub, NOW);
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
    assert_eq!(exchange(&w.core, &w.conn, ack, NOW).0, Response::Ok);
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
    exchange(&w.core, &fresh, Request::hello(), NOW);
    assert_eq!(
        exchange(
            &w.core,
            &fresh,
            Request::Send(envelope(&w, &stranger, 41)),
            NOW
        )
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
            exchange(&w.core, &w.conn, req, NOW).0,
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
        exchange(&w.core, &w.conn, ack(&w.sender), NOW).0,
        Response::Error(RelayError::Auth)
    );
    assert!(!w.core.recipients.lock().contains_key(&w.receive_id));
    assert_eq!(
        exchange(&w.core, &w.conn, ack(&w.recipient), NOW).0,
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
    exchange(&core, &conn, Request::hello(), NOW);
    let create = |now| {
        let k = SigningKeyPair::generate(&mut rand::rng());
        let dh = DhKeyPair::generate(&mut rand::rng());
        let req = Request::create_mailbox(&k, *dh.public(), &conn.binding);
        exchange(&core, &conn, req, now).0
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
        let conn = ConnState::with_host(ConnectionBinding([c as u8; 32]), NOW, hosts.clone(), host);
        exchange(&core, &conn, Request::hello(), NOW);
        for _ in 0..CREATE_BURST {
            let k = SigningKeyPair::generate(&mut rand::rng());
            let dh = DhKeyPair::generate(&mut rand::rng());
            let req = Request::create_mailbox(&k, *dh.public(), &conn.binding);
            match exchange(&core, &conn, req, NOW).0 {
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
    exchange(&core, &other, Request::hello(), NOW);
    let k = SigningKeyPair::generate(&mut rand::rng());
    let dh = DhKeyPair::generate(&mut rand::rng());
    let req = Request::create_mailbox(&k, *dh.public(), &other.binding);
    assert!(matches!(
        exchange(&core, &other, req, NOW).0,
        Response::MailboxCreated { .. }
    ));
}

#[test]
fn a_connection_is_proven_by_a_passed_check_and_loses_it_on_a_failed_one() {
    let w = world(Limits::default());
    // The world's connection created a mailbox: proof of possession.
    assert!(w.conn.is_proven());
    let fresh = ConnState::new(ConnectionBinding([2; 32]), NOW);
    exchange(&w.core, &fresh, Request::hello(), NOW);
    assert!(!fresh.is_proven());
    // An unsigned first-contact send proves nothing.
    assert_eq!(
        exchange(
            &w.core,
            &fresh,
            Request::Send(envelope(&w, &w.sender, 1)),
            NOW
        )
        .0,
        Response::Stored
    );
    assert!(!fresh.is_proven());
    secure(&w);
    assert_eq!(
        exchange(
            &w.core,
            &fresh,
            Request::Send(envelope(&w, &w.sender, 2)),
            NOW
        )
        .0,
        Response::Stored
    );
    assert!(fresh.is_proven());
    let stranger = SigningKeyPair::generate(&mut rand::rng());
    assert_eq!(
        exchange(
            &w.core,
            &fresh,
            Request::Send(envelope(&w, &stranger, 3)),
            NOW
        )
        .0,
        Response::Error(RelayError::Auth)
    );
    // A send the mailbox's key refuses does not demote a connection
    // that proved itself (the owner chose the key); a recipient
    // command that fails its check does.
    assert!(fresh.is_proven());
    let forged = Request::ack(w.receive_id, MessageId([1; 16]), &stranger, &fresh.binding);
    assert_eq!(
        exchange(&w.core, &fresh, forged, NOW).0,
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
        exchange(&core, conn, req, NOW).0
    };
    // Use up the host's creations over several connections.
    let mut c = 0u8;
    loop {
        let conn = ConnState::with_host(ConnectionBinding([c; 32]), NOW, limits.clone(), host);
        exchange(&core, &conn, Request::hello(), NOW);
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
    exchange(&core, &fresh, Request::hello(), NOW);
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
    let limits = Arc::new(HostLimits::new(HostPolicy {
        failed_checks: 4,
        ..HostPolicy::default()
    }));
    let host: IpAddr = "192.0.2.9".parse().unwrap();
    let stranger = SigningKeyPair::generate(&mut rand::rng());
    let mut closed = Vec::new();
    for c in 0..2u8 {
        let conn = ConnState::with_host(ConnectionBinding([c; 32]), NOW, limits.clone(), host);
        exchange(&w.core, &conn, Request::hello(), NOW);
        for m in 0..2 {
            let env = envelope(&w, &stranger, c * 2 + m);
            exchange(&w.core, &conn, Request::Send(env), NOW);
        }
        closed.push(conn.host_exhausted());
    }
    // Two failures each: the second connection used the host's four up.
    assert_eq!(closed, vec![false, true]);
    // A third connection of the host is closed at its first failure.
    let third = ConnState::with_host(ConnectionBinding([7; 32]), NOW, limits.clone(), host);
    exchange(&w.core, &third, Request::hello(), NOW);
    exchange(
        &w.core,
        &third,
        Request::Send(envelope(&w, &stranger, 9)),
        NOW,
    );
    assert!(third.host_exhausted());
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
        exchange(&w.core, &w.conn, replayed, NOW).0,
        Response::Error(RelayError::Auth)
    );
    let wrong_key = Request::delete(w.receive_id, &w.sender, &w.conn.binding);
    assert_eq!(
        exchange(&w.core, &w.conn, wrong_key, NOW).0,
        Response::Error(RelayError::Auth)
    );
    let del = Request::delete(w.receive_id, &w.recipient, &w.conn.binding);
    assert_eq!(exchange(&w.core, &w.conn, del, NOW).0, Response::Ok);
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
        exchange(&w.core, &w.conn, ack(&w.recipient), NOW).0,
        Response::Ok
    );
    assert_eq!(
        exchange(&w.core, &w.conn, ack(&w.sender), NOW).0,
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
        exchange(&w.core, &w.conn, ack(&w.recipient), NOW).0,
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
    assert_eq!(exchange(&w.core, &w.conn, ack.clone(), NOW).0, Response::Ok);
    assert!(w.core.recipients.lock().contains_key(&w.receive_id));
    let del = Request::delete(w.receive_id, &w.recipient, &w.conn.binding);
    assert_eq!(exchange(&w.core, &w.conn, del, NOW).0, Response::Ok);
    assert!(!w.core.recipients.lock().contains_key(&w.receive_id));
    assert_eq!(
        exchange(&w.core, &w.conn, ack, NOW).0,
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
    exchange(&core, &conn, Request::hello(), NOW);
    conn.mark_own();
    let fetch = |port: u16| Request::FetchRelayKey {
        destination: RelayAddress::new(Fingerprint([5; 32]), "127.0.0.1", port).unwrap(),
    };
    let allowed = |r: Response| r == Response::Error(RelayError::Unreachable);
    for port in 0..MAX_DESTINATIONS_PER_CONN as u16 {
        assert!(allowed(exchange(&core, &conn, fetch(1000 + port), NOW).0));
    }
    // One more host is refused; one already named is not.
    assert_eq!(
        exchange(&core, &conn, fetch(2000), NOW + 10).0,
        Response::Error(RelayError::RateLimited {
            retry_after_secs: DESTINATION_WINDOW_SECS as u32 - 10
        })
    );
    assert!(allowed(exchange(&core, &conn, fetch(1000), NOW + 10).0));
    // After the window a new one may be named again.
    let later = NOW + DESTINATION_WINDOW_SECS;
    assert!(allowed(exchange(&core, &conn, fetch(2000), later).0));
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
    exchange(&core, &stranger, Request::hello(), NOW);
    let own_key = match exchange(
        &core,
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
    let sealed =
        |env: &Envelope| seal_send(&mut rand::rng(), &id.fingerprint(), &forward_dh, env).unwrap();
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
            exchange(&core, &stranger, req, NOW).0,
            Response::Error(RelayError::NotOwnClient)
        );
    }

    // Anyone may deliver a sealed send; it is handled as that send.
    assert_eq!(
        exchange(
            &core,
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
        exchange(
            &core,
            &stranger,
            Request::RelayDeliver { sealed: tampered },
            NOW
        )
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
        exchange(
            &core,
            &stranger,
            Request::RelayDeliver { sealed: forged },
            NOW
        )
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
        exchange(
            &core,
            &stranger,
            Request::RelayDeliver { sealed: tampered },
            NOW,
        );
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
    exchange(&core, &home, Request::hello(), NOW);
    let valid = |n: u8| Request::RelayDeliver {
        sealed: sealed(&envelope(&w, &w.sender, n)),
    };
    for n in 10..20 {
        exchange(&core, &home, valid(n), NOW);
    }
    // Replays of a stored one are answered Stored but buy nothing.
    for _ in 0..20 {
        assert_eq!(exchange(&core, &home, valid(10), NOW).0, Response::Stored);
    }
    let garbage = || {
        let mut tampered = sealed(&envelope(&w, &w.sender, 4));
        tampered[60] ^= 1;
        Request::RelayDeliver { sealed: tampered }
    };
    for _ in 0..10 * RELAYED_FAILURES_PER_PASS {
        exchange(&core, &home, garbage(), NOW);
    }
    assert!(home.is_proven());
    assert!(!home.is_suspect());
    exchange(&core, &home, garbage(), NOW);
    assert!(!home.is_proven());
    // Demoted, but its checks passed before: it waits with newcomers,
    // at normal priority, not on the suspect thread.
    assert!(!home.is_suspect());
    // One more honest delivery and it is back.
    exchange(&core, &home, valid(20), NOW);
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
    exchange(&core, &fresh, Request::hello(), NOW);
    assert!(!fresh.is_suspect());
    let sealed_nowhere = sealed(&nowhere);
    assert_eq!(
        exchange(
            &core,
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
        exchange(&core, &w.conn, forward(1, sealed(&env), &other), NOW).0,
        Response::Queued
    );
    assert_eq!(
        exchange(&core, &w.conn, forward(1, sealed(&env), &other), NOW).0,
        Response::Queued
    );
    assert_eq!(
        exchange(&core, &w.conn, forward(2, sealed(&env), &other), NOW).0,
        Response::Error(RelayError::ForwardQueueFull)
    );
    assert_eq!(
        exchange(&core, &w.conn, forward(3, sealed(&env), &me), NOW).0,
        Response::Error(RelayError::Malformed)
    );
    assert_eq!(
        exchange(
            &core,
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
    exchange(&core, &other_conn, Request::hello(), NOW);
    assert!(!other_conn.is_own());
    let ack = Request::ack(
        w.receive_id,
        MessageId([0; 16]),
        &w.recipient,
        &other_conn.binding,
    );
    assert_eq!(exchange(&core, &other_conn, ack, NOW).0, Response::Ok);
    assert!(other_conn.is_own());
}

#[tokio::test]
async fn a_failed_commit_fails_every_waiter() {
    struct Broken;
    impl Store for Broken {
        fn apply(&self, _: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError> {
            Err(StoreError::Full)
        }
        fn mailbox(&self, _: &MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
            Ok(None)
        }
        fn mailbox_by_send_id(
            &self,
            _: &MailboxId,
        ) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError> {
            Ok(None)
        }
        fn pending(
            &self,
            _: &MailboxId,
            _: Option<u64>,
            _: u64,
            _: usize,
        ) -> Result<Vec<StoredEnvelope>, StoreError> {
            Ok(Vec::new())
        }
        fn stats(&self) -> Result<Stats, StoreError> {
            Ok(Stats::default())
        }
    }
    let store = Arc::new(Broken);
    let writer = Writer::spawn(store.clone()).unwrap();
    let core = Core::new(store, Limits::default());
    let conn = ConnState::new(ConnectionBinding([1; 32]), NOW);
    let then = Then::Deposited {
        receive_id: MailboxId([1; 16]),
        relayed_signed: false,
    };
    let out = writer
        .submit(WriteOp::Delete {
            receive_id: MailboxId([1; 16]),
        })
        .await;
    assert!(matches!(out, Err(StoreError::Full)));
    assert_eq!(
        core.finish(&conn, then, out).response,
        Response::Error(RelayError::StorageFull)
    );
    writer.stop().await;
}
