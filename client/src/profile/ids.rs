//! The ids the profile keeps, one type for each kind, so that one cannot
//! be passed where another is expected (a send id where a receive id
//! belongs, an envelope's id where a message's id belongs).
//!
//! Each is a plain newtype struct with derived serde: postcard encodes it
//! exactly as the bare value it wraps, so a store holds the same bytes as
//! before these types existed (`client/testdata/profile-format-2.hex`).

use enlace_protocol::envelope::{self, MailboxId};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::opaque::opaque_debug;

/// A contact's local id, stable across renames.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Zeroize)]
pub struct ContactId(pub u64);

/// An invitation's local id (drawn from the same counter as contacts').
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Zeroize)]
pub struct InvitationId(pub u64);

/// The send id of a mailbox: what a sender deposits to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Zeroize)]
pub struct SendId(pub [u8; 16]);

/// The receive id of a mailbox of ours, known only to us.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Zeroize)]
pub struct ReceiveId(pub [u8; 16]);

/// An envelope's own id (the protocol's message id): what a relay acks by
/// and what a receiver drops duplicate envelopes by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Zeroize)]
pub struct EnvelopeId(pub [u8; 16]);

/// A user's message id: the same in every part of the message and in
/// every member's copy of a nucleus message; receipts name it.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, Zeroize)]
pub struct MessageId(pub [u8; 16]);

opaque_debug!(
    ContactId,
    InvitationId,
    SendId,
    ReceiveId,
    EnvelopeId,
    MessageId
);

impl SendId {
    /// The id in the protocol's type.
    pub fn mailbox(self) -> MailboxId {
        MailboxId(self.0)
    }
}

impl ReceiveId {
    /// The id in the protocol's type.
    pub fn mailbox(self) -> MailboxId {
        MailboxId(self.0)
    }
}

impl EnvelopeId {
    /// The id in the protocol's type.
    pub fn message_id(self) -> envelope::MessageId {
        envelope::MessageId(self.0)
    }
}

/// Serde for the protocol's `NucleusId`, which has none of its own: the
/// bare 16 bytes, as the profile stored them before the type existed.
pub(crate) mod nucleus_id {
    use enlace_protocol::group::{NUCLEUS_ID_LEN, NucleusId};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(id: &NucleusId, s: S) -> Result<S::Ok, S::Error> {
        id.0.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NucleusId, D::Error> {
        <[u8; NUCLEUS_ID_LEN]>::deserialize(d).map(NucleusId)
    }
}
