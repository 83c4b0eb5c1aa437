//! Keys and ids the unit tests of this module share.

use super::id::NucleusId;
use crate::keys::SigningKeyPair;

/// The nucleus the tests use.
pub(super) const N: NucleusId = NucleusId([7; 16]);

/// The identity key pair with seed `[seed; 32]`.
pub(super) fn key(seed: u8) -> SigningKeyPair {
    SigningKeyPair::from_secret_bytes(&[seed; 32])
}

/// Its public key's bytes.
pub(super) fn pk(seed: u8) -> [u8; 32] {
    *key(seed).public().as_bytes()
}
