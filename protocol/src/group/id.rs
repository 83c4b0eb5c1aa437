//! Nucleus ids.

use std::fmt;

use zeroize::Zeroize;

/// Bytes of a nucleus id.
pub const NUCLEUS_ID_LEN: usize = 16;

/// A nucleus's id: random bytes chosen by its creator, carried by every
/// message about the nucleus.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Zeroize)]
pub struct NucleusId(pub [u8; NUCLEUS_ID_LEN]);

impl fmt::Debug for NucleusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NucleusId(..)")
    }
}
