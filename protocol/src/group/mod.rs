//! Nuclei (groups): the messages their members exchange inside pairwise
//! sessions, and the fold that turns membership operations into a member
//! list with roles.
//!
//! A nucleus message travels inside an end-to-end session as an
//! application message of kind 16 ([`Op`], a signed membership change
//! naming its causal parents), 4 ([`GroupText`], one part of a text) or 5
//! ([`Introduction`], a new member's invitation for an existing one).
//! Kind 3 ([`OpV1`]) is the first version of membership changes, still
//! read from old profiles and welcomes but never made. This module
//! encodes and decodes those kinds' payloads, the bytes after
//! `version | kind`; which operations a member keeps, forwards and acts on
//! is the client's business. [`History::fold`] is the convergence rule:
//! members that hold the same set of operations agree on the member list
//! and roles, whatever order the operations arrived in;
//! [`History::admit`] is the check every member makes when one arrives.
//!
//! Decoders take `&[u8]`, never panic, check every length against
//! [`limits`] before allocating, reject trailing bytes, and verify
//! signatures over the bytes as received. Layouts and rules are in
//! `docs/protocol.md`, section 13; the vectors in
//! `protocol/testdata/group.json` and `fail_group.json` pin them.

mod graph;
mod id;
mod introduction;
pub mod limits;
mod membership;
mod op;
mod op_v1;
mod resolve;
mod role;
mod signed;
#[cfg(test)]
mod testing;
mod text;
mod verdict;

pub use id::{NUCLEUS_ID_LEN, NucleusId};
pub use introduction::Introduction;
pub use membership::{Fold, History, Member};
pub use op::{Action, OP_HASH_LEN, Op, OpHash};
pub use op_v1::{ActionV1, OpId, OpV1, OrderKey};
pub use role::Role;
pub use text::{GroupText, TextPart};
pub use verdict::{Refusal, Verdict};
