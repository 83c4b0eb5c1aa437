//! Durable mailbox storage behind one small trait.
//!
//! Every mutation is a [`WriteOp`]; a backend applies a whole batch of them
//! in one atomic, durable commit ([`Store::apply`]), which is what makes group
//! commit possible: the relay's single writer thread ([`writer`]) hands
//! every deposit, ack, create and delete that queued up during the previous
//! fsync to the next one. Reads go straight to the backend and never wait
//! for a commit.
//!
//! The mailbox logic (`mailbox`: quota, duplicates, first contact,
//! expiry) and the forward queue ([`forward`]) are written once, over
//! `kv`'s tiny ordered key-value transaction; each backend file only maps
//! that onto its engine. The key layout (`layout`: one keyspace, a prefix
//! byte per kind of record) is in `docs/storage.md`.
//!
//! Files, from the bottom: [`error`], `kv`, `layout`, [`record`],
//! [`outcome`]; `mailbox` and [`forward`] (the logic); [`ops`] (the
//! mutations), `batch` (one batch over one transaction), [`api`] (the
//! trait); the backends [`redb`] and `sled`; [`writer`] on top.

pub mod api;
pub(crate) mod batch;
#[cfg(test)]
pub(crate) mod conformance;
pub mod error;
#[cfg(test)]
mod faults;
pub mod forward;
pub(crate) mod kv;
pub(crate) mod layout;
pub(crate) mod mailbox;
pub mod ops;
pub mod outcome;
pub mod record;
pub mod redb;
#[cfg(feature = "sled")]
pub mod sled;
pub mod writer;

pub use self::api::Store;
pub use self::error::StoreError;
pub use self::ops::WriteOp;
pub use self::outcome::{Committed, WriteOutcome};
pub use self::record::{MailboxRecord, Stats, StoredEnvelope};
