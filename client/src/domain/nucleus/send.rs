//! `nucleus send`: one text, split once, sealed for every other member.

use enlace_protocol::group::GroupText;
use rand_core::CryptoRng;

use super::names::{clean_name, find_index, fingerprint};
use super::state::{Standing, standing};
use crate::domain::message::{AppMessage, split_parts};
use crate::domain::outbox::{Seal, queue_parts};
use crate::error::Error;
use crate::profile::{MessageId, Profile, Verification};

/// What `nucleus send` did.
#[derive(Debug)]
pub(crate) struct GroupSent {
    /// The message id.
    pub(crate) message_id: MessageId,
    /// Members it was sealed for.
    pub(crate) sent_to: Vec<String>,
    /// Members it could not be sealed for (no session yet, or an identity
    /// key that changed), by suggested or contact name.
    pub(crate) skipped: Vec<String>,
    /// Members not verified in person that this send is the first to
    /// tell about (each is told once).
    pub(crate) unverified: Vec<String>,
}

/// Splits the text once and seals every part for every other joined
/// member (fan-out); each member's copy has its own status. Invited
/// members who have not joined get nothing. With the nucleus's
/// `require_verified` set, refuses while any other member is not verified
/// in person.
pub(crate) fn send_text(
    p: &mut Profile,
    nucleus: &str,
    text: &str,
    now: u64,
    max_plaintext: usize,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<GroupSent, Error> {
    if text.trim().is_empty() {
        return Err(Error::EmptyMessage);
    }
    let index = find_index(p, nucleus)?;
    let me = p.own_key();
    let my_fp = fingerprint(&me).ok_or(Error::BrokenState("identity"))?;
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let fold = n.fold();
    let id = n.id;
    match standing(n, &fold, &me) {
        Standing::Joined(_) => {}
        Standing::Invited | Standing::Welcoming => return Err(Error::NotJoined(n.name.clone())),
        Standing::Out => return Err(Error::NotMember(n.name.clone())),
    }
    let members: Vec<_> = fold
        .members
        .into_iter()
        .filter(|(k, m)| m.joined && *k != me)
        .collect();
    let shown = |key: &[u8; 32], suggested: &str| {
        p.contacts
            .iter()
            .find(|c| &c.identity_key == key)
            .map_or_else(|| clean_name(suggested, "member"), |c| c.name.clone())
    };
    let unverified: Vec<([u8; 32], String)> = members
        .iter()
        .filter(|(k, _)| {
            !p.contacts
                .iter()
                .any(|c| &c.identity_key == k && c.verification() == Verification::Verified)
        })
        .map(|(k, m)| (*k, shown(k, &m.suggested_name)))
        .collect();
    if n.require_verified && !unverified.is_empty() {
        let names: Vec<String> = unverified.into_iter().map(|(_, name)| name).collect();
        return Err(Error::UnverifiedMembers(n.name.clone(), names.join(", ")));
    }
    let new_unverified: Vec<([u8; 32], String)> = unverified
        .into_iter()
        .filter(|(k, _)| !n.warned.contains(k))
        .collect();
    let mut message_id = [0u8; 16];
    rng.fill_bytes(&mut message_id);
    let message_id = MessageId(message_id);
    // A nucleus part carries the nucleus and author before the text part.
    let room = max_plaintext.saturating_sub(GroupText::HEADER_LEN);
    let parts: Vec<Vec<u8>> = split_parts(text, message_id, now, room)
        .map_err(Error::MessageTooLong)?
        .into_iter()
        .map(|part| {
            AppMessage::GroupText(GroupText {
                nucleus: id,
                author: my_fp,
                part,
            })
            .encode()
        })
        .collect();
    let mut sent_to = Vec::new();
    let mut skipped = Vec::new();
    for (key, member) in &members {
        let contact = p
            .contacts
            .iter()
            .find(|c| &c.identity_key == key && c.send_to.is_some());
        let Some(contact) = contact else {
            skipped.push(clean_name(&member.suggested_name, "member"));
            continue;
        };
        if contact.verification() == Verification::KeyChanged {
            skipped.push(contact.name.clone());
            continue;
        }
        let cid = contact.id;
        sent_to.push(contact.name.clone());
        queue_parts(p, cid, message_id, &parts, now, rng, &mut seal)?;
    }
    if let Some(n) = p.nuclei.get_mut(index) {
        n.warned.extend(new_unverified.iter().map(|(k, _)| *k));
    }
    Ok(GroupSent {
        message_id,
        sent_to,
        skipped,
        unverified: new_unverified.into_iter().map(|(_, name)| name).collect(),
    })
}
