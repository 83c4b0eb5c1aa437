//! Bounds on what nuclei make a profile keep. The protocol's
//! `group::limits` has the bounds of one nucleus.

/// Most nuclei one profile keeps (including ones it is being added to):
/// bounds what strangers can make us keep.
pub(crate) const MAX_NUCLEI: usize = 32;

/// Most introductions and invitations waiting for the network: work that
/// receiving queues.
pub(crate) const MAX_TASKS: usize = 64;
