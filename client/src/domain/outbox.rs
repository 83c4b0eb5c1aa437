//! The outbox: sealing messages into it, and what happens to them when a
//! relay stores them. The driver sends what is here and reports back; the
//! sealing itself (session and envelope) is passed in as a [`Seal`], so
//! this logic is tested without sessions or sockets.

use rand_core::CryptoRng;

use super::message::{AppMessage, MAX_RECEIPT_IDS, split_text};
use crate::error::Error;
use crate::profile::{
    Contact, ContactId, Direction, EnvelopeId, HistoryEntry, MessageId, OutboxEntry, Profile,
    SentMessage, Status, StoredRelay, Verification,
};

/// Refuses to send to a contact whose identity key changed.
pub(crate) fn check_can_send(contact: &Contact) -> Result<(), Error> {
    if contact.verification() == Verification::KeyChanged {
        return Err(Error::IdentityChanged(contact.name.clone()));
    }
    Ok(())
}

/// Seals one application message for a contact: encrypts it in the
/// contact's session (advancing it) and signs the envelope with the given
/// envelope id. Returns the envelope's wire bytes and the relay to send to.
pub(crate) trait Seal:
    FnMut(&mut Contact, &[u8], EnvelopeId) -> Result<(Vec<u8>, StoredRelay), Error>
{
}
impl<F: FnMut(&mut Contact, &[u8], EnvelopeId) -> Result<(Vec<u8>, StoredRelay), Error>> Seal
    for F
{
}

fn fresh_id(rng: &mut impl CryptoRng) -> [u8; 16] {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    id
}

/// Seals `parts` for one contact: an outbox entry each, and the message's
/// own status as queued.
pub(crate) fn queue_parts(
    profile: &mut Profile,
    contact_id: ContactId,
    message_id: MessageId,
    parts: &[Vec<u8>],
    now: u64,
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    let contact = profile
        .contact_by_id_mut(contact_id)
        .ok_or(Error::BrokenState("contact"))?;
    let mut entries = Vec::with_capacity(parts.len());
    for part in parts {
        let envelope_id = EnvelopeId(fresh_id(rng));
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
        parts: u16::try_from(parts.len()).unwrap_or(u16::MAX),
    });
    Ok(())
}

/// Splits `text` into parts, seals each into the outbox, and records the
/// message as queued and in the history. Returns the message id.
pub(crate) fn queue_text(
    profile: &mut Profile,
    contact_id: ContactId,
    text: &str,
    now: u64,
    max_plaintext: usize,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<MessageId, Error> {
    if text.trim().is_empty() {
        return Err(Error::EmptyMessage);
    }
    let message_id = MessageId(fresh_id(rng));
    let parts = split_text(text, message_id, now, max_plaintext).map_err(Error::MessageTooLong)?;
    let contact = profile
        .contact_by_id(contact_id)
        .ok_or_else(|| Error::UnknownContact(contact_id.0.to_string()))?;
    check_can_send(contact)?;
    queue_parts(profile, contact_id, message_id, &parts, now, rng, &mut seal)?;
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
pub(crate) fn queue_receipt(
    profile: &mut Profile,
    contact_id: ContactId,
    message_ids: Vec<MessageId>,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(), Error> {
    for chunk in message_ids.chunks(MAX_RECEIPT_IDS) {
        let first = chunk.first().copied().unwrap_or_default();
        let msg = AppMessage::Receipt(chunk.to_vec());
        queue_control(profile, contact_id, &msg.encode(), first, rng, &mut seal)?;
    }
    Ok(())
}

/// Seals a control message (a receipt, a nucleus message passed on) into
/// the outbox. Does nothing for a contact we cannot write to yet.
pub(crate) fn queue_control(
    profile: &mut Profile,
    contact_id: ContactId,
    plaintext: &[u8],
    message_id: MessageId,
    rng: &mut impl CryptoRng,
    seal: &mut impl Seal,
) -> Result<(), Error> {
    let Some(contact) = profile.contact_by_id_mut(contact_id) else {
        return Ok(());
    };
    if contact.send_to.is_none() {
        return Ok(());
    }
    let envelope_id = EnvelopeId(fresh_id(rng));
    let (envelope, relay) = seal(contact, plaintext, envelope_id)?;
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

/// Seals plaintexts that receiving decided to pass on (gossiped
/// operations, forwarded introductions) into the outbox.
pub(crate) fn queue_forwards(
    profile: &mut Profile,
    outgoing: Vec<(ContactId, Vec<u8>)>,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<(), Error> {
    for (contact_id, plaintext) in outgoing {
        queue_control(
            profile,
            contact_id,
            &plaintext,
            MessageId::default(),
            rng,
            &mut seal,
        )?;
    }
    Ok(())
}

/// The relay stored the envelope `envelope_id`: drop it from the outbox,
/// and mark its message stored once no part of it is left.
pub(crate) fn mark_stored(profile: &mut Profile, envelope_id: EnvelopeId) {
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
/// `queued at home relay` for that contact.
pub(crate) fn mark_queued_at_home(profile: &mut Profile, envelope_id: EnvelopeId) {
    let Some(entry) = profile
        .outbox
        .iter()
        .find(|e| e.envelope_id == envelope_id && !e.control)
    else {
        return;
    };
    let (contact, message_id) = (entry.contact, entry.message_id);
    if let Some(sent) = profile
        .sent
        .iter_mut()
        .find(|s| s.contact == contact && s.message_id == message_id && s.status == Status::Queued)
    {
        sent.status = Status::QueuedAtHome;
    }
}

/// A receipt from `contact` for `ids`: its copies of those messages are
/// delivered, and the envelopes still waiting *for it* leave the outbox
/// (the receipt proves their parts arrived). A nucleus message has one id
/// and a copy per member: a receipt from one member (or a forged one with
/// another member's id) touches no other member's copy, and one for a
/// message never sent to `contact` touches nothing.
pub(crate) fn apply_receipt(profile: &mut Profile, contact: ContactId, ids: &[MessageId]) {
    let mut confirmed = Vec::new();
    for sent in profile
        .sent
        .iter_mut()
        .filter(|s| s.contact == contact && ids.contains(&s.message_id))
    {
        sent.status = Status::Delivered;
        confirmed.push(sent.message_id);
    }
    profile
        .outbox
        .retain(|e| e.control || e.contact != contact || !confirmed.contains(&e.message_id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::inbox::{handle_plaintext, take_unshown};
    use crate::domain::received::Received;
    use crate::profile::{RemoteMailbox, SendId};

    fn contact(id: u64, name: &str) -> Contact {
        Contact {
            id: ContactId(id),
            name: name.into(),
            identity_key: [id as u8; 32],
            verified_key: None,
            key_changed: false,
            session: Vec::new(),
            send_to: Some(RemoteMailbox {
                relay: StoredRelay::from_text("relay".into()),
                send_id: SendId([1; 16]),
                sender_key: [2; 32],
            }),
            receive_on: None,
            added_at: 0,
        }
    }

    /// A stand-in for the session: the "envelope" is the plaintext.
    fn clear(_: &mut Contact, pt: &[u8], _: EnvelopeId) -> Result<(Vec<u8>, StoredRelay), Error> {
        Ok((pt.to_vec(), StoredRelay::from_text("relay".into())))
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
        let id = queue_text(
            &mut a,
            ContactId(1),
            &text,
            100,
            1000,
            &mut rand::rng(),
            clear,
        )
        .unwrap();
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
                if let Received::Text(mid) = handle_plaintext(&mut b, ContactId(7), env, 200) {
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

        queue_receipt(&mut b, ContactId(7), vec![id], &mut rand::rng(), clear).unwrap();
        let receipt = b.outbox[0].envelope.clone();
        assert_eq!(
            handle_plaintext(&mut a, ContactId(1), &receipt, 300),
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
        let hola =
            |a: &mut Profile| queue_text(a, ContactId(1), "hola", 0, 1000, &mut rand::rng(), clear);
        let err = hola(&mut a).unwrap_err();
        assert!(matches!(err, Error::IdentityChanged(ref n) if n == "Ben"));
        assert!(a.outbox.is_empty() && a.sent.is_empty() && a.history.is_empty());
        a.contacts[0].confirm_verified();
        hola(&mut a).unwrap();
        assert_eq!(a.outbox.len(), 1);
    }

    #[test]
    fn garbage_and_empty_refused() {
        let (mut a, _) = two();
        assert_eq!(
            handle_plaintext(&mut a, ContactId(1), b"\x09junk", 0),
            Received::Nothing
        );
        assert!(matches!(
            queue_text(
                &mut a,
                ContactId(1),
                "  \n",
                0,
                1000,
                &mut rand::rng(),
                clear
            ),
            Err(Error::EmptyMessage)
        ));
    }
}
