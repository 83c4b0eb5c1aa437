//! What applying one received application message did.

use crate::profile::{ContactId, MessageId};

/// What a decrypted application message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// A text was completed and added to the history; send a receipt.
    Text(MessageId),
    /// A part of a longer text was kept.
    Part,
    /// Messages sent earlier were marked delivered.
    Receipt,
    /// Nothing new (a repeat), or a message this version cannot read.
    Nothing,
    /// A nucleus message was applied; seal these plaintexts for these
    /// contacts (gossiped operations, forwarded introductions).
    Forward(Vec<(ContactId, Vec<u8>)>),
}
