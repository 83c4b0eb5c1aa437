//! The recipient's commands: create, secure, subscribe, ack and delete a
//! mailbox. Each is signed with the mailbox's recipient key over the
//! connection binding (docs/protocol.md 5.1).

use enlace_protocol::command::{Ack, CreateMailbox, Delete, RelayError, Secure, Signed, Subscribe};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::MailboxId;

use super::conn::ConnState;
use super::core::Core;
use super::step::{Step, Then};
use crate::store::{MailboxRecord, Store, WriteOp};

pub(super) fn create(
    conn: &ConnState,
    signed: &Signed<CreateMailbox>,
    now: u64,
) -> Result<Step, RelayError> {
    let cmd = signed.unverified();
    // Proof of possession of the new recipient key.
    let cmd = signed
        .verify(&conn.binding, &cmd.recipient_key)
        .map_err(|_| conn.failed_check())?;
    conn.take_create_token(now)
        .map_err(|retry_after_secs| RelayError::RateLimited { retry_after_secs })?;
    let mut rng = rand::rng();
    let (delivery_key, relay_dh) =
        DeliveryKey::for_relay(&mut rng, &cmd.recipient_dh).map_err(|_| RelayError::Malformed)?;
    // Proven only by a creation that goes ahead (and uses up the host's
    // allowance), not by a proof alone.
    conn.passed_check();
    let receive_id = MailboxId(rand::random());
    let send_id = MailboxId(rand::random());
    Ok(Step::Write {
        op: WriteOp::Create {
            receive_id,
            record: Box::new(MailboxRecord {
                send_id,
                recipient_key: *cmd.recipient_key.as_bytes(),
                sender_key: None,
                delivery_key: *delivery_key.to_bytes(),
                first_contact: 0,
                next_seq: 0,
                stored: 0,
            }),
        },
        then: Then::Created {
            receive_id,
            send_id,
            relay_dh,
        },
    })
}

pub(super) fn secure<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    signed: &Signed<Secure>,
) -> Result<Step, RelayError> {
    let rec = core.load(&signed.unverified().receive_id)?;
    let cmd = core.verify(signed, conn, &rec)?;
    conn.mark_own();
    Ok(Step::Write {
        op: WriteOp::Secure {
            receive_id: cmd.receive_id,
            sender_key: *cmd.sender_key.as_bytes(),
        },
        then: Then::Secured,
    })
}

pub(super) fn subscribe<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    signed: &Signed<Subscribe>,
) -> Result<Step, RelayError> {
    let rec = core.load(&signed.unverified().receive_id)?;
    let cmd = core.verify(signed, conn, &rec)?;
    conn.mark_own();
    Ok(Step::Subscribe {
        receive_id: cmd.receive_id,
        delivery_key: DeliveryKey::from_bytes(rec.delivery_key),
    })
}

pub(super) fn ack<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    signed: &Signed<Ack>,
) -> Result<Step, RelayError> {
    let receive_id = signed.unverified().receive_id;
    let cached = core.recipients.lock().get(&receive_id).copied();
    let (key, cache) = match cached {
        Some(key) => (key, false),
        None => (core.keys.get(&core.load(&receive_id)?.recipient_key)?, true),
    };
    let cmd = signed
        .verify(&conn.binding, &key)
        .map_err(|_| conn.failed_check())?;
    conn.passed_check();
    // Cached only once a signature verified with it: otherwise anyone
    // knowing receive ids could churn the cache.
    if cache {
        core.recipients.insert(receive_id, key);
    }
    conn.mark_own();
    Ok(Step::Write {
        op: WriteOp::Ack {
            receive_id: cmd.receive_id,
            message_id: cmd.message_id,
        },
        then: Then::Acked {
            receive_id: cmd.receive_id,
            message_id: cmd.message_id,
        },
    })
}

pub(super) fn delete<S: Store + ?Sized>(
    core: &Core<S>,
    conn: &ConnState,
    signed: &Signed<Delete>,
) -> Result<Step, RelayError> {
    let rec = core.load(&signed.unverified().receive_id)?;
    let cmd = core.verify(signed, conn, &rec)?;
    Ok(Step::Write {
        op: WriteOp::Delete {
            receive_id: cmd.receive_id,
        },
        then: Then::Deleted {
            receive_id: cmd.receive_id,
        },
    })
}
