//! The result of one write operation in a committed batch.

use super::error::StoreError;

/// What an operation's commit came to: its outcome once its batch is
/// durable, or why the batch failed (then nothing of it is done).
pub type Committed = Result<WriteOutcome, StoreError>;

/// The result of one [`super::WriteOp`] in a committed batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteOutcome {
    /// Done (create, secure, ack, delete).
    Done,
    /// The envelope was stored with this arrival sequence number.
    Stored {
        /// Sequence number.
        seq: u64,
    },
    /// An envelope with this message id is already stored: nothing written.
    Duplicate,
    /// No such mailbox (or a create whose id is taken).
    UnknownMailbox,
    /// Create: an id is already in use.
    Collision,
    /// The mailbox holds its quota.
    Quota,
    /// Secure with a different key than already registered, or a
    /// first-contact deposit to a mailbox that was secured meanwhile, or the
    /// first-contact allowance is used up.
    Refused,
    /// Ack of a message id that is not stored.
    NotFound,
    /// Deposit refused: the disk is nearly full (the rest is kept for
    /// acks, deletes and expiry, which free space).
    Full,
    /// Envelopes expired.
    Expired {
        /// How many.
        count: usize,
    },
}
