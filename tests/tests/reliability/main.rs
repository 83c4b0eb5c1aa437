//! The reliability and adversarial suite (docs/reliability.md): real
//! `enlace-relay` processes on 127.0.0.1, killed, flooded, starved of disk,
//! fed corrupt files and skewed clocks. Bounded forms run in CI; long forms
//! are `#[ignore]`d and take their sizes from environment variables. The
//! fixtures are the `enlace_tests` library's.

// Test code: a failed unwrap is a failed test.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

mod attacker;
mod clock;
mod corruption;
mod crash;
mod disk;
mod fwd_crash;
mod hostile;
mod hostile_fwd;
mod limits;
