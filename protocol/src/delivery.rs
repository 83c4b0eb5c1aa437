//! The relay's re-encryption of deliveries.
//!
//! When a recipient creates a mailbox it sends a fresh X25519 public key; the
//! relay answers with its own fresh X25519 public key for that mailbox. Both
//! derive the mailbox's delivery key:
//!
//! ```text
//! key = HKDF-SHA256(salt = none, ikm = X25519(secret, peer),
//!                   info = "enlace/v1/delivery-key" || 0x00 || recipient_pub || relay_pub)
//! ```
//!
//! The relay seals every envelope it delivers with XChaCha20-Poly1305 under
//! that key (random 24-byte nonce, associated data
//! `"enlace/v1/delivery" || 0x00 || receive_id`). The bytes a sender uploads
//! therefore never equal the bytes the recipient downloads, even to someone
//! who could see inside both TLS connections.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use x25519_dalek::{PublicKey as DhPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::codec::domain_separated;
use crate::envelope::{Envelope, MailboxId};
use crate::keys::labels;
use crate::limits::MAX_ENVELOPE_LEN;
use crate::{DecodeError, Error};

/// Bytes of the random nonce that starts a sealed delivery.
pub const SEAL_NONCE_LEN: usize = 24;
/// Bytes of the Poly1305 tag that ends a sealed delivery.
pub const SEAL_TAG_LEN: usize = 16;
/// The largest sealed delivery.
pub const MAX_SEALED_LEN: usize = SEAL_NONCE_LEN + MAX_ENVELOPE_LEN + SEAL_TAG_LEN;
// A sealed delivery fits in one frame.
const _: () = assert!(MAX_SEALED_LEN < crate::limits::MAX_FRAME_LEN);

/// An X25519 key pair; the secret is zeroized on drop.
pub struct DhKeyPair {
    secret: StaticSecret,
    public: [u8; 32],
}

impl DhKeyPair {
    /// Generates a fresh key pair.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self::from_secret(StaticSecret::random_from_rng(rng))
    }

    /// Restores a key pair from its secret bytes.
    pub fn from_secret_bytes(secret: [u8; 32]) -> Self {
        Self::from_secret(StaticSecret::from(secret))
    }

    fn from_secret(secret: StaticSecret) -> Self {
        let public = DhPublic::from(&secret).to_bytes();
        Self { secret, public }
    }

    /// The secret bytes, for an encrypted store.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }

    /// X25519 with a peer's public key; fails on a non-contributory result.
    pub(crate) fn agree(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, Error> {
        let shared = self.secret.diffie_hellman(&DhPublic::from(*peer));
        if !shared.was_contributory() {
            return Err(Error::WeakKey);
        }
        Ok(Zeroizing::new(shared.to_bytes()))
    }
}

impl fmt::Debug for DhKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DhKeyPair").finish_non_exhaustive()
    }
}

/// A mailbox's delivery key, shared by the relay and the recipient.
pub struct DeliveryKey(Zeroizing<[u8; 32]>);

impl DeliveryKey {
    /// The relay's side, when creating a mailbox: returns the key and the
    /// relay's public key to send back. The relay's secret is dropped (and
    /// zeroized) here; only the derived key is kept.
    pub fn for_relay(
        rng: &mut impl CryptoRng,
        recipient_public: &[u8; 32],
    ) -> Result<(Self, [u8; 32]), Error> {
        let relay = DhKeyPair::generate(rng);
        let key = Self::derive(
            &*relay.agree(recipient_public)?,
            recipient_public,
            relay.public(),
        )?;
        Ok((key, *relay.public()))
    }

    /// The recipient's side, from its mailbox key pair and the relay's answer.
    pub fn for_recipient(recipient: &DhKeyPair, relay_public: &[u8; 32]) -> Result<Self, Error> {
        Self::derive(
            &*recipient.agree(relay_public)?,
            recipient.public(),
            relay_public,
        )
    }

    fn derive(
        shared: &[u8; 32],
        recipient_public: &[u8; 32],
        relay_public: &[u8; 32],
    ) -> Result<Self, Error> {
        let info = domain_separated(labels::DELIVERY_KEY, &[recipient_public, relay_public]);
        let mut key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(None, shared)
            .expand(&info, key.as_mut())
            .map_err(|_| Error::VerificationFailed)?;
        Ok(Self(key))
    }

    /// Restores a stored key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The key bytes, for storage.
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        self.0.clone()
    }

    /// Seals an envelope's wire bytes for delivery from mailbox `receive_id`.
    pub fn seal(
        &self,
        rng: &mut impl CryptoRng,
        receive_id: &MailboxId,
        envelope: &[u8],
    ) -> Vec<u8> {
        let mut nonce = [0u8; SEAL_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        self.seal_with_nonce(nonce, receive_id, envelope)
    }

    pub(crate) fn seal_with_nonce(
        &self,
        nonce: [u8; SEAL_NONCE_LEN],
        receive_id: &MailboxId,
        envelope: &[u8],
    ) -> Vec<u8> {
        let aad = domain_separated(labels::DELIVERY_AAD, &[&receive_id.0]);
        let cipher = XChaCha20Poly1305::new(&(*self.0).into());
        let mut out = Vec::with_capacity(SEAL_NONCE_LEN + envelope.len() + SEAL_TAG_LEN);
        out.extend_from_slice(&nonce);
        // Encryption fails only for messages beyond 2^38 bytes; envelopes are
        // bounded far below that.
        if let Ok(ct) = cipher.encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: envelope,
                aad: &aad,
            },
        ) {
            out.extend_from_slice(&ct);
        }
        out
    }

    /// Opens a sealed delivery and decodes the envelope inside.
    pub fn open(&self, receive_id: &MailboxId, sealed: &[u8]) -> Result<Envelope, Error> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(DecodeError::FrameTooLarge(sealed.len() as u64).into());
        }
        let (nonce, ct) = sealed
            .split_first_chunk::<SEAL_NONCE_LEN>()
            .ok_or(Error::Decode(DecodeError::Truncated))?;
        let aad = domain_separated(labels::DELIVERY_AAD, &[&receive_id.0]);
        let cipher = XChaCha20Poly1305::new(&(*self.0).into());
        let plain = cipher
            .decrypt(&XNonce::from(*nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| Error::VerificationFailed)?;
        Ok(Envelope::decode(&plain)?)
    }
}

impl fmt::Debug for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeliveryKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{CoarseTime, MessageId};
    use crate::keys::SigningKeyPair;
    use crate::limits::BODY_SMALL;

    #[test]
    fn relay_and_recipient_agree_and_seal() {
        let mut rng = rand::rng();
        let recipient = DhKeyPair::generate(&mut rng);
        let (relay_key, relay_pub) = DeliveryKey::for_relay(&mut rng, recipient.public()).unwrap();
        let recipient_key = DeliveryKey::for_recipient(&recipient, &relay_pub).unwrap();
        assert_eq!(*relay_key.to_bytes(), *recipient_key.to_bytes());

        let sender = SigningKeyPair::generate(&mut rng);
        let env = Envelope::sign(
            &sender,
            MailboxId([5; 16]),
            MessageId([6; 16]),
            CoarseTime(1),
            &[7; BODY_SMALL],
        )
        .unwrap();
        let rid = MailboxId([9; 16]);
        let sealed = relay_key.seal(&mut rng, &rid, env.as_bytes());
        assert!(
            !sealed
                .windows(64)
                .any(|w| env.as_bytes().windows(64).any(|v| v == w))
        );
        assert_eq!(recipient_key.open(&rid, &sealed).unwrap(), env);
        assert_eq!(
            recipient_key.open(&MailboxId([8; 16]), &sealed),
            Err(Error::VerificationFailed)
        );
        let mut bad = sealed.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            recipient_key.open(&rid, &bad),
            Err(Error::VerificationFailed)
        );
    }

    #[test]
    fn low_order_point_refused() {
        let mut rng = rand::rng();
        assert!(matches!(
            DeliveryKey::for_relay(&mut rng, &[0; 32]),
            Err(Error::WeakKey)
        ));
    }
}
