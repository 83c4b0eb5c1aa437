//! Contacts, the mailboxes that connect us to them, and invitations not
//! yet accepted.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ids::{ContactId, InvitationId, ReceiveId, SendId};
use super::relay::StoredRelay;
use crate::opaque::opaque_debug;

/// Whether the user checked a contact's identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Never compared.
    Unverified,
    /// The safety number was compared and confirmed for the current key.
    Verified,
    /// The identity key changed since the contact was added or verified:
    /// sending is refused until the user verifies again.
    KeyChanged,
}

impl Verification {
    /// The word shown in listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unverified => "unverified",
            Self::Verified => "verified",
            Self::KeyChanged => "identity-changed",
        }
    }
}

/// Someone this organizer talks to.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Contact {
    /// Local id, stable across renames.
    pub id: ContactId,
    /// The name the user gave.
    pub name: String,
    /// The contact's long-term ed25519 identity key.
    pub identity_key: [u8; 32],
    /// The identity key the user last confirmed with `verify --confirm`.
    pub verified_key: Option<[u8; 32]>,
    /// Set when a new handshake brought a different identity key than the
    /// one held; cleared only by confirming the new safety number.
    pub key_changed: bool,
    /// Serialized end-to-end session state.
    pub session: Vec<u8>,
    /// Where to send: the contact's mailbox for us.
    pub send_to: Option<RemoteMailbox>,
    /// Where we receive from this contact.
    pub receive_on: Option<LocalMailbox>,
    /// When the contact was added (Unix seconds).
    pub added_at: u64,
}

impl Contact {
    pub(super) fn name_matches(&self, name: &str) -> bool {
        self.name.to_lowercase() == name.to_lowercase()
    }

    /// The verification state.
    pub fn verification(&self) -> Verification {
        if self.key_changed {
            Verification::KeyChanged
        } else if self.verified_key == Some(self.identity_key) {
            Verification::Verified
        } else {
            Verification::Unverified
        }
    }

    /// Installs a (possibly new) identity key from a handshake, flagging a
    /// change from the key held before.
    pub fn set_identity_key(&mut self, key: [u8; 32]) {
        if key != self.identity_key {
            self.key_changed = true;
            self.identity_key = key;
        }
    }

    /// Marks the current identity key as verified.
    pub fn confirm_verified(&mut self) {
        self.verified_key = Some(self.identity_key);
        self.key_changed = false;
    }
}

/// A mailbox of someone else's, on some relay, that we may send to.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct RemoteMailbox {
    /// The relay's address (with pinned fingerprint).
    pub relay: StoredRelay,
    /// The send id.
    pub send_id: SendId,
    /// Seed of our per-mailbox sender key, which signs our envelopes.
    pub sender_key: [u8; 32],
}

/// A mailbox of ours on some relay.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct LocalMailbox {
    /// The relay's address (with pinned fingerprint).
    pub relay: StoredRelay,
    /// The receive id (known only to us).
    pub receive_id: ReceiveId,
    /// The send id (given to the contact).
    pub send_id: SendId,
    /// Seed of the per-mailbox recipient key that signs our commands.
    pub recipient_key: [u8; 32],
    /// The delivery key agreed with the relay.
    pub delivery_key: [u8; 32],
    /// The contact's per-mailbox sender key, once known: the only key the
    /// relay should accept envelopes from.
    pub contact_sender_key: Option<[u8; 32]>,
    /// Whether the relay confirmed securing the mailbox with that key.
    pub secured: bool,
}

/// An invitation made and not yet accepted.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Invitation {
    /// Local id.
    pub id: InvitationId,
    /// The name to give the contact who accepts, if chosen up front.
    pub name: Option<String>,
    /// The mailbox the invitation points to.
    pub mailbox: LocalMailbox,
    /// Serialized secret half of the invitation (session layer).
    pub secret: Vec<u8>,
    /// When it was made (Unix seconds).
    pub created_at: u64,
}

opaque_debug!(Contact, RemoteMailbox, LocalMailbox, Invitation);

/// Test data: a contact with an id, a name and an identity key made from
/// the id; `writable` gives it a mailbox to send to.
#[cfg(test)]
impl Contact {
    pub(crate) fn for_tests(id: ContactId, name: &str, writable: bool) -> Self {
        Self {
            id,
            name: name.into(),
            identity_key: [id.0 as u8; 32],
            verified_key: None,
            key_changed: false,
            session: Vec::new(),
            send_to: writable.then(|| RemoteMailbox {
                relay: StoredRelay::from_text("relay".into()),
                send_id: SendId([1; 16]),
                sender_key: [2; 32],
            }),
            receive_on: None,
            added_at: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_change_needs_reverification() {
        let mut c = Contact {
            id: ContactId(1),
            name: "Ana".into(),
            identity_key: [1; 32],
            verified_key: None,
            key_changed: false,
            session: Vec::new(),
            send_to: None,
            receive_on: None,
            added_at: 0,
        };
        assert_eq!(c.verification(), Verification::Unverified);
        c.confirm_verified();
        assert_eq!(c.verification(), Verification::Verified);
        c.set_identity_key([1; 32]);
        assert_eq!(c.verification(), Verification::Verified);
        c.set_identity_key([2; 32]);
        assert_eq!(c.verification(), Verification::KeyChanged);
        c.confirm_verified();
        assert_eq!(c.verification(), Verification::Verified);
    }
}
