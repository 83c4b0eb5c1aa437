//! The reliability and adversarial suite (docs/reliability.md): real
//! `enlace-relay` processes on 127.0.0.1, killed, flooded, starved of disk,
//! fed corrupt files and skewed clocks. Bounded forms run in CI; long forms
//! are `#[ignore]`d and take their sizes from environment variables.

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
#[path = "../e2e/support.rs"]
#[allow(dead_code)]
mod support;

/// A number from the environment, or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The load average, recorded with every figure (the machine is shared).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// (VmRSS, VmHWM) of a process in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}
