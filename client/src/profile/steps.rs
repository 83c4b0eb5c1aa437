//! The store calls [`step`] before every write, fsync, rename and removal
//! it makes, so that tests can interrupt it there for real.
//!
//! Debug builds only (the test binaries; `cargo build --release` compiles
//! this to nothing), two environment switches:
//!
//! - `ENLACE_DEBUG_CRASH_AT=N`: the process kills itself with SIGKILL just
//!   before its N-th step (counted from 1 over the whole run), after
//!   printing `enlace: debug crash at step N (what)` on standard error. A
//!   test runs a command with N = 1, 2, ... until it finishes, and opens
//!   the profile with the passphrase after each kill.
//! - `ENLACE_DEBUG_STOP_AT_STEPS=1`: the process stops itself (SIGSTOP)
//!   before every step; the test that started it copies every file of the
//!   profile directory and continues it (SIGCONT). That records every
//!   version of every file the client writes.

/// A point just before one write, fsync, rename or removal.
#[cfg(all(debug_assertions, unix))]
pub(super) fn step(what: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    use rustix::process::{Signal, getpid, kill_process};

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static SWITCHES: OnceLock<(Option<u64>, bool)> = OnceLock::new();
    let (crash_at, stop) = *SWITCHES.get_or_init(|| {
        let crash_at = std::env::var("ENLACE_DEBUG_CRASH_AT")
            .ok()
            .and_then(|n| n.parse().ok());
        let stop = std::env::var_os("ENLACE_DEBUG_STOP_AT_STEPS").is_some();
        (crash_at, stop)
    });
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if crash_at == Some(n) {
        eprintln!("enlace: debug crash at step {n} ({what})");
        let _ = kill_process(getpid(), Signal::KILL);
        std::process::abort();
    }
    if stop {
        let _ = kill_process(getpid(), Signal::STOP);
    }
}

/// A point just before one write, fsync, rename or removal: nothing
/// happens here outside debug builds on Unix.
#[cfg(not(all(debug_assertions, unix)))]
#[inline(always)]
pub(super) fn step(_what: &'static str) {}
