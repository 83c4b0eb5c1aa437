//! Our own membership changes: `nucleus create`, `add`, `remove`, `role`,
//! `leave`, `join` and `decline`, and the local `require-verified`
//! setting. Each change signs an operation (whose parents are our heads),
//! checks it counts by the protocol's rules, keeps it, and seals it for
//! the members who must hear of it.

use enlace_protocol::group::{Action, NucleusId, Op, Role};
use rand_core::CryptoRng;

use super::introductions::plan;
use super::limits::MAX_NUCLEI;
use super::names::{contact_for, find_index};
use super::state::{Standing, history_for, send_all, send_op, sign_own, standing};
use crate::domain::outbox::{Seal, check_can_send};
use crate::error::Error;
use crate::profile::{Nucleus, Profile};

/// Nuclei that are not invitations: the ones [`MAX_NUCLEI`] bounds.
fn kept(p: &Profile) -> usize {
    p.nuclei.iter().filter(|n| n.invited_by.is_none()).count()
}

/// `nucleus create`: a new nucleus with us as its only member and owner.
pub(crate) fn create(
    p: &mut Profile,
    name: &str,
    rng: &mut impl CryptoRng,
) -> Result<String, Error> {
    if p.nuclei
        .iter()
        .any(|n| n.name.to_lowercase() == name.to_lowercase())
    {
        return Err(Error::NucleusExists(name.to_owned()));
    }
    if kept(p) >= MAX_NUCLEI {
        return Err(Error::NucleusLimit(format!("at most {MAX_NUCLEI} nuclei")));
    }
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let id = NucleusId(id);
    let me = p.own_key();
    let op = Op::sign(&p.identity_key_pair(), id, Action::Create, me, &[], name)
        .map_err(|_| Error::InvalidName("longer than 64 characters"))?;
    let mut n = Nucleus::new(id, name.to_owned());
    n.root = Some(op.hash().0);
    n.ops.push(op.as_bytes().to_vec());
    p.nuclei.push(n);
    Ok(name.to_owned())
}

/// Nucleus `index`'s name and our role, if we joined it.
fn as_joined(p: &Profile, index: usize) -> Result<(String, Role), Error> {
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    match standing(n, &n.fold(), &p.own_key()) {
        Standing::Joined(role) => Ok((n.name.clone(), role)),
        Standing::Invited | Standing::Welcoming => Err(Error::NotJoined(n.name.clone())),
        Standing::Out => Err(Error::NotMember(n.name.clone())),
    }
}

/// The joined members of nucleus `index` other than us.
fn others(p: &Profile, index: usize) -> Vec<[u8; 32]> {
    let me = p.own_key();
    p.nuclei
        .get(index)
        .map(|n| {
            n.members()
                .into_iter()
                .filter(|(k, m)| m.joined && *k != me)
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default()
}

/// `nucleus add`: invites a contact (owners and admins only). It gets the
/// operations so far, never the messages; the members get the new
/// operation. Returns the nucleus's and the contact's names.
pub(crate) fn add(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let (nucleus_name, _) = as_joined(p, index)?;
    let c = p
        .contact(contact)
        .ok_or_else(|| Error::UnknownContact(contact.to_owned()))?;
    check_can_send(c)?;
    if c.send_to.is_none() {
        return Err(Error::NoRoute(c.name.clone()));
    }
    let (target, contact_name, contact_id) = (c.identity_key, c.name.clone(), c.id);
    let members = p
        .nuclei
        .get(index)
        .map(Nucleus::members)
        .unwrap_or_default();
    if members.contains_key(&target) {
        return Err(Error::AlreadyMember(contact_name, nucleus_name));
    }
    let op = sign_own(p, index, Action::Add, target, &contact_name)?;
    let to = others(p, index);
    send_op(p, &op, &to, rng, &mut seal)?;
    // The welcome: the add naming it first (only that makes its client keep
    // the nucleus), then the member list and how it came about.
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let welcome = history_for(n, Some(&op), &Default::default());
    send_all(p, contact_id, &welcome, rng, &mut seal)?;
    Ok((nucleus_name, contact_name))
}

/// The member `contact` names in nucleus `index`: a contact's name, and
/// its key.
fn member(p: &Profile, index: usize, contact: &str) -> Result<([u8; 32], String), Error> {
    let c = p
        .contact(contact)
        .ok_or_else(|| Error::UnknownContact(contact.to_owned()))?;
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    if !n.members().contains_key(&c.identity_key) {
        return Err(Error::NotAMember(c.name.clone(), n.name.clone()));
    }
    Ok((c.identity_key, c.name.clone()))
}

/// `nucleus remove`: removes a member (or withdraws an invitation); it is
/// told once, then nothing more. Returns the nucleus's and the contact's
/// names.
pub(crate) fn remove(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let (nucleus_name, _) = as_joined(p, index)?;
    let (target, contact_name) = member(p, index, contact)?;
    let mut to = others(p, index);
    to.retain(|k| *k != target);
    let op = sign_own(p, index, Action::Remove, target, "")?;
    send_op(p, &op, &to, rng, &mut seal)?;
    // The removed member gets what it lacks for the removal to be placed
    // (everything after the last operation by it or naming it that we
    // hold), the removal last; an invited one would otherwise never see
    // its invitation withdrawn.
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let fold = n.fold();
    let known = n
        .v2_ops()
        .into_iter()
        .filter(|o| o.author() == &target || (o.action() == Action::Add && o.target() == &target))
        .filter(|o| o.hash() != op.hash())
        .max_by_key(|o| fold.order.iter().position(|h| *h == o.hash()));
    let seen = known
        .and_then(|o| n.with_history(|h| h.past_of(&o)))
        .unwrap_or_default();
    let missing = history_for(n, None, &seen);
    if let Some(contact) = contact_for(p, &target) {
        send_all(p, contact, &missing, rng, &mut seal)?;
    }
    Ok((nucleus_name, contact_name))
}

/// `nucleus role`: gives a member a role. Returns the nucleus's and the
/// contact's names.
pub(crate) fn set_role(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    role: Role,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let (nucleus_name, _) = as_joined(p, index)?;
    let (target, contact_name) = member(p, index, contact)?;
    let op = sign_own(p, index, Action::SetRole(role), target, "")?;
    let to = others(p, index);
    send_op(p, &op, &to, rng, &mut seal)?;
    Ok((nucleus_name, contact_name))
}

/// Forgets nucleus `index` and its queued work.
fn forget(p: &mut Profile, index: usize) -> String {
    let gone = p.nuclei.remove(index);
    p.nucleus_tasks.retain(|t| t.nucleus() != gone.id);
    gone.name.clone()
}

/// `nucleus leave`: removes ourselves, tells the others, and forgets the
/// nucleus. The last owner of a nucleus with other members must make
/// someone else owner first. Returns its name.
pub(crate) fn leave(
    p: &mut Profile,
    nucleus: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<String, Error> {
    let index = find_index(p, nucleus)?;
    let me = p.own_key();
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let fold = n.fold();
    match standing(n, &fold, &me) {
        Standing::Joined(role) => {
            let owners = fold
                .members
                .values()
                .filter(|m| m.role == Role::Owner)
                .count();
            if role == Role::Owner && owners == 1 && fold.members.len() > 1 {
                return Err(Error::LastOwner(n.name.clone()));
            }
            let to = others(p, index);
            let op = sign_own(p, index, Action::Remove, me, "")?;
            send_op(p, &op, &to, rng, &mut seal)?;
        }
        Standing::Invited => return decline(p, nucleus, rng, seal),
        Standing::Welcoming | Standing::Out => {}
    }
    Ok(forget(p, index))
}

/// `nucleus join`: accepts the invitation. The members hear of it; we
/// introduce ourselves to those we have no session with. Returns the
/// nucleus's name.
pub(crate) fn join(
    p: &mut Profile,
    nucleus: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<String, Error> {
    let index = find_index(p, nucleus)?;
    let me = p.own_key();
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let name = n.name.clone();
    match standing(n, &n.fold(), &me) {
        Standing::Invited => {}
        Standing::Joined(_) => return Err(Error::AlreadyMember("you".into(), name)),
        Standing::Welcoming | Standing::Out => return Err(Error::NotInvited(name)),
    }
    if kept(p) >= MAX_NUCLEI {
        return Err(Error::NucleusLimit(format!("at most {MAX_NUCLEI} nuclei")));
    }
    let op = sign_own(p, index, Action::Join, me, "")?;
    if let Some(n) = p.nuclei.get_mut(index) {
        n.invited_by = None;
    }
    let to = others(p, index);
    send_op(p, &op, &to, rng, &mut seal)?;
    plan(p, index);
    Ok(name)
}

/// `nucleus decline`: refuses the invitation, tells the inviter only, and
/// forgets the nucleus. Returns its name.
pub(crate) fn decline(
    p: &mut Profile,
    nucleus: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<String, Error> {
    let index = find_index(p, nucleus)?;
    let me = p.own_key();
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let inviter = n.invited_by;
    match standing(n, &n.fold(), &me) {
        Standing::Invited => {
            let op = sign_own(p, index, Action::Remove, me, "")?;
            if let Some(inviter) = inviter
                && contact_for(p, &inviter).is_some()
            {
                send_op(p, &op, &[inviter], rng, &mut seal)?;
            }
        }
        Standing::Welcoming => {}
        Standing::Joined(_) | Standing::Out => return Err(Error::NotInvited(n.name.clone())),
    }
    Ok(forget(p, index))
}

/// `nucleus require-verified`: whether sending to the nucleus needs every
/// other member verified in person. Returns its name.
pub(crate) fn require_verified(p: &mut Profile, nucleus: &str, on: bool) -> Result<String, Error> {
    let index = find_index(p, nucleus)?;
    let n = p
        .nuclei
        .get_mut(index)
        .ok_or(Error::BrokenState("nucleus"))?;
    n.require_verified = on;
    Ok(n.name.clone())
}
