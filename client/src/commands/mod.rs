//! The commands of the `enlace` CLI: each opens the profile, calls the
//! domain and the driver, and prints. One file per group of verbs;
//! [`dispatch`] maps the parsed command line to them.
//!
//! Imports: every layer below (driver, domain, profile) and the crate's
//! leaves; nothing imports the commands but the crate root.

pub(crate) mod contacts;
pub(crate) mod context;
pub(crate) mod dispatch;
pub(crate) mod history;
pub(crate) mod messages;
pub(crate) mod nucleus;
pub(crate) mod output;
pub(crate) mod profile;
pub(crate) mod secrets;
