//! The client-relay command set (the mailbox model of `docs/protocol.md`).
//!
//! Every message is one frame payload: a tag byte, then fixed-size fields.
//! [`Request`]s go from client to relay, [`Response`]s from relay to client.
//!
//! Recipient commands (create, secure, subscribe, ack, delete) are
//! [`Signed`] with the mailbox's recipient key over
//! `"enlace/v1/recipient-command" || 0x00 || binding || command bytes`, where
//! `binding` is a [`ConnectionBinding`] supplied by the transport (for QUIC, a
//! TLS exporter value). A captured command therefore does not verify on any
//! other connection.
//!
//! Relay-to-relay forwarding uses tags 0x10..=0x1f (requests) and
//! 0x46..=0x48 (responses); see [`crate::forward`] for the sealing. Both
//! enums are `#[non_exhaustive]`.

mod error;
mod forwarding;
mod request;
mod response;
mod signed;
mod tag;
#[cfg(test)]
mod tests;

pub use error::{RelayError, negotiate_version};
pub use forwarding::{FORWARD_ID_LEN, Forward, ForwardId, ForwardState};
pub use request::{Ack, CreateMailbox, Delete, Request, Secure, Subscribe};
pub use response::{EndReason, Response};
pub use signed::{BINDING_EXPORTER_LABEL, ConnectionBinding, Signed};
