//! The relay's abuse defences as plain rules, without sockets, threads or
//! a clock (time is an argument): the token bucket they are made of, the
//! per-host table, connection slots, a connection's own allowances, where
//! a connection stands, and where this relay forwards to.
//!
//! Nothing here reads time or does I/O; [`crate::logic`] and the drivers
//! ([`crate::server`], [`crate::forward`]) apply these rules.

pub mod admission;
pub mod allowance;
pub mod bucket;
pub mod destinations;
pub mod hosts;
pub mod standing;
