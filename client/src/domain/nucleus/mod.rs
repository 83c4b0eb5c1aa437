//! Nuclei: small groups whose members hold pairwise sessions.
//!
//! A nucleus message is encrypted once per joined member over the existing
//! sessions (fan-out). Membership changes are operations signed with the
//! changing member's identity key, naming the operations its author had
//! seen (causal parents); every member keeps the set of operations it has
//! seen and folds it deterministically into the member list with roles
//! (the protocol's `group::History::fold`), so members that saw the same
//! operations agree whatever order they arrived in. Operations are
//! gossiped: the first time a member places one it forwards it to the
//! other joined members it has sessions with. Being added is an
//! invitation: nothing is made or sent for the nucleus until `join`.
//! Every change (and every refused one) is kept as a notice until `read`
//! or `listen` shows it.
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
pub(crate) mod notices;
pub(crate) mod ops;
pub(crate) mod receive;
pub(crate) mod send;
pub(crate) mod state;
#[cfg(test)]
mod tests;
