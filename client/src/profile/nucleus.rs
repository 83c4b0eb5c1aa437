//! What the profile keeps of nuclei: the operations seen, the group
//! messages seen, and the introductions still to make or accept.

use std::collections::BTreeMap;

use enlace_protocol::group::{Member, NucleusId, Op, fold};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ids::{ContactId, InvitationId, MessageId};
use super::seen;
use crate::opaque::opaque_debug;

/// How many (author, message id) pairs are remembered per nucleus to drop
/// duplicates and replays of group messages.
pub const SEEN_GROUP_KEPT: usize = 1024;

/// A (group message author, message id) pair seen.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone, PartialEq, Eq)]
pub struct SeenGroupMessage {
    /// The author's identity fingerprint.
    pub author: [u8; 32],
    /// The author's message id.
    pub message_id: MessageId,
}

/// A nucleus this profile is in, was in, or is being added to.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Nucleus {
    /// The nucleus id (random, chosen by the creator).
    #[serde(with = "super::ids::nucleus_id")]
    pub id: NucleusId,
    /// The local name (the creator's name for it, made unique locally).
    pub name: String,
    /// The creator's identity key, pinned from the first `Create`
    /// operation received (or ourselves).
    pub creator: Option<[u8; 32]>,
    /// Every verified operation seen, as received.
    pub ops: Vec<Vec<u8>>,
    /// The largest Lamport clock seen.
    pub lamport: u64,
    /// Recently received group messages, oldest first (at most
    /// [`SEEN_GROUP_KEPT`]): duplicates and replays are dropped.
    pub seen: Vec<SeenGroupMessage>,
    /// Group messages completed into the history, for labelling them.
    pub received: Vec<SeenGroupMessage>,
}

impl Nucleus {
    /// The decoded operations. Stored ones were verified when received
    /// and the store is authenticated, so they are not verified again.
    pub fn decoded_ops(&self) -> Vec<Op> {
        self.ops
            .iter()
            .filter_map(|b| Op::decode_unverified(b).ok())
            .collect()
    }

    /// The current member list.
    pub fn members(&self) -> BTreeMap<[u8; 32], Member> {
        fold(self.creator, &self.decoded_ops())
    }

    /// Remembers a group message; false if it was seen already. Keeps at
    /// most [`SEEN_GROUP_KEPT`], dropping the oldest.
    pub fn remember(&mut self, seen: SeenGroupMessage) -> bool {
        seen::remember(&mut self.seen, seen, SEEN_GROUP_KEPT)
    }
}

/// Network work that receiving decided on, done by the driver.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone, PartialEq, Eq)]
pub enum NucleusTask {
    /// We are new in `nucleus` and have no session with `member`: make an
    /// invitation and send it, in a signed introduction, to our adder `via`.
    Introduce {
        /// The nucleus.
        #[serde(with = "super::ids::nucleus_id")]
        nucleus: NucleusId,
        /// The member to introduce ourselves to.
        member: [u8; 32],
        /// Our adder's identity key.
        via: [u8; 32],
    },
    /// A member's introduction reached us: accept its invitation.
    Accept {
        /// The nucleus.
        #[serde(with = "super::ids::nucleus_id")]
        nucleus: NucleusId,
        /// The introduction, as received.
        introduction: Vec<u8>,
        /// The contact who forwarded it (the new member's adder).
        via: ContactId,
    },
}

impl NucleusTask {
    /// The nucleus the task is for.
    pub fn nucleus(&self) -> NucleusId {
        match self {
            Self::Introduce { nucleus, .. } | Self::Accept { nucleus, .. } => *nucleus,
        }
    }
}

/// A contact made through a nucleus introduction (or an invitation made
/// for one, while `pending`).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone)]
pub struct IntroducedContact {
    /// The contact's local id, or the invitation's while `pending` (see
    /// [`IntroducedContact::contact`] and [`IntroducedContact::invitation`]).
    pub local: u64,
    /// Whether `local` is still an invitation id.
    pub pending: bool,
    /// The identity key of the member introduced.
    pub member: [u8; 32],
    /// The identity key of the member who introduced it.
    pub by: [u8; 32],
    /// The nucleus.
    #[serde(with = "super::ids::nucleus_id")]
    pub nucleus: NucleusId,
}

impl IntroducedContact {
    /// The contact made, once the introduction is complete.
    pub fn contact(&self) -> Option<ContactId> {
        (!self.pending).then_some(ContactId(self.local))
    }

    /// The invitation made for it, while it is pending.
    pub fn invitation(&self) -> Option<InvitationId> {
        self.pending.then_some(InvitationId(self.local))
    }

    /// Marks it complete: `contact` accepted the invitation.
    pub fn complete(&mut self, contact: ContactId) {
        self.local = contact.0;
        self.pending = false;
    }
}

opaque_debug!(Nucleus, SeenGroupMessage, NucleusTask, IntroducedContact);
