//! Where we stand in a nucleus, and our own operations: their parents,
//! the check that they count, and what sends them.

use enlace_protocol::group::limits::{MAX_OPS, MAX_OPS_PER_AUTHOR, MAX_PARENTS, MAX_RESERVED_OPS};
use enlace_protocol::group::{Action, Fold, Op, OpHash, Refusal, Role, Verdict};
use rand_core::CryptoRng;

use super::names::contact_for;
use crate::domain::message::AppMessage;
use crate::domain::outbox::{Seal, queue_control};
use crate::error::Error;
use crate::profile::{ContactId, MessageId, Nucleus, Profile};

/// Where we stand in a nucleus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// We joined, with this role.
    Joined(Role),
    /// We are invited: `join` or `decline`.
    Invited,
    /// An invitation is arriving: its operations are not all here yet.
    Welcoming,
    /// We were removed, or left.
    Out,
}

/// Where `me` stands in `n`, whose fold is `fold`. An invitation is still
/// arriving while the `add` naming us waits for its parents (or, the first
/// time, while nothing removed us); one withdrawn is `Out`.
pub(crate) fn standing(n: &Nucleus, fold: &Fold, me: &[u8; 32]) -> Standing {
    match fold.members.get(me) {
        Some(m) if m.joined => Standing::Joined(m.role),
        Some(_) => Standing::Invited,
        None => {
            let Some(inviter) = n.invited_by else {
                return Standing::Out;
            };
            let arriving = !fold.gone.contains_key(me)
                || n.waiting_ops().iter().any(|o| {
                    o.action() == Action::Add && o.target() == me && o.author() == &inviter
                });
            if arriving {
                Standing::Welcoming
            } else {
                Standing::Out
            }
        }
    }
}

/// The parents of our next operation: the heads, latest first, at most
/// [`MAX_PARENTS`] (the rest stay heads for the next one), our own last
/// operation and removals and demotions first: what we sign must show
/// what we saw of them.
pub(crate) fn parents(fold: &Fold, me: &[u8; 32], held: &[Op]) -> Vec<OpHash> {
    let first = |h: &OpHash| {
        held.iter().any(|o| {
            o.hash() == *h
                && (o.author() == me || matches!(o.action(), Action::Remove | Action::SetRole(_)))
        })
    };
    let (mut out, rest): (Vec<OpHash>, Vec<OpHash>) = fold.heads.iter().copied().partition(first);
    out.extend(rest);
    out.truncate(MAX_PARENTS);
    out
}

/// How many placed operations leave room for one more `action` about
/// `target`: removals and demotions have room of their own, so filling
/// the nucleus never stops a member from being removed.
pub(crate) fn room(fold: &Fold, action: Action, target: &[u8; 32]) -> usize {
    let restrictive = match action {
        Action::Remove => true,
        Action::SetRole(to) => fold.members.get(target).is_some_and(|m| to > m.role),
        _ => false,
    };
    if restrictive {
        MAX_OPS + MAX_RESERVED_OPS
    } else {
        MAX_OPS
    }
}

/// What a refusal of our own change means to the person making it.
fn refused(n: &Nucleus, action: Action, why: Refusal) -> Error {
    let name = n.name.clone();
    match why {
        Refusal::NotJoined => Error::NotJoined(name),
        Refusal::NotMember => Error::NotMember(name),
        Refusal::LastOwner => Error::LastOwner(name),
        Refusal::Full => Error::NucleusLimit(format!(
            "at most {} members",
            enlace_protocol::group::limits::MAX_MEMBERS
        )),
        Refusal::NoRole => Error::NotAllowed(
            name,
            match action {
                Action::Add => "only owners and admins can add members",
                Action::Remove => "only owners can remove owners, and owners and admins others",
                _ => "only owners can make or unmake owners, and owners and admins admins",
            },
        ),
        Refusal::Target => Error::NotAllowed(name, "there is nothing to change"),
        Refusal::Quota => Error::NucleusLimit(format!(
            "at most {MAX_OPS_PER_AUTHOR} changes by one member, removals and demotions aside"
        )),
        Refusal::NotTheCreate | Refusal::Superseded => Error::BrokenState("nucleus"),
    }
}

/// Signs our operation in nucleus `index` with the heads as parents,
/// checks that it counts (the protocol's rules are the only rules), and
/// keeps it. Nothing is kept when it fails.
pub(crate) fn sign_own(
    p: &mut Profile,
    index: usize,
    action: Action,
    target: [u8; 32],
    name: &str,
) -> Result<Op, Error> {
    let identity = p.identity_key_pair();
    let me = p.own_key();
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let fold = n.fold();
    if n.ops.len() >= room(&fold, action, &target) {
        return Err(Error::NucleusLimit(format!(
            "at most {MAX_OPS} membership changes per nucleus, {MAX_RESERVED_OPS} more removals"
        )));
    }
    let op = Op::sign(
        &identity,
        n.id,
        action,
        target,
        &parents(&fold, &me, &n.v2_ops()),
        name,
    )
    .map_err(|_| Error::InvalidName("longer than 64 characters"))?;
    match n.with_history(|h| h.admit(&op)) {
        Verdict::Counts => {}
        Verdict::Refused(why) => return Err(refused(n, action, why)),
        Verdict::Waits => return Err(Error::BrokenState("nucleus")),
    }
    let n = p
        .nuclei
        .get_mut(index)
        .ok_or(Error::BrokenState("nucleus"))?;
    n.ops.push(op.as_bytes().to_vec());
    Ok(op)
}

/// Seals `op` for the contacts with these keys that we can write to.
pub(crate) fn send_op(
    p: &mut Profile,
    op: &Op,
    to: &[[u8; 32]],
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    let plain = AppMessage::NucleusOp(op.clone()).encode();
    for key in to {
        if let Some(contact) = contact_for(p, key) {
            queue_control(p, contact, &plain, MessageId::default(), rng, seal)?;
        }
    }
    Ok(())
}

/// Every operation of nucleus `index` a new member needs, as plaintexts:
/// `first` (the `add` naming it: only that makes its client keep the
/// nucleus), then the version-1 operations, then the version-2 ones in
/// the fold's order, leaving out those in `skip`.
pub(crate) fn history_for(
    n: &Nucleus,
    first: Option<&Op>,
    skip: &std::collections::BTreeSet<OpHash>,
) -> Vec<Vec<u8>> {
    let fold = n.fold();
    let mut out: Vec<Vec<u8>> = first
        .map(|o| AppMessage::NucleusOp(o.clone()).encode())
        .into_iter()
        .collect();
    for op in n.v1_ops() {
        if !skip.contains(&op.hash()) {
            out.push(AppMessage::NucleusOpV1(op).encode());
        }
    }
    let by_hash: std::collections::BTreeMap<OpHash, Op> =
        n.v2_ops().into_iter().map(|o| (o.hash(), o)).collect();
    for hash in &fold.order {
        if skip.contains(hash) || first.is_some_and(|f| f.hash() == *hash) {
            continue;
        }
        if let Some(op) = by_hash.get(hash) {
            out.push(AppMessage::NucleusOp(op.clone()).encode());
        }
    }
    out
}

/// Seals `plaintexts` for `contact`, in order.
pub(crate) fn send_all(
    p: &mut Profile,
    contact: ContactId,
    plaintexts: &[Vec<u8>],
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    for plain in plaintexts {
        queue_control(p, contact, plain, MessageId::default(), rng, seal)?;
    }
    Ok(())
}
