//! Introductions (application message kind 5): a new member's invitation
//! for an existing member, sent to its adder, who forwards it unchanged.
//!
//! ```text
//! nucleus [16] | from [32] | to [32] | invitation_len u16
//! | invitation [invitation_len] | signature [64]
//! ```
//!
//! `from` signs every byte before the signature
//! ([`NucleusStatement::Introduction`]); the invitation must be signed by
//! the same key, which the receiver checks when it accepts it.

use std::fmt;

use super::id::{NUCLEUS_ID_LEN, NucleusId};
use super::limits::MAX_INVITATION_BYTES;
use super::signed;
use crate::codec::Reader;
use crate::keys::{NucleusStatement, SIGNATURE_LEN, Signature, SigningKeyPair};
use crate::{DecodeError, Error};

/// A signed introduction. Made by [`Introduction::sign`] or decoded by
/// [`Introduction::decode`], which verifies the signature.
#[derive(Clone, PartialEq, Eq)]
pub struct Introduction {
    nucleus: NucleusId,
    from: [u8; 32],
    to: [u8; 32],
    invitation: Vec<u8>,
    bytes: Vec<u8>,
}

impl fmt::Debug for Introduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Introduction(..)")
    }
}

impl Introduction {
    /// Makes and signs an introduction of `identity` to the member `to`,
    /// carrying `invitation` (an invitation's binary form, made by
    /// `identity`). Fails with [`Error::MessageTooLong`] if the invitation
    /// is longer than [`MAX_INVITATION_BYTES`].
    pub fn sign(
        identity: &SigningKeyPair,
        nucleus: NucleusId,
        to: [u8; 32],
        invitation: &[u8],
    ) -> Result<Self, Error> {
        let too_long = Error::MessageTooLong {
            len: invitation.len(),
            max: MAX_INVITATION_BYTES,
        };
        if invitation.len() > MAX_INVITATION_BYTES {
            return Err(too_long);
        }
        let len = u16::try_from(invitation.len()).map_err(|_| too_long)?;
        let from = *identity.public().as_bytes();
        let mut bytes =
            Vec::with_capacity(NUCLEUS_ID_LEN + 64 + 2 + invitation.len() + SIGNATURE_LEN);
        bytes.extend_from_slice(&nucleus.0);
        bytes.extend_from_slice(&from);
        bytes.extend_from_slice(&to);
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(invitation);
        let signature = identity.sign_nucleus(NucleusStatement::Introduction, &bytes);
        bytes.extend_from_slice(&signature.0);
        Ok(Self {
            nucleus,
            from,
            to,
            invitation: invitation.to_vec(),
            bytes,
        })
    }

    /// Decodes exactly one introduction and verifies its signature over
    /// the bytes as received.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let nucleus = NucleusId(r.array()?);
        let from = r.array()?;
        let to = r.array()?;
        let len = usize::from(r.u16()?);
        if len > MAX_INVITATION_BYTES {
            return Err(DecodeError::InvalidField("introduction invitation length").into());
        }
        let invitation = r.take(len)?;
        let signature = Signature(r.array()?);
        r.finish()?;
        signed::verify(NucleusStatement::Introduction, &from, bytes, &signature)?;
        Ok(Self {
            nucleus,
            from,
            to,
            invitation: invitation.to_vec(),
            bytes: bytes.to_vec(),
        })
    }

    /// The nucleus.
    pub fn nucleus(&self) -> NucleusId {
        self.nucleus
    }

    /// The new member's identity key, which signed it.
    pub fn from(&self) -> &[u8; 32] {
        &self.from
    }

    /// The identity key of the member it is for.
    pub fn to(&self) -> &[u8; 32] {
        &self.to
    }

    /// The invitation it carries (binary form), not yet checked.
    pub fn invitation(&self) -> &[u8] {
        &self.invitation
    }

    /// The signed encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;
    use crate::group::testing::{N, key, pk};
    use crate::group::{Action, ActionV1, Op, OpV1};

    #[test]
    fn introduction_round_trip_and_signature() {
        let i = Introduction::sign(&key(3), N, pk(4), b"invitation").unwrap();
        assert_eq!(Introduction::decode(i.as_bytes()).unwrap(), i);
        let mut b = i.as_bytes().to_vec();
        b[20] ^= 1;
        assert_eq!(Introduction::decode(&b), Err(Error::VerificationFailed));
        assert!(Introduction::decode(&i.as_bytes()[..40]).is_err());
        // An op signature does not verify as an introduction.
        let o = OpV1::sign(&key(3), N, 1, ActionV1::Add, pk(4), "x").unwrap();
        assert!(Introduction::decode(o.as_bytes()).is_err());
        let o = Op::sign(&key(3), N, Action::Add, pk(4), &[o.hash()], "x").unwrap();
        assert!(Introduction::decode(o.as_bytes()).is_err());
    }

    #[test]
    fn invitation_length_is_bounded() {
        let longest = vec![1; MAX_INVITATION_BYTES];
        let i = Introduction::sign(&key(3), N, pk(4), &longest).unwrap();
        assert_eq!(
            Introduction::decode(i.as_bytes()).unwrap().invitation(),
            &longest[..]
        );
        assert!(matches!(
            Introduction::sign(&key(3), N, pk(4), &[1; MAX_INVITATION_BYTES + 1]),
            Err(Error::MessageTooLong { .. })
        ));
        assert_eq!((i.nucleus(), i.from(), i.to()), (N, &pk(3), &pk(4)));
    }
}
