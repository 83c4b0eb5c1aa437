//! The nucleus logic, driven as several members' profiles exchanging
//! their outboxes (the "envelope" is the plaintext itself).

use enlace_protocol::group::limits::{
    MAX_LAMPORT_JUMP, MAX_OPS, MAX_OPS_PER_AUTHOR, MAX_UNPLACED_OPS,
};
use enlace_protocol::group::{Action, GroupText, Introduction, NucleusId, Op, TextPart, fold};
use enlace_protocol::keys::SigningKeyPair;

use super::change::{add, create, leave, remove};
use super::limits::{MAX_NUCLEI, MAX_TASKS};
use super::names::{fingerprint, introduced_name};
use super::receive::{handle, handle_group_text, handle_introduction, handle_op, label_for};
use super::send::send_text;
use crate::domain::inbox::handle_plaintext;
use crate::domain::message::AppMessage;
use crate::domain::outbox::mark_stored;
use crate::domain::received::Received;
use crate::error::Error;
use crate::profile::{
    Contact, ContactId, EnvelopeId, MessageId, NucleusTask, OutboxEntry, Profile, RemoteMailbox,
    SEEN_GROUP_KEPT, SeenGroupMessage, SendId, Status, StoredRelay,
};

/// The contact id the tests give the contact with identity seed `n`.
fn cid(n: u64) -> ContactId {
    ContactId(n)
}

fn key(seed: u8) -> SigningKeyPair {
    SigningKeyPair::from_secret_bytes(&[seed; 32])
}

fn pk(seed: u8) -> [u8; 32] {
    *key(seed).public().as_bytes()
}

const N: NucleusId = NucleusId([7; 16]);

fn op(seed: u8, lamport: u64, action: Action, target: u8) -> Op {
    Op::sign(&key(seed), N, lamport, action, pk(target), "x").unwrap()
}

fn permutations(items: &[Op]) -> Vec<Vec<Op>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut all = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            all.push(p);
        }
    }
    all
}

/// Concurrent changes (same Lamport clocks, conflicting adds and
/// removes) delivered to profiles in every order converge.
#[test]
fn every_delivery_order_converges() {
    let ops = vec![
        op(1, 1, Action::Create, 1),
        op(1, 2, Action::Add, 2),
        op(1, 3, Action::Add, 3),
        // Concurrent: 2 removes 3 while 3 adds 4 and 1 removes 2.
        op(2, 4, Action::Remove, 3),
        op(3, 4, Action::Add, 4),
        op(1, 4, Action::Remove, 2),
        op(1, 5, Action::Add, 5),
    ];
    let reference = fold(Some(pk(1)), &ops);
    let mut count = 0;
    for order in permutations(&ops) {
        // Feed through the real receive path of a profile: member 5's
        // view, received op by op from a peer (its adder 1), after
        // the welcome's first operation (the add naming 5, which is
        // what makes it keep the nucleus) and then every operation
        // again, in every order.
        let mut p = profile_of(5, &[1]);
        handle_op(&mut p, cid(1), ops[6].clone());
        assert_eq!(p.nuclei.len(), 1);
        for o in &order {
            handle_op(&mut p, cid(1), o.clone());
        }
        let n = &p.nuclei[0];
        assert_eq!(n.members(), reference, "order {count}");
        count += 1;
    }
    assert_eq!(count, 5040);
}

/// A profile for identity `seed` with contacts (identity seeds) that
/// it can write to; contact ids are the seeds.
fn profile_of(seed: u8, contacts: &[u8]) -> Profile {
    let mut p = Profile::new(&mut rand::rng(), 0);
    p.identity = [seed; 32];
    for &c in contacts {
        p.contacts.push(Contact {
            id: cid(u64::from(c)),
            name: format!("c{c}"),
            identity_key: pk(c),
            verified_key: None,
            key_changed: false,
            session: Vec::new(),
            send_to: Some(RemoteMailbox {
                relay: StoredRelay::from_text("relay".into()),
                send_id: SendId([c; 16]),
                sender_key: [c; 32],
            }),
            receive_on: None,
            added_at: 0,
        });
    }
    p
}

/// The sealing stand-in: the "envelope" is the plaintext.
fn clear(_: &mut Contact, pt: &[u8], _: EnvelopeId) -> Result<(Vec<u8>, StoredRelay), Error> {
    Ok((pt.to_vec(), StoredRelay::from_text("relay".into())))
}

fn deliver(to: &mut Profile, from: u64, outbox: &[OutboxEntry]) -> Vec<Received> {
    outbox
        .iter()
        .map(|e| {
            let msg = AppMessage::decode(&e.envelope).unwrap();
            handle(to, cid(from), msg, 0)
        })
        .collect()
}

fn take_outbox(p: &mut Profile, contact: u64) -> Vec<OutboxEntry> {
    let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut p.outbox)
        .into_iter()
        .partition(|e| e.contact == cid(contact));
    p.outbox = rest;
    mine
}

#[test]
fn group_text_refuses_reattribution_replay_and_strangers() {
    // 1 creates, adds 2 and 3 (all know each other).
    let mut a = profile_of(1, &[2, 3]);
    let mut b = profile_of(2, &[1, 3]);
    let mut c = profile_of(3, &[1, 2]);
    create(&mut a, "barrio", &mut rand::rng()).unwrap();
    add(&mut a, "barrio", "c2", &mut rand::rng(), clear).unwrap();
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    add(&mut a, "barrio", "c3", &mut rand::rng(), clear).unwrap();
    deliver(&mut c, 1, &take_outbox(&mut a, 3));
    // b learns of 3 from a.
    let fwd = deliver(&mut b, 1, &take_outbox(&mut a, 2));
    assert!(matches!(&fwd[..], [Received::Forward(_)]));
    assert_eq!(b.nuclei[0].members().len(), 3);
    assert_eq!(c.nuclei[0].members().len(), 3);
    assert_eq!(b.nuclei[0].name, "barrio");

    let sent = send_text(
        &mut a,
        "barrio",
        "asamblea",
        10,
        1900,
        &mut rand::rng(),
        clear,
    )
    .unwrap();
    assert_eq!(sent.sent_to.len(), 2);
    let to_b = take_outbox(&mut a, 2);
    let got = deliver(&mut b, 1, &to_b);
    assert_eq!(got, vec![Received::Text(sent.message_id)]);
    assert_eq!(
        label_for(&b, cid(1), &sent.message_id).as_deref(),
        Some("barrio")
    );
    // The same message again (replayed in a fresh envelope): dropped.
    assert_eq!(deliver(&mut b, 1, &to_b), vec![Received::Nothing]);
    // c re-sends a's message to b as if a wrote it: refused, since
    // the author is not the session's peer.
    assert_eq!(deliver(&mut b, 3, &to_b), vec![Received::Nothing]);
    // A stranger (not a contact id b knows) gets nothing in.
    assert_eq!(deliver(&mut b, 99, &to_b), vec![Received::Nothing]);
}

#[test]
fn removed_member_gets_nothing_after_and_cannot_readd_itself() {
    let mut a = profile_of(1, &[2, 3]);
    let mut b = profile_of(2, &[1, 3]);
    let mut c = profile_of(3, &[1, 2]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
    deliver(&mut c, 1, &take_outbox(&mut a, 3));
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    remove(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
    // 3 is told once, b too.
    deliver(&mut c, 1, &take_outbox(&mut a, 3));
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    assert!(!c.nuclei[0].members().contains_key(&pk(3)));
    assert_eq!(b.nuclei[0].members().len(), 2);
    // Sending now reaches only b.
    let sent = send_text(&mut a, "n", "sin 3", 10, 1900, &mut rand::rng(), clear).unwrap();
    assert_eq!(sent.sent_to, vec!["c2".to_string()]);
    assert!(a.outbox.iter().all(|e| e.contact == cid(2)));
    // c is out: it cannot send, and its forged re-add is refused by b.
    assert!(matches!(
        send_text(&mut c, "n", "hola", 10, 1900, &mut rand::rng(), clear),
        Err(Error::NotMember(_))
    ));
    let lamport = c.nuclei[0].lamport + 1;
    let readd = Op::sign(&key(3), c.nuclei[0].id, lamport, Action::Add, pk(3), "me").unwrap();
    assert!(handle_op(&mut b, cid(3), readd.clone()).is_empty());
    assert_eq!(b.nuclei[0].members().len(), 2);
    // Even relayed by a member, the fold does not count it.
    handle_op(&mut b, cid(1), readd);
    assert_eq!(b.nuclei[0].members().len(), 2);
    // A text from c is dropped by b.
    let part = TextPart::new([5; 16], 0, 0, 1, b"x".to_vec()).unwrap();
    let gt = GroupText {
        nucleus: b.nuclei[0].id,
        author: fingerprint(&pk(3)).unwrap(),
        part,
    };
    assert_eq!(handle_group_text(&mut b, cid(3), gt, 0), Received::Nothing);
}

#[test]
fn new_member_is_introduced_through_its_adder() {
    // 1 and 2 are in; 1 adds 5, whom 2 does not know.
    let mut a = profile_of(1, &[2, 5]);
    let mut b = profile_of(2, &[1]);
    let mut e = profile_of(5, &[1]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    add(&mut a, "n", "c5", &mut rand::rng(), clear).unwrap();
    deliver(&mut e, 1, &take_outbox(&mut a, 5));
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    // e plans an introduction to 2 via 1; b plans nothing (2 was first).
    assert_eq!(
        e.nucleus_tasks,
        vec![NucleusTask::Introduce {
            nucleus: a.nuclei[0].id,
            member: pk(2),
            via: pk(1)
        }]
    );
    assert!(b.nucleus_tasks.is_empty());
    // The driver makes the introduction; a forwards it to b only.
    let intro = Introduction::sign(&key(5), a.nuclei[0].id, pk(2), b"inv").unwrap();
    let fwd = handle_introduction(&mut a, cid(5), intro.clone());
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].0, cid(2));
    // b queues accepting it.
    let msg = AppMessage::decode(&fwd[0].1).unwrap();
    handle(&mut b, cid(1), msg, 0);
    assert!(matches!(
        &b.nucleus_tasks[..],
        [NucleusTask::Accept {
            via: ContactId(1),
            ..
        }]
    ));
    // An introduction not from the peer it came from is not forwarded.
    assert!(handle_introduction(&mut a, cid(2), intro).is_empty());
    assert_eq!(introduced_name(&b, &b.nuclei[0], &pk(5)), "n/c5");
}

/// A clock at `u64::MAX` (or any far jump) from a member is refused:
/// it neither freezes the nucleus nor overflows our next operation.
#[test]
fn lamport_jump_is_refused() {
    let mut a = profile_of(1, &[2]);
    let mut b = profile_of(2, &[1]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    let id = a.nuclei[0].id;
    let lamport = a.nuclei[0].lamport;
    for far in [u64::MAX, lamport + MAX_LAMPORT_JUMP + 1] {
        let o = Op::sign(&key(2), id, far, Action::Add, pk(9), "x").unwrap();
        assert!(handle_op(&mut a, cid(2), o).is_empty());
    }
    assert_eq!(a.nuclei[0].lamport, lamport);
    assert_eq!(a.nuclei[0].ops.len(), 2);
    // Within the bound is fine.
    let near = Op::sign(
        &key(2),
        id,
        lamport + MAX_LAMPORT_JUMP,
        Action::Add,
        pk(9),
        "x",
    )
    .unwrap();
    handle_op(&mut a, cid(2), near);
    assert_eq!(a.nuclei[0].lamport, lamport + MAX_LAMPORT_JUMP);
    // Our next change sorts after everything.
    a.outbox.clear();
    remove(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
    assert_eq!(a.nuclei[0].lamport, lamport + MAX_LAMPORT_JUMP + 1);
    assert!(!a.nuclei[0].members().contains_key(&pk(2)));
    // A clock at its end refuses a new change instead of wrapping.
    a.nuclei[0].lamport = u64::MAX;
    assert!(matches!(
        leave(&mut a, "n", &mut rand::rng(), clear),
        Err(Error::NucleusLimit(_))
    ));
}

/// Only a welcome (an add naming us, signed by the contact it came
/// from, which we can write to) makes us keep an unknown nucleus.
#[test]
fn unknown_nucleus_only_from_a_welcome() {
    let mut b = profile_of(2, &[1]);
    // A create, an add of someone else, an add of us signed by a key
    // that is not the sender's: nothing kept.
    let create = Op::sign(&key(1), NucleusId([1; 16]), 1, Action::Create, pk(1), "x").unwrap();
    let other = Op::sign(&key(1), NucleusId([2; 16]), 1, Action::Add, pk(3), "x").unwrap();
    let forged = Op::sign(&key(9), NucleusId([3; 16]), 1, Action::Add, pk(2), "x").unwrap();
    for o in [create, other, forged] {
        assert!(handle_op(&mut b, cid(1), o).is_empty());
    }
    assert!(b.nuclei.is_empty());
    // Not from a contact we can write to (no session): nothing kept.
    let send_to = b.contacts[0].send_to.take();
    let add = Op::sign(&key(1), NucleusId([4; 16]), 2, Action::Add, pk(2), "x").unwrap();
    handle_op(&mut b, cid(1), add.clone());
    assert!(b.nuclei.is_empty());
    b.contacts[0].send_to = send_to;
    handle_op(&mut b, cid(1), add);
    assert_eq!(b.nuclei.len(), 1);
    // While outside, only the adder's welcome is taken.
    let mut c = profile_of(2, &[1, 3]);
    let add = Op::sign(&key(1), N, 2, Action::Add, pk(2), "x").unwrap();
    handle_op(&mut c, cid(1), add);
    let spam = Op::sign(&key(3), N, 1, Action::Create, pk(3), "x").unwrap();
    handle_op(&mut c, cid(3), spam);
    assert_eq!(c.nuclei[0].ops.len(), 1);
    assert_eq!(c.nuclei[0].creator, None);
}

/// A welcome works whatever the nucleus's real order: the add naming
/// the new member goes first.
fn joined(a: &mut Profile, b: &mut Profile, c: u8) {
    add(a, "n", &format!("c{c}"), &mut rand::rng(), clear).unwrap();
    deliver(b, 1, &take_outbox(a, u64::from(c)));
}

/// Keys nobody added cannot fill a nucleus, and one member cannot use
/// up more than its share of operations.
#[test]
fn op_budget_cannot_be_exhausted() {
    let mut a = profile_of(1, &[2, 3]);
    let mut b = profile_of(2, &[1]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    joined(&mut a, &mut b, 2);
    assert_eq!(b.nuclei[0].name, "n");
    assert!(b.nuclei[0].members().contains_key(&pk(2)));
    let id = a.nuclei[0].id;
    // Member 2 hands over operations signed by throwaway keys.
    for i in 0..(MAX_OPS + 20) {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1000).to_be_bytes());
        let k = SigningKeyPair::from_secret_bytes(&seed);
        let o = Op::sign(&k, id, 3, Action::Add, pk(9), "x").unwrap();
        assert!(handle_op(&mut a, cid(2), o).is_empty(), "forwarded");
    }
    assert!(a.nuclei[0].ops.len() <= 2 + MAX_UNPLACED_OPS);
    // Member 2 itself signs as many as it can.
    for l in 0..(MAX_OPS_PER_AUTHOR as u64 + 20) {
        let o = Op::sign(&key(2), id, 3 + l, Action::Remove, pk(9), "").unwrap();
        handle_op(&mut a, cid(2), o);
    }
    let by_2 = a.nuclei[0]
        .decoded_ops()
        .iter()
        .filter(|o| o.author() == &pk(2))
        .count();
    assert_eq!(by_2, MAX_OPS_PER_AUTHOR);
    // The others can still change membership.
    add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
    assert!(a.nuclei[0].members().contains_key(&pk(3)));
}

/// An operation that arrives before its author's add waits, and is
/// forwarded once the add places it.
#[test]
fn waiting_op_is_placed_by_its_authors_add() {
    let mut a = profile_of(1, &[2, 3]);
    let mut b = profile_of(2, &[1, 3]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    joined(&mut a, &mut b, 2);
    let id = a.nuclei[0].id;
    let add3 = Op::sign(&key(1), id, 3, Action::Add, pk(3), "c3").unwrap();
    let by3 = Op::sign(&key(3), id, 4, Action::Add, pk(4), "d").unwrap();
    assert!(handle_op(&mut b, cid(1), by3.clone()).is_empty());
    assert_eq!(b.nuclei[0].lamport, 2);
    let fwd = handle_op(&mut b, cid(1), add3.clone());
    // The add goes on to 3; the waiting op, now placed, to 1 (3 wrote it).
    let by3 = AppMessage::NucleusOp(by3).encode();
    let add3 = AppMessage::NucleusOp(add3).encode();
    assert_eq!(fwd, vec![(cid(1), by3), (cid(3), add3)]);
    assert_eq!(b.nuclei[0].members().len(), 4);
    assert_eq!(b.nuclei[0].lamport, 4);
}

/// An introduction is kept only from a current member, forwarded by
/// its own adder, once per member; others are dropped, so they cannot
/// fill the task list.
#[test]
fn introductions_only_from_members_through_their_adder() {
    let mut a = profile_of(1, &[2, 3, 5]);
    let mut b = profile_of(2, &[1, 3]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    joined(&mut a, &mut b, 2);
    add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
    add(&mut a, "n", "c5", &mut rand::rng(), clear).unwrap();
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    assert_eq!(b.nuclei[0].members().len(), 4);
    let id = a.nuclei[0].id;
    // Throwaway keys (not members), forwarded by the member 1: dropped.
    for seed in 100..(100 + MAX_TASKS as u8 + 5) {
        let i = Introduction::sign(&key(seed), id, pk(2), b"inv").unwrap();
        handle_introduction(&mut b, cid(1), i);
    }
    assert!(b.nucleus_tasks.is_empty());
    // A member's introduction forwarded by a member who is not its
    // adder: dropped.
    let from5 = Introduction::sign(&key(5), id, pk(2), b"inv").unwrap();
    handle_introduction(&mut b, cid(3), from5.clone());
    assert!(b.nucleus_tasks.is_empty());
    // Through its adder: kept, once per member.
    handle_introduction(&mut b, cid(1), from5);
    let again = Introduction::sign(&key(5), id, pk(2), b"other").unwrap();
    handle_introduction(&mut b, cid(1), again);
    assert_eq!(b.nucleus_tasks.len(), 1);
}

#[test]
fn limits_hold() {
    let mut a = profile_of(1, &[]);
    for i in 0..MAX_NUCLEI {
        create(&mut a, &format!("n{i}"), &mut rand::rng()).unwrap();
    }
    assert!(matches!(
        create(&mut a, "more", &mut rand::rng()),
        Err(Error::NucleusLimit(_))
    ));
    // Unknown nuclei from a contact do not grow the list past the cap.
    let mut b = profile_of(2, &[1]);
    for i in 0..(MAX_NUCLEI as u8 + 5) {
        let o = Op::sign(&key(1), NucleusId([i; 16]), 1, Action::Add, pk(2), "spam").unwrap();
        handle_op(&mut b, cid(1), o);
    }
    assert_eq!(b.nuclei.len(), MAX_NUCLEI);
    // Seen window is bounded.
    let n = &mut b.nuclei[0];
    for i in 0..(SEEN_GROUP_KEPT as u32 + 10) {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        assert!(n.remember(SeenGroupMessage {
            author: [1; 32],
            message_id: MessageId(id)
        }));
    }
    assert_eq!(n.seen.len(), SEEN_GROUP_KEPT);
}

#[test]
fn each_members_copy_has_its_own_status() {
    let mut a = profile_of(1, &[2, 3]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
    add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
    a.outbox.clear();
    let sent = send_text(&mut a, "n", "hola", 1, 1900, &mut rand::rng(), clear).unwrap();
    assert_eq!(a.sent.len(), 2);
    // Member 3's copy is stored first: only its status moves.
    let third = a
        .outbox
        .iter()
        .find(|e| e.contact == cid(3))
        .unwrap()
        .envelope_id;
    mark_stored(&mut a, third);
    let status = |p: &Profile, c: u64| {
        p.sent
            .iter()
            .find(|s| s.contact == cid(c) && s.message_id == sent.message_id)
            .unwrap()
            .status
    };
    assert_eq!(status(&a, 3), Status::Stored);
    assert_eq!(status(&a, 2), Status::Queued);
    // A receipt from 2 marks only 2's copy delivered.
    let receipt = AppMessage::Receipt(vec![sent.message_id]).encode();
    handle_plaintext(&mut a, cid(2), &receipt, 2);
    assert_eq!(status(&a, 2), Status::Delivered);
    assert_eq!(status(&a, 3), Status::Stored);
}

#[test]
fn long_group_text_fits_envelopes_and_reassembles() {
    let mut a = profile_of(1, &[2]);
    let mut b = profile_of(2, &[1]);
    create(&mut a, "n", &mut rand::rng()).unwrap();
    add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
    deliver(&mut b, 1, &take_outbox(&mut a, 2));
    let text = "¡Huelga! ".repeat(600);
    let max = enlace_protocol::session::MAX_PLAINTEXT_LEN;
    let sent = send_text(&mut a, "n", &text, 1, max, &mut rand::rng(), clear).unwrap();
    let out = take_outbox(&mut a, 2);
    assert!(out.len() > 2);
    assert!(out.iter().all(|e| e.envelope.len() <= max));
    let got = deliver(&mut b, 1, &out);
    assert_eq!(got.last(), Some(&Received::Text(sent.message_id)));
    assert_eq!(b.history.last().unwrap().text, text);
}
