//! Version-1 membership operations (application message kind 3): read
//! from profiles and welcomes made before version 2, never made anew.
//!
//! ```text
//! nucleus [16] | lamport u64 | action u8 | author [32] | target [32]
//! | name_len u8 | name [name_len] (UTF-8) | signature [64]
//! ```
//!
//! The signature is the author's identity key over every byte before it
//! ([`NucleusStatement::Op`]). Its 64 bytes are also the operation's id:
//! ed25519 signatures checked with `verify_strict` are not malleable.

use std::fmt;

use super::id::{NUCLEUS_ID_LEN, NucleusId};
use super::limits::MAX_NAME_BYTES;
use super::op::OpHash;
use super::signed;
use crate::codec::Reader;
use crate::keys::{NucleusStatement, SIGNATURE_LEN, Signature, SigningKeyPair};
use crate::{DecodeError, Error};

/// Bytes of an operation besides its name and signature.
const FIXED_LEN: usize = NUCLEUS_ID_LEN + 8 + 1 + 32 + 32 + 1;

/// A version-1 membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ActionV1 {
    /// The creator founds the nucleus (the target is the author).
    Create,
    /// The author adds the target.
    Add,
    /// The author removes the target (itself: leaving).
    Remove,
}

impl ActionV1 {
    fn byte(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Add => 2,
            Self::Remove => 3,
        }
    }

    fn from_byte(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(Self::Create),
            2 => Ok(Self::Add),
            3 => Ok(Self::Remove),
            _ => Err(DecodeError::InvalidField("nucleus operation action")),
        }
    }
}

/// An operation's id: its signature's bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpId(..)")
    }
}

/// Where a version-1 operation sorts among those: by Lamport clock, then
/// by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    /// The operation's Lamport clock.
    pub lamport: u64,
    /// The operation's id, which breaks ties.
    pub id: OpId,
}

/// A signed version-1 membership operation. Made by [`OpV1::sign`] or decoded by
/// [`OpV1::decode`], which verifies the signature; its fields cannot be
/// changed apart from its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct OpV1 {
    nucleus: NucleusId,
    lamport: u64,
    action: ActionV1,
    author: [u8; 32],
    target: [u8; 32],
    name: String,
    bytes: Vec<u8>,
}

impl fmt::Debug for OpV1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpV1({:?} at {})", self.action, self.lamport)
    }
}

impl OpV1 {
    /// Makes and signs a version-1 operation with the author's identity
    /// key: for test vectors and for reading old profiles in tests; new
    /// changes are version 2 ([`super::Op`]).
    ///
    /// `name` is the nucleus's name for [`ActionV1::Create`], the adder's
    /// name for the new member for [`ActionV1::Add`], empty for
    /// [`ActionV1::Remove`]. Fails with [`Error::MessageTooLong`] if it is
    /// longer than [`MAX_NAME_BYTES`].
    pub fn sign(
        identity: &SigningKeyPair,
        nucleus: NucleusId,
        lamport: u64,
        action: ActionV1,
        target: [u8; 32],
        name: &str,
    ) -> Result<Self, Error> {
        let too_long = Error::MessageTooLong {
            len: name.len(),
            max: MAX_NAME_BYTES,
        };
        if name.len() > MAX_NAME_BYTES {
            return Err(too_long);
        }
        let name_len = u8::try_from(name.len()).map_err(|_| too_long)?;
        let author = *identity.public().as_bytes();
        let mut bytes = Vec::with_capacity(FIXED_LEN + name.len() + SIGNATURE_LEN);
        bytes.extend_from_slice(&nucleus.0);
        bytes.extend_from_slice(&lamport.to_be_bytes());
        bytes.push(action.byte());
        bytes.extend_from_slice(&author);
        bytes.extend_from_slice(&target);
        bytes.push(name_len);
        bytes.extend_from_slice(name.as_bytes());
        let signature = identity.sign_nucleus(NucleusStatement::Op, &bytes);
        bytes.extend_from_slice(&signature.0);
        Ok(Self {
            nucleus,
            lamport,
            action,
            author,
            target,
            name: name.to_owned(),
            bytes,
        })
    }

    /// Decodes exactly one operation and verifies its signature over the
    /// bytes as received. A `create` whose target is not its author is
    /// malformed; an author that is not a valid key fails verification.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (op, signature) = Self::parse(bytes)?;
        signed::verify(NucleusStatement::Op, &op.author, bytes, &signature)?;
        Ok(op)
    }

    /// Decodes exactly one operation *without* verifying its signature:
    /// only for bytes that [`OpV1::decode`] accepted before and that were
    /// kept where nobody else can change them (an authenticated store).
    /// Never use it on bytes from the network.
    pub fn decode_unverified(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::parse(bytes).map(|(op, _)| op)
    }

    fn parse(bytes: &[u8]) -> Result<(Self, Signature), DecodeError> {
        let mut r = Reader::new(bytes);
        let nucleus = NucleusId(r.array()?);
        let lamport = u64::from_be_bytes(r.array()?);
        let action = ActionV1::from_byte(r.u8()?)?;
        let author = r.array()?;
        let target = r.array()?;
        let len = usize::from(r.u8()?);
        let name = std::str::from_utf8(r.take(len)?)
            .map_err(|_| DecodeError::InvalidField("nucleus operation name"))?
            .to_owned();
        let signature = Signature(r.array()?);
        r.finish()?;
        if action == ActionV1::Create && author != target {
            return Err(DecodeError::InvalidField("nucleus create target"));
        }
        let op = Self {
            nucleus,
            lamport,
            action,
            author,
            target,
            name,
            bytes: bytes.to_vec(),
        };
        Ok((op, signature))
    }

    /// The nucleus it changes.
    pub fn nucleus(&self) -> NucleusId {
        self.nucleus
    }

    /// Its Lamport clock: one more than the largest the author had seen.
    pub fn lamport(&self) -> u64 {
        self.lamport
    }

    /// What it does.
    pub fn action(&self) -> ActionV1 {
        self.action
    }

    /// The identity key that signed it.
    pub fn author(&self) -> &[u8; 32] {
        &self.author
    }

    /// The identity key it concerns.
    pub fn target(&self) -> &[u8; 32] {
        &self.target
    }

    /// The name it carries (see [`OpV1::sign`]). Chosen by the author: not
    /// safe to print or to use in a local name as it is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its id: the signature.
    pub fn id(&self) -> OpId {
        let mut id = [0u8; SIGNATURE_LEN];
        if let Some(signature) = self.bytes.last_chunk::<SIGNATURE_LEN>() {
            id = *signature;
        }
        OpId(id)
    }

    /// Its hash, by which version-2 operations name it as a parent.
    pub fn hash(&self) -> OpHash {
        OpHash::of(&self.bytes)
    }

    /// Where it sorts among version-1 operations.
    pub fn order_key(&self) -> OrderKey {
        OrderKey {
            lamport: self.lamport,
            id: self.id(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;
    use crate::group::testing::{N, key, pk};

    #[test]
    fn op_round_trip_and_tamper() {
        let o = OpV1::sign(&key(1), N, 3, ActionV1::Add, pk(2), "x").unwrap();
        let decoded = OpV1::decode(o.as_bytes()).unwrap();
        assert_eq!(decoded, o);
        for i in 0..o.as_bytes().len() {
            let mut b = o.as_bytes().to_vec();
            b[i] ^= 1;
            assert!(OpV1::decode(&b).is_err(), "flip at {i} accepted");
        }
        for cut in 0..o.as_bytes().len() {
            assert!(OpV1::decode(&o.as_bytes()[..cut]).is_err());
        }
        let mut longer = o.as_bytes().to_vec();
        longer.push(0);
        assert!(OpV1::decode(&longer).is_err());
        // A create naming someone else is refused.
        let bad = OpV1::sign(&key(1), N, 1, ActionV1::Create, pk(2), "n").unwrap();
        assert!(matches!(
            OpV1::decode(bad.as_bytes()),
            Err(Error::Decode(DecodeError::InvalidField(_)))
        ));
    }

    #[test]
    fn fields_survive_decoding_unverified() {
        let o = OpV1::sign(&key(4), N, 9, ActionV1::Remove, pk(5), "").unwrap();
        let back = OpV1::decode_unverified(o.as_bytes()).unwrap();
        assert_eq!(back, o);
        assert_eq!(
            (back.nucleus(), back.lamport(), back.action()),
            (N, 9, ActionV1::Remove)
        );
        assert_eq!((back.author(), back.target()), (&pk(4), &pk(5)));
        assert_eq!(back.id().0, o.as_bytes()[o.as_bytes().len() - 64..]);
        // A forged signature is not noticed here: that is what decode is for.
        let mut forged = o.as_bytes().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(OpV1::decode_unverified(&forged).is_ok());
        assert_eq!(OpV1::decode(&forged), Err(Error::VerificationFailed));
    }

    #[test]
    fn long_names_refused_when_signing() {
        let longest = "ñ".repeat(127) + "x";
        assert_eq!(longest.len(), MAX_NAME_BYTES);
        assert!(OpV1::sign(&key(1), N, 1, ActionV1::Create, pk(1), &longest).is_ok());
        let over = longest + "x";
        assert_eq!(
            OpV1::sign(&key(1), N, 1, ActionV1::Create, pk(1), &over),
            Err(Error::MessageTooLong {
                len: MAX_NAME_BYTES + 1,
                max: MAX_NAME_BYTES
            })
        );
    }
}
