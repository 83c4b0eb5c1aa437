//! The Enlace relay: a QUIC store-and-forward server with durable mailboxes.
//!
//! A nucleus runs one. It keeps mailboxes of signed, end-to-end encrypted
//! envelopes (the SimpleX queue model of `docs/protocol.md`), answers
//! `stored` only after an envelope is fsynced, pushes envelopes to the
//! subscribed recipient re-encrypted under a per-mailbox delivery key, and
//! deletes them on ack or after a TTL. For its own clients it forwards
//! sealed sends to other relays, durably queued until they are accepted or
//! expire (section 12). It never sees plaintext, names or identity keys,
//! and it does not interpret envelope bodies.
//!
//! Modules, from the top; each imports only from the lines below it:
//!
//! - [`cli`]: the `enlace-relay` binary: settings, storage, run until a
//!   signal;
//! - [`run`]: one relay wired (endpoint, writer, forwarding, server,
//!   metrics endpoint), started and shut down in order;
//! - [`server`]: the QUIC driver: admission, connections, streams,
//!   subscriptions, the priority gate, sweeps (section 7);
//! - [`forward`]: relay-to-relay forwarding: workers, lanes, retry
//!   schedule, dialer (section 12). [`server`] and [`forward`] never
//!   import each other: the server reaches other relays through
//!   [`relays`];
//! - [`relays`]: the trait the server asks forwarding through;
//! - [`metrics`]: counters and the loopback Prometheus endpoint;
//! - [`config`]: flags, the TOML file and defaults;
//! - [`logic`]: the request logic without sockets, threads or a clock:
//!   `handle(request, now) -> Step`, then `finish` once a write committed;
//! - [`policy`]: the abuse defences as plain rules: token bucket, host
//!   table, connection slots and allowances, a connection's standing,
//!   the forward destination policy;
//! - [`store`]: the storage trait, the mailbox logic and the forward queue
//!   over a key-value transaction, the redb backend (default) and a sled
//!   backend (feature `sled`), and the group-commit writer;
//! - [`identity`]: the relay key, its self-signed certificate and the
//!   forwarding key;
//! - [`clock`]: the only reader of time; [`shutdown`]: the shutdown
//!   signal and watch.
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
