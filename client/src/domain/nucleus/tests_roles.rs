//! Roles, refused changes and nuclei made before version 2, driven
//! through several members' profiles.

use enlace_protocol::group::limits::{MAX_OPS_PER_AUTHOR, MAX_WAITING_OPS};
use enlace_protocol::group::{Action, ActionV1, Op, OpV1, Role};

use super::*;

/// Only owners and admins change membership; every member sees every
/// change, with who made it.
#[test]
fn roles_decide_who_changes_membership() {
    let mut net = Net::new(&[(1, &[2, 3, 4]), (2, &[1, 3, 4]), (3, &[1, 2]), (4, &[1, 2])]);
    net.nucleus(1, "n", &[2, 3]);
    for seed in [1, 2, 3] {
        take_changes(net.p(seed));
    }
    // A member can neither add, remove nor change roles.
    let refused = |r: Result<(String, String), Error>| matches!(r, Err(Error::NotAllowed(..)));
    assert!(refused(add(net.p(2), "n", "c4", &mut rand::rng(), clear)));
    assert!(refused(remove(
        net.p(2),
        "n",
        "c3",
        &mut rand::rng(),
        clear
    )));
    assert!(refused(set_role(
        net.p(2),
        "n",
        "c3",
        Role::Admin,
        &mut rand::rng(),
        clear
    )));
    assert!(net.p(2).outbox.is_empty());
    // The owner makes 2 admin; 2 can then invite 4; everyone sees both.
    set_role(net.p(1), "n", "c2", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    add(net.p(2), "n", "c4", &mut rand::rng(), clear).unwrap();
    net.settle();
    join(net.p(4), "n", &mut rand::rng(), clear).unwrap();
    net.settle();
    let want = vec![
        (1, Role::Owner, true),
        (2, Role::Admin, true),
        (3, Role::Member, true),
        (4, Role::Member, true),
    ];
    for seed in [1, 2, 3, 4] {
        assert_eq!(net.roles(seed), want, "member {seed}");
    }
    let seen: Vec<String> = take_changes(net.p(3)).into_iter().map(|c| c.text).collect();
    assert_eq!(
        seen,
        [
            "c1 (unverified) made c2 (unverified) admin",
            "c2 (unverified) invited c4 (no session yet); not joined yet",
            "c4 (no session yet) joined (invited by c2 (unverified))",
        ]
    );
    // An admin cannot remove or demote the owner.
    assert!(refused(remove(
        net.p(2),
        "n",
        "c1",
        &mut rand::rng(),
        clear
    )));
    assert!(refused(set_role(
        net.p(2),
        "n",
        "c1",
        Role::Member,
        &mut rand::rng(),
        clear
    )));
}

/// A hostile member signs changes its client would refuse: without the
/// role, and after its removal, backdated below it (naming parents from
/// before). Every other member refuses them, and says so.
#[test]
fn hostile_changes_are_refused_by_every_member() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1, 3]), (3, &[1, 2])]);
    net.nucleus(1, "n", &[2, 3]);
    let id = net.p(2).nuclei[0].id;
    // Without the role: 2, a member, adds 9.
    let heads = net.p(2).nuclei[0].fold().heads;
    let no_role = Op::sign(&key(2), id, Action::Add, pk(9), &heads, "x").unwrap();
    for seed in [1, 3] {
        take_changes(net.p(seed));
        assert!(handle_op(net.p(seed), cid(2), Incoming::V2(no_role.clone())).is_empty());
        let changes = take_changes(net.p(seed));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].change, "refused");
        assert_eq!(
            changes[0].reason,
            Some("its author's role does not allow it")
        );
    }
    // 2 is made admin, then removed; it read its removal, and signs an add
    // naming the heads it had before it (backdated).
    set_role(net.p(1), "n", "c2", Role::Admin, &mut rand::rng(), clear).unwrap();
    net.settle();
    let before_removal = net.p(2).nuclei[0].fold().heads;
    remove(net.p(1), "n", "c2", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(2), Standing::Out);
    let backdated = Op::sign(&key(2), id, Action::Add, pk(9), &before_removal, "x").unwrap();
    let after = Op::sign(
        &key(2),
        id,
        Action::Add,
        pk(9),
        &net.p(2).nuclei[0].fold().heads,
        "x",
    )
    .unwrap();
    for seed in [1, 3] {
        take_changes(net.p(seed));
        // Straight from 2: not a member's session any more.
        assert!(handle_op(net.p(seed), cid(2), Incoming::V2(backdated.clone())).is_empty());
    }
    // Passed on by a member that had not heard of the removal: kept (it is
    // valid in its own past), but the removal voids it for everyone.
    for seed in [1, 3] {
        let peer = if seed == 1 { 3 } else { 1 };
        let fwd = handle_op(net.p(seed), cid(peer), Incoming::V2(backdated.clone()));
        assert!(fwd.iter().all(|(c, _)| *c != cid(2)));
        assert!(
            !net.p(seed).nuclei[0].members().contains_key(&pk(9)),
            "member {seed}"
        );
        let changes = take_changes(net.p(seed));
        assert!(
            changes
                .iter()
                .any(|c| c.change == "refused" && c.by.name == "c2"),
            "member {seed}"
        );
        // Signed after the removal: refused on arrival, not kept.
        let before = net.p(seed).nuclei[0].ops.len();
        handle_op(net.p(seed), cid(peer), Incoming::V2(after.clone()));
        assert_eq!(net.p(seed).nuclei[0].ops.len(), before);
    }
    net.settle();
    assert_eq!(net.roles(1), net.roles(3));
    assert_eq!(net.roles(1).len(), 2);
}

/// One author cannot use up more than its share, and what never gets its
/// parents cannot fill the nucleus.
#[test]
fn op_budget_cannot_be_exhausted() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    net.nucleus(1, "n", &[2]);
    let id = net.p(1).nuclei[0].id;
    // 2 hands over operations whose parents nobody has.
    for i in 0..(MAX_WAITING_OPS as u8 + 20) {
        let o = Op::sign(
            &key(2),
            id,
            Action::Remove,
            pk(2),
            &[enlace_protocol::group::OpHash([i; 32])],
            "",
        )
        .unwrap();
        assert!(handle_op(net.p(1), cid(2), Incoming::V2(o)).is_empty());
    }
    assert_eq!(net.p(1).nuclei[0].waiting.len(), MAX_WAITING_OPS);
    net.p(1).nuclei[0].waiting.clear();
    // As admin, 2 signs as many role changes as it can: past
    // MAX_OPS_PER_AUTHOR in their own past, its promotions are refused by
    // every member (demotions stay possible), and what follows waits.
    set_role(net.p(1), "n", "c2", Role::Admin, &mut rand::rng(), clear).unwrap();
    add(net.p(1), "n", "c3", &mut rand::rng(), clear).unwrap();
    net.settle();
    join(net.p(3), "n", &mut rand::rng(), clear).unwrap();
    net.settle();
    let mut heads = net.p(2).nuclei[0].fold().heads;
    for i in 0..(MAX_OPS_PER_AUTHOR + 10) {
        let role = if i % 2 == 0 {
            Role::Admin
        } else {
            Role::Member
        };
        let o = Op::sign(&key(2), id, Action::SetRole(role), pk(3), &heads, "").unwrap();
        heads = vec![o.hash()];
        handle_op(net.p(1), cid(2), Incoming::V2(o));
    }
    let by_2 = net.p(1).nuclei[0]
        .v2_ops()
        .iter()
        .filter(|o| o.author() == &pk(2))
        .count();
    assert!(by_2 <= MAX_OPS_PER_AUTHOR + 1, "{by_2}");
    // The others can still change membership.
    remove(net.p(1), "n", "c3", &mut rand::rng(), clear).unwrap();
    assert!(!net.p(1).nuclei[0].members().contains_key(&pk(3)));
}

/// A nucleus from before version 2 (version-1 operations in the profile)
/// keeps its members, the creator as owner; the owner's version-2 changes
/// build on it and a new member gets the whole history.
#[test]
fn nucleus_from_version_1_keeps_working() {
    let mut net = Net::new(&[(1, &[2, 3]), (2, &[1]), (3, &[1])]);
    let create = OpV1::sign(&key(1), N, 1, ActionV1::Create, pk(1), "viejo").unwrap();
    let add2 = OpV1::sign(&key(1), N, 2, ActionV1::Add, pk(2), "c2").unwrap();
    for seed in [1, 2] {
        let mut n = crate::profile::Nucleus::new(N, "viejo".into());
        n.creator = Some(pk(1));
        n.ops_v1 = vec![create.as_bytes().to_vec(), add2.as_bytes().to_vec()];
        net.p(seed).nuclei.push(n);
    }
    assert_eq!(
        net.roles(2),
        vec![(1, Role::Owner, true), (2, Role::Member, true)]
    );
    // 2 is a member: it cannot add.
    assert!(matches!(
        add(net.p(2), "viejo", "c1", &mut rand::rng(), clear),
        Err(Error::NotAllowed(..) | Error::AlreadyMember(..))
    ));
    // The owner invites 3, who gets the version-1 history in the welcome.
    add(net.p(1), "viejo", "c3", &mut rand::rng(), clear).unwrap();
    net.settle();
    assert_eq!(net.standing(3), Standing::Invited);
    assert_eq!(net.p(3).nuclei[0].name, "viejo");
    join(net.p(3), "viejo", &mut rand::rng(), clear).unwrap();
    net.settle();
    let want = vec![
        (1, Role::Owner, true),
        (2, Role::Member, true),
        (3, Role::Member, true),
    ];
    for seed in [1, 2, 3] {
        assert_eq!(net.roles(seed), want, "member {seed}");
    }
    // A version-1 operation from a member's session is not taken any more.
    let late = OpV1::sign(&key(1), N, 3, ActionV1::Remove, pk(2), "").unwrap();
    handle_op(net.p(2), cid(1), Incoming::V1(late));
    assert_eq!(net.p(2).nuclei[0].ops_v1.len(), 2);
}
