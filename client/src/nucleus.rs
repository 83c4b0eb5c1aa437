//! Nuclei: small groups whose members hold pairwise sessions.
//!
//! A nucleus message is encrypted once per member over the existing
//! sessions (fan-out). Membership changes are operations signed with the
//! changing member's identity key; every member keeps the set of
//! operations it has seen and folds it deterministically into the member
//! list, so members that saw the same operations agree whatever order they
//! arrived in. Operations are gossiped: the first time a member sees one it
//! forwards it to the other members it has sessions with.
//!
//! The byte layouts, the fold and its limits are in `docs/protocol.md`,
//! section 13. Nothing here does I/O; sealing is passed in as
//! [`engine::Seal`] closures and the network work (invitations for
//! introductions) is queued as [`NucleusTask`]s for the driver.

use std::collections::{BTreeMap, BTreeSet};

use enlace_protocol::keys::{NucleusStatement, PublicKey, Signature, SigningKeyPair};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::engine::{self, Received};
use crate::error::Error;
use crate::message::{self, AppMessage, MessageError, TextPart};
use crate::profile::{Contact, OutboxEntry, Profile, SentMessage, Status, Verification};

/// Bytes of a nucleus id.
pub const NUCLEUS_ID_LEN: usize = 16;
/// Most members of one nucleus. Fan-out costs one envelope per member and
/// every member holds a session with every other: beyond this, sender keys
/// or MLS are the right tool.
pub const MAX_MEMBERS: usize = 64;
/// Most nuclei one profile keeps (including ones it is being added to).
pub const MAX_NUCLEI: usize = 32;
/// Most membership operations one nucleus keeps. The fold needs the whole
/// history to check who was a member when; past this, no more changes are
/// made or accepted (create a new nucleus).
pub const MAX_OPS: usize = 512;
/// Most operations one author may have in a nucleus: one member alone
/// cannot use up [`MAX_OPS`] for everyone.
pub const MAX_OPS_PER_AUTHOR: usize = 128;
/// Most operations kept whose author is not (yet) known as a member: an
/// operation can arrive before the `add` of its author and must wait for
/// it, but keys nobody added cannot fill the nucleus (the oldest waiting
/// one is dropped for a new one; none is forwarded while it waits).
pub const MAX_UNPLACED_OPS: usize = 32;
/// Largest step an operation may take the Lamport clock past the largest
/// one seen. An honest author writes one more than the largest it has seen,
/// and a nucleus holds at most [`MAX_OPS`] operations, so honest clocks stay
/// far below this; the bound stops one member from pushing the clock to
/// `u64::MAX` (after which no later operation could sort after it).
pub const MAX_LAMPORT_JUMP: u64 = 1_024;
/// How many (author, message id) pairs are remembered per nucleus to drop
/// duplicates and replays of group messages.
pub const SEEN_GROUP_KEPT: usize = 1024;
/// Most introductions and invitations waiting for the network.
pub const MAX_TASKS: usize = 64;
/// Longest name carried in an operation (bytes; 64 characters at most are
/// ever written, up to 4 bytes each).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest invitation an introduction carries (bytes). An invitation is
/// about 1,500 bytes; the whole introduction must fit one small envelope.
pub const MAX_INVITATION_BYTES: usize = 1_700;

/// A membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// The creator founds the nucleus (target = author).
    Create,
    /// The author adds the target.
    Add,
    /// The author removes the target (itself: leaving).
    Remove,
}

impl Action {
    fn byte(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Add => 2,
            Self::Remove => 3,
        }
    }

    fn from_byte(b: u8) -> Result<Self, MessageError> {
        match b {
            1 => Ok(Self::Create),
            2 => Ok(Self::Add),
            3 => Ok(Self::Remove),
            _ => Err(MessageError::Malformed),
        }
    }
}

/// A signed membership operation, verified when decoded.
///
/// ```text
/// nucleus [16] | lamport u64 | action u8 | author [32] | target [32]
/// | name_len u8 | name [name_len] (UTF-8) | signature [64]
/// ```
///
/// The signature is the author's identity key over every byte before it
/// (label `enlace/v1/nucleus-op`). Its 64 bytes are also the operation's
/// id: ed25519 signatures checked with `verify_strict` are not malleable.
#[derive(Clone, PartialEq, Eq)]
pub struct Op {
    /// The nucleus.
    pub nucleus: [u8; NUCLEUS_ID_LEN],
    /// Lamport clock: one more than the largest the author had seen.
    pub lamport: u64,
    /// What it does.
    pub action: Action,
    /// The signer's identity key.
    pub author: [u8; 32],
    /// Whom it concerns.
    pub target: [u8; 32],
    /// Create: the nucleus name; add: the adder's name for the target;
    /// remove: empty.
    pub name: String,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Op({:?} at {})", self.action, self.lamport)
    }
}

const OP_FIXED: usize = NUCLEUS_ID_LEN + 8 + 1 + 32 + 32 + 1;

impl Op {
    /// Makes and signs an operation.
    pub fn sign(
        identity: &SigningKeyPair,
        nucleus: [u8; NUCLEUS_ID_LEN],
        lamport: u64,
        action: Action,
        target: [u8; 32],
        name: &str,
    ) -> Result<Self, Error> {
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::InvalidName("longer than 64 characters"));
        }
        let author = *identity.public().as_bytes();
        let mut bytes = Vec::with_capacity(OP_FIXED + name.len() + 64);
        bytes.extend_from_slice(&nucleus);
        bytes.extend_from_slice(&lamport.to_be_bytes());
        bytes.push(action.byte());
        bytes.extend_from_slice(&author);
        bytes.extend_from_slice(&target);
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name.as_bytes());
        let sig = identity.sign_nucleus(NucleusStatement::Op, &bytes);
        bytes.extend_from_slice(&sig.0);
        Ok(Self {
            nucleus,
            lamport,
            action,
            author,
            target,
            name: name.to_owned(),
            bytes,
        })
    }

    /// Decodes exactly one operation and verifies its signature over the
    /// bytes as received.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        Self::parse(bytes, true)
    }

    fn parse(bytes: &[u8], verify: bool) -> Result<Self, MessageError> {
        let mut r = bytes;
        let nucleus = take::<NUCLEUS_ID_LEN>(&mut r)?;
        let lamport = u64::from_be_bytes(take(&mut r)?);
        let [action] = take::<1>(&mut r)?;
        let action = Action::from_byte(action)?;
        let author = take::<32>(&mut r)?;
        let target = take::<32>(&mut r)?;
        let [len] = take::<1>(&mut r)?;
        let (name, rest) = r
            .split_at_checked(usize::from(len))
            .ok_or(MessageError::Malformed)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| MessageError::Malformed)?
            .to_owned();
        r = rest;
        let signature = Signature(take::<64>(&mut r)?);
        if !r.is_empty() {
            return Err(MessageError::Malformed);
        }
        if action == Action::Create && author != target {
            return Err(MessageError::Malformed);
        }
        if verify {
            let signed = bytes
                .get(..bytes.len().saturating_sub(64))
                .ok_or(MessageError::Malformed)?;
            let key = PublicKey::from_bytes(&author).map_err(|_| MessageError::BadSignature)?;
            key.verify_nucleus(NucleusStatement::Op, signed, &signature)
                .map_err(|_| MessageError::BadSignature)?;
        }
        Ok(Self {
            nucleus,
            lamport,
            action,
            author,
            target,
            name,
            bytes: bytes.to_vec(),
        })
    }

    /// The signed encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The operation's id: its signature.
    pub fn id(&self) -> [u8; 64] {
        let mut id = [0u8; 64];
        if let Some(sig) = self.bytes.last_chunk::<64>() {
            id = *sig;
        }
        id
    }

    fn order_key(&self) -> (u64, [u8; 64]) {
        (self.lamport, self.id())
    }
}

/// One part of a nucleus text.
///
/// ```text
/// nucleus [16] | author fingerprint [32] | then a text part:
/// message id [16] | sent_at u64 | part u16 | parts u16 | len u16 | bytes
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct GroupText {
    /// The nucleus.
    pub nucleus: [u8; NUCLEUS_ID_LEN],
    /// The identity fingerprint of the member who wrote it; a receiver
    /// accepts it only from the session of that member.
    pub author: [u8; 32],
    /// The text part; its message id is the author's.
    pub part: TextPart,
}

impl std::fmt::Debug for GroupText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupText({:?})", self.part)
    }
}

/// Bytes of a group text part before its text (version and kind included).
pub const GROUP_TEXT_OVERHEAD: usize = message::TEXT_PART_OVERHEAD + NUCLEUS_ID_LEN + 32;

impl GroupText {
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.nucleus);
        out.extend_from_slice(&self.author);
        message::encode_text_part(&self.part, out);
    }

    pub(crate) fn decode_from(r: &mut &[u8]) -> Result<Self, MessageError> {
        let nucleus = take::<NUCLEUS_ID_LEN>(r)?;
        let author = take::<32>(r)?;
        let part = message::decode_text_part(r)?;
        Ok(Self {
            nucleus,
            author,
            part,
        })
    }
}

/// A new member's introduction of itself to an existing member, sent to
/// its adder, who forwards it unchanged.
///
/// ```text
/// nucleus [16] | from [32] | to [32] | invitation_len u16
/// | invitation [invitation_len] | signature [64]
/// ```
///
/// `from` signs every byte before the signature (label
/// `enlace/v1/nucleus-introduction`); the invitation must be signed by the
/// same key (checked when it is accepted).
#[derive(Clone, PartialEq, Eq)]
pub struct Introduction {
    /// The nucleus.
    pub nucleus: [u8; NUCLEUS_ID_LEN],
    /// The new member's identity key.
    pub from: [u8; 32],
    /// The member it is for.
    pub to: [u8; 32],
    /// A signed invitation (binary form) made by `from`.
    pub invitation: Vec<u8>,
    bytes: Vec<u8>,
}

impl std::fmt::Debug for Introduction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Introduction(..)")
    }
}

impl Introduction {
    /// Makes and signs an introduction.
    pub fn sign(
        identity: &SigningKeyPair,
        nucleus: [u8; NUCLEUS_ID_LEN],
        to: [u8; 32],
        invitation: &[u8],
    ) -> Result<Self, Error> {
        if invitation.len() > MAX_INVITATION_BYTES {
            return Err(Error::Encode);
        }
        let from = *identity.public().as_bytes();
        let mut bytes = Vec::with_capacity(16 + 64 + 2 + invitation.len() + 64);
        bytes.extend_from_slice(&nucleus);
        bytes.extend_from_slice(&from);
        bytes.extend_from_slice(&to);
        bytes.extend_from_slice(&(invitation.len() as u16).to_be_bytes());
        bytes.extend_from_slice(invitation);
        let sig = identity.sign_nucleus(NucleusStatement::Introduction, &bytes);
        bytes.extend_from_slice(&sig.0);
        Ok(Self {
            nucleus,
            from,
            to,
            invitation: invitation.to_vec(),
            bytes,
        })
    }

    /// Decodes exactly one introduction and verifies its signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = bytes;
        let nucleus = take::<NUCLEUS_ID_LEN>(&mut r)?;
        let from = take::<32>(&mut r)?;
        let to = take::<32>(&mut r)?;
        let len = usize::from(u16::from_be_bytes(take(&mut r)?));
        if len > MAX_INVITATION_BYTES {
            return Err(MessageError::Malformed);
        }
        let (invitation, rest) = r.split_at_checked(len).ok_or(MessageError::Malformed)?;
        r = rest;
        let signature = Signature(take::<64>(&mut r)?);
        if !r.is_empty() {
            return Err(MessageError::Malformed);
        }
        let signed = bytes
            .get(..bytes.len().saturating_sub(64))
            .ok_or(MessageError::Malformed)?;
        let key = PublicKey::from_bytes(&from).map_err(|_| MessageError::BadSignature)?;
        key.verify_nucleus(NucleusStatement::Introduction, signed, &signature)
            .map_err(|_| MessageError::BadSignature)?;
        Ok(Self {
            nucleus,
            from,
            to,
            invitation: invitation.to_vec(),
            bytes: bytes.to_vec(),
        })
    }

    /// The signed encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], MessageError> {
    let (head, rest) = r.split_first_chunk::<N>().ok_or(MessageError::Malformed)?;
    *r = rest;
    Ok(*head)
}

/// A member as the fold sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The name its adder gave it (the nucleus name for the creator).
    pub suggested_name: String,
    /// Who added it (itself for the creator).
    pub added_by: [u8; 32],
    /// The order key of the operation that made it a member.
    pub since: (u64, [u8; 64]),
}

/// The member list that a set of operations yields.
///
/// Operations are applied in order of (lamport, id). `Create` counts only
/// from the nucleus's creator and only as the first applied operation;
/// `Add` and `Remove` count only when their author is a member at that
/// point of the order. The last counted operation about a member decides
/// whether it is in (last writer wins per member). The result depends on
/// the set, not on the order it was received in.
pub fn fold(creator: Option<[u8; 32]>, ops: &[Op]) -> BTreeMap<[u8; 32], Member> {
    fold_ever(creator, ops).0
}

/// The fold, and every key that was a member at some point of it.
fn fold_ever(
    creator: Option<[u8; 32]>,
    ops: &[Op],
) -> (BTreeMap<[u8; 32], Member>, BTreeSet<[u8; 32]>) {
    let mut ever = BTreeSet::new();
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|op| op.order_key());
    let mut members: BTreeMap<[u8; 32], Member> = BTreeMap::new();
    let mut created = false;
    for op in sorted {
        match op.action {
            Action::Create => {
                if !created && Some(op.author) == creator && members.is_empty() {
                    created = true;
                    ever.insert(op.author);
                    members.insert(
                        op.author,
                        Member {
                            suggested_name: op.name.clone(),
                            added_by: op.author,
                            since: op.order_key(),
                        },
                    );
                }
            }
            Action::Add => {
                if members.contains_key(&op.author)
                    && !members.contains_key(&op.target)
                    && members.len() < MAX_MEMBERS
                {
                    ever.insert(op.target);
                    members.insert(
                        op.target,
                        Member {
                            suggested_name: op.name.clone(),
                            added_by: op.author,
                            since: op.order_key(),
                        },
                    );
                }
            }
            Action::Remove => {
                if members.contains_key(&op.author) {
                    members.remove(&op.target);
                }
            }
        }
    }
    (members, ever)
}

/// Whether an operation can count in a fold whose ever-members are
/// `ever`: its author was a member at some point, or it is the pinned
/// creator's `create`.
fn placed(op: &Op, creator: Option<[u8; 32]>, ever: &BTreeSet<[u8; 32]>) -> bool {
    ever.contains(&op.author) || (op.action == Action::Create && creator == Some(op.author))
}

/// A (group message author, message id) pair seen.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone, PartialEq, Eq)]
pub struct SeenGroupMessage {
    /// The author's identity fingerprint.
    pub author: [u8; 32],
    /// The author's message id.
    pub message_id: [u8; 16],
}

/// A nucleus this profile is in, was in, or is being added to.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Nucleus {
    /// The nucleus id (random, chosen by the creator).
    pub id: [u8; NUCLEUS_ID_LEN],
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

/// `Debug` that names the type only: these hold plaintext and keys.
macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($t), "(..)"))
            }
        }
    )*};
}

opaque_debug!(Nucleus, SeenGroupMessage, NucleusTask, IntroducedContact);

impl Nucleus {
    /// The decoded operations. Stored ones were verified when received
    /// and the store is authenticated, so they are not verified again.
    pub fn decoded_ops(&self) -> Vec<Op> {
        self.ops
            .iter()
            .filter_map(|b| Op::parse(b, false).ok())
            .collect()
    }

    /// The current member list.
    pub fn members(&self) -> BTreeMap<[u8; 32], Member> {
        fold(self.creator, &self.decoded_ops())
    }

    fn remember(&mut self, seen: SeenGroupMessage) -> bool {
        if self.seen.contains(&seen) {
            return false;
        }
        if self.seen.len() >= SEEN_GROUP_KEPT {
            let excess = self.seen.len() + 1 - SEEN_GROUP_KEPT;
            self.seen.drain(..excess);
        }
        self.seen.push(seen);
        true
    }
}

/// Network work that receiving decided on, done by the driver.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone, PartialEq, Eq)]
pub enum NucleusTask {
    /// We are new in `nucleus` and have no session with `member`: make an
    /// invitation and send it, in a signed introduction, to our adder `via`.
    Introduce {
        /// The nucleus.
        nucleus: [u8; NUCLEUS_ID_LEN],
        /// The member to introduce ourselves to.
        member: [u8; 32],
        /// Our adder's identity key.
        via: [u8; 32],
    },
    /// A member's introduction reached us: accept its invitation.
    Accept {
        /// The nucleus.
        nucleus: [u8; NUCLEUS_ID_LEN],
        /// The introduction, as received.
        introduction: Vec<u8>,
        /// The contact who forwarded it (the new member's adder).
        via: u64,
    },
}

/// A contact made through a nucleus introduction (or an invitation made
/// for one, while `pending`).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone)]
pub struct IntroducedContact {
    /// The contact's local id (the invitation's while pending).
    pub local: u64,
    /// Whether `local` is still an invitation id.
    pub pending: bool,
    /// The identity key of the member introduced.
    pub member: [u8; 32],
    /// The identity key of the member who introduced it.
    pub by: [u8; 32],
    /// The nucleus.
    pub nucleus: [u8; NUCLEUS_ID_LEN],
}

/// The identity fingerprint bytes of an identity key.
pub fn fingerprint(key: &[u8; 32]) -> Option<[u8; 32]> {
    PublicKey::from_bytes(key)
        .ok()
        .map(|k| k.identity_fingerprint().0)
}

fn own_key(p: &Profile) -> [u8; 32] {
    *SigningKeyPair::from_secret_bytes(&p.identity)
        .public()
        .as_bytes()
}

/// The contact with this identity key that we can write to, if any.
fn contact_for(p: &Profile, key: &[u8; 32]) -> Option<u64> {
    p.contacts
        .iter()
        .find(|c| &c.identity_key == key && c.send_to.is_some())
        .map(|c| c.id)
}

fn has_contact(p: &Profile, key: &[u8; 32]) -> bool {
    p.contacts.iter().any(|c| &c.identity_key == key)
}

/// The nucleus with this (case-insensitive) name.
pub fn find<'a>(p: &'a Profile, name: &str) -> Result<&'a Nucleus, Error> {
    p.nuclei
        .iter()
        .find(|n| n.name.to_lowercase() == name.to_lowercase())
        .ok_or_else(|| Error::UnknownNucleus(name.to_owned()))
}

fn find_index(p: &Profile, name: &str) -> Result<usize, Error> {
    p.nuclei
        .iter()
        .position(|n| n.name.to_lowercase() == name.to_lowercase())
        .ok_or_else(|| Error::UnknownNucleus(name.to_owned()))
}

fn unique_nucleus_name(p: &Profile, wanted: &str) -> String {
    let base: String = clean_name(wanted, "nucleus");
    let taken = |n: &str| {
        p.nuclei
            .iter()
            .any(|x| x.name.to_lowercase() == n.to_lowercase())
    };
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// A contact name not used yet, for an introduced member.
pub(crate) fn unique_contact_name(p: &Profile, wanted: &str) -> String {
    let base = wanted.chars().take(60).collect::<String>();
    if p.contact(&base).is_none() {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| p.contact(n).is_none())
        .unwrap_or(base)
}

/// A name received from someone else, made fit for a local name: control
/// characters and slashes replaced, at most 30 characters.
fn clean_name(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' { '-' } else { c })
        .take(30)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned
    }
}

/// The local name for an introduced member: `<nucleus>/<suggested>`.
pub(crate) fn introduced_name(p: &Profile, nucleus: &Nucleus, member: &[u8; 32]) -> String {
    let suggested = nucleus
        .members()
        .get(member)
        .map(|m| m.suggested_name.clone())
        .unwrap_or_default();
    let suggested = if nucleus.creator.as_ref() == Some(member) {
        "founder".to_owned()
    } else {
        clean_name(&suggested, "member")
    };
    unique_contact_name(p, &format!("{}/{}", nucleus.name, suggested))
}

/// `nucleus create`: a new nucleus with us as its only member.
pub fn create(p: &mut Profile, name: &str, rng: &mut impl CryptoRng) -> Result<String, Error> {
    if p.nuclei
        .iter()
        .any(|n| n.name.to_lowercase() == name.to_lowercase())
    {
        return Err(Error::NucleusExists(name.to_owned()));
    }
    if p.nuclei.len() >= MAX_NUCLEI {
        return Err(Error::NucleusLimit(format!("at most {MAX_NUCLEI} nuclei")));
    }
    let mut id = [0u8; NUCLEUS_ID_LEN];
    rng.fill_bytes(&mut id);
    let identity = SigningKeyPair::from_secret_bytes(&p.identity);
    let me = *identity.public().as_bytes();
    let op = Op::sign(&identity, id, 1, Action::Create, me, name)?;
    p.nuclei.push(Nucleus {
        id,
        name: name.to_owned(),
        creator: Some(me),
        ops: vec![op.as_bytes().to_vec()],
        lamport: 1,
        seen: Vec::new(),
        received: Vec::new(),
    });
    Ok(name.to_owned())
}

/// Makes, records and sends a new operation in nucleus `index`: every
/// member after it (and `extra_recipients`) gets it; the `welcome` member
/// gets every operation instead.
#[allow(clippy::too_many_arguments)]
fn apply_own_op(
    p: &mut Profile,
    index: usize,
    action: Action,
    target: [u8; 32],
    name: &str,
    extra_recipients: &[[u8; 32]],
    welcome: Option<[u8; 32]>,
    rng: &mut impl CryptoRng,
    seal: &mut impl engine::Seal,
) -> Result<(), Error> {
    let identity = SigningKeyPair::from_secret_bytes(&p.identity);
    let me = *identity.public().as_bytes();
    let nucleus = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let ops = nucleus.decoded_ops();
    if ops.len() >= MAX_OPS || ops.iter().filter(|o| o.author == me).count() >= MAX_OPS_PER_AUTHOR {
        return Err(Error::NucleusLimit(format!(
            "at most {MAX_OPS} membership changes per nucleus, {MAX_OPS_PER_AUTHOR} by one member"
        )));
    }
    let lamport = nucleus
        .lamport
        .checked_add(1)
        .ok_or_else(|| Error::NucleusLimit("its change counter is exhausted".into()))?;
    let op = Op::sign(&identity, nucleus.id, lamport, action, target, name)?;
    let nucleus = p
        .nuclei
        .get_mut(index)
        .ok_or(Error::BrokenState("nucleus"))?;
    nucleus.lamport = lamport;
    nucleus.ops.push(op.as_bytes().to_vec());
    let members = nucleus.members();
    let all_ops = nucleus.ops.clone();
    // Tell everyone who is a member now (the removed one too, once).
    let mut to: Vec<[u8; 32]> = members.keys().copied().collect();
    to.extend_from_slice(extra_recipients);
    to.retain(|k| *k != me);
    to.sort_unstable();
    to.dedup();
    for key in to {
        let Some(contact) = contact_for(p, &key) else {
            continue;
        };
        if Some(key) == welcome {
            // The new member gets every operation: the member list and how
            // it came about, nothing that was said. The add naming it goes
            // first: only that makes its client keep an unknown nucleus.
            let own = op.as_bytes();
            let others = all_ops.iter().map(Vec::as_slice).filter(|b| *b != own);
            for bytes in std::iter::once(own).chain(others) {
                queue_plain(
                    p,
                    contact,
                    &AppMessage::NucleusOp(
                        Op::decode(bytes).map_err(|_| Error::BrokenState("nucleus"))?,
                    ),
                    rng,
                    seal,
                )?;
            }
        } else {
            queue_plain(p, contact, &AppMessage::NucleusOp(op.clone()), rng, seal)?;
        }
    }
    Ok(())
}

fn queue_plain(
    p: &mut Profile,
    contact: u64,
    msg: &AppMessage,
    rng: &mut impl CryptoRng,
    seal: &mut impl engine::Seal,
) -> Result<(), Error> {
    engine::queue_control(p, contact, msg, [0; 16], rng, seal)
}

fn check_member_contact<'a>(p: &'a Profile, contact: &str) -> Result<&'a Contact, Error> {
    let c = p
        .contact(contact)
        .ok_or_else(|| Error::UnknownContact(contact.to_owned()))?;
    engine::check_can_send(c)?;
    Ok(c)
}

/// `nucleus add`: adds a contact; it gets the operations so far (never
/// the messages), the others get the new operation.
pub fn add(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl engine::Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let me = own_key(p);
    let c = check_member_contact(p, contact)?;
    if c.send_to.is_none() {
        return Err(Error::NoRoute(c.name.clone()));
    }
    let (target, contact_name) = (c.identity_key, c.name.clone());
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let members = n.members();
    let nucleus_name = n.name.clone();
    if !members.contains_key(&me) {
        return Err(Error::NotMember(nucleus_name));
    }
    if members.contains_key(&target) {
        return Err(Error::AlreadyMember(contact_name, nucleus_name));
    }
    if members.len() >= MAX_MEMBERS {
        return Err(Error::NucleusLimit(format!(
            "at most {MAX_MEMBERS} members"
        )));
    }
    apply_own_op(
        p,
        index,
        Action::Add,
        target,
        &contact_name,
        &[],
        Some(target),
        rng,
        &mut seal,
    )?;
    Ok((nucleus_name, contact_name))
}

/// `nucleus remove`: removes a member; it is told once, then nothing more.
pub fn remove(
    p: &mut Profile,
    nucleus: &str,
    contact: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl engine::Seal,
) -> Result<(String, String), Error> {
    let index = find_index(p, nucleus)?;
    let me = own_key(p);
    let c = p
        .contact(contact)
        .ok_or_else(|| Error::UnknownContact(contact.to_owned()))?;
    let (target, contact_name) = (c.identity_key, c.name.clone());
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let members = n.members();
    let nucleus_name = n.name.clone();
    if !members.contains_key(&me) {
        return Err(Error::NotMember(nucleus_name));
    }
    if !members.contains_key(&target) {
        return Err(Error::NotAMember(contact_name, nucleus_name));
    }
    apply_own_op(
        p,
        index,
        Action::Remove,
        target,
        "",
        &[target],
        None,
        rng,
        &mut seal,
    )?;
    Ok((nucleus_name, contact_name))
}

/// `nucleus leave`: removes ourselves, tells the others, and deletes the
/// nucleus locally.
pub fn leave(
    p: &mut Profile,
    nucleus: &str,
    rng: &mut impl CryptoRng,
    mut seal: impl engine::Seal,
) -> Result<String, Error> {
    let index = find_index(p, nucleus)?;
    let me = own_key(p);
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let name = n.name.clone();
    let before: Vec<[u8; 32]> = n.members().keys().copied().collect();
    if before.contains(&me) {
        apply_own_op(
            p,
            index,
            Action::Remove,
            me,
            "",
            &before,
            None,
            rng,
            &mut seal,
        )?;
    }
    let gone = p.nuclei.remove(index);
    p.nucleus_tasks.retain(|t| match t {
        NucleusTask::Introduce { nucleus, .. } | NucleusTask::Accept { nucleus, .. } => {
            *nucleus != gone.id
        }
    });
    Ok(name)
}

/// What `nucleus send` did.
#[derive(Debug)]
pub struct GroupSent {
    /// The message id.
    pub message_id: [u8; 16],
    /// Members it was sealed for.
    pub sent_to: Vec<String>,
    /// Members it could not be sealed for (no session yet, or an identity
    /// key that changed), by suggested or contact name.
    pub skipped: Vec<String>,
}

/// `nucleus send`: splits the text once and seals every part for every
/// other current member (fan-out).
pub fn send_text(
    p: &mut Profile,
    nucleus: &str,
    text: &str,
    now: u64,
    max_plaintext: usize,
    rng: &mut impl CryptoRng,
    mut seal: impl engine::Seal,
) -> Result<GroupSent, Error> {
    if text.trim().is_empty() {
        return Err(Error::EmptyMessage);
    }
    let index = find_index(p, nucleus)?;
    let me = own_key(p);
    let my_fp = fingerprint(&me).ok_or(Error::BrokenState("identity"))?;
    let n = p.nuclei.get(index).ok_or(Error::BrokenState("nucleus"))?;
    let members = n.members();
    let id = n.id;
    if !members.contains_key(&me) {
        return Err(Error::NotMember(n.name.clone()));
    }
    let mut message_id = [0u8; 16];
    rng.fill_bytes(&mut message_id);
    let room = max_plaintext.saturating_sub(GROUP_TEXT_OVERHEAD - message::TEXT_PART_OVERHEAD);
    let parts = message::split_text(text, message_id, now, room)
        .map_err(|e| Error::MessageTooLong(e.to_string()))?;
    let parts: Vec<Vec<u8>> = parts
        .iter()
        .filter_map(|b| match AppMessage::decode(b) {
            Ok(AppMessage::Text(part)) => Some(
                AppMessage::GroupText(GroupText {
                    nucleus: id,
                    author: my_fp,
                    part,
                })
                .encode(),
            ),
            _ => None,
        })
        .collect();
    let mut sent_to = Vec::new();
    let mut skipped = Vec::new();
    for (key, member) in &members {
        if *key == me {
            continue;
        }
        let contact = p
            .contacts
            .iter()
            .find(|c| &c.identity_key == key && c.send_to.is_some());
        let Some(contact) = contact else {
            skipped.push(clean_name(&member.suggested_name, "member"));
            continue;
        };
        if contact.verification() == Verification::KeyChanged {
            skipped.push(contact.name.clone());
            continue;
        }
        let cid = contact.id;
        sent_to.push(contact.name.clone());
        let mut entries = Vec::with_capacity(parts.len());
        let c = p
            .contacts
            .iter_mut()
            .find(|c| c.id == cid)
            .ok_or(Error::BrokenState("contact"))?;
        for part in &parts {
            let mut envelope_id = [0u8; 16];
            rng.fill_bytes(&mut envelope_id);
            let (envelope, relay) = seal(c, part, envelope_id)?;
            entries.push(OutboxEntry {
                contact: cid,
                envelope_id,
                message_id,
                relay,
                envelope,
                control: false,
            });
        }
        p.outbox.extend(entries);
        p.sent.push(SentMessage {
            contact: cid,
            message_id,
            sent_at: now,
            status: Status::Queued,
            parts: parts.len() as u16,
        });
    }
    Ok(GroupSent {
        message_id,
        sent_to,
        skipped,
    })
}

/// Applies a nucleus message received from contact `peer`.
pub fn handle(p: &mut Profile, peer: u64, msg: AppMessage, now: u64) -> Received {
    match msg {
        AppMessage::NucleusOp(op) => Received::Forward(handle_op(p, peer, op)),
        AppMessage::GroupText(text) => handle_group_text(p, peer, text, now),
        AppMessage::Introduction(intro) => Received::Forward(handle_introduction(p, peer, intro)),
        _ => Received::Nothing,
    }
}

/// A verified operation from `peer`: store it if new and acceptable,
/// re-fold, and return what to forward (contact id, plaintext).
///
/// An unknown nucleus is kept only from a welcome: an `add` naming us,
/// signed by the contact it came from. An operation is stored only if its
/// clock is within [`MAX_LAMPORT_JUMP`] of the largest seen and its author
/// has fewer than [`MAX_OPS_PER_AUTHOR`] operations; one whose author was
/// never a member in the fold waits among at most [`MAX_UNPLACED_OPS`]
/// and is forwarded only once its author's `add` places it.
pub fn handle_op(p: &mut Profile, peer: u64, op: Op) -> Vec<(u64, Vec<u8>)> {
    let me = own_key(p);
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Vec::new();
    };
    let welcome = op.action == Action::Add && op.target == me && op.author == peer_key;
    let index = match p.nuclei.iter().position(|n| n.id == op.nucleus) {
        Some(i) => i,
        None => {
            if !welcome || contact_for(p, &peer_key) != Some(peer) || p.nuclei.len() >= MAX_NUCLEI {
                return Vec::new();
            }
            let name = unique_nucleus_name(p, "nucleus");
            p.nuclei.push(Nucleus {
                id: op.nucleus,
                name,
                creator: None,
                ops: Vec::new(),
                lamport: op.lamport,
                seen: Vec::new(),
                received: Vec::new(),
            });
            p.nuclei.len() - 1
        }
    };
    let Some(n) = p.nuclei.get_mut(index) else {
        return Vec::new();
    };
    let ops = n.decoded_ops();
    let (before, ever) = fold_ever(n.creator, &ops);
    if before.contains_key(&me) {
        // Once in, take changes only from current members: a removed
        // member cannot push operations to us after we processed its
        // removal.
        if !before.contains_key(&peer_key) {
            return Vec::new();
        }
    } else if !welcome
        && !ops
            .iter()
            .any(|o| o.action == Action::Add && o.target == me && o.author == peer_key)
    {
        // While outside (being added), only our adder's welcome counts.
        return Vec::new();
    }
    // A clock far ahead of everything seen is refused: it would let one
    // member sort its operations after every later one (or wrap the clock).
    if op.lamport > n.lamport.saturating_add(MAX_LAMPORT_JUMP) {
        return Vec::new();
    }
    let id = op.id();
    if ops.iter().any(|o| o.id() == id)
        || ops.iter().filter(|o| o.author == op.author).count() >= MAX_OPS_PER_AUTHOR
    {
        return Vec::new();
    }
    // The creator is pinned by the first `Create` received: from our
    // adder, who vouches for the nucleus it adds us to.
    let pinned_now = op.action == Action::Create && n.creator.is_none();
    let creator = if pinned_now {
        Some(op.author)
    } else {
        n.creator
    };
    let unplaced: Vec<[u8; 64]> = ops
        .iter()
        .filter(|o| !placed(o, creator, &ever))
        .map(Op::id)
        .collect();
    if placed(&op, creator, &ever) {
        if ops.len() - unplaced.len() >= MAX_OPS {
            return Vec::new();
        }
    } else if unplaced.len() >= MAX_UNPLACED_OPS {
        // Make room: the oldest waiting operation goes.
        if let Some(oldest) = unplaced.first() {
            n.ops.retain(|b| b.last_chunk::<64>() != Some(oldest));
        }
    }
    n.creator = creator;
    n.ops.push(op.as_bytes().to_vec());
    let ops = n.decoded_ops();
    let (after, ever) = fold_ever(n.creator, &ops);
    // Newly placed: this operation, and waiting ones its arrival placed.
    let newly: Vec<Op> = ops
        .into_iter()
        .filter(|o| placed(o, n.creator, &ever) && (o.id() == id || unplaced.contains(&o.id())))
        .collect();
    for o in &newly {
        n.lamport = n.lamport.max(o.lamport);
    }
    let nucleus_id = n.id;
    if pinned_now && n.ops.len() > 1 {
        // The create arrived after other operations: take its name now.
        n.name = String::new();
        let name = unique_nucleus_name(p, &op.name);
        if let Some(n) = p.nuclei.get_mut(index) {
            n.name = name;
        }
    }
    // Forward to every current member we can write to, except the
    // operation's author, the one who sent it and ourselves.
    let mut out = Vec::new();
    if after.contains_key(&me) {
        for o in &newly {
            let plain = AppMessage::NucleusOp(o.clone()).encode();
            for key in after.keys() {
                if *key == me || *key == o.author || (o.id() == id && *key == peer_key) {
                    continue;
                }
                if let Some(c) = contact_for(p, key) {
                    out.push((c, plain.clone()));
                }
            }
        }
    }
    plan_introductions(p, nucleus_id, &after, me);
    if before.contains_key(&me) && !after.contains_key(&me) {
        p.nucleus_tasks.retain(|t| match t {
            NucleusTask::Introduce { nucleus, .. } | NucleusTask::Accept { nucleus, .. } => {
                *nucleus != nucleus_id
            }
        });
    }
    out
}

/// After a fold: we introduce ourselves (through our adder) to every
/// member added before us that we have no session with. Members added
/// after us introduce themselves to us.
fn plan_introductions(
    p: &mut Profile,
    nucleus: [u8; NUCLEUS_ID_LEN],
    members: &BTreeMap<[u8; 32], Member>,
    me: [u8; 32],
) {
    let Some(mine) = members.get(&me) else {
        return;
    };
    let via = mine.added_by;
    if via == me || contact_for(p, &via).is_none() {
        return;
    }
    for (key, member) in members {
        if *key == me || member.since >= mine.since || has_contact(p, key) {
            continue;
        }
        let planned = p.nucleus_tasks.iter().any(|t| {
            matches!(t, NucleusTask::Introduce { nucleus: n, member: m, .. } if *n == nucleus && m == key)
        }) || p
            .introduced
            .iter()
            .any(|i| i.nucleus == nucleus && i.member == *key);
        if planned || p.nucleus_tasks.len() >= MAX_TASKS {
            continue;
        }
        p.nucleus_tasks.push(NucleusTask::Introduce {
            nucleus,
            member: *key,
            via,
        });
    }
}

/// A group text part from `peer`: accepted only if its author is `peer`
/// and a current member, and it was not seen before.
pub fn handle_group_text(p: &mut Profile, peer: u64, text: GroupText, now: u64) -> Received {
    let me = own_key(p);
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Received::Nothing;
    };
    if fingerprint(&peer_key) != Some(text.author) {
        return Received::Nothing; // re-attribution: not the session's peer
    }
    let Some(n) = p.nuclei.iter_mut().find(|n| n.id == text.nucleus) else {
        return Received::Nothing;
    };
    let members = n.members();
    if !members.contains_key(&me) || !members.contains_key(&peer_key) {
        return Received::Nothing;
    }
    let key = SeenGroupMessage {
        author: text.author,
        message_id: text.part.message_id,
    };
    if n.seen.contains(&key) {
        return Received::Nothing;
    }
    let message_id = text.part.message_id;
    match message::add_part(p, peer, text.part) {
        Some(done) => {
            let Some(n) = p.nuclei.iter_mut().find(|n| n.id == text.nucleus) else {
                return Received::Nothing;
            };
            n.remember(key.clone());
            if n.received.len() >= SEEN_GROUP_KEPT {
                n.received.remove(0);
            }
            n.received.push(key);
            p.history.push(crate::profile::HistoryEntry {
                contact: peer,
                direction: crate::profile::Direction::In,
                message_id: done.message_id,
                sent_at: done.sent_at,
                stored_at: now,
                text: done.text,
                shown: false,
            });
            Received::Text(message_id)
        }
        None => Received::Part,
    }
}

/// An introduction from `peer`: forward it if it is for another member
/// (we are the adder), or queue accepting it if it is for us. Either way
/// `from` must be a current member whose adder is the one forwarding it
/// to us (or us, when we forward); anything else is dropped, not kept.
pub fn handle_introduction(p: &mut Profile, peer: u64, intro: Introduction) -> Vec<(u64, Vec<u8>)> {
    let me = own_key(p);
    let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
        return Vec::new();
    };
    let Some(n) = p.nuclei.iter().find(|n| n.id == intro.nucleus) else {
        return Vec::new();
    };
    let members = n.members();
    if !members.contains_key(&me) || !members.contains_key(&peer_key) {
        return Vec::new();
    }
    if intro.to == me {
        if has_contact(p, &intro.from)
            || intro.from == me
            || members.get(&intro.from).map(|m| m.added_by) != Some(peer_key)
        {
            return Vec::new();
        }
        // One waiting introduction per member: a new one replaces none.
        let dup = p.nucleus_tasks.iter().any(|t| {
            matches!(t, NucleusTask::Accept { nucleus, introduction, .. }
                if *nucleus == intro.nucleus
                    && Introduction::decode(introduction).is_ok_and(|i| i.from == intro.from))
        });
        if !dup && p.nucleus_tasks.len() < MAX_TASKS {
            p.nucleus_tasks.push(NucleusTask::Accept {
                nucleus: intro.nucleus,
                introduction: intro.as_bytes().to_vec(),
                via: peer,
            });
        }
        return Vec::new();
    }
    // We forward only what the new member itself sent us, to a member.
    if intro.from != peer_key
        || members.get(&intro.from).map(|m| m.added_by) != Some(me)
        || !members.contains_key(&intro.to)
    {
        return Vec::new();
    }
    match contact_for(p, &intro.to) {
        Some(c) => vec![(c, AppMessage::Introduction(intro).encode())],
        None => Vec::new(),
    }
}

/// The nucleus (name) a history entry came from, if any.
pub fn label_for(p: &Profile, contact: u64, message_id: &[u8; 16]) -> Option<String> {
    let key = p.contact_by_id(contact)?.identity_key;
    let fp = fingerprint(&key)?;
    p.nuclei
        .iter()
        .find(|n| {
            n.received
                .iter()
                .any(|s| s.author == fp && &s.message_id == message_id)
        })
        .map(|n| n.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::RemoteMailbox;

    fn key(seed: u8) -> SigningKeyPair {
        SigningKeyPair::from_secret_bytes(&[seed; 32])
    }

    fn pk(seed: u8) -> [u8; 32] {
        *key(seed).public().as_bytes()
    }

    const N: [u8; 16] = [7; 16];

    fn op(seed: u8, lamport: u64, action: Action, target: u8) -> Op {
        Op::sign(&key(seed), N, lamport, action, pk(target), "x").unwrap()
    }

    #[test]
    fn op_round_trip_and_tamper() {
        let o = op(1, 3, Action::Add, 2);
        let decoded = Op::decode(o.as_bytes()).unwrap();
        assert_eq!(decoded, o);
        for i in 0..o.as_bytes().len() {
            let mut b = o.as_bytes().to_vec();
            b[i] ^= 1;
            assert!(Op::decode(&b).is_err(), "flip at {i} accepted");
        }
        for cut in 0..o.as_bytes().len() {
            assert!(Op::decode(&o.as_bytes()[..cut]).is_err());
        }
        let mut longer = o.as_bytes().to_vec();
        longer.push(0);
        assert!(Op::decode(&longer).is_err());
        // A create naming someone else is refused.
        let bad = Op::sign(&key(1), N, 1, Action::Create, pk(2), "n").unwrap();
        assert_eq!(Op::decode(bad.as_bytes()), Err(MessageError::Malformed));
    }

    #[test]
    fn introduction_round_trip_and_signature() {
        let i = Introduction::sign(&key(3), N, pk(4), b"invitation").unwrap();
        assert_eq!(Introduction::decode(i.as_bytes()).unwrap(), i);
        let mut b = i.as_bytes().to_vec();
        b[20] ^= 1;
        assert_eq!(Introduction::decode(&b), Err(MessageError::BadSignature));
        assert!(Introduction::decode(&i.as_bytes()[..40]).is_err());
        // An op signature does not verify as an introduction.
        let o = op(3, 1, Action::Add, 4);
        assert!(Introduction::decode(o.as_bytes()).is_err());
    }

    fn members(ops: &[Op]) -> Vec<[u8; 32]> {
        fold(Some(pk(1)), ops).keys().copied().collect()
    }

    #[test]
    fn fold_rules() {
        let create = op(1, 1, Action::Create, 1);
        let add2 = op(1, 2, Action::Add, 2);
        let add3 = op(2, 3, Action::Add, 3);
        let mut expect = vec![pk(1), pk(2), pk(3)];
        expect.sort();
        assert_eq!(
            members(&[add3.clone(), add2.clone(), create.clone()]),
            expect
        );
        // A non-member's add does not count.
        let stranger = op(9, 4, Action::Add, 8);
        assert_eq!(
            members(&[create.clone(), add2.clone(), add3.clone(), stranger]).len(),
            3
        );
        // A removed member cannot re-add itself or add others later.
        let rm2 = op(1, 4, Action::Remove, 2);
        let readd = op(2, 5, Action::Add, 2);
        let add5 = op(2, 6, Action::Add, 5);
        let m = members(&[create.clone(), add2.clone(), rm2, readd, add5]);
        assert_eq!(m, vec![pk(1)]);
        // A create by someone other than the pinned creator is ignored.
        let other_create = op(2, 0, Action::Create, 2);
        assert_eq!(
            members(&[other_create, create.clone(), add2.clone()]).len(),
            2
        );
        // Leaving.
        let leave = op(2, 3, Action::Remove, 2);
        assert_eq!(members(&[create, add2, leave]), vec![pk(1)]);
    }

    fn permutations(items: &[Op]) -> Vec<Vec<Op>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut all = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let first = rest.remove(i);
            for mut p in permutations(&rest) {
                p.insert(0, first.clone());
                all.push(p);
            }
        }
        all
    }

    /// Concurrent changes (same Lamport clocks, conflicting adds and
    /// removes) delivered to profiles in every order converge.
    #[test]
    fn every_delivery_order_converges() {
        let ops = vec![
            op(1, 1, Action::Create, 1),
            op(1, 2, Action::Add, 2),
            op(1, 3, Action::Add, 3),
            // Concurrent: 2 removes 3 while 3 adds 4 and 1 removes 2.
            op(2, 4, Action::Remove, 3),
            op(3, 4, Action::Add, 4),
            op(1, 4, Action::Remove, 2),
            op(1, 5, Action::Add, 5),
        ];
        let reference = fold(Some(pk(1)), &ops);
        let mut count = 0;
        for order in permutations(&ops) {
            // Feed through the real receive path of a profile: member 5's
            // view, received op by op from a peer (its adder 1), after
            // the welcome's first operation (the add naming 5, which is
            // what makes it keep the nucleus) and then every operation
            // again, in every order.
            let mut p = profile_of(5, &[1]);
            handle_op(&mut p, 1, ops[6].clone());
            assert_eq!(p.nuclei.len(), 1);
            for o in &order {
                handle_op(&mut p, 1, o.clone());
            }
            let n = &p.nuclei[0];
            assert_eq!(n.members(), reference, "order {count}");
            count += 1;
        }
        assert_eq!(count, 5040);
    }

    /// A profile for identity `seed` with contacts (identity seeds) that
    /// it can write to; contact ids are the seeds.
    fn profile_of(seed: u8, contacts: &[u8]) -> Profile {
        let mut p = Profile::new(&mut rand::rng(), 0);
        p.identity = [seed; 32];
        for &c in contacts {
            p.contacts.push(Contact {
                id: u64::from(c),
                name: format!("c{c}"),
                identity_key: pk(c),
                verified_key: None,
                key_changed: false,
                session: Vec::new(),
                send_to: Some(RemoteMailbox {
                    relay: "relay".into(),
                    send_id: [c; 16],
                    sender_key: [c; 32],
                }),
                receive_on: None,
                added_at: 0,
            });
        }
        p
    }

    /// The sealing stand-in: the "envelope" is the plaintext.
    fn clear(_: &mut Contact, pt: &[u8], _: [u8; 16]) -> Result<(Vec<u8>, String), Error> {
        Ok((pt.to_vec(), "relay".into()))
    }

    fn deliver(to: &mut Profile, from: u64, outbox: &[OutboxEntry]) -> Vec<Received> {
        outbox
            .iter()
            .map(|e| {
                let msg = AppMessage::decode(&e.envelope).unwrap();
                handle(to, from, msg, 0)
            })
            .collect()
    }

    fn take_outbox(p: &mut Profile, contact: u64) -> Vec<OutboxEntry> {
        let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut p.outbox)
            .into_iter()
            .partition(|e| e.contact == contact);
        p.outbox = rest;
        mine
    }

    #[test]
    fn group_text_refuses_reattribution_replay_and_strangers() {
        // 1 creates, adds 2 and 3 (all know each other).
        let mut a = profile_of(1, &[2, 3]);
        let mut b = profile_of(2, &[1, 3]);
        let mut c = profile_of(3, &[1, 2]);
        create(&mut a, "barrio", &mut rand::rng()).unwrap();
        add(&mut a, "barrio", "c2", &mut rand::rng(), clear).unwrap();
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        add(&mut a, "barrio", "c3", &mut rand::rng(), clear).unwrap();
        deliver(&mut c, 1, &take_outbox(&mut a, 3));
        // b learns of 3 from a.
        let fwd = deliver(&mut b, 1, &take_outbox(&mut a, 2));
        assert!(matches!(&fwd[..], [Received::Forward(_)]));
        assert_eq!(b.nuclei[0].members().len(), 3);
        assert_eq!(c.nuclei[0].members().len(), 3);
        assert_eq!(b.nuclei[0].name, "barrio");

        let sent = send_text(
            &mut a,
            "barrio",
            "asamblea",
            10,
            1900,
            &mut rand::rng(),
            clear,
        )
        .unwrap();
        assert_eq!(sent.sent_to.len(), 2);
        let to_b = take_outbox(&mut a, 2);
        let got = deliver(&mut b, 1, &to_b);
        assert_eq!(got, vec![Received::Text(sent.message_id)]);
        assert_eq!(
            label_for(&b, 1, &sent.message_id).as_deref(),
            Some("barrio")
        );
        // The same message again (replayed in a fresh envelope): dropped.
        assert_eq!(deliver(&mut b, 1, &to_b), vec![Received::Nothing]);
        // c re-sends a's message to b as if a wrote it: refused, since
        // the author is not the session's peer.
        assert_eq!(deliver(&mut b, 3, &to_b), vec![Received::Nothing]);
        // A stranger (not a contact id b knows) gets nothing in.
        assert_eq!(deliver(&mut b, 99, &to_b), vec![Received::Nothing]);
    }

    #[test]
    fn removed_member_gets_nothing_after_and_cannot_readd_itself() {
        let mut a = profile_of(1, &[2, 3]);
        let mut b = profile_of(2, &[1, 3]);
        let mut c = profile_of(3, &[1, 2]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
        deliver(&mut c, 1, &take_outbox(&mut a, 3));
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        remove(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
        // 3 is told once, b too.
        deliver(&mut c, 1, &take_outbox(&mut a, 3));
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        assert!(!c.nuclei[0].members().contains_key(&pk(3)));
        assert_eq!(b.nuclei[0].members().len(), 2);
        // Sending now reaches only b.
        let sent = send_text(&mut a, "n", "sin 3", 10, 1900, &mut rand::rng(), clear).unwrap();
        assert_eq!(sent.sent_to, vec!["c2".to_string()]);
        assert!(a.outbox.iter().all(|e| e.contact == 2));
        // c is out: it cannot send, and its forged re-add is refused by b.
        assert!(matches!(
            send_text(&mut c, "n", "hola", 10, 1900, &mut rand::rng(), clear),
            Err(Error::NotMember(_))
        ));
        let lamport = c.nuclei[0].lamport + 1;
        let readd = Op::sign(&key(3), c.nuclei[0].id, lamport, Action::Add, pk(3), "me").unwrap();
        assert!(handle_op(&mut b, 3, readd.clone()).is_empty());
        assert_eq!(b.nuclei[0].members().len(), 2);
        // Even relayed by a member, the fold does not count it.
        handle_op(&mut b, 1, readd);
        assert_eq!(b.nuclei[0].members().len(), 2);
        // A text from c is dropped by b.
        let part = TextPart {
            message_id: [5; 16],
            sent_at: 0,
            part: 0,
            parts: 1,
            bytes: b"x".to_vec(),
        };
        let gt = GroupText {
            nucleus: b.nuclei[0].id,
            author: fingerprint(&pk(3)).unwrap(),
            part,
        };
        assert_eq!(handle_group_text(&mut b, 3, gt, 0), Received::Nothing);
    }

    #[test]
    fn new_member_is_introduced_through_its_adder() {
        // 1 and 2 are in; 1 adds 5, whom 2 does not know.
        let mut a = profile_of(1, &[2, 5]);
        let mut b = profile_of(2, &[1]);
        let mut e = profile_of(5, &[1]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        add(&mut a, "n", "c5", &mut rand::rng(), clear).unwrap();
        deliver(&mut e, 1, &take_outbox(&mut a, 5));
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        // e plans an introduction to 2 via 1; b plans nothing (2 was first).
        assert_eq!(
            e.nucleus_tasks,
            vec![NucleusTask::Introduce {
                nucleus: a.nuclei[0].id,
                member: pk(2),
                via: pk(1)
            }]
        );
        assert!(b.nucleus_tasks.is_empty());
        // The driver makes the introduction; a forwards it to b only.
        let intro = Introduction::sign(&key(5), a.nuclei[0].id, pk(2), b"inv").unwrap();
        let fwd = handle_introduction(&mut a, 5, intro.clone());
        assert_eq!(fwd.len(), 1);
        assert_eq!(fwd[0].0, 2);
        // b queues accepting it.
        let msg = AppMessage::decode(&fwd[0].1).unwrap();
        handle(&mut b, 1, msg, 0);
        assert!(matches!(
            &b.nucleus_tasks[..],
            [NucleusTask::Accept { via: 1, .. }]
        ));
        // An introduction not from the peer it came from is not forwarded.
        assert!(handle_introduction(&mut a, 2, intro).is_empty());
        assert_eq!(introduced_name(&b, &b.nuclei[0], &pk(5)), "n/c5");
    }

    /// A clock at `u64::MAX` (or any far jump) from a member is refused:
    /// it neither freezes the nucleus nor overflows our next operation.
    #[test]
    fn lamport_jump_is_refused() {
        let mut a = profile_of(1, &[2]);
        let mut b = profile_of(2, &[1]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        let id = a.nuclei[0].id;
        let lamport = a.nuclei[0].lamport;
        for far in [u64::MAX, lamport + MAX_LAMPORT_JUMP + 1] {
            let o = Op::sign(&key(2), id, far, Action::Add, pk(9), "x").unwrap();
            assert!(handle_op(&mut a, 2, o).is_empty());
        }
        assert_eq!(a.nuclei[0].lamport, lamport);
        assert_eq!(a.nuclei[0].ops.len(), 2);
        // Within the bound is fine.
        let near = Op::sign(
            &key(2),
            id,
            lamport + MAX_LAMPORT_JUMP,
            Action::Add,
            pk(9),
            "x",
        )
        .unwrap();
        handle_op(&mut a, 2, near);
        assert_eq!(a.nuclei[0].lamport, lamport + MAX_LAMPORT_JUMP);
        // Our next change sorts after everything.
        a.outbox.clear();
        remove(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
        assert_eq!(a.nuclei[0].lamport, lamport + MAX_LAMPORT_JUMP + 1);
        assert!(!a.nuclei[0].members().contains_key(&pk(2)));
        // A clock at its end refuses a new change instead of wrapping.
        a.nuclei[0].lamport = u64::MAX;
        assert!(matches!(
            leave(&mut a, "n", &mut rand::rng(), clear),
            Err(Error::NucleusLimit(_))
        ));
    }

    /// Only a welcome (an add naming us, signed by the contact it came
    /// from, which we can write to) makes us keep an unknown nucleus.
    #[test]
    fn unknown_nucleus_only_from_a_welcome() {
        let mut b = profile_of(2, &[1]);
        // A create, an add of someone else, an add of us signed by a key
        // that is not the sender's: nothing kept.
        let create = Op::sign(&key(1), [1; 16], 1, Action::Create, pk(1), "x").unwrap();
        let other = Op::sign(&key(1), [2; 16], 1, Action::Add, pk(3), "x").unwrap();
        let forged = Op::sign(&key(9), [3; 16], 1, Action::Add, pk(2), "x").unwrap();
        for o in [create, other, forged] {
            assert!(handle_op(&mut b, 1, o).is_empty());
        }
        assert!(b.nuclei.is_empty());
        // Not from a contact we can write to (no session): nothing kept.
        let send_to = b.contacts[0].send_to.take();
        let add = Op::sign(&key(1), [4; 16], 2, Action::Add, pk(2), "x").unwrap();
        handle_op(&mut b, 1, add.clone());
        assert!(b.nuclei.is_empty());
        b.contacts[0].send_to = send_to;
        handle_op(&mut b, 1, add);
        assert_eq!(b.nuclei.len(), 1);
        // While outside, only the adder's welcome is taken.
        let mut c = profile_of(2, &[1, 3]);
        let add = Op::sign(&key(1), N, 2, Action::Add, pk(2), "x").unwrap();
        handle_op(&mut c, 1, add);
        let spam = Op::sign(&key(3), N, 1, Action::Create, pk(3), "x").unwrap();
        handle_op(&mut c, 3, spam);
        assert_eq!(c.nuclei[0].ops.len(), 1);
        assert_eq!(c.nuclei[0].creator, None);
    }

    /// A welcome works whatever the nucleus's real order: the add naming
    /// the new member goes first.
    fn joined(a: &mut Profile, b: &mut Profile, c: u8) {
        add(a, "n", &format!("c{c}"), &mut rand::rng(), clear).unwrap();
        deliver(b, 1, &take_outbox(a, u64::from(c)));
    }

    /// Keys nobody added cannot fill a nucleus, and one member cannot use
    /// up more than its share of operations.
    #[test]
    fn op_budget_cannot_be_exhausted() {
        let mut a = profile_of(1, &[2, 3]);
        let mut b = profile_of(2, &[1]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        joined(&mut a, &mut b, 2);
        assert_eq!(b.nuclei[0].name, "n");
        assert!(b.nuclei[0].members().contains_key(&pk(2)));
        let id = a.nuclei[0].id;
        // Member 2 hands over operations signed by throwaway keys.
        for i in 0..(MAX_OPS + 20) {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1000).to_be_bytes());
            let k = SigningKeyPair::from_secret_bytes(&seed);
            let o = Op::sign(&k, id, 3, Action::Add, pk(9), "x").unwrap();
            assert!(handle_op(&mut a, 2, o).is_empty(), "forwarded");
        }
        assert!(a.nuclei[0].ops.len() <= 2 + MAX_UNPLACED_OPS);
        // Member 2 itself signs as many as it can.
        for l in 0..(MAX_OPS_PER_AUTHOR as u64 + 20) {
            let o = Op::sign(&key(2), id, 3 + l, Action::Remove, pk(9), "").unwrap();
            handle_op(&mut a, 2, o);
        }
        let by_2 = a.nuclei[0]
            .decoded_ops()
            .iter()
            .filter(|o| o.author == pk(2))
            .count();
        assert_eq!(by_2, MAX_OPS_PER_AUTHOR);
        // The others can still change membership.
        add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
        assert!(a.nuclei[0].members().contains_key(&pk(3)));
    }

    /// An operation that arrives before its author's add waits, and is
    /// forwarded once the add places it.
    #[test]
    fn waiting_op_is_placed_by_its_authors_add() {
        let mut a = profile_of(1, &[2, 3]);
        let mut b = profile_of(2, &[1, 3]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        joined(&mut a, &mut b, 2);
        let id = a.nuclei[0].id;
        let add3 = Op::sign(&key(1), id, 3, Action::Add, pk(3), "c3").unwrap();
        let by3 = Op::sign(&key(3), id, 4, Action::Add, pk(4), "d").unwrap();
        assert!(handle_op(&mut b, 1, by3.clone()).is_empty());
        assert_eq!(b.nuclei[0].lamport, 2);
        let fwd = handle_op(&mut b, 1, add3.clone());
        // The add goes on to 3; the waiting op, now placed, to 1 (3 wrote it).
        let by3 = AppMessage::NucleusOp(by3).encode();
        let add3 = AppMessage::NucleusOp(add3).encode();
        assert_eq!(fwd, vec![(1, by3), (3, add3)]);
        assert_eq!(b.nuclei[0].members().len(), 4);
        assert_eq!(b.nuclei[0].lamport, 4);
    }

    /// An introduction is kept only from a current member, forwarded by
    /// its own adder, once per member; others are dropped, so they cannot
    /// fill the task list.
    #[test]
    fn introductions_only_from_members_through_their_adder() {
        let mut a = profile_of(1, &[2, 3, 5]);
        let mut b = profile_of(2, &[1, 3]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        joined(&mut a, &mut b, 2);
        add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
        add(&mut a, "n", "c5", &mut rand::rng(), clear).unwrap();
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        assert_eq!(b.nuclei[0].members().len(), 4);
        let id = a.nuclei[0].id;
        // Throwaway keys (not members), forwarded by the member 1: dropped.
        for seed in 100..(100 + MAX_TASKS as u8 + 5) {
            let i = Introduction::sign(&key(seed), id, pk(2), b"inv").unwrap();
            handle_introduction(&mut b, 1, i);
        }
        assert!(b.nucleus_tasks.is_empty());
        // A member's introduction forwarded by a member who is not its
        // adder: dropped.
        let from5 = Introduction::sign(&key(5), id, pk(2), b"inv").unwrap();
        handle_introduction(&mut b, 3, from5.clone());
        assert!(b.nucleus_tasks.is_empty());
        // Through its adder: kept, once per member.
        handle_introduction(&mut b, 1, from5);
        let again = Introduction::sign(&key(5), id, pk(2), b"other").unwrap();
        handle_introduction(&mut b, 1, again);
        assert_eq!(b.nucleus_tasks.len(), 1);
    }

    #[test]
    fn limits_hold() {
        let mut a = profile_of(1, &[]);
        for i in 0..MAX_NUCLEI {
            create(&mut a, &format!("n{i}"), &mut rand::rng()).unwrap();
        }
        assert!(matches!(
            create(&mut a, "more", &mut rand::rng()),
            Err(Error::NucleusLimit(_))
        ));
        // Unknown nuclei from a contact do not grow the list past the cap.
        let mut b = profile_of(2, &[1]);
        for i in 0..(MAX_NUCLEI as u8 + 5) {
            let o = Op::sign(&key(1), [i; 16], 1, Action::Add, pk(2), "spam").unwrap();
            handle_op(&mut b, 1, o);
        }
        assert_eq!(b.nuclei.len(), MAX_NUCLEI);
        // Seen window is bounded.
        let n = &mut b.nuclei[0];
        for i in 0..(SEEN_GROUP_KEPT as u32 + 10) {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            assert!(n.remember(SeenGroupMessage {
                author: [1; 32],
                message_id: id
            }));
        }
        assert_eq!(n.seen.len(), SEEN_GROUP_KEPT);
    }

    #[test]
    fn each_members_copy_has_its_own_status() {
        let mut a = profile_of(1, &[2, 3]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
        add(&mut a, "n", "c3", &mut rand::rng(), clear).unwrap();
        a.outbox.clear();
        let sent = send_text(&mut a, "n", "hola", 1, 1900, &mut rand::rng(), clear).unwrap();
        assert_eq!(a.sent.len(), 2);
        // Member 3's copy is stored first: only its status moves.
        let third = a
            .outbox
            .iter()
            .find(|e| e.contact == 3)
            .unwrap()
            .envelope_id;
        engine::mark_stored(&mut a, third);
        let status = |p: &Profile, c: u64| {
            p.sent
                .iter()
                .find(|s| s.contact == c && s.message_id == sent.message_id)
                .unwrap()
                .status
        };
        assert_eq!(status(&a, 3), Status::Stored);
        assert_eq!(status(&a, 2), Status::Queued);
        // A receipt from 2 marks only 2's copy delivered.
        let receipt = AppMessage::Receipt(vec![sent.message_id]).encode();
        engine::handle_plaintext(&mut a, 2, &receipt, 2);
        assert_eq!(status(&a, 2), Status::Delivered);
        assert_eq!(status(&a, 3), Status::Stored);
    }

    #[test]
    fn long_group_text_fits_envelopes_and_reassembles() {
        let mut a = profile_of(1, &[2]);
        let mut b = profile_of(2, &[1]);
        create(&mut a, "n", &mut rand::rng()).unwrap();
        add(&mut a, "n", "c2", &mut rand::rng(), clear).unwrap();
        deliver(&mut b, 1, &take_outbox(&mut a, 2));
        let text = "¡Huelga! ".repeat(600);
        let max = enlace_protocol::session::MAX_PLAINTEXT_LEN;
        let sent = send_text(&mut a, "n", &text, 1, max, &mut rand::rng(), clear).unwrap();
        let out = take_outbox(&mut a, 2);
        assert!(out.len() > 2);
        assert!(out.iter().all(|e| e.envelope.len() <= max));
        let got = deliver(&mut b, 1, &out);
        assert_eq!(got.last(), Some(&Received::Text(sent.message_id)));
        assert_eq!(b.history.last().unwrap().text, text);
    }
}
