//! What follows a commit, decided in one place.
//!
//! A write ([`super::Step::Write`]) is answered only once its batch is
//! durable. The driver then hands the commit's outcome to
//! [`Core::finish`], which applies what the commit changes in the logic's
//! own state (the creator of a mailbox is an own client; a forwarded
//! signed `Send` stored anew counts for its connection; a deleted
//! mailbox's cached recipient key is forgotten) and returns the answer with
//! the one [`Effect`] the driver must carry out. The server and the unit
//! tests both take this path.

use enlace_protocol::command::{ForwardId, ForwardState, RelayError, Response};
use enlace_protocol::envelope::{MailboxId, MessageId};
use enlace_protocol::keys::Fingerprint;

use super::conn::ConnState;
use super::core::{Core, store_error};
use super::forward::forward_state;
use super::step::Then;
use crate::store::forward::ForwardRecord;
use crate::store::{Committed, Store, StoreError, WriteOutcome};

/// What a commit came to: the answer, and what the driver does besides.
#[derive(Debug)]
pub struct Finished {
    /// The answer to the request (for a forward, until the destination's
    /// answer is known: see [`Effect::AwaitForward`]).
    pub response: Response,
    /// What the driver does before it answers.
    pub effect: Option<Effect>,
}

/// What a commit asks of the driver.
#[derive(Debug)]
#[non_exhaustive]
pub enum Effect {
    /// An envelope was stored: count the deposit and wake the mailbox's
    /// subscriber.
    Deposited {
        /// The mailbox.
        receive_id: MailboxId,
    },
    /// An envelope was acked: free its slot in the subscriber's window.
    Acked {
        /// The mailbox.
        receive_id: MailboxId,
        /// The envelope.
        message_id: MessageId,
    },
    /// The mailbox was deleted: end its subscription.
    Deleted {
        /// The mailbox.
        receive_id: MailboxId,
    },
    /// A forward is queued: wait briefly for the destination, read what
    /// became of it, and answer [`AwaitForward::answered`] instead of
    /// [`Finished::response`].
    AwaitForward(AwaitForward),
}

/// A queued forward whose answer waits for the destination.
#[derive(Debug)]
pub struct AwaitForward {
    /// The client's id for it.
    pub forward_id: ForwardId,
    /// The destination's fingerprint.
    pub destination: Fingerprint,
    /// Queued by this request, not a known forward id repeated: only then
    /// does the destination's answer count for the connection.
    fresh: bool,
}

impl AwaitForward {
    /// The answer once the forward's record has been read again after the
    /// wait: stored, refused with the destination's error, expired
    /// (`unreachable`), or still queued. A forward the destination refused
    /// `auth` or stored counts for its connection (see
    /// [`crate::policy::standing::Tally::forwards_over_budget`]).
    pub fn answered(
        self,
        conn: &ConnState,
        record: Result<Option<ForwardRecord>, StoreError>,
    ) -> Response {
        let answer = match record.map(forward_state) {
            Ok(ForwardState::Queued) => Response::Queued,
            Ok(ForwardState::Stored) => Response::Stored,
            Ok(ForwardState::Refused(code)) => Response::Error(RelayError::from_code(code)),
            Ok(ForwardState::Expired) => Response::Error(RelayError::Unreachable),
            Ok(_) => Response::Error(RelayError::Internal),
            Err(e) => Response::Error(store_error(&e)),
        };
        if self.fresh {
            conn.forward_answered(&answer);
        }
        answer
    }
}

impl<S: Store + ?Sized> Core<S> {
    /// The answer to the write of `then` on connection `conn` once its
    /// batch committed (or failed), and what the driver does besides.
    pub fn finish(&self, conn: &ConnState, then: Then, outcome: Committed) -> Finished {
        // A forwarded signed `Send` stored anew counts for the connection
        // against its failed forwarded deliveries; a replay of one already
        // stored (answered `Stored` too) does not, or one valid sealed send
        // replayed would buy any number of garbage ones.
        if let (
            Then::Deposited {
                relayed_signed: true,
                ..
            },
            Ok(WriteOutcome::Stored { .. }),
        ) = (&then, &outcome)
        {
            conn.passed_relayed();
        }
        // Queued by this request, not a known forward id repeated.
        let fresh = matches!(outcome, Ok(WriteOutcome::Stored { .. }));
        let response = match outcome {
            Ok(outcome) => response(&then, outcome),
            Err(e) => Response::Error(store_error(&e)),
        };
        if matches!(response, Response::Error(_)) {
            return Finished {
                response,
                effect: None,
            };
        }
        let effect = match then {
            Then::Created { .. } => {
                conn.mark_own();
                None
            }
            Then::Secured => None,
            Then::Deposited { receive_id, .. } => Some(Effect::Deposited { receive_id }),
            Then::Acked {
                receive_id,
                message_id,
            } => Some(Effect::Acked {
                receive_id,
                message_id,
            }),
            Then::Deleted { receive_id } => {
                self.forget(&receive_id);
                Some(Effect::Deleted { receive_id })
            }
            Then::Forwarded {
                forward_id,
                destination,
            } => Some(Effect::AwaitForward(AwaitForward {
                forward_id,
                destination,
                fresh,
            })),
        };
        Finished { response, effect }
    }
}

/// The answer a committed outcome gives.
fn response(then: &Then, outcome: WriteOutcome) -> Response {
    match (then, outcome) {
        (
            Then::Created {
                receive_id,
                send_id,
                relay_dh,
            },
            WriteOutcome::Done,
        ) => Response::MailboxCreated {
            receive_id: *receive_id,
            send_id: *send_id,
            relay_dh: *relay_dh,
        },
        (Then::Deposited { .. }, WriteOutcome::Stored { .. } | WriteOutcome::Duplicate) => {
            Response::Stored
        }
        // Acking what is gone (acked before, expired) is not an error:
        // delivery is at-least-once and acks may be retried.
        (Then::Acked { .. }, WriteOutcome::Done | WriteOutcome::NotFound) => Response::Ok,
        (Then::Secured | Then::Deleted { .. }, WriteOutcome::Done) => Response::Ok,
        // The driver then waits briefly for the destination's answer.
        (Then::Forwarded { .. }, WriteOutcome::Stored { .. } | WriteOutcome::Duplicate) => {
            Response::Queued
        }
        (Then::Forwarded { .. }, WriteOutcome::Quota) => {
            Response::Error(RelayError::ForwardQueueFull)
        }
        (_, WriteOutcome::UnknownMailbox) => Response::Error(RelayError::UnknownMailbox),
        (_, WriteOutcome::Quota) => Response::Error(RelayError::Quota),
        (_, WriteOutcome::Full) => Response::Error(RelayError::StorageFull),
        (_, WriteOutcome::Refused) => Response::Error(RelayError::Auth),
        // A 128-bit id collision, or an outcome that does not fit.
        _ => Response::Error(RelayError::Internal),
    }
}
