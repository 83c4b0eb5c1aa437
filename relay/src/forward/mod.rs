//! Relay-to-relay forwarding (docs/protocol.md section 12): the outgoing
//! QUIC client with the destination's fingerprint pinned, one reused
//! connection per destination address, and one retry worker per
//! destination fingerprint that walks the durable forward queue in order,
//! giving each failing forward and each failing address its own retry time
//! (exponential backoff with jitter) so one bad entry delays only itself.
//! The worker never waits on the network itself: each address's forwards
//! go to a lane (a task of their own), so a slow or dead address does not
//! delay the others at all, and new forwards wake the worker at once.
//!
//! Outgoing connections leave from the relay's listening endpoint, so a
//! destination sees this relay's address and port, never a client's.
//!
//! Files, from the top: [`forwarder`] (what the rest of the relay calls),
//! `worker` (one destination's queue), `lane` (one address's
//! deliveries), [`schedule`] (retry times and lanes), `keys` (other
//! relays' key bundles), [`dialer`] and [`peers`] (connections), and
//! `shared` (what workers and lanes share). The destination policy is
//! in [`crate::policy::destinations`].

pub mod dialer;
pub mod forwarder;
pub(crate) mod keys;
pub(crate) mod lane;
pub mod peers;
pub mod schedule;
pub(crate) mod shared;
#[cfg(test)]
mod tests;
pub(crate) mod worker;

pub use self::forwarder::{Forwarder, Policy};
