//! Putting long texts back together: parts are kept in the profile until
//! the last one arrives, whatever order they come in.

use enlace_protocol::group::TextPart;

use crate::opaque::opaque_debug;
use crate::profile::{ContactId, MessageId, PartialMessage, Profile};

/// Most incomplete messages kept per contact; the oldest is dropped beyond
/// this, so a contact cannot fill the store with never-finished messages.
pub(crate) const MAX_PARTIAL_PER_CONTACT: usize = 8;

/// A text message put back together.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CompleteText {
    /// The message id.
    pub(crate) message_id: MessageId,
    /// The sender's clock when written.
    pub(crate) sent_at: u64,
    /// The text (invalid UTF-8 replaced, never refused: the sender's
    /// client splits on bytes, so only a broken sender produces it).
    pub(crate) text: String,
}

opaque_debug!(CompleteText);

/// Adds a received part from `contact` to the profile; returns the whole
/// text when this part completes it. Repeated parts are ignored, and so are
/// parts of a message already in the history.
pub(crate) fn add_part(
    profile: &mut Profile,
    contact: ContactId,
    part: TextPart,
) -> Option<CompleteText> {
    let message_id = MessageId(part.message_id());
    if profile
        .history
        .iter()
        .any(|h| h.contact == contact && h.message_id == message_id)
    {
        return None;
    }
    if part.parts() == 1 {
        return Some(CompleteText {
            message_id,
            sent_at: part.sent_at(),
            text: String::from_utf8_lossy(part.bytes()).into_owned(),
        });
    }
    let index = match profile
        .partial
        .iter()
        .position(|p| p.contact == contact && p.message_id == message_id)
    {
        Some(i) => i,
        None => {
            let mine: Vec<usize> = profile
                .partial
                .iter()
                .enumerate()
                .filter(|(_, p)| p.contact == contact)
                .map(|(i, _)| i)
                .collect();
            if mine.len() >= MAX_PARTIAL_PER_CONTACT
                && let Some(&oldest) = mine.first()
            {
                profile.partial.remove(oldest);
            }
            profile.partial.push(PartialMessage {
                contact,
                message_id,
                sent_at: part.sent_at(),
                parts: vec![None; usize::from(part.parts())],
            });
            profile.partial.len() - 1
        }
    };
    let partial = profile.partial.get_mut(index)?;
    if partial.parts.len() != usize::from(part.parts()) {
        return None; // A part that disagrees on the count: ignore it.
    }
    let slot = partial.parts.get_mut(usize::from(part.part()))?;
    if slot.is_none() {
        *slot = Some(part.into_bytes());
    }
    if partial.parts.iter().any(Option::is_none) {
        return None;
    }
    let done = profile.partial.remove(index);
    let bytes: Vec<u8> = done.parts.iter().flatten().flatten().copied().collect();
    Some(CompleteText {
        message_id: done.message_id,
        sent_at: done.sent_at,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
