//! The hybrid X3DH/PQXDH-style handshake that starts a session.
//!
//! The inviter (A) published, signed by its identity key `IK_A`, an X25519
//! key `SPK_A` and an ML-KEM-768 key `PQ_A`. The accepter (B) has identity
//! `IK_B`. Identity keys are ed25519; for Diffie-Hellman each is used as
//! the birationally equivalent X25519 key (`IKx`). The accepter makes an
//! ephemeral `EK_B` and computes
//!
//! ```text
//! DH1 = X25519(IKx_B, SPK_A)   authenticates B
//! DH2 = X25519(EK_B, IKx_A)    authenticates A
//! DH3 = X25519(EK_B, SPK_A)    forward secrecy
//! (CT, SS) = ML-KEM-768.Encaps(PQ_A)   post-quantum secrecy
//! ```
//!
//! The first message is `EK_B | CT | sealed IK_B | ratchet message`. `IK_B`
//! is sealed under a key from DH3 and SS only, so neither the relay nor a
//! network observer learns who accepted. Everything then goes through one
//! HKDF-SHA256 whose info is a transcript of both identity keys and every
//! public key and ciphertext, each tagged with its type. The first ratchet
//! message, under keys from that HKDF, authenticates the whole exchange and
//! carries the accepter's reply address and mailbox sender key.
//! Construction details: `docs/protocol.md` section 11.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use ml_kem::array::Array;
use ml_kem::{Decapsulate, Encapsulate};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::invitation::{
    Invitation, KEM_CIPHERTEXT_LEN, PendingInvitation, kem_decapsulation_key, parse_kem_key,
};
use super::ratchet::{MESSAGE_OVERHEAD, Ratchet, Secret, split3};
use super::state::Session;
use crate::address::RelayAddress;
use crate::codec::{Reader, domain_separated};
use crate::delivery::DhKeyPair;
use crate::envelope::{BodySize, MAILBOX_ID_LEN, MailboxId};
use crate::keys::{PUBLIC_KEY_LEN, PublicKey, SigningKeyPair, labels};
use crate::limits::MAX_HOST_LEN;
use crate::{DecodeError, Error};

/// Bytes of the sealed accepter identity: key and tag.
const SEALED_IDENTITY_LEN: usize = PUBLIC_KEY_LEN + 16;
/// Bytes before the ratchet message in the accepter's first message.
pub(crate) const PREFIX_LEN: usize = 32 + KEM_CIPHERTEXT_LEN + SEALED_IDENTITY_LEN;
/// Bytes of the ratchet message inside the first message.
const FIRST_RATCHET_LEN: usize = BodySize::Medium.len() - PREFIX_LEN;
/// Largest encoded reply address plus send id plus sender key.
const MAX_HELLO_FIXED: usize = 32 + 1 + MAX_HOST_LEN + 2 + MAILBOX_ID_LEN + PUBLIC_KEY_LEN;

/// Largest application payload the accepter's first message carries,
/// whatever the length of its relay's host name.
pub const MAX_ACCEPT_PAYLOAD_LEN: usize = FIRST_RATCHET_LEN - MESSAGE_OVERHEAD - MAX_HELLO_FIXED;

/// Type tags in the transcript: one per kind of key, so no encoding of one
/// kind can be read as another (the PQXDH analysis found DH/KEM key
/// confusion without them).
const TAG_IDENTITY: u8 = 0x01;
const TAG_X25519: u8 = 0x02;
const TAG_KEM_KEY: u8 = 0x03;
const TAG_KEM_CIPHERTEXT: u8 = 0x04;

/// Where a contact can write to you: a relay and the send id of one of your
/// mailboxes on it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReplyAddress {
    /// The relay holding the mailbox.
    pub relay: RelayAddress,
    /// The mailbox's send id.
    pub send_id: MailboxId,
}

/// What the inviter learns when a handshake completes.
#[derive(Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The accepter's identity key, authenticated by the handshake. Compare
    /// safety numbers to know whose it is.
    pub identity: PublicKey,
    /// Where to write to the accepter.
    pub reply_to: ReplyAddress,
    /// The per-mailbox key the accepter signs its envelopes to the
    /// inviter's mailbox with: secure the mailbox with it.
    pub sender_key: PublicKey,
    /// The application payload of the first message.
    pub payload: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("identity", &self.identity)
            .field("reply_to", &self.reply_to)
            .field("sender_key", &self.sender_key)
            .finish_non_exhaustive()
    }
}

/// The keys a handshake derives (checked by the test vectors).
pub(crate) struct Derived {
    pub(crate) root: Secret,
    pub(crate) accepter_header: Secret,
    pub(crate) inviter_header: Secret,
    pub(crate) ad: [u8; 32],
}

/// The public values both sides put in the transcript, in order.
struct Transcript<'a> {
    inviter: &'a PublicKey,
    accepter: &'a PublicKey,
    invitation: &'a Invitation,
    ephemeral: &'a [u8; 32],
    ciphertext: &'a [u8],
}

impl Transcript<'_> {
    /// The public values without the accepter's identity: what the key
    /// sealing that identity is bound to.
    fn without_accepter(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(1400);
        t.push(TAG_IDENTITY);
        t.extend_from_slice(self.inviter.as_bytes());
        t.push(TAG_X25519);
        t.extend_from_slice(self.invitation.dh());
        t.push(TAG_KEM_KEY);
        t.extend_from_slice(self.invitation.kem());
        t.push(TAG_X25519);
        t.extend_from_slice(self.ephemeral);
        t.push(TAG_KEM_CIPHERTEXT);
        t.extend_from_slice(self.ciphertext);
        t.extend_from_slice(&self.invitation.digest());
        t
    }

    fn full(&self) -> Vec<u8> {
        let mut t = Vec::with_capacity(1440);
        t.push(TAG_IDENTITY);
        t.extend_from_slice(self.accepter.as_bytes());
        t.extend_from_slice(&self.without_accepter());
        t
    }
}

/// The key sealing the accepter's identity: HKDF-SHA256(salt = none,
/// ikm = DH3 || SS, info = label || 0x00 || transcript without IK_B).
fn identity_key(dh3: &[u8; 32], ss: &[u8], t: &Transcript<'_>) -> Secret {
    let ikm = Zeroizing::new([dh3.as_slice(), ss].concat());
    let info = domain_separated(labels::HANDSHAKE_IDENTITY_KEY, &[&t.without_accepter()]);
    let mut key = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF's output limit.
    let _ = Hkdf::<Sha256>::new(None, &ikm).expand(&info, key.as_mut());
    key
}

fn identity_aad(ephemeral: &[u8; 32], ciphertext: &[u8]) -> Vec<u8> {
    domain_separated(labels::HANDSHAKE_IDENTITY_KEY, &[ephemeral, ciphertext])
}

/// The session secrets: HKDF-SHA256(salt = 32 zero bytes,
/// ikm = DH1 || DH2 || DH3 || SS, info = label || 0x00 || transcript), 96
/// bytes split into root key, the accepter's first header key and the
/// inviter's first header key; the session's associated data is
/// SHA-256(label || 0x00 || transcript).
fn derive(dh: [&[u8; 32]; 3], ss: &[u8], t: &Transcript<'_>) -> Derived {
    let ikm = Zeroizing::new([dh[0].as_slice(), dh[1], dh[2], ss].concat());
    let transcript = t.full();
    let info = domain_separated(labels::HANDSHAKE_SECRET, &[&transcript]);
    let mut okm = Zeroizing::new([0u8; 96]);
    let _ = Hkdf::<Sha256>::new(Some(&[0u8; 32]), &ikm).expand(&info, okm.as_mut());
    let (root, accepter_header, inviter_header) = split3(&okm);
    let ad = Sha256::digest(domain_separated(labels::SESSION_AD, &[&transcript])).into();
    Derived {
        root,
        accepter_header,
        inviter_header,
        ad,
    }
}

fn identity_dh(identity: &SigningKeyPair) -> DhKeyPair {
    DhKeyPair::from_secret_bytes(*identity.x25519_secret())
}

/// Accepts an invitation: runs the accepter's half of the handshake and
/// returns the new session and the first message, exactly
/// [`BodySize::Medium`] bytes, to put in an envelope to the invitation's
/// [`send_id`](Invitation::send_id) on its [`relay`](Invitation::relay),
/// signed with the secret half of `sender_key`.
///
/// `reply_to` is the accepter's own mailbox; `sender_key` is the public half
/// of a fresh per-mailbox key pair the caller made for writing to the
/// inviter's mailbox (the inviter secures its mailbox with it); `payload`
/// is up to [`MAX_ACCEPT_PAYLOAD_LEN`] bytes for the application (a display
/// name, say). `now` is Unix seconds, checked against the expiry.
/// `sender_key` equal to the accepter's identity key is
/// [`Error::IdentityKeyAsMailboxKey`]: the inviter's relay would see it.
///
/// Randomness drawn from `rng`, in order: the ephemeral X25519 secret (32
/// bytes), the ML-KEM encapsulation (32), the first ratchet key (32), the
/// first header nonce (24).
pub fn accept(
    rng: &mut impl CryptoRng,
    identity: &SigningKeyPair,
    invitation: &Invitation,
    reply_to: &ReplyAddress,
    sender_key: &PublicKey,
    payload: &[u8],
    now: u64,
) -> Result<(Session, Vec<u8>), Error> {
    accept_inner(
        rng, identity, invitation, reply_to, sender_key, payload, now,
    )
    .map(|(session, message, _)| (session, message))
}

pub(crate) fn accept_inner(
    rng: &mut impl CryptoRng,
    identity: &SigningKeyPair,
    invitation: &Invitation,
    reply_to: &ReplyAddress,
    sender_key: &PublicKey,
    payload: &[u8],
    now: u64,
) -> Result<(Session, Vec<u8>, Derived), Error> {
    invitation.check_expiry(now)?;
    if sender_key == identity.public() {
        return Err(Error::IdentityKeyAsMailboxKey);
    }
    let mut hello = Vec::with_capacity(MAX_HELLO_FIXED + payload.len());
    reply_to.relay.encode(&mut hello);
    hello.extend_from_slice(&reply_to.send_id.0);
    hello.extend_from_slice(sender_key.as_bytes());
    if payload.len() > FIRST_RATCHET_LEN - MESSAGE_OVERHEAD - hello.len() {
        return Err(Error::MessageTooLong {
            len: payload.len(),
            max: FIRST_RATCHET_LEN - MESSAGE_OVERHEAD - hello.len(),
        });
    }
    hello.extend_from_slice(payload);
    let hello = Zeroizing::new(hello);

    let ephemeral = DhKeyPair::generate(rng);
    let kem = parse_kem_key(invitation.kem())?;
    let (ciphertext, ss) = kem.encapsulate_with_rng(rng);
    let ss = Zeroizing::new(<[u8; 32]>::from(ss));
    let inviter_x = invitation.identity().to_x25519();
    let dh1 = identity_dh(identity).agree(invitation.dh())?;
    let dh2 = ephemeral.agree(&inviter_x)?;
    let dh3 = ephemeral.agree(invitation.dh())?;
    let transcript = Transcript {
        inviter: invitation.identity(),
        accepter: identity.public(),
        invitation,
        ephemeral: ephemeral.public(),
        ciphertext: ciphertext.as_slice(),
    };
    let seal_key = identity_key(&dh3, ss.as_slice(), &transcript);
    let sealed_identity = ChaCha20Poly1305::new(&(*seal_key).into())
        .encrypt(
            // The key is used once.
            &Nonce::default(),
            Payload {
                msg: identity.public().as_bytes(),
                aad: &identity_aad(ephemeral.public(), &ciphertext),
            },
        )
        .map_err(|_| Error::VerificationFailed)?;
    let keys = derive([&dh1, &dh2, &dh3], ss.as_slice(), &transcript);
    let mut ratchet = Ratchet::init_sender(
        rng,
        &keys.root,
        *invitation.dh(),
        keys.accepter_header.clone(),
        keys.inviter_header.clone(),
    )?;

    let mut message = Vec::with_capacity(BodySize::Medium.len());
    message.extend_from_slice(ephemeral.public());
    message.extend_from_slice(&ciphertext);
    message.extend_from_slice(&sealed_identity);
    message.extend_from_slice(&ratchet.encrypt(rng, &keys.ad, &hello, FIRST_RATCHET_LEN)?);
    debug_assert_eq!(message.len(), BodySize::Medium.len());
    let session = Session::new(*identity.public(), *invitation.identity(), keys.ad, ratchet);
    Ok((session, message, keys))
}

impl PendingInvitation {
    /// Completes the handshake with an accepter's first message (the body
    /// of an envelope that arrived at the invitation's mailbox). Returns the
    /// session and what the accepter sent. Any wrong, tampered or replayed
    /// message fails with [`Error::VerificationFailed`]; after the expiry,
    /// [`Error::InvitationExpired`].
    ///
    /// `identity` must be the key the invitation was made with. `rng`
    /// supplies the inviter's first ratchet key (32 bytes). An invitation is
    /// for one contact: delete it after the first success, or a relay that
    /// replays the message makes a second session with the same keys.
    pub fn complete(
        &self,
        rng: &mut impl CryptoRng,
        identity: &SigningKeyPair,
        first_message: &[u8],
        now: u64,
    ) -> Result<(Session, Accepted), Error> {
        let invitation = self.invitation();
        invitation.check_expiry(now)?;
        if identity.public() != invitation.identity()
            || first_message.len() != BodySize::Medium.len()
        {
            return Err(Error::VerificationFailed);
        }
        self.complete_inner(rng, identity, first_message)
            .map(|(session, accepted, _)| (session, accepted))
            .map_err(|_| Error::VerificationFailed)
    }

    pub(crate) fn complete_inner(
        &self,
        rng: &mut impl CryptoRng,
        identity: &SigningKeyPair,
        first_message: &[u8],
    ) -> Result<(Session, Accepted, Derived), Error> {
        let invitation = self.invitation();
        let mut r = Reader::new(first_message);
        let ephemeral: [u8; 32] = r.array()?;
        let ciphertext = r.take(KEM_CIPHERTEXT_LEN)?;
        let sealed_identity = r.take(SEALED_IDENTITY_LEN)?;
        let ratchet_message = r.rest();

        let ct = Array::try_from(ciphertext).map_err(|_| DecodeError::Truncated)?;
        let ss = kem_decapsulation_key(self.kem_seed()).decapsulate(&ct);
        let ss = Zeroizing::new(<[u8; 32]>::from(ss));
        let dh3 = self.dh().agree(&ephemeral)?;
        let mut transcript = Transcript {
            inviter: invitation.identity(),
            accepter: invitation.identity(),
            invitation,
            ephemeral: &ephemeral,
            ciphertext,
        };
        let seal_key = identity_key(&dh3, ss.as_slice(), &transcript);
        let accepter_bytes = Zeroizing::new(
            ChaCha20Poly1305::new(&(*seal_key).into())
                .decrypt(
                    &Nonce::default(),
                    Payload {
                        msg: sealed_identity,
                        aad: &identity_aad(&ephemeral, ciphertext),
                    },
                )
                .map_err(|_| Error::VerificationFailed)?,
        );
        let accepter_bytes: [u8; PUBLIC_KEY_LEN] = accepter_bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::VerificationFailed)?;
        let accepter = PublicKey::from_bytes(&accepter_bytes)?;
        transcript.accepter = &accepter;

        let dh1 = self.dh().agree(&accepter.to_x25519())?;
        let dh2 = identity_dh(identity).agree(&ephemeral)?;
        let keys = derive([&dh1, &dh2, &dh3], ss.as_slice(), &transcript);
        let own_dh = DhKeyPair::from_secret_bytes(*self.dh().secret_bytes());
        let mut ratchet = Ratchet::init_receiver(
            own_dh,
            keys.root.clone(),
            keys.inviter_header.clone(),
            keys.accepter_header.clone(),
        );
        let hello = ratchet.decrypt(rng, &keys.ad, ratchet_message)?;
        let mut h = Reader::new(&hello);
        let relay = RelayAddress::decode_from(&mut h)?;
        let send_id = MailboxId(h.array()?);
        let sender_key = PublicKey::from_bytes(&h.array()?)?;
        let payload = Zeroizing::new(h.rest().to_vec());
        let session = Session::new(*invitation.identity(), accepter, keys.ad, ratchet);
        let accepted = Accepted {
            identity: accepter,
            reply_to: ReplyAddress { relay, send_id },
            sender_key,
            payload,
        };
        Ok((session, accepted, keys))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    struct Setup {
        ana: SigningKeyPair,
        ben: SigningKeyPair,
        pending: PendingInvitation,
        reply: ReplyAddress,
        sender: SigningKeyPair,
    }

    fn setup() -> Setup {
        let mut rng = rand::rng();
        let ana = SigningKeyPair::generate(&mut rng);
        let fp = SigningKeyPair::generate(&mut rng)
            .public()
            .relay_fingerprint();
        let relay = RelayAddress::new(fp, "relay.example.org", 4433).unwrap();
        let pending =
            PendingInvitation::create(&mut rng, &ana, relay.clone(), MailboxId([1; 16]), 100);
        Setup {
            ana,
            ben: SigningKeyPair::generate(&mut rng),
            pending,
            reply: ReplyAddress {
                relay,
                send_id: MailboxId([2; 16]),
            },
            sender: SigningKeyPair::generate(&mut rng),
        }
    }

    fn accept_now(s: &Setup, now: u64) -> Result<(Session, Vec<u8>), Error> {
        accept(
            &mut rand::rng(),
            &s.ben,
            s.pending.invitation(),
            &s.reply,
            s.sender.public(),
            b"hello from ben",
            now,
        )
    }

    #[test]
    fn both_sides_agree() {
        let s = setup();
        let mut rng = rand::rng();
        let (mut ben, first) = accept_now(&s, 100).unwrap();
        assert_eq!(first.len(), BodySize::Medium.len());
        // Both sides derive the same keys.
        let (_, msg, ben_keys) = accept_inner(
            &mut rand::rngs::StdRng::from_seed([5; 32]),
            &s.ben,
            s.pending.invitation(),
            &s.reply,
            s.sender.public(),
            b"",
            0,
        )
        .unwrap();
        let (_, _, ana_keys) = s.pending.complete_inner(&mut rng, &s.ana, &msg).unwrap();
        assert_eq!(*ana_keys.root, *ben_keys.root);
        assert_eq!(ana_keys.ad, ben_keys.ad);
        assert_eq!(*ana_keys.accepter_header, *ben_keys.accepter_header);
        assert_eq!(*ana_keys.inviter_header, *ben_keys.inviter_header);
        assert_ne!(*ben_keys.accepter_header, *ben_keys.inviter_header);
        assert_ne!(*ben_keys.root, *ben_keys.accepter_header);

        let (mut ana, accepted) = s.pending.complete(&mut rng, &s.ana, &first, 100).unwrap();
        assert_eq!(&accepted.identity, s.ben.public());
        assert_eq!(accepted.reply_to, s.reply);
        assert_eq!(&accepted.sender_key, s.sender.public());
        assert_eq!(&accepted.payload[..], b"hello from ben");
        assert_eq!(ana.remote_identity(), s.ben.public());
        assert_eq!(ben.remote_identity(), s.ana.public());
        let m = ana.encrypt(&mut rng, b"hi").unwrap();
        assert_eq!(&*ben.decrypt(&mut rng, &m).unwrap(), b"hi");
        let m = ben.encrypt(&mut rng, b"hey").unwrap();
        assert_eq!(&*ana.decrypt(&mut rng, &m).unwrap(), b"hey");
        // Nothing secret in debug output.
        let debug = format!("{ana:?} {accepted:?} {:?}", s.pending);
        assert!(!debug.contains("hello from ben"));
        assert!(!debug.contains(&format!("{:?}", &s.pending.dh().secret_bytes()[..4])));
    }

    #[test]
    fn stored_state_is_written_without_reallocating() {
        // A growing Vec frees its old buffer without zeroizing it: that
        // buffer would hold the root key, chain keys and the DH secret.
        let s = setup();
        let mut rng = rand::rng();
        let (mut ben, first) = accept_now(&s, 0).unwrap();
        let (mut ana, _) = s.pending.complete(&mut rng, &s.ana, &first, 0).unwrap();
        let msgs: Vec<_> = (0..40)
            .map(|_| ben.encrypt(&mut rng, b"x").unwrap())
            .collect();
        ana.decrypt(&mut rng, &msgs[39]).unwrap();
        assert_eq!(ana.skipped_keys(), 39);
        for session in [&ana, &ben] {
            let bytes = session.to_bytes();
            assert_eq!(bytes.capacity(), bytes.len());
            assert_eq!(*Session::from_bytes(&bytes).unwrap().to_bytes(), *bytes);
        }
    }

    #[test]
    fn tampered_first_message_fails_with_one_error() {
        let s = setup();
        let mut rng = rand::rng();
        let (_, first) = accept_now(&s, 0).unwrap();
        let positions = (0..PREFIX_LEN).chain((PREFIX_LEN..first.len()).step_by(97));
        for i in positions.chain([first.len() - 1]) {
            let mut bad = first.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                s.pending.complete(&mut rng, &s.ana, &bad, 0).err(),
                Some(Error::VerificationFailed),
                "byte {i}"
            );
        }
        assert_eq!(
            s.pending
                .complete(&mut rng, &s.ana, &first[..first.len() - 1], 0)
                .err(),
            Some(Error::VerificationFailed)
        );
        // The wrong inviter key, and another invitation's pending state.
        assert_eq!(
            s.pending.complete(&mut rng, &s.ben, &first, 0).err(),
            Some(Error::VerificationFailed)
        );
        let other = setup();
        assert_eq!(
            other
                .pending
                .complete(&mut rng, &other.ana, &first, 0)
                .err(),
            Some(Error::VerificationFailed)
        );
        assert!(s.pending.complete(&mut rng, &s.ana, &first, 0).is_ok());
    }

    #[test]
    fn identity_key_is_refused_as_mailbox_sender_key() {
        // The inviter secures its mailbox with the sender key, so its relay
        // would learn the accepter's identity key.
        let s = setup();
        let result = accept(
            &mut rand::rng(),
            &s.ben,
            s.pending.invitation(),
            &s.reply,
            s.ben.public(),
            b"",
            0,
        );
        assert_eq!(result.err(), Some(Error::IdentityKeyAsMailboxKey));
    }

    #[test]
    fn expiry_and_payload_bounds() {
        let s = setup();
        assert_eq!(accept_now(&s, 101).err(), Some(Error::InvitationExpired));
        let (_, first) = accept_now(&s, 100).unwrap();
        assert_eq!(
            s.pending
                .complete(&mut rand::rng(), &s.ana, &first, 101)
                .err(),
            Some(Error::InvitationExpired)
        );
        let big = vec![7u8; MAX_ACCEPT_PAYLOAD_LEN];
        let (_, first) = accept(
            &mut rand::rng(),
            &s.ben,
            s.pending.invitation(),
            &s.reply,
            s.sender.public(),
            &big,
            0,
        )
        .unwrap();
        let (_, accepted) = s
            .pending
            .complete(&mut rand::rng(), &s.ana, &first, 0)
            .unwrap();
        assert_eq!(&accepted.payload[..], &big[..]);
        let too_big = vec![7u8; FIRST_RATCHET_LEN];
        assert!(matches!(
            accept(
                &mut rand::rng(),
                &s.ben,
                s.pending.invitation(),
                &s.reply,
                s.sender.public(),
                &too_big,
                0,
            ),
            Err(Error::MessageTooLong { .. })
        ));
    }
}
