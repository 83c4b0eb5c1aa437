//! One batch over one transaction: what every backend's [`super::Store::apply`]
//! runs inside its commit. The counters are read once and written once.

use super::error::StoreError;
use super::forward;
use super::kv::KvTxn;
use super::layout::K_STATS;
use super::mailbox::{self, Deposit};
use super::ops::WriteOp;
use super::outcome::WriteOutcome;
use super::record::Stats;

/// Applies `ops` in order over `txn`, one outcome each.
pub(crate) fn apply_ops(
    txn: &mut impl KvTxn,
    ops: &[WriteOp],
) -> Result<Vec<WriteOutcome>, StoreError> {
    let mut stats = Stats::decode(txn.get(K_STATS)?)?;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        out.push(apply_one(txn, op, &mut stats)?);
    }
    txn.put(K_STATS, &stats.encode())?;
    Ok(out)
}

fn apply_one(
    txn: &mut impl KvTxn,
    op: &WriteOp,
    stats: &mut Stats,
) -> Result<WriteOutcome, StoreError> {
    match op {
        WriteOp::Create { receive_id, record } => mailbox::create(txn, receive_id, record, stats),
        WriteOp::Secure {
            receive_id,
            sender_key,
        } => mailbox::secure(txn, receive_id, sender_key),
        WriteOp::Deposit {
            receive_id,
            message_id,
            bytes,
            arrival,
            verified_with,
            quota,
            first_contact_limit,
        } => {
            let deposit = Deposit {
                receive_id,
                message_id,
                bytes,
                arrival: *arrival,
                verified_with,
                quota: *quota,
                first_contact_limit: *first_contact_limit,
            };
            mailbox::deposit(txn, &deposit, stats)
        }
        WriteOp::Ack {
            receive_id,
            message_id,
        } => mailbox::ack(txn, receive_id, message_id, stats),
        WriteOp::Delete { receive_id } => mailbox::delete(txn, receive_id, stats),
        WriteOp::Expire { before, limit } => mailbox::expire(txn, *before, *limit, stats),
        WriteOp::ForwardEnqueue(op) => forward::enqueue(txn, op),
        WriteOp::ForwardSettle {
            forward_id,
            state,
            keep_until,
        } => forward::settle(txn, forward_id, *state, *keep_until),
        WriteOp::ForwardExpire {
            now,
            keep_until,
            limit,
        } => forward::expire(txn, *now, *keep_until, *limit),
    }
}
