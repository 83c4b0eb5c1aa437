//! The forwarding commands (docs/protocol.md section 12): `FetchRelayKey`,
//! `Forward` and `ForwardStatus`, for own clients; and what a forward's
//! record tells its client.

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{Forward, ForwardId, ForwardState, RelayError, Response};

use super::conn::ConnState;
use super::core::{Core, store_error};
use super::limits::FORWARD_QUEUE_TOTAL;
use super::step::{Step, Then};
use crate::store::Store;
use crate::store::WriteOp;
use crate::store::forward::{Enqueue, ForwardRecord, QueueState};

/// What a forward's record says to its client.
pub(crate) fn forward_state(record: Option<ForwardRecord>) -> ForwardState {
    match record {
        None => ForwardState::Unknown,
        Some(r) => match r.state {
            QueueState::Queued => ForwardState::Queued,
            QueueState::Stored => ForwardState::Stored,
            QueueState::Expired => ForwardState::Expired,
            QueueState::Refused(code) => ForwardState::Refused(code),
        },
    }
}

/// Notes that `conn` names `destination` (see
/// [`crate::policy::allowance::Allowances::note_destination`]), returning
/// the address encoded.
fn name_destination(
    conn: &ConnState,
    destination: &RelayAddress,
    now: u64,
) -> Result<Vec<u8>, RelayError> {
    let mut address = Vec::new();
    destination.encode(&mut address);
    conn.note_destination(&address, now)
        .map_err(|retry_after_secs| RelayError::RateLimited { retry_after_secs })?;
    Ok(address)
}

/// This relay's own key to anyone; another relay's, fetched by the
/// driver, to own clients only.
pub(super) fn fetch_relay_key<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    destination: RelayAddress,
    now: u64,
) -> Result<Step, RelayError> {
    let me = core.identity()?.fingerprint();
    if *destination.fingerprint() == me {
        Ok(Step::Reply(Response::RelayKey(Box::new(
            core.relay_key(now)?,
        ))))
    } else if conn.is_own() {
        name_destination(conn, &destination, now)?;
        Ok(Step::FetchRelayKey { destination })
    } else {
        Err(RelayError::NotOwnClient)
    }
}

/// Queues a sealed send for another relay, for an own client.
pub(super) fn forward<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    forward: Forward,
    now: u64,
) -> Result<Step, RelayError> {
    let me = core.identity()?.fingerprint();
    if !conn.is_own() {
        return Err(RelayError::NotOwnClient);
    }
    if *forward.destination.fingerprint() == me {
        // A mailbox here is reached with a plain send.
        return Err(RelayError::Malformed);
    }
    let destination = *forward.destination.fingerprint();
    let address = name_destination(conn, &forward.destination, now)?;
    Ok(Step::Write {
        op: WriteOp::ForwardEnqueue(Box::new(Enqueue {
            forward_id: forward.forward_id,
            destination_fp: destination,
            destination: address,
            sealed: forward.sealed,
            arrival: now,
            deadline: now.saturating_add(core.limits.ttl_secs),
            per_destination: core.limits.forward_queue_limit,
            total: FORWARD_QUEUE_TOTAL,
        })),
        then: Then::Forwarded {
            forward_id: forward.forward_id,
            destination,
        },
    })
}

/// What became of earlier forwards, for an own client.
pub(super) fn forward_status<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    ids: &[ForwardId],
) -> Result<Step, RelayError> {
    if !conn.is_own() {
        return Err(RelayError::NotOwnClient);
    }
    let mut states = Vec::with_capacity(ids.len());
    for id in ids {
        let record = core.store.forward_status(id).map_err(|e| store_error(&e))?;
        states.push(forward_state(record));
    }
    Ok(Step::Reply(Response::ForwardStatus(states)))
}
