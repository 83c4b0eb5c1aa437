//! Bounds on what nuclei make a profile keep. The protocol's
//! `group::limits` has the bounds of one nucleus.

/// Most nuclei one profile keeps that are not invitations (joined ones,
/// and ones we were removed from until we forget them).
pub(crate) const MAX_NUCLEI: usize = 32;

/// Most invitations waiting for `join` or `decline`: what contacts can
/// make us keep without our consent.
pub(crate) const MAX_INVITATIONS: usize = 8;

/// Most invitations waiting from one contact, so that one contact cannot
/// take every place of [`MAX_INVITATIONS`].
pub(crate) const MAX_INVITATIONS_PER_CONTACT: usize = 2;

/// Most introductions and invitations waiting for the network: work that
/// receiving queues.
pub(crate) const MAX_TASKS: usize = 64;

/// Most membership changes waiting to be shown per nucleus (the oldest
/// go first): what others' changes make us keep before a `read`.
pub(crate) const MAX_NOTICES: usize = 64;

/// Most refused changes by one author waiting to be shown per nucleus: a
/// refused change costs its sender nothing, so refusals must not crowd out
/// the changes [`MAX_NOTICES`] keeps.
pub(crate) const MAX_REFUSALS_PER_AUTHOR: usize = 4;
