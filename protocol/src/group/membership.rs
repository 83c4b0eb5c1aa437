//! The membership fold: the member list, with roles, that a set of
//! operations yields.
//!
//! 1. Place the operations in the causal order of [`super::graph`]
//!    (version 1 first, then version 2 by depth and hash).
//! 2. Start with no members and apply each in turn. Version-1 operations
//!    follow the version-1 rules, with implicit roles: the pinned
//!    creator's `create` makes an owner, any member's `add` a joined
//!    member, any member's `remove` removes. A version-2 operation counts
//!    only if [`Role`]'s rules allow it at that point: the pinned `create`
//!    (first, on an empty list) makes its author owner; an `add` needs a
//!    joined owner or admin and a target that is not a member; a `remove`
//!    of oneself always counts (leaving, declining), of another needs a
//!    joined author whose role may manage the target's; a role change
//!    needs a joined author who may manage the target and grant the role;
//!    a `join` needs an invited, not yet joined author. Nobody removes or
//!    demotes the last owner but itself, and it may only leave.
//! 3. A removal or demotion that counts voids every change by its target
//!    that neither descends from it nor precedes it (that needed the
//!    role, for a demotion): a member cannot escape its removal by naming
//!    old parents. Applied until nothing more is voided.
//!
//! The result depends on the set of operations, not on the order they
//! arrived in. [`History::admit`] is the check a member makes when an
//! operation arrives: it must count in the fold of its own past (its
//! author's view when it signed), which refuses an operation whose author
//! was not a member there (not descending from its admission, or from
//! after its removal) or lacked the role.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::{Bits, Graph, Node};
use super::limits::MAX_MEMBERS;
use super::op::{Action, Op, OpHash};
use super::op_v1::{ActionV1, OpV1};
use super::role::Role;

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
}

/// Why an operation does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A `create` other than the nucleus's pinned one, or not first.
    NotTheCreate,
    /// Its author is not a member there: never added, removed, or its
    /// admission is not in the operation's past.
    NotMember,
    /// Its author is invited but has not joined: it can only join or
    /// decline.
    NotJoined,
    /// Its author's role does not allow it.
    NoRole,
    /// It would remove or demote the last owner.
    LastOwner,
    /// Its target is not in the state it needs: adding a member, removing
    /// or changing a non-member, giving a role it has, joining twice.
    Target,
    /// The nucleus has [`MAX_MEMBERS`] members already.
    Full,
    /// Its author's removal or demotion counts and the operation does not
    /// descend from it: made without it, or backdated past it.
    Superseded,
}

/// What the fold made of one version-2 operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It counts.
    Counts,
    /// It does not count, for this reason.
    Refused(Refusal),
    /// Some parent (or an ancestor's) is missing: not placed yet.
    Waits,
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

/// A counted removal or demotion: its position, its target, and whether
/// it removed (rather than demoted).
type Demotion = (usize, [u8; 32], bool);

struct State {
    members: BTreeMap<[u8; 32], Member>,
    gone: BTreeMap<[u8; 32], [u8; 32]>,
    created: bool,
}

impl State {
    fn admit(&mut self, key: [u8; 32], member: Member) {
        self.gone.remove(&key);
        self.members.insert(key, member);
    }

    fn joined(&self, key: &[u8; 32]) -> Result<&Member, Refusal> {
        let m = self.members.get(key).ok_or(Refusal::NotMember)?;
        if m.joined {
            Ok(m)
        } else {
            Err(Refusal::NotJoined)
        }
    }

    fn owners(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    fn apply_v1(&mut self, op: &OpV1, at: usize, creator: Option<[u8; 32]>) {
        let (author, target) = (*op.author(), *op.target());
        let joined = |role, added_by| Member {
            role,
            joined: true,
            suggested_name: op.name().to_owned(),
            added_by,
            since: at,
            joined_at: Some(at),
            changed_by: author,
        };
        match op.action() {
            ActionV1::Create => {
                if !self.created && Some(author) == creator && self.members.is_empty() {
                    self.created = true;
                    self.admit(author, joined(Role::Owner, author));
                }
            }
            ActionV1::Add => {
                if self.members.contains_key(&author)
                    && !self.members.contains_key(&target)
                    && self.members.len() < MAX_MEMBERS
                {
                    self.admit(target, joined(Role::Member, author));
                }
            }
            ActionV1::Remove => {
                if self.members.contains_key(&author) && self.members.remove(&target).is_some() {
                    self.gone.insert(target, author);
                }
            }
        }
    }

    /// Applies a version-2 operation at position `at`; a counted removal or
    /// demotion is returned.
    fn apply(
        &mut self,
        op: &Op,
        at: usize,
        root: Option<OpHash>,
    ) -> Result<Option<Demotion>, Refusal> {
        let (author, target) = (*op.author(), *op.target());
        match op.action() {
            Action::Create => {
                if self.created || Some(op.hash()) != root || !self.members.is_empty() {
                    return Err(Refusal::NotTheCreate);
                }
                self.created = true;
                self.admit(
                    author,
                    Member {
                        role: Role::Owner,
                        joined: true,
                        suggested_name: op.name().to_owned(),
                        added_by: author,
                        since: at,
                        joined_at: Some(at),
                        changed_by: author,
                    },
                );
                Ok(None)
            }
            Action::Add => {
                if !self.joined(&author)?.role.manages() {
                    return Err(Refusal::NoRole);
                }
                if self.members.contains_key(&target) {
                    return Err(Refusal::Target);
                }
                if self.members.len() >= MAX_MEMBERS {
                    return Err(Refusal::Full);
                }
                self.admit(
                    target,
                    Member {
                        role: Role::Member,
                        joined: false,
                        suggested_name: op.name().to_owned(),
                        added_by: author,
                        since: at,
                        joined_at: None,
                        changed_by: author,
                    },
                );
                Ok(None)
            }
            Action::Remove => {
                let missing = if target == author {
                    Refusal::NotMember
                } else {
                    Refusal::Target
                };
                let role = self.members.get(&target).ok_or(missing)?.role;
                if target != author {
                    if !self.joined(&author)?.role.may_manage(role) {
                        return Err(Refusal::NoRole);
                    }
                    if role == Role::Owner && self.owners() == 1 {
                        return Err(Refusal::LastOwner);
                    }
                }
                self.members.remove(&target);
                self.gone.insert(target, author);
                Ok(Some((at, target, true)))
            }
            Action::SetRole(to) => {
                let by = self.joined(&author)?.role;
                let from = self.members.get(&target).ok_or(Refusal::Target)?.role;
                if !by.may_manage(from) || !by.may_grant(to) {
                    return Err(Refusal::NoRole);
                }
                if from == to {
                    return Err(Refusal::Target);
                }
                if from == Role::Owner && self.owners() == 1 {
                    return Err(Refusal::LastOwner);
                }
                let m = self.members.get_mut(&target).ok_or(Refusal::Target)?;
                m.role = to;
                m.changed_by = author;
                // Roles sort highest first: a larger one is a demotion.
                Ok((to > from).then_some((at, target, false)))
            }
            Action::Join => {
                let m = self.members.get_mut(&author).ok_or(Refusal::NotMember)?;
                if m.joined {
                    return Err(Refusal::Target);
                }
                m.joined = true;
                m.joined_at = Some(at);
                m.changed_by = author;
                Ok(None)
            }
        }
    }
}

/// Whether an operation needs more than the member role.
fn needs_role(op: &Op) -> bool {
    match op.action() {
        Action::Add | Action::SetRole(_) => true,
        Action::Remove => op.author() != op.target(),
        Action::Create | Action::Join => false,
    }
}

/// One pass over the graph with the operations at `excluded` left out:
/// the state, each position's refusal (`None`: it counts), and the
/// removals and demotions that counted.
fn pass(
    graph: &Graph<'_>,
    history: &History<'_>,
    excluded: &Bits,
) -> (State, Vec<Option<Refusal>>, Vec<Demotion>) {
    let mut state = State {
        members: BTreeMap::new(),
        gone: BTreeMap::new(),
        created: false,
    };
    let mut refused = Vec::with_capacity(graph.nodes.len());
    let mut demotions = Vec::new();
    for (at, node) in graph.nodes.iter().enumerate() {
        let result = match node {
            Node::V1(op) => {
                state.apply_v1(op, at, history.creator);
                None
            }
            Node::V2(_) if excluded.contains(at) => Some(Refusal::Superseded),
            Node::V2(op) => match state.apply(op, at, history.root) {
                Ok(demotion) => {
                    demotions.extend(demotion);
                    None
                }
                Err(why) => Some(why),
            },
        };
        refused.push(result);
    }
    (state, refused, demotions)
}

/// Operations by the target of a counted removal or demotion, concurrent
/// with it, that counted (and needed the role, for a demotion). `by_author`
/// lists each author's version-2 positions, so the work is bounded by one
/// author's share, not the whole history.
fn superseded(
    graph: &Graph<'_>,
    by_author: &BTreeMap<[u8; 32], Vec<usize>>,
    refused: &[Option<Refusal>],
    demotions: &[Demotion],
) -> Vec<usize> {
    let mut out = Vec::new();
    for (at, target, removal) in demotions {
        for &x in by_author.get(target).map(Vec::as_slice).unwrap_or_default() {
            let Some(Node::V2(op)) = graph.nodes.get(x) else {
                continue;
            };
            let counted = matches!(refused.get(x), Some(None));
            if counted && graph.concurrent(*at, x) && (*removal || needs_role(op)) {
                out.push(x);
            }
        }
    }
    out
}

impl History<'_> {
    /// Folds the operations (see the module's documentation).
    pub fn fold(&self) -> Fold {
        let graph = Graph::new(self.v1, self.ops);
        let mut by_author: BTreeMap<[u8; 32], Vec<usize>> = BTreeMap::new();
        for (x, node) in graph.nodes.iter().enumerate() {
            if let Node::V2(op) = node {
                by_author.entry(*op.author()).or_default().push(x);
            }
        }
        let mut excluded = Bits::with_len(graph.nodes.len());
        let (state, refused) = loop {
            let (state, refused, demotions) = pass(&graph, self, &excluded);
            let more: Vec<usize> = superseded(&graph, &by_author, &refused, &demotions)
                .into_iter()
                .filter(|&x| !excluded.contains(x))
                .collect();
            if more.is_empty() {
                break (state, refused);
            }
            // Each round excludes at least one more operation: at most one
            // round per operation.
            for x in more {
                excluded.insert(x);
            }
        };
        let mut verdicts: BTreeMap<OpHash, Verdict> = self
            .ops
            .iter()
            .map(|o| (o.hash(), Verdict::Waits))
            .collect();
        for ((node, hash), why) in graph.nodes.iter().zip(&graph.hashes).zip(&refused) {
            if let Node::V2(_) = node {
                let verdict = why.map_or(Verdict::Counts, Verdict::Refused);
                verdicts.insert(*hash, verdict);
            }
        }
        let heads = graph
            .heads()
            .into_iter()
            .filter_map(|i| graph.hashes.get(i).copied())
            .collect();
        Fold {
            members: state.members,
            gone: state.gone,
            verdicts,
            heads,
            order: graph.hashes.clone(),
        }
    }

    /// What a member makes of `op` when it arrives: [`Verdict::Waits`]
    /// while a parent is missing, else whether it counts in the fold of
    /// its own past (its author's view when signing). An operation refused
    /// here is refused by every member, whatever else they hold.
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
            .filter(|o| past.contains(&o.hash()))
            .cloned()
            .collect();
        ops.push(op.clone());
        let own = History {
            v1: &v1,
            ops: &ops,
            ..*self
        };
        own.fold()
            .verdicts
            .get(&op.hash())
            .copied()
            .unwrap_or(Verdict::Waits)
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
