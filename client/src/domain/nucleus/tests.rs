//! The nucleus logic, driven as several members' profiles exchanging
//! their outboxes (the "envelope" is the plaintext itself).

use std::collections::BTreeMap;

use enlace_protocol::group::{Action, GroupText, Introduction, NucleusId, Op, Role, TextPart};
use enlace_protocol::keys::SigningKeyPair;

use super::change::{add, create, decline, join, leave, remove, require_verified, set_role};
use super::limits::{MAX_INVITATIONS, MAX_INVITATIONS_PER_CONTACT, MAX_NUCLEI};
use super::names::fingerprint;
use super::notices::take_changes;
use super::ops::{Incoming, handle_op};
use super::receive::{handle_group_text, handle_introduction, label_for};
use super::send::send_text;
use super::state::{Standing, standing};
use crate::domain::inbox::handle_plaintext;
use crate::domain::message::AppMessage;
use crate::domain::outbox::{mark_stored, queue_forwards};
use crate::domain::received::Received;
use crate::error::Error;
use crate::profile::{
    Contact, ContactId, EnvelopeId, MessageId, NucleusTask, Profile, RemoteMailbox,
    SEEN_GROUP_KEPT, SeenGroupMessage, SendId, Status, StoredRelay,
};

#[path = "tests_attacks.rs"]
mod attacks;
#[path = "tests_roles.rs"]
mod roles;

/// The contact id the tests give the contact with identity seed `n`.
pub(super) fn cid(n: u8) -> ContactId {
    ContactId(u64::from(n))
}

pub(super) fn key(seed: u8) -> SigningKeyPair {
    SigningKeyPair::from_secret_bytes(&[seed; 32])
}

pub(super) fn pk(seed: u8) -> [u8; 32] {
    *key(seed).public().as_bytes()
}

/// A profile for identity `seed` with contacts (identity seeds) that it
/// can write to; contact ids are the seeds, names `c<seed>`.
pub(super) fn profile_of(seed: u8, contacts: &[u8]) -> Profile {
    let mut p = Profile::new(&mut rand::rng(), 0);
    p.identity = [seed; 32];
    for &c in contacts {
        p.contacts.push(Contact {
            id: cid(c),
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
pub(super) fn clear(
    _: &mut Contact,
    pt: &[u8],
    _: EnvelopeId,
) -> Result<(Vec<u8>, StoredRelay), Error> {
    Ok((pt.to_vec(), StoredRelay::from_text("relay".into())))
}

/// Members' profiles by identity seed, exchanging their outboxes.
pub(super) struct Net(pub(super) BTreeMap<u8, Profile>);

impl Net {
    /// Profiles for these seeds, each with the given others as contacts.
    pub(super) fn new(members: &[(u8, &[u8])]) -> Self {
        Self(
            members
                .iter()
                .map(|(s, contacts)| (*s, profile_of(*s, contacts)))
                .collect(),
        )
    }

    pub(super) fn p(&mut self, seed: u8) -> &mut Profile {
        self.0.get_mut(&seed).unwrap()
    }

    /// Delivers every outbox entry to its profile (and what that makes
    /// them send) until nothing moves; returns what each delivery did.
    pub(super) fn settle(&mut self) -> Vec<(u8, u8, Received)> {
        let mut log = Vec::new();
        for _ in 0..50 {
            let mut moved = false;
            let seeds: Vec<u8> = self.0.keys().copied().collect();
            for from in seeds {
                let out = std::mem::take(&mut self.p(from).outbox);
                for e in out {
                    let to = u8::try_from(e.contact.0).unwrap();
                    let Some(p) = self.0.get_mut(&to) else {
                        continue;
                    };
                    moved = true;
                    let got = handle_plaintext(p, cid(from), &e.envelope, 0);
                    if let Received::Forward(more) = &got {
                        queue_forwards(p, more.clone(), &mut rand::rng(), clear).unwrap();
                    }
                    log.push((from, to, got));
                }
            }
            if !moved {
                return log;
            }
        }
        panic!("never settled");
    }

    /// The fold's members of the one nucleus of `seed`, with roles and
    /// whether joined.
    pub(super) fn roles(&mut self, seed: u8) -> Vec<(u8, Role, bool)> {
        let members = self.p(seed).nuclei[0].members();
        let mut out: Vec<(u8, Role, bool)> = (1..=20)
            .filter_map(|s| members.get(&pk(s)).map(|m| (s, m.role, m.joined)))
            .collect();
        out.sort();
        out
    }

    pub(super) fn standing(&mut self, seed: u8) -> Standing {
        let me = pk(seed);
        let n = &self.p(seed).nuclei[0];
        standing(n, &n.fold(), &me)
    }

    /// `creator` creates `name` and invites each of `members` (its
    /// contacts), who join; everything settles.
    pub(super) fn nucleus(&mut self, creator: u8, name: &str, members: &[u8]) {
        create(self.p(creator), name, &mut rand::rng()).unwrap();
        for &m in members {
            add(
                self.p(creator),
                name,
                &format!("c{m}"),
                &mut rand::rng(),
                clear,
            )
            .unwrap();
            self.settle();
            join(self.p(m), name, &mut rand::rng(), clear).unwrap();
            self.settle();
        }
    }
}

fn op(seed: u8, action: Action, target: u8, parents: &[&Op]) -> Op {
    let parents: Vec<_> = parents.iter().map(|o| o.hash()).collect();
    let name = if matches!(action, Action::Create | Action::Add) {
        "x"
    } else {
        ""
    };
    Op::sign(&key(seed), N, action, pk(target), &parents, name).unwrap()
}

const N: NucleusId = NucleusId([7; 16]);

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
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

/// Concurrent changes (an admin removed while it adds someone, a join, a
/// role change) delivered to a new member's profile in every order
/// converge on the fold of the whole set.
#[test]
fn every_delivery_order_converges() {
    let create = op(1, Action::Create, 1, &[]);
    let add2 = op(1, Action::Add, 2, &[&create]);
    let join2 = op(2, Action::Join, 2, &[&add2]);
    let admin2 = op(1, Action::SetRole(Role::Admin), 2, &[&join2]);
    // Concurrent: 2 adds 3 while 1 removes 2 and adds 5 (us).
    let add3 = op(2, Action::Add, 3, &[&admin2]);
    let rm2 = op(1, Action::Remove, 2, &[&admin2]);
    let add5 = op(1, Action::Add, 5, &[&rm2]);
    let ops = vec![create, add2, join2, admin2, add3, rm2, add5];
    let reference = enlace_protocol::group::History {
        creator: None,
        root: Some(ops[0].hash()),
        v1: &[],
        ops: &ops,
    }
    .fold();
    assert!(!reference.members.contains_key(&pk(3)));
    let mut count = 0;
    for order in permutations(&ops) {
        // The welcome's first operation is the add naming 5, which is what
        // makes its client keep the nucleus; then everything, in every order.
        let mut p = profile_of(5, &[1]);
        handle_op(&mut p, cid(1), Incoming::V2(ops[6].clone()));
        for o in order {
            handle_op(&mut p, cid(1), Incoming::V2(o));
        }
        let n = &p.nuclei[0];
        assert_eq!(n.fold().members, reference.members, "order {count}");
        assert!(n.waiting.is_empty());
        assert_eq!(n.name, "x");
        count += 1;
    }
    assert_eq!(count, 5040);
}

/// Being added is an invitation: nothing is made, sent or received for
/// the nucleus until `join`; `decline` answers the inviter only.
#[test]
fn an_invitation_makes_nothing_until_joined() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    net.nucleus(1, "barrio", &[3]);
    add(net.p(1), "barrio", "c2", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(2), Standing::Invited);
    let ben = net.p(2);
    assert!(ben.outbox.is_empty() && ben.nucleus_tasks.is_empty() && ben.invitations.is_empty());
    let shown = take_changes(ben);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].change, "invited");
    assert!(
        shown[0]
            .text
            .contains("c1 (unverified) invited you to #barrio"),
        "{}",
        shown[0].text
    );
    assert!(shown[0].text.contains("nucleus join barrio"));
    // Texts go to joined members only, and one sent anyway is dropped.
    let sent = send_text(net.p(1), "barrio", "hola", 1, 1900, &mut rand::rng(), clear).unwrap();
    assert_eq!(sent.sent_to, ["c3"]);
    let part = TextPart::new([9; 16], 0, 0, 1, b"x".to_vec()).unwrap();
    let text = GroupText {
        nucleus: net.p(2).nuclei[0].id,
        author: fingerprint(&pk(1)).unwrap(),
        part,
    };
    assert_eq!(
        handle_group_text(net.p(2), cid(1), text, 0),
        Received::Nothing
    );
    assert!(matches!(
        send_text(net.p(2), "barrio", "hola", 1, 1900, &mut rand::rng(), clear),
        Err(Error::NotJoined(_))
    ));
    // The others saw the invitation, not a member.
    net.settle();
    let changes = take_changes(net.p(3));
    assert!(
        changes
            .iter()
            .any(|c| c.change == "added" && c.member.name == "c2")
    );
    assert_eq!(net.roles(3).len(), 3);
    // Declining tells the inviter and forgets the nucleus.
    decline(net.p(2), "barrio", &mut rand::rng(), clear).unwrap();
    assert!(net.p(2).nuclei.is_empty());
    assert!(net.p(2).outbox.iter().all(|e| e.contact == cid(1)));
    net.settle();
    assert_eq!(
        net.roles(1),
        vec![(1, Role::Owner, true), (3, Role::Member, true)]
    );
    let changes = take_changes(net.p(3));
    assert!(
        changes.iter().any(|c| c.change == "declined"),
        "{:?}",
        changes.len()
    );
}

/// Invitations are bounded per contact and in all; nuclei we are in are
/// bounded apart from them.
#[test]
fn invitations_are_bounded() {
    let mut b = profile_of(2, &[1, 3]);
    let invite = |p: &mut Profile, from: u8, i: u8| {
        let c = Op::sign(
            &key(from),
            NucleusId([i; 16]),
            Action::Create,
            pk(from),
            &[],
            "n",
        )
        .unwrap();
        let a = Op::sign(
            &key(from),
            NucleusId([i; 16]),
            Action::Add,
            pk(2),
            &[c.hash()],
            "b",
        )
        .unwrap();
        handle_op(p, cid(from), Incoming::V2(a));
        handle_op(p, cid(from), Incoming::V2(c));
    };
    for i in 0..10 {
        invite(&mut b, 1, i);
    }
    assert_eq!(b.nuclei.len(), MAX_INVITATIONS_PER_CONTACT);
    for i in 10..30 {
        invite(&mut b, 3, i);
    }
    assert_eq!(b.nuclei.len(), 2 * MAX_INVITATIONS_PER_CONTACT);
    const { assert!(2 * MAX_INVITATIONS_PER_CONTACT <= MAX_INVITATIONS) };
    // Declining makes room again.
    let name = b.nuclei[0].name.clone();
    decline(&mut b, &name, &mut rand::rng(), clear).unwrap();
    invite(&mut b, 1, 40);
    assert_eq!(b.nuclei.len(), 2 * MAX_INVITATIONS_PER_CONTACT);
    // Not from a contact we can write to, or signed by someone else: no.
    let mut c = profile_of(2, &[1]);
    c.contacts[0].send_to = None;
    invite(&mut c, 1, 1);
    assert!(c.nuclei.is_empty());
    let forged = Op::sign(
        &key(9),
        N,
        Action::Add,
        pk(2),
        &[Op::sign(&key(9), N, Action::Create, pk(9), &[], "n")
            .unwrap()
            .hash()],
        "b",
    )
    .unwrap();
    let mut d = profile_of(2, &[1]);
    handle_op(&mut d, cid(1), Incoming::V2(forged));
    assert!(d.nuclei.is_empty());
    // Nuclei we joined are bounded on their own.
    let mut a = profile_of(1, &[]);
    for i in 0..MAX_NUCLEI {
        create(&mut a, &format!("n{i}"), &mut rand::rng()).unwrap();
    }
    assert!(matches!(
        create(&mut a, "more", &mut rand::rng()),
        Err(Error::NucleusLimit(_))
    ));
}

#[test]
fn group_text_refuses_reattribution_replay_and_strangers() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])]);
    net.nucleus(1, "barrio", &[2, 3]);
    assert_eq!(net.roles(2).len(), 3);
    assert_eq!(net.p(2).nuclei[0].name, "barrio");
    let sent = send_text(
        net.p(1),
        "barrio",
        "asamblea",
        10,
        1900,
        &mut rand::rng(),
        clear,
    )
    .unwrap();
    assert_eq!(sent.sent_to.len(), 2);
    let to_b: Vec<Vec<u8>> = net
        .p(1)
        .outbox
        .iter()
        .filter(|e| e.contact == cid(2))
        .map(|e| e.envelope.clone())
        .collect();
    let deliver = |p: &mut Profile, from: u8| -> Vec<Received> {
        to_b.iter()
            .map(|e| handle_plaintext(p, cid(from), e, 0))
            .collect()
    };
    assert_eq!(deliver(net.p(2), 1), vec![Received::Text(sent.message_id)]);
    assert_eq!(
        label_for(net.p(2), cid(1), &sent.message_id).as_deref(),
        Some("barrio")
    );
    // Replayed in a fresh envelope: dropped. Re-sent by 3 as if 1 wrote it:
    // refused. From a stranger: nothing.
    assert_eq!(deliver(net.p(2), 1), vec![Received::Nothing]);
    assert_eq!(deliver(net.p(2), 3), vec![Received::Nothing]);
    assert_eq!(deliver(net.p(2), 99), vec![Received::Nothing]);
}

#[test]
fn removed_member_gets_nothing_after_and_cannot_readd_itself() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])]);
    net.nucleus(1, "n", &[2, 3]);
    remove(net.p(1), "n", "c3", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(3), Standing::Out);
    assert_eq!(net.roles(2).len(), 2);
    let sent = send_text(net.p(1), "n", "sin 3", 10, 1900, &mut rand::rng(), clear).unwrap();
    assert_eq!(sent.sent_to, vec!["c2".to_string()]);
    assert!(matches!(
        send_text(net.p(3), "n", "hola", 10, 1900, &mut rand::rng(), clear),
        Err(Error::NotMember(_))
    ));
    // 3's re-add of itself, signed after its removal: refused by 2.
    let heads = net.p(3).nuclei[0].fold().heads;
    let readd = Op::sign(
        &key(3),
        net.p(3).nuclei[0].id,
        Action::Add,
        pk(3),
        &heads,
        "me",
    )
    .unwrap();
    assert!(handle_op(net.p(2), cid(3), Incoming::V2(readd.clone())).is_empty());
    // Even relayed by a member, it is refused on arrival.
    handle_op(net.p(2), cid(1), Incoming::V2(readd));
    assert_eq!(net.roles(2).len(), 2);
    let part = TextPart::new([5; 16], 0, 0, 1, b"x".to_vec()).unwrap();
    let gt = GroupText {
        nucleus: net.p(2).nuclei[0].id,
        author: fingerprint(&pk(3)).unwrap(),
        part,
    };
    assert_eq!(
        handle_group_text(net.p(2), cid(3), gt, 0),
        Received::Nothing
    );
}

#[test]
fn new_member_is_introduced_through_its_adder_after_joining() {
    // 1 and 2 are in; 1 adds 5, whom 2 does not know.
    let mut net = Net::new(&[(1, &[2, 5]), (2, &[1]), (5, &[1])]);
    net.nucleus(1, "n", &[2]);
    add(net.p(1), "n", "c5", &mut rand::rng(), clear).unwrap();
    net.settle();
    // Invited: nothing planned yet.
    assert!(net.p(5).nucleus_tasks.is_empty());
    join(net.p(5), "n", &mut rand::rng(), clear).unwrap();
    let id = net.p(5).nuclei[0].id;
    assert_eq!(
        net.p(5).nucleus_tasks,
        vec![NucleusTask::Introduce {
            nucleus: id,
            member: pk(2),
            via: pk(1)
        }]
    );
    net.settle();
    assert!(net.p(2).nucleus_tasks.is_empty());
    assert!(net.roles(2).iter().all(|(_, _, joined)| *joined));
    // The driver makes the introduction; 1 forwards it to 2 only.
    let intro = Introduction::sign(&key(5), id, pk(2), b"inv").unwrap();
    let fwd = handle_introduction(net.p(1), cid(5), intro.clone());
    assert_eq!(fwd.len(), 1);
    assert_eq!(fwd[0].0, cid(2));
    let msg = AppMessage::decode(&fwd[0].1).unwrap();
    super::receive::handle(net.p(2), cid(1), msg, 0);
    assert!(matches!(
        &net.p(2).nucleus_tasks[..],
        [NucleusTask::Accept {
            via: ContactId(1),
            ..
        }]
    ));
    // An introduction not from the peer it came from is not forwarded.
    assert!(handle_introduction(net.p(1), cid(2), intro).is_empty());
}

#[test]
fn limits_and_seen_window() {
    let mut net = Net::new(&[(1, &[2]), (2, &[1])]);
    net.nucleus(1, "n", &[2]);
    let n = &mut net.p(2).nuclei[0];
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

/// A receipt clears only its sender's copy: the first member's receipt,
/// or one a hostile member makes with the same id, leaves the copies
/// still waiting for the others.
#[test]
fn receipts_are_per_member() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    net.nucleus(1, "n", &[2, 3]);
    let sent = send_text(net.p(1), "n", "hola", 1, 1900, &mut rand::rng(), clear).unwrap();
    let a = net.p(1);
    assert_eq!(a.sent.len(), 2);
    let status = |p: &Profile, c: u8| {
        p.sent
            .iter()
            .find(|s| s.contact == cid(c) && s.message_id == sent.message_id)
            .unwrap()
            .status
    };
    let third = a
        .outbox
        .iter()
        .find(|e| e.contact == cid(3))
        .unwrap()
        .envelope_id;
    mark_stored(a, third);
    assert_eq!(
        (status(a, 3), status(a, 2)),
        (Status::Stored, Status::Queued)
    );
    // 3 (whose copy is stored) sends a receipt; it also names a message
    // never sent to it. 2's copy stays queued, in the outbox.
    let receipt = AppMessage::Receipt(vec![sent.message_id, MessageId([4; 16])]).encode();
    handle_plaintext(a, cid(3), &receipt, 2);
    assert_eq!(
        (status(a, 3), status(a, 2)),
        (Status::Delivered, Status::Queued)
    );
    assert!(
        a.outbox
            .iter()
            .any(|e| e.contact == cid(2) && e.message_id == sent.message_id)
    );
    // 2's own receipt clears its own.
    let receipt = AppMessage::Receipt(vec![sent.message_id]).encode();
    handle_plaintext(a, cid(2), &receipt, 3);
    assert_eq!(status(a, 2), Status::Delivered);
    assert!(a.outbox.iter().all(|e| e.message_id != sent.message_id));
}

#[test]
fn long_group_text_fits_envelopes_and_reassembles() {
    let mut net = Net::new(&[(1, &[2]), (2, &[1])]);
    net.nucleus(1, "n", &[2]);
    let text = "¡Huelga! ".repeat(600);
    let max = enlace_protocol::session::MAX_PLAINTEXT_LEN;
    let sent = send_text(net.p(1), "n", &text, 1, max, &mut rand::rng(), clear).unwrap();
    assert!(net.p(1).outbox.len() > 2);
    assert!(net.p(1).outbox.iter().all(|e| e.envelope.len() <= max));
    let log = net.settle();
    assert!(
        log.iter()
            .any(|(_, to, r)| *to == 2 && *r == Received::Text(sent.message_id))
    );
    assert_eq!(net.p(2).history.last().unwrap().text, text);
}

/// Sending says once which members are unverified; with
/// `require-verified` it refuses until every member is.
#[test]
fn unverified_members_are_named_once_or_refused() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    net.nucleus(1, "n", &[2, 3]);
    let send = |p: &mut Profile| send_text(p, "n", "hola", 1, 1900, &mut rand::rng(), clear);
    let first = send(net.p(1)).unwrap();
    assert_eq!(first.unverified, ["c2", "c3"]);
    assert!(send(net.p(1)).unwrap().unverified.is_empty());
    require_verified(net.p(1), "n", true).unwrap();
    let err = send(net.p(1)).unwrap_err();
    assert!(matches!(err, Error::UnverifiedMembers(_, ref names) if names == "c2, c3"));
    for c in &mut net.p(1).contacts {
        c.confirm_verified();
    }
    assert_eq!(send(net.p(1)).unwrap().sent_to.len(), 2);
    // Leaving as the last owner with others in: refused.
    assert!(matches!(
        leave(net.p(1), "n", &mut rand::rng(), clear),
        Err(Error::LastOwner(_))
    ));
    set_role(net.p(1), "n", "c2", Role::Owner, &mut rand::rng(), clear).unwrap();
    leave(net.p(1), "n", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(
        net.roles(3),
        vec![(2, Role::Owner, true), (3, Role::Member, true)]
    );
}

/// A withdrawn invitation is shown, and the nucleus is out: it takes an
/// invitation's place until forgotten; a new invitation brings it back.
#[test]
fn withdrawn_invitation_is_shown_and_a_new_one_works() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    create(net.p(1), "n", &mut rand::rng()).unwrap();
    add(net.p(1), "n", "c2", &mut rand::rng(), clear).unwrap();
    net.settle();
    take_changes(net.p(2));
    // Changes 2 does not hear of while invited, then the withdrawal.
    add(net.p(1), "n", "c3", &mut rand::rng(), clear).unwrap();
    net.settle();
    join(net.p(3), "n", &mut rand::rng(), clear).unwrap();
    net.settle();
    remove(net.p(1), "n", "c2", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(2), Standing::Out);
    // What happened while it was invited, then its removal.
    let shown = take_changes(net.p(2));
    let last = shown.last().unwrap();
    assert_eq!((last.change, last.member.name.as_str()), ("removed", "you"));
    assert!(matches!(
        join(net.p(2), "n", &mut rand::rng(), clear),
        Err(Error::NotInvited(_))
    ));
    // Invited again: the invitation arrives and can be accepted.
    add(net.p(1), "n", "c2", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(2), Standing::Invited);
    join(net.p(2), "n", &mut rand::rng(), clear).unwrap();
    net.settle();
    let want = vec![
        (1, Role::Owner, true),
        (2, Role::Member, true),
        (3, Role::Member, true),
    ];
    assert_eq!(net.roles(1), want);
    assert_eq!(net.roles(2), want);
}
