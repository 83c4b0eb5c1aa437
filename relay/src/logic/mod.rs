//! The relay's request logic, without sockets, threads or a clock.
//!
//! [`Core::handle`] turns one decoded request into a [`Step`]: an
//! immediate response, a [`WriteOp`](crate::store::WriteOp) for the
//! group-commit writer, the start of a subscription, or a key to fetch from
//! another relay. Once a write's batch is durable, [`Core::finish`] is the
//! one place that decides what follows: the answer and the [`Effect`] the
//! driver carries out. Time is an argument (Unix seconds from the relay's
//! clock); the only randomness is mailbox ids, delivery keys and sealing
//! nonces. No tokio, no quinn: the unit tests drive it exactly as the
//! server does, with the store in place of the writer thread.
//!
//! Files: [`limits`], [`caches`], [`conn`] (a connection's state),
//! [`core`] (the state and shared checks), [`step`]; one file per group of
//! commands (`mailbox`, `send`, `forward`) under `handle`; then
//! [`finish`] and [`delivery`].

pub mod caches;
pub mod conn;
pub mod core;
pub mod delivery;
pub mod finish;
pub(crate) mod forward;
mod handle;
pub mod limits;
mod mailbox;
mod send;
pub mod step;
#[cfg(test)]
mod tests;

pub use self::conn::ConnState;
pub use self::core::{Core, store_error};
pub use self::delivery::Delivery;
pub use self::finish::{AwaitForward, Effect, Finished};
pub use self::limits::Limits;
pub use self::step::{Step, Then};
