//! The Enlace client library: what the `enlace` CLI and the end-to-end tests
//! use to talk to relays.
//!
//! - [`transport`]: QUIC connections to a relay with its key pinned by
//!   fingerprint, and the mailbox commands (create, secure, send,
//!   subscribe, ack, delete) over them.
//!
//! It does not keep state on disk and does no end-to-end cryptography
//! beyond opening the relay's delivery sealing; sessions live in the
//! protocol crate.
//!
//! Specifications used: RFC 9000/9001 (QUIC) via quinn, RFC 8446 (TLS 1.3)
//! via rustls with the ring provider, RFC 8410 (ed25519 certificates).

#![forbid(unsafe_code)]

pub mod transport;
