//! The Enlace relay: a QUIC store-and-forward server with durable mailboxes.
//!
//! A nucleus runs one. It keeps mailboxes of signed, end-to-end encrypted
//! envelopes (the SimpleX queue model of `docs/protocol.md`), answers
//! `stored` only after an envelope is fsynced, pushes envelopes to the
//! subscribed recipient re-encrypted under a per-mailbox delivery key, and
//! deletes them on ack or after a TTL. It never sees plaintext, names or
//! identity keys.
//!
//! - [`core`]: request handling over the storage trait, without sockets;
//! - [`store`]: the storage trait, the redb backend (default) and a sled
//!   backend (feature `sled`);
//! - [`server`]: the quinn driver, group-commit writer and subscriptions
//!   (the stream mapping is in `docs/protocol.md section 7`);
//! - [`identity`]: the relay key and its self-signed certificate;
//! - [`config`], [`metrics`], [`cli`]: settings, counters, the binary.
//!
//! - [`forwarding`]: relay-to-relay forwarding: the pinned outgoing client
//!   and the retry workers of the durable forward queue.
//!
//! It does not interpret envelope bodies.
//!
//! Specifications used: RFC 9000/9001 (QUIC, QUIC-TLS) via quinn, RFC 8446
//! (TLS 1.3) and RFC 5705/8446 §7.5 (exporters) via rustls, RFC 8410
//! (ed25519 in X.509).

#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod forward;
pub mod identity;
pub mod logic;
pub mod metrics;
pub mod policy;
pub mod relays;
pub mod run;
pub mod server;
pub mod shutdown;
pub mod store;
