//! One lane: the forwards due for one address of a destination, delivered
//! over one connection, up to [`LANE_IN_FLIGHT`] at once, each settled by
//! the destination's answer; what happened goes back to the worker in a
//! [`LaneReport`].

use std::collections::HashMap;
use std::sync::Arc;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{RelayError, Request, Response};
use enlace_protocol::keys::Fingerprint;
use tokio::sync::mpsc;

use super::dialer::ConnectError;
use super::schedule::{AddressOutcome, LaneReport, Run};
use super::shared::Shared;
use crate::store::forward::{QueueState, QueuedForward};

/// Deliveries one lane has under way at once, each on its own stream
/// (below the 24 concurrent streams a relay allows a connection, leaving
/// room for key fetches on the same connection).
const LANE_IN_FLIGHT: usize = 16;

/// Sends a lane's report when the lane ends, also if it panics, so the
/// worker never waits for a lane that is gone.
pub(crate) struct ReportOnDrop {
    pub(crate) report: Option<LaneReport>,
    pub(crate) done: mpsc::Sender<LaneReport>,
}

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        if let Some(report) = self.report.take() {
            // The channel holds MAX_LANES reports and at most MAX_LANES
            // lanes run, so this never finds it full; after the worker
            // stopped nobody needs the report.
            let _ = self.done.try_send(report);
        }
    }
}

/// How one delivery attempt ended.
enum Delivery {
    /// Stored or refused for good, and recorded.
    Settled,
    /// Deferred by the destination, or not recorded: retried later.
    Failed,
    /// The connection failed: the address waits.
    AddressFailed,
}

/// Errors a destination gives for a forward that retrying cannot fix.
fn is_permanent(e: &RelayError) -> bool {
    matches!(
        e,
        RelayError::Malformed
            | RelayError::UnsupportedVersion { .. }
            | RelayError::Auth
            | RelayError::UnknownMailbox
            | RelayError::TooLarge
            | RelayError::UnknownCommand
    )
}

/// Delivers `run`'s forwards over one connection to its address, in
/// queue order, and reports what happened through `guard`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    destination: Fingerprint,
    run: Run,
    in_flight: Arc<tokio::sync::Semaphore>,
    mut guard: ReportOnDrop,
) {
    let Some(report) = guard.report.as_mut() else {
        return;
    };
    if *shared.shutdown.borrow() {
        return;
    }
    let conn = match shared.dialer.connect(&run.address).await {
        Ok(conn) => conn,
        Err(ConnectError::Unreachable) => {
            report.address = AddressOutcome::Failed;
            return;
        }
        Err(ConnectError::Refused) => {
            // Never sent: refused for good, with code 13 (unreachable).
            for seq in run.seqs {
                let Ok(mut batch) = shared.store.forward_queue_from(&destination, seq, 1) else {
                    report.failed.push(seq);
                    continue;
                };
                match batch.pop() {
                    Some(entry) if entry.seq == seq => {
                        let refused = QueueState::Refused(RelayError::Unreachable.code());
                        if shared.settle(entry.forward_id, refused).await {
                            report.settled.push(seq);
                        } else {
                            report.failed.push(seq);
                        }
                    }
                    _ => {}
                }
            }
            return;
        }
    };
    report.address = AddressOutcome::Answered;
    // Up to LANE_IN_FLIGHT deliveries at once (within the
    // destination's DESTINATION_IN_FLIGHT), each on a stream of its
    // own, started in queue order: one slow answer (a destination's
    // fsync) or one refused forward does not hold the next one for a
    // round trip, and their settlements share group commits.
    let address = Arc::new(run.address);
    let mut pending = run.seqs.into_iter().peekable();
    let mut flying = tokio::task::JoinSet::new();
    let mut flying_seqs = HashMap::new();
    let mut failed = false;
    loop {
        while !failed && flying.len() < LANE_IN_FLIGHT && pending.peek().is_some() {
            // A permit before the forward is read: what is held in
            // memory stays bounded per destination.
            let permit = match in_flight.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) if !flying.is_empty() => break,
                Err(_) => match in_flight.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    // Never closed; were it, the rest waits a pass.
                    Err(_) => break,
                },
            };
            let Some(seq) = pending.next() else { break };
            if *shared.shutdown.borrow() {
                failed = true;
                break;
            }
            // Read now, not when planned: it may have been settled since.
            let entry = match shared.store.forward_queue_from(&destination, seq, 1) {
                Ok(mut batch) => match batch.pop() {
                    Some(entry) if entry.seq == seq => entry,
                    _ => continue,
                },
                Err(e) => {
                    tracing::error!("reading the forward queue failed: {e}");
                    report.failed.push(seq);
                    continue;
                }
            };
            let (shared, conn, address) = (shared.clone(), conn.clone(), address.clone());
            let task = flying.spawn(async move {
                let delivery = deliver(&shared, &conn, &address, entry).await;
                drop(permit);
                (seq, delivery)
            });
            flying_seqs.insert(task.id(), seq);
        }
        match flying.join_next_with_id().await {
            None => break,
            // A delivery that panicked waits for its retry time like
            // a failed one (a panic every time must not spin).
            Some(Err(e)) => {
                if let Some(seq) = flying_seqs.remove(&e.id()) {
                    report.failed.push(seq);
                }
            }
            Some(Ok((id, result))) => {
                flying_seqs.remove(&id);
                match result {
                    (seq, Delivery::Settled) => report.settled.push(seq),
                    (seq, Delivery::Failed) => report.failed.push(seq),
                    (seq, Delivery::AddressFailed) => {
                        // The rest are not sent; those already under way
                        // end on their own (each within the request
                        // timeout).
                        report.failed.push(seq);
                        report.address = AddressOutcome::Failed;
                        failed = true;
                    }
                }
            }
        }
    }
}

/// Sends one forward to its destination and records the answer.
async fn deliver(
    shared: &Shared,
    conn: &quinn::Connection,
    address: &RelayAddress,
    entry: QueuedForward,
) -> Delivery {
    let request = Request::RelayDeliver {
        sealed: entry.sealed,
    };
    let settled = match shared.dialer.request(conn, &request).await {
        Ok(Response::Stored) => shared.settle(entry.forward_id, QueueState::Stored).await,
        Ok(Response::Error(e)) if is_permanent(&e) => {
            tracing::debug!("relay {} refused a forward: {e}", address.fingerprint());
            shared
                .settle(entry.forward_id, QueueState::Refused(e.code()))
                .await
        }
        Ok(Response::Error(e)) => {
            // Quota, rate limit, full disk: this forward waits, the
            // others go on.
            tracing::debug!("relay {} deferred a forward: {e}", address.fingerprint());
            false
        }
        Ok(_) => false,
        Err(e) => {
            tracing::debug!("forward to relay {} failed: {e}", address.fingerprint());
            shared.dialer.forget(address);
            return Delivery::AddressFailed;
        }
    };
    if settled {
        Delivery::Settled
    } else {
        Delivery::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_refusals() {
        assert!(is_permanent(&RelayError::UnknownMailbox));
        assert!(is_permanent(&RelayError::Auth));
        assert!(!is_permanent(&RelayError::Quota));
        assert!(!is_permanent(&RelayError::StorageFull));
        assert!(!is_permanent(&RelayError::RateLimited {
            retry_after_secs: 1
        }));
        assert!(!is_permanent(&RelayError::Internal));
    }
}
