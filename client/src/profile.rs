//! What the client keeps: the plaintext model inside the encrypted store.
//!
//! Everything here exists only inside [`crate::store`]'s ciphertext and in
//! memory; every type zeroizes itself on drop. Keys are kept as their
//! secret bytes; session state is the opaque byte string the session
//! layer's serializer produced.

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::nucleus::{IntroducedContact, Nucleus, NucleusTask};

/// `Debug` that names the type and nothing else: these values hold
/// secrets and plaintext, which must not reach logs or panic messages.
macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
    )*};
}

opaque_debug!(
    Profile,
    Contact,
    RemoteMailbox,
    LocalMailbox,
    Invitation,
    HistoryEntry,
    OutboxEntry,
    SentMessage,
    PartialMessage
);

/// How many received message ids are remembered to drop duplicates. The
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
    /// The home relay (`enlace://fingerprint@host:port`), where this
    /// organizer's mailboxes are made. Its fingerprint is pinned.
    pub home_relay: Option<String>,
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
    /// Recently received message ids (most recent last), for dropping
    /// duplicates; at most [`SEEN_IDS_KEPT`].
    pub seen: Vec<[u8; 16]>,
    /// Parts of long messages still being reassembled.
    pub partial: Vec<PartialMessage>,
    // Store format 2 appended the fields below (see `store`): keep new
    // fields at the end so a format 1 store migrates by appending their
    // empty encodings.
    /// Nuclei this organizer is in, was removed from, or is joining.
    pub nuclei: Vec<Nucleus>,
    /// Introductions to make and to accept (network work).
    pub nucleus_tasks: Vec<NucleusTask>,
    /// Contacts (and invitations) made through nucleus introductions.
    pub introduced: Vec<IntroducedContact>,
}

/// The postcard encoding of the fields [`Profile`] gained in store format
/// 2, all empty: appended to a format 1 profile to read it.
pub(crate) const FORMAT_1_TAIL: [u8; 3] = [0, 0, 0];

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
        }
    }

    /// Allocates a local id.
    pub fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
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
    pub fn contact_by_id(&self, id: u64) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id == id)
    }

    /// Records a received message id; returns false if it was seen before.
    pub fn mark_seen(&mut self, id: [u8; 16]) -> bool {
        if self.seen.contains(&id) {
            return false;
        }
        if self.seen.len() >= SEEN_IDS_KEPT {
            let excess = self.seen.len() + 1 - SEEN_IDS_KEPT;
            self.seen.drain(..excess);
        }
        self.seen.push(id);
        true
    }
}

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
    pub id: u64,
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
    fn name_matches(&self, name: &str) -> bool {
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
    pub relay: String,
    /// The send id.
    pub send_id: [u8; 16],
    /// Seed of our per-mailbox sender key, which signs our envelopes.
    pub sender_key: [u8; 32],
}

/// A mailbox of ours on some relay.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct LocalMailbox {
    /// The relay's address (with pinned fingerprint).
    pub relay: String,
    /// The receive id (known only to us).
    pub receive_id: [u8; 16],
    /// The send id (given to the contact).
    pub send_id: [u8; 16],
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
    pub id: u64,
    /// The name to give the contact who accepts, if chosen up front.
    pub name: Option<String>,
    /// The mailbox the invitation points to.
    pub mailbox: LocalMailbox,
    /// Serialized secret half of the invitation (session layer).
    pub secret: Vec<u8>,
    /// When it was made (Unix seconds).
    pub created_at: u64,
}

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum Direction {
    /// Received from the contact.
    In,
    /// Sent to the contact.
    Out,
}

/// A message in the history.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct HistoryEntry {
    /// The contact's local id.
    pub contact: u64,
    /// Which way it went.
    pub direction: Direction,
    /// The application-level message id.
    pub message_id: [u8; 16],
    /// The sender's clock when written (Unix seconds).
    pub sent_at: u64,
    /// When this client stored it (Unix seconds).
    pub stored_at: u64,
    /// The text.
    pub text: String,
    /// Whether `read`/`listen` has shown it yet.
    pub shown: bool,
}

/// A sealed envelope waiting for a relay to store it.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct OutboxEntry {
    /// The contact's local id.
    pub contact: u64,
    /// The envelope's own message id (what the relay and receiver see).
    pub envelope_id: [u8; 16],
    /// The application-level message id this envelope carries a part of
    /// (for control envelopes: the first id acknowledged, or zero).
    pub message_id: [u8; 16],
    /// The relay to send to.
    pub relay: String,
    /// The signed envelope's wire bytes.
    pub envelope: Vec<u8>,
    /// Whether this is a control envelope (handshake, receipt)
    /// rather than part of a user's message: it has no status of its own.
    pub control: bool,
}

/// Where a sent message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum Status {
    /// Sealed, waiting in the local outbox.
    Queued,
    /// Every part was stored by the contact's relay.
    Stored,
    /// The contact's client sent a delivery receipt.
    Delivered,
    /// Durably queued at the home relay, which forwards it to the contact's
    /// relay when that is reachable (appended last: older profiles decode).
    QueuedAtHome,
}

impl Status {
    /// The word shown in listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Stored => "stored",
            Self::Delivered => "delivered",
            Self::QueuedAtHome => "queued at home relay",
        }
    }
}

/// The status of a message this organizer sent.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SentMessage {
    /// The contact's local id.
    pub contact: u64,
    /// The application-level message id.
    pub message_id: [u8; 16],
    /// When it was written (Unix seconds).
    pub sent_at: u64,
    /// Where it is.
    pub status: Status,
    /// How many envelopes it was split into.
    pub parts: u16,
}

/// Parts received of a message split across envelopes.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PartialMessage {
    /// The contact's local id.
    pub contact: u64,
    /// The application-level message id.
    pub message_id: [u8; 16],
    /// The sender's clock when written (Unix seconds).
    pub sent_at: u64,
    /// One slot per part; `None` until it arrives.
    pub parts: Vec<Option<Vec<u8>>>,
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
            assert!(p.mark_seen(id));
        }
        assert_eq!(p.seen.len(), SEEN_IDS_KEPT);
        let mut last = [0u8; 16];
        last[..4].copy_from_slice(&(SEEN_IDS_KEPT as u32 + 9).to_be_bytes());
        assert!(!p.mark_seen(last));
    }

    #[test]
    fn format_1_profile_reads_with_empty_nuclei() {
        let mut p = Profile::new(&mut rand::rng(), 5);
        p.home_relay = Some("relay".into());
        let v2 = postcard::to_allocvec(&p).unwrap();
        // A format 1 profile is the same bytes without the new fields.
        let v1 = &v2[..v2.len() - FORMAT_1_TAIL.len()];
        let mut migrated = v1.to_vec();
        migrated.extend_from_slice(&FORMAT_1_TAIL);
        let back: Profile = postcard::from_bytes(&migrated).unwrap();
        assert_eq!(back.home_relay.as_deref(), Some("relay"));
        assert!(back.nuclei.is_empty() && back.introduced.is_empty());
        assert!(postcard::from_bytes::<Profile>(v1).is_err());
    }

    /// The relay addresses in the golden profile (canonical text, as
    /// `RelayAddress`'s `Display` writes it).
    const HOME: &str =
        "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.barrio.example:4433";
    const AWAY: &str = "enlace://aeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaq@[::1]:7000";

    fn key(seed: u8) -> enlace_protocol::keys::SigningKeyPair {
        enlace_protocol::keys::SigningKeyPair::from_secret_bytes(&[seed; 32])
    }

    fn pk(seed: u8) -> [u8; 32] {
        *key(seed).public().as_bytes()
    }

    /// A profile with something in every field: written by the code of
    /// commit 5f48a08 as `client/testdata/profile-format-2.hex`.
    fn golden_profile() -> Profile {
        use crate::nucleus::{Action, Op, SeenGroupMessage};
        let nucleus = [0x61; 16];
        let create = Op::sign(&key(0x11), nucleus, 1, Action::Create, pk(0x11), "barrio").unwrap();
        let add = Op::sign(&key(0x11), nucleus, 2, Action::Add, pk(2), "Ana").unwrap();
        let intro =
            crate::nucleus::Introduction::sign(&key(3), nucleus, pk(0x11), b"an invitation")
                .unwrap();
        let mut p = Profile::new(&mut rand::rng(), 1_790_000_000);
        p.identity = [0x11; 32];
        p.home_relay = Some(HOME.into());
        p.next_id = 6;
        p.contacts.push(Contact {
            id: 1,
            name: "Ana".into(),
            identity_key: pk(2),
            verified_key: Some(pk(2)),
            key_changed: false,
            session: vec![1, 2, 3],
            send_to: Some(RemoteMailbox {
                relay: AWAY.into(),
                send_id: [0x21; 16],
                sender_key: [0x22; 32],
            }),
            receive_on: Some(LocalMailbox {
                relay: HOME.into(),
                receive_id: [0x31; 16],
                send_id: [0x32; 16],
                recipient_key: [0x33; 32],
                delivery_key: [0x34; 32],
                contact_sender_key: Some([0x35; 32]),
                secured: true,
            }),
            added_at: 1_790_000_100,
        });
        p.contacts.push(Contact {
            id: 2,
            name: "Ben ñ".into(),
            identity_key: pk(4),
            verified_key: None,
            key_changed: true,
            session: Vec::new(),
            send_to: None,
            receive_on: None,
            added_at: 1_790_000_200,
        });
        p.invitations.push(Invitation {
            id: 3,
            name: Some("Cai".into()),
            mailbox: LocalMailbox {
                relay: HOME.into(),
                receive_id: [0x36; 16],
                send_id: [0x37; 16],
                recipient_key: [0x38; 32],
                delivery_key: [0x39; 32],
                contact_sender_key: None,
                secured: false,
            },
            secret: vec![9; 5],
            created_at: 1_790_000_300,
        });
        p.history.push(HistoryEntry {
            contact: 1,
            direction: Direction::In,
            message_id: [0x41; 16],
            sent_at: 1_790_000_400,
            stored_at: 1_790_000_401,
            text: "asamblea el jueves".into(),
            shown: false,
        });
        p.history.push(HistoryEntry {
            contact: 1,
            direction: Direction::Out,
            message_id: [0x42; 16],
            sent_at: 1_790_000_500,
            stored_at: 1_790_000_500,
            text: "¡ahí estaré!".into(),
            shown: true,
        });
        p.outbox.push(OutboxEntry {
            contact: 1,
            envelope_id: [0x43; 16],
            message_id: [0x42; 16],
            relay: AWAY.into(),
            envelope: vec![0xe0; 7],
            control: false,
        });
        p.outbox.push(OutboxEntry {
            contact: 1,
            envelope_id: [0x44; 16],
            message_id: [0; 16],
            relay: AWAY.into(),
            envelope: vec![0xe1; 3],
            control: true,
        });
        for (id, status) in [
            ([0x42; 16], Status::QueuedAtHome),
            ([0x45; 16], Status::Delivered),
            ([0x46; 16], Status::Stored),
            ([0x47; 16], Status::Queued),
        ] {
            p.sent.push(SentMessage {
                contact: 1,
                message_id: id,
                sent_at: 1_790_000_600,
                status,
                parts: 2,
            });
        }
        p.seen.push([0x51; 16]);
        p.seen.push([0x52; 16]);
        p.partial.push(PartialMessage {
            contact: 1,
            message_id: [0x53; 16],
            sent_at: 1_790_000_700,
            parts: vec![Some(vec![1, 2]), None],
        });
        let seen = SeenGroupMessage {
            author: [0x54; 32],
            message_id: [0x55; 16],
        };
        p.nuclei.push(Nucleus {
            id: nucleus,
            name: "barrio".into(),
            creator: Some(pk(0x11)),
            ops: vec![create.as_bytes().to_vec(), add.as_bytes().to_vec()],
            lamport: 2,
            seen: vec![seen.clone()],
            received: vec![seen],
        });
        p.nucleus_tasks.push(NucleusTask::Introduce {
            nucleus,
            member: pk(5),
            via: pk(2),
        });
        p.nucleus_tasks.push(NucleusTask::Accept {
            nucleus,
            introduction: intro.as_bytes().to_vec(),
            via: 1,
        });
        p.introduced.push(IntroducedContact {
            local: 3,
            pending: true,
            member: pk(6),
            by: pk(2),
            nucleus,
        });
        p
    }

    fn golden_bytes() -> Vec<u8> {
        let text = include_str!("../testdata/profile-format-2.hex");
        hex::decode(text.split_whitespace().collect::<String>()).unwrap()
    }

    /// The postcard encoding of a profile is the store's format: today's
    /// code must encode the golden profile to the golden bytes, and decode
    /// and re-encode them unchanged.
    #[test]
    fn golden_profile_encoding_is_unchanged() {
        let golden = golden_bytes();
        assert_eq!(postcard::to_allocvec(&golden_profile()).unwrap(), golden);
        let back: Profile = postcard::from_bytes(&golden).unwrap();
        assert_eq!(postcard::to_allocvec(&back).unwrap(), golden);
        assert_eq!(back.home_relay.as_deref(), Some(HOME));
        assert_eq!(back.contacts.len(), 2);
        let ana = &back.contacts[0];
        assert_eq!((ana.id, ana.name.as_str()), (1, "Ana"));
        assert_eq!(ana.send_to.as_ref().unwrap().send_id, [0x21; 16]);
        assert_eq!(ana.send_to.as_ref().unwrap().relay, AWAY);
        let local = ana.receive_on.as_ref().unwrap();
        assert_eq!((local.receive_id, local.send_id), ([0x31; 16], [0x32; 16]));
        assert_eq!(local.relay, HOME);
        assert_eq!(back.contacts[1].verification(), Verification::KeyChanged);
        assert_eq!(back.invitations[0].id, 3);
        assert_eq!(back.outbox[0].envelope_id, [0x43; 16]);
        assert_eq!(back.outbox[0].message_id, [0x42; 16]);
        assert_eq!(back.outbox[0].relay, AWAY);
        assert_eq!(back.sent[0].status, Status::QueuedAtHome);
        assert_eq!(back.nuclei[0].members().len(), 2);
        assert_eq!(back.nucleus_tasks.len(), 2);
        assert_eq!(back.introduced[0].local, 3);
    }

    #[test]
    fn key_change_needs_reverification() {
        let mut c = Contact {
            id: 1,
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
