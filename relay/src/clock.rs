//! The relay's clock: the only place that reads time.
//!
//! Everything else gets `now` from a [`Clock`] or as an argument, so the
//! request logic and the policies are plain functions of their inputs, and
//! the hidden `--clock-offset-secs` flag shifts every wall-clock reading at
//! once (arrival times and expiry alike, docs/storage.md).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// System time shifted by the configured offset, and monotonic instants.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_secs: i64,
}

impl Clock {
    /// A clock shifted by `offset_secs`.
    pub fn new(offset_secs: i64) -> Self {
        Self { offset_secs }
    }

    /// Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        real.saturating_add_signed(self.offset_secs.saturating_mul(1000))
    }

    /// Unix seconds.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        real.saturating_add_signed(self.offset_secs)
    }

    /// The monotonic clock, unshifted: for retry times and windows that
    /// must not jump when the wall clock does.
    pub fn instant(&self) -> Instant {
        Instant::now()
    }
}
