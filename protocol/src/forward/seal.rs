//! Sealing a `Send` to the destination relay and opening it there, and the
//! keyed forward id a client names a forward by.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::size::is_sealed_len;
use crate::codec::domain_separated;
use crate::command::{ForwardId, Request};
use crate::delivery::{DhKeyPair, SEAL_NONCE_LEN};
use crate::envelope::{Envelope, MessageId};
use crate::keys::{Fingerprint, labels};
use crate::{DecodeError, Error};

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

pub(super) fn forward_cipher(
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

    /// The public forwarding key to publish in a [`RelayKey`](super::RelayKey).
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
