//! The sizes of sealed forwards: a fixed function of the envelope's size
//! class, so forwarded sizes stay bucketed.

use crate::delivery::{SEAL_NONCE_LEN, SEAL_TAG_LEN};
use crate::envelope::BodySize;
use crate::limits::{ENVELOPE_OVERHEAD, MAX_FRAME_LEN, MAX_HOST_LEN};

/// Bytes a sealed forward adds around the inner command: the ephemeral
/// public key, the nonce and the tag.
pub const FORWARD_SEAL_OVERHEAD: usize = 32 + SEAL_NONCE_LEN + SEAL_TAG_LEN;

/// The length of a sealed forwarded send whose envelope has `size` body:
/// overhead, the `Send` tag and the envelope.
pub const fn sealed_len(size: BodySize) -> usize {
    FORWARD_SEAL_OVERHEAD + 1 + ENVELOPE_OVERHEAD + size.len()
}

/// True if `len` is the length of a sealed forwarded send of some size class.
pub fn is_sealed_len(len: usize) -> bool {
    [BodySize::Small, BodySize::Medium, BodySize::Large]
        .into_iter()
        .any(|s| sealed_len(s) == len)
}

// The largest forward fits in a frame: tag, relay key, host length, the
// longest host, port, forward id, sealed large send.
const _: () =
    assert!(1 + 32 + 1 + MAX_HOST_LEN + 2 + 16 + sealed_len(BodySize::Large) <= MAX_FRAME_LEN);
