//! The one error type of a connection to a relay.

use enlace_protocol::DecodeError;
use enlace_protocol::command::RelayError;

use crate::config::SetupError;

/// Errors of a connection to a relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The relay's host name did not resolve.
    #[error("cannot resolve relay host {0}")]
    Resolve(String),
    /// The connection could not be set up or was lost.
    #[error("connection to the relay failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The relay did not prove it holds the pinned key (the fingerprint or
    /// the handshake signature check failed), or a key bundle it handed on
    /// does not verify.
    #[error("the relay is not the one in the address (fingerprint or key mismatch)")]
    Untrusted,
    /// The relay refused the connection (it is at its connection limit for
    /// this address or in total): try again later.
    #[error("the relay refused the connection (too many connections): try again later")]
    Refused,
    /// The attempt timed out.
    #[error("the relay did not answer in time")]
    Timeout,
    /// The relay refused the request.
    #[error("relay refused: {0}")]
    Relay(RelayError),
    /// The relay sent bytes that do not decode.
    #[error("malformed response from the relay: {0}")]
    Decode(#[from] DecodeError),
    /// A delivery did not open under the mailbox's delivery key.
    #[error("a delivery failed to decrypt")]
    Delivery,
    /// The relay answered something that does not fit the request.
    #[error("unexpected response from the relay")]
    Unexpected,
    /// A stream closed before the answer.
    #[error("the relay closed the stream")]
    StreamClosed,
    /// Local setup (socket, TLS configuration) failed.
    #[error("local setup failed: {0}")]
    Setup(#[from] SetupError),
}

impl TransportError {
    /// The error for a failed connection attempt: a TLS alert means the
    /// relay failed the pin or the signature check, a refusal means it is
    /// full.
    pub(crate) fn from_handshake(e: quinn::ConnectionError) -> Self {
        match &e {
            // A TLS alert (QUIC CRYPTO_ERROR range 0x100..=0x1ff).
            quinn::ConnectionError::TransportError(t)
                if (0x100..0x200).contains(&u64::from(t.code)) =>
            {
                Self::Untrusted
            }
            quinn::ConnectionError::ConnectionClosed(c)
                if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
            {
                Self::Refused
            }
            _ => Self::Connection(e),
        }
    }
}
