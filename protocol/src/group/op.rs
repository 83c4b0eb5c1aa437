//! Version-2 membership operations (application message kind 16): roles,
//! consent and causal parents.
//!
//! ```text
//! nucleus [16] | action u8 | role u8 | author [32] | target [32]
//! | parent_count u8 | parents [32 * parent_count] | name_len u8
//! | name [name_len] (UTF-8) | signature [64]
//! ```
//!
//! The signature is the author's identity key over every byte before it
//! ([`NucleusStatement::OpV2`]). An operation's [`OpHash`] is SHA-256 over
//! its whole encoding, domain-separated; the parents are the hashes of the
//! operations its author had seen that no other of them descends from (its
//! heads), in ascending byte order. Only a `create` has no parents.

use std::fmt;

use sha2::{Digest, Sha256};

use super::id::{NUCLEUS_ID_LEN, NucleusId};
use super::limits::{MAX_NAME_BYTES, MAX_PARENTS};
use super::role::Role;
use super::signed;
use crate::codec::{Reader, domain_separated};
use crate::keys::{NucleusStatement, SIGNATURE_LEN, Signature, SigningKeyPair, labels};
use crate::{DecodeError, Error};

/// Bytes of an operation hash.
pub const OP_HASH_LEN: usize = 32;

/// Bytes of an operation besides its parents, name and signature.
const FIXED_LEN: usize = NUCLEUS_ID_LEN + 1 + 1 + 32 + 32 + 1 + 1;

/// An operation's hash: SHA-256 of `enlace/v1/nucleus-op-hash`, a zero
/// byte and the operation's encoding (either version). Parents name
/// operations by it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpHash(pub [u8; OP_HASH_LEN]);

impl fmt::Debug for OpHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpHash(..)")
    }
}

impl OpHash {
    /// The hash of an operation's encoding, of either version.
    pub fn of(encoding: &[u8]) -> Self {
        Self(Sha256::digest(domain_separated(labels::NUCLEUS_OP_HASH, &[encoding])).into())
    }
}

/// What a version-2 operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// The creator founds the nucleus and is its first owner (the target
    /// is the author; no parents).
    Create,
    /// An owner or admin invites the target, who is a member once it
    /// joins.
    Add,
    /// The author removes the target; itself: leaving, or declining an
    /// invitation.
    Remove,
    /// The author gives the target a role.
    SetRole(Role),
    /// The author, invited, accepts (the target is the author).
    Join,
}

impl Action {
    /// Its action byte.
    fn byte(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Add => 2,
            Self::Remove => 3,
            Self::SetRole(_) => 4,
            Self::Join => 5,
        }
    }

    /// Its role byte: the role given for `SetRole`, 0 otherwise.
    fn role_byte(self) -> u8 {
        match self {
            Self::SetRole(role) => role.byte(),
            _ => 0,
        }
    }

    fn from_bytes(action: u8, role: u8) -> Result<Self, DecodeError> {
        let no_role = |a: Self| {
            if role == 0 {
                Ok(a)
            } else {
                Err(DecodeError::InvalidField("nucleus operation role"))
            }
        };
        match action {
            1 => no_role(Self::Create),
            2 => no_role(Self::Add),
            3 => no_role(Self::Remove),
            4 => Role::from_byte(role).map(Self::SetRole),
            5 => no_role(Self::Join),
            _ => Err(DecodeError::InvalidField("nucleus operation action")),
        }
    }

    /// Whether the target must be the author.
    fn is_about_self(self) -> bool {
        matches!(self, Self::Create | Self::Join)
    }

    /// Whether it may carry a name.
    fn carries_name(self) -> bool {
        matches!(self, Self::Create | Self::Add)
    }
}

/// A signed version-2 membership operation. Made by [`Op::sign`] or
/// decoded by [`Op::decode`], which verifies the signature; its fields
/// cannot be changed apart from its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Op {
    nucleus: NucleusId,
    action: Action,
    author: [u8; 32],
    target: [u8; 32],
    parents: Vec<OpHash>,
    name: String,
    bytes: Vec<u8>,
    hash: OpHash,
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Op({:?}, {} parents)", self.action, self.parents.len())
    }
}

impl Op {
    /// Makes and signs an operation with the author's identity key.
    ///
    /// `parents` are the hashes of the author's heads, in any order (they
    /// are sorted and duplicates dropped): none for [`Action::Create`], 1
    /// to [`MAX_PARENTS`] otherwise. `target` is the author's own key for
    /// `Create` and `Join`. `name` is the nucleus's name for `Create`, the
    /// adder's name for the new member for `Add`, and empty otherwise.
    /// Fails with [`Error::MessageTooLong`] for a name longer than
    /// [`MAX_NAME_BYTES`] and [`Error::Decode`] for anything else the
    /// decoder would refuse.
    pub fn sign(
        identity: &SigningKeyPair,
        nucleus: NucleusId,
        action: Action,
        target: [u8; 32],
        parents: &[OpHash],
        name: &str,
    ) -> Result<Self, Error> {
        let too_long = Error::MessageTooLong {
            len: name.len(),
            max: MAX_NAME_BYTES,
        };
        let name_len = u8::try_from(name.len()).map_err(|_| too_long)?;
        let mut parents = parents.to_vec();
        parents.sort_unstable();
        parents.dedup();
        let author = *identity.public().as_bytes();
        check(action, &author, &target, &parents, name)?;
        let count = u8::try_from(parents.len())
            .map_err(|_| DecodeError::InvalidField("nucleus operation parents"))?;
        let mut bytes = Vec::with_capacity(
            FIXED_LEN + OP_HASH_LEN * parents.len() + name.len() + SIGNATURE_LEN,
        );
        bytes.extend_from_slice(&nucleus.0);
        bytes.push(action.byte());
        bytes.push(action.role_byte());
        bytes.extend_from_slice(&author);
        bytes.extend_from_slice(&target);
        bytes.push(count);
        for p in &parents {
            bytes.extend_from_slice(&p.0);
        }
        bytes.push(name_len);
        bytes.extend_from_slice(name.as_bytes());
        let signature = identity.sign_nucleus(NucleusStatement::OpV2, &bytes);
        bytes.extend_from_slice(&signature.0);
        let hash = OpHash::of(&bytes);
        Ok(Self {
            nucleus,
            action,
            author,
            target,
            parents,
            name: name.to_owned(),
            bytes,
            hash,
        })
    }

    /// Decodes exactly one operation and verifies its signature over the
    /// bytes as received. An author that is not a valid key fails
    /// verification.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let (op, signature) = Self::parse(bytes)?;
        signed::verify(NucleusStatement::OpV2, &op.author, bytes, &signature)?;
        Ok(op)
    }

    /// Decodes exactly one operation *without* verifying its signature:
    /// only for bytes that [`Op::decode`] accepted before and that were
    /// kept where nobody else can change them (an authenticated store).
    /// Never use it on bytes from the network.
    pub fn decode_unverified(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::parse(bytes).map(|(op, _)| op)
    }

    fn parse(bytes: &[u8]) -> Result<(Self, Signature), DecodeError> {
        let mut r = Reader::new(bytes);
        let nucleus = NucleusId(r.array()?);
        let action_byte = r.u8()?;
        let role_byte = r.u8()?;
        let action = Action::from_bytes(action_byte, role_byte)?;
        let author = r.array()?;
        let target = r.array()?;
        let count = usize::from(r.u8()?);
        if count > MAX_PARENTS {
            return Err(DecodeError::InvalidField("nucleus operation parents"));
        }
        let mut parents = Vec::with_capacity(count);
        for _ in 0..count {
            parents.push(OpHash(r.array()?));
        }
        let len = usize::from(r.u8()?);
        let name = std::str::from_utf8(r.take(len)?)
            .map_err(|_| DecodeError::InvalidField("nucleus operation name"))?
            .to_owned();
        let signature = Signature(r.array()?);
        r.finish()?;
        // Ascending without repeats: one encoding per set of parents.
        if parents.windows(2).any(|w| w.first() >= w.get(1)) {
            return Err(DecodeError::InvalidField("nucleus operation parents"));
        }
        check(action, &author, &target, &parents, &name)?;
        let op = Self {
            nucleus,
            action,
            author,
            target,
            parents,
            name,
            bytes: bytes.to_vec(),
            hash: OpHash::of(bytes),
        };
        Ok((op, signature))
    }

    /// The nucleus it changes.
    pub fn nucleus(&self) -> NucleusId {
        self.nucleus
    }

    /// What it does.
    pub fn action(&self) -> Action {
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

    /// Its causal parents, ascending.
    pub fn parents(&self) -> &[OpHash] {
        &self.parents
    }

    /// The name it carries (see [`Op::sign`]). Chosen by the author: not
    /// safe to print or to use in a local name as it is.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its hash, by which later operations name it.
    pub fn hash(&self) -> OpHash {
        self.hash
    }
}

/// What both signing and decoding require beyond the layout: parents only
/// and always outside a `create`, a target that is the author for
/// `create` and `join`, a name only where one belongs.
fn check(
    action: Action,
    author: &[u8; 32],
    target: &[u8; 32],
    parents: &[OpHash],
    name: &str,
) -> Result<(), DecodeError> {
    let parents_ok = if action == Action::Create {
        parents.is_empty()
    } else {
        (1..=MAX_PARENTS).contains(&parents.len())
    };
    if !parents_ok {
        return Err(DecodeError::InvalidField("nucleus operation parents"));
    }
    if action.is_about_self() && author != target {
        return Err(DecodeError::InvalidField("nucleus operation target"));
    }
    if !action.carries_name() && !name.is_empty() {
        return Err(DecodeError::InvalidField("nucleus operation name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;
    use crate::group::testing::{N, key, pk};

    fn parent(b: u8) -> OpHash {
        OpHash([b; 32])
    }

    #[test]
    fn round_trip_tamper_and_truncation() {
        let o = Op::sign(&key(1), N, Action::Add, pk(2), &[parent(9), parent(3)], "x").unwrap();
        assert_eq!(o.parents(), &[parent(3), parent(9)]);
        let decoded = Op::decode(o.as_bytes()).unwrap();
        assert_eq!(decoded, o);
        assert_eq!(decoded.hash(), OpHash::of(o.as_bytes()));
        for i in 0..o.as_bytes().len() {
            let mut b = o.as_bytes().to_vec();
            b[i] ^= 1;
            assert!(Op::decode(&b).is_err(), "flip at {i} accepted");
        }
        for cut in 0..o.as_bytes().len() {
            assert!(Op::decode(&o.as_bytes()[..cut]).is_err());
        }
        let mut longer = o.as_bytes().to_vec();
        longer.push(0);
        assert!(Op::decode(&longer).is_err());
        let back = Op::decode_unverified(o.as_bytes()).unwrap();
        assert_eq!((back.author(), back.target()), (&pk(1), &pk(2)));
        assert_eq!(
            (back.nucleus(), back.action(), back.name()),
            (N, Action::Add, "x")
        );
    }

    #[test]
    fn shape_rules_hold_when_signing() {
        let bad = |action, target, parents: &[OpHash], name| {
            matches!(
                Op::sign(&key(1), N, action, target, parents, name),
                Err(Error::Decode(DecodeError::InvalidField(_)))
            )
        };
        // A create has no parents and is about its author.
        assert!(bad(Action::Create, pk(1), &[parent(1)], "n"));
        assert!(bad(Action::Create, pk(2), &[], "n"));
        assert!(Op::sign(&key(1), N, Action::Create, pk(1), &[], "n").is_ok());
        // Anything else has 1 to MAX_PARENTS parents.
        assert!(bad(Action::Add, pk(2), &[], "n"));
        let many: Vec<OpHash> = (0..=MAX_PARENTS as u8).map(parent).collect();
        assert!(bad(Action::Remove, pk(2), &many, ""));
        assert!(Op::sign(&key(1), N, Action::Remove, pk(2), &many[1..], "").is_ok());
        // A join is about its author; only create and add carry names.
        assert!(bad(Action::Join, pk(2), &[parent(1)], ""));
        assert!(bad(Action::Remove, pk(2), &[parent(1)], "n"));
        assert!(bad(Action::SetRole(Role::Admin), pk(2), &[parent(1)], "n"));
        let over = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(matches!(
            Op::sign(&key(1), N, Action::Add, pk(2), &[parent(1)], &over),
            Err(Error::MessageTooLong { .. })
        ));
    }

    #[test]
    fn role_byte_only_with_set_role_and_parents_canonical() {
        let o = Op::sign(
            &key(1),
            N,
            Action::SetRole(Role::Admin),
            pk(2),
            &[parent(1)],
            "",
        )
        .unwrap();
        let b = o.as_bytes();
        assert_eq!((b[16], b[17]), (4, 2));
        assert_eq!(
            Op::decode(b).unwrap().action(),
            Action::SetRole(Role::Admin)
        );
        let a = Op::sign(&key(1), N, Action::Join, pk(1), &[parent(1), parent(2)], "").unwrap();
        let mut swapped = a.as_bytes().to_vec();
        // Role byte on a join: malformed before the signature is checked.
        swapped[17] = 1;
        assert!(Op::decode_unverified(&swapped).is_err());
        // Parents out of order: malformed.
        let mut unordered = a.as_bytes().to_vec();
        let start = FIXED_LEN - 1;
        unordered[start..start + 32].copy_from_slice(&[2; 32]);
        unordered[start + 32..start + 64].copy_from_slice(&[1; 32]);
        assert!(Op::decode_unverified(&unordered).is_err());
        // A version-1 signature does not verify as version 2.
        let v1 = key(1).sign_nucleus(
            NucleusStatement::Op,
            &a.as_bytes()[..a.as_bytes().len() - 64],
        );
        let mut relabelled = a.as_bytes().to_vec();
        let at = relabelled.len() - 64;
        relabelled[at..].copy_from_slice(&v1.0);
        assert_eq!(Op::decode(&relabelled), Err(Error::VerificationFailed));
    }
}
