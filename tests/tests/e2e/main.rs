//! End-to-end tests: real `enlace-relay` processes on 127.0.0.1, real QUIC
//! with pinned fingerprints, temporary data directories. The fixtures are
//! the `enlace_tests` library's.

// Test code: a failed unwrap is a failed test.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

mod abuse;
mod cli;
mod durability;
mod forensic;
mod forwarding;
mod hardening;
mod load;
mod mailbox;
mod nuclei;
mod pinning;
mod readme;
