//! The cost of the nucleus fold and of the check a member makes when an
//! operation arrives, for a small nucleus and for one at its limits (512
//! operations, 64 members, with concurrent branches and demotions that
//! void some). Run with `cargo bench -p enlace-protocol --bench group`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // benchmark code

use std::hint::black_box;
use std::time::{Duration, Instant};

use enlace_protocol::group::limits::{MAX_MEMBERS, MAX_OPS};
use enlace_protocol::group::{Action, History, NucleusId, Op, Role};
use enlace_protocol::keys::SigningKeyPair;

/// Runs `f` repeatedly for about a second and prints operations per second.
fn bench(name: &str, mut f: impl FnMut()) {
    f();
    let budget = Duration::from_secs(1);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<52} {:>10.1} /s {:>10.1} µs",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn key(i: usize) -> SigningKeyPair {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    SigningKeyPair::from_secret_bytes(&seed)
}

/// A nucleus of `size` operations: the owner invites members who join;
/// some become admins and invite others; admins are demoted while they
/// act on older heads (concurrent branches, voided changes).
fn nucleus(size: usize) -> Vec<Op> {
    let n = NucleusId([7; 16]);
    let owner = key(0);
    let pk = |i: usize| *key(i).public().as_bytes();
    let create = Op::sign(&owner, n, Action::Create, pk(0), &[], "n").unwrap();
    let mut ops = vec![create.clone()];
    let mut head = create.hash();
    let mut member = 1;
    while ops.len() < size {
        let i = member;
        member = member % (MAX_MEMBERS - 1) + 1;
        let add = Op::sign(&owner, n, Action::Add, pk(i), &[head], "m").unwrap();
        let join = Op::sign(&key(i), n, Action::Join, pk(i), &[add.hash()], "").unwrap();
        let admin = Op::sign(
            &owner,
            n,
            Action::SetRole(Role::Admin),
            pk(i),
            &[join.hash()],
            "",
        )
        .unwrap();
        // The admin acts on the heads it had while the owner demotes it.
        let by_admin = Op::sign(
            &key(i),
            n,
            Action::Remove,
            pk(i % 7 + 1),
            &[admin.hash()],
            "",
        )
        .unwrap();
        let demote = Op::sign(
            &owner,
            n,
            Action::SetRole(Role::Member),
            pk(i),
            &[admin.hash()],
            "",
        )
        .unwrap();
        let leave = Op::sign(
            &key(i),
            n,
            Action::Remove,
            pk(i),
            &[demote.hash(), by_admin.hash()],
            "",
        )
        .unwrap();
        head = leave.hash();
        ops.extend([add, join, admin, by_admin, demote, leave]);
    }
    ops.truncate(size);
    ops
}

fn main() {
    for size in [16, 128, MAX_OPS] {
        let ops = nucleus(size);
        let history = History {
            creator: None,
            root: Some(ops[0].hash()),
            v1: &[],
            ops: &ops,
        };
        let fold = history.fold();
        let voided = fold
            .verdicts
            .values()
            .filter(|v| matches!(v, enlace_protocol::group::Verdict::Refused(_)))
            .count();
        println!(
            "{size} operations: {} members, {voided} refused",
            fold.members.len()
        );
        bench(&format!("fold, {size} operations"), || {
            black_box(history.fold());
        });
        let (last, before) = ops.split_last().unwrap();
        let held = History {
            ops: before,
            ..history
        };
        bench(&format!("admit one arriving, {size} held"), || {
            black_box(held.admit(last));
        });
    }
}
