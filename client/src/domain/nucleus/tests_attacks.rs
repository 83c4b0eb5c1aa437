//! Attacks on what members keep and show, by hostile members and
//! contacts, and the safe outcome each must end in (`docs/protocol.md`,
//! section 13.5; `docs/threat-model.md`).

use enlace_protocol::group::limits::{MAX_OPS, MAX_OPS_PER_AUTHOR, MAX_WAITING_OPS};

use super::super::limits::MAX_REFUSALS_PER_AUTHOR;
use enlace_protocol::group::{Action, ActionV1, Op, OpHash, OpV1, Role};

use super::*;

fn heads_of(net: &mut Net, seed: u8) -> Vec<OpHash> {
    net.p(seed).nuclei[0].fold().heads
}

/// A hostile admin (4) hands member 3 "remove 5", and member 2 a full
/// share of harmless-looking changes first. The share is counted in each
/// change's own past, not in what a member happened to receive first: 2
/// keeps the removal too, and 2 and 3 agree.
#[test]
fn a_hostile_admin_cannot_split_the_members() {
    let all: [u8; 5] = [1, 2, 3, 4, 5];
    let spec: Vec<(u8, Vec<u8>)> = all
        .iter()
        .map(|&s| (s, all.iter().copied().filter(|&o| o != s).collect()))
        .collect();
    let spec_ref: Vec<(u8, &[u8])> = spec.iter().map(|(s, c)| (*s, c.as_slice())).collect();
    let mut net = Net::new(&spec_ref);
    net.nucleus(1, "n", &[2, 3, 4, 5]);
    set_role(net.p(1), "n", "c4", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    let id = net.p(4).nuclei[0].id;
    let heads = heads_of(&mut net, 4);
    let rm5 = Op::sign(&key(4), id, Action::Remove, pk(5), &heads, "").unwrap();
    // To 3: the removal first.
    let fwd = handle_op(net.p(3), cid(4), Incoming::V2(rm5.clone()));
    queue_forwards(net.p(3), fwd, &mut rand::rng(), clear).unwrap();
    // To 2: its whole remaining share, adds of throwaway keys (each counts
    // in its own past), concurrent with each other.
    let used = net.p(2).nuclei[0]
        .v2_ops()
        .iter()
        .filter(|o| o.author() == &pk(4))
        .count();
    for i in 0..(MAX_OPS_PER_AUTHOR - used) {
        let t = SigningKeyPair::from_secret_bytes(&[100 + i as u8; 32]);
        let o = Op::sign(
            &key(4),
            id,
            Action::Add,
            *t.public().as_bytes(),
            &heads,
            "x",
        )
        .unwrap();
        let fwd = handle_op(net.p(2), cid(4), Incoming::V2(o));
        queue_forwards(net.p(2), fwd, &mut rand::rng(), clear).unwrap();
    }
    net.settle();
    // And once more, 3 hands rm5 to 2 directly.
    handle_op(net.p(2), cid(3), Incoming::V2(rm5.clone()));
    let five_at = |net: &mut Net, s: u8| net.p(s).nuclei[0].members().contains_key(&pk(5));
    assert!(!five_at(&mut net, 2), "2 takes the removal");
    assert!(!five_at(&mut net, 3), "3 applied it");
    assert_eq!(net.roles(2), net.roles(3));
}

/// A plain member (4) sends operations signed by throwaway keys naming
/// unknown parents while an honest operation waits for its parent: they
/// push out only each other, never another author's, and when the parent
/// arrives the honest operation is placed.
#[test]
fn strangers_operations_never_push_out_a_members() {
    let mut net = Net::new(&[
        (1, &[2, 3, 4]),
        (2, &[1, 3, 4]),
        (3, &[1, 2, 4]),
        (4, &[1, 2, 3]),
    ]);
    net.nucleus(1, "n", &[2, 3, 4]);
    let id = net.p(1).nuclei[0].id;
    let heads = heads_of(&mut net, 1);
    // G: 1 makes 3 admin. H: 3 removes 4 (after G). K: 1 adds nobody new,
    // makes 2 admin after H.
    let g = Op::sign(&key(1), id, Action::SetRole(Role::Admin), pk(3), &heads, "").unwrap();
    let hh = Op::sign(&key(3), id, Action::Remove, pk(4), &[g.hash()], "").unwrap();
    let k = Op::sign(
        &key(1),
        id,
        Action::SetRole(Role::Admin),
        pk(2),
        &[hh.hash()],
        "",
    )
    .unwrap();
    // At 2, H arrives first (from 3), then 4's junk, then G (from 1).
    handle_op(net.p(2), cid(3), Incoming::V2(hh.clone()));
    assert_eq!(net.p(2).nuclei[0].waiting.len(), 1);
    for i in 0..MAX_WAITING_OPS {
        let junk = SigningKeyPair::from_secret_bytes(&[200 - i as u8; 32]);
        let o = Op::sign(
            &junk,
            id,
            Action::Join,
            *junk.public().as_bytes(),
            &[OpHash([i as u8; 32])],
            "",
        )
        .unwrap();
        handle_op(net.p(2), cid(4), Incoming::V2(o));
    }
    handle_op(net.p(2), cid(1), Incoming::V2(g.clone()));
    handle_op(net.p(2), cid(1), Incoming::V2(k.clone()));
    // Everyone else gets G, H, K in order (an author keeps its own).
    for s in [1u8, 3] {
        for (from, o) in [(1u8, &g), (3, &hh), (1, &k)] {
            if s == from {
                net.p(s).nuclei[0].ops.push(o.as_bytes().to_vec());
            } else {
                handle_op(net.p(s), cid(from), Incoming::V2(o.clone()));
            }
        }
    }
    net.settle();
    assert_eq!(net.roles(2), net.roles(3));
    assert!(
        net.p(2).nuclei[0]
            .v2_ops()
            .iter()
            .any(|o| o.hash() == hh.hash())
    );
    assert!(net.p(2).nuclei[0].waiting.len() <= MAX_WAITING_OPS);
}

/// Any contact can invite us to a nucleus whose welcome is made of
/// version-1 operations it signed, naming people we verified in person
/// (version 1 had no consent, so nothing proves they are in it). They are
/// shown as "version 1, no consent recorded", never as joined members.
#[test]
fn version_1_members_are_shown_without_consent() {
    // 5 = us, 6 and 7 = trusted organizers (verified contacts), 9 = the
    // hostile contact.
    let mut net = Net::new(&[(5, &[6, 7, 9]), (9, &[5])]);
    for c in net.p(5).contacts.iter_mut() {
        if c.identity_key != pk(9) {
            c.verified_key = Some(c.identity_key);
        }
    }
    let fake = enlace_protocol::group::NucleusId([0x42; 16]);
    let create = OpV1::sign(&key(9), fake, 1, ActionV1::Create, pk(9), "asamblea").unwrap();
    let a6 = OpV1::sign(&key(9), fake, 2, ActionV1::Add, pk(6), "Ana").unwrap();
    let a7 = OpV1::sign(&key(9), fake, 3, ActionV1::Add, pk(7), "Ben").unwrap();
    let add_me = Op::sign(&key(9), fake, Action::Add, pk(5), &[a7.hash()], "you").unwrap();
    handle_op(net.p(5), cid(9), Incoming::V2(add_me));
    for o in [create, a6, a7] {
        handle_op(net.p(5), cid(9), Incoming::V1(o));
    }
    let shown = take_changes(net.p(5));
    let invited = shown.iter().find(|c| c.change == "invited").unwrap();
    assert!(
        invited
            .text
            .contains("c6 (verified), version 1, no consent recorded"),
        "{}",
        invited.text
    );
    assert!(
        !invited.text.contains("(verified), member"),
        "{}",
        invited.text
    );
    assert!(net.p(5).nuclei[0].members()[&pk(6)].version_1);
}

/// A hostile admin (4) who invites 5 slips a version-1 `create` of its
/// own into the welcome of a nucleus founded with version 2: 5 drops it,
/// its `join` names only what the others hold, and its texts arrive.
#[test]
fn a_version_1_operation_in_a_version_2_welcome_is_dropped() {
    let mut net = Net::new(&[(1, &[4, 5]), (4, &[1, 5]), (5, &[1, 4])]);
    net.nucleus(1, "n", &[4]);
    set_role(net.p(1), "n", "c4", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    add(net.p(4), "n", "c5", &mut rand::rng(), clear).unwrap();
    net.settle();
    let id = net.p(4).nuclei[0].id;
    assert_eq!(net.standing(5), Standing::Invited);
    let bogus = OpV1::sign(&key(4), id, 1, ActionV1::Create, pk(4), "n").unwrap();
    handle_op(net.p(5), cid(4), Incoming::V1(bogus));
    assert!(net.p(5).nuclei[0].ops_v1.is_empty());
    join(net.p(5), "n", &mut rand::rng(), clear).unwrap();
    net.settle();
    send_text(net.p(5), "n", "hola", 0, 4000, &mut rand::rng(), clear).unwrap();
    let log = net.settle();
    let texts = log
        .iter()
        .filter(|(_, _, r)| matches!(r, Received::Text(_)))
        .count();
    assert_eq!(net.standing(5), Standing::Joined(Role::Member));
    assert!(net.roles(1).contains(&(5, Role::Member, true)));
    assert_eq!(texts, 2);
}

/// A plain member (4) tries to hide a change from the others' `read`:
/// after admin 1 invites 9, 4 sends 64 changes that are refused on
/// arrival. Refusals never push out a change, and only a few per author
/// are kept: the invitation of 9 is shown.
#[test]
fn refusals_do_not_push_out_changes() {
    let mut net = Net::new(&[(1, &[2, 4, 9]), (2, &[1, 4]), (4, &[1, 2]), (9, &[1])]);
    net.nucleus(1, "n", &[2, 4]);
    take_changes(net.p(2));
    add(net.p(1), "n", "c9", &mut rand::rng(), clear).unwrap();
    // Only deliver 1's outbox to 2 (the add).
    net.settle();
    let id = net.p(4).nuclei[0].id;
    let heads = heads_of(&mut net, 4);
    for i in 0..64u8 {
        let t = SigningKeyPair::from_secret_bytes(&[150 + i; 32]);
        let o = Op::sign(
            &key(4),
            id,
            Action::Add,
            *t.public().as_bytes(),
            &heads,
            "x",
        )
        .unwrap();
        handle_op(net.p(2), cid(4), Incoming::V2(o));
    }
    let shown: Vec<String> = take_changes(net.p(2))
        .into_iter()
        .map(|c| c.change.to_owned())
        .collect();
    assert!(shown.iter().any(|c| c == "added"), "{shown:?}");
    let refused = shown.iter().filter(|c| *c == "refused").count();
    assert!(refused <= MAX_REFUSALS_PER_AUTHOR, "{refused}");
    assert!(net.p(2).nuclei[0].members().contains_key(&pk(9)));
}

/// A hostile admin (4) with three throwaway identities it invites fills
/// MAX_OPS (concurrent joins with different parents, each valid in its
/// own past). Removals have room of their own: the owner still removes 4.
#[test]
fn a_member_who_fills_the_nucleus_can_still_be_removed() {
    let mut net = Net::new(&[(1, &[2, 4]), (2, &[1, 4]), (4, &[1, 2])]);
    net.nucleus(1, "n", &[2, 4]);
    set_role(net.p(1), "n", "c4", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    let id = net.p(4).nuclei[0].id;
    let heads = heads_of(&mut net, 4);
    let send = |net: &mut Net, o: &Op| {
        handle_op(net.p(1), cid(4), Incoming::V2(o.clone()));
    };
    let puppets: Vec<SigningKeyPair> = (0..3u8)
        .map(|i| SigningKeyPair::from_secret_bytes(&[90 + i; 32]))
        .collect();
    let mut adds = Vec::new();
    for pkp in &puppets {
        let a = Op::sign(
            &key(4),
            id,
            Action::Add,
            *pkp.public().as_bytes(),
            &heads,
            "p",
        )
        .unwrap();
        send(&mut net, &a);
        adds.push(a);
    }
    let mut fillers = Vec::new();
    for i in 0..124u8 {
        let mut seed = [7u8; 32];
        seed[0] = i;
        seed[1] = 0xee;
        let t = SigningKeyPair::from_secret_bytes(&seed);
        let o = Op::sign(
            &key(4),
            id,
            Action::Add,
            *t.public().as_bytes(),
            &heads,
            "x",
        )
        .unwrap();
        send(&mut net, &o);
        fillers.push(o);
    }
    for (pkp, a) in puppets.iter().zip(&adds) {
        let me = *pkp.public().as_bytes();
        for f in fillers.iter() {
            let o = Op::sign(pkp, id, Action::Join, me, &[a.hash(), f.hash()], "").unwrap();
            send(&mut net, &o);
        }
        for (x, y) in [(0, 1), (1, 2), (2, 3), (3, 4)] {
            let o = Op::sign(
                pkp,
                id,
                Action::Join,
                me,
                &[a.hash(), fillers[x].hash(), fillers[y].hash()],
                "",
            )
            .unwrap();
            send(&mut net, &o);
        }
    }
    assert!(net.p(1).nuclei[0].ops.len() >= MAX_OPS);
    remove(net.p(1), "n", "c4", &mut rand::rng(), clear).unwrap();
    assert!(!net.p(1).nuclei[0].members().contains_key(&pk(4)));
    // A change that is not a removal has no room left.
    assert!(matches!(
        set_role(net.p(1), "n", "c2", Role::Admin, &mut rand::rng(), clear),
        Err(Error::NucleusLimit(_))
    ));
}

/// Admin 3 removes admin 2 (every member applies it). 2 signs "remove 3"
/// naming the heads it had before (backdated), and its accomplice,
/// member 4, hands it to the others. The removal counts (the graph
/// cannot tell it was backdated), but 2 stays out everywhere.
#[test]
fn a_removed_admin_does_not_come_back_through_an_accomplice() {
    let all: [u8; 5] = [1, 2, 3, 4, 5];
    let spec: Vec<(u8, Vec<u8>)> = all
        .iter()
        .map(|&s| (s, all.iter().copied().filter(|&o| o != s).collect()))
        .collect();
    let spec_ref: Vec<(u8, &[u8])> = spec.iter().map(|(s, c)| (*s, c.as_slice())).collect();
    let mut net = Net::new(&spec_ref);
    net.nucleus(1, "n", &[2, 3, 4, 5]);
    set_role(net.p(1), "n", "c2", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    // Backdated to just after 2 became admin (3 was a plain member then).
    let before = heads_of(&mut net, 2);
    set_role(net.p(1), "n", "c3", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    let id = net.p(2).nuclei[0].id;
    remove(net.p(3), "n", "c2", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(2), Standing::Out);
    for s in [1u8, 3, 4, 5] {
        assert!(!net.p(s).nuclei[0].members().contains_key(&pk(2)));
    }
    let undo = Op::sign(&key(2), id, Action::Remove, pk(3), &before, "").unwrap();
    for s in [1u8, 3, 5] {
        let fwd = handle_op(net.p(s), cid(4), Incoming::V2(undo.clone()));
        queue_forwards(net.p(s), fwd, &mut rand::rng(), clear).unwrap();
    }
    net.settle();
    for s in [1u8, 3, 5] {
        assert!(!net.p(s).nuclei[0].members().contains_key(&pk(2)), "at {s}");
    }
    assert_eq!(net.roles(1), net.roles(5));
    let shown: Vec<String> = take_changes(net.p(5)).into_iter().map(|c| c.text).collect();
    assert!(shown.iter().any(|t| t.contains("removed c3")), "{shown:?}");
}
