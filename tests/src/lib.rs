//! The fixtures of Enlace's end-to-end and reliability suites
//! (`tests/e2e/`, `tests/reliability/`), each written once:
//!
//! - [`relay`]: a real `enlace-relay` process on 127.0.0.1: start, kill -9,
//!   graceful stop, restart on the same data directory and port, its log
//!   and metrics;
//! - [`home`]: an organizer's `enlace` CLI profile in a temporary directory,
//!   with the test passphrase and the cheapest KDF, run through the real
//!   binary;
//! - [`hostile`]: a modified client: an organizer's profile that signs and
//!   sends what the real client refuses to (for the nucleus tests);
//! - [`net`]: raw QUIC to a relay with the pinned verifier but no client
//!   logic, for tests that speak frames directly;
//! - [`mailbox`]: keys, signed envelopes and secured mailboxes over an
//!   [`enlace_quic::RelayConnection`];
//! - [`proxy`]: UDP forwarders that lose what the relay sends;
//! - [`measure`]: a process's memory and CPU time and the machine's load,
//!   from /proc;
//! - [`record`]: every version of every file `enlace` writes, copied while
//!   the binary is stopped before each write, fsync, rename and removal.
//!
//! It does not mock anything: every relay and every `enlace` is the binary
//! cargo built next to the test executable
//! (`cargo build -p enlace-relay -p enlace-client --bins`).
//!
//! A fixture that cannot set up fails the test at once, with what it saw
//! (a relay's log, a command's standard error): a test must never go on
//! with a half-made fixture.

// A fixture that cannot set up must fail the test loudly: unwrap is that.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::PathBuf;
use std::time::Duration;

pub mod home;
pub mod hostile;
pub mod mailbox;
pub mod measure;
pub mod net;
pub mod proxy;
pub mod record;
pub mod relay;

/// Generous bound for anything that should happen promptly: a relay
/// printing its address or exiting after a signal, an answer, a delivery.
/// Far above what a loaded two-core CI machine needs, so a test that runs
/// into it has found a hang, not a slow machine; tests wait for the event
/// itself, never for this long.
pub const WAIT: Duration = Duration::from_secs(60);

/// A number from the environment variable `name`, or `default` (the sizes
/// of the long forms of the reliability tests).
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Seconds since the Unix epoch: the client's clock for relay keys.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Where cargo put the `enlace` and `enlace-relay` binaries this test
/// runs (`target/<profile>/`), for a `PATH`.
pub fn binary_dir() -> PathBuf {
    binary("enlace").parent().unwrap().to_owned()
}

/// The binary `name` cargo built next to this test executable
/// (`target/<profile>/`).
fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p enlace-relay -p enlace-client --bins` first",
        path.display()
    );
    path
}
