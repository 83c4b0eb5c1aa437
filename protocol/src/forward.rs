//! Relay-to-relay forwarding: a destination relay's signed forwarding key,
//! and the sealing of a forwarded send to it.
//!
//! Every relay keeps a long-term X25519 *forwarding key* and publishes it as
//! a [`RelayKey`]: the relay's ed25519 identity key (whose
//! [`relay fingerprint`](PublicKey::relay_fingerprint) is the pinned
//! fingerprint of its address), the X25519 public key and an expiry, signed
//! by the identity key over
//! `"enlace/v1/relay-key" || 0x00 || relay_key || forward_dh || expires`.
//!
//! A client that wants to reach a mailbox on relay D through its home relay
//! H seals the inner `Send` command to D:
//!
//! ```text
//! eph          = fresh X25519 key pair
//! key          = HKDF-SHA256(salt = none, ikm = X25519(eph, forward_dh),
//!                            info = "enlace/v1/forward-key" || 0x00 || eph_pub
//!                                   || forward_dh || destination_fingerprint)
//! sealed       = eph_pub (32) || nonce (24)
//!                || XChaCha20-Poly1305(key, nonce, inner command,
//!                      aad = "enlace/v1/forward" || 0x00 || destination_fingerprint)
//! ```
//!
//! H learns only D (it must connect there); D learns the envelope but only
//! H's address. The sealed length is a fixed function of the envelope's
//! size class ([`sealed_len`]), so forwarded sizes stay bucketed.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::codec::{Reader, domain_separated};
use crate::command::{ForwardId, Request};
use crate::delivery::{DhKeyPair, SEAL_NONCE_LEN, SEAL_TAG_LEN};
use crate::envelope::{BodySize, Envelope, MessageId};
use crate::keys::{Fingerprint, PublicKey, SIGNATURE_LEN, Signature, SigningKeyPair, labels};
use crate::limits::ENVELOPE_OVERHEAD;
use crate::{DecodeError, Error};

/// Bytes of an encoded [`RelayKey`]: identity key, forwarding key, expiry,
/// signature.
pub const RELAY_KEY_LEN: usize = 32 + 32 + 8 + SIGNATURE_LEN;

/// Bytes a sealed forward adds around the inner command: the ephemeral
/// public key, the nonce and the tag.
pub const FORWARD_SEAL_OVERHEAD: usize = 32 + SEAL_NONCE_LEN + SEAL_TAG_LEN;

/// The length of a sealed forwarded send whose envelope has `size` body:
/// overhead, the `Send` tag and the envelope.
pub const fn sealed_len(size: BodySize) -> usize {
    FORWARD_SEAL_OVERHEAD + 1 + ENVELOPE_OVERHEAD + size.len()
}

/// True if `len` is the length of a sealed forwarded send of some size class.
pub fn is_sealed_len(len: usize) -> bool {
    [BodySize::Small, BodySize::Medium, BodySize::Large]
        .into_iter()
        .any(|s| sealed_len(s) == len)
}

/// The forward id a client uses for the envelope with `message_id`:
/// `HKDF-SHA256(salt = none, ikm = client_secret, info =
/// "enlace/v1/forward-id" || 0x00 || message_id)`, 16 bytes.
///
/// `client_secret` is a 32-byte secret the client keeps and no relay ever
/// sees (the `enlace` client passes its identity seed: the HKDF label keeps
/// this use apart from signing). The id is
/// stable, so a retried forward of the same envelope is recognized by the
/// home relay; and keyed, so neither the home relay nor the destination
/// (which sees the message id), nor the two together, can compute it from
/// the message id and so match a forward with the deposit it became.
pub fn forward_id_for(client_secret: &[u8; 32], message_id: &MessageId) -> ForwardId {
    let mut id = [0u8; 16];
    let info = domain_separated(labels::FORWARD_ID, &[&message_id.0]);
    // 16 bytes is far below HKDF-SHA256's 8,160-byte limit: cannot fail.
    let _ = Hkdf::<Sha256>::new(None, client_secret).expand(&info, &mut id);
    ForwardId(id)
}

/// A relay's signed forwarding key.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayKey {
    relay_key: PublicKey,
    forward_dh: [u8; 32],
    expires: u64,
    signature: Signature,
}

impl fmt::Debug for RelayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayKey")
            .field("fingerprint", &self.relay_key.relay_fingerprint())
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl RelayKey {
    /// Signs `forward_dh` with the relay's identity key, valid until
    /// `expires` (Unix seconds).
    pub fn sign(relay: &SigningKeyPair, forward_dh: [u8; 32], expires: u64) -> Self {
        let signature = relay.sign_parts(
            labels::RELAY_KEY,
            &[
                relay.public().as_bytes(),
                &forward_dh,
                &expires.to_be_bytes(),
            ],
        );
        Self {
            relay_key: *relay.public(),
            forward_dh,
            expires,
            signature,
        }
    }

    /// Checks the bundle against the fingerprint pinned in the destination's
    /// address and the time, and returns the forwarding key. Every failure
    /// (another relay's key, a bad signature, an expired bundle) is
    /// [`Error::VerificationFailed`].
    pub fn verify(&self, pinned: &Fingerprint, now: u64) -> Result<[u8; 32], Error> {
        if self.relay_key.relay_fingerprint() != *pinned || self.expires <= now {
            return Err(Error::VerificationFailed);
        }
        self.relay_key.verify_parts(
            labels::RELAY_KEY,
            &[
                self.relay_key.as_bytes(),
                &self.forward_dh,
                &self.expires.to_be_bytes(),
            ],
            &self.signature,
        )?;
        Ok(self.forward_dh)
    }

    /// Unix seconds after which the bundle must not be used.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.relay_key.as_bytes());
        out.extend_from_slice(&self.forward_dh);
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&self.signature.0);
    }

    /// Decodes exactly one bundle (not yet verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let key = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(key)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            relay_key: PublicKey::from_bytes(&r.array()?)?,
            forward_dh: r.array()?,
            expires: u64::from_be_bytes(r.array()?),
            signature: Signature(r.array()?),
        })
    }

    /// For tests of forged bundles: the same bundle with another forwarding
    /// key and the old signature.
    #[doc(hidden)]
    pub fn with_forward_dh_unsigned(&self, forward_dh: [u8; 32]) -> Self {
        Self {
            forward_dh,
            ..self.clone()
        }
    }
}

fn forward_cipher(
    shared: &[u8; 32],
    eph_pub: &[u8; 32],
    forward_dh: &[u8; 32],
    destination: &Fingerprint,
) -> Result<XChaCha20Poly1305, Error> {
    let info = domain_separated(labels::FORWARD_KEY, &[eph_pub, forward_dh, &destination.0]);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, shared)
        .expand(&info, key.as_mut())
        .map_err(|_| Error::VerificationFailed)?;
    Ok(XChaCha20Poly1305::new(&(*key).into()))
}

/// Seals `envelope`, as a `Send` command, to the destination relay whose
/// verified forwarding key is `forward_dh` and whose fingerprint is
/// `destination`.
pub fn seal_send(
    rng: &mut impl CryptoRng,
    destination: &Fingerprint,
    forward_dh: &[u8; 32],
    envelope: &Envelope,
) -> Result<Vec<u8>, Error> {
    let eph = DhKeyPair::generate(rng);
    let mut nonce = [0u8; SEAL_NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    seal_with(&eph, nonce, destination, forward_dh, envelope)
}

pub(crate) fn seal_with(
    eph: &DhKeyPair,
    nonce: [u8; SEAL_NONCE_LEN],
    destination: &Fingerprint,
    forward_dh: &[u8; 32],
    envelope: &Envelope,
) -> Result<Vec<u8>, Error> {
    let shared = eph.agree(forward_dh)?;
    let cipher = forward_cipher(&shared, eph.public(), forward_dh, destination)?;
    let inner = Request::Send(envelope.clone()).to_bytes();
    let aad = domain_separated(labels::FORWARD_AAD, &[&destination.0]);
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &inner,
                aad: &aad,
            },
        )
        .map_err(|_| Error::VerificationFailed)?;
    let mut out = Vec::with_capacity(32 + SEAL_NONCE_LEN + ct.len());
    out.extend_from_slice(eph.public());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The destination relay's side: its forwarding key pair and fingerprint.
pub struct ForwardKey {
    pair: DhKeyPair,
    fingerprint: Fingerprint,
}

impl fmt::Debug for ForwardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardKey").finish_non_exhaustive()
    }
}

impl ForwardKey {
    /// The key of the relay with `fingerprint`.
    pub fn new(pair: DhKeyPair, fingerprint: Fingerprint) -> Self {
        Self { pair, fingerprint }
    }

    /// The public forwarding key to publish in a [`RelayKey`].
    pub fn public(&self) -> &[u8; 32] {
        self.pair.public()
    }

    /// Opens a sealed forward and returns the envelope of the `Send` inside.
    /// Anything but a well-formed sealed `Send` for this relay fails.
    pub fn open(&self, sealed: &[u8]) -> Result<Envelope, Error> {
        if !is_sealed_len(sealed.len()) {
            return Err(DecodeError::InvalidField("sealed forward length").into());
        }
        let (eph_pub, rest) = sealed
            .split_first_chunk::<32>()
            .ok_or(Error::Decode(DecodeError::Truncated))?;
        let (nonce, ct) = rest
            .split_first_chunk::<SEAL_NONCE_LEN>()
            .ok_or(Error::Decode(DecodeError::Truncated))?;
        let shared = self
            .pair
            .agree(eph_pub)
            .map_err(|_| Error::VerificationFailed)?;
        let cipher = forward_cipher(&shared, eph_pub, self.pair.public(), &self.fingerprint)?;
        let aad = domain_separated(labels::FORWARD_AAD, &[&self.fingerprint.0]);
        let inner = Zeroizing::new(
            cipher
                .decrypt(&XNonce::from(*nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| Error::VerificationFailed)?,
        );
        match Request::decode(&inner)? {
            Request::Send(envelope) => Ok(envelope),
            _ => Err(DecodeError::InvalidField("forwarded command").into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{CoarseTime, MailboxId, MessageId};

    #[test]
    fn forward_ids_are_stable_and_keyed() {
        let m = MessageId([7; 16]);
        let a = forward_id_for(&[1; 32], &m);
        assert_eq!(a, forward_id_for(&[1; 32], &m), "a retry finds its forward");
        assert_ne!(
            a,
            forward_id_for(&[2; 32], &m),
            "keyed by the client's secret"
        );
        assert_ne!(a, forward_id_for(&[1; 32], &MessageId([8; 16])));
        // Whoever sees the message id (the destination) cannot compute the
        // id without the client's secret: not the unkeyed hash of it.
        let unkeyed = {
            use sha2::Digest;
            Sha256::digest(domain_separated(labels::FORWARD_ID, &[&m.0]))
        };
        assert_ne!(&a.0[..], &unkeyed[..16]);
    }
    use crate::limits::{BODY_LARGE, BODY_SMALL};

    fn relay(seed: u8) -> (SigningKeyPair, ForwardKey) {
        let id = SigningKeyPair::from_secret_bytes(&[seed; 32]);
        let fk = ForwardKey::new(
            DhKeyPair::from_secret_bytes([seed.wrapping_add(100); 32]),
            id.public().relay_fingerprint(),
        );
        (id, fk)
    }

    fn env(len: usize) -> Envelope {
        Envelope::sign(
            &SigningKeyPair::from_secret_bytes(&[3; 32]),
            MailboxId([4; 16]),
            MessageId([5; 16]),
            CoarseTime(6),
            &vec![7; len],
        )
        .unwrap()
    }

    #[test]
    fn relay_key_verifies_only_for_its_fingerprint_and_before_expiry() {
        let (id, fk) = relay(1);
        let (other, _) = relay(2);
        let bundle = RelayKey::sign(&id, *fk.public(), 1000);
        let bytes = {
            let mut v = Vec::new();
            bundle.encode(&mut v);
            v
        };
        assert_eq!(bytes.len(), RELAY_KEY_LEN);
        let decoded = RelayKey::decode(&bytes).unwrap();
        let fp = id.public().relay_fingerprint();
        assert_eq!(decoded.verify(&fp, 999), Ok(*fk.public()));
        assert_eq!(decoded.verify(&fp, 1000), Err(Error::VerificationFailed));
        assert_eq!(
            decoded.verify(&other.public().relay_fingerprint(), 1),
            Err(Error::VerificationFailed)
        );
        // Another key under the old signature, or a bundle signed by another
        // relay presented for this one.
        let forged = decoded.with_forward_dh_unsigned([9; 32]);
        assert_eq!(forged.verify(&fp, 1), Err(Error::VerificationFailed));
        let theirs = RelayKey::sign(&other, [9; 32], 1000);
        assert_eq!(theirs.verify(&fp, 1), Err(Error::VerificationFailed));
        // A signature under another label does not verify.
        let wrong_label = RelayKey {
            signature: other.sign_parts(
                labels::ENVELOPE,
                &[other.public().as_bytes(), &[9; 32], &1000u64.to_be_bytes()],
            ),
            ..theirs.clone()
        };
        assert_eq!(
            wrong_label.verify(&other.public().relay_fingerprint(), 1),
            Err(Error::VerificationFailed)
        );
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(RelayKey::decode(&long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(RelayKey::decode(&bytes[..100]), Err(DecodeError::Truncated));
    }

    #[test]
    fn sealed_send_opens_only_at_the_destination() {
        let mut rng = rand::rng();
        let (id, fk) = relay(1);
        let (_, other_fk) = relay(2);
        let fp = id.public().relay_fingerprint();
        for len in [BODY_SMALL, BODY_LARGE] {
            let e = env(len);
            let sealed = seal_send(&mut rng, &fp, fk.public(), &e).unwrap();
            assert_eq!(sealed.len(), sealed_len(BodySize::fitting(len).unwrap()));
            if len == BODY_SMALL {
                // (Quadratic: checked on the small envelope only.)
                assert!(
                    !sealed
                        .windows(64)
                        .any(|w| e.as_bytes().windows(64).any(|v| v == w))
                );
            }
            assert_eq!(fk.open(&sealed).unwrap(), e);
            // Another relay's key.
            assert_eq!(other_fk.open(&sealed), Err(Error::VerificationFailed));
            // Tampered anywhere.
            for i in [0, 40, 60, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[i] ^= 1;
                assert!(fk.open(&bad).is_err(), "flip at {i}");
            }
            // Truncated or padded.
            assert!(fk.open(&sealed[..sealed.len() - 1]).is_err());
        }
        // Sealed for the right key but another destination fingerprint.
        let e = env(BODY_SMALL);
        let (id2, _) = relay(2);
        let sealed =
            seal_send(&mut rng, &id2.public().relay_fingerprint(), fk.public(), &e).unwrap();
        assert_eq!(fk.open(&sealed), Err(Error::VerificationFailed));
    }

    #[test]
    fn wrong_label_does_not_open() {
        let (id, fk) = relay(1);
        let fp = id.public().relay_fingerprint();
        let eph = DhKeyPair::from_secret_bytes([42; 32]);
        let e = env(BODY_SMALL);
        // The same construction with the delivery label as AAD.
        let shared = eph.agree(fk.public()).unwrap();
        let cipher = forward_cipher(&shared, eph.public(), fk.public(), &fp).unwrap();
        let aad = domain_separated(labels::DELIVERY_AAD, &[&fp.0]);
        let ct = cipher
            .encrypt(
                &XNonce::from([1; 24]),
                Payload {
                    msg: &Request::Send(e.clone()).to_bytes(),
                    aad: &aad,
                },
            )
            .unwrap();
        let mut sealed = eph.public().to_vec();
        sealed.extend_from_slice(&[1; 24]);
        sealed.extend_from_slice(&ct);
        assert_eq!(fk.open(&sealed), Err(Error::VerificationFailed));
        // And the right label opens.
        let good = seal_with(&eph, [1; 24], &fp, fk.public(), &e).unwrap();
        assert_eq!(fk.open(&good).unwrap(), e);
    }

    #[test]
    fn low_order_keys_refused() {
        let mut rng = rand::rng();
        let (id, fk) = relay(1);
        let fp = id.public().relay_fingerprint();
        assert_eq!(
            seal_send(&mut rng, &fp, &[0; 32], &env(BODY_SMALL)),
            Err(Error::WeakKey)
        );
        let mut sealed = vec![0u8; sealed_len(BodySize::Small)];
        sealed[40] = 1;
        assert_eq!(fk.open(&sealed), Err(Error::VerificationFailed));
    }
}
