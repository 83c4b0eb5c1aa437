//! The network driver: connections to relays, routes, sending the outbox,
//! receiving, listening and the introductions nuclei ask for. The only
//! user of `enlace-quic` and of tokio in the crate.
//!
//! Every change to the profile is saved (under the lock) before the relay
//! is told anything that depends on it: an envelope is acked only after the
//! message it carried and the advanced session are on disk, and an envelope
//! is dropped from the outbox only after its relay answered `stored`.
//!
//! What happens is told to the command that runs the driver as
//! [`report::Event`]s; the driver prints nothing itself.
//!
//! Imports: the domain and profile layers, the protocol and QUIC crates,
//! and the crate's leaves (errors, the clock); never the commands.

pub(crate) mod flush;
pub(crate) mod invite;
pub(crate) mod listen;
pub(crate) mod receive;
pub(crate) mod relays;
pub(crate) mod report;
pub(crate) mod runtime;
pub(crate) mod tasks;
