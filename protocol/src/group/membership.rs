//! The membership fold: the member list a set of operations yields.
//!
//! 1. Sort the operations by [`OrderKey`] (Lamport clock, then id).
//! 2. Start with no members and apply each in turn: a `create` counts only
//!    from the pinned creator, only as the first to count, on an empty
//!    list; an `add` counts if its author is a member at that point, the
//!    target is not, and there are fewer than [`MAX_MEMBERS`]; a `remove`
//!    counts if its author is a member at that point.
//! 3. The last counted operation about a member decides whether it is in.
//!
//! The result depends on the set of operations, not on the order they
//! arrived in, so members holding the same set agree.

use std::collections::{BTreeMap, BTreeSet};

use super::limits::MAX_MEMBERS;
use super::op::{Action, Op, OrderKey};

/// A member as the fold sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name its adder gave it (the nucleus's name for the creator).
    /// Chosen by the adder: not safe to print or to use as it is.
    pub suggested_name: String,
    /// The identity key of who added it (its own for the creator).
    pub added_by: [u8; 32],
    /// Where the operation that made it a member sorts.
    pub since: OrderKey,
}

/// The result of a fold: the members at the end, by identity key, and
/// every key that was a member at some point of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fold {
    /// The members at the end.
    pub members: BTreeMap<[u8; 32], Member>,
    /// Every key that was a member at some point.
    pub ever: BTreeSet<[u8; 32]>,
}

impl Fold {
    /// Folds `ops` for a nucleus whose pinned creator is `creator` (its
    /// `create` is the only one that can count). Operations of other
    /// nuclei are not filtered out: pass one nucleus's operations.
    pub fn new(creator: Option<[u8; 32]>, ops: &[Op]) -> Self {
        let mut sorted: Vec<&Op> = ops.iter().collect();
        sorted.sort_by_key(|op| op.order_key());
        let mut fold = Self::default();
        let mut created = false;
        for op in sorted {
            let author = *op.author();
            match op.action() {
                Action::Create => {
                    if !created && Some(author) == creator && fold.members.is_empty() {
                        created = true;
                        fold.admit(author, op);
                    }
                }
                Action::Add => {
                    if fold.members.contains_key(&author)
                        && !fold.members.contains_key(op.target())
                        && fold.members.len() < MAX_MEMBERS
                    {
                        fold.admit(*op.target(), op);
                    }
                }
                Action::Remove => {
                    if fold.members.contains_key(&author) {
                        fold.members.remove(op.target());
                    }
                }
            }
        }
        fold
    }

    fn admit(&mut self, key: [u8; 32], op: &Op) {
        self.ever.insert(key);
        self.members.insert(
            key,
            Member {
                suggested_name: op.name().to_owned(),
                added_by: *op.author(),
                since: op.order_key(),
            },
        );
    }

    /// Whether `op` can count in this fold: its author was a member at
    /// some point, or it is the `create` of `creator`. An operation that
    /// cannot is waiting for its author's `add`.
    pub fn places(&self, op: &Op, creator: Option<[u8; 32]>) -> bool {
        self.ever.contains(op.author())
            || (op.action() == Action::Create && creator.as_ref() == Some(op.author()))
    }
}

/// The member list that `ops` yields for a nucleus whose pinned creator is
/// `creator` (see [`Fold::new`]).
pub fn fold(creator: Option<[u8; 32]>, ops: &[Op]) -> BTreeMap<[u8; 32], Member> {
    Fold::new(creator, ops).members
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;
    use crate::group::testing::{N, key, pk};
    use crate::keys::SigningKeyPair;

    fn op(seed: u8, lamport: u64, action: Action, target: u8) -> Op {
        Op::sign(&key(seed), N, lamport, action, pk(target), "x").unwrap()
    }

    fn members(ops: &[Op]) -> Vec<[u8; 32]> {
        fold(Some(pk(1)), ops).keys().copied().collect()
    }

    #[test]
    fn fold_rules() {
        let create = op(1, 1, Action::Create, 1);
        let add2 = op(1, 2, Action::Add, 2);
        let add3 = op(2, 3, Action::Add, 3);
        let mut expect = vec![pk(1), pk(2), pk(3)];
        expect.sort();
        assert_eq!(
            members(&[add3.clone(), add2.clone(), create.clone()]),
            expect
        );
        // A non-member's add does not count.
        let stranger = op(9, 4, Action::Add, 8);
        assert_eq!(
            members(&[create.clone(), add2.clone(), add3.clone(), stranger]).len(),
            3
        );
        // A removed member cannot re-add itself or add others later.
        let rm2 = op(1, 4, Action::Remove, 2);
        let readd = op(2, 5, Action::Add, 2);
        let add5 = op(2, 6, Action::Add, 5);
        let m = members(&[create.clone(), add2.clone(), rm2, readd, add5]);
        assert_eq!(m, vec![pk(1)]);
        // A create by someone other than the pinned creator is ignored.
        let other_create = op(2, 0, Action::Create, 2);
        assert_eq!(
            members(&[other_create, create.clone(), add2.clone()]).len(),
            2
        );
        // Leaving.
        let leave = op(2, 3, Action::Remove, 2);
        assert_eq!(members(&[create, add2, leave]), vec![pk(1)]);
    }

    #[test]
    fn ever_members_place_waiting_operations() {
        let create = op(1, 1, Action::Create, 1);
        let add2 = op(1, 2, Action::Add, 2);
        let rm2 = op(1, 3, Action::Remove, 2);
        let by2 = op(2, 4, Action::Add, 5);
        let by3 = op(3, 4, Action::Add, 6);
        let f = Fold::new(Some(pk(1)), &[create.clone(), add2, rm2]);
        assert_eq!(f.members.len(), 1);
        assert!(f.ever.contains(&pk(2)));
        // 2 was a member once: its operation counts in the order, 3's waits.
        assert!(f.places(&by2, Some(pk(1))));
        assert!(!f.places(&by3, Some(pk(1))));
        // The pinned creator's create is placed before anything is folded.
        let empty = Fold::new(None, &[]);
        assert!(empty.places(&create, Some(pk(1))));
        assert!(!empty.places(&create, None));
        // No more than MAX_MEMBERS.
        let mut ops = vec![create];
        for i in 0..(MAX_MEMBERS as u64 + 5) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i + 100).to_be_bytes());
            let target = *SigningKeyPair::from_secret_bytes(&seed).public().as_bytes();
            ops.push(Op::sign(&key(1), N, 2 + i, Action::Add, target, "m").unwrap());
        }
        assert_eq!(fold(Some(pk(1)), &ops).len(), MAX_MEMBERS);
    }
}
