//! What the relay counts, and the loopback endpoint that serves it.
//!
//! Metrics are aggregate counts only: no mailbox ids, no addresses.

pub mod counters;
pub mod endpoint;

pub use self::counters::{Metrics, Refusal};
pub use self::endpoint::serve;
