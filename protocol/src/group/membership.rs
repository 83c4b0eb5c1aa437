//! The membership fold: the member list, with roles, that a set of
//! operations yields (`docs/protocol.md`, section 13.4).
//!
//! 1. Place the operations in the causal order of [`super::graph`]
//!    (version 1 first, then version 2 by depth and hash).
//! 2. Check each version-2 operation in its own past (its ancestors,
//!    resolved the same way): whether its author, with the role it had
//!    there, may make it ([`Role`]'s rules: the pinned `create` first; an
//!    `add` by a joined owner or admin of a non-member; a `remove` of
//!    oneself, or of another by a joined member whose role may manage the
//!    target's; a `role` change by one who may manage the target and grant
//!    the role; a `join` by an invited member; never removing or demoting
//!    the last owner but by itself, which may only leave; at most
//!    [`MAX_OPS_PER_AUTHOR`] changes but removals and demotions by one
//!    author in its past). That verdict never changes.
//! 3. Resolve what counted ([`super::resolve`]): removals and demotions
//!    take effect; what needed a role its author lost concurrently is
//!    void; concurrent admissions and removals of one member: the removal.
//!
//! The result depends on the set of operations, not on the order they
//! arrived in, and no concurrent operation's place in the order changes
//! it. [`History::admit`] is the check of step 2 for one operation.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::{Graph, Node};
use super::limits::{MAX_MEMBERS, MAX_OPS_PER_AUTHOR};
use super::op::{Action, Op, OpHash};
use super::op_v1::OpV1;
use super::resolve::{Checked, Resolver, View};
use super::role::Role;
use super::verdict::{Refusal, Verdict};

/// A member as the fold sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its role.
    pub role: Role,
    /// Whether it accepted: an invited member receives nothing and can
    /// only join or decline. The creator and version-1 members are joined.
    pub joined: bool,
    /// The name its adder gave it (the nucleus's name for the creator).
    /// Chosen by the adder: not safe to print or to use as it is.
    pub suggested_name: String,
    /// The identity key of who added it (its own for the creator).
    pub added_by: [u8; 32],
    /// Position in the fold's order of the operation that admitted it.
    pub since: usize,
    /// Position of its `join` (of its admission, for the creator and
    /// version-1 members), once joined.
    pub joined_at: Option<usize>,
    /// The identity key of the author of the last operation about it
    /// that counted.
    pub changed_by: [u8; 32],
    /// Whether it was admitted by a version-1 operation (it gave no
    /// consent: version 1 had none).
    pub version_1: bool,
}

/// The result of a fold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fold {
    /// The members at the end (invited ones included), by identity key.
    pub members: BTreeMap<[u8; 32], Member>,
    /// Keys a counted `remove` took out and nothing brought back, with the
    /// remover (the key itself: left or declined).
    pub gone: BTreeMap<[u8; 32], [u8; 32]>,
    /// The verdict on every version-2 operation given.
    pub verdicts: BTreeMap<OpHash, Verdict>,
    /// The placed operations nothing placed descends from, latest first:
    /// the parents of the next operation.
    pub heads: Vec<OpHash>,
    /// Every placed operation, in the fold's order (parents first).
    pub order: Vec<OpHash>,
}

/// A nucleus's operations as one member holds them, with its pins.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// The pinned creator of a nucleus founded with version 1 (only its
    /// version-1 `create` counts).
    pub creator: Option<[u8; 32]>,
    /// The pinned `create` of a nucleus founded with version 2 (only it
    /// counts).
    pub root: Option<OpHash>,
    /// Version-1 operations (read from before version 2).
    pub v1: &'a [OpV1],
    /// Version-2 operations.
    pub ops: &'a [Op],
}

/// Whether `author`, standing as `view` says, may make `op` there: the
/// check in the operation's own past.
fn check(op: &Op, view: &View, root: Option<OpHash>, own: usize) -> Checked {
    let (author, target) = (op.author(), op.target());
    let mut c = Checked {
        refusal: None,
        author_role: view.members.get(author).map(|m| m.role),
        target_role: view.members.get(target).map(|m| m.role),
    };
    c.refusal = refusal(op, view, root, own).err();
    c
}

fn refusal(op: &Op, view: &View, root: Option<OpHash>, own: usize) -> Result<(), Refusal> {
    let (author, target) = (op.author(), op.target());
    let joined = |key: &[u8; 32]| -> Result<Role, Refusal> {
        let m = view.members.get(key).ok_or(Refusal::NotMember)?;
        if m.joined {
            Ok(m.role)
        } else {
            Err(Refusal::NotJoined)
        }
    };
    let restrictive = match op.action() {
        Action::Remove => true,
        Action::SetRole(to) => view.members.get(target).is_some_and(|m| to > m.role),
        _ => false,
    };
    let quota = || {
        if own >= MAX_OPS_PER_AUTHOR && !restrictive {
            Err(Refusal::Quota)
        } else {
            Ok(())
        }
    };
    match op.action() {
        Action::Create => {
            // A create has no parents: its past is empty.
            if Some(op.hash()) != root || !view.members.is_empty() || !view.gone.is_empty() {
                return Err(Refusal::NotTheCreate);
            }
            Ok(())
        }
        Action::Add => {
            if !joined(author)?.manages() {
                return Err(Refusal::NoRole);
            }
            if view.members.contains_key(target) {
                return Err(Refusal::Target);
            }
            quota()?;
            if view.members.len() >= MAX_MEMBERS {
                return Err(Refusal::Full);
            }
            Ok(())
        }
        Action::Remove => {
            let missing = if target == author {
                Refusal::NotMember
            } else {
                Refusal::Target
            };
            let role = view.members.get(target).ok_or(missing)?.role;
            if target != author {
                if !joined(author)?.may_manage(role) {
                    return Err(Refusal::NoRole);
                }
                if role == Role::Owner && view.owners() == 1 {
                    return Err(Refusal::LastOwner);
                }
            }
            Ok(())
        }
        Action::SetRole(to) => {
            let by = joined(author)?;
            let from = view.members.get(target).ok_or(Refusal::Target)?.role;
            if !by.may_manage(from) || !by.may_grant(to) {
                return Err(Refusal::NoRole);
            }
            if from == to {
                return Err(Refusal::Target);
            }
            if from == Role::Owner && view.owners() == 1 {
                return Err(Refusal::LastOwner);
            }
            quota()
        }
        Action::Join => {
            let m = view.members.get(author).ok_or(Refusal::NotMember)?;
            if m.joined {
                return Err(Refusal::Target);
            }
            Ok(())
        }
    }
}

/// Checks every placed version-2 operation in its own past, in order.
/// The view of an operation with one version-2 parent is its parent's
/// view with the parent applied (nothing in it is concurrent with the
/// parent); any other is resolved afresh.
fn checks<'g, 'a>(graph: &'g Graph<'a>, history: &History<'_>) -> Resolver<'g, 'a> {
    let mut r = Resolver::new(graph, history.creator);
    let mut views: Vec<Option<View>> = Vec::with_capacity(graph.nodes.len());
    let mut by_author: BTreeMap<[u8; 32], Vec<usize>> = BTreeMap::new();
    for (at, node) in graph.nodes.iter().enumerate() {
        let Node::V2(op) = node else {
            r.record(at, Checked::default());
            views.push(None);
            continue;
        };
        let parents: Vec<usize> = op
            .parents()
            .iter()
            .filter_map(|p| graph.position.get(p).copied())
            .collect();
        let single = match parents[..] {
            [p] => views
                .get(p)
                .and_then(Option::as_ref)
                .zip(graph.nodes.get(p))
                .map(|(v, node)| (v, node, p)),
            _ => None,
        };
        let view = match single {
            Some((parent_view, Node::V2(parent), p)) => {
                let counted = r.checked.get(p).is_some_and(|c| c.refusal.is_none());
                if counted {
                    parent_view.clone().then(parent, p)
                } else {
                    parent_view.clone()
                }
            }
            _ => {
                let past = |i: usize| graph.precedes(i, at);
                r.settle(&past).0
            }
        };
        let mine = by_author.entry(*op.author()).or_default();
        let own = mine.iter().filter(|&&i| graph.precedes(i, at)).count();
        mine.push(at);
        r.record(at, check(op, &view, history.root, own));
        views.push(Some(view));
    }
    r
}

impl History<'_> {
    /// Folds the operations (see the module's documentation).
    pub fn fold(&self) -> Fold {
        let graph = Graph::new(self.v1, self.ops);
        let resolver = checks(&graph, self);
        let (view, why) = resolver.settle(&|_| true);
        let mut verdicts: BTreeMap<OpHash, Verdict> = self
            .ops
            .iter()
            .map(|o| (o.hash(), Verdict::Waits))
            .collect();
        for ((node, hash), refusal) in graph.nodes.iter().zip(&graph.hashes).zip(&why) {
            if let Node::V2(_) = node {
                let verdict = refusal.map_or(Verdict::Counts, Verdict::Refused);
                verdicts.insert(*hash, verdict);
            }
        }
        let author_at = |at: usize| match graph.nodes.get(at) {
            Some(Node::V1(op)) => Some((*op.author(), op.name().to_owned(), true)),
            Some(Node::V2(op)) => Some((*op.author(), op.name().to_owned(), false)),
            None => None,
        };
        let members = view
            .members
            .iter()
            .filter_map(|(key, s)| {
                let (added_by, name, version_1) = author_at(s.since)?;
                let (changed_by, _, _) = author_at(s.changed)?;
                Some((
                    *key,
                    Member {
                        role: s.role,
                        joined: s.joined,
                        suggested_name: name,
                        added_by,
                        since: s.since,
                        joined_at: s.joined_at,
                        changed_by,
                        version_1,
                    },
                ))
            })
            .collect();
        let gone = view
            .gone
            .iter()
            .filter_map(|(key, &at)| Some((*key, author_at(at)?.0)))
            .collect();
        let heads = graph
            .heads()
            .into_iter()
            .filter_map(|i| graph.hashes.get(i).copied())
            .collect();
        Fold {
            members,
            gone,
            verdicts,
            heads,
            order: graph.hashes.clone(),
        }
    }

    /// What a member makes of `op` when it arrives: [`Verdict::Waits`]
    /// while a parent is missing, else whether it counts in its own past
    /// (its author's view when signing). An operation refused here is
    /// refused by every member, whatever else they hold.
    pub fn admit(&self, op: &Op) -> Verdict {
        let Some(past) = self.past_of(op) else {
            return Verdict::Waits;
        };
        let v1: Vec<OpV1> = self
            .v1
            .iter()
            .filter(|o| past.contains(&o.hash()))
            .cloned()
            .collect();
        let mut ops: Vec<Op> = self
            .ops
            .iter()
            .filter(|o| past.contains(&o.hash()) && o.hash() != op.hash())
            .cloned()
            .collect();
        ops.push(op.clone());
        let own = History {
            v1: &v1,
            ops: &ops,
            ..*self
        };
        let graph = Graph::new(own.v1, own.ops);
        let Some(&at) = graph.position.get(&op.hash()) else {
            return Verdict::Waits;
        };
        let resolver = checks(&graph, &own);
        match resolver.checked.get(at).and_then(|c| c.refusal) {
            None => Verdict::Counts,
            Some(why) => Verdict::Refused(why),
        }
    }

    /// The hashes of `op` and of every operation it descends from, if all
    /// are held (`op` itself need not be).
    pub fn past_of(&self, op: &Op) -> Option<BTreeSet<OpHash>> {
        let mut ops = self.ops.to_vec();
        ops.push(op.clone());
        let graph = Graph::new(self.v1, &ops);
        let at = *graph.position.get(&op.hash())?;
        Some(graph.past(at))
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
