//! Received application messages: what each does to the profile, and the
//! texts still to show.

use super::message::AppMessage;
use super::nucleus;
use super::outbox::apply_receipt;
use super::parts::add_part;
use super::received::Received;
use super::retention;
use crate::opaque::opaque_debug;
use crate::profile::{ContactId, Direction, HistoryEntry, Profile};

/// Applies a decrypted application message from `contact_id`.
pub(crate) fn handle_plaintext(
    profile: &mut Profile,
    contact_id: ContactId,
    plaintext: &[u8],
    now: u64,
) -> Received {
    match AppMessage::decode(plaintext) {
        Ok(AppMessage::Text(part)) => match add_part(profile, contact_id, part) {
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
            apply_receipt(profile, contact_id, &ids);
            Received::Receipt
        }
        Ok(
            msg @ (AppMessage::NucleusOp(_)
            | AppMessage::NucleusOpV1(_)
            | AppMessage::GroupText(_)
            | AppMessage::Introduction(_)),
        ) => nucleus::receive::handle(profile, contact_id, msg, now),
        Ok(msg @ (AppMessage::Timer { .. } | AppMessage::NucleusTimer { .. })) => {
            retention::handle(profile, contact_id, msg, now)
        }
        Err(_) => Received::Nothing,
    }
}

/// A received message to print.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    /// The contact's name.
    pub(crate) from: String,
    /// The nucleus it was sent to, for a nucleus message.
    pub(crate) nucleus: Option<String>,
    /// The sender's clock when written.
    pub(crate) sent_at: u64,
    /// The text.
    pub(crate) text: String,
}

opaque_debug!(Shown);

/// Received messages not shown yet, oldest first; marks them shown.
pub(crate) fn take_unshown(profile: &mut Profile) -> Vec<Shown> {
    let mut shown = Vec::new();
    let names: Vec<(ContactId, String)> = profile
        .contacts
        .iter()
        .map(|c| (c.id, c.name.clone()))
        .collect();
    let labels: Vec<Option<String>> = profile
        .history
        .iter()
        .filter(|h| h.direction == Direction::In && !h.shown)
        .map(|h| nucleus::receive::label_for(profile, h.contact, &h.message_id))
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
