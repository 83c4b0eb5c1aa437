//! The QUIC and TLS layer shared by the Enlace relay, the client, the tests
//! and the benchmark: everything both ends need to open and use a
//! connection to a relay, and nothing about what either end does with it.
//!
//! - [`pin`]: relays are authenticated by the ed25519 key their address
//!   names (no certificate authority, no names): [`pin::PinnedRelayVerifier`]
//!   checks the certificate's key against the pinned fingerprint *and* the
//!   TLS 1.3 handshake signature made with it;
//! - [`config`]: the rustls and quinn configurations of a client, of a relay
//!   dialing another relay, and of a relay's server side;
//! - [`frame`]: length-prefixed frames over QUIC streams (a cancel-safe
//!   reader, writers, one request and its answer on a stream of its own);
//! - [`connection`]: [`RelayConnection`], an open, verified connection to a
//!   relay with one method per command, and [`Subscription`], a mailbox's
//!   stream of pushed deliveries;
//! - [`error`]: [`TransportError`], the one error type.
//!
//! It does not decide anything a relay or a client decides: no storage, no
//! retries, no routing, no policy. The bytes it carries are the protocol
//! crate's; the mapping of commands to streams is `docs/protocol.md`
//! section 7.
//!
//! Specifications used: RFC 9000/9001 (QUIC, QUIC-TLS) via quinn, RFC 8446
//! (TLS 1.3) and RFC 5705/8446 §7.5 (exporters) via rustls, RFC 8410
//! (ed25519 in X.509).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod connection;
pub mod error;
pub mod frame;
pub mod pin;

pub use config::{SetupError, client_config, relay_dialer_config};
pub use connection::{
    CreatedMailbox, ForwardOutcome, RelayConnection, Subscription, SubscriptionEvent,
    VerifiedRelayKey,
};
pub use error::TransportError;
