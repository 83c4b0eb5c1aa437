//! End-to-end sessions between two organizers: signed invitations, a hybrid
//! post-quantum handshake, and the Double Ratchet with header encryption.
//!
//! A session is what a seized relay, a network observer and a later quantum
//! computer cannot read: every message is padded to a fixed envelope body
//! size and encrypted so that the relay sees no keys, counters or lengths.
//!
//! The flow, with the calls each side makes:
//!
//! 1. The inviter makes a [`PendingInvitation`] for one of its mailboxes and
//!    hands out [`Invitation::to_text`] (or [`Invitation::to_qr`]).
//! 2. The accepter [`Invitation::parse`]s it and calls [`accept`], which
//!    returns its [`Session`] and a first message of
//!    [`BodySize::Medium`](crate::envelope::BodySize::Medium) bytes for the
//!    inviter's mailbox.
//! 3. The inviter calls [`PendingInvitation::complete`] on that message and
//!    gets its [`Session`] and the accepter's identity, reply address and
//!    mailbox sender key ([`Accepted`]).
//! 4. Both sides [`Session::encrypt`] and [`Session::decrypt`] chat
//!    messages, each exactly [`BodySize::Small`](crate::envelope::BodySize::Small)
//!    bytes, and store [`Session::to_bytes`] in their encrypted store
//!    between messages.
//!
//! Like the rest of the crate this is sans-IO: the current time (`now`,
//! Unix seconds) and a cryptographic RNG are arguments. Nothing here signs
//! messages with identity keys, so a contact cannot prove to a third party
//! who wrote what; only the invitation is signed.
//!
//! Specifications: Signal's X3DH and PQXDH (the handshake is in their
//! style, not wire compatible), the Double Ratchet (revision 4) with header
//! encryption, FIPS 203 (ML-KEM-768), RFC 7748, RFC 5869, RFC 2104 and
//! RFC 8439. The exact construction is in `docs/protocol.md` section 11.
//!
//! # Embedding the protocol crate
//!
//! ```
//! use enlace_protocol::address::RelayAddress;
//! use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
//! use enlace_protocol::keys::SigningKeyPair;
//! use enlace_protocol::session::{self, PendingInvitation, ReplyAddress, Session};
//!
//! # fn main() -> Result<(), enlace_protocol::Error> {
//! let mut rng = rand::rng();
//! let now = 1_790_000_000; // Unix seconds, from your clock
//! let relay: RelayAddress =
//!     "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.example.org:4433"
//!         .parse()?;
//!
//! // Ana invites: a mailbox send id she got from her relay, valid one week.
//! let ana = SigningKeyPair::generate(&mut rng);
//! let pending = PendingInvitation::create(
//!     &mut rng, &ana, relay.clone(), MailboxId([1; 16]), now + 7 * 86_400,
//! );
//! let code = pending.invitation().to_text(); // paste, read aloud, or to_qr()
//!
//! // Ben accepts, giving his own mailbox and a fresh key to sign envelopes
//! // into Ana's mailbox with.
//! let ben = SigningKeyPair::generate(&mut rng);
//! let invitation = session::Invitation::parse(&code, now)?;
//! let ben_sender = SigningKeyPair::generate(&mut rng);
//! let reply = ReplyAddress { relay, send_id: MailboxId([2; 16]) };
//! let (mut ben_session, first) =
//!     session::accept(&mut rng, &ben, &invitation, &reply, ben_sender.public(), b"Ben", now)?;
//! let envelope = Envelope::sign(
//!     &ben_sender, invitation.send_id(), MessageId([3; 16]),
//!     CoarseTime::from_unix_secs(now), &first,
//! )?;
//!
//! // Ana completes the handshake from the envelope's body.
//! let (mut ana_session, accepted) =
//!     pending.complete(&mut rng, &ana, envelope.body(), now)?;
//! assert_eq!(&accepted.identity, ben.public());
//! assert_eq!(accepted.reply_to, reply);
//! assert_eq!(accepted.sender_key, *ben_sender.public()); // secure the mailbox with it
//! assert_eq!(ana_session.safety_number(), ben_session.safety_number());
//!
//! // Chat: every body is exactly 2048 bytes.
//! let body = ana_session.encrypt(&mut rng, b"meeting at 6")?;
//! assert_eq!(body.len(), 2048);
//! assert_eq!(&*ben_session.decrypt(&mut rng, &body)?, b"meeting at 6");
//! let body = ben_session.encrypt(&mut rng, b"ok")?;
//!
//! // Store the session (encrypted!) and restore it later.
//! let stored = ana_session.to_bytes();
//! let mut ana_session = Session::from_bytes(&stored)?;
//! assert_eq!(&*ana_session.decrypt(&mut rng, &body)?, b"ok");
//! # Ok(())
//! # }
//! ```

use std::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::Error;
use crate::codec::Reader;
use crate::envelope::BodySize;
use crate::keys::{PUBLIC_KEY_LEN, PublicKey, SafetyNumber};

mod handshake;
mod invitation;
mod ratchet;
#[cfg(test)]
mod vectors;

pub use handshake::{Accepted, MAX_ACCEPT_PAYLOAD_LEN, ReplyAddress, accept};
pub use invitation::{
    INVITATION_VERSION, Invitation, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_KEY_LEN, PendingInvitation,
    TEXT_PREFIX,
};
use ratchet::Ratchet;

/// Bytes a chat message adds to its text: the encrypted header (81), the
/// body's authentication tag (16) and the length prefix of the padding (2).
pub const MESSAGE_OVERHEAD: usize = ratchet::MESSAGE_OVERHEAD;

/// The longest plaintext one chat message ([`BodySize::Small`]) carries.
/// Split longer text into several messages.
pub const MAX_PLAINTEXT_LEN: usize = BodySize::Small.len() - MESSAGE_OVERHEAD;

/// The version of [`Session::to_bytes`].
pub const SESSION_STATE_VERSION: u8 = 1;

/// An end-to-end session with one contact.
///
/// Encrypt and decrypt change the state: store [`Session::to_bytes`] after
/// each call that succeeded (or before the ciphertext leaves the device),
/// or a restart reuses keys of an older state.
pub struct Session {
    local: PublicKey,
    remote: PublicKey,
    ad: [u8; 32],
    ratchet: Ratchet,
}

impl Session {
    fn new(local: PublicKey, remote: PublicKey, ad: [u8; 32], ratchet: Ratchet) -> Self {
        Self {
            local,
            remote,
            ad,
            ratchet,
        }
    }

    /// Encrypts up to [`MAX_PLAINTEXT_LEN`] bytes into a body of exactly
    /// [`BodySize::Small`] bytes for an envelope to the contact. Draws 24
    /// bytes (the header nonce) from `rng`.
    pub fn encrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.encrypt_sized(rng, plaintext, BodySize::Small)
    }

    /// Encrypts into a body of exactly `size` bytes, for content larger
    /// than a chat message (up to `size.len() - MESSAGE_OVERHEAD` bytes).
    pub fn encrypt_sized(
        &mut self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
        size: BodySize,
    ) -> Result<Vec<u8>, Error> {
        self.ratchet.encrypt(rng, &self.ad, plaintext, size.len())
    }

    /// Decrypts the body of an envelope from the contact (of any of the
    /// fixed sizes). Messages may come
    /// out of order within [`MAX_FORWARD_JUMPS`](crate::limits::MAX_FORWARD_JUMPS);
    /// each decrypts at most once. Any failure (tampered, replayed, too far
    /// ahead, another session's) is [`Error::VerificationFailed`] and leaves
    /// the session unchanged; only an authentic message of a header version
    /// this crate does not speak is [`Error::UnsupportedVersion`] (also
    /// leaving it unchanged). Draws 32 bytes from `rng` when the contact has
    /// started a new ratchet step.
    pub fn decrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if BodySize::fitting(body.len()).is_none_or(|s| s.len() != body.len()) {
            return Err(Error::VerificationFailed);
        }
        self.ratchet.decrypt(rng, &self.ad, body)
    }

    /// Your own identity key.
    pub fn local_identity(&self) -> &PublicKey {
        &self.local
    }

    /// The contact's identity key, as authenticated by the handshake.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote
    }

    /// The safety number to compare with the contact in person.
    pub fn safety_number(&self) -> SafetyNumber {
        SafetyNumber::new(&self.local, &self.remote)
    }

    /// Serializes the whole state (including secret keys) for the client's
    /// encrypted store: version u8, local identity [32], remote identity
    /// [32], associated data [32], ratchet state (`docs/protocol.md` section 11).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Exactly sized: a Vec that grows frees its old buffer unzeroized.
        let len = 1 + 3 * PUBLIC_KEY_LEN + self.ratchet.encoded_len();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.push(SESSION_STATE_VERSION);
        out.extend_from_slice(self.local.as_bytes());
        out.extend_from_slice(self.remote.as_bytes());
        out.extend_from_slice(&self.ad);
        self.ratchet.encode(&mut out);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Restores a session from [`Session::to_bytes`]. Bounded and total:
    /// counts are checked against the limits before anything is allocated.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SESSION_STATE_VERSION {
            return Err(Error::UnsupportedVersion(u16::from(version)));
        }
        let local = PublicKey::from_bytes(&r.array::<PUBLIC_KEY_LEN>()?)?;
        let remote = PublicKey::from_bytes(&r.array::<PUBLIC_KEY_LEN>()?)?;
        let ad = r.array()?;
        let ratchet = Ratchet::decode_from(&mut r)?;
        r.finish()?;
        Ok(Self::new(local, remote, ad, ratchet))
    }

    /// Skipped message keys held for late messages.
    pub fn skipped_keys(&self) -> usize {
        self.ratchet.skipped_len()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("ratchet", &self.ratchet)
            .finish_non_exhaustive()
    }
}
