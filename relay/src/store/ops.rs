//! The mutations a batch is made of.

use std::fmt;

use enlace_protocol::command::ForwardId;
use enlace_protocol::envelope::{MailboxId, MessageId};

use super::forward::{Enqueue, QueueState};
use super::record::MailboxRecord;

/// A mutation, applied in a batch by [`super::Store::apply`].
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
        /// [`QueueState::Stored`], or [`QueueState::Refused`] with the
        /// destination's error code.
        state: QueueState,
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
