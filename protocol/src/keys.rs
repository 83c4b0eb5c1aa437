//! Ed25519 signing keys, fingerprints and safety numbers.
//!
//! The same key type serves three roles, kept apart by domain separation:
//! an organizer's long-term identity, a relay's identity (its TLS key), and
//! the per-mailbox sender and recipient keys, which are fresh for every
//! mailbox so that a relay cannot link mailboxes to each other or to people.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::codec::domain_separated;
use crate::limits::SAFETY_NUMBER_ITERATIONS;
use crate::{DecodeError, Error, base32};

/// Bytes of an encoded ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// An ed25519 key pair. The secret is zeroized on drop and never printed.
pub struct SigningKeyPair {
    secret: SigningKey,
    public: PublicKey,
}

impl SigningKeyPair {
    /// Generates a fresh key pair.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self::from_signing_key(SigningKey::generate(rng))
    }

    /// Restores a key pair from its 32-byte secret seed.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(secret))
    }

    fn from_signing_key(secret: SigningKey) -> Self {
        let verifying = secret.verifying_key();
        let public = PublicKey {
            bytes: verifying.to_bytes(),
            key: verifying,
        };
        Self { secret, public }
    }

    /// The 32-byte secret seed, for storage in an encrypted store.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The X25519 secret bound to this ed25519 key: the first half of the
    /// SHA-512 expansion of the seed (RFC 8032 section 5.1.5), which X25519
    /// clamps to the scalar ed25519 signs with. Its public
    /// key is [`PublicKey::to_x25519`]; sessions use the pair for the
    /// identity-bound Diffie-Hellman of the handshake.
    pub(crate) fn x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_scalar_bytes())
    }

    /// Signs `label || 0x00 || parts...`. Only this crate chooses labels, so
    /// a key cannot be made to sign one kind of message as another.
    pub(crate) fn sign_parts(&self, label: &str, parts: &[&[u8]]) -> Signature {
        Signature(self.secret.sign(&domain_separated(label, parts)).to_bytes())
    }
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A validated ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; PUBLIC_KEY_LEN],
    key: VerifyingKey,
}

impl PublicKey {
    /// Parses 32 bytes; fails unless they encode a valid curve point that is
    /// not of small order.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, DecodeError> {
        let key = VerifyingKey::from_bytes(bytes)
            .map_err(|_| DecodeError::InvalidField("ed25519 public key"))?;
        // One encoding per key: refuse non-canonical point encodings, and
        // small-order points, which anyone can "sign" for.
        if key.is_weak() || key.to_edwards().compress().to_bytes() != *bytes {
            return Err(DecodeError::InvalidField("ed25519 public key"));
        }
        Ok(Self { bytes: *bytes, key })
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.bytes
    }

    /// Verifies a signature over `label || 0x00 || parts...` with the strict
    /// RFC 8032 rules (no malleable signatures, no weak keys).
    pub(crate) fn verify_parts(
        &self,
        label: &str,
        parts: &[&[u8]],
        signature: &Signature,
    ) -> Result<(), Error> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.key
            .verify_strict(&domain_separated(label, parts), &sig)
            .map_err(|_| Error::VerificationFailed)
    }

    /// The birationally equivalent X25519 (Montgomery) public key, whose
    /// secret is [`SigningKeyPair::x25519_secret`].
    pub(crate) fn to_x25519(self) -> [u8; 32] {
        self.key.to_montgomery().to_bytes()
    }

    /// The printable fingerprint of this key as an organizer's identity.
    pub fn identity_fingerprint(&self) -> Fingerprint {
        Fingerprint::new(labels::IDENTITY_FINGERPRINT, self)
    }

    /// The fingerprint of this key as a relay's identity: what relay
    /// addresses carry and clients pin.
    pub fn relay_fingerprint(&self) -> Fingerprint {
        Fingerprint::new(labels::RELAY_FINGERPRINT, self)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", base32::encode(&self.bytes))
    }
}

/// An ed25519 signature, as received or produced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; SIGNATURE_LEN]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signature(..)")
    }
}

/// SHA-256 of a public key under a role label, printed in base32 (52
/// characters). Relay addresses carry a relay's fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    fn new(label: &str, key: &PublicKey) -> Self {
        Self(Sha256::digest(domain_separated(label, &[key.as_bytes()])).into())
    }

    /// Parses the 52-character base32 form (either case).
    pub fn parse(text: &str) -> Result<Self, Error> {
        base32::decode::<32>(text)
            .map(Self)
            .ok_or(Error::Address("fingerprint is not 52 base32 characters"))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A safety number: 60 decimal digits that two organizers compare aloud or
/// by QR code to check that each holds the other's real identity key.
///
/// It is the same whichever side computes it.
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// Computes the safety number of two identities.
    pub fn new(a: &PublicKey, b: &PublicKey) -> Self {
        let (da, db) = (Self::half(a), Self::half(b));
        let (first, second) = if da <= db { (da, db) } else { (db, da) };
        Self {
            digits: first + &second,
        }
    }

    /// 30 digits for one identity: 5,200 iterations of SHA-512, then six
    /// 5-byte chunks, each reduced modulo 100,000.
    fn half(key: &PublicKey) -> String {
        let mut hash = Sha512::digest(domain_separated(labels::SAFETY_NUMBER, &[key.as_bytes()]));
        for _ in 0..SAFETY_NUMBER_ITERATIONS {
            let mut h = Sha512::new();
            h.update(hash);
            h.update(key.as_bytes());
            hash = h.finalize();
        }
        hash.chunks_exact(5)
            .take(6)
            .map(|c| {
                let n = c.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                format!("{:05}", n % 100_000)
            })
            .collect()
    }

    /// The 60 digits without separators.
    pub fn digits(&self) -> &str {
        &self.digits
    }
}

impl fmt::Display for SafetyNumber {
    /// Twelve groups of five digits, four groups to a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, group) in self.digits.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(if i % 4 == 0 { "\n" } else { " " })?;
            }
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({})", self.digits)
    }
}

/// Domain-separation labels for every signature and hash in the crate.
/// `docs/protocol.md` lists them; none is a prefix of another followed by a
/// zero byte, so no signed message of one kind parses as another.
pub(crate) mod labels {
    pub(crate) const IDENTITY_FINGERPRINT: &str = "enlace/v1/identity-fingerprint";
    pub(crate) const RELAY_FINGERPRINT: &str = "enlace/v1/relay-fingerprint";
    pub(crate) const SAFETY_NUMBER: &str = "enlace/v1/safety-number";
    pub(crate) const ENVELOPE: &str = "enlace/v1/envelope";
    pub(crate) const RECIPIENT_COMMAND: &str = "enlace/v1/recipient-command";
    pub(crate) const DELIVERY_KEY: &str = "enlace/v1/delivery-key";
    pub(crate) const DELIVERY_AAD: &str = "enlace/v1/delivery";
    pub(crate) const INVITATION: &str = "enlace/v1/invitation";
    pub(crate) const INVITATION_CHECKSUM: &str = "enlace/v1/invitation-checksum";
    pub(crate) const INVITATION_DIGEST: &str = "enlace/v1/invitation-digest";
    pub(crate) const HANDSHAKE_IDENTITY_KEY: &str = "enlace/v1/handshake-identity-key";
    pub(crate) const HANDSHAKE_SECRET: &str = "enlace/v1/handshake-secret";
    pub(crate) const SESSION_AD: &str = "enlace/v1/session-ad";
    pub(crate) const RATCHET_ROOT: &str = "enlace/v1/ratchet-root";
    pub(crate) const RATCHET_MESSAGE_KEY: &str = "enlace/v1/ratchet-message-key";
    pub(crate) const RATCHET_HEADER: &str = "enlace/v1/ratchet-header";
    pub(crate) const RATCHET_BODY: &str = "enlace/v1/ratchet-body";
    pub(crate) const NUCLEUS_OP: &str = "enlace/v1/nucleus-op";
    pub(crate) const NUCLEUS_OP_V2: &str = "enlace/v1/nucleus-op-v2";
    pub(crate) const NUCLEUS_OP_HASH: &str = "enlace/v1/nucleus-op-hash";
    pub(crate) const NUCLEUS_INTRODUCTION: &str = "enlace/v1/nucleus-introduction";
    pub(crate) const RELAY_KEY: &str = "enlace/v1/relay-key";
    pub(crate) const FORWARD_KEY: &str = "enlace/v1/forward-key";
    pub(crate) const FORWARD_AAD: &str = "enlace/v1/forward";
    pub(crate) const FORWARD_ID: &str = "enlace/v1/forward-id";
}

/// What a nucleus (group) signature covers: the client signs membership
/// changes and introductions with its identity key under one of these
/// labels, so neither can be taken for the other or for anything else
/// an identity key signs (invitations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NucleusStatement {
    /// A version-1 membership change (create, add, remove) of a nucleus.
    Op,
    /// A version-2 membership change (with roles and causal parents).
    OpV2,
    /// An introduction of a new member to an existing one.
    Introduction,
}

impl NucleusStatement {
    fn label(self) -> &'static str {
        match self {
            Self::Op => labels::NUCLEUS_OP,
            Self::OpV2 => labels::NUCLEUS_OP_V2,
            Self::Introduction => labels::NUCLEUS_INTRODUCTION,
        }
    }
}

impl SigningKeyPair {
    /// Signs a nucleus statement's encoded bytes with this identity key,
    /// domain-separated by the statement's kind.
    pub fn sign_nucleus(&self, kind: NucleusStatement, bytes: &[u8]) -> Signature {
        self.sign_parts(kind.label(), &[bytes])
    }
}

impl PublicKey {
    /// Verifies (strictly) a signature made by [`SigningKeyPair::sign_nucleus`]
    /// over exactly `bytes` as received.
    pub fn verify_nucleus(
        &self,
        kind: NucleusStatement,
        bytes: &[u8],
        signature: &Signature,
    ) -> Result<(), Error> {
        self.verify_parts(kind.label(), &[bytes], signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKeyPair {
        SigningKeyPair::from_secret_bytes(&[seed; 32])
    }

    #[test]
    fn sign_and_verify_are_domain_separated() {
        let k = key(1);
        let sig = k.sign_parts(labels::ENVELOPE, &[b"abc"]);
        assert!(
            k.public()
                .verify_parts(labels::ENVELOPE, &[b"abc"], &sig)
                .is_ok()
        );
        assert_eq!(
            k.public()
                .verify_parts(labels::RECIPIENT_COMMAND, &[b"abc"], &sig),
            Err(Error::VerificationFailed)
        );
        assert!(
            k.public()
                .verify_parts(labels::ENVELOPE, &[b"abd"], &sig)
                .is_err()
        );
    }

    #[test]
    fn nucleus_statements_are_domain_separated() {
        let k = key(2);
        let sig = k.sign_nucleus(NucleusStatement::Op, b"op");
        assert!(
            k.public()
                .verify_nucleus(NucleusStatement::Op, b"op", &sig)
                .is_ok()
        );
        assert!(
            k.public()
                .verify_nucleus(NucleusStatement::Introduction, b"op", &sig)
                .is_err()
        );
        assert!(
            k.public()
                .verify_nucleus(NucleusStatement::OpV2, b"op", &sig)
                .is_err()
        );
        assert!(
            k.public()
                .verify_parts(labels::INVITATION, &[b"op"], &sig)
                .is_err()
        );
    }

    #[test]
    fn safety_number_is_symmetric_and_distinct() {
        let (a, b, c) = (key(1), key(2), key(3));
        let ab = SafetyNumber::new(a.public(), b.public());
        assert_eq!(ab, SafetyNumber::new(b.public(), a.public()));
        assert_ne!(ab, SafetyNumber::new(a.public(), c.public()));
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().bytes().all(|d| d.is_ascii_digit()));
        assert_eq!(ab.to_string().lines().count(), 3);
    }

    #[test]
    fn fingerprints_differ_by_role() {
        let k = key(7);
        let id = k.public().identity_fingerprint();
        assert_ne!(id, k.public().relay_fingerprint());
        assert_eq!(Fingerprint::parse(&id.to_string()).unwrap(), id);
        assert_eq!(
            Fingerprint::parse(&id.to_string().to_uppercase()).unwrap(),
            id
        );
    }

    #[test]
    fn weak_and_invalid_keys_rejected() {
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::from_bytes(&identity).is_err());
        assert!(PublicKey::from_bytes(&[0xff; 32]).is_err());
    }

    #[test]
    fn debug_hides_secret() {
        let k = key(9);
        let text = format!("{k:?}");
        assert!(!text.contains(&base32::encode(&[9; 32])));
    }
}
