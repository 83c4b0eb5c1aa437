//! Our own membership changes: `nucleus create`, `add`, `remove` and
//! `leave`. Each signs an operation, keeps it, and seals it for the
//! members who must hear of it.

use enlace_protocol::group::limits::{MAX_MEMBERS, MAX_OPS, MAX_OPS_PER_AUTHOR};
use std::collections::BTreeMap;

use enlace_protocol::group::{Action, Member, NucleusId, Op};
use rand_core::CryptoRng;

use super::limits::MAX_NUCLEI;
use super::names::{contact_for, find_index};
use crate::domain::message::AppMessage;
use crate::domain::outbox::{Seal, check_can_send, queue_control};
use crate::error::Error;
use crate::profile::{Contact, ContactId, MessageId, Nucleus, Profile};

/// Signing an operation fails only for a name too long to carry.
fn name_too_long(_: enlace_protocol::Error) -> Error {
    Error::InvalidName("longer than 64 characters")
}

/// `nucleus create`: a new nucleus with us as its only member.
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
    if p.nuclei.len() >= MAX_NUCLEI {
        return Err(Error::NucleusLimit(format!("at most {MAX_NUCLEI} nuclei")));
    }
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let id = NucleusId(id);
    let identity = p.identity_key_pair();
    let me = *identity.public().as_bytes();
    let op = Op::sign(&identity, id, 1, Action::Create, me, name).map_err(name_too_long)?;
    p.nuclei.push(Nucleus {
        id,
        name: name.to_owned(),
        creator: Some(me),
        ops: vec![op.as_bytes().to_vec()],
        lamport: 1,
        seen: Vec::new(),
        received: Vec::new(),
    });
    Ok(name.to_owned())
}

/// Makes, records and sends a new operation in nucleus `index`: every
/// member after it (and `extra_recipients`) gets it; the `welcome` member
/// gets every operation instead.
#[allow(clippy::too_many_arguments)]
fn apply_own_op(
    p: &mut Profile,
    index: usize,
    action: Action,
    target: [u8; 32],
    name: &str,
    extra_recipients: &[[u8; 32]],
    welcome: Option<[u8; 32]>,
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    let identity = p.identity_key_pair();
    let me = *identity.public().as_bytes();
    let nucleus = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let ops = nucleus.decoded_ops();
    if ops.len() >= MAX_OPS
        || ops.iter().filter(|o| o.author() == &me).count() >= MAX_OPS_PER_AUTHOR
    {
        return Err(Error::NucleusLimit(format!(
            "at most {MAX_OPS} membership changes per nucleus, {MAX_OPS_PER_AUTHOR} by one member"
        )));
    }
    let lamport = nucleus
        .lamport
        .checked_add(1)
        .ok_or_else(|| Error::NucleusLimit("its change counter is exhausted".into()))?;
    let op =
        Op::sign(&identity, nucleus.id, lamport, action, target, name).map_err(name_too_long)?;
    let nucleus = p
        .nuclei
        .get_mut(index)
        .ok_or(Error::BrokenState("nucleus"))?;
    nucleus.lamport = lamport;
    nucleus.ops.push(op.as_bytes().to_vec());
    let members = nucleus.members();
    let all_ops = nucleus.ops.clone();
    // Tell everyone who is a member now (the removed one too, once).
    let mut to: Vec<[u8; 32]> = members.keys().copied().collect();
    to.extend_from_slice(extra_recipients);
    to.retain(|k| *k != me);
    to.sort_unstable();
    to.dedup();
    for key in to {
        let Some(contact) = contact_for(p, &key) else {
            continue;
        };
        if Some(key) == welcome {
            // The new member gets every operation: the member list and how
            // it came about, nothing that was said. The add naming it goes
            // first: only that makes its client keep an unknown nucleus.
            let own = op.as_bytes();
            let others = all_ops.iter().map(Vec::as_slice).filter(|b| *b != own);
            for bytes in std::iter::once(own).chain(others) {
                let stored = Op::decode(bytes).map_err(|_| Error::BrokenState("nucleus"))?;
                queue_op(p, contact, stored, rng, seal)?;
            }
        } else {
            queue_op(p, contact, op.clone(), rng, seal)?;
        }
    }
    Ok(())
}

fn queue_op(
    p: &mut Profile,
    contact: ContactId,
    op: Op,
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    let plaintext = AppMessage::NucleusOp(op).encode();
    queue_control(p, contact, &plaintext, MessageId::default(), rng, seal)
}

fn check_member_contact<'a>(p: &'a Profile, contact: &str) -> Result<&'a Contact, Error> {
    let c = p
        .contact(contact)
        .ok_or_else(|| Error::UnknownContact(contact.to_owned()))?;
    check_can_send(c)?;
    Ok(c)
}

/// The members of nucleus `index` and its name, if we are one of them.
fn as_member(p: &Profile, index: usize) -> Result<(BTreeMap<[u8; 32], Member>, String), Error> {
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let members = n.members();
    if !members.contains_key(&p.own_key()) {
        return Err(Error::NotMember(n.name.clone()));
    }
    Ok((members, n.name.clone()))
}

/// `nucleus add`: adds a contact; it gets the operations so far (never
/// the messages), the others get the new operation. Returns the nucleus's
/// and the contact's names.
pub(crate) fn add(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let c = check_member_contact(p, contact)?;
    if c.send_to.is_none() {
        return Err(Error::NoRoute(c.name.clone()));
    }
    let (target, contact_name) = (c.identity_key, c.name.clone());
    let (members, nucleus_name) = as_member(p, index)?;
    if members.contains_key(&target) {
        return Err(Error::AlreadyMember(contact_name, nucleus_name));
    }
    if members.len() >= MAX_MEMBERS {
        return Err(Error::NucleusLimit(format!(
            "at most {MAX_MEMBERS} members"
        )));
    }
    apply_own_op(
        p,
        index,
        Action::Add,
        target,
        &contact_name,
        &[],
        Some(target),
        rng,
        &mut seal,
    )?;
    Ok((nucleus_name, contact_name))
}

/// `nucleus remove`: removes a member; it is told once, then nothing more.
/// Returns the nucleus's and the contact's names.
pub(crate) fn remove(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let c = p
        .contact(contact)
        .ok_or_else(|| Error::UnknownContact(contact.to_owned()))?;
    let (target, contact_name) = (c.identity_key, c.name.clone());
    let (members, nucleus_name) = as_member(p, index)?;
    if !members.contains_key(&target) {
        return Err(Error::NotAMember(contact_name, nucleus_name));
    }
    apply_own_op(
        p,
        index,
        Action::Remove,
        target,
        "",
        &[target],
        None,
        rng,
        &mut seal,
    )?;
    Ok((nucleus_name, contact_name))
}

/// `nucleus leave`: removes ourselves, tells the others, and deletes the
/// nucleus locally. Returns its name.
pub(crate) fn leave(
    p: &mut Profile,
    nucleus: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<String, Error> {
    let index = find_index(p, nucleus)?;
    let me = p.own_key();
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let name = n.name.clone();
    let before: Vec<[u8; 32]> = n.members().keys().copied().collect();
    if before.contains(&me) {
        apply_own_op(
            p,
            index,
            Action::Remove,
            me,
            "",
            &before,
            None,
            rng,
            &mut seal,
        )?;
    }
    let gone = p.nuclei.remove(index);
    p.nucleus_tasks.retain(|t| t.nucleus() != gone.id);
    Ok(name)
}
