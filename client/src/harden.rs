//! Process hardening, done first thing by `main`: the process makes no
//! core file and is not dumpable, so neither a crash nor another process
//! of the same user (a debugger, `/proc/PID/mem`) can copy the passphrase,
//! keys or decrypted messages out of its memory.
//!
//! - `RLIMIT_CORE` is set to 0, soft and hard: no core file, and the
//!   process cannot raise it again.
//! - On Linux, `prctl(PR_SET_DUMPABLE, 0)`: no core dump even if the limit
//!   is raised from outside (`prlimit`) or the kernel pipes cores to a
//!   handler, `/proc/PID/{mem,environ,maps}` become readable by root only,
//!   and processes of the same user cannot `ptrace` it.
//!
//! Through `rustix`, without unsafe code of our own. The in-process test
//! library (`main_with`) does not call it: tests run in the test process.

use crate::error::Error;

/// Makes the process non-dumpable and sets its core file limit to 0.
pub fn harden_process() -> Result<(), Error> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, setrlimit};
        let none = Rlimit {
            current: Some(0),
            maximum: Some(0),
        };
        setrlimit(Resource::Core, none)
            .map_err(|e| Error::Harden("cannot turn core files off", e.into()))?;
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{DumpableBehavior, set_dumpable_behavior};
        set_dumpable_behavior(DumpableBehavior::NotDumpable)
            .map_err(|e| Error::Harden("cannot make the process non-dumpable", e.into()))?;
    }
    Ok(())
}

/// What the kernel says of this process: whether it is dumpable (`None`
/// where there is no such attribute) and its core file limit in bytes
/// (`None` for unlimited or unknown).
pub(crate) fn state() -> (Option<bool>, Option<u64>) {
    #[cfg(target_os = "linux")]
    let dumpable = rustix::process::dumpable_behavior()
        .ok()
        .map(|b| b != rustix::process::DumpableBehavior::NotDumpable);
    #[cfg(not(target_os = "linux"))]
    let dumpable = None;
    #[cfg(unix)]
    let core = rustix::process::getrlimit(rustix::process::Resource::Core).current;
    #[cfg(not(unix))]
    let core = None;
    (dumpable, core)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening this test's own process (each test is a process of its
    /// own under nextest; under `cargo test` it affects the test binary
    /// only, which then makes no core file either).
    #[test]
    fn the_process_reports_non_dumpable_and_no_core_files() {
        harden_process().unwrap();
        let (dumpable, core) = state();
        if cfg!(target_os = "linux") {
            assert_eq!(dumpable, Some(false));
        }
        assert_eq!(core, Some(0));
        // Raising the limit again is refused (without privileges) or
        // leaves the process non-dumpable all the same.
        harden_process().unwrap();
    }
}
