//! The key layout: one keyspace, a prefix byte per kind of record, all
//! integers big-endian (the table is in `docs/storage.md`, "Layout").
//! Every key is built here, so no two kinds of record can collide.

use enlace_protocol::command::ForwardId;
use enlace_protocol::envelope::{MAILBOX_ID_LEN, MailboxId, MessageId};
use enlace_protocol::keys::Fingerprint;

use super::error::StoreError;

/// `M` receive id -> mailbox record.
const P_MAILBOX: u8 = b'M';
/// `S` send id -> receive id.
const P_SEND: u8 = b'S';
/// `E` receive id, sequence -> envelope record.
pub(crate) const P_ENVELOPE: u8 = b'E';
/// `I` receive id, message id -> sequence.
const P_MSGID: u8 = b'I';
/// `X` arrival, receive id, sequence -> empty (expiry index).
pub(crate) const P_EXPIRY: u8 = b'X';
/// `C` -> counters.
pub(crate) const K_STATS: &[u8] = b"C";
/// `Q` destination fingerprint, sequence -> queued forward.
const P_QUEUE: u8 = b'Q';
/// `F` forward id -> forward status.
const P_STATUS: u8 = b'F';
/// `D` destination fingerprint -> next sequence, count.
pub(crate) const P_DEST: u8 = b'D';
/// `Y` deadline, forward id -> empty.
pub(crate) const P_DEADLINE: u8 = b'Y';
/// `q` -> forwards queued in total.
pub(crate) const K_TOTAL: &[u8] = b"q";

pub(crate) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

pub(crate) fn mailbox_key(id: &MailboxId) -> Vec<u8> {
    key(P_MAILBOX, &[&id.0])
}

pub(crate) fn send_key(id: &MailboxId) -> Vec<u8> {
    key(P_SEND, &[&id.0])
}

pub(crate) fn envelope_key(id: &MailboxId, seq: u64) -> Vec<u8> {
    key(P_ENVELOPE, &[&id.0, &seq.to_be_bytes()])
}

/// The prefix of every envelope key of one mailbox.
pub(crate) fn envelope_prefix(id: &MailboxId) -> Vec<u8> {
    key(P_ENVELOPE, &[&id.0])
}

pub(crate) fn msgid_key(id: &MailboxId, msg: &MessageId) -> Vec<u8> {
    key(P_MSGID, &[&id.0, &msg.0])
}

pub(crate) fn expiry_key(arrival: u64, id: &MailboxId, seq: u64) -> Vec<u8> {
    key(
        P_EXPIRY,
        &[&arrival.to_be_bytes(), &id.0, &seq.to_be_bytes()],
    )
}

pub(crate) fn seq_from_envelope_key(k: &[u8]) -> Result<u64, StoreError> {
    let tail = k
        .get(1 + MAILBOX_ID_LEN..)
        .and_then(|t| <[u8; 8]>::try_from(t).ok())
        .ok_or(StoreError::Corrupt("envelope key"))?;
    Ok(u64::from_be_bytes(tail))
}

pub(crate) fn queue_key(dest: &Fingerprint, seq: u64) -> Vec<u8> {
    key(P_QUEUE, &[&dest.0, &seq.to_be_bytes()])
}

/// The prefix of every queue key of one destination.
pub(crate) fn queue_prefix(dest: &Fingerprint) -> Vec<u8> {
    key(P_QUEUE, &[&dest.0])
}

pub(crate) fn status_key(id: &ForwardId) -> Vec<u8> {
    key(P_STATUS, &[&id.0])
}

pub(crate) fn dest_key(dest: &Fingerprint) -> Vec<u8> {
    key(P_DEST, &[&dest.0])
}

pub(crate) fn deadline_key(deadline: u64, id: &ForwardId) -> Vec<u8> {
    key(P_DEADLINE, &[&deadline.to_be_bytes(), &id.0])
}
