//! The forwarding commands' own types: the id a client names a forward
//! by, the forward request, and what became of a forward.

use std::fmt;

use crate::DecodeError;
use crate::address::RelayAddress;
use crate::codec::Reader;
use crate::forward::is_sealed_len;

/// Bytes of a [`ForwardId`].
pub const FORWARD_ID_LEN: usize = 16;

/// A random id the client picks for one forwarded send, to ask its home
/// relay later what became of it (and to make a retried forward idempotent).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardId(pub [u8; FORWARD_ID_LEN]);

impl fmt::Debug for ForwardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardId(..)")
    }
}

/// Asks the home relay to carry a sealed send to another relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The destination relay (its fingerprint is pinned when connecting).
    pub destination: RelayAddress,
    /// The client's id for this forward.
    pub forward_id: ForwardId,
    /// A `Send` sealed to the destination ([`crate::forward::seal_send`]).
    pub sealed: Vec<u8>,
}

/// What became of a forwarded send, as the home relay knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardState {
    /// No such forward (never seen, or its record expired).
    Unknown,
    /// Durably queued at the home relay, not yet accepted by the destination.
    Queued,
    /// The destination answered stored.
    Stored,
    /// Its TTL passed before the destination accepted it.
    Expired,
    /// The destination refused it with this error code.
    Refused(u16),
}

impl ForwardState {
    pub(super) fn encode(self, out: &mut Vec<u8>) {
        let (state, code) = match self {
            Self::Unknown => (0u8, 0u16),
            Self::Queued => (1, 0),
            Self::Stored => (2, 0),
            Self::Expired => (3, 0),
            Self::Refused(c) => (4, c),
        };
        out.push(state);
        out.extend_from_slice(&code.to_be_bytes());
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let state = r.u8()?;
        let code = r.u16()?;
        Ok(match (state, code) {
            (0, 0) => Self::Unknown,
            (1, 0) => Self::Queued,
            (2, 0) => Self::Stored,
            (3, 0) => Self::Expired,
            (4, c) if c != 0 => Self::Refused(c),
            _ => return Err(DecodeError::InvalidField("forward state")),
        })
    }
}

/// The rest of a frame as a sealed forward: one of the fixed lengths.
pub(super) fn sealed_rest(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let sealed = r.rest();
    if !is_sealed_len(sealed.len()) {
        return Err(DecodeError::InvalidField("sealed forward length"));
    }
    Ok(sealed.to_vec())
}
