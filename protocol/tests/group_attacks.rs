//! Attacks on the nuclei fold by members who choose their parents
//! (backdating), and the safe outcome each must end in
//! (`docs/protocol.md`, section 13.4; `docs/threat-model.md`).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

use enlace_protocol::group::{Action, History, NucleusId, Op, OpHash, Refusal, Role, Verdict};
use enlace_protocol::keys::SigningKeyPair;

const N: NucleusId = NucleusId([7; 16]);

fn key(seed: u8) -> SigningKeyPair {
    SigningKeyPair::from_secret_bytes(&[seed; 32])
}

fn pk(seed: u8) -> [u8; 32] {
    *key(seed).public().as_bytes()
}

fn sign(seed: u8, action: Action, target: u8, parents: &[&Op]) -> Op {
    let parents: Vec<OpHash> = parents.iter().map(|o| o.hash()).collect();
    let name = if matches!(action, Action::Create | Action::Add) {
        "x"
    } else {
        ""
    };
    Op::sign(&key(seed), N, action, pk(target), &parents, name).unwrap()
}

fn h<'a>(root: &Op, ops: &'a [Op]) -> History<'a> {
    History {
        creator: None,
        root: Some(root.hash()),
        v1: &[],
        ops,
    }
}

/// Appends `op` after checking it is admitted, as every member does.
fn push(ops: &mut Vec<Op>, op: Op) -> Op {
    assert_eq!(h(&ops[0], ops).admit(&op), Verdict::Counts, "admission");
    ops.push(op.clone());
    op
}

fn members(ops: &[Op]) -> Vec<(u8, Role, bool)> {
    let f = h(&ops[0], ops).fold();
    (1..=20)
        .filter_map(|s| f.members.get(&pk(s)).map(|m| (s, m.role, m.joined)))
        .collect()
}

/// Owner 1 made 2 owner, then added 3 and 4, then removed 2. 2, having
/// seen its removal, removes 1 naming only the operation that made it
/// owner. Both removals count (the graph cannot tell which came first):
/// 2 does not keep its place. 1's adds, concurrent with 2's removal of
/// 1, are void: they cannot be told from adds a removed owner backdated.
#[test]
fn a_backdated_peer_removal_does_not_keep_its_author() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let o2 = push(&mut ops, sign(1, Action::SetRole(Role::Owner), 2, &[&j2]));
    let a3 = push(&mut ops, sign(1, Action::Add, 3, &[&o2]));
    let j3 = push(&mut ops, sign(3, Action::Join, 3, &[&a3]));
    let a4 = push(&mut ops, sign(1, Action::Add, 4, &[&j3]));
    let j4 = push(&mut ops, sign(4, Action::Join, 4, &[&a4]));
    let rm2 = push(&mut ops, sign(1, Action::Remove, 2, &[&j4]));
    let rm1 = push(&mut ops, sign(2, Action::Remove, 1, &[&o2]));
    let f = h(&c, &ops).fold();
    assert_eq!(f.verdicts[&rm2.hash()], Verdict::Counts);
    assert_eq!(f.verdicts[&rm1.hash()], Verdict::Counts);
    assert!(!f.members.contains_key(&pk(2)), "the backdater is out");
    assert_eq!(f.gone[&pk(2)], pk(1));
    // Anything 2 signs now is refused on arrival.
    let again = sign(2, Action::Add, 9, &[&rm2, &rm1]);
    assert_eq!(
        h(&c, &ops).admit(&again),
        Verdict::Refused(Refusal::NotMember)
    );
}

/// Admin 3 removed informant 9 in plain view; admin 2 removes 3 naming
/// only the operation that made 3 admin. 3 is out, but its removal of 9
/// still counts: 9 stays out.
#[test]
fn a_backdated_removal_does_not_bring_back_a_removed_member() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let ad2 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 2, &[&j2]));
    let a3 = push(&mut ops, sign(1, Action::Add, 3, &[&ad2]));
    let j3 = push(&mut ops, sign(3, Action::Join, 3, &[&a3]));
    let ad3 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 3, &[&j3]));
    let a9 = push(&mut ops, sign(2, Action::Add, 9, &[&ad3]));
    let j9 = push(&mut ops, sign(9, Action::Join, 9, &[&a9]));
    let rm9 = push(&mut ops, sign(3, Action::Remove, 9, &[&j9]));
    let a4 = push(&mut ops, sign(1, Action::Add, 4, &[&rm9]));
    push(&mut ops, sign(4, Action::Join, 4, &[&a4]));
    let rm3 = push(&mut ops, sign(2, Action::Remove, 3, &[&ad3]));
    let f = h(&c, &ops).fold();
    assert_eq!(f.verdicts[&rm9.hash()], Verdict::Counts);
    assert_eq!(f.verdicts[&rm3.hash()], Verdict::Counts);
    assert!(!f.members.contains_key(&pk(9)), "the informant stays out");
    assert!(!f.members.contains_key(&pk(3)));
    // A demotion backdated the same way: 9 stays out too.
    ops.pop();
    let dem3 = push(&mut ops, sign(2, Action::SetRole(Role::Member), 3, &[&ad3]));
    let f = h(&c, &ops).fold();
    assert_eq!(f.verdicts[&dem3.hash()], Verdict::Counts);
    assert_eq!(f.verdicts[&rm9.hash()], Verdict::Counts);
    assert!(!f.members.contains_key(&pk(9)));
    assert_eq!(f.members[&pk(3)].role, Role::Member);
    // 1's add of 4 never needed 3: it stands.
    assert!(f.members[&pk(4)].joined);
}

/// Admin 3 removes admin 2; 2, having seen it, removes 3 backdated below
/// it. Both are out: 2 does not keep its place.
#[test]
fn a_backdated_admin_removal_does_not_keep_its_author() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let ad2 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 2, &[&j2]));
    let a3 = push(&mut ops, sign(1, Action::Add, 3, &[&ad2]));
    let j3 = push(&mut ops, sign(3, Action::Join, 3, &[&a3]));
    let ad3 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 3, &[&j3]));
    let a4 = push(&mut ops, sign(1, Action::Add, 4, &[&ad3]));
    let j4 = push(&mut ops, sign(4, Action::Join, 4, &[&a4]));
    let rm2 = push(&mut ops, sign(3, Action::Remove, 2, &[&j4]));
    push(&mut ops, sign(2, Action::Remove, 3, &[&ad3]));
    let f = h(&c, &ops).fold();
    assert_eq!(f.verdicts[&rm2.hash()], Verdict::Counts);
    assert!(!f.members.contains_key(&pk(2)));
    // 1's add of 4 did not need 2 or 3: it stands.
    assert_eq!(
        members(&ops),
        vec![(1, Role::Owner, true), (4, Role::Member, true)]
    );
}

/// Admin 2 sees owner 1 make 3 an owner, and removes 3 naming parents
/// from before the promotion: an admin may not remove an owner, and the
/// concurrent promotion makes 3 one. The removal is refused.
#[test]
fn an_admin_cannot_remove_a_new_owner_by_backdating() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let ad2 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 2, &[&j2]));
    let a3 = push(&mut ops, sign(1, Action::Add, 3, &[&ad2]));
    let j3 = push(&mut ops, sign(3, Action::Join, 3, &[&a3]));
    let own3 = push(&mut ops, sign(1, Action::SetRole(Role::Owner), 3, &[&j3]));
    let a4 = push(&mut ops, sign(3, Action::Add, 4, &[&own3]));
    let rm3 = push(&mut ops, sign(2, Action::Remove, 3, &[&j3]));
    let f = h(&c, &ops).fold();
    assert_eq!(f.verdicts[&rm3.hash()], Verdict::Refused(Refusal::NoRole));
    assert_eq!(f.verdicts[&a4.hash()], Verdict::Counts);
    assert_eq!(f.members[&pk(3)].role, Role::Owner);
}

/// A removed admin keeps its power to remove by backdating (the graph
/// cannot tell), but a member added again after the removal that took
/// the admin out is out of its reach: the admin cannot keep someone out
/// for good.
#[test]
fn a_removed_admin_cannot_remove_again_who_was_added_again() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let ad2 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 2, &[&j2]));
    let a5 = push(&mut ops, sign(1, Action::Add, 5, &[&ad2]));
    let j5 = push(&mut ops, sign(5, Action::Join, 5, &[&a5]));
    let rm2 = push(&mut ops, sign(1, Action::Remove, 2, &[&j5]));
    // 2 strikes back, backdated: 5 is out...
    push(&mut ops, sign(2, Action::Remove, 5, &[&j5]));
    assert!(!h(&c, &ops).fold().members.contains_key(&pk(5)));
    // ...1 adds 5 again, 5 joins, and a second backdated strike fails.
    let heads: Vec<Op> = {
        let f = h(&c, &ops).fold();
        ops.iter()
            .filter(|o| f.heads.contains(&o.hash()))
            .cloned()
            .collect()
    };
    let refs: Vec<&Op> = heads.iter().collect();
    let again = push(&mut ops, sign(1, Action::Add, 5, &refs));
    push(&mut ops, sign(5, Action::Join, 5, &[&again]));
    let strike = push(&mut ops, sign(2, Action::Remove, 5, &[&j5]));
    let f = h(&c, &ops).fold();
    assert_eq!(f.verdicts[&rm2.hash()], Verdict::Counts);
    assert!(f.members[&pk(5)].joined, "{:?}", f.verdicts[&strike.hash()]);
    assert!(!f.members.contains_key(&pk(2)));
}

/// A removed admin backdates an add of a puppet, which joins, and a
/// promotion of another member: both void, whoever helps.
#[test]
fn a_removed_admin_cannot_add_or_promote_by_backdating() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let ad2 = push(&mut ops, sign(1, Action::SetRole(Role::Admin), 2, &[&j2]));
    let a4 = push(&mut ops, sign(1, Action::Add, 4, &[&ad2]));
    let j4 = push(&mut ops, sign(4, Action::Join, 4, &[&a4]));
    push(&mut ops, sign(1, Action::Remove, 2, &[&j4]));
    let puppet = push(&mut ops, sign(2, Action::Add, 9, &[&j4]));
    let joined = push(&mut ops, sign(9, Action::Join, 9, &[&puppet]));
    let promote = push(&mut ops, sign(2, Action::SetRole(Role::Admin), 4, &[&j4]));
    // The accomplice 4, made admin by the void promotion, adds a puppet.
    let by4 = push(&mut ops, sign(4, Action::Add, 8, &[&promote]));
    let f = h(&c, &ops).fold();
    for o in [&puppet, &joined, &promote, &by4] {
        assert_eq!(f.verdicts[&o.hash()], Verdict::Refused(Refusal::Superseded));
    }
    assert_eq!(
        members(&ops),
        vec![(1, Role::Owner, true), (4, Role::Member, true)]
    );
}

/// Two owners step down concurrently (one leaves, one makes itself
/// admin), each seeing the other as owner: the later in the fold's order
/// is void, and one owner remains.
#[test]
fn concurrent_self_changes_leave_an_owner() {
    let mut ops = vec![sign(1, Action::Create, 1, &[])];
    let c = ops[0].clone();
    let a2 = push(&mut ops, sign(1, Action::Add, 2, &[&c]));
    let j2 = push(&mut ops, sign(2, Action::Join, 2, &[&a2]));
    let o2 = push(&mut ops, sign(1, Action::SetRole(Role::Owner), 2, &[&j2]));
    let a3 = push(&mut ops, sign(1, Action::Add, 3, &[&o2]));
    let j3 = push(&mut ops, sign(3, Action::Join, 3, &[&a3]));
    let leave1 = push(&mut ops, sign(1, Action::Remove, 1, &[&j3]));
    let demote2 = push(&mut ops, sign(2, Action::SetRole(Role::Admin), 2, &[&j3]));
    let f = h(&c, &ops).fold();
    let owners = f.members.values().filter(|m| m.role == Role::Owner).count();
    assert_eq!(owners, 1);
    let void: Vec<Verdict> = [&leave1, &demote2]
        .iter()
        .map(|o| f.verdicts[&o.hash()])
        .collect();
    assert!(
        void.contains(&Verdict::Refused(Refusal::LastOwner)),
        "{void:?}"
    );
    assert!(void.contains(&Verdict::Counts), "{void:?}");
}

/// Three admins remove each other in a circle, concurrently: every
/// removal counts, whatever the hashes (nothing depends on where
/// concurrent operations fall in the order), and no operation is voided
/// while its author stays.
#[test]
fn circular_removals_do_not_depend_on_hashes() {
    for salt in 0..20u8 {
        let mut ops = vec![sign(1, Action::Create, 1, &[])];
        let c = ops[0].clone();
        let mut last = c.clone();
        for s in [2u8, 3, 4] {
            last = push(&mut ops, sign(1, Action::Add, s, &[&last]));
            last = push(&mut ops, sign(s, Action::Join, s, &[&last]));
            last = push(&mut ops, sign(1, Action::SetRole(Role::Admin), s, &[&last]));
        }
        let f0 = push(&mut ops, sign(1, Action::Add, 100 + salt, &[&last]));
        let x = push(&mut ops, sign(2, Action::Remove, 3, &[&f0]));
        let y = push(&mut ops, sign(3, Action::Remove, 4, &[&f0]));
        let r = push(&mut ops, sign(4, Action::Remove, 2, &[&f0]));
        let f = h(&c, &ops).fold();
        for o in [&x, &y, &r] {
            assert_eq!(f.verdicts[&o.hash()], Verdict::Counts);
        }
        assert!([2, 3, 4].iter().all(|s| !f.members.contains_key(&pk(*s))));
    }
}
