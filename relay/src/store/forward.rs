//! The durable forward queue: sealed sends waiting for another relay, and
//! what became of each (docs/storage.md, "Forward queue").
//!
//! Written once over `KvTxn`/`KvRead` like the mailbox logic, so every
//! backend has it. Keys (built in `super::layout`):
//!
//! - `Q | destination fingerprint (32) | seq (8)` -> queued forward
//! - `F | forward id (16)` -> its status record
//! - `D | destination fingerprint (32)` -> next seq (8) | queued count (4)
//! - `Y | deadline (8) | forward id (16)` -> empty: when a queued forward
//!   expires, or when a settled status record is forgotten
//! - `q` -> queued forwards in total (8)

use std::fmt;

use enlace_protocol::command::ForwardId;
use enlace_protocol::keys::Fingerprint;

use super::error::StoreError;
use super::kv::{Cursor, Entries, KvRead, KvTxn};
use super::layout::{
    K_TOTAL, P_DEADLINE, P_DEST, deadline_key, dest_key, queue_key, queue_prefix, status_key,
};
use super::outcome::WriteOutcome;

/// Where a forward stands in the home relay's records. Stored as a state
/// byte and an error code, whose values are part of the on-disk format
/// (docs/storage.md, "Layout").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueState {
    /// Waiting in the queue (byte 1).
    Queued,
    /// Delivered: the destination answered stored (byte 2).
    Stored,
    /// Expired before the destination accepted it (byte 3).
    Expired,
    /// The destination refused it with this error code (byte 4).
    Refused(u16),
}

impl QueueState {
    const QUEUED: u8 = 1;
    const STORED: u8 = 2;
    const EXPIRED: u8 = 3;
    const REFUSED: u8 = 4;

    /// The state byte and error code stored for it.
    fn to_parts(self) -> (u8, u16) {
        match self {
            Self::Queued => (Self::QUEUED, 0),
            Self::Stored => (Self::STORED, 0),
            Self::Expired => (Self::EXPIRED, 0),
            Self::Refused(code) => (Self::REFUSED, code),
        }
    }

    fn from_parts(state: u8, code: u16) -> Result<Self, StoreError> {
        match state {
            Self::QUEUED => Ok(Self::Queued),
            Self::STORED => Ok(Self::Stored),
            Self::EXPIRED => Ok(Self::Expired),
            Self::REFUSED => Ok(Self::Refused(code)),
            _ => Err(StoreError::Corrupt("forward status")),
        }
    }
}

/// A forward waiting in the queue.
#[derive(Clone, PartialEq, Eq)]
pub struct QueuedForward {
    /// Order within its destination's queue.
    pub seq: u64,
    /// The client's id for it.
    pub forward_id: ForwardId,
    /// When it was queued (Unix seconds).
    pub arrival: u64,
    /// The destination address, encoded (`RelayAddress::encode`).
    pub destination: Vec<u8>,
    /// The sealed send.
    pub sealed: Vec<u8>,
}

impl fmt::Debug for QueuedForward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedForward")
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// What the home relay knows about one forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardRecord {
    /// Where it stands.
    pub state: QueueState,
    destination: Fingerprint,
    seq: u64,
    deadline: u64,
}

impl ForwardRecord {
    const LEN: usize = 1 + 2 + 32 + 8 + 8;

    fn encode(&self) -> Vec<u8> {
        let (state, code) = self.state.to_parts();
        let mut v = Vec::with_capacity(Self::LEN);
        v.push(state);
        v.extend_from_slice(&code.to_be_bytes());
        v.extend_from_slice(&self.destination.0);
        v.extend_from_slice(&self.seq.to_be_bytes());
        v.extend_from_slice(&self.deadline.to_be_bytes());
        v
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != Self::LEN {
            return Err(StoreError::Corrupt("forward status"));
        }
        let mut r = Cursor(bytes);
        let [state] = r.array::<1>()?;
        let code = u16::from_be_bytes(r.array()?);
        Ok(Self {
            state: QueueState::from_parts(state, code)?,
            destination: Fingerprint(r.array()?),
            seq: u64::from_be_bytes(r.array()?),
            deadline: u64::from_be_bytes(r.array()?),
        })
    }

    /// True while it waits in the queue.
    pub fn is_queued(&self) -> bool {
        self.state == QueueState::Queued
    }
}

fn read_u64(v: Option<Vec<u8>>) -> Result<u64, StoreError> {
    match v {
        None => Ok(0),
        Some(v) => Ok(u64::from_be_bytes(Cursor(&v).array()?)),
    }
}

/// Next sequence number and queued count of one destination.
fn read_dest(txn: &mut impl KvTxn, dest: &Fingerprint) -> Result<(u64, u32), StoreError> {
    match txn.get(&dest_key(dest))? {
        None => Ok((0, 0)),
        Some(v) => {
            let mut r = Cursor(&v);
            Ok((
                u64::from_be_bytes(r.array()?),
                u32::from_be_bytes(r.array()?),
            ))
        }
    }
}

fn write_dest(
    txn: &mut impl KvTxn,
    dest: &Fingerprint,
    next: u64,
    count: u32,
) -> Result<(), StoreError> {
    if count == 0 {
        // Nothing queued: the sequence may restart.
        return txn.del(&dest_key(dest));
    }
    let mut v = next.to_be_bytes().to_vec();
    v.extend_from_slice(&count.to_be_bytes());
    txn.put(&dest_key(dest), &v)
}

fn add_total(txn: &mut impl KvTxn, delta: i64) -> Result<u64, StoreError> {
    let total = read_u64(txn.get(K_TOTAL)?)?.saturating_add_signed(delta);
    txn.put(K_TOTAL, &total.to_be_bytes())?;
    Ok(total)
}

/// Arguments of a forward enqueue ([`super::WriteOp::ForwardEnqueue`]).
#[derive(Clone)]
pub struct Enqueue {
    /// The client's id.
    pub forward_id: ForwardId,
    /// Destination fingerprint.
    pub destination_fp: Fingerprint,
    /// Destination address, encoded.
    pub destination: Vec<u8>,
    /// The sealed send.
    pub sealed: Vec<u8>,
    /// Unix seconds now.
    pub arrival: u64,
    /// When it expires if not delivered.
    pub deadline: u64,
    /// Most forwards queued for one destination.
    pub per_destination: u32,
    /// Most forwards queued in total.
    pub total: u64,
}

impl fmt::Debug for Enqueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enqueue").finish_non_exhaustive()
    }
}

pub(crate) fn enqueue(txn: &mut impl KvTxn, op: &Enqueue) -> Result<WriteOutcome, StoreError> {
    // A forward that expired may be sent again under the same id (the
    // client retries the same message); any other known id is a duplicate.
    let expired = match txn.get(&status_key(&op.forward_id))? {
        None => None,
        Some(v) => match ForwardRecord::decode(&v)? {
            r if r.state == QueueState::Expired => Some(r),
            _ => return Ok(WriteOutcome::Duplicate),
        },
    };
    let (next, count) = read_dest(txn, &op.destination_fp)?;
    if count >= op.per_destination || read_u64(txn.get(K_TOTAL)?)? >= op.total {
        return Ok(WriteOutcome::Quota);
    }
    if let Some(old) = expired {
        // Its "forget at" entry; the new deadline replaces it.
        txn.del(&deadline_key(old.deadline, &op.forward_id))?;
    }
    let mut value = Vec::with_capacity(16 + 8 + 2 + op.destination.len() + op.sealed.len());
    value.extend_from_slice(&op.forward_id.0);
    value.extend_from_slice(&op.arrival.to_be_bytes());
    let addr_len =
        u16::try_from(op.destination.len()).map_err(|_| StoreError::Corrupt("address"))?;
    value.extend_from_slice(&addr_len.to_be_bytes());
    value.extend_from_slice(&op.destination);
    value.extend_from_slice(&op.sealed);
    txn.put(&queue_key(&op.destination_fp, next), &value)?;
    let record = ForwardRecord {
        state: QueueState::Queued,
        destination: op.destination_fp,
        seq: next,
        deadline: op.deadline,
    };
    txn.put(&status_key(&op.forward_id), &record.encode())?;
    txn.put(&deadline_key(op.deadline, &op.forward_id), &[])?;
    write_dest(txn, &op.destination_fp, next + 1, count + 1)?;
    add_total(txn, 1)?;
    Ok(WriteOutcome::Stored { seq: next })
}

/// Takes a queued forward out of its queue and records its final state,
/// kept until `keep_until`.
fn settle_record(
    txn: &mut impl KvTxn,
    id: &ForwardId,
    mut record: ForwardRecord,
    state: QueueState,
    keep_until: u64,
) -> Result<(), StoreError> {
    txn.del(&queue_key(&record.destination, record.seq))?;
    let (next, count) = read_dest(txn, &record.destination)?;
    write_dest(txn, &record.destination, next, count.saturating_sub(1))?;
    add_total(txn, -1)?;
    txn.del(&deadline_key(record.deadline, id))?;
    record.state = state;
    record.deadline = keep_until;
    txn.put(&status_key(id), &record.encode())?;
    txn.put(&deadline_key(keep_until, id), &[])
}

pub(crate) fn settle(
    txn: &mut impl KvTxn,
    id: &ForwardId,
    state: QueueState,
    keep_until: u64,
) -> Result<WriteOutcome, StoreError> {
    let Some(v) = txn.get(&status_key(id))? else {
        return Ok(WriteOutcome::NotFound);
    };
    let record = ForwardRecord::decode(&v)?;
    if !record.is_queued() {
        return Ok(WriteOutcome::NotFound);
    }
    settle_record(txn, id, record, state, keep_until)?;
    Ok(WriteOutcome::Done)
}

/// Expires queued forwards whose deadline passed (they become `Expired`,
/// remembered until `keep_until`) and forgets settled records whose time
/// is up.
pub(crate) fn expire(
    txn: &mut impl KvTxn,
    now: u64,
    keep_until: u64,
    limit: usize,
) -> Result<WriteOutcome, StoreError> {
    let mut count = 0;
    for (k, _) in txn.scan_prefix(&[P_DEADLINE], limit)? {
        let mut r = Cursor(k.get(1..).unwrap_or_default());
        let deadline = u64::from_be_bytes(r.array()?);
        if deadline >= now {
            break;
        }
        let id = ForwardId(r.array()?);
        match txn.get(&status_key(&id))? {
            Some(v) => {
                let record = ForwardRecord::decode(&v)?;
                if record.is_queued() {
                    settle_record(txn, &id, record, QueueState::Expired, keep_until)?;
                    count += 1;
                } else {
                    txn.del(&status_key(&id))?;
                    txn.del(&k)?;
                }
            }
            None => txn.del(&k)?,
        }
    }
    Ok(WriteOutcome::Expired { count })
}

pub(crate) fn read_status(
    kv: &impl KvRead,
    id: &ForwardId,
) -> Result<Option<ForwardRecord>, StoreError> {
    kv.get(&status_key(id))?
        .map(|v| ForwardRecord::decode(&v))
        .transpose()
}

pub(crate) fn read_queue(
    kv: &impl KvRead,
    dest: &Fingerprint,
    from_seq: u64,
    limit: usize,
) -> Result<Vec<QueuedForward>, StoreError> {
    let entries: Entries = kv.scan_from(&queue_prefix(dest), &queue_key(dest, from_seq), limit)?;
    entries
        .into_iter()
        .map(|(k, v)| {
            let seq = k
                .get(1 + 32..)
                .and_then(|t| <[u8; 8]>::try_from(t).ok())
                .map(u64::from_be_bytes)
                .ok_or(StoreError::Corrupt("forward queue key"))?;
            let mut r = Cursor(&v);
            let forward_id = ForwardId(r.array()?);
            let arrival = u64::from_be_bytes(r.array()?);
            let len = usize::from(u16::from_be_bytes(r.array()?));
            let (destination, sealed) =
                r.0.split_at_checked(len)
                    .ok_or(StoreError::Corrupt("forward queue entry"))?;
            Ok(QueuedForward {
                seq,
                forward_id,
                arrival,
                destination: destination.to_vec(),
                sealed: sealed.to_vec(),
            })
        })
        .collect()
}

/// Destinations with something queued (at most `limit`).
pub(crate) fn read_destinations(
    kv: &impl KvRead,
    limit: usize,
) -> Result<Vec<Fingerprint>, StoreError> {
    kv.scan_from(&[P_DEST], &[P_DEST], limit)?
        .into_iter()
        .map(|(k, _)| {
            k.get(1..)
                .and_then(|t| <[u8; 32]>::try_from(t).ok())
                .map(Fingerprint)
                .ok_or(StoreError::Corrupt("forward destination key"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The state byte and code each state is stored as (docs/storage.md,
    /// "Layout"): part of the file format, so fixed.
    #[test]
    fn queue_states_keep_their_bytes_on_disk() {
        for (state, byte, code) in [
            (QueueState::Queued, 1, 0),
            (QueueState::Stored, 2, 0),
            (QueueState::Expired, 3, 0),
            (QueueState::Refused(13), 4, 13),
        ] {
            let record = ForwardRecord {
                state,
                destination: Fingerprint([7; 32]),
                seq: 5,
                deadline: 9,
            };
            let bytes = record.encode();
            let mut expected = vec![byte];
            expected.extend_from_slice(&u16::to_be_bytes(code));
            expected.extend_from_slice(&[7; 32]);
            expected.extend_from_slice(&5u64.to_be_bytes());
            expected.extend_from_slice(&9u64.to_be_bytes());
            assert_eq!(bytes, expected, "{state:?}");
            assert_eq!(ForwardRecord::decode(&bytes).unwrap(), record);
        }
        let mut unknown = ForwardRecord {
            state: QueueState::Queued,
            destination: Fingerprint([0; 32]),
            seq: 0,
            deadline: 0,
        }
        .encode();
        unknown[0] = 5;
        assert!(ForwardRecord::decode(&unknown).is_err());
    }
}
