//! Nuclei: small groups whose members hold pairwise sessions.
//!
//! A nucleus message is encrypted once per member over the existing
//! sessions (fan-out). Membership changes are operations signed with the
//! changing member's identity key; every member keeps the set of
//! operations it has seen and folds it deterministically into the member
//! list (the protocol's `group::fold`), so members that saw the same
//! operations agree whatever order they arrived in. Operations are
//! gossiped: the first time a member sees one it forwards it to the other
//! members it has sessions with.
//!
//! The byte layouts, the fold and its limits are in `docs/protocol.md`,
//! section 13, and in the protocol's `group` module; this module decides
//! what a member keeps, forwards and sends. Nothing here does I/O: sealing
//! is passed in as a `Seal` and the network work (invitations for
//! introductions) is queued as `NucleusTask`s for the driver.

pub(crate) mod change;
pub(crate) mod introductions;
pub(crate) mod limits;
pub(crate) mod names;
pub(crate) mod receive;
pub(crate) mod send;
#[cfg(test)]
mod tests;
