//! Messages: the history shown to the user, envelopes waiting in the
//! outbox, the status of what was sent, and parts of long messages still
//! arriving.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ids::{ContactId, EnvelopeId, MessageId};
use super::relay::StoredRelay;
use crate::opaque::opaque_debug;

/// Which way a message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum Direction {
    /// Received from the contact.
    In,
    /// Sent to the contact.
    Out,
}

/// A message in the history.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct HistoryEntry {
    /// The contact's local id.
    pub contact: ContactId,
    /// Which way it went.
    pub direction: Direction,
    /// The application-level message id.
    pub message_id: MessageId,
    /// The sender's clock when written (Unix seconds).
    pub sent_at: u64,
    /// When this client stored it (Unix seconds).
    pub stored_at: u64,
    /// The text.
    pub text: String,
    /// Whether `read`/`listen` has shown it yet.
    pub shown: bool,
}

/// A sealed envelope waiting for a relay to store it.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct OutboxEntry {
    /// The contact's local id.
    pub contact: ContactId,
    /// The envelope's own id (what the relay and receiver see).
    pub envelope_id: EnvelopeId,
    /// The application-level message id this envelope carries a part of
    /// (for control envelopes: the first id acknowledged, or zero).
    pub message_id: MessageId,
    /// The relay to send to.
    pub relay: StoredRelay,
    /// The signed envelope's wire bytes.
    pub envelope: Vec<u8>,
    /// Whether this is a control envelope (handshake, receipt)
    /// rather than part of a user's message: it has no status of its own.
    pub control: bool,
}

/// Where a sent message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum Status {
    /// Sealed, waiting in the local outbox.
    Queued,
    /// Every part was stored by the contact's relay.
    Stored,
    /// The contact's client sent a delivery receipt.
    Delivered,
    /// Durably queued at the home relay, which forwards it to the contact's
    /// relay when that is reachable (appended last: older profiles decode).
    QueuedAtHome,
}

impl Status {
    /// The word shown in listings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Stored => "stored",
            Self::Delivered => "delivered",
            Self::QueuedAtHome => "queued at home relay",
        }
    }
}

/// The status of a message this organizer sent.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SentMessage {
    /// The contact's local id.
    pub contact: ContactId,
    /// The application-level message id.
    pub message_id: MessageId,
    /// When it was written (Unix seconds).
    pub sent_at: u64,
    /// Where it is.
    pub status: Status,
    /// How many envelopes it was split into.
    pub parts: u16,
}

/// Parts received of a message split across envelopes.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PartialMessage {
    /// The contact's local id.
    pub contact: ContactId,
    /// The application-level message id.
    pub message_id: MessageId,
    /// The sender's clock when written (Unix seconds).
    pub sent_at: u64,
    /// One slot per part; `None` until it arrives.
    pub parts: Vec<Option<Vec<u8>>>,
}

opaque_debug!(HistoryEntry, OutboxEntry, SentMessage, PartialMessage);

/// Test data: a message of `contact` with id `[id; 16]`, sent and stored
/// at `at`.
#[cfg(test)]
impl HistoryEntry {
    pub(crate) fn for_tests(contact: ContactId, id: u8, at: u64, text: &str) -> Self {
        Self {
            contact,
            direction: Direction::In,
            message_id: MessageId([id; 16]),
            sent_at: at,
            stored_at: at,
            text: text.into(),
            shown: true,
        }
    }
}
