//! Our mailboxes, with the keys to read them: what `read` and `listen`
//! subscribe to.

use std::collections::BTreeSet;

use enlace_protocol::keys::SigningKeyPair;

use crate::opaque::opaque_debug;
use crate::profile::{LocalMailbox, Profile, ReceiveId, StoredRelay};

/// One of our mailboxes, with the keys to read it.
pub(crate) struct Mailbox {
    /// The relay it is on.
    pub(crate) relay: StoredRelay,
    /// Its receive id.
    pub(crate) receive_id: ReceiveId,
    /// The per-mailbox recipient key that signs our commands.
    pub(crate) recipient: SigningKeyPair,
    /// The delivery key agreed with the relay.
    pub(crate) delivery: [u8; 32],
    /// The contact's sender key, while the relay has not confirmed
    /// securing the mailbox with it.
    pub(crate) secure_with: Option<[u8; 32]>,
}

opaque_debug!(Mailbox);

/// Every mailbox of ours: pending invitations' first, then contacts'.
pub(crate) fn mailboxes(profile: &Profile) -> Vec<Mailbox> {
    profile
        .local_mailboxes()
        .map(|m| Mailbox {
            relay: m.relay.clone(),
            receive_id: m.receive_id,
            recipient: SigningKeyPair::from_secret_bytes(&m.recipient_key),
            delivery: m.delivery_key,
            secure_with: m.contact_sender_key.filter(|_| !m.secured),
        })
        .collect()
}

/// The receive ids of every mailbox of ours, to notice a new one.
pub(crate) fn mailbox_set(profile: &Profile) -> BTreeSet<[u8; 16]> {
    profile.local_mailboxes().map(|m| m.receive_id.0).collect()
}

/// Our mailbox with this receive id.
pub(crate) fn find_local(p: &Profile, rid: ReceiveId) -> Option<&LocalMailbox> {
    p.local_mailboxes().find(|m| m.receive_id == rid)
}

/// The relay confirmed securing a contact's mailbox of ours.
pub(crate) fn mark_secured(p: &mut Profile, rid: ReceiveId) {
    if let Some(m) = p
        .contacts
        .iter_mut()
        .filter_map(|c| c.receive_on.as_mut())
        .find(|m| m.receive_id == rid)
    {
        m.secured = true;
    }
}
