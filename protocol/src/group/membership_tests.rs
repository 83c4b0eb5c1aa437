#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

use super::*;
use crate::group::limits::MAX_MEMBERS;
use crate::group::op_v1::ActionV1;
use crate::group::testing::{N, key, pk};
use crate::group::verdict::{Refusal, Verdict};
use crate::keys::SigningKeyPair;

fn sign(seed: u8, action: Action, target: u8, parents: &[&Op]) -> Op {
    let parents: Vec<OpHash> = parents.iter().map(|o| o.hash()).collect();
    let name = if matches!(action, Action::Create | Action::Add) {
        "x"
    } else {
        ""
    };
    Op::sign(&key(seed), N, action, pk(target), &parents, name).unwrap()
}

fn history<'a>(root: &Op, ops: &'a [Op]) -> History<'a> {
    History {
        creator: None,
        root: Some(root.hash()),
        v1: &[],
        ops,
    }
}

fn roles(fold: &Fold) -> Vec<(u8, Role, bool)> {
    let mut out: Vec<(u8, Role, bool)> = (1..=9)
        .filter_map(|s| fold.members.get(&pk(s)).map(|m| (s, m.role, m.joined)))
        .collect();
    out.sort();
    out
}

/// 1 creates, adds 2 and makes it admin; 2 joins.
fn base() -> Vec<Op> {
    let create = sign(1, Action::Create, 1, &[]);
    let add2 = sign(1, Action::Add, 2, &[&create]);
    let join2 = sign(2, Action::Join, 2, &[&add2]);
    let admin2 = sign(1, Action::SetRole(Role::Admin), 2, &[&join2]);
    vec![create, add2, join2, admin2]
}

#[test]
fn roles_invitations_and_joining() {
    let ops = base();
    let h = history(&ops[0], &ops);
    let f = h.fold();
    assert_eq!(
        roles(&f),
        vec![(1, Role::Owner, true), (2, Role::Admin, true)]
    );
    assert_eq!(f.heads, vec![ops[3].hash()]);
    assert!(f.verdicts.values().all(|v| *v == Verdict::Counts));
    // The admin invites 3: invited, not joined, until it joins.
    let add3 = sign(2, Action::Add, 3, &[&ops[3]]);
    assert_eq!(h.admit(&add3), Verdict::Counts);
    let mut more = ops.clone();
    more.push(add3.clone());
    let f = history(&ops[0], &more).fold();
    assert_eq!(f.members[&pk(3)].added_by, pk(2));
    assert!(!f.members[&pk(3)].joined);
    // Invited, 3 can neither add nor change roles; it can decline.
    for action in [Action::Add, Action::SetRole(Role::Member)] {
        let o = sign(3, action, 4, &[&add3]);
        assert_eq!(
            history(&ops[0], &more).admit(&o),
            Verdict::Refused(Refusal::NotJoined)
        );
    }
    let decline = sign(3, Action::Remove, 3, &[&add3]);
    assert_eq!(history(&ops[0], &more).admit(&decline), Verdict::Counts);
    let join3 = sign(3, Action::Join, 3, &[&add3]);
    more.push(join3.clone());
    let f = history(&ops[0], &more).fold();
    assert_eq!(roles(&f)[2], (3, Role::Member, true));
    // A member cannot add, remove others or change roles; it can leave.
    let h = history(&ops[0], &more);
    for (action, target) in [
        (Action::Add, 4),
        (Action::Remove, 2),
        (Action::SetRole(Role::Admin), 3),
    ] {
        let o = sign(3, action, target, &[&join3]);
        assert_eq!(h.admit(&o), Verdict::Refused(Refusal::NoRole), "{action:?}");
    }
    assert_eq!(
        h.admit(&sign(3, Action::Remove, 3, &[&join3])),
        Verdict::Counts
    );
    // Joining twice, adding a member, giving a role it has: nothing to do.
    assert_eq!(
        h.admit(&sign(3, Action::Join, 3, &[&join3])),
        Verdict::Refused(Refusal::Target)
    );
    assert_eq!(
        h.admit(&sign(1, Action::Add, 3, &[&join3])),
        Verdict::Refused(Refusal::Target)
    );
    assert_eq!(
        h.admit(&sign(1, Action::SetRole(Role::Admin), 2, &[&join3])),
        Verdict::Refused(Refusal::Target)
    );
}

#[test]
fn admins_cannot_touch_owners_and_the_last_owner_stays() {
    let ops = base();
    let h = history(&ops[0], &ops);
    let head = &ops[3];
    // The admin can neither remove nor demote the owner, nor make owners.
    for (action, target) in [
        (Action::Remove, 1),
        (Action::SetRole(Role::Member), 1),
        (Action::SetRole(Role::Owner), 2),
    ] {
        let o = sign(2, action, target, &[head]);
        assert_eq!(h.admit(&o), Verdict::Refused(Refusal::NoRole), "{action:?}");
    }
    // The last owner cannot demote itself; it can leave.
    let demote_self = sign(1, Action::SetRole(Role::Admin), 1, &[head]);
    assert_eq!(h.admit(&demote_self), Verdict::Refused(Refusal::LastOwner));
    assert_eq!(
        h.admit(&sign(1, Action::Remove, 1, &[head])),
        Verdict::Counts
    );
    // With a second owner, one owner can remove the other.
    let owner2 = sign(1, Action::SetRole(Role::Owner), 2, &[head]);
    let mut two = ops.clone();
    two.push(owner2.clone());
    let h2 = history(&ops[0], &two);
    let rm1 = sign(2, Action::Remove, 1, &[&owner2]);
    assert_eq!(h2.admit(&rm1), Verdict::Counts);
    two.push(rm1.clone());
    // Now 2 is the last owner: 1 is gone, removed by 2.
    let f = history(&ops[0], &two).fold();
    assert_eq!(roles(&f), vec![(2, Role::Owner, true)]);
    assert_eq!(f.gone.get(&pk(1)), Some(&pk(2)));
}

/// A removed member's change is refused whether it descends from its
/// removal (it knew) or names parents from before it (backdated, or made
/// before it was told).
#[test]
fn removal_wins_over_backdated_and_later_changes() {
    let ops = base();
    let head = &ops[3];
    // The removal comes one change later, so a change naming `head` sorts
    // before it.
    let add7 = sign(1, Action::Add, 7, &[head]);
    let rm2 = sign(1, Action::Remove, 2, &[&add7]);
    let mut all = ops.clone();
    all.extend([add7, rm2.clone()]);
    let h = history(&ops[0], &all);
    // After its removal: refused on arrival by everyone.
    let after = sign(2, Action::Add, 5, &[&rm2]);
    assert_eq!(h.admit(&after), Verdict::Refused(Refusal::NotMember));
    // Backdated below the removal: it counted in its author's view...
    let backdated = sign(2, Action::Add, 5, &[head]);
    assert_eq!(h.admit(&backdated), Verdict::Counts);
    // ...but the removal voids it, and everything that built on it.
    let join5 = sign(5, Action::Join, 5, &[&backdated]);
    let add6 = sign(1, Action::Add, 6, &[&join5, &rm2]);
    all.extend([backdated.clone(), join5.clone(), add6.clone()]);
    let f = history(&ops[0], &all).fold();
    assert_eq!(
        roles(&f),
        vec![
            (1, Role::Owner, true),
            (6, Role::Member, false),
            (7, Role::Member, false)
        ]
    );
    assert_eq!(
        f.verdicts[&backdated.hash()],
        Verdict::Refused(Refusal::Superseded)
    );
    // The join rests on the void add: void too.
    assert_eq!(
        f.verdicts[&join5.hash()],
        Verdict::Refused(Refusal::Superseded)
    );
    assert_eq!(f.verdicts[&add6.hash()], Verdict::Counts);
    assert_eq!(f.members[&pk(6)].added_by, pk(1));
    // Backdated below its own admission: never counts anywhere.
    let before_admission = sign(2, Action::Remove, 2, &[&ops[0]]);
    assert_eq!(
        history(&ops[0], &ops).admit(&before_admission),
        Verdict::Refused(Refusal::NotMember)
    );
    // Removing a removed member again, or replaying the removal: nothing.
    let mut replayed = all.clone();
    replayed.push(rm2.clone());
    assert_eq!(history(&ops[0], &replayed).fold(), f);
}

#[test]
fn demotion_wins_over_concurrent_changes_that_needed_the_role() {
    let ops = base();
    let head = &ops[3];
    let demote = sign(1, Action::SetRole(Role::Member), 2, &[head]);
    let add5 = sign(2, Action::Add, 5, &[head]);
    let leave = sign(2, Action::Remove, 2, &[head]);
    let mut all = ops.clone();
    all.extend([demote.clone(), add5.clone()]);
    let f = history(&ops[0], &all).fold();
    assert_eq!(
        f.verdicts[&add5.hash()],
        Verdict::Refused(Refusal::Superseded)
    );
    assert_eq!(
        roles(&f),
        vec![(1, Role::Owner, true), (2, Role::Member, true)]
    );
    // Leaving needs no role: it still counts.
    all.push(leave.clone());
    let f = history(&ops[0], &all).fold();
    assert_eq!(f.verdicts[&leave.hash()], Verdict::Counts);
    assert_eq!(f.gone.get(&pk(2)), Some(&pk(2)));
}

#[test]
fn concurrent_changes_converge_whatever_the_order() {
    let ops = base();
    let head = &ops[3];
    // 2 (admin) and 1 act concurrently: 1 adds 3 and demotes 2, 2 adds 4
    // and removes 3's invitation, 3 joins.
    let add3 = sign(1, Action::Add, 3, &[head]);
    let add4 = sign(2, Action::Add, 4, &[head]);
    let join3 = sign(3, Action::Join, 3, &[&add3]);
    let rm3 = sign(2, Action::Remove, 3, &[&add3, &add4]);
    let demote = sign(1, Action::SetRole(Role::Member), 2, &[&add3]);
    let join4 = sign(4, Action::Join, 4, &[&add4]);
    let mut all = ops.clone();
    all.extend([add3, add4, join3, rm3, demote, join4]);
    let reference = history(&ops[0], &all).fold();
    // A deterministic shuffle, many times, duplicates included.
    let mut state = 0x9e37_79b9_u64;
    for _ in 0..500 {
        let mut shuffled = all.clone();
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        shuffled.push(shuffled[(state % 5) as usize].clone());
        assert_eq!(history(&ops[0], &shuffled).fold(), reference);
    }
}

/// Two admins removing each other concurrently: both are out, whichever
/// was backdated (the graph cannot tell), and neither removal is voided
/// by the other.
#[test]
fn mutual_removals_remove_both() {
    let mut ops = base();
    let add3 = sign(1, Action::Add, 3, &[&ops[3]]);
    let join3 = sign(3, Action::Join, 3, &[&add3]);
    let admin3 = sign(1, Action::SetRole(Role::Admin), 3, &[&join3]);
    ops.extend([add3, join3, admin3.clone()]);
    let a = sign(2, Action::Remove, 3, &[&admin3]);
    let b = sign(3, Action::Remove, 2, &[&admin3]);
    ops.extend([a.clone(), b.clone()]);
    let f = history(&ops[0], &ops).fold();
    assert_eq!(roles(&f), vec![(1, Role::Owner, true)]);
    assert_eq!(f.verdicts[&a.hash()], Verdict::Counts);
    assert_eq!(f.verdicts[&b.hash()], Verdict::Counts);
    assert_eq!((f.gone[&pk(2)], f.gone[&pk(3)]), (pk(3), pk(2)));
}

/// A nucleus made with version 1 keeps its members, with implicit roles
/// (the creator owner, the others members); version-2 changes build on it.
#[test]
fn version_1_base_with_version_2_changes() {
    let c = OpV1::sign(&key(1), N, 1, ActionV1::Create, pk(1), "n").unwrap();
    let a2 = OpV1::sign(&key(1), N, 2, ActionV1::Add, pk(2), "b").unwrap();
    let a3 = OpV1::sign(&key(2), N, 3, ActionV1::Add, pk(3), "c").unwrap();
    let v1 = [a3.clone(), c.clone(), a2.clone()];
    let h = History {
        creator: Some(pk(1)),
        root: None,
        v1: &v1,
        ops: &[],
    };
    let f = h.fold();
    assert_eq!(
        roles(&f),
        vec![
            (1, Role::Owner, true),
            (2, Role::Member, true),
            (3, Role::Member, true)
        ]
    );
    assert_eq!(f.heads, vec![a3.hash()]);
    // The owner makes 2 admin on top of the whole version-1 history.
    let admin2 = Op::sign(
        &key(1),
        N,
        Action::SetRole(Role::Admin),
        pk(2),
        &[a3.hash()],
        "",
    )
    .unwrap();
    assert_eq!(h.admit(&admin2), Verdict::Counts);
    // 3, a member, cannot add; and naming only the create, 3 was not yet
    // a member.
    let by3 = Op::sign(&key(3), N, Action::Add, pk(4), &[a3.hash()], "d").unwrap();
    assert_eq!(h.admit(&by3), Verdict::Refused(Refusal::NoRole));
    let early = Op::sign(&key(3), N, Action::Remove, pk(3), &[c.hash()], "").unwrap();
    assert_eq!(h.admit(&early), Verdict::Refused(Refusal::NotMember));
    // A version-2 create cannot take over a version-1 nucleus.
    let takeover = Op::sign(&key(2), N, Action::Create, pk(2), &[], "n").unwrap();
    assert_eq!(h.admit(&takeover), Verdict::Refused(Refusal::NotTheCreate));
    let ops = [admin2];
    let f = History { ops: &ops, ..h }.fold();
    assert_eq!(f.members[&pk(2)].role, Role::Admin);
}

#[test]
fn only_the_pinned_create_counts_and_members_are_bounded() {
    let ops = base();
    let other = sign(2, Action::Create, 2, &[]);
    let h = history(&ops[0], &ops);
    assert_eq!(h.admit(&other), Verdict::Refused(Refusal::NotTheCreate));
    let unpinned = History { root: None, ..h };
    assert!(unpinned.fold().members.is_empty());
    // A parent nobody holds: waits, and so does what descends from it.
    let orphan = Op::sign(&key(1), N, Action::Add, pk(3), &[OpHash([5; 32])], "x").unwrap();
    assert_eq!(h.admit(&orphan), Verdict::Waits);
    assert!(h.past_of(&orphan).is_none());
    let mut with = ops.clone();
    with.push(orphan.clone());
    assert_eq!(
        history(&ops[0], &with).fold().verdicts[&orphan.hash()],
        Verdict::Waits
    );
    // At most MAX_MEMBERS, invited ones included.
    let mut all = ops.clone();
    let mut head = all[3].clone();
    for i in 0..(MAX_MEMBERS as u64 + 3) {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i + 100).to_be_bytes());
        let target = *SigningKeyPair::from_secret_bytes(&seed).public().as_bytes();
        head = Op::sign(&key(1), N, Action::Add, target, &[head.hash()], "m").unwrap();
        all.push(head.clone());
    }
    let f = history(&ops[0], &all).fold();
    assert_eq!(f.members.len(), MAX_MEMBERS);
    assert_eq!(f.verdicts[&head.hash()], Verdict::Refused(Refusal::Full));
}

/// A removed member's operations replayed after its removal change
/// nothing: those its removal descends from stay where they were, and
/// one its remover never saw (replayed late, to members who never had
/// it) is voided by the removal.
#[test]
fn replay_after_removal_changes_nothing() {
    let ops = base();
    let add5 = sign(2, Action::Add, 5, &[&ops[3]]);
    let add6 = sign(2, Action::Add, 6, &[&ops[3]]);
    // 1 saw the add of 5, not the add of 6, when it removed 2.
    let rm2 = sign(1, Action::Remove, 2, &[&add5]);
    let mut held = ops.clone();
    held.extend([add5.clone(), rm2.clone()]);
    let before = history(&ops[0], &held).fold();
    assert!(before.members.contains_key(&pk(5)));
    // Replayed: the add of 5 again, and the add of 6 for the first time.
    let mut replayed = held.clone();
    replayed.extend([add5, add6.clone()]);
    let after = history(&ops[0], &replayed).fold();
    assert_eq!(after.members, before.members);
    assert_eq!(
        after.verdicts[&add6.hash()],
        Verdict::Refused(Refusal::Superseded)
    );
    // Arriving after the removal, the add of 6 still counts in its own
    // past (it is kept), but nowhere else.
    assert_eq!(history(&ops[0], &held).admit(&add6), Verdict::Counts);
}
