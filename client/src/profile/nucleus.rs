//! What the profile keeps of nuclei: the operations seen, the group
//! messages seen, the changes still to show, and the introductions still
//! to make or accept.

use std::collections::BTreeMap;

use enlace_protocol::group::{Fold, History, Member, NucleusId, Op, OpHash, OpV1};
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

/// A nucleus this profile is in, is invited to, or was removed from.
///
/// Store format 3 gave nuclei roles, consent and causal order: version-1
/// operations stay in `ops_v1` as they were received, new ones are
/// version 2 (`docs/client.md`, "Format versions").
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Nucleus {
    /// The nucleus id (random, chosen by the creator).
    #[serde(with = "super::ids::nucleus_id")]
    pub id: NucleusId,
    /// The local name (the creator's name for it, made unique locally).
    pub name: String,
    /// The creator's identity key of a nucleus founded with version 1,
    /// pinned from the first version-1 `create` received (or ourselves).
    pub creator: Option<[u8; 32]>,
    /// The hash of the version-2 `create` of a nucleus founded with
    /// version 2, pinned from the past of the `add` that invited us (or our
    /// own).
    pub root: Option<[u8; 32]>,
    /// Verified version-1 operations, as received (read-only).
    pub ops_v1: Vec<Vec<u8>>,
    /// Verified version-2 operations that counted in their own past when
    /// they arrived, as received.
    pub ops: Vec<Vec<u8>>,
    /// Verified version-2 operations waiting for a parent, as received.
    pub waiting: Vec<Vec<u8>>,
    /// While we have not joined: the identity key of the contact whose
    /// `add` invited us (only its operations are taken until we join).
    pub invited_by: Option<[u8; 32]>,
    /// Refuse to send to the nucleus while any other member is not
    /// verified in person (a local setting).
    pub require_verified: bool,
    /// Members `nucleus send` already said were unverified.
    pub warned: Vec<[u8; 32]>,
    /// Membership changes not shown yet, oldest first.
    pub notices: Vec<Notice>,
    /// Recently received group messages, oldest first (at most
    /// [`SEEN_GROUP_KEPT`]): duplicates and replays are dropped.
    pub seen: Vec<SeenGroupMessage>,
    /// Group messages completed into the history, for labelling them.
    pub received: Vec<SeenGroupMessage>,
}

/// A membership change to show in `read` and `listen`: the keys are shown
/// with the names and verification state they have when shown.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone, PartialEq, Eq)]
pub struct Notice {
    /// What happened.
    pub what: NoticeKind,
    /// Who did it (the author of the operation).
    pub by: [u8; 32],
    /// Whom it concerns.
    pub member: [u8; 32],
}

/// What a [`Notice`] tells.
#[derive(Serialize, Deserialize, Zeroize, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// `by` invited us: join or decline.
    Invited,
    /// `by` invited `member`.
    Added,
    /// `member` accepted `by`'s invitation.
    Joined,
    /// `member` declined.
    Declined,
    /// `member` left.
    Left,
    /// `by` removed `member`.
    Removed,
    /// `by` gave `member` the role with this byte.
    Role(u8),
    /// `member` is no longer counted: the change that made it a member
    /// does not count any more.
    Dropped,
    /// A change by `by` about `member` was refused: its action and role
    /// bytes, and why (a `Refusal` code).
    Refused {
        /// The operation's action byte.
        action: u8,
        /// The operation's role byte.
        role: u8,
        /// Why, as the client numbers refusals.
        reason: u8,
    },
}

impl Nucleus {
    /// An empty nucleus entry.
    pub fn new(id: NucleusId, name: String) -> Self {
        Self {
            id,
            name,
            creator: None,
            root: None,
            ops_v1: Vec::new(),
            ops: Vec::new(),
            waiting: Vec::new(),
            invited_by: None,
            require_verified: false,
            warned: Vec::new(),
            notices: Vec::new(),
            seen: Vec::new(),
            received: Vec::new(),
        }
    }

    /// The decoded version-1 operations. Stored ones were verified when
    /// received and the store is authenticated, so they are not verified
    /// again.
    pub fn v1_ops(&self) -> Vec<OpV1> {
        self.ops_v1
            .iter()
            .filter_map(|b| OpV1::decode_unverified(b).ok())
            .collect()
    }

    /// The decoded version-2 operations (placed ones), unverified as
    /// [`Nucleus::v1_ops`].
    pub fn v2_ops(&self) -> Vec<Op> {
        decode_all(&self.ops)
    }

    /// The decoded waiting operations.
    pub fn waiting_ops(&self) -> Vec<Op> {
        decode_all(&self.waiting)
    }

    /// Runs `f` over the history this member holds.
    pub fn with_history<T>(&self, f: impl FnOnce(&History<'_>) -> T) -> T {
        let (v1, ops) = (self.v1_ops(), self.v2_ops());
        f(&History {
            creator: self.creator,
            root: self.root.map(OpHash),
            v1: &v1,
            ops: &ops,
        })
    }

    /// The fold of what this member holds.
    pub fn fold(&self) -> Fold {
        self.with_history(|h| h.fold())
    }

    /// The current member list (invited members included).
    pub fn members(&self) -> BTreeMap<[u8; 32], Member> {
        self.fold().members
    }

    /// Remembers a group message; false if it was seen already. Keeps at
    /// most [`SEEN_GROUP_KEPT`], dropping the oldest.
    pub fn remember(&mut self, seen: SeenGroupMessage) -> bool {
        seen::remember(&mut self.seen, seen, SEEN_GROUP_KEPT)
    }
}

fn decode_all(bytes: &[Vec<u8>]) -> Vec<Op> {
    bytes
        .iter()
        .filter_map(|b| Op::decode_unverified(b).ok())
        .collect()
}

/// Network work that receiving (or joining) decided on, done by the
/// driver.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone, PartialEq, Eq)]
pub enum NucleusTask {
    /// We joined `nucleus` and have no session with `member`: make an
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

opaque_debug!(
    Nucleus,
    SeenGroupMessage,
    NucleusTask,
    IntroducedContact,
    Notice,
    NoticeKind
);
