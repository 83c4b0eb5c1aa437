//! Durable mailbox storage behind one small trait.
//!
//! Every mutation is a [`WriteOp`]; a backend applies a whole batch of them
//! in one atomic, durable commit ([`Store::apply`]), which is what makes group
//! commit possible: the relay's single writer thread hands every deposit,
//! ack, create and delete that queued up during the previous fsync to the
//! next one. Reads go straight to the backend and never wait for a commit.
//!
//! The mailbox logic (quota, duplicates, first contact, expiry) is written
//! once, here, over [`KvTxn`], a tiny ordered key-value transaction; each
//! backend file only maps that onto its engine. The key layout (one keyspace,
//! a prefix byte per kind of record) is in `docs/storage.md`.

use std::fmt;

use enlace_protocol::command::ForwardId;
use enlace_protocol::envelope::{MAILBOX_ID_LEN, MESSAGE_ID_LEN, MailboxId, MessageId};

use self::forward::{Enqueue, ForwardRecord, QueuedForward};

#[cfg(test)]
mod faults;
pub mod forward;
pub mod redb;
#[cfg(feature = "sled")]
pub mod sled;

/// Why storage failed. The relay never acknowledges an operation whose
/// batch failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The disk is full (ENOSPC).
    #[error("storage is full")]
    Full,
    /// Any other I/O or engine failure.
    #[error("storage failure: {0}")]
    Backend(String),
    /// Bytes on disk do not decode: the store is corrupt.
    #[error("corrupt record in the store: {0}")]
    Corrupt(&'static str),
}

impl StoreError {
    pub(crate) fn from_io(err: &std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::StorageFull {
            Self::Full
        } else {
            Self::Backend(err.to_string())
        }
    }
}

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
    fn encode(&self) -> Vec<u8> {
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

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
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

/// Bounds-checked reads of on-disk bytes.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(StoreError::Corrupt("short record"))?;
        self.0 = rest;
        Ok(*head)
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

/// A mutation, applied in a batch by [`Store::apply`].
#[derive(Clone)]
#[non_exhaustive]
pub enum WriteOp {
    /// Create a mailbox (fails on an id collision).
    Create {
        /// Receive id.
        receive_id: MailboxId,
        /// The new record.
        record: Box<MailboxRecord>,
    },
    /// Register the sender key.
    Secure {
        /// Receive id.
        receive_id: MailboxId,
        /// The sender's per-mailbox key.
        sender_key: [u8; 32],
    },
    /// Store an envelope.
    Deposit {
        /// Receive id of the mailbox the send id named.
        receive_id: MailboxId,
        /// The envelope's message id.
        message_id: MessageId,
        /// Wire bytes.
        bytes: Vec<u8>,
        /// Relay arrival time.
        arrival: u64,
        /// `Some(key)` if the signature was checked against that sender key;
        /// `None` for a first-contact envelope to an unsecured mailbox.
        verified_with: Option<[u8; 32]>,
        /// Maximum stored envelopes.
        quota: u32,
        /// Maximum first-contact envelopes.
        first_contact_limit: u32,
    },
    /// Delete one envelope by message id.
    Ack {
        /// Receive id.
        receive_id: MailboxId,
        /// Message id.
        message_id: MessageId,
    },
    /// Delete a mailbox and its envelopes.
    Delete {
        /// Receive id.
        receive_id: MailboxId,
    },
    /// Delete up to `limit` envelopes that arrived before `before`.
    Expire {
        /// Unix seconds.
        before: u64,
        /// Most envelopes to remove in this batch (bounds the commit size).
        limit: usize,
    },
    /// Queue a sealed forward (`Stored`, `Duplicate` if the forward id is
    /// known, `Quota` if a queue limit is reached).
    ForwardEnqueue(Box<Enqueue>),
    /// Take a queued forward out with its final state (`Done`, or
    /// `NotFound` if it is no longer queued).
    ForwardSettle {
        /// The forward.
        forward_id: ForwardId,
        /// `forward::STATE_STORED` or `forward::STATE_REFUSED`.
        state: u8,
        /// The destination's error code when refused.
        code: u16,
        /// Until when the final state is remembered.
        keep_until: u64,
    },
    /// Expire queued forwards past their deadline and forget old records.
    ForwardExpire {
        /// Unix seconds.
        now: u64,
        /// Until when an expiry is remembered.
        keep_until: u64,
        /// Most records to touch in this batch.
        limit: usize,
    },
}

impl fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create { .. } => "WriteOp::Create",
            Self::Secure { .. } => "WriteOp::Secure",
            Self::Deposit { .. } => "WriteOp::Deposit",
            Self::Ack { .. } => "WriteOp::Ack",
            Self::Delete { .. } => "WriteOp::Delete",
            Self::Expire { .. } => "WriteOp::Expire",
            Self::ForwardEnqueue(_) => "WriteOp::ForwardEnqueue",
            Self::ForwardSettle { .. } => "WriteOp::ForwardSettle",
            Self::ForwardExpire { .. } => "WriteOp::ForwardExpire",
        })
    }
}

/// The result of one [`WriteOp`] in a committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// Done (create, secure, ack, delete).
    Done,
    /// The envelope was stored with this arrival sequence number.
    Stored {
        /// Sequence number.
        seq: u64,
    },
    /// An envelope with this message id is already stored: nothing written.
    Duplicate,
    /// No such mailbox (or a create whose id is taken).
    UnknownMailbox,
    /// Create: an id is already in use.
    Collision,
    /// The mailbox holds its quota.
    Quota,
    /// Secure with a different key than already registered, or a
    /// first-contact deposit to a mailbox that was secured meanwhile, or the
    /// first-contact allowance is used up.
    Refused,
    /// Ack of a message id that is not stored.
    NotFound,
    /// Deposit refused: the disk is nearly full (the rest is kept for
    /// acks, deletes and expiry, which free space).
    Full,
    /// Envelopes expired.
    Expired {
        /// How many.
        count: usize,
    },
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

/// A mailbox store.
///
/// [`Store::apply`] is called from one writer thread only; reads may come
/// from any thread at any time and see the last committed state.
pub trait Store: Send + Sync + 'static {
    /// Applies `ops` in order in one atomic transaction and makes it durable
    /// (fsynced) before returning. On error nothing of the batch may be
    /// reported as done.
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteOutcome>, StoreError>;
    /// Looks a mailbox up by receive id.
    fn mailbox(&self, receive_id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError>;
    /// Looks a mailbox up by send id, returning its receive id too.
    fn mailbox_by_send_id(
        &self,
        send_id: &MailboxId,
    ) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError>;
    /// Up to `limit` envelopes with sequence numbers above `after` (all if
    /// `None`), in arrival order, skipping those that arrived before
    /// `not_before`.
    fn pending(
        &self,
        receive_id: &MailboxId,
        after: Option<u64>,
        not_before: u64,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError>;
    /// Counts.
    fn stats(&self) -> Result<Stats, StoreError>;
    /// The status record of a forward.
    fn forward_status(&self, _id: &ForwardId) -> Result<Option<ForwardRecord>, StoreError> {
        Err(no_forwarding())
    }
    /// Up to `limit` queued forwards to `destination`, in queue order.
    fn forward_queue(
        &self,
        _destination: &[u8; 32],
        _limit: usize,
    ) -> Result<Vec<QueuedForward>, StoreError> {
        Err(no_forwarding())
    }
    /// Up to `limit` queued forwards to `destination` from queue position
    /// `from_seq` on, in queue order.
    fn forward_queue_from(
        &self,
        _destination: &[u8; 32],
        _from_seq: u64,
        _limit: usize,
    ) -> Result<Vec<QueuedForward>, StoreError> {
        Err(no_forwarding())
    }
    /// Fingerprints of destinations with forwards queued.
    fn forward_destinations(&self, _limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
        Err(no_forwarding())
    }
}

fn no_forwarding() -> StoreError {
    StoreError::Backend("this store keeps no forward queue".into())
}

// Key layout: one prefix byte per kind of record.
const P_MAILBOX: u8 = b'M';
const P_SEND: u8 = b'S';
const P_ENVELOPE: u8 = b'E';
const P_MSGID: u8 = b'I';
const P_EXPIRY: u8 = b'X';
const K_STATS: &[u8] = b"C";

fn mailbox_key(id: &MailboxId) -> Vec<u8> {
    key(P_MAILBOX, &[&id.0])
}

fn send_key(id: &MailboxId) -> Vec<u8> {
    key(P_SEND, &[&id.0])
}

fn envelope_key(id: &MailboxId, seq: u64) -> Vec<u8> {
    key(P_ENVELOPE, &[&id.0, &seq.to_be_bytes()])
}

fn msgid_key(id: &MailboxId, msg: &MessageId) -> Vec<u8> {
    key(P_MSGID, &[&id.0, &msg.0])
}

fn expiry_key(arrival: u64, id: &MailboxId, seq: u64) -> Vec<u8> {
    key(
        P_EXPIRY,
        &[&arrival.to_be_bytes(), &id.0, &seq.to_be_bytes()],
    )
}

fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// Envelope value: arrival (8) | message id (16) | wire bytes.
/// Domain of the checksum stored with each envelope record.
const ENVELOPE_CHECK_LABEL: &[u8] = b"enlace/v1/relay-store-envelope-check";
/// Bytes of SHA-256 kept as the record's checksum.
const CHECK_LEN: usize = 16;

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

fn encode_envelope(
    id: &MailboxId,
    seq: u64,
    arrival: u64,
    msg: &MessageId,
    bytes: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + MESSAGE_ID_LEN + bytes.len() + CHECK_LEN);
    v.extend_from_slice(&arrival.to_be_bytes());
    v.extend_from_slice(&msg.0);
    v.extend_from_slice(bytes);
    let check = envelope_check(id, seq, &v);
    v.extend_from_slice(&check);
    v
}

/// Decodes an envelope record, refusing one whose checksum does not match.
fn decode_envelope(id: &MailboxId, seq: u64, value: &[u8]) -> Result<StoredEnvelope, StoreError> {
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

fn seq_from_envelope_key(k: &[u8]) -> Result<u64, StoreError> {
    let tail = k
        .get(1 + MAILBOX_ID_LEN..)
        .and_then(|t| <[u8; 8]>::try_from(t).ok())
        .ok_or(StoreError::Corrupt("envelope key"))?;
    Ok(u64::from_be_bytes(tail))
}

fn decode_stats(v: Option<Vec<u8>>) -> Result<Stats, StoreError> {
    let Some(v) = v else {
        return Ok(Stats::default());
    };
    let mut r = Cursor(&v);
    Ok(Stats {
        mailboxes: u64::from_be_bytes(r.array()?),
        envelopes: u64::from_be_bytes(r.array()?),
        bytes: u64::from_be_bytes(r.array()?),
    })
}

fn encode_stats(s: &Stats) -> Vec<u8> {
    let mut v = Vec::with_capacity(24);
    v.extend_from_slice(&s.mailboxes.to_be_bytes());
    v.extend_from_slice(&s.envelopes.to_be_bytes());
    v.extend_from_slice(&s.bytes.to_be_bytes());
    v
}

/// Key-value pairs in key order.
pub(crate) type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// The ordered key-value operations a backend offers inside one write
/// transaction. Reads see the transaction's own earlier writes.
pub(crate) trait KvTxn {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn del(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` entries whose keys start with `prefix`, in key order.
    fn scan_prefix(&mut self, prefix: &[u8], limit: usize) -> Result<Entries, StoreError>;
}

/// Applies a batch over a transaction: the mailbox logic shared by all
/// backends. Stats are read once and written once per batch.
pub(crate) fn apply_ops(
    txn: &mut impl KvTxn,
    ops: &[WriteOp],
) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut stats = decode_stats(txn.get(K_STATS)?)?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(apply_one(txn, op, &mut stats)?);
    }
    txn.put(K_STATS, &encode_stats(&stats))?;
    Ok(out)
}

fn load(txn: &mut impl KvTxn, id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
    txn.get(&mailbox_key(id))?
        .map(|v| MailboxRecord::decode(&v))
        .transpose()
}

fn apply_one(
    txn: &mut impl KvTxn,
    op: &WriteOp,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
    Ok(match op {
        WriteOp::Create { receive_id, record } => {
            if txn.get(&mailbox_key(receive_id))?.is_some()
                || txn.get(&send_key(&record.send_id))?.is_some()
            {
                return Ok(WriteOutcome::Collision);
            }
            txn.put(&mailbox_key(receive_id), &record.encode())?;
            txn.put(&send_key(&record.send_id), &receive_id.0)?;
            stats.mailboxes += 1;
            WriteOutcome::Done
        }
        WriteOp::Secure {
            receive_id,
            sender_key,
        } => {
            let Some(mut rec) = load(txn, receive_id)? else {
                return Ok(WriteOutcome::UnknownMailbox);
            };
            match rec.sender_key {
                Some(k) if k == *sender_key => WriteOutcome::Done,
                Some(_) => WriteOutcome::Refused,
                None => {
                    rec.sender_key = Some(*sender_key);
                    txn.put(&mailbox_key(receive_id), &rec.encode())?;
                    WriteOutcome::Done
                }
            }
        }
        WriteOp::Deposit {
            receive_id,
            message_id,
            bytes,
            arrival,
            verified_with,
            quota,
            first_contact_limit,
        } => {
            let Some(mut rec) = load(txn, receive_id)? else {
                return Ok(WriteOutcome::UnknownMailbox);
            };
            // The key checked by the caller must still be the mailbox's key:
            // a secure may have committed between the check and this batch.
            if rec.sender_key != *verified_with {
                return Ok(WriteOutcome::Refused);
            }
            if txn.get(&msgid_key(receive_id, message_id))?.is_some() {
                return Ok(WriteOutcome::Duplicate);
            }
            if rec.stored >= *quota {
                return Ok(WriteOutcome::Quota);
            }
            if verified_with.is_none() {
                if rec.first_contact >= *first_contact_limit {
                    return Ok(WriteOutcome::Refused);
                }
                rec.first_contact += 1;
            }
            let seq = rec.next_seq;
            rec.next_seq += 1;
            rec.stored += 1;
            txn.put(
                &envelope_key(receive_id, seq),
                &encode_envelope(receive_id, seq, *arrival, message_id, bytes),
            )?;
            txn.put(&msgid_key(receive_id, message_id), &seq.to_be_bytes())?;
            txn.put(&expiry_key(*arrival, receive_id, seq), &[])?;
            txn.put(&mailbox_key(receive_id), &rec.encode())?;
            stats.envelopes += 1;
            stats.bytes += bytes.len() as u64;
            WriteOutcome::Stored { seq }
        }
        WriteOp::Ack {
            receive_id,
            message_id,
        } => {
            let index = msgid_key(receive_id, message_id);
            let Some(seq) = txn.get(&index)? else {
                // The relay checks the ack's signature against a cached
                // recipient key: a mailbox deleted meanwhile is refused here.
                if load(txn, receive_id)?.is_none() {
                    return Ok(WriteOutcome::UnknownMailbox);
                }
                return Ok(WriteOutcome::NotFound);
            };
            let seq = <[u8; 8]>::try_from(seq.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("message index"))?;
            remove_indexed(txn, receive_id, seq, &index, stats)?;
            WriteOutcome::Done
        }
        WriteOp::Delete { receive_id } => {
            let Some(rec) = load(txn, receive_id)? else {
                return Ok(WriteOutcome::UnknownMailbox);
            };
            let prefix = key(P_ENVELOPE, &[&receive_id.0]);
            loop {
                let batch = txn.scan_prefix(&prefix, 256)?;
                if batch.is_empty() {
                    break;
                }
                for (k, _) in batch {
                    remove_envelope(txn, receive_id, seq_from_envelope_key(&k)?, stats)?;
                }
            }
            txn.del(&send_key(&rec.send_id))?;
            txn.del(&mailbox_key(receive_id))?;
            stats.mailboxes = stats.mailboxes.saturating_sub(1);
            WriteOutcome::Done
        }
        WriteOp::Expire { before, limit } => {
            let mut count = 0;
            for (k, _) in txn.scan_prefix(&[P_EXPIRY], *limit)? {
                let mut r = Cursor(k.get(1..).unwrap_or_default());
                let arrival = u64::from_be_bytes(r.array()?);
                if arrival >= *before {
                    break;
                }
                let id = MailboxId(r.array()?);
                let seq = u64::from_be_bytes(r.array()?);
                remove_indexed(txn, &id, seq, &k, stats)?;
                count += 1;
            }
            WriteOutcome::Expired { count }
        }
        WriteOp::ForwardEnqueue(op) => forward::enqueue(txn, op)?,
        WriteOp::ForwardSettle {
            forward_id,
            state,
            code,
            keep_until,
        } => forward::settle(txn, forward_id, *state, *code, *keep_until)?,
        WriteOp::ForwardExpire {
            now,
            keep_until,
            limit,
        } => forward::expire(txn, *now, *keep_until, *limit)?,
    })
}

fn remove_envelope(
    txn: &mut impl KvTxn,
    id: &MailboxId,
    seq: u64,
    stats: &mut Stats,
) -> Result<(), StoreError> {
    let ekey = envelope_key(id, seq);
    let Some(value) = txn.get(&ekey)? else {
        return Err(StoreError::Corrupt("index names a missing envelope"));
    };
    txn.del(&ekey)?;
    let len = match decode_envelope(id, seq, &value) {
        Ok(env) => {
            txn.del(&msgid_key(id, &env.message_id))?;
            txn.del(&expiry_key(env.arrival, id, seq))?;
            env.bytes.len()
        }
        // A damaged record is removed all the same (acks and the expiry
        // sweep must not stall on it); its index entries are removed by
        // whoever found it through them (`remove_damaged`).
        Err(_) => {
            tracing::error!("removed an envelope record that failed its checksum");
            value.len().saturating_sub(8 + MESSAGE_ID_LEN + CHECK_LEN)
        }
    };
    if let Some(mut rec) = load(txn, id)? {
        rec.stored = rec.stored.saturating_sub(1);
        txn.put(&mailbox_key(id), &rec.encode())?;
    }
    stats.envelopes = stats.envelopes.saturating_sub(1);
    stats.bytes = stats.bytes.saturating_sub(len as u64);
    Ok(())
}

/// Removes the envelope an index entry names, and the index entry itself,
/// whether or not the envelope record is intact or still there.
fn remove_indexed(
    txn: &mut impl KvTxn,
    id: &MailboxId,
    seq: u64,
    index_key: &[u8],
    stats: &mut Stats,
) -> Result<(), StoreError> {
    txn.del(index_key)?;
    match remove_envelope(txn, id, seq, stats) {
        Err(StoreError::Corrupt("index names a missing envelope")) => {
            tracing::error!("removed an index entry that named a missing envelope");
            Ok(())
        }
        other => other,
    }
}

/// Read helpers shared by backends: a backend supplies point reads and
/// ordered scans starting at a key.
pub(crate) trait KvRead {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Up to `limit` entries with keys in `[from, ..)` that start with `prefix`.
    fn scan_from(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Entries, StoreError>;
}

pub(crate) fn read_mailbox(
    kv: &impl KvRead,
    id: &MailboxId,
) -> Result<Option<MailboxRecord>, StoreError> {
    kv.get(&mailbox_key(id))?
        .map(|v| MailboxRecord::decode(&v))
        .transpose()
}

pub(crate) fn read_by_send_id(
    kv: &impl KvRead,
    send_id: &MailboxId,
) -> Result<Option<(MailboxId, MailboxRecord)>, StoreError> {
    let Some(rid) = kv.get(&send_key(send_id))? else {
        return Ok(None);
    };
    let rid = MailboxId(
        <[u8; MAILBOX_ID_LEN]>::try_from(rid.as_slice())
            .map_err(|_| StoreError::Corrupt("send index"))?,
    );
    Ok(read_mailbox(kv, &rid)?.map(|rec| (rid, rec)))
}

pub(crate) fn read_pending(
    kv: &impl KvRead,
    id: &MailboxId,
    after: Option<u64>,
    not_before: u64,
    limit: usize,
) -> Result<Vec<StoredEnvelope>, StoreError> {
    let prefix = key(P_ENVELOPE, &[&id.0]);
    let mut from = match after {
        Some(seq) => match seq.checked_add(1) {
            Some(next) => envelope_key(id, next),
            None => return Ok(Vec::new()),
        },
        None => prefix.clone(),
    };
    let mut out = Vec::new();
    // Expired envelopes not yet swept are skipped, so a batch may need
    // another scan to fill `limit`.
    loop {
        let batch = kv.scan_from(&prefix, &from, limit)?;
        let full = batch.len() == limit;
        for (k, v) in &batch {
            let env = match decode_envelope(id, seq_from_envelope_key(k)?, v) {
                Ok(env) => env,
                // Quarantined: never delivered, removed by ack or expiry
                // like any other record.
                Err(e) => {
                    tracing::error!("not delivering a stored envelope: {e}");
                    continue;
                }
            };
            if env.arrival >= not_before {
                out.push(env);
                if out.len() == limit {
                    return Ok(out);
                }
            }
        }
        match batch.last() {
            Some((k, _)) if full => {
                let mut next = k.clone();
                next.push(0);
                from = next;
            }
            _ => return Ok(out),
        }
    }
}

pub(crate) fn read_stats(kv: &impl KvRead) -> Result<Stats, StoreError> {
    decode_stats(kv.get(K_STATS)?)
}

/// Implements the forward-queue reads of [`Store`] for a [`KvRead`] backend.
macro_rules! forward_reads {
    () => {
        fn forward_status(
            &self,
            id: &enlace_protocol::command::ForwardId,
        ) -> Result<Option<super::forward::ForwardRecord>, StoreError> {
            super::forward::read_status(self, id)
        }

        fn forward_queue(
            &self,
            destination: &[u8; 32],
            limit: usize,
        ) -> Result<Vec<super::forward::QueuedForward>, StoreError> {
            super::forward::read_queue(self, destination, 0, limit)
        }

        fn forward_queue_from(
            &self,
            destination: &[u8; 32],
            from_seq: u64,
            limit: usize,
        ) -> Result<Vec<super::forward::QueuedForward>, StoreError> {
            super::forward::read_queue(self, destination, from_seq, limit)
        }

        fn forward_destinations(&self, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
            super::forward::read_destinations(self, limit)
        }
    };
}
pub(crate) use forward_reads;

#[cfg(test)]
pub(crate) mod conformance {
    //! Tests every backend must pass.

    use super::*;

    fn record(send: u8) -> Box<MailboxRecord> {
        Box::new(MailboxRecord {
            send_id: MailboxId([send; 16]),
            recipient_key: [1; 32],
            sender_key: None,
            delivery_key: [2; 32],
            first_contact: 0,
            next_seq: 0,
            stored: 0,
        })
    }

    fn deposit(rid: u8, msg: u8, arrival: u64, key: Option<[u8; 32]>) -> WriteOp {
        WriteOp::Deposit {
            receive_id: MailboxId([rid; 16]),
            message_id: MessageId([msg; 16]),
            bytes: vec![msg; 100],
            arrival,
            verified_with: key,
            quota: 3,
            first_contact_limit: 2,
        }
    }

    /// Runs the whole suite against a store.
    pub(crate) fn run(store: &dyn Store) {
        let rid = MailboxId([10; 16]);
        let create = WriteOp::Create {
            receive_id: rid,
            record: record(20),
        };
        assert_eq!(
            store.apply(&[create.clone(), create]).unwrap(),
            vec![WriteOutcome::Done, WriteOutcome::Collision]
        );
        assert_eq!(
            store.mailbox_by_send_id(&MailboxId([20; 16])).unwrap(),
            Some((rid, *record(20)))
        );
        assert!(store.mailbox(&MailboxId([11; 16])).unwrap().is_none());

        // First contact: two unsigned envelopes, then refused; duplicates
        // are answered without storing twice.
        let out = store
            .apply(&[
                deposit(10, 1, 100, None),
                deposit(10, 1, 100, None),
                deposit(10, 2, 100, None),
                deposit(10, 3, 100, None),
                deposit(99, 3, 100, None),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                WriteOutcome::Stored { seq: 0 },
                WriteOutcome::Duplicate,
                WriteOutcome::Stored { seq: 1 },
                WriteOutcome::Refused,
                WriteOutcome::UnknownMailbox,
            ]
        );
        // Secure; an envelope checked against no key (stale) is refused,
        // one checked against the key is stored; then the quota holds.
        let key = [7; 32];
        let out = store
            .apply(&[
                WriteOp::Secure {
                    receive_id: rid,
                    sender_key: key,
                },
                WriteOp::Secure {
                    receive_id: rid,
                    sender_key: [8; 32],
                },
                deposit(10, 4, 100, None),
                deposit(10, 5, 200, Some(key)),
                deposit(10, 6, 200, Some(key)),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                WriteOutcome::Done,
                WriteOutcome::Refused,
                WriteOutcome::Refused,
                WriteOutcome::Stored { seq: 2 },
                WriteOutcome::Quota,
            ]
        );
        let stats = store.stats().unwrap();
        assert_eq!((stats.mailboxes, stats.envelopes, stats.bytes), (1, 3, 300));

        let all = store.pending(&rid, None, 0, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(all[2].bytes, vec![5; 100]);
        assert_eq!(all[2].arrival, 200);
        assert_eq!(store.pending(&rid, Some(0), 0, 1).unwrap()[0].seq, 1);
        // Not-yet-swept expired envelopes are not delivered.
        assert_eq!(store.pending(&rid, None, 150, 1).unwrap()[0].seq, 2);

        // Ack deletes; acking again finds nothing.
        let ack = WriteOp::Ack {
            receive_id: rid,
            message_id: MessageId([1; 16]),
        };
        assert_eq!(
            store.apply(&[ack.clone(), ack]).unwrap(),
            vec![WriteOutcome::Done, WriteOutcome::NotFound]
        );
        assert_eq!(store.pending(&rid, None, 0, 10).unwrap().len(), 2);
        // An ack for a mailbox that does not exist (deleted since the
        // relay checked its signature) is refused, not answered as done.
        let stray = WriteOp::Ack {
            receive_id: MailboxId([0xee; 16]),
            message_id: MessageId([1; 16]),
        };
        assert_eq!(
            store.apply(&[stray]).unwrap(),
            vec![WriteOutcome::UnknownMailbox]
        );

        // Expiry removes what arrived before the cut-off, oldest first.
        assert_eq!(
            store
                .apply(&[WriteOp::Expire {
                    before: 150,
                    limit: 10
                }])
                .unwrap(),
            vec![WriteOutcome::Expired { count: 1 }]
        );
        assert_eq!(store.pending(&rid, None, 0, 10).unwrap()[0].seq, 2);
        assert_eq!(store.stats().unwrap().envelopes, 1);

        // Delete removes the mailbox, its envelopes and its send id.
        assert_eq!(
            store
                .apply(&[
                    WriteOp::Delete { receive_id: rid },
                    WriteOp::Delete { receive_id: rid }
                ])
                .unwrap(),
            vec![WriteOutcome::Done, WriteOutcome::UnknownMailbox]
        );
        assert!(store.mailbox(&rid).unwrap().is_none());
        assert!(
            store
                .mailbox_by_send_id(&MailboxId([20; 16]))
                .unwrap()
                .is_none()
        );
        assert_eq!(store.stats().unwrap(), Stats::default());
    }

    fn enqueue(id: u8, dest: u8, arrival: u64) -> WriteOp {
        WriteOp::ForwardEnqueue(Box::new(Enqueue {
            forward_id: ForwardId([id; 16]),
            destination_fp: [dest; 32],
            destination: vec![dest; 40],
            sealed: vec![id; 300],
            arrival,
            deadline: arrival + 100,
            per_destination: 2,
            total: 3,
        }))
    }

    fn settle(id: u8, state: u8, code: u16) -> WriteOp {
        WriteOp::ForwardSettle {
            forward_id: ForwardId([id; 16]),
            state,
            code,
            keep_until: 5000,
        }
    }

    /// The forward queue: order, limits, idempotency, settling, expiry.
    pub(crate) fn forwards(store: &dyn Store) {
        use super::forward::{STATE_EXPIRED, STATE_REFUSED, STATE_STORED};
        let out = store
            .apply(&[
                enqueue(1, 0xd1, 10),
                enqueue(1, 0xd1, 10),
                enqueue(2, 0xd1, 11),
                enqueue(3, 0xd1, 12),
                enqueue(4, 0xd2, 13),
                enqueue(5, 0xd3, 14),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                WriteOutcome::Stored { seq: 0 },
                WriteOutcome::Duplicate,
                WriteOutcome::Stored { seq: 1 },
                WriteOutcome::Quota,
                WriteOutcome::Stored { seq: 0 },
                WriteOutcome::Quota,
            ]
        );
        let q = store.forward_queue(&[0xd1; 32], 10).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].forward_id, ForwardId([1; 16]));
        assert_eq!(q[0].destination, vec![0xd1; 40]);
        assert_eq!(q[0].sealed, vec![1; 300]);
        assert_eq!(q[1].seq, 1);
        // Reading on from a position skips what is before it.
        let rest = store.forward_queue_from(&[0xd1; 32], 1, 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].forward_id, ForwardId([2; 16]));
        assert!(
            store
                .forward_queue_from(&[0xd1; 32], 2, 10)
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .forward_queue_from(&[0xd2; 32], 1, 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.forward_queue_from(&[0xd2; 32], 0, 10).unwrap().len(),
            1
        );
        assert_eq!(
            store.forward_destinations(10).unwrap(),
            vec![[0xd1; 32], [0xd2; 32]]
        );
        assert!(
            store
                .forward_status(&ForwardId([1; 16]))
                .unwrap()
                .unwrap()
                .is_queued()
        );
        assert!(store.forward_status(&ForwardId([3; 16])).unwrap().is_none());

        let out = store
            .apply(&[
                settle(1, STATE_STORED, 0),
                settle(1, STATE_STORED, 0),
                settle(2, STATE_REFUSED, 4),
                enqueue(3, 0xd1, 20),
            ])
            .unwrap();
        assert_eq!(
            out,
            vec![
                WriteOutcome::Done,
                WriteOutcome::NotFound,
                WriteOutcome::Done,
                WriteOutcome::Stored { seq: 0 },
            ]
        );
        let s2 = store.forward_status(&ForwardId([2; 16])).unwrap().unwrap();
        assert_eq!((s2.state, s2.code), (STATE_REFUSED, 4));
        assert_eq!(store.forward_queue(&[0xd1; 32], 10).unwrap().len(), 1);

        // Forward 4 (deadline 113) expires; 3 (deadline 120) does not yet.
        assert_eq!(
            store
                .apply(&[WriteOp::ForwardExpire {
                    now: 115,
                    keep_until: 5000,
                    limit: 100
                }])
                .unwrap(),
            vec![WriteOutcome::Expired { count: 1 }]
        );
        let s4 = store.forward_status(&ForwardId([4; 16])).unwrap().unwrap();
        assert_eq!(s4.state, STATE_EXPIRED);
        assert!(store.forward_queue(&[0xd2; 32], 10).unwrap().is_empty());
        assert_eq!(store.forward_destinations(10).unwrap(), vec![[0xd1; 32]]);
        // Past every deadline and keep time: everything is forgotten.
        store
            .apply(&[WriteOp::ForwardExpire {
                now: 200,
                keep_until: 300,
                limit: 100,
            }])
            .unwrap();
        assert_eq!(
            store
                .forward_status(&ForwardId([3; 16]))
                .unwrap()
                .unwrap()
                .state,
            STATE_EXPIRED
        );
        store
            .apply(&[WriteOp::ForwardExpire {
                now: 8000,
                keep_until: 9000,
                limit: 100,
            }])
            .unwrap();
        for id in 1..=4 {
            assert!(
                store
                    .forward_status(&ForwardId([id; 16]))
                    .unwrap()
                    .is_none()
            );
        }
        assert!(store.forward_destinations(10).unwrap().is_empty());
        // The total went back to zero: three more fit again.
        let out = store
            .apply(&[
                enqueue(7, 0xd1, 9000),
                enqueue(8, 0xd2, 9000),
                enqueue(9, 0xd3, 9000),
            ])
            .unwrap();
        assert!(out.iter().all(|o| matches!(o, WriteOutcome::Stored { .. })));
    }

    /// What was committed survives reopening.
    pub(crate) fn persists(open: &dyn Fn() -> Box<dyn Store>) {
        let rid = MailboxId([10; 16]);
        {
            let store = open();
            store
                .apply(&[
                    WriteOp::Create {
                        receive_id: rid,
                        record: record(20),
                    },
                    deposit(10, 1, 100, None),
                ])
                .unwrap();
        }
        let store = open();
        assert_eq!(store.pending(&rid, None, 0, 10).unwrap().len(), 1);
        assert_eq!(store.stats().unwrap().envelopes, 1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// A read-only key-value map, to put damaged records under the shared
    /// read path.
    struct Map(std::collections::BTreeMap<Vec<u8>, Vec<u8>>);

    impl KvRead for Map {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan_from(
            &self,
            prefix: &[u8],
            from: &[u8],
            limit: usize,
        ) -> Result<Entries, StoreError> {
            Ok(self
                .0
                .range(from.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    #[test]
    fn damaged_or_moved_envelope_records_are_never_read_back() {
        let id = MailboxId([1; 16]);
        let mut map = std::collections::BTreeMap::new();
        for seq in 0..4u64 {
            let msg = MessageId([seq as u8; 16]);
            map.insert(
                envelope_key(&id, seq),
                encode_envelope(&id, seq, 100, &msg, &[0x5a; 64]),
            );
        }
        let intact = Map(map.clone());
        assert_eq!(read_pending(&intact, &id, None, 0, 10).unwrap().len(), 4);

        // A flipped bit in a body, a flipped bit in the arrival time, a
        // truncated record, and a record copied under another key.
        map.get_mut(&envelope_key(&id, 0)).unwrap()[40] ^= 1;
        map.get_mut(&envelope_key(&id, 1)).unwrap()[7] ^= 1;
        map.get_mut(&envelope_key(&id, 2)).unwrap().pop();
        let copy = map[&envelope_key(&id, 3)].clone();
        map.insert(envelope_key(&id, 9), copy);
        let damaged = Map(map);
        let read = read_pending(&damaged, &id, None, 0, 10).unwrap();
        assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(read[0].bytes, vec![0x5a; 64]);
    }
}
