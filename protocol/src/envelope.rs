//! The signed envelope: what senders deposit, relays store and recipients
//! drain.
//!
//! ```text
//! version u8 | send id [16] | message id [16] | timestamp u32 | size class u8
//! | body [2048 | 16384 | 65536] | signature [64]
//! ```
//!
//! The signature is ed25519 by the per-mailbox sender key over
//! `"enlace/v1/envelope" || 0x00 || every byte before the signature`, checked
//! over the bytes exactly as received. The body is already end-to-end
//! ciphertext padded by the session layer to one of three fixed sizes, so all
//! chat envelopes have the same length on the wire.

use std::fmt;

use crate::codec::Reader;
use crate::keys::{PublicKey, SIGNATURE_LEN, Signature, SigningKeyPair, labels};
use crate::limits::{BODY_LARGE, BODY_MEDIUM, BODY_SMALL, ENVELOPE_OVERHEAD};
use crate::{DecodeError, Error};

/// The envelope format version this crate writes and accepts.
pub const ENVELOPE_VERSION: u8 = 1;

/// Bytes of a mailbox id.
pub const MAILBOX_ID_LEN: usize = 16;
/// Bytes of a message id.
pub const MESSAGE_ID_LEN: usize = 16;

/// A mailbox id: 128 random bits chosen by the relay. A mailbox has two
/// unrelated ids, the receive id (known only to its recipient) and the send
/// id (given to contacts).
///
/// `Debug` does not print the id: ids must not reach logs at default level.
/// Use [`MailboxId::to_hex`] deliberately where an id must be shown.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MailboxId(pub [u8; MAILBOX_ID_LEN]);

impl MailboxId {
    /// Lowercase hex, for debug-level logs and tests.
    pub fn to_hex(&self) -> String {
        hex_string(&self.0)
    }
}

impl fmt::Debug for MailboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MailboxId(..)")
    }
}

/// A message id: 128 random bits chosen by the sender, unique per message.
/// Recipients acknowledge by it and drop duplicates by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub [u8; MESSAGE_ID_LEN]);

impl MessageId {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex_string(&self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.to_hex())
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A coarse timestamp: whole hours since the Unix epoch. Coarse so that a
/// relay's disk does not record when exactly someone wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CoarseTime(pub u32);

impl CoarseTime {
    /// Seconds per unit.
    pub const RESOLUTION_SECS: u64 = 3600;

    /// Rounds a Unix time down to the hour.
    pub fn from_unix_secs(secs: u64) -> Self {
        Self(u32::try_from(secs / Self::RESOLUTION_SECS).unwrap_or(u32::MAX))
    }

    /// The start of the hour, in Unix seconds.
    pub fn as_unix_secs(self) -> u64 {
        u64::from(self.0) * Self::RESOLUTION_SECS
    }
}

/// The three fixed body sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodySize {
    /// [`BODY_SMALL`] bytes: every ordinary chat message.
    Small,
    /// [`BODY_MEDIUM`] bytes: handshakes and short documents.
    Medium,
    /// [`BODY_LARGE`] bytes: file chunks.
    Large,
}

impl BodySize {
    /// Body length in bytes (never zero, so no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(self) -> usize {
        match self {
            Self::Small => BODY_SMALL,
            Self::Medium => BODY_MEDIUM,
            Self::Large => BODY_LARGE,
        }
    }

    /// The smallest size that holds `n` bytes.
    pub fn fitting(n: usize) -> Option<Self> {
        [Self::Small, Self::Medium, Self::Large]
            .into_iter()
            .find(|s| s.len() >= n)
    }

    /// Wire code of this size class.
    pub const fn code(self) -> u8 {
        match self {
            Self::Small => 1,
            Self::Medium => 2,
            Self::Large => 3,
        }
    }

    fn from_code(code: u8) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(Self::Small),
            2 => Ok(Self::Medium),
            3 => Ok(Self::Large),
            other => Err(DecodeError::InvalidBodySize(other)),
        }
    }

    fn from_len(len: usize) -> Result<Self, Error> {
        [Self::Small, Self::Medium, Self::Large]
            .into_iter()
            .find(|s| s.len() == len)
            .ok_or(Error::BodySize(len))
    }
}

/// A decoded (or freshly signed) envelope. Holds its exact wire bytes, so
/// verification and storage use what was received, never a re-encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    bytes: Vec<u8>,
    send_id: MailboxId,
    message_id: MessageId,
    timestamp: CoarseTime,
    body_size: BodySize,
}

/// Offset of the body in the encoding.
const BODY_OFFSET: usize = 1 + MAILBOX_ID_LEN + MESSAGE_ID_LEN + 4 + 1;

impl Envelope {
    /// Builds and signs an envelope. `body` must be exactly one of the fixed
    /// sizes (the session layer pads before encrypting).
    pub fn sign(
        sender: &SigningKeyPair,
        send_id: MailboxId,
        message_id: MessageId,
        timestamp: CoarseTime,
        body: &[u8],
    ) -> Result<Self, Error> {
        let body_size = BodySize::from_len(body.len())?;
        let mut bytes = Vec::with_capacity(ENVELOPE_OVERHEAD + body.len());
        bytes.push(ENVELOPE_VERSION);
        bytes.extend_from_slice(&send_id.0);
        bytes.extend_from_slice(&message_id.0);
        bytes.extend_from_slice(&timestamp.0.to_be_bytes());
        bytes.push(body_size.code());
        bytes.extend_from_slice(body);
        let signature = sender.sign_parts(labels::ENVELOPE, &[&bytes]);
        bytes.extend_from_slice(&signature.0);
        Ok(Self {
            bytes,
            send_id,
            message_id,
            timestamp,
            body_size,
        })
    }

    /// Decodes exactly one envelope. Does not verify the signature: the
    /// relay needs the send id to find the key; call [`Envelope::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let env = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(env)
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.remaining();
        let all = r.clone_rest();
        let version = r.u8()?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion(u16::from(version)));
        }
        let send_id = MailboxId(r.array()?);
        let message_id = MessageId(r.array()?);
        let timestamp = CoarseTime(r.u32()?);
        let body_size = BodySize::from_code(r.u8()?)?;
        r.take(body_size.len())?;
        r.take(SIGNATURE_LEN)?;
        let used = start - r.remaining();
        let bytes = all.get(..used).ok_or(DecodeError::Truncated)?.to_vec();
        Ok(Self {
            bytes,
            send_id,
            message_id,
            timestamp,
            body_size,
        })
    }

    /// Checks the signature against the mailbox's sender key, over the bytes
    /// as received.
    pub fn verify(&self, sender: &PublicKey) -> Result<(), Error> {
        let (signed, sig) = self.bytes.split_at(self.bytes.len() - SIGNATURE_LEN);
        let sig: [u8; SIGNATURE_LEN] = sig.try_into().map_err(|_| Error::VerificationFailed)?;
        sender.verify_parts(labels::ENVELOPE, &[signed], &Signature(sig))
    }

    /// The exact wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The wire bytes, consuming the envelope.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// The send id of the mailbox this envelope is addressed to.
    pub fn send_id(&self) -> MailboxId {
        self.send_id
    }

    /// The sender-chosen message id.
    pub fn message_id(&self) -> MessageId {
        self.message_id
    }

    /// The sender's coarse timestamp (not trusted by relays for expiry).
    pub fn timestamp(&self) -> CoarseTime {
        self.timestamp
    }

    /// The size class of the body.
    pub fn body_size(&self) -> BodySize {
        self.body_size
    }

    /// The padded, end-to-end encrypted body.
    pub fn body(&self) -> &[u8] {
        self.bytes
            .get(BODY_OFFSET..BODY_OFFSET + self.body_size.len())
            .unwrap_or_default()
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("message_id", &self.message_id)
            .field("timestamp", &self.timestamp)
            .field("body_size", &self.body_size)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body_len: usize) -> (SigningKeyPair, Envelope) {
        let key = SigningKeyPair::from_secret_bytes(&[3; 32]);
        let env = Envelope::sign(
            &key,
            MailboxId([1; 16]),
            MessageId([2; 16]),
            CoarseTime(493_000),
            &vec![0xab; body_len],
        )
        .unwrap();
        (key, env)
    }

    #[test]
    fn sign_decode_verify() {
        for size in [BodySize::Small, BodySize::Medium, BodySize::Large] {
            let (key, env) = sample(size.len());
            assert_eq!(env.as_bytes().len(), ENVELOPE_OVERHEAD + size.len());
            let decoded = Envelope::decode(env.as_bytes()).unwrap();
            assert_eq!(decoded, env);
            assert_eq!(decoded.body(), vec![0xab; size.len()]);
            decoded.verify(key.public()).unwrap();
        }
    }

    #[test]
    fn every_byte_is_covered_by_the_signature() {
        let (key, env) = sample(BODY_SMALL);
        for i in 0..env.as_bytes().len() {
            let mut bytes = env.as_bytes().to_vec();
            bytes[i] ^= 1;
            if let Ok(e) = Envelope::decode(&bytes) {
                assert!(e.verify(key.public()).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn wrong_sizes_rejected() {
        let key = SigningKeyPair::from_secret_bytes(&[3; 32]);
        let ids = (MailboxId([1; 16]), MessageId([2; 16]));
        assert_eq!(
            Envelope::sign(&key, ids.0, ids.1, CoarseTime(0), &[0; 2047]),
            Err(Error::BodySize(2047))
        );
        let (_, env) = sample(BODY_SMALL);
        let mut bytes = env.as_bytes().to_vec();
        bytes.push(0);
        assert_eq!(Envelope::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(Envelope::decode(&bytes[..100]), Err(DecodeError::Truncated));
        bytes[0] = 2;
        assert_eq!(
            Envelope::decode(&bytes),
            Err(DecodeError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn debug_hides_ids() {
        let (_, env) = sample(BODY_SMALL);
        assert!(!format!("{:?}", env.send_id()).contains("0101"));
    }
}
