//! Receiving one envelope on one of our mailboxes: completing a handshake
//! or decrypting a message, applying it, and sealing what it calls for
//! (a receipt, nucleus messages passed on).

use enlace_protocol::envelope::Envelope;
use enlace_protocol::session::Session;

use super::contacts::{Outcome, complete_invitation};
use super::inbox::{Shown, handle_plaintext, take_unshown};
use super::mailboxes::find_local;
use super::nucleus::notices::{ShownChange, take_changes};
use super::outbox::{queue_forwards, queue_receipt};
use super::received::Received;
use super::retention::{self, TimerShown};
use super::seal::{broken_session, sealer, store_session};
use crate::error::Error;
use crate::profile::{EnvelopeId, Profile, ReceiveId};

/// What taking one envelope did, for the driver to act on once saved.
pub(crate) struct Taken {
    /// What the envelope was.
    pub(crate) outcome: Outcome,
    /// Messages to show now.
    pub(crate) shown: Vec<Shown>,
    /// Membership changes to show now.
    pub(crate) changes: Vec<ShownChange>,
    /// Timer changes to show now.
    pub(crate) timers: Vec<TimerShown>,
    /// The mailbox's contact key, if the relay should now be asked to
    /// secure the mailbox with it.
    pub(crate) secure_with: Option<[u8; 32]>,
}

/// Takes `envelope`, which arrived on our mailbox `rid`: drops it if its
/// id was seen, else applies it and remembers its id.
pub(crate) fn take_envelope(
    p: &mut Profile,
    rid: ReceiveId,
    envelope: &Envelope,
    now: u64,
) -> Result<Taken, Error> {
    let envelope_id = EnvelopeId(envelope.message_id().0);
    if p.seen.contains(&envelope_id) {
        return Ok(Taken {
            outcome: Outcome::Duplicate,
            shown: Vec::new(),
            changes: Vec::new(),
            timers: Vec::new(),
            secure_with: None,
        });
    }
    let outcome = receive(p, rid, envelope, now)?;
    p.mark_seen(envelope_id);
    let secure_with = find_local(p, rid).and_then(|m| m.contact_sender_key.filter(|_| !m.secured));
    Ok(Taken {
        outcome,
        changes: take_changes(p),
        timers: retention::take_unshown(p),
        shown: take_unshown(p),
        secure_with,
    })
}

/// The profile side of receiving one envelope on mailbox `rid`.
fn receive(
    p: &mut Profile,
    rid: ReceiveId,
    envelope: &Envelope,
    now: u64,
) -> Result<Outcome, Error> {
    if let Some(index) = p
        .invitations
        .iter()
        .position(|i| i.mailbox.receive_id == rid)
    {
        return complete_invitation(p, index, envelope, now);
    }
    let Some(contact) = p
        .contacts
        .iter_mut()
        .find(|c| c.receive_on.as_ref().is_some_and(|m| m.receive_id == rid))
    else {
        return Ok(Outcome::Dropped);
    };
    let mut session = Session::from_bytes(&contact.session).map_err(broken_session)?;
    let Ok(plaintext) = session.decrypt(&mut rand::rng(), envelope.body()) else {
        return Ok(Outcome::Dropped);
    };
    store_session(contact, &session);
    let id = contact.id;
    match handle_plaintext(p, id, &plaintext, now) {
        Received::Text(message_id) => {
            queue_receipt(p, id, vec![message_id], &mut rand::rng(), sealer(now))?;
        }
        Received::Forward(outgoing) => {
            queue_forwards(p, outgoing, &mut rand::rng(), sealer(now))?;
        }
        Received::Part | Received::Receipt | Received::Nothing => {}
    }
    Ok(Outcome::Done)
}
