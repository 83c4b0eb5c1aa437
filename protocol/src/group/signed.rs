//! The check every signed nucleus message ends with: the author's
//! identity key over every byte before the trailing signature, as
//! received.

use crate::keys::{NucleusStatement, PublicKey, SIGNATURE_LEN, Signature};
use crate::{DecodeError, Error};

/// Verifies (strictly) that `author` signed every byte of `bytes` before
/// the trailing `signature`, under `kind`'s label. An author that is not a
/// valid key fails verification like a wrong signature.
pub(super) fn verify(
    kind: NucleusStatement,
    author: &[u8; 32],
    bytes: &[u8],
    signature: &Signature,
) -> Result<(), Error> {
    let signed = bytes
        .get(..bytes.len().saturating_sub(SIGNATURE_LEN))
        .ok_or(DecodeError::Truncated)?;
    let key = PublicKey::from_bytes(author).map_err(|_| Error::VerificationFailed)?;
    key.verify_nucleus(kind, signed, signature)
        .map_err(|_| Error::VerificationFailed)
}
