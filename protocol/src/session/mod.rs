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

mod handshake;
mod invitation;
mod ratchet;
mod state;
#[cfg(test)]
mod vectors;

pub use handshake::{Accepted, MAX_ACCEPT_PAYLOAD_LEN, ReplyAddress, accept};
pub use invitation::{
    INVITATION_VERSION, Invitation, KEM_CIPHERTEXT_LEN, KEM_PUBLIC_KEY_LEN, PendingInvitation,
    TEXT_PREFIX,
};
pub use state::{MAX_PLAINTEXT_LEN, MESSAGE_OVERHEAD, SESSION_STATE_VERSION, Session};
