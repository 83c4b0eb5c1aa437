//! Nuclei (groups): the messages their members exchange inside pairwise
//! sessions, and the fold that turns membership operations into a member
//! list.
//!
//! A nucleus message travels inside an end-to-end session as an
//! application message of kind 3 ([`Op`], a signed membership change), 4
//! ([`GroupText`], one part of a text) or 5 ([`Introduction`], a new
//! member's invitation for an existing one). This module encodes and
//! decodes those kinds' payloads, the bytes after `version | kind`; which
//! operations a member keeps, forwards and acts on is the client's
//! business. [`fold`] is the convergence rule: members that hold the same
//! set of operations agree on the member list, whatever order the
//! operations arrived in.
//!
//! Decoders take `&[u8]`, never panic, check every length against
//! [`limits`] before allocating, reject trailing bytes, and verify
//! signatures over the bytes as received. Layouts and rules are in
//! `docs/protocol.md`, section 13; the vectors in
//! `protocol/testdata/group.json` and `fail_group.json` pin them.

mod id;
mod introduction;
pub mod limits;
mod membership;
mod op;
#[cfg(test)]
mod testing;
mod text;

pub use id::{NUCLEUS_ID_LEN, NucleusId};
pub use introduction::Introduction;
pub use membership::{Fold, Member, fold};
pub use op::{Action, Op, OpId, OrderKey};
pub use text::{GroupText, TextPart};
