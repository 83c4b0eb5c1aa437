//! The mailbox logic over a key-value transaction, written once for every
//! backend: create, secure, deposit (quota, duplicate message ids, the
//! first-contact allowance), ack, delete and expiry, keeping the counters;
//! and the reads of the last committed state.

use enlace_protocol::envelope::{MAILBOX_ID_LEN, MailboxId, MessageId};

use super::error::StoreError;
use super::kv::{Cursor, KvRead, KvTxn};
use super::layout::{
    K_STATS, P_EXPIRY, envelope_key, envelope_prefix, expiry_key, mailbox_key, msgid_key, send_key,
    seq_from_envelope_key,
};
use super::outcome::WriteOutcome;
use super::record::{
    ENVELOPE_RECORD_OVERHEAD, MailboxRecord, Stats, StoredEnvelope, decode_envelope,
    encode_envelope,
};

fn load(txn: &mut impl KvTxn, id: &MailboxId) -> Result<Option<MailboxRecord>, StoreError> {
    txn.get(&mailbox_key(id))?
        .map(|v| MailboxRecord::decode(&v))
        .transpose()
}

pub(crate) fn create(
    txn: &mut impl KvTxn,
    receive_id: &MailboxId,
    record: &MailboxRecord,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
    if txn.get(&mailbox_key(receive_id))?.is_some()
        || txn.get(&send_key(&record.send_id))?.is_some()
    {
        return Ok(WriteOutcome::Collision);
    }
    txn.put(&mailbox_key(receive_id), &record.encode())?;
    txn.put(&send_key(&record.send_id), &receive_id.0)?;
    stats.mailboxes += 1;
    Ok(WriteOutcome::Done)
}

pub(crate) fn secure(
    txn: &mut impl KvTxn,
    receive_id: &MailboxId,
    sender_key: &[u8; 32],
) -> Result<WriteOutcome, StoreError> {
    let Some(mut rec) = load(txn, receive_id)? else {
        return Ok(WriteOutcome::UnknownMailbox);
    };
    Ok(match rec.sender_key {
        Some(k) if k == *sender_key => WriteOutcome::Done,
        Some(_) => WriteOutcome::Refused,
        None => {
            rec.sender_key = Some(*sender_key);
            txn.put(&mailbox_key(receive_id), &rec.encode())?;
            WriteOutcome::Done
        }
    })
}

/// The envelope a [`super::WriteOp::Deposit`] stores, and its limits.
pub(crate) struct Deposit<'a> {
    pub(crate) receive_id: &'a MailboxId,
    pub(crate) message_id: &'a MessageId,
    pub(crate) bytes: &'a [u8],
    pub(crate) arrival: u64,
    pub(crate) verified_with: &'a Option<[u8; 32]>,
    pub(crate) quota: u32,
    pub(crate) first_contact_limit: u32,
}

pub(crate) fn deposit(
    txn: &mut impl KvTxn,
    d: &Deposit<'_>,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
    let Some(mut rec) = load(txn, d.receive_id)? else {
        return Ok(WriteOutcome::UnknownMailbox);
    };
    // The key checked by the caller must still be the mailbox's key:
    // a secure may have committed between the check and this batch.
    if rec.sender_key != *d.verified_with {
        return Ok(WriteOutcome::Refused);
    }
    if txn.get(&msgid_key(d.receive_id, d.message_id))?.is_some() {
        return Ok(WriteOutcome::Duplicate);
    }
    if rec.stored >= d.quota {
        return Ok(WriteOutcome::Quota);
    }
    if d.verified_with.is_none() {
        if rec.first_contact >= d.first_contact_limit {
            return Ok(WriteOutcome::Refused);
        }
        rec.first_contact += 1;
    }
    let seq = rec.next_seq;
    rec.next_seq += 1;
    rec.stored += 1;
    txn.put(
        &envelope_key(d.receive_id, seq),
        &encode_envelope(d.receive_id, seq, d.arrival, d.message_id, d.bytes),
    )?;
    txn.put(&msgid_key(d.receive_id, d.message_id), &seq.to_be_bytes())?;
    txn.put(&expiry_key(d.arrival, d.receive_id, seq), &[])?;
    txn.put(&mailbox_key(d.receive_id), &rec.encode())?;
    stats.envelopes += 1;
    stats.bytes += d.bytes.len() as u64;
    Ok(WriteOutcome::Stored { seq })
}

pub(crate) fn ack(
    txn: &mut impl KvTxn,
    receive_id: &MailboxId,
    message_id: &MessageId,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
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
    Ok(WriteOutcome::Done)
}

pub(crate) fn delete(
    txn: &mut impl KvTxn,
    receive_id: &MailboxId,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
    let Some(rec) = load(txn, receive_id)? else {
        return Ok(WriteOutcome::UnknownMailbox);
    };
    let prefix = envelope_prefix(receive_id);
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
    Ok(WriteOutcome::Done)
}

pub(crate) fn expire(
    txn: &mut impl KvTxn,
    before: u64,
    limit: usize,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
    let mut count = 0;
    for (k, _) in txn.scan_prefix(&[P_EXPIRY], limit)? {
        let mut r = Cursor(k.get(1..).unwrap_or_default());
        let arrival = u64::from_be_bytes(r.array()?);
        if arrival >= before {
            break;
        }
        let id = MailboxId(r.array()?);
        let seq = u64::from_be_bytes(r.array()?);
        remove_indexed(txn, &id, seq, &k, stats)?;
        count += 1;
    }
    Ok(WriteOutcome::Expired { count })
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
            value.len().saturating_sub(ENVELOPE_RECORD_OVERHEAD)
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
    let prefix = envelope_prefix(id);
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
    Stats::decode(kv.get(K_STATS)?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::kv::Entries;

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
