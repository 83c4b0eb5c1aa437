//! Every bound of nuclei, with the reason for it (`docs/protocol.md`,
//! section 13.9).

/// Most members of one nucleus (invited ones included): fan-out costs one
/// envelope per member and every member holds a session with every other
/// (beyond this, sender keys or MLS are the right tool).
pub const MAX_MEMBERS: usize = 64;

/// Most membership operations one nucleus keeps, of each version: the
/// fold needs the whole history to check who could do what when; past
/// this no more changes are made or accepted.
pub const MAX_OPS: usize = 512;

/// Most operations beyond [`MAX_OPS`] a nucleus keeps for removals and
/// demotions: a member who fills the nucleus can still be removed.
pub const MAX_RESERVED_OPS: usize = 128;

/// Most operations other than removals and demotions that count by one
/// author, counted in each operation's own past (so every member decides
/// the same): one member alone cannot use up [`MAX_OPS`].
pub const MAX_OPS_PER_AUTHOR: usize = 128;

/// Most operations kept while some of their parents are missing, per
/// author (and as many for authors the nucleus does not know): an
/// operation can arrive before its parents, but what never gets its
/// parents must not fill the nucleus, and one author's must not push out
/// another's.
pub const MAX_WAITING_OPS: usize = 32;

/// Most causal parents one operation names: its author's heads, which
/// concurrent changes rarely make more than a few; it keeps an operation
/// within one small envelope.
pub const MAX_PARENTS: usize = 16;

/// Longest name in an operation, in bytes: its length is one byte.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest invitation an introduction carries, in bytes: an invitation is
/// about 1,500 bytes and the introduction must fit one small envelope.
pub const MAX_INVITATION_BYTES: usize = 1_700;

/// Most parts of one text: 64 small envelopes (about 120 KB of text), which
/// bounds what a receiver holds for a text not yet complete.
pub const MAX_PARTS: usize = 64;
