//! The member list a set of placed operations yields, each operation's
//! validity having been checked in its own past (`docs/protocol.md`,
//! section 13.4).
//!
//! No rule here depends on where concurrent operations fall in the
//! order, which their authors choose through their parents and could
//! grind through their hashes: concurrent changes are resolved by kind.
//!
//! - A removal or demotion that counted in its own past takes effect
//!   (its author's own removal does not undo it), unless its author was
//!   an admin and a concurrent `role` made its target an owner.
//! - A change that needed its author's role (`add`, a promotion) or its
//!   membership (`join`) is void when a removal or demotion of its author
//!   that took what it needed is concurrent with it, or when its author's
//!   standing in its past rested on a change that is void.
//! - Among an admission and a concurrent removal of the same member, the
//!   removal wins; among concurrent roles, the lowest. Except: a removal
//!   or demotion made by someone whose own removal or demotion is in the
//!   other change's past loses (its author was out when the other was
//!   made).

use std::collections::{BTreeMap, BTreeSet};

use super::graph::{Bits, Graph, Node};
use super::limits::MAX_MEMBERS;
use super::op::{Action, Op};
use super::op_v1::ActionV1;
use super::role::Role;
use super::verdict::Refusal;

/// What the check in its own past found for one placed operation.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Checked {
    /// Why it does not count in its own past (`None`: it does).
    pub(crate) refusal: Option<Refusal>,
    /// Its author's role there.
    pub(crate) author_role: Option<Role>,
    /// Its target's role there.
    pub(crate) target_role: Option<Role>,
}

/// A member in a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) role: Role,
    pub(crate) joined: bool,
    /// Position of the admission it stands on.
    pub(crate) since: usize,
    pub(crate) joined_at: Option<usize>,
    /// Position of the last change that set its role or state.
    pub(crate) changed: usize,
}

/// The members a set of placed operations yields.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// Positions of the operations that take effect.
    pub(crate) effective: Bits,
    pub(crate) members: BTreeMap<[u8; 32], Status>,
    /// Removed keys, with the position of the removal that took them out.
    pub(crate) gone: BTreeMap<[u8; 32], usize>,
}

impl View {
    pub(crate) fn owners(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.role == Role::Owner)
            .count()
    }

    /// The view after `op` at `at`, which counts in this view's set and
    /// descends from all of it (so nothing in the set is concurrent with
    /// it): the sequential case.
    pub(crate) fn then(mut self, op: &Op, at: usize) -> Self {
        self.effective.insert(at);
        let (author, target) = (*op.author(), *op.target());
        match op.action() {
            Action::Create => {
                self.gone.remove(&author);
                self.members
                    .insert(author, status(Role::Owner, true, at, Some(at)));
            }
            Action::Add => {
                self.gone.remove(&target);
                self.members
                    .insert(target, status(Role::Member, false, at, None));
            }
            Action::Remove => {
                self.members.remove(&target);
                self.gone.insert(target, at);
            }
            Action::SetRole(to) => {
                if let Some(m) = self.members.get_mut(&target) {
                    m.role = to;
                    m.changed = at;
                }
            }
            Action::Join => {
                if let Some(m) = self.members.get_mut(&author) {
                    m.joined = true;
                    m.joined_at = Some(at);
                    m.changed = at;
                }
            }
        }
        self
    }
}

fn status(role: Role, joined: bool, at: usize, joined_at: Option<usize>) -> Status {
    Status {
        role,
        joined,
        since: at,
        joined_at,
        changed: at,
    }
}

/// What a version-1 operation did in the version-1 fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V1Effect {
    Admit(Role),
    Remove,
    None,
}

/// How a counted version-2 operation is resolved against concurrent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    /// Removal or demotion: takes effect on its own past's authority.
    Restrictive,
    /// Needs its author's standing, which a concurrent removal or
    /// demotion takes away.
    Grant,
}

/// Whether a joined member with `role` may make `op`, whose target had
/// `target` role.
pub(crate) fn allowed(role: Role, op: &Op, target: Option<Role>) -> bool {
    let manage = |t: Option<Role>| t.is_some_and(|t| role.may_manage(t));
    match op.action() {
        Action::Create | Action::Join => true,
        Action::Add => role.manages(),
        Action::Remove => op.author() == op.target() || manage(target),
        Action::SetRole(to) => manage(target) && role.may_grant(to),
    }
}

/// The fold's working set: the graph, the checks made so far, and the
/// operations about each key.
pub(crate) struct Resolver<'g, 'a> {
    pub(crate) graph: &'g Graph<'a>,
    pub(crate) checked: Vec<Checked>,
    v1: Vec<V1Effect>,
    /// Positions of operations about each key (its target), in order.
    about: BTreeMap<[u8; 32], Vec<usize>>,
    /// Positions of counted removals and demotions of each key.
    restrictive: BTreeMap<[u8; 32], Vec<usize>>,
    /// Positions of counted `role owner` operations of each key.
    crowned: BTreeMap<[u8; 32], Vec<usize>>,
}

impl<'g, 'a> Resolver<'g, 'a> {
    /// Prepares the graph: the version-1 fold (sequential, as version 1
    /// defined it) and the index of operations by target.
    pub(crate) fn new(graph: &'g Graph<'a>, creator: Option<[u8; 32]>) -> Self {
        let n = graph.nodes.len();
        let mut v1 = vec![V1Effect::None; n];
        let mut members: BTreeSet<[u8; 32]> = BTreeSet::new();
        let mut created = false;
        let mut about: BTreeMap<[u8; 32], Vec<usize>> = BTreeMap::new();
        for (at, node) in graph.nodes.iter().enumerate() {
            match node {
                Node::V1(op) => {
                    let (author, target) = (*op.author(), *op.target());
                    let effect = match op.action() {
                        ActionV1::Create
                            if !created && Some(author) == creator && members.is_empty() =>
                        {
                            created = true;
                            V1Effect::Admit(Role::Owner)
                        }
                        ActionV1::Add
                            if members.contains(&author)
                                && !members.contains(&target)
                                && members.len() < MAX_MEMBERS =>
                        {
                            V1Effect::Admit(Role::Member)
                        }
                        ActionV1::Remove
                            if members.contains(&author) && members.contains(&target) =>
                        {
                            V1Effect::Remove
                        }
                        _ => V1Effect::None,
                    };
                    match effect {
                        V1Effect::Admit(_) => {
                            members.insert(target);
                        }
                        V1Effect::Remove => {
                            members.remove(&target);
                        }
                        V1Effect::None => {}
                    }
                    if let Some(e) = v1.get_mut(at) {
                        *e = effect;
                    }
                    if effect != V1Effect::None {
                        about.entry(target).or_default().push(at);
                    }
                }
                Node::V2(op) => about.entry(*op.target()).or_default().push(at),
            }
        }
        Self {
            graph,
            checked: Vec::with_capacity(n),
            v1,
            about,
            restrictive: BTreeMap::new(),
            crowned: BTreeMap::new(),
        }
    }

    fn op(&self, at: usize) -> Option<&'a Op> {
        match self.graph.nodes.get(at) {
            Some(Node::V2(op)) => Some(op),
            _ => None,
        }
    }

    fn kind(&self, at: usize) -> Option<Kind> {
        let op = self.op(at)?;
        let c = self.checked.get(at)?;
        Some(match op.action() {
            Action::Create => Kind::Create,
            Action::Remove => Kind::Restrictive,
            // Roles sort highest first: a larger one is a demotion.
            Action::SetRole(to) if c.target_role.is_some_and(|from| to > from) => Kind::Restrictive,
            Action::Add | Action::Join | Action::SetRole(_) => Kind::Grant,
        })
    }

    /// Records the check of the operation at `at` (positions are checked
    /// in order).
    pub(crate) fn record(&mut self, at: usize, c: Checked) {
        self.checked.push(c);
        let Some(op) = self.op(at) else {
            return;
        };
        if c.refusal.is_some() {
            return;
        }
        if self.kind(at) == Some(Kind::Restrictive) {
            self.restrictive.entry(*op.target()).or_default().push(at);
        }
        if op.action() == Action::SetRole(Role::Owner) {
            self.crowned.entry(*op.target()).or_default().push(at);
        }
    }

    /// Whether `d`, a removal or demotion of `r`'s author, takes what `r`
    /// needed.
    fn takes(&self, d: usize, r: usize) -> bool {
        let (Some(dop), Some(rop)) = (self.op(d), self.op(r)) else {
            return false;
        };
        match dop.action() {
            Action::SetRole(to) => {
                let target = self.checked.get(r).and_then(|c| c.target_role);
                !allowed(to, rop, target)
            }
            _ => true,
        }
    }

    /// Whether the counted removal or demotion at `r` is defeated in `w`:
    /// its author was an admin and a concurrent `role owner` raised its
    /// target out of its reach.
    fn defeated(&self, r: usize, w: &dyn Fn(usize) -> bool) -> bool {
        let (Some(op), Some(c)) = (self.op(r), self.checked.get(r)) else {
            return false;
        };
        if c.author_role == Some(Role::Owner) || op.author() == op.target() {
            return false;
        }
        self.crowned
            .get(op.target())
            .is_some_and(|ps| ps.iter().any(|&p| w(p) && self.graph.concurrent(p, r)))
    }

    /// Whether the removal or demotion at `r` is stale against `x`: a
    /// removal or demotion of its author that took what it needed is in
    /// `x`'s past and not in its own.
    fn stale(&self, r: usize, x: usize, effective: &Bits) -> bool {
        let Some(op) = self.op(r) else {
            return false;
        };
        self.restrictive.get(op.author()).is_some_and(|ds| {
            ds.iter().any(|&d| {
                effective.contains(d)
                    && (d == x || self.graph.precedes(d, x))
                    && !self.graph.precedes(d, r)
                    && self.takes(d, r)
            })
        })
    }

    /// Where `key` stands among the effective operations that `w` keeps.
    fn status(
        &self,
        key: &[u8; 32],
        w: &dyn Fn(usize) -> bool,
        effective: &Bits,
    ) -> Option<Status> {
        let ops: Vec<usize> = self
            .about
            .get(key)
            .map(|v| {
                v.iter()
                    .copied()
                    .filter(|&i| w(i) && effective.contains(i))
                    .collect()
            })
            .unwrap_or_default();
        let g = self.graph;
        let mut admissions = Vec::new();
        let mut removals = Vec::new();
        let mut joins = Vec::new();
        let mut roles = Vec::new();
        for &i in &ops {
            match g.nodes.get(i) {
                Some(Node::V1(_)) => match self.v1.get(i) {
                    Some(V1Effect::Admit(_)) => admissions.push(i),
                    Some(V1Effect::Remove) => removals.push(i),
                    _ => {}
                },
                Some(Node::V2(op)) => match op.action() {
                    Action::Create | Action::Add => admissions.push(i),
                    Action::Remove => removals.push(i),
                    Action::Join => joins.push(i),
                    Action::SetRole(_) => roles.push(i),
                },
                None => {}
            }
        }
        let qualifies = |a: usize| {
            removals
                .iter()
                .all(|&r| g.precedes(r, a) || (g.concurrent(r, a) && self.stale(r, a, effective)))
        };
        let qualifying: Vec<usize> = admissions.into_iter().filter(|&a| qualifies(a)).collect();
        let first = *qualifying.first()?;
        let joined_from = |a: usize| joins.iter().copied().find(|&j| g.precedes(a, j));
        let since = qualifying
            .iter()
            .copied()
            .find(|&a| joined_from(a).is_some())
            .unwrap_or(first);
        let base = match g.nodes.get(since) {
            Some(Node::V1(_)) => match self.v1.get(since) {
                Some(V1Effect::Admit(role)) => Some((*role, Some(since))),
                _ => None,
            },
            Some(Node::V2(op)) if op.action() == Action::Create => Some((Role::Owner, Some(since))),
            Some(Node::V2(_)) => Some((Role::Member, joined_from(since))),
            None => None,
        };
        let (mut role, joined_at) = base?;
        let after: Vec<usize> = roles
            .into_iter()
            .filter(|&r| g.precedes(since, r))
            .collect();
        let beaten = |r: usize, by: usize| {
            g.precedes(r, by)
                || (g.concurrent(r, by)
                    && self.kind(r) == Some(Kind::Restrictive)
                    && self.stale(r, by, effective))
        };
        let last: Vec<usize> = after
            .iter()
            .copied()
            .filter(|&r| !after.iter().any(|&o| o != r && beaten(r, o)))
            .collect();
        let mut changed = joined_at.unwrap_or(since);
        let chosen = last
            .iter()
            .filter_map(|&r| match self.op(r).map(Op::action) {
                Some(Action::SetRole(to)) => Some((to, r)),
                _ => None,
            })
            .max();
        if let Some((to, at)) = chosen {
            role = to;
            changed = changed.max(at);
        }
        Some(Status {
            role,
            joined: joined_at.is_some(),
            since,
            joined_at,
            changed,
        })
    }

    /// Resolves the operations `w` keeps (a set closed under ancestors;
    /// every position in it checked), leaving out `excluded`: each one's
    /// refusal (`None`: it takes effect) and the view.
    pub(crate) fn resolve(
        &self,
        w: &dyn Fn(usize) -> bool,
        excluded: &Bits,
    ) -> (View, Vec<Option<Refusal>>) {
        let g = self.graph;
        let n = g.nodes.len();
        let mut effective = Bits::with_len(n);
        let mut why: Vec<Option<Refusal>> = vec![None; n];
        let mut present: BTreeSet<[u8; 32]> = BTreeSet::new();
        // Counted removals and demotions take effect unless defeated.
        let restrictive_effective = |d: usize| {
            w(d) && !excluded.contains(d)
                && self.checked.get(d).is_some_and(|c| c.refusal.is_none())
                && !self.defeated(d, w)
        };
        for at in (0..n).filter(|&i| w(i)) {
            let refusal = match g.nodes.get(at) {
                Some(Node::V1(op)) => {
                    match self.v1.get(at) {
                        Some(V1Effect::Admit(_)) => {
                            present.insert(*op.target());
                            effective.insert(at);
                        }
                        Some(V1Effect::Remove) => {
                            present.remove(op.target());
                            effective.insert(at);
                        }
                        _ => {}
                    }
                    continue;
                }
                Some(Node::V2(op)) => self.refusal(
                    at,
                    op,
                    w,
                    excluded,
                    &effective,
                    &present,
                    &restrictive_effective,
                ),
                None => continue,
            };
            match refusal {
                Some(r) => {
                    if let Some(slot) = why.get_mut(at) {
                        *slot = Some(r);
                    }
                }
                None => {
                    effective.insert(at);
                    if let Some(op) = self.op(at) {
                        match op.action() {
                            Action::Create | Action::Add => {
                                present.insert(*op.target());
                            }
                            Action::Remove => {
                                present.remove(op.target());
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        let mut view = View {
            effective,
            ..View::default()
        };
        for key in self.about.keys() {
            match self.status(key, w, &view.effective) {
                Some(s) => {
                    view.members.insert(*key, s);
                }
                None => {
                    let removed = self.about.get(key).and_then(|v| {
                        v.iter().rev().copied().find(|&i| {
                            view.effective.contains(i)
                                && match g.nodes.get(i) {
                                    Some(Node::V1(_)) => self.v1.get(i) == Some(&V1Effect::Remove),
                                    Some(Node::V2(op)) => op.action() == Action::Remove,
                                    None => false,
                                }
                        })
                    });
                    if let Some(r) = removed {
                        view.gone.insert(*key, r);
                    }
                }
            }
        }
        (view, why)
    }

    #[allow(clippy::too_many_arguments)]
    fn refusal(
        &self,
        at: usize,
        op: &Op,
        w: &dyn Fn(usize) -> bool,
        excluded: &Bits,
        effective: &Bits,
        present: &BTreeSet<[u8; 32]>,
        restrictive_effective: &dyn Fn(usize) -> bool,
    ) -> Option<Refusal> {
        let c = self.checked.get(at).copied().unwrap_or_default();
        if let Some(r) = c.refusal {
            return Some(r);
        }
        if excluded.contains(at) {
            return Some(Refusal::LastOwner);
        }
        match self.kind(at)? {
            Kind::Create => None,
            Kind::Restrictive => self.defeated(at, w).then_some(Refusal::NoRole),
            Kind::Grant => {
                let author = op.author();
                let voided = self.restrictive.get(author).is_some_and(|ds| {
                    ds.iter().any(|&d| {
                        restrictive_effective(d)
                            && g_concurrent(self.graph, d, at)
                            && self.takes(d, at)
                    })
                });
                if voided {
                    return Some(Refusal::Superseded);
                }
                // Its author's standing in its past, with what is void here.
                let past = |i: usize| w(i) && self.graph.precedes(i, at);
                let standing = self.status(author, &past, effective);
                let stands = match (op.action(), standing) {
                    (Action::Join, Some(s)) => !s.joined,
                    (_, Some(s)) => s.joined && allowed(s.role, op, c.target_role),
                    (_, None) => false,
                };
                if !stands {
                    return Some(Refusal::Superseded);
                }
                let new = op.action() == Action::Add && !present.contains(op.target());
                (new && present.len() >= MAX_MEMBERS).then_some(Refusal::Full)
            }
        }
    }

    /// Resolves `w` and, while it leaves members but no owner, voids the
    /// last (in order) owner's stepping down that counted, and again.
    pub(crate) fn settle(&self, w: &dyn Fn(usize) -> bool) -> (View, Vec<Option<Refusal>>) {
        let mut excluded = Bits::with_len(self.graph.nodes.len());
        loop {
            let (view, why) = self.resolve(w, &excluded);
            if view.members.is_empty() || view.owners() > 0 {
                return (view, why);
            }
            let step_down = (0..self.graph.nodes.len()).rev().find(|&i| {
                view.effective.contains(i)
                    && self.op(i).is_some_and(|op| {
                        op.author() == op.target()
                            && matches!(op.action(), Action::Remove | Action::SetRole(_))
                    })
                    && self
                        .checked
                        .get(i)
                        .is_some_and(|c| c.target_role == Some(Role::Owner))
            });
            match step_down {
                // Each round leaves out one more: at most one per owner's
                // stepping down.
                Some(i) => excluded.insert(i),
                None => return (view, why),
            }
        }
    }
}

fn g_concurrent(g: &Graph<'_>, a: usize, b: usize) -> bool {
    g.concurrent(a, b)
}
