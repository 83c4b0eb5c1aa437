//! The client's logic without I/O: what sending, receiving and nucleus
//! changes do to the profile. No tokio, no sockets, no clock: time and
//! randomness are arguments, sealing is a closure ([`outbox::Seal`]), and
//! network work that receiving decides on is queued in the profile for the
//! driver.
//!
//! Imports: the profile layer, the protocol crate and the crate's leaves
//! (errors, `Debug` helpers); never the driver or the commands.

pub(crate) mod contacts;
pub(crate) mod inbox;
pub(crate) mod mailboxes;
pub(crate) mod message;
pub(crate) mod nucleus;
pub(crate) mod outbox;
pub(crate) mod parts;
pub(crate) mod receive;
pub(crate) mod received;
pub(crate) mod retention;
pub(crate) mod route;
pub(crate) mod seal;
