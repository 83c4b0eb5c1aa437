//! The real [`Seal`]: end-to-end encryption in the contact's session and
//! the envelope signature with our sender key for their mailbox.

use enlace_protocol::envelope::{CoarseTime, Envelope};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::Session;
use zeroize::Zeroizing;

use super::outbox::Seal;
use crate::error::Error;
use crate::profile::Contact;

/// A stored session that does not decode or cannot be used.
pub(crate) fn broken_session(_: enlace_protocol::Error) -> Error {
    Error::BrokenState("session")
}

/// Replaces stored session bytes, zeroizing the old ones.
pub(crate) fn store_session(contact: &mut Contact, session: &Session) {
    let old = std::mem::replace(&mut contact.session, session.to_bytes().to_vec());
    drop(Zeroizing::new(old));
}

/// Seals in the contact's session and signs the envelope, dated `now`.
pub(crate) fn sealer(now: u64) -> impl Seal {
    move |contact, plaintext, envelope_id| {
        let to = contact
            .send_to
            .as_ref()
            .ok_or_else(|| Error::NoRoute(contact.name.clone()))?;
        let mut session = Session::from_bytes(&contact.session).map_err(broken_session)?;
        let body = session
            .encrypt(&mut rand::rng(), plaintext)
            .map_err(broken_session)?;
        let sender = SigningKeyPair::from_secret_bytes(&to.sender_key);
        let envelope = Envelope::sign(
            &sender,
            to.send_id.mailbox(),
            envelope_id.message_id(),
            CoarseTime::from_unix_secs(now),
            &body,
        )
        .map_err(|_| Error::Encode)?;
        let relay = to.relay.clone();
        store_session(contact, &session);
        Ok((envelope.into_bytes(), relay))
    }
}
