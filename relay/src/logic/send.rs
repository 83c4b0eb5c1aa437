//! Deposits: a `Send` to a mailbox's send id, and the `Send` sealed inside
//! a `RelayDeliver` from another relay (docs/protocol.md 12.3), handled
//! exactly as if it came on this connection.

use enlace_protocol::command::RelayError;
use enlace_protocol::envelope::Envelope;

use super::conn::ConnState;
use super::core::{Core, store_error};
use super::step::{Step, Then};
use crate::store::{Store, WriteOp};

/// A `Send`. `relayed`: it is the `Send` inside a `RelayDeliver`, whose
/// signature the connection's peer (another relay) did not make.
pub(super) fn send<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    envelope: Envelope,
    now: u64,
    relayed: bool,
) -> Result<Step, RelayError> {
    let (receive_id, rec) = match core.store.mailbox_by_send_id(&envelope.send_id()) {
        Ok(Some(found)) => found,
        Ok(None) => {
            if relayed {
                // An opened seal naming no mailbox cost the exchange as
                // much as one that did not open, and replaying it costs its
                // sender nothing.
                let _ = conn.failed_relayed_check();
            }
            return Err(RelayError::UnknownMailbox);
        }
        Err(e) => return Err(store_error(&e)),
    };
    match &rec.sender_key {
        Some(key) => {
            let key = core.keys.get(key)?;
            envelope.verify(&key).map_err(|_| {
                if relayed {
                    conn.failed_relayed_check()
                } else if conn.has_passed_a_check() {
                    // The mailbox's owner chose the key: one who secured it
                    // with a key its senders do not hold (a malicious
                    // contact) must not get their connections demoted and
                    // closed. A connection that proved itself pays for a
                    // failing send what it pays for a duplicate valid one:
                    // a check.
                    RelayError::Auth
                } else {
                    conn.failed_check()
                }
            })?;
            conn.passed_check();
        }
        None => {
            if rec.first_contact >= core.limits.first_contact_limit {
                return Err(RelayError::Auth);
            }
            conn.take_first_contact_token(now)
                .map_err(|retry_after_secs| RelayError::RateLimited { retry_after_secs })?;
        }
    }
    Ok(Step::Write {
        op: WriteOp::Deposit {
            receive_id,
            message_id: envelope.message_id(),
            arrival: now,
            verified_with: rec.sender_key,
            quota: core.limits.quota,
            first_contact_limit: core.limits.first_contact_limit,
            bytes: envelope.into_bytes(),
        },
        then: Then::Deposited {
            receive_id,
            relayed_signed: relayed && rec.sender_key.is_some(),
        },
    })
}

/// A forwarded delivery: opened with this relay's forwarding key (any
/// failure is one coarse refusal), then handled as the `Send` inside.
pub(super) fn relay_deliver<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    sealed: &[u8],
    now: u64,
) -> Result<Step, RelayError> {
    let envelope = core
        .identity()?
        .forward_key()
        .open(sealed)
        .map_err(|_| conn.failed_relayed_check())?;
    send(core, conn, envelope, now, true)
}
