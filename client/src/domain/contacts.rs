//! Contacts as handshakes make them: names, adding or updating a contact,
//! and completing an invitation someone accepted.

use enlace_protocol::envelope::Envelope;
use enlace_protocol::keys::PublicKey;
use enlace_protocol::session::{self, PendingInvitation, Session};

use super::message::AcceptPayload;
use super::seal::store_session;
use crate::error::Error;
use crate::opaque::opaque_debug;
use crate::profile::{
    Contact, ContactId, EnvelopeId, InvitationId, LocalMailbox, MessageId, OutboxEntry, Profile,
    RemoteMailbox, SendId, StoredRelay, Verification,
};

/// Longest contact (and nucleus) name, in characters.
const MAX_NAME_CHARS: usize = 64;

/// A name the user gave, trimmed; refused if empty, longer than
/// [`MAX_NAME_CHARS`] or holding control characters.
pub(crate) fn check_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::InvalidName("empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(Error::InvalidName("longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidName("control characters"));
    }
    Ok(name.to_owned())
}

/// The invitation code inside `text`: the first word that starts with the
/// code prefix, so a pasted `enlace invite` output works as well as the
/// bare code.
pub(crate) fn find_code(text: &str) -> &str {
    text.split_whitespace()
        .find(|w| {
            w.get(..session::TEXT_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(session::TEXT_PREFIX))
        })
        .unwrap_or(text.trim())
}

/// Adds a contact, or updates the one with the same name (flagging an
/// identity key change). Returns its id.
pub(crate) fn upsert_contact(
    profile: &mut Profile,
    name: &str,
    identity: &PublicKey,
    session: &Session,
    send_to: RemoteMailbox,
    receive_on: LocalMailbox,
    now: u64,
) -> ContactId {
    if let Some(c) = profile.contact_mut(name) {
        c.set_identity_key(*identity.as_bytes());
        store_session(c, session);
        c.send_to = Some(send_to);
        c.receive_on = Some(receive_on);
        return c.id;
    }
    let id = profile.allocate_contact_id();
    profile.contacts.push(Contact {
        id,
        name: name.to_owned(),
        identity_key: *identity.as_bytes(),
        verified_key: None,
        key_changed: false,
        session: session.to_bytes().to_vec(),
        send_to: Some(send_to),
        receive_on: Some(receive_on),
        added_at: now,
    });
    id
}

/// What accepting an invitation made: a secured mailbox on the home relay
/// for the inviter to write to, the session, and the first (handshake)
/// envelope for the inviter's mailbox, ready to be saved and sent.
pub(crate) struct Accepted {
    pub(crate) session: Session,
    pub(crate) send_to: RemoteMailbox,
    pub(crate) receive_on: LocalMailbox,
    pub(crate) envelope_id: EnvelopeId,
    pub(crate) envelope: Vec<u8>,
}

opaque_debug!(Accepted);

impl Accepted {
    /// Adds (or updates) the contact named `name` with identity key
    /// `identity`, and queues the handshake envelope in the outbox.
    /// Returns the contact's id.
    pub(crate) fn save(
        self,
        p: &mut Profile,
        name: &str,
        identity: &PublicKey,
        now: u64,
    ) -> ContactId {
        let relay = self.send_to.relay.clone();
        let id = upsert_contact(
            p,
            name,
            identity,
            &self.session,
            self.send_to,
            self.receive_on,
            now,
        );
        p.outbox.push(OutboxEntry {
            contact: id,
            envelope_id: self.envelope_id,
            message_id: MessageId::default(),
            relay,
            envelope: self.envelope,
            control: true,
        });
        id
    }
}

/// What one envelope did, decided under the lock.
pub(crate) enum Outcome {
    /// Already processed: just ack.
    Duplicate,
    /// Could not be read; dropped.
    Dropped,
    /// A handshake completed: a new (or updated) contact.
    Contact(String, Verification),
    /// Something else (a message, a part, a receipt).
    Done,
}

/// The handshake that answers invitation `index` arrived in `envelope`:
/// the invitation becomes a contact (named as chosen at `invite`, or
/// `contact-<id>`).
pub(crate) fn complete_invitation(
    p: &mut Profile,
    index: usize,
    envelope: &Envelope,
    now: u64,
) -> Result<Outcome, Error> {
    let Some(invitation) = p.invitations.get(index) else {
        return Ok(Outcome::Dropped);
    };
    let pending = PendingInvitation::from_bytes(&invitation.secret)
        .map_err(|_| Error::BrokenState("invitation"))?;
    let identity = p.identity_key_pair();
    let Ok((session, accepted)) =
        pending.complete(&mut rand::rng(), &identity, envelope.body(), now)
    else {
        return Ok(Outcome::Dropped);
    };
    let Ok(payload) = AcceptPayload::decode(&accepted.payload) else {
        return Ok(Outcome::Dropped);
    };
    let invitation = p.invitations.remove(index);
    let name = match &invitation.name {
        Some(n) => n.clone(),
        None => format!("contact-{}", invitation.id.0),
    };
    let m = &invitation.mailbox;
    let receive_on = LocalMailbox {
        relay: m.relay.clone(),
        receive_id: m.receive_id,
        send_id: m.send_id,
        recipient_key: m.recipient_key,
        delivery_key: m.delivery_key,
        contact_sender_key: Some(*accepted.sender_key.as_bytes()),
        secured: false,
    };
    let id = upsert_contact(
        p,
        &name,
        &accepted.identity,
        &session,
        RemoteMailbox {
            relay: StoredRelay::new(accepted.reply_to.relay.clone()),
            send_id: SendId(accepted.reply_to.send_id.0),
            sender_key: *payload.sender_seed,
        },
        receive_on,
        now,
    );
    let state = p
        .contact_by_id(id)
        .map(Contact::verification)
        .unwrap_or(Verification::Unverified);
    invitation_completed(p, invitation.id, &name);
    Ok(Outcome::Contact(name, state))
}

/// An invitation made for an introduction was accepted: the contact it
/// made is an introduced one.
fn invitation_completed(p: &mut Profile, invitation_id: InvitationId, name: &str) {
    let Some(contact) = p.contact(name).map(|c| c.id) else {
        return;
    };
    if let Some(i) = p
        .introduced
        .iter_mut()
        .find(|i| i.invitation() == Some(invitation_id))
    {
        i.complete(contact);
    }
}
