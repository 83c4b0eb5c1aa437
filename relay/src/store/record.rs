//! The records stored under the keys of `super::layout`: the mailbox
//! record, envelope records with their checksum, and the counters.

use std::fmt;

use enlace_protocol::envelope::{MESSAGE_ID_LEN, MailboxId, MessageId};

use super::error::StoreError;
use super::kv::Cursor;
use super::layout::envelope_key;

/// What the relay keeps about a mailbox.
#[derive(Clone, PartialEq, Eq)]
pub struct MailboxRecord {
    /// The id senders use.
    pub send_id: MailboxId,
    /// The recipient's per-mailbox ed25519 key.
    pub recipient_key: [u8; 32],
    /// The sender's per-mailbox key, once secured.
    pub sender_key: Option<[u8; 32]>,
    /// The delivery key agreed at creation (the relay's X25519 secret is gone).
    pub delivery_key: [u8; 32],
    /// Envelopes accepted without a signature check (before securing).
    pub first_contact: u32,
    /// Arrival sequence number of the next envelope.
    pub next_seq: u64,
    /// Envelopes currently stored.
    pub stored: u32,
}

impl fmt::Debug for MailboxRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailboxRecord")
            .field("secured", &self.sender_key.is_some())
            .field("stored", &self.stored)
            .finish_non_exhaustive()
    }
}

const RECORD_LEN: usize = 16 + 32 + 1 + 32 + 32 + 4 + 8 + 4;

impl MailboxRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RECORD_LEN);
        out.extend_from_slice(&self.send_id.0);
        out.extend_from_slice(&self.recipient_key);
        match &self.sender_key {
            Some(k) => {
                out.push(1);
                out.extend_from_slice(k);
            }
            None => {
                out.push(0);
                out.extend_from_slice(&[0; 32]);
            }
        }
        out.extend_from_slice(&self.delivery_key);
        out.extend_from_slice(&self.first_contact.to_be_bytes());
        out.extend_from_slice(&self.next_seq.to_be_bytes());
        out.extend_from_slice(&self.stored.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        const BAD: StoreError = StoreError::Corrupt("mailbox record");
        if bytes.len() != RECORD_LEN {
            return Err(BAD);
        }
        let mut r = Cursor(bytes);
        let send_id = MailboxId(r.array()?);
        let recipient_key = r.array()?;
        let flag: [u8; 1] = r.array()?;
        let sender: [u8; 32] = r.array()?;
        let sender_key = match flag {
            [0] => None,
            [1] => Some(sender),
            _ => return Err(BAD),
        };
        Ok(Self {
            send_id,
            recipient_key,
            sender_key,
            delivery_key: r.array()?,
            first_contact: u32::from_be_bytes(r.array()?),
            next_seq: u64::from_be_bytes(r.array()?),
            stored: u32::from_be_bytes(r.array()?),
        })
    }
}

/// One stored envelope, as read for delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Arrival order within the mailbox.
    pub seq: u64,
    /// The relay's arrival time (Unix seconds), used for expiry.
    pub arrival: u64,
    /// The sender's message id.
    pub message_id: MessageId,
    /// The envelope's wire bytes, exactly as received.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for StoredEnvelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredEnvelope")
            .field("seq", &self.seq)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// Envelope value: arrival (8) | message id (16) | wire bytes.
/// Domain of the checksum stored with each envelope record.
const ENVELOPE_CHECK_LABEL: &[u8] = b"enlace/v1/relay-store-envelope-check";
/// Bytes of SHA-256 kept as the record's checksum.
const CHECK_LEN: usize = 16;
/// Bytes of an envelope record besides the envelope's wire bytes.
pub(crate) const ENVELOPE_RECORD_OVERHEAD: usize = 8 + MESSAGE_ID_LEN + CHECK_LEN;

/// The checksum of an envelope record, bound to the key it is stored under
/// so that a record copied to another place does not verify either. It
/// detects damage to the file (bit flips, torn or misdirected writes) that
/// redb's own page checksums do not cover at read time; it is no defence
/// against someone who can rewrite the file (the recipient's signature and
/// AEAD checks are).
fn envelope_check(id: &MailboxId, seq: u64, body: &[u8]) -> [u8; CHECK_LEN] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(ENVELOPE_CHECK_LABEL);
    h.update(envelope_key(id, seq));
    h.update(body);
    let digest = h.finalize();
    let mut out = [0; CHECK_LEN];
    out.copy_from_slice(digest.get(..CHECK_LEN).unwrap_or(&[0; CHECK_LEN]));
    out
}

pub(crate) fn encode_envelope(
    id: &MailboxId,
    seq: u64,
    arrival: u64,
    msg: &MessageId,
    bytes: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENVELOPE_RECORD_OVERHEAD + bytes.len());
    v.extend_from_slice(&arrival.to_be_bytes());
    v.extend_from_slice(&msg.0);
    v.extend_from_slice(bytes);
    let check = envelope_check(id, seq, &v);
    v.extend_from_slice(&check);
    v
}

/// Decodes an envelope record, refusing one whose checksum does not match.
pub(crate) fn decode_envelope(
    id: &MailboxId,
    seq: u64,
    value: &[u8],
) -> Result<StoredEnvelope, StoreError> {
    const DAMAGED: StoreError = StoreError::Corrupt("envelope record fails its checksum");
    let split = value.len().checked_sub(CHECK_LEN).ok_or(DAMAGED)?;
    let (body, check) = value.split_at(split);
    let expected = envelope_check(id, seq, body);
    if !constant_time_eq(check, &expected) {
        return Err(DAMAGED);
    }
    let mut r = Cursor(body);
    let arrival = u64::from_be_bytes(r.array()?);
    let message_id = MessageId(r.array()?);
    Ok(StoredEnvelope {
        seq,
        arrival,
        message_id,
        bytes: r.0.to_vec(),
    })
}

/// Not secret, but cheap to do right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts for the metrics endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Mailboxes.
    pub mailboxes: u64,
    /// Stored envelopes.
    pub envelopes: u64,
    /// Bytes of stored envelopes.
    pub bytes: u64,
}

impl Stats {
    pub(crate) fn decode(v: Option<Vec<u8>>) -> Result<Self, StoreError> {
        let Some(v) = v else {
            return Ok(Self::default());
        };
        let mut r = Cursor(&v);
        Ok(Self {
            mailboxes: u64::from_be_bytes(r.array()?),
            envelopes: u64::from_be_bytes(r.array()?),
            bytes: u64::from_be_bytes(r.array()?),
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.mailboxes.to_be_bytes());
        v.extend_from_slice(&self.envelopes.to_be_bytes());
        v.extend_from_slice(&self.bytes.to_be_bytes());
        v
    }
}
