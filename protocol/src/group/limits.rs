//! Every bound of nuclei, with the reason for it (`docs/protocol.md`,
//! section 13.5).

/// Most members of one nucleus: fan-out costs one envelope per member and
/// every member holds a session with every other (beyond this, sender keys
/// or MLS are the right tool).
pub const MAX_MEMBERS: usize = 64;

/// Most membership operations one nucleus keeps: the fold needs the whole
/// history to check who was a member when; past this no more changes are
/// made or accepted.
pub const MAX_OPS: usize = 512;

/// Most operations one author may have in a nucleus, so that one member
/// alone cannot use up [`MAX_OPS`] for everyone.
pub const MAX_OPS_PER_AUTHOR: usize = 128;

/// Most operations kept whose author is not (yet) a member in the fold: an
/// operation can arrive before its author's `add`, but keys nobody added
/// must not fill the nucleus.
pub const MAX_UNPLACED_OPS: usize = 32;

/// Largest step an operation may take the Lamport clock past the largest
/// seen: honest clocks stay far below it (at most [`MAX_OPS`] operations),
/// and it stops one member from pushing the clock to its end.
pub const MAX_LAMPORT_JUMP: u64 = 1_024;

/// Longest name in an operation, in bytes: its length is one byte.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest invitation an introduction carries, in bytes: an invitation is
/// about 1,500 bytes and the introduction must fit one small envelope.
pub const MAX_INVITATION_BYTES: usize = 1_700;

/// Most parts of one text: 64 small envelopes (about 120 KB of text), which
/// bounds what a receiver holds for a text not yet complete.
pub const MAX_PARTS: usize = 64;
