//! What the load and reliability tests read about a process (a relay) and
//! the machine, from /proc: resident memory, CPU time, load average.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Linux counts CPU time in ticks of 1/100 s (USER_HZ) in /proc.
const TICKS_PER_SEC: f64 = 100.0;

/// How often [`RssWatch`] samples.
const RSS_SAMPLE: Duration = Duration::from_millis(200);

/// (VmRSS, VmHWM) of a running process in KiB.
pub fn rss_kib(pid: u32) -> (u64, u64) {
    let field = |name| status_kib(pid, name).unwrap_or_else(|| panic!("no {name} for {pid}"));
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds (user + system) a process has used; 0 if it is gone.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / TICKS_PER_SEC
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

/// A task sampling a process's VmRSS until [`RssWatch::finish`], for its
/// peak while something happens (VmHWM covers the process's whole life).
#[derive(Debug)]
pub struct RssWatch {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    /// Starts sampling `pid` on the current runtime.
    pub fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (peak, stopped) = (peak_kib.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(RSS_SAMPLE).await;
            }
        });
        Self {
            peak_kib,
            stop,
            task,
        }
    }

    /// Stops sampling; the highest VmRSS seen, in KiB.
    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.peak_kib.load(Ordering::Relaxed)
    }
}

/// A `kB` field of /proc/<pid>/status, if the process is there.
fn status_kib(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
