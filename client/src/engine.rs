//! What happens to the profile when messages are sent, stored, received
//! and acknowledged, without any I/O: the network driver calls these with
//! what it did or got, and saves the profile after each.
//!
//! Sealing (end-to-end encryption and the envelope signature) is passed in
//! as a closure, so this logic is tested without sessions or sockets.

use rand_core::CryptoRng;

use crate::error::Error;
use crate::message::{self, AppMessage, MAX_RECEIPT_IDS};
use crate::profile::{
    Contact, Direction, HistoryEntry, OutboxEntry, Profile, SentMessage, Status, Verification,
};

/// Refuses to send to a contact whose identity key changed.
pub fn check_can_send(contact: &Contact) -> Result<(), Error> {
    if contact.verification() == Verification::KeyChanged {
        return Err(Error::IdentityChanged(contact.name.clone()));
    }
    Ok(())
}

/// Seals one application message for a contact: encrypts it in the
/// contact's session (advancing it) and signs the envelope with the given
/// envelope id. Returns the envelope's wire bytes and the relay to send to.
pub trait Seal: FnMut(&mut Contact, &[u8], [u8; 16]) -> Result<(Vec<u8>, String), Error> {}
impl<F: FnMut(&mut Contact, &[u8], [u8; 16]) -> Result<(Vec<u8>, String), Error>> Seal for F {}

/// Splits `text` into parts, seals each into the outbox, and records the
/// message as queued and in the history. Returns the message id.
pub fn queue_text(
    profile: &mut Profile,
    contact_id: u64,
    text: &str,
    now: u64,
    max_plaintext: usize,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<[u8; 16], Error> {
    if text.trim().is_empty() {
        return Err(Error::EmptyMessage);
    }
    let mut message_id = [0u8; 16];
    rng.fill_bytes(&mut message_id);
    let parts = message::split_text(text, message_id, now, max_plaintext)
        .map_err(|e| Error::MessageTooLong(e.to_string()))?;
    let contact = profile
        .contacts
        .iter_mut()
        .find(|c| c.id == contact_id)
        .ok_or_else(|| Error::UnknownContact(contact_id.to_string()))?;
    check_can_send(contact)?;
    let mut entries = Vec::with_capacity(parts.len());
    for part in &parts {
        let mut envelope_id = [0u8; 16];
        rng.fill_bytes(&mut envelope_id);
        let (envelope, relay) = seal(contact, part, envelope_id)?;
        entries.push(OutboxEntry {
            contact: contact_id,
            envelope_id,
            message_id,
            relay,
            envelope,
            control: false,
        });
    }
    profile.outbox.extend(entries);
    profile.sent.push(SentMessage {
        contact: contact_id,
        message_id,
        sent_at: now,
        status: Status::Queued,
        parts: parts.len() as u16,
    });
    profile.history.push(HistoryEntry {
        contact: contact_id,
        direction: Direction::Out,
        message_id,
        sent_at: now,
        stored_at: now,
        text: text.to_owned(),
        shown: true,
    });
    Ok(message_id)
}

/// Seals a receipt for `message_ids` into the outbox (several envelopes
/// when there are more than [`MAX_RECEIPT_IDS`]).
pub fn queue_receipt(
    profile: &mut Profile,
    contact_id: u64,
    message_ids: Vec<[u8; 16]>,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(), Error> {
    for chunk in message_ids.chunks(MAX_RECEIPT_IDS) {
        let first = chunk.first().copied().unwrap_or_default();
        let msg = AppMessage::Receipt(chunk.to_vec());
        queue_control(profile, contact_id, &msg, first, rng, &mut seal)?;
    }
    Ok(())
}

/// Seals a control message (a receipt) into the outbox. Does
/// nothing for a contact we cannot write to yet.
pub fn queue_control(
    profile: &mut Profile,
    contact_id: u64,
    msg: &AppMessage,
    message_id: [u8; 16],
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    let Some(contact) = profile.contacts.iter_mut().find(|c| c.id == contact_id) else {
        return Ok(());
    };
    if contact.send_to.is_none() {
        return Ok(());
    }
    let mut envelope_id = [0u8; 16];
    rng.fill_bytes(&mut envelope_id);
    let (envelope, relay) = seal(contact, &msg.encode(), envelope_id)?;
    profile.outbox.push(OutboxEntry {
        contact: contact_id,
        envelope_id,
        message_id,
        relay,
        envelope,
        control: true,
    });
    Ok(())
}

/// The relay stored the envelope `envelope_id`: drop it from the outbox,
/// and mark its message stored once no part of it is left.
pub fn mark_stored(profile: &mut Profile, envelope_id: [u8; 16]) {
    let Some(pos) = profile
        .outbox
        .iter()
        .position(|e| e.envelope_id == envelope_id)
    else {
        return;
    };
    let entry = profile.outbox.remove(pos);
    if entry.control {
        return;
    }
    // A nucleus message has one id and a copy per member: each member's
    // copy has its own status.
    let left = profile
        .outbox
        .iter()
        .any(|e| !e.control && e.contact == entry.contact && e.message_id == entry.message_id);
    if !left
        && let Some(sent) = profile.sent.iter_mut().find(|s| {
            s.contact == entry.contact
                && s.message_id == entry.message_id
                && matches!(s.status, Status::Queued | Status::QueuedAtHome)
        })
    {
        sent.status = Status::Stored;
    }
}

/// The home relay queued the envelope for forwarding (it stays in the
/// outbox until the destination stored it): its message shows
/// `queued at home relay`.
pub fn mark_queued_at_home(profile: &mut Profile, envelope_id: [u8; 16]) {
    let Some(entry) = profile
        .outbox
        .iter()
        .find(|e| e.envelope_id == envelope_id && !e.control)
    else {
        return;
    };
    let message_id = entry.message_id;
    if let Some(sent) = profile
        .sent
        .iter_mut()
        .find(|s| s.message_id == message_id && s.status == Status::Queued)
    {
        sent.status = Status::QueuedAtHome;
    }
}

/// What a decrypted application message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// A text was completed and added to the history; send a receipt.
    Text([u8; 16]),
    /// A part of a longer text was kept.
    Part,
    /// Messages sent earlier were marked delivered.
    Receipt,
    /// Nothing new (a repeat), or a message this version cannot read.
    Nothing,
    /// A nucleus message was applied; seal these plaintexts for these
    /// contacts (gossiped operations, forwarded introductions).
    Forward(Vec<(u64, Vec<u8>)>),
}

/// Applies a decrypted application message from `contact_id`.
pub fn handle_plaintext(
    profile: &mut Profile,
    contact_id: u64,
    plaintext: &[u8],
    now: u64,
) -> Received {
    match AppMessage::decode(plaintext) {
        Ok(AppMessage::Text(part)) => match message::add_part(profile, contact_id, part) {
            Some(done) => {
                let id = done.message_id;
                profile.history.push(HistoryEntry {
                    contact: contact_id,
                    direction: Direction::In,
                    message_id: done.message_id,
                    sent_at: done.sent_at,
                    stored_at: now,
                    text: done.text.clone(),
                    shown: false,
                });
                Received::Text(id)
            }
            None => Received::Part,
        },
        Ok(AppMessage::Receipt(ids)) => {
            for sent in profile
                .sent
                .iter_mut()
                .filter(|s| s.contact == contact_id && ids.contains(&s.message_id))
            {
                sent.status = Status::Delivered;
            }
            // A receipt proves the earlier parts arrived: stop resending them.
            profile
                .outbox
                .retain(|e| e.control || !ids.contains(&e.message_id));
            Received::Receipt
        }
        Ok(
            msg @ (AppMessage::NucleusOp(_)
            | AppMessage::GroupText(_)
            | AppMessage::Introduction(_)),
        ) => crate::nucleus::handle(profile, contact_id, msg, now),
        Err(_) => Received::Nothing,
    }
}

/// A received message to print.
#[derive(Clone, PartialEq, Eq)]
pub struct Shown {
    /// The contact's name.
    pub from: String,
    /// The nucleus it was sent to, for a nucleus message.
    pub nucleus: Option<String>,
    /// The sender's clock when written.
    pub sent_at: u64,
    /// The text.
    pub text: String,
}

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shown(..)")
    }
}

/// Received messages not shown yet, oldest first; marks them shown.
pub fn take_unshown(profile: &mut Profile) -> Vec<Shown> {
    let mut shown = Vec::new();
    let names: Vec<(u64, String)> = profile
        .contacts
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    let labels: Vec<Option<String>> = profile
        .history
        .iter()
        .filter(|h| h.direction == Direction::In && !h.shown)
        .map(|h| crate::nucleus::label_for(profile, h.contact, &h.message_id))
        .collect();
    let mut labels = labels.into_iter();
    for h in profile
        .history
        .iter_mut()
        .filter(|h| h.direction == Direction::In && !h.shown)
    {
        h.shown = true;
        let nucleus = labels.next().flatten();
        let from = names
            .iter()
            .find(|(id, _)| *id == h.contact)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| "(removed contact)".into());
        shown.push(Shown {
            from,
            nucleus,
            sent_at: h.sent_at,
            text: h.text.clone(),
        });
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::RemoteMailbox;

    fn contact(id: u64, name: &str) -> Contact {
        Contact {
            id,
            name: name.into(),
            identity_key: [id as u8; 32],
            verified_key: None,
            key_changed: false,
            session: Vec::new(),
            send_to: Some(RemoteMailbox {
                relay: "relay".into(),
                send_id: [1; 16],
                sender_key: [2; 32],
            }),
            receive_on: None,
            added_at: 0,
        }
    }

    /// A stand-in for the session: the "envelope" is the plaintext.
    fn clear(_: &mut Contact, pt: &[u8], _: [u8; 16]) -> Result<(Vec<u8>, String), Error> {
        Ok((pt.to_vec(), "relay".into()))
    }

    fn two() -> (Profile, Profile) {
        let mut a = Profile::new(&mut rand::rng(), 0);
        let mut b = Profile::new(&mut rand::rng(), 0);
        a.contacts.push(contact(1, "Ben"));
        b.contacts.push(contact(7, "Ana"));
        (a, b)
    }

    #[test]
    fn send_store_receive_receipt() {
        let (mut a, mut b) = two();
        let text = "asamblea mañana ".repeat(300);
        let id = queue_text(&mut a, 1, &text, 100, 1000, &mut rand::rng(), clear).unwrap();
        let parts: Vec<_> = a
            .outbox
            .iter()
            .map(|e| (e.envelope_id, e.envelope.clone()))
            .collect();
        assert!(parts.len() > 1);
        assert_eq!(a.sent[0].status, Status::Queued);

        // Stored one by one; status changes only after the last part.
        for (i, (eid, _)) in parts.iter().enumerate() {
            mark_stored(&mut a, *eid);
            let want = if i + 1 == parts.len() {
                Status::Stored
            } else {
                Status::Queued
            };
            assert_eq!(a.sent[0].status, want);
        }
        assert!(a.outbox.is_empty());

        // Received in reverse order, each part twice.
        let mut completed = None;
        for (_, env) in parts.iter().rev() {
            for _ in 0..2 {
                if let Received::Text(mid) = handle_plaintext(&mut b, 7, env, 200) {
                    assert!(completed.replace(mid).is_none(), "completed twice");
                }
            }
        }
        assert_eq!(completed, Some(id));
        let shown = take_unshown(&mut b);
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].from, "Ana");
        assert_eq!(shown[0].text, text);
        assert_eq!(shown[0].sent_at, 100);
        assert!(take_unshown(&mut b).is_empty());

        queue_receipt(&mut b, 7, vec![id], &mut rand::rng(), clear).unwrap();
        let receipt = b.outbox[0].envelope.clone();
        assert_eq!(
            handle_plaintext(&mut a, 1, &receipt, 300),
            Received::Receipt
        );
        assert_eq!(a.sent[0].status, Status::Delivered);
        // A late "stored" does not move it back.
        mark_stored(&mut a, parts[0].0);
        assert_eq!(a.sent[0].status, Status::Delivered);
    }

    #[test]
    fn changed_identity_refuses_and_changes_nothing() {
        let (mut a, _) = two();
        a.contacts[0].set_identity_key([99; 32]);
        let err = queue_text(&mut a, 1, "hola", 0, 1000, &mut rand::rng(), clear).unwrap_err();
        assert!(matches!(err, Error::IdentityChanged(ref n) if n == "Ben"));
        assert!(a.outbox.is_empty() && a.sent.is_empty() && a.history.is_empty());
        a.contacts[0].confirm_verified();
        queue_text(&mut a, 1, "hola", 0, 1000, &mut rand::rng(), clear).unwrap();
        assert_eq!(a.outbox.len(), 1);
    }

    #[test]
    fn garbage_and_empty_refused() {
        let (mut a, _) = two();
        assert_eq!(
            handle_plaintext(&mut a, 1, b"\x09junk", 0),
            Received::Nothing
        );
        assert!(matches!(
            queue_text(&mut a, 1, "  \n", 0, 1000, &mut rand::rng(), clear),
            Err(Error::EmptyMessage)
        ));
    }
}
