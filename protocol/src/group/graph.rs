//! The causal graph of a nucleus's operations and the order the fold
//! applies them in.
//!
//! Version-1 operations come first, sorted by (Lamport clock, id); each
//! counts as descending from every version-1 operation before it (they
//! name no parents). Version-2 operations follow in (depth, hash) order,
//! where a `create` has depth 1 and any other operation one more than its
//! deepest parent (a version-1 parent has depth 0): parents always come
//! before their children, and members holding the same set build the
//! same order. An operation is *placed* once every parent is; one with a
//! parent missing, or descending from one, is left out.

use std::collections::{BTreeMap, BTreeSet};

use super::op::{Op, OpHash};
use super::op_v1::OpV1;

/// A set of positions in the order, as bits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub(crate) fn with_len(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)])
    }

    pub(crate) fn insert(&mut self, i: usize) {
        if let Some(w) = self.0.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn union(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }
}

/// One placed operation.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Node<'a> {
    /// A version-1 operation.
    V1(&'a OpV1),
    /// A version-2 operation.
    V2(&'a Op),
}

/// The placed operations in the fold's order, with their ancestors.
#[derive(Debug)]
pub(crate) struct Graph<'a> {
    /// Operations in order.
    pub(crate) nodes: Vec<Node<'a>>,
    /// Their hashes, by position.
    pub(crate) hashes: Vec<OpHash>,
    /// Their ancestors (positions), by position.
    pub(crate) ancestors: Vec<Bits>,
    /// Positions by hash.
    pub(crate) position: BTreeMap<OpHash, usize>,
}

impl<'a> Graph<'a> {
    /// Places `v1` and `v2` (duplicates count once). Version-2 operations
    /// whose parents are not all placed are left out.
    pub(crate) fn new(v1: &'a [OpV1], v2: &'a [Op]) -> Self {
        let mut old: Vec<&OpV1> = v1.iter().collect();
        old.sort_by_key(|o| o.order_key());
        old.dedup_by_key(|o| o.order_key());
        let mut depth: BTreeMap<OpHash, u32> = old.iter().map(|o| (o.hash(), 0)).collect();
        // Kahn's algorithm over the version-2 operations: an operation is
        // ready once every parent has a depth.
        let mut by_hash: BTreeMap<OpHash, &Op> = BTreeMap::new();
        for op in v2 {
            if !depth.contains_key(&op.hash()) {
                by_hash.insert(op.hash(), op);
            }
        }
        let mut children: BTreeMap<OpHash, Vec<OpHash>> = BTreeMap::new();
        let mut waiting: BTreeMap<OpHash, usize> = BTreeMap::new();
        let mut ready = Vec::new();
        for (hash, op) in &by_hash {
            let mut missing = 0;
            for p in op.parents() {
                if depth.contains_key(p) {
                    continue;
                }
                missing += 1;
                children.entry(*p).or_default().push(*hash);
            }
            if missing == 0 {
                ready.push(*hash);
            } else {
                waiting.insert(*hash, missing);
            }
        }
        let mut placed = Vec::new();
        while let Some(hash) = ready.pop() {
            let Some(op) = by_hash.get(&hash) else {
                continue;
            };
            let d = op
                .parents()
                .iter()
                .filter_map(|p| depth.get(p))
                .max()
                .copied()
                .unwrap_or(0)
                .saturating_add(1);
            depth.insert(hash, d);
            placed.push((d, hash, *op));
            for child in children.remove(&hash).unwrap_or_default() {
                if let Some(n) = waiting.get_mut(&child) {
                    *n -= 1;
                    if *n == 0 {
                        waiting.remove(&child);
                        ready.push(child);
                    }
                }
            }
        }
        placed.sort_by_key(|(d, hash, _)| (*d, *hash));

        let total = old.len() + placed.len();
        let mut graph = Graph {
            nodes: Vec::with_capacity(total),
            hashes: Vec::with_capacity(total),
            ancestors: Vec::with_capacity(total),
            position: BTreeMap::new(),
        };
        let mut chain = Bits::with_len(total);
        for op in old {
            let i = graph.nodes.len();
            graph.push(Node::V1(op), op.hash(), chain.clone());
            chain.insert(i);
        }
        for (_, hash, op) in placed {
            let mut anc = Bits::with_len(total);
            for p in op.parents() {
                if let Some(&j) = graph.position.get(p) {
                    anc.insert(j);
                    if let Some(a) = graph.ancestors.get(j) {
                        anc.union(a);
                    }
                }
            }
            graph.push(Node::V2(op), hash, anc);
        }
        graph
    }

    fn push(&mut self, node: Node<'a>, hash: OpHash, ancestors: Bits) {
        self.position.insert(hash, self.nodes.len());
        self.nodes.push(node);
        self.hashes.push(hash);
        self.ancestors.push(ancestors);
    }

    /// Whether the operation at `a` is an ancestor of the one at `b`.
    pub(crate) fn precedes(&self, a: usize, b: usize) -> bool {
        self.ancestors.get(b).is_some_and(|anc| anc.contains(a))
    }

    /// Whether neither of the operations at `a` and `b` descends from the
    /// other.
    pub(crate) fn concurrent(&self, a: usize, b: usize) -> bool {
        a != b && !self.precedes(a, b) && !self.precedes(b, a)
    }

    /// Positions no placed operation descends from, last in order first.
    pub(crate) fn heads(&self) -> Vec<usize> {
        let mut covered = Bits::with_len(self.nodes.len());
        for anc in &self.ancestors {
            covered.union(anc);
        }
        (0..self.nodes.len())
            .rev()
            .filter(|&i| !covered.contains(i))
            .collect()
    }

    /// The hashes of the operation at `at` and of all its ancestors.
    pub(crate) fn past(&self, at: usize) -> BTreeSet<OpHash> {
        self.hashes
            .iter()
            .enumerate()
            .filter(|&(i, _)| i == at || self.precedes(i, at))
            .map(|(_, h)| *h)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;
    use crate::group::op::Action;
    use crate::group::op_v1::ActionV1;
    use crate::group::testing::{N, key, pk};

    #[test]
    fn parents_come_first_and_missing_parents_leave_descendants_out() {
        let create = Op::sign(&key(1), N, Action::Create, pk(1), &[], "n").unwrap();
        let add = Op::sign(&key(1), N, Action::Add, pk(2), &[create.hash()], "b").unwrap();
        let join = Op::sign(&key(2), N, Action::Join, pk(2), &[add.hash()], "").unwrap();
        let orphan = Op::sign(&key(1), N, Action::Add, pk(3), &[OpHash([9; 32])], "c").unwrap();
        let below = Op::sign(&key(3), N, Action::Join, pk(3), &[orphan.hash()], "").unwrap();
        let all = [below, join.clone(), orphan, add.clone(), create.clone()];
        let g = Graph::new(&[], &all);
        assert_eq!(g.hashes, vec![create.hash(), add.hash(), join.hash()]);
        assert!(g.precedes(0, 2) && g.precedes(1, 2) && !g.precedes(2, 0));
        assert_eq!(g.heads(), vec![2]);
        assert_eq!(g.past(1).len(), 2);
        // Two concurrent children: both heads, neither precedes the other.
        let other = Op::sign(&key(1), N, Action::Add, pk(4), &[add.hash()], "d").unwrap();
        let ops = [create, add, join, other];
        let g = Graph::new(&[], &ops);
        assert_eq!(g.heads().len(), 2);
        assert!(g.concurrent(2, 3));
    }

    #[test]
    fn version_1_operations_form_a_chain_before_version_2() {
        let c = OpV1::sign(&key(1), N, 1, ActionV1::Create, pk(1), "n").unwrap();
        let a = OpV1::sign(&key(1), N, 2, ActionV1::Add, pk(2), "b").unwrap();
        let v2 = Op::sign(&key(1), N, Action::Add, pk(3), &[c.hash()], "c").unwrap();
        let old = [a.clone(), c.clone(), a];
        let new = [v2];
        let g = Graph::new(&old, &new);
        assert_eq!(g.nodes.len(), 3);
        assert!(matches!(g.nodes[0], Node::V1(o) if o == &c));
        assert!(g.precedes(0, 1));
        // Naming the first version-1 operation does not cover the second.
        assert!(g.precedes(0, 2) && g.concurrent(1, 2));
        assert_eq!(g.heads(), vec![2, 1]);
    }
}
