//! Nucleus messages from contacts: membership operations (see
//! [`super::ops`]), texts and introductions.

use enlace_protocol::group::{GroupText, Introduction};

use super::limits::MAX_TASKS;
use super::names::{contact_for, fingerprint, has_contact};
use super::ops::{Incoming, handle_op};
use crate::domain::message::AppMessage;
use crate::domain::parts::add_part;
use crate::domain::received::Received;
use crate::profile::{
    ContactId, Direction, HistoryEntry, MessageId, NucleusTask, Profile, SEEN_GROUP_KEPT,
    SeenGroupMessage,
};

/// Applies a nucleus message received from contact `peer`.
pub(crate) fn handle(p: &mut Profile, peer: ContactId, msg: AppMessage, now: u64) -> Received {
    match msg {
        AppMessage::NucleusOp(op) => Received::Forward(handle_op(p, peer, Incoming::V2(op))),
        AppMessage::NucleusOpV1(op) => Received::Forward(handle_op(p, peer, Incoming::V1(op))),
        AppMessage::GroupText(text) => handle_group_text(p, peer, text, now),
        AppMessage::Introduction(intro) => Received::Forward(handle_introduction(p, peer, intro)),
        _ => Received::Nothing,
    }
}

/// A group text part from `peer`: accepted only if its author is `peer`,
/// we and it are joined members, and it was not seen before.
pub(crate) fn handle_group_text(
    p: &mut Profile,
    peer: ContactId,
    text: GroupText,
    now: u64,
) -> Received {
    let me = p.own_key();
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Received::Nothing;
    };
    if fingerprint(&peer_key) != Some(text.author) {
        return Received::Nothing; // re-attribution: not the session's peer
    }
    let Some(n) = p.nuclei.iter_mut().find(|n| n.id == text.nucleus) else {
        return Received::Nothing;
    };
    let members = n.members();
    let joined = |k: &[u8; 32]| members.get(k).is_some_and(|m| m.joined);
    if !joined(&me) || !joined(&peer_key) {
        return Received::Nothing;
    }
    let message_id = MessageId(text.part.message_id());
    let key = SeenGroupMessage {
        author: text.author.0,
        message_id,
    };
    if n.seen.contains(&key) {
        return Received::Nothing;
    }
    match add_part(p, peer, text.part) {
        Some(done) => {
            let Some(n) = p.nuclei.iter_mut().find(|n| n.id == text.nucleus) else {
                return Received::Nothing;
            };
            n.remember(key.clone());
            if n.received.len() >= SEEN_GROUP_KEPT {
                n.received.remove(0);
            }
            n.received.push(key);
            p.history.push(HistoryEntry {
                contact: peer,
                direction: Direction::In,
                message_id: done.message_id,
                sent_at: done.sent_at,
                stored_at: now,
                text: done.text,
                shown: false,
            });
            Received::Text(message_id)
        }
        None => Received::Part,
    }
}

/// An introduction from `peer`: forward it if it is for another member
/// (we are the adder), or queue accepting it if it is for us. Either way
/// we, `peer` and `from` must be joined members and `from`'s adder the
/// one forwarding it to us (or us, when we forward); anything else is
/// dropped, not kept.
pub(crate) fn handle_introduction(
    p: &mut Profile,
    peer: ContactId,
    intro: Introduction,
) -> Vec<(ContactId, Vec<u8>)> {
    let me = p.own_key();
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Vec::new();
    };
    let Some(n) = p.nuclei.iter().find(|n| n.id == intro.nucleus()) else {
        return Vec::new();
    };
    let members = n.members();
    let joined = |k: &[u8; 32]| members.get(k).is_some_and(|m| m.joined);
    if !joined(&me) || !joined(&peer_key) || !joined(intro.from()) {
        return Vec::new();
    }
    let adder = members.get(intro.from()).map(|m| m.added_by);
    if intro.to() == &me {
        if has_contact(p, intro.from()) || intro.from() == &me || adder != Some(peer_key) {
            return Vec::new();
        }
        // One waiting introduction per member: a new one replaces none.
        let dup = p.nucleus_tasks.iter().any(|t| {
            matches!(t, NucleusTask::Accept { nucleus, introduction, .. }
                if *nucleus == intro.nucleus()
                    && Introduction::decode(introduction).is_ok_and(|i| i.from() == intro.from()))
        });
        if !dup && p.nucleus_tasks.len() < MAX_TASKS {
            p.nucleus_tasks.push(NucleusTask::Accept {
                nucleus: intro.nucleus(),
                introduction: intro.as_bytes().to_vec(),
                via: peer,
            });
        }
        return Vec::new();
    }
    // We forward only what the new member itself sent us, to a member.
    if intro.from() != &peer_key || adder != Some(me) || !joined(intro.to()) {
        return Vec::new();
    }
    match contact_for(p, intro.to()) {
        Some(c) => vec![(c, AppMessage::Introduction(intro).encode())],
        None => Vec::new(),
    }
}

/// The nucleus (name) a history entry came from, if any.
pub(crate) fn label_for(p: &Profile, contact: ContactId, message_id: &MessageId) -> Option<String> {
    let key = p.contact_by_id(contact)?.identity_key;
    let fp = fingerprint(&key)?;
    p.nuclei
        .iter()
        .find(|n| {
            n.received
                .iter()
                .any(|s| s.author == fp.0 && &s.message_id == message_id)
        })
        .map(|n| n.name.clone())
}
