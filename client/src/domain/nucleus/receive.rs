//! Nucleus messages from contacts: membership operations (kept, folded
//! and gossiped), texts and introductions.

use std::collections::BTreeMap;

use enlace_protocol::group::limits::{
    MAX_LAMPORT_JUMP, MAX_OPS, MAX_OPS_PER_AUTHOR, MAX_UNPLACED_OPS,
};
use enlace_protocol::group::{Action, Fold, GroupText, Introduction, Member, NucleusId, Op, OpId};

use super::limits::{MAX_NUCLEI, MAX_TASKS};
use super::names::{contact_for, fingerprint, has_contact, unique_nucleus_name};
use crate::domain::message::AppMessage;
use crate::domain::parts::add_part;
use crate::domain::received::Received;
use crate::profile::{
    ContactId, Direction, HistoryEntry, MessageId, Nucleus, NucleusTask, Profile, SEEN_GROUP_KEPT,
    SeenGroupMessage,
};

/// Applies a nucleus message received from contact `peer`.
pub(crate) fn handle(p: &mut Profile, peer: ContactId, msg: AppMessage, now: u64) -> Received {
    match msg {
        AppMessage::NucleusOp(op) => Received::Forward(handle_op(p, peer, op)),
        AppMessage::GroupText(text) => handle_group_text(p, peer, text, now),
        AppMessage::Introduction(intro) => Received::Forward(handle_introduction(p, peer, intro)),
        _ => Received::Nothing,
    }
}

/// A verified operation from `peer`: store it if new and acceptable,
/// re-fold, and return what to forward (contact id, plaintext).
///
/// An unknown nucleus is kept only from a welcome: an `add` naming us,
/// signed by the contact it came from. An operation is stored only if its
/// clock is within [`MAX_LAMPORT_JUMP`] of the largest seen and its author
/// has fewer than [`MAX_OPS_PER_AUTHOR`] operations; one whose author was
/// never a member in the fold waits among at most [`MAX_UNPLACED_OPS`]
/// and is forwarded only once its author's `add` places it.
pub(crate) fn handle_op(p: &mut Profile, peer: ContactId, op: Op) -> Vec<(ContactId, Vec<u8>)> {
    let me = p.own_key();
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Vec::new();
    };
    let welcome = op.action() == Action::Add && op.target() == &me && op.author() == &peer_key;
    let index = match p.nuclei.iter().position(|n| n.id == op.nucleus()) {
        Some(i) => i,
        None => {
            if !welcome || contact_for(p, &peer_key) != Some(peer) || p.nuclei.len() >= MAX_NUCLEI {
                return Vec::new();
            }
            let name = unique_nucleus_name(p, "nucleus");
            p.nuclei.push(Nucleus {
                id: op.nucleus(),
                name,
                creator: None,
                ops: Vec::new(),
                lamport: op.lamport(),
                seen: Vec::new(),
                received: Vec::new(),
            });
            p.nuclei.len() - 1
        }
    };
    let Some(n) = p.nuclei.get_mut(index) else {
        return Vec::new();
    };
    let ops = n.decoded_ops();
    let before = Fold::new(n.creator, &ops);
    if before.members.contains_key(&me) {
        // Once in, take changes only from current members: a removed
        // member cannot push operations to us after we processed its
        // removal.
        if !before.members.contains_key(&peer_key) {
            return Vec::new();
        }
    } else if !welcome
        && !ops
            .iter()
            .any(|o| o.action() == Action::Add && o.target() == &me && o.author() == &peer_key)
    {
        // While outside (being added), only our adder's welcome counts.
        return Vec::new();
    }
    // A clock far ahead of everything seen is refused: it would let one
    // member sort its operations after every later one (or wrap the clock).
    if op.lamport() > n.lamport.saturating_add(MAX_LAMPORT_JUMP) {
        return Vec::new();
    }
    let id = op.id();
    if ops.iter().any(|o| o.id() == id)
        || ops.iter().filter(|o| o.author() == op.author()).count() >= MAX_OPS_PER_AUTHOR
    {
        return Vec::new();
    }
    // The creator is pinned by the first `Create` received: from our
    // adder, who vouches for the nucleus it adds us to.
    let pinned_now = op.action() == Action::Create && n.creator.is_none();
    let creator = if pinned_now {
        Some(*op.author())
    } else {
        n.creator
    };
    let unplaced: Vec<OpId> = ops
        .iter()
        .filter(|o| !before.places(o, creator))
        .map(Op::id)
        .collect();
    if before.places(&op, creator) {
        if ops.len() - unplaced.len() >= MAX_OPS {
            return Vec::new();
        }
    } else if unplaced.len() >= MAX_UNPLACED_OPS {
        // Make room: the oldest waiting operation goes.
        if let Some(oldest) = unplaced.first() {
            n.ops.retain(|b| b.last_chunk::<64>() != Some(&oldest.0));
        }
    }
    n.creator = creator;
    n.ops.push(op.as_bytes().to_vec());
    let ops = n.decoded_ops();
    let after = Fold::new(n.creator, &ops);
    // Newly placed: this operation, and waiting ones its arrival placed.
    let newly: Vec<Op> = ops
        .into_iter()
        .filter(|o| after.places(o, n.creator) && (o.id() == id || unplaced.contains(&o.id())))
        .collect();
    for o in &newly {
        n.lamport = n.lamport.max(o.lamport());
    }
    let nucleus_id = n.id;
    if pinned_now && n.ops.len() > 1 {
        // The create arrived after other operations: take its name now.
        n.name = String::new();
        let name = unique_nucleus_name(p, op.name());
        if let Some(n) = p.nuclei.get_mut(index) {
            n.name = name;
        }
    }
    // Forward to every current member we can write to, except the
    // operation's author, the one who sent it and ourselves.
    let mut out = Vec::new();
    if after.members.contains_key(&me) {
        for o in &newly {
            let plain = AppMessage::NucleusOp(o.clone()).encode();
            for key in after.members.keys() {
                if *key == me || key == o.author() || (o.id() == id && *key == peer_key) {
                    continue;
                }
                if let Some(c) = contact_for(p, key) {
                    out.push((c, plain.clone()));
                }
            }
        }
    }
    plan_introductions(p, nucleus_id, &after.members, me);
    if before.members.contains_key(&me) && !after.members.contains_key(&me) {
        p.nucleus_tasks.retain(|t| t.nucleus() != nucleus_id);
    }
    out
}

/// After a fold: we introduce ourselves (through our adder) to every
/// member added before us that we have no session with. Members added
/// after us introduce themselves to us.
fn plan_introductions(
    p: &mut Profile,
    nucleus: NucleusId,
    members: &BTreeMap<[u8; 32], Member>,
    me: [u8; 32],
) {
    let Some(mine) = members.get(&me) else {
        return;
    };
    let via = mine.added_by;
    if via == me || contact_for(p, &via).is_none() {
        return;
    }
    for (key, member) in members {
        if *key == me || member.since >= mine.since || has_contact(p, key) {
            continue;
        }
        let planned = p.nucleus_tasks.iter().any(|t| {
            matches!(t, NucleusTask::Introduce { nucleus: n, member: m, .. } if *n == nucleus && m == key)
        }) || p
            .introduced
            .iter()
            .any(|i| i.nucleus == nucleus && i.member == *key);
        if planned || p.nucleus_tasks.len() >= MAX_TASKS {
            continue;
        }
        p.nucleus_tasks.push(NucleusTask::Introduce {
            nucleus,
            member: *key,
            via,
        });
    }
}

/// A group text part from `peer`: accepted only if its author is `peer`
/// and a current member, and it was not seen before.
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
    if !members.contains_key(&me) || !members.contains_key(&peer_key) {
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
/// `from` must be a current member whose adder is the one forwarding it
/// to us (or us, when we forward); anything else is dropped, not kept.
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
    if !members.contains_key(&me) || !members.contains_key(&peer_key) {
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
    if intro.from() != &peer_key || adder != Some(me) || !members.contains_key(intro.to()) {
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
