//! The whole state of one organizer's client, and the lookups every layer
//! needs.

use enlace_protocol::address::RelayAddress;
use enlace_protocol::keys::SigningKeyPair;
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::contact::{Contact, Invitation, LocalMailbox};
use super::ids::{ContactId, EnvelopeId, InvitationId};
use super::messages::{HistoryEntry, OutboxEntry, PartialMessage, SentMessage};
use super::nucleus::{IntroducedContact, Nucleus, NucleusTask};
use super::relay::StoredRelay;
use super::seen;
use super::timer::{TimerNotice, TimerSetting};
use crate::error::Error;
use crate::opaque::opaque_debug;

/// How many received envelope ids are remembered to drop duplicates. The
/// relay keeps at most this order of envelopes per mailbox, so a duplicate
/// older than this window cannot arrive.
pub const SEEN_IDS_KEPT: usize = 4096;

/// The whole state of one organizer's client.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Profile {
    /// The ed25519 seed of the long-term identity key.
    pub identity: [u8; 32],
    /// When the profile was made (Unix seconds).
    pub created_at: u64,
    /// The home relay, where this organizer's mailboxes are made. Its
    /// fingerprint is pinned.
    pub home_relay: Option<StoredRelay>,
    /// Local ids for contacts and invitations.
    pub next_id: u64,
    /// Contacts, in the order they were added.
    pub contacts: Vec<Contact>,
    /// Invitations made and not yet accepted.
    pub invitations: Vec<Invitation>,
    /// Messages shown to the user, both directions, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Envelopes sealed for sending and not yet stored by a relay, oldest
    /// first. Sealing happens once (the ratchet advances then), so a retry
    /// resends the same bytes and the receiver drops duplicates by id.
    pub outbox: Vec<OutboxEntry>,
    /// Status of every message this organizer sent.
    pub sent: Vec<SentMessage>,
    /// Recently received envelope ids (most recent last), for dropping
    /// duplicates; at most [`SEEN_IDS_KEPT`].
    pub seen: Vec<EnvelopeId>,
    /// Parts of long messages still being reassembled.
    pub partial: Vec<PartialMessage>,
    // Store format 2 appended the fields below; format 3 changed the
    // nuclei and appended the timers (`super::upgrade` reads formats 1
    // and 2).
    /// Nuclei this organizer is in, was removed from, or is joining.
    pub nuclei: Vec<Nucleus>,
    /// Introductions to make and to accept (network work).
    pub nucleus_tasks: Vec<NucleusTask>,
    /// Contacts (and invitations) made through nucleus introductions.
    pub introduced: Vec<IntroducedContact>,
    /// Disappearing-message timers set per conversation (`timer`).
    pub timers: Vec<TimerSetting>,
    /// Timer changes to show in their conversations.
    pub timer_notices: Vec<TimerNotice>,
}

opaque_debug!(Profile);

impl Profile {
    /// A fresh profile with a new identity key.
    pub fn new(rng: &mut impl CryptoRng, now: u64) -> Self {
        let mut identity = [0u8; 32];
        rng.fill_bytes(&mut identity);
        Self {
            identity,
            created_at: now,
            home_relay: None,
            next_id: 1,
            contacts: Vec::new(),
            invitations: Vec::new(),
            history: Vec::new(),
            outbox: Vec::new(),
            sent: Vec::new(),
            seen: Vec::new(),
            partial: Vec::new(),
            nuclei: Vec::new(),
            nucleus_tasks: Vec::new(),
            introduced: Vec::new(),
            timers: Vec::new(),
            timer_notices: Vec::new(),
        }
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Allocates a contact's local id.
    pub fn allocate_contact_id(&mut self) -> ContactId {
        ContactId(self.allocate_id())
    }

    /// Allocates an invitation's local id.
    pub fn allocate_invitation_id(&mut self) -> InvitationId {
        InvitationId(self.allocate_id())
    }

    /// The identity key pair.
    pub fn identity_key_pair(&self) -> SigningKeyPair {
        SigningKeyPair::from_secret_bytes(&self.identity)
    }

    /// The public identity key.
    pub fn own_key(&self) -> [u8; 32] {
        *self.identity_key_pair().public().as_bytes()
    }

    /// The home relay's address.
    pub fn home(&self) -> Result<&RelayAddress, Error> {
        self.home_relay.as_ref().ok_or(Error::NoRelay)?.address()
    }

    /// The contact with this name (names are compared case-insensitively).
    pub fn contact(&self, name: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.name_matches(name))
    }

    /// The contact with this name, mutably.
    pub fn contact_mut(&mut self, name: &str) -> Option<&mut Contact> {
        self.contacts.iter_mut().find(|c| c.name_matches(name))
    }

    /// The contact with this local id.
    pub fn contact_by_id(&self, id: ContactId) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    /// The contact with this local id, mutably.
    pub fn contact_by_id_mut(&mut self, id: ContactId) -> Option<&mut Contact> {
        self.contacts.iter_mut().find(|c| c.id == id)
    }

    /// Our mailboxes: those of pending invitations, then those contacts
    /// write to.
    pub fn local_mailboxes(&self) -> impl Iterator<Item = &LocalMailbox> {
        self.invitations
            .iter()
            .map(|i| &i.mailbox)
            .chain(self.contacts.iter().filter_map(|c| c.receive_on.as_ref()))
    }

    /// Records a received envelope id; returns false if it was seen before.
    pub fn mark_seen(&mut self, id: EnvelopeId) -> bool {
        seen::remember(&mut self.seen, id, SEEN_IDS_KEPT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_ids_are_bounded() {
        let mut p = Profile::new(&mut rand::rng(), 0);
        for i in 0..(SEEN_IDS_KEPT as u32 + 10) {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            assert!(p.mark_seen(EnvelopeId(id)));
        }
        assert_eq!(p.seen.len(), SEEN_IDS_KEPT);
        let mut last = [0u8; 16];
        last[..4].copy_from_slice(&(SEEN_IDS_KEPT as u32 + 9).to_be_bytes());
        assert!(!p.mark_seen(EnvelopeId(last)));
    }

    #[test]
    fn format_1_profile_reads_with_empty_nuclei() {
        let mut p = Profile::new(&mut rand::rng(), 5);
        p.home_relay = Some(StoredRelay::from_text("relay".into()));
        let now = postcard::to_allocvec(&p).unwrap();
        // A format 1 profile is the same bytes without the fields formats
        // 2 (nuclei, tasks, introduced) and 3 (timers, notices) appended.
        let v1 = &now[..now.len() - 2 - super::super::upgrade::FORMAT_1_TAIL.len()];
        let back = super::super::upgrade::decode(1, v1).unwrap();
        assert_eq!(
            back.home_relay.as_ref().map(StoredRelay::as_str),
            Some("relay")
        );
        assert!(back.nuclei.is_empty() && back.introduced.is_empty() && back.timers.is_empty());
        assert!(postcard::from_bytes::<Profile>(v1).is_err());
    }
}
