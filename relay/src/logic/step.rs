//! What the driver does next with a request, and how a write is answered
//! once committed.

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardId, Response};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{MailboxId, MessageId};
use enlace_protocol::keys::Fingerprint;

use crate::store::WriteOp;

/// What the driver does next with a request ([`super::Core::handle`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Answer now.
    Reply(Response),
    /// Commit `op` durably, then answer what [`super::Core::finish`] says
    /// for `then` and the commit's outcome.
    Write {
        /// The mutation.
        op: WriteOp,
        /// How to answer once committed.
        then: Then,
    },
    /// Answer `Ok` and start pushing the mailbox's envelopes on this stream.
    Subscribe {
        /// The mailbox.
        receive_id: MailboxId,
        /// Its delivery key.
        delivery_key: DeliveryKey,
    },
    /// Fetch another relay's signed key over a relay-to-relay connection
    /// and answer with it.
    FetchRelayKey {
        /// The relay.
        destination: RelayAddress,
    },
}

/// The answer to a committed write.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Then {
    /// A mailbox was created.
    Created {
        /// Receive id.
        receive_id: MailboxId,
        /// Send id.
        send_id: MailboxId,
        /// The relay's X25519 public key.
        relay_dh: [u8; 32],
    },
    /// Secured.
    Secured,
    /// An envelope deposit.
    Deposited {
        /// The mailbox it went to.
        receive_id: MailboxId,
        /// A forwarded (`RelayDeliver`) `Send` whose signature passed.
        relayed_signed: bool,
    },
    /// An ack.
    Acked {
        /// Mailbox.
        receive_id: MailboxId,
        /// Acked message.
        message_id: MessageId,
    },
    /// A mailbox deletion.
    Deleted {
        /// Mailbox.
        receive_id: MailboxId,
    },
    /// A forward was queued (or was known already).
    Forwarded {
        /// The client's id for it.
        forward_id: ForwardId,
        /// The destination's fingerprint.
        destination: Fingerprint,
    },
}
