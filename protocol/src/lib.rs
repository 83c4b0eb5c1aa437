//! The Enlace protocol: wire format, mailbox commands, signed envelopes and
//! the keys they use.
//!
//! Enlace is a store-and-forward messenger for organizers who face
//! repression. Relays keep mailboxes of end-to-end encrypted, signed
//! envelopes; clients deposit into and drain those mailboxes over QUIC.
//! This crate is everything both sides must agree on, and nothing else:
//!
//! - [`frame`]: length-prefixed frames with a hard maximum size;
//! - [`keys`]: ed25519 signing keys, fingerprints and safety numbers;
//! - [`address`]: relay addresses (`enlace://<fingerprint>@host:port`);
//! - [`envelope`]: the signed, padded envelope a relay stores and forwards;
//! - [`command`]: the client-relay command set (requests and responses);
//! - [`delivery`]: the relay's per-mailbox re-encryption of deliveries;
//! - [`forward`]: relay-to-relay forwarding: a relay's signed forwarding
//!   key and sends sealed to it;
//! - [`session`]: end-to-end sessions: invitations, the hybrid
//!   post-quantum handshake and the Double Ratchet;
//! - [`group`]: nuclei (groups): membership operations, nucleus texts,
//!   introductions, and the fold that turns operations into members;
//! - [`limits`]: every bound, with the reason for it.
//!
//! It is *sans-IO*: no sockets, no clock reads, no randomness of its own.
//! Time and a cryptographic RNG are arguments. Decoders take `&[u8]`, never
//! panic, never allocate more than the bounded length they have checked, and
//! reject trailing bytes; encoders append to a `Vec<u8>`.
//!
//! The exact bytes are specified in `docs/protocol.md`, and test vectors in
//! `protocol/testdata/` pin them.
//!
//! Specifications used: RFC 8032 (Ed25519, verified with the strict rules),
//! RFC 7748 (X25519), RFC 5869 (HKDF-SHA256), RFC 8439 and
//! draft-irtf-cfrg-xchacha (XChaCha20-Poly1305), RFC 4648 (base32), RFC 2104
//! (HMAC), FIPS 203 (ML-KEM-768), Signal's Double Ratchet and X3DH/PQXDH.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
mod base32;
mod codec;
pub mod command;
pub mod delivery;
pub mod envelope;
mod error;
pub mod forward;
pub mod frame;
pub mod group;
pub mod keys;
pub mod limits;
pub mod session;

pub use error::{DecodeError, Error};

/// The protocol version this crate speaks, negotiated by
/// [`command::Request::Hello`] and carried in every envelope.
pub const PROTOCOL_VERSION: u16 = 1;

/// The QUIC ALPN identifier: one string per protocol version.
pub const ALPN: &[u8] = b"enlace/1";

/// The README's embedding example, compiled and run as a doctest.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
