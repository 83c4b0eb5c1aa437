use thiserror::Error;

/// Why bytes could not be decoded. Returned by every decoder in this crate.
///
/// Decoding never panics and never allocates beyond a length it has
/// checked against the limits in [`crate::limits`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the value was complete.
    #[error("input is truncated")]
    Truncated,
    /// Bytes were left over after a complete value.
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// A frame's length prefix exceeds [`crate::limits::MAX_FRAME_LEN`].
    #[error("frame length {0} exceeds the maximum")]
    FrameTooLarge(u64),
    /// A message tag this version does not know.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// A version byte this implementation does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u16),
    /// An envelope body size class that is not one of the fixed sizes.
    #[error("invalid body size class {0}")]
    InvalidBodySize(u8),
    /// A field holds a value outside its domain (an invalid public key, a
    /// zero-length frame, an unknown reason code).
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
}

/// Errors of the protocol crate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Bytes could not be decoded.
    #[error("malformed input: {0}")]
    Decode(#[from] DecodeError),
    /// A signature, MAC or AEAD tag did not verify. Deliberately coarse: the
    /// caller learns nothing about which check failed.
    #[error("verification failed")]
    VerificationFailed,
    /// An envelope body was not one of the fixed sizes.
    #[error("envelope body must be 2048, 16384 or 65536 bytes, got {0}")]
    BodySize(usize),
    /// A relay address could not be parsed.
    #[error("invalid relay address: {0}")]
    Address(&'static str),
    /// A key agreement produced a non-contributory (all-zero) secret: the
    /// peer sent a low-order point.
    #[error("peer sent a weak public key")]
    WeakKey,
    /// An invitation code is not well-formed text: wrong prefix, a character
    /// outside the alphabet, or the wrong length. Says which.
    #[error("invalid invitation code: {0}")]
    InvitationText(&'static str),
    /// An invitation code's checksum does not match: it was mistyped or
    /// truncated.
    #[error("invitation code has a typo (checksum mismatch)")]
    BadChecksum,
    /// An invitation (or a handshake answering it) arrived after its expiry.
    #[error("invitation expired")]
    InvitationExpired,
    /// An invitation, handshake, message or stored state is of a version this
    /// implementation does not speak.
    #[error("unsupported version {0}")]
    UnsupportedVersion(u16),
    /// An identity key was given where a per-mailbox key belongs: a relay
    /// would see it and learn whose mailbox it is. Generate a fresh key
    /// pair for every mailbox.
    #[error("an identity key must not be used as a per-mailbox key")]
    IdentityKeyAsMailboxKey,
    /// A session message's plaintext does not fit its fixed body size.
    #[error("message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLong {
        /// Bytes offered.
        len: usize,
        /// Bytes that fit.
        max: usize,
    },
}
