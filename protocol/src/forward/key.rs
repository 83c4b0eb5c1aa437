//! A relay's signed forwarding key ([`RelayKey`]): what a client seals a
//! forwarded send to, checked against the destination's pinned
//! fingerprint.

use std::fmt;

use crate::codec::Reader;
use crate::keys::{Fingerprint, PublicKey, SIGNATURE_LEN, Signature, SigningKeyPair, labels};
use crate::{DecodeError, Error};

/// Bytes of an encoded [`RelayKey`]: identity key, forwarding key, expiry,
/// signature.
pub const RELAY_KEY_LEN: usize = 32 + 32 + 8 + SIGNATURE_LEN;

/// A relay's signed forwarding key.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayKey {
    pub(super) relay_key: PublicKey,
    pub(super) forward_dh: [u8; 32],
    pub(super) expires: u64,
    pub(super) signature: Signature,
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
