//! Membership operations from contacts: invitations, placing operations
//! in the causal order once their parents are here, refusing those that
//! do not count in their author's own view, showing what changed, and
//! passing new ones on.
//!
//! Who may hand us operations: for a nucleus we joined, its members; for
//! one we are invited to, the contact whose `add` invited us (its welcome;
//! version-1 operations only then) and, once that arrived, its joined
//! members (who may withdraw the invitation); for an unknown one (or one
//! we were removed from), only an `add` naming us, signed by the contact
//! it came from, within the bounds on invitations.

use std::collections::{BTreeMap, BTreeSet};

use enlace_protocol::group::limits::{MAX_OPS, MAX_WAITING_OPS};
use enlace_protocol::group::{Action, ActionV1, Fold, History, Op, OpHash, OpV1, Refusal, Verdict};

use super::introductions::plan;
use super::limits::{MAX_INVITATIONS, MAX_INVITATIONS_PER_CONTACT};
use super::names::{contact_for, unique_nucleus_name};
use super::notices::{changes, keep, refusal};
use super::state::{Standing, history_for, room, standing};
use crate::domain::message::AppMessage;
use crate::profile::{ContactId, Notice, NoticeKind, Nucleus, Profile};

/// A membership operation as it arrived.
pub(crate) enum Incoming {
    /// Version 1 (kind 3): taken only in a welcome.
    V1(OpV1),
    /// Version 2 (kind 16).
    V2(Op),
}

impl Incoming {
    fn nucleus(&self) -> enlace_protocol::group::NucleusId {
        match self {
            Self::V1(op) => op.nucleus(),
            Self::V2(op) => op.nucleus(),
        }
    }
}

/// Whether `op` is an invitation of `me` by `peer`: an `add` naming us,
/// signed by the contact it came from.
fn invites(op: &Incoming, me: &[u8; 32], peer: &[u8; 32]) -> bool {
    matches!(op, Incoming::V2(op)
        if op.action() == Action::Add && op.target() == me && op.author() == peer)
}

/// Whether one more invitation from `peer` may wait.
fn invitation_room(p: &Profile, peer: &[u8; 32]) -> bool {
    // `join` clears `invited_by`: an invitation still waiting is one that
    // has it (no fold of every invitation for every arriving operation).
    let waiting: Vec<&Nucleus> = p.nuclei.iter().filter(|n| n.invited_by.is_some()).collect();
    waiting.len() < MAX_INVITATIONS
        && waiting
            .iter()
            .filter(|n| n.invited_by.as_ref() == Some(peer))
            .count()
            < MAX_INVITATIONS_PER_CONTACT
}

/// A verified operation from `peer`: keep it if acceptable, place what can
/// be placed, note what changed, and return what to pass on (contact,
/// plaintext).
pub(crate) fn handle_op(
    p: &mut Profile,
    peer: ContactId,
    incoming: Incoming,
) -> Vec<(ContactId, Vec<u8>)> {
    let me = p.own_key();
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Vec::new();
    };
    // Only a contact we can write to can invite us (we may have to answer).
    let can_answer = contact_for(p, &peer_key) == Some(peer);
    let index = match p.nuclei.iter().position(|n| n.id == incoming.nucleus()) {
        Some(i) => i,
        None => {
            if !invites(&incoming, &me, &peer_key) || !can_answer || !invitation_room(p, &peer_key)
            {
                return Vec::new();
            }
            let name = unique_nucleus_name(p, "invitation");
            let mut n = Nucleus::new(incoming.nucleus(), name);
            n.invited_by = Some(peer_key);
            p.nuclei.push(n);
            p.nuclei.len() - 1
        }
    };
    let reinvited = invites(&incoming, &me, &peer_key) && can_answer;
    let room = invitation_room(p, &peer_key);
    let Some(n) = p.nuclei.get_mut(index) else {
        return Vec::new();
    };
    let before = n.fold();
    let was = standing(n, &before, &me);
    let from_ok = match was {
        Standing::Joined(_) => before.members.contains_key(&peer_key),
        // A joined member may withdraw the invitation (its removal of us).
        Standing::Invited => {
            n.invited_by == Some(peer_key)
                || before.members.get(&peer_key).is_some_and(|m| m.joined)
        }
        Standing::Welcoming => n.invited_by == Some(peer_key),
        Standing::Out => reinvited && room,
    };
    if !from_ok {
        return Vec::new();
    }
    if was == Standing::Out {
        n.invited_by = Some(peer_key);
    }
    let arrived = match incoming {
        Incoming::V1(op)
            if matches!(was, Standing::Invited | Standing::Welcoming)
                && n.invited_by == Some(peer_key)
                && n.root.is_none() =>
        {
            keep_v1(n, op);
            None
        }
        Incoming::V2(op)
            if keep_v2(
                n,
                &op,
                matches!(was, Standing::Welcoming | Standing::Invited),
                &me,
            ) =>
        {
            Some(op.hash())
        }
        _ => return Vec::new(),
    };
    pin(n, &me);
    let (placed, refused) = place(n);
    let after = n.fold();
    let now = standing(n, &after, &me);
    let involved = |s: Standing| matches!(s, Standing::Joined(_) | Standing::Invited);
    if involved(was) || involved(now) {
        let mut notices: Vec<Notice> = refused.iter().map(|(op, why)| refusal(op, *why)).collect();
        let mut changed = changes(&before, &after, &me);
        if now == Standing::Invited && was != Standing::Invited {
            // The invitation names the members: its history is not news.
            changed.retain(|c| c.what == NoticeKind::Invited);
            notices.clear();
        }
        notices.extend(changed);
        for op in &placed {
            if let Some(Verdict::Refused(why)) = after.verdicts.get(&op.hash()) {
                notices.push(refusal(op, *why));
            }
        }
        keep(n, notices);
    }
    let id = n.id;
    name_pinned(p, index);
    if matches!(was, Standing::Joined(_)) && !matches!(now, Standing::Joined(_)) {
        p.nucleus_tasks.retain(|t| t.nucleus() != id);
    }
    if !matches!(now, Standing::Joined(_)) {
        return Vec::new();
    }
    let out = pass_on(p, index, &placed, &after, arrived, peer_key);
    plan(p, index);
    out
}

/// Keeps a version-1 operation from our inviter's welcome; the first
/// `create` received pins the creator (the inviter vouches for it).
fn keep_v1(n: &mut Nucleus, op: OpV1) {
    if n.ops_v1.len() >= MAX_OPS || n.ops_v1.iter().any(|b| b == op.as_bytes()) {
        return;
    }
    if op.action() == ActionV1::Create && n.creator.is_none() && n.root.is_none() {
        n.creator = Some(*op.author());
        // Named after the creator's name for it, once placed.
        n.name = String::new();
    }
    n.ops_v1.push(op.as_bytes().to_vec());
}

/// Keeps a version-2 operation among those waiting, unless it is held
/// already. Placed operations are bounded by [`MAX_OPS`], except removals
/// and demotions, which may use
/// [`enlace_protocol::group::limits::MAX_RESERVED_OPS`] more (so that a
/// member who fills the nucleus can still be removed). While we are
/// invited (a welcome, or the history before a withdrawal), up to
/// [`MAX_OPS`] wait; otherwise at most [`MAX_WAITING_OPS`] per author, and
/// as many by authors the nucleus does not know (neither members nor
/// invited by an operation held): a new one drops the oldest of its own
/// author (or of the unknown ones), never another author's. Returns
/// whether it was kept.
fn keep_v2(n: &mut Nucleus, op: &Op, welcoming: bool, me: &[u8; 32]) -> bool {
    let placed = n.v2_ops();
    let waiting = n.waiting_ops();
    if placed.iter().chain(&waiting).any(|o| o.hash() == op.hash()) {
        return false;
    }
    let fold = n.fold();
    if n.ops.len() >= room(&fold, op.action(), op.target()) {
        return false;
    }
    if welcoming {
        if n.waiting.len() >= MAX_OPS {
            return false;
        }
        n.waiting.push(op.as_bytes().to_vec());
        return true;
    }
    let known = |key: &[u8; 32]| {
        key == me
            || fold.members.contains_key(key)
            || fold.gone.contains_key(key)
            || placed
                .iter()
                .chain(&waiting)
                .any(|o| o.action() == Action::Add && o.target() == key)
    };
    let bucket = |o: &Op| known(o.author()).then_some(*o.author());
    let mine = bucket(op);
    let same: Vec<usize> = waiting
        .iter()
        .enumerate()
        .filter(|(_, o)| bucket(o) == mine)
        .map(|(i, _)| i)
        .collect();
    if same.len() >= MAX_WAITING_OPS
        && let Some(&oldest) = same.first()
        && oldest < n.waiting.len()
    {
        n.waiting.remove(oldest);
    }
    n.waiting.push(op.as_bytes().to_vec());
    true
}

/// While nothing is pinned, pins the `create` in the past of the `add`
/// that invites us, once that past has arrived whole and holds exactly
/// one, and names the nucleus after it.
fn pin(n: &mut Nucleus, me: &[u8; 32]) {
    if n.root.is_some() || n.creator.is_some() {
        return;
    }
    let Some(inviter) = n.invited_by else {
        return;
    };
    let held: Vec<Op> = n.v2_ops().into_iter().chain(n.waiting_ops()).collect();
    let v1 = n.v1_ops();
    let history = History {
        creator: None,
        root: None,
        v1: &v1,
        ops: &held,
    };
    for add in held
        .iter()
        .filter(|o| o.action() == Action::Add && o.target() == me && o.author() == &inviter)
    {
        let Some(past) = history.past_of(add) else {
            continue;
        };
        let creates: Vec<&Op> = held
            .iter()
            .filter(|o| o.action() == Action::Create && past.contains(&o.hash()))
            .collect();
        if let [create] = creates[..] {
            n.root = Some(create.hash().0);
            n.name = String::new();
            // A nucleus founded with version 2 has no version-1 past: any
            // version-1 operation slipped into its welcome would only make
            // our own operations name what nobody else holds.
            n.ops_v1.clear();
            return;
        }
    }
}

/// Places waiting operations whose parents are all placed, in the causal
/// order: each must count in the fold of its own past, or it is dropped.
/// Returns those placed and those refused.
fn place(n: &mut Nucleus) -> (Vec<Op>, Vec<(Op, Refusal)>) {
    let (mut placed, mut refused) = (Vec::new(), Vec::new());
    if n.root.is_none() && n.creator.is_none() {
        return (placed, refused);
    }
    let v1 = n.v1_ops();
    let mut held = n.v2_ops();
    let waiting: BTreeMap<OpHash, Op> =
        n.waiting_ops().into_iter().map(|o| (o.hash(), o)).collect();
    let all: Vec<Op> = held.iter().chain(waiting.values()).cloned().collect();
    let (creator, root) = (n.creator, n.root.map(OpHash));
    let order = History {
        creator,
        root,
        v1: &v1,
        ops: &all,
    }
    .fold()
    .order;
    let mut gone = BTreeSet::new();
    for hash in order {
        let Some(op) = waiting.get(&hash) else {
            continue;
        };
        let verdict = History {
            creator,
            root,
            v1: &v1,
            ops: &held,
        }
        .admit(op);
        match verdict {
            Verdict::Counts => {
                held.push(op.clone());
                placed.push(op.clone());
                gone.insert(hash);
            }
            Verdict::Refused(why) => {
                refused.push((op.clone(), why));
                gone.insert(hash);
            }
            Verdict::Waits => {}
        }
    }
    n.waiting.retain(|b| !gone.contains(&OpHash::of(b)));
    for op in &placed {
        n.ops.push(op.as_bytes().to_vec());
    }
    (placed, refused)
}

/// What to pass on after `placed` were placed: each to every joined member
/// we can write to but its author, ourselves and (for the one that just
/// arrived) the member it came from; and to a member we invited who just
/// joined, every operation its `join` did not see.
fn pass_on(
    p: &mut Profile,
    index: usize,
    placed: &[Op],
    after: &Fold,
    arrived: Option<OpHash>,
    peer: [u8; 32],
) -> Vec<(ContactId, Vec<u8>)> {
    let me = p.own_key();
    let mut out = Vec::new();
    for op in placed {
        let plain = AppMessage::NucleusOp(op.clone()).encode();
        for (key, m) in &after.members {
            if !m.joined || *key == me || key == op.author() {
                continue;
            }
            if Some(op.hash()) == arrived && *key == peer {
                continue;
            }
            if let Some(c) = contact_for(p, key) {
                out.push((c, plain.clone()));
            }
        }
        let joiner = *op.author();
        let ours = after.members.get(&joiner).is_some_and(|m| m.added_by == me);
        if op.action() == Action::Join && ours {
            let Some(n) = p.nuclei.get(index) else {
                continue;
            };
            let seen = n.with_history(|h| h.past_of(op)).unwrap_or_default();
            if let Some(c) = contact_for(p, &joiner) {
                out.extend(history_for(n, None, &seen).into_iter().map(|b| (c, b)));
            }
        }
    }
    out
}

/// Names a nucleus whose name is still to be chosen (just pinned) after
/// its creator's name for it.
fn name_pinned(p: &mut Profile, index: usize) {
    let Some(n) = p.nuclei.get(index) else {
        return;
    };
    if !n.name.is_empty() {
        return;
    }
    let v2 = n
        .v2_ops()
        .into_iter()
        .chain(n.waiting_ops())
        .find(|o| n.root == Some(o.hash().0))
        .map(|o| o.name().to_owned());
    let v1 = || {
        n.v1_ops()
            .into_iter()
            .find(|o| o.action() == ActionV1::Create && n.creator.as_ref() == Some(o.author()))
            .map(|o| o.name().to_owned())
    };
    let wanted = v2.or_else(v1).unwrap_or_default();
    let name = unique_nucleus_name(p, &wanted);
    if let Some(n) = p.nuclei.get_mut(index) {
        n.name = name;
    }
}
