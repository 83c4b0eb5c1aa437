//! The errors a relay reports, their wire codes and names (one table), and
//! version negotiation.

use crate::codec::Reader;
use crate::{DecodeError, PROTOCOL_VERSION};

/// Declares [`RelayError`] from one table: each row gives the wire code,
/// the name `docs/protocol.md` section 5.3 uses, the variant, its fields
/// (integer details, zero when only the code is known) and its message.
/// `code`, `from_code`, `name` and [`RelayError::ALL`] are generated from
/// the rows, so a code is written exactly once.
macro_rules! relay_errors {
    ($(
        $(#[doc = $doc:literal])*
        $code:literal $name:literal $variant:ident $({ $($(#[doc = $fdoc:literal])* $field:ident: $ty:ty),* })?
            => $message:literal,
    )*) => {
        /// An error the relay reports to a client.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum RelayError {
            $(
                $(#[doc = $doc])*
                #[error($message)]
                $variant $({ $($(#[doc = $fdoc])* $field: $ty),* })?,
            )*
            /// An error code from a newer relay.
            #[error("relay error {0}")]
            Other(u16),
        }

        impl RelayError {
            /// Every error this crate knows, in code order, with zero details.
            pub const ALL: [RelayError; [$($code),*].len()] =
                [$(Self::$variant $({ $($field: 0),* })?),*];

            /// The wire code.
            pub fn code(&self) -> u16 {
                match self {
                    $(Self::$variant { .. } => $code,)*
                    Self::Other(c) => *c,
                }
            }

            /// The error for a bare wire code (as a forward's status carries
            /// it); details a code would carry are unknown and set to zero.
            pub fn from_code(code: u16) -> Self {
                match code {
                    $($code => Self::$variant $({ $($field: 0),* })?,)*
                    other => Self::Other(other),
                }
            }

            /// The error's name in `docs/protocol.md` section 5.3 (such as
            /// `"unknown mailbox"`), `"other"` for a code this crate does
            /// not know.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $name,)*
                    Self::Other(_) => "other",
                }
            }
        }
    };
}

relay_errors! {
    /// The request could not be decoded.
    1 "malformed" Malformed => "malformed request",
    /// No version in the client's range is supported.
    2 "unsupported version" UnsupportedVersion {
        /// Lowest version the relay speaks.
        min: u16,
        /// Highest version the relay speaks.
        max: u16
    } => "unsupported protocol version (relay speaks {min} to {max})",
    /// A signature did not verify (wrong key, wrong connection, or an
    /// unsigned send to a secured mailbox).
    3 "auth" Auth => "not authorized",
    /// No such mailbox.
    4 "unknown mailbox" UnknownMailbox => "unknown mailbox",
    /// The mailbox holds its maximum number of envelopes.
    5 "quota" Quota => "mailbox quota exceeded",
    /// The request is larger than the relay accepts.
    6 "too large" TooLarge => "request too large",
    /// The relay's storage is full.
    7 "storage full" StorageFull => "relay storage is full",
    /// Too many requests: retry after the given number of seconds.
    8 "rate limited" RateLimited {
        /// Seconds to wait before retrying.
        retry_after_secs: u32
    } => "rate limited, retry in {retry_after_secs} s",
    /// The relay failed internally; the request was not performed.
    9 "internal" Internal => "relay internal error",
    /// The request tag is unknown to this relay.
    10 "unknown command" UnknownCommand => "unknown command",
    /// Forwarding (and fetching other relays' keys) is only for clients
    /// holding a mailbox on this relay.
    11 "not own client" NotOwnClient => "forwarding is only for clients holding a mailbox on this relay",
    /// The relay's queue for that destination is full.
    12 "forward queue full" ForwardQueueFull => "the forwarding queue to that relay is full",
    /// The destination relay could not be reached (or did not prove its key).
    13 "unreachable" Unreachable => "the destination relay is unreachable",
}

impl RelayError {
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code().to_be_bytes());
        match self {
            Self::UnsupportedVersion { min, max } => {
                out.extend_from_slice(&min.to_be_bytes());
                out.extend_from_slice(&max.to_be_bytes());
            }
            Self::RateLimited { retry_after_secs } => {
                out.extend_from_slice(&retry_after_secs.to_be_bytes())
            }
            _ => {}
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.u16()?;
        if code == 0 {
            return Err(DecodeError::InvalidField("error code 0"));
        }
        Ok(match Self::from_code(code) {
            Self::UnsupportedVersion { .. } => Self::UnsupportedVersion {
                min: r.u16()?,
                max: r.u16()?,
            },
            Self::RateLimited { .. } => Self::RateLimited {
                retry_after_secs: r.u32()?,
            },
            Self::Other(other) => {
                // A newer relay may attach details we cannot interpret.
                r.rest();
                Self::Other(other)
            }
            known => known,
        })
    }
}

/// The relay's answer to a decode failure.
impl From<DecodeError> for RelayError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnknownTag(_) => Self::UnknownCommand,
            DecodeError::FrameTooLarge(_) => Self::TooLarge,
            DecodeError::UnsupportedVersion(_) => Self::UnsupportedVersion {
                min: PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            },
            _ => Self::Malformed,
        }
    }
}

/// The relay's choice of version for a client's hello range.
pub fn negotiate_version(min_version: u16, max_version: u16) -> Result<u16, RelayError> {
    if (min_version..=max_version).contains(&PROTOCOL_VERSION) {
        Ok(PROTOCOL_VERSION)
    } else {
        Err(RelayError::UnsupportedVersion {
            min: PROTOCOL_VERSION,
            max: PROTOCOL_VERSION,
        })
    }
}
