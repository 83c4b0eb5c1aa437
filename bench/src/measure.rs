//! What the harness reads from /proc and the file system: a server's CPU
//! time and memory, the size of its data, the machine's load, and latency
//! statistics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Linux reports CPU times in clock ticks of 1/100 s (USER_HZ; 100 on
/// every architecture Linux supports for userspace ABI purposes).
const TICKS_PER_SEC: f64 = 100.0;

/// A server process and its data directory.
#[derive(Debug)]
pub struct Probe {
    pid: Option<u32>,
    data_dir: Option<PathBuf>,
}

impl Probe {
    pub fn new(pid: Option<u32>, data_dir: Option<PathBuf>) -> Self {
        Self { pid, data_dir }
    }

    /// Server CPU seconds (user + system, all threads) so far.
    pub fn cpu_secs(&self) -> Option<f64> {
        cpu_secs_of(&format!("/proc/{}/stat", self.pid?))
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        status_field(self.pid?, "VmRSS:")
    }

    /// Peak resident memory, KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        status_field(self.pid?, "VmHWM:")
    }

    /// Bytes the data directory occupies on disk (allocated blocks).
    pub fn disk_bytes(&self) -> Option<u64> {
        self.data_dir.as_deref().map(dir_bytes)
    }
}

/// CPU seconds this load generator has used.
pub fn own_cpu_secs() -> Option<f64> {
    cpu_secs_of("/proc/self/stat")
}

fn cpu_secs_of(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces: count after its ')'.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn dir_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            total += dir_bytes(&entry.path());
        } else {
            total += meta.blocks() * 512;
        }
    }
    total
}

/// The 1-minute load average and the two others, as /proc/loadavg says.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Send and delivery times of every message, by index.
#[derive(Debug)]
pub struct Tracker {
    origin: Instant,
    sent: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    count: AtomicU64,
    duplicates: AtomicU64,
}

impl Tracker {
    pub fn new(messages: usize) -> Self {
        Self {
            origin: Instant::now(),
            sent: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            delivered: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Message `index` is about to be published.
    pub fn sent(&self, index: u64) {
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| self.sent.get(i)) {
            slot.store(self.now_ns(), Ordering::Relaxed);
        }
    }

    /// Message `index` reached its subscriber. Returns false for an index
    /// out of range (a corrupt message); a second delivery is counted as a
    /// duplicate.
    pub fn delivered(&self, index: u64) -> bool {
        let Some(slot) = usize::try_from(index)
            .ok()
            .and_then(|i| self.delivered.get(i))
        else {
            return false;
        };
        if slot
            .compare_exchange(0, self.now_ns(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            self.count.fetch_add(1, Ordering::Relaxed);
        } else {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    pub fn delivered_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// Publish-to-delivery latencies in microseconds, sorted.
    pub fn latencies_us(&self) -> Vec<f64> {
        let mut out: Vec<f64> = self
            .sent
            .iter()
            .zip(&self.delivered)
            .filter_map(|(s, d)| {
                let (s, d) = (s.load(Ordering::Relaxed), d.load(Ordering::Relaxed));
                (s > 0 && d >= s).then(|| (d - s) as f64 / 1_000.0)
            })
            .collect();
        out.sort_by(f64::total_cmp);
        out
    }
}

/// The `q` quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

/// At most `points` (latency µs, cumulative fraction) pairs of the CDF.
pub fn cdf(sorted: &[f64], points: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    let step = n.div_ceil(points).max(1);
    let mut out: Vec<(f64, f64)> = (step - 1..n)
        .step_by(step)
        .filter_map(|i| sorted.get(i).map(|v| (*v, (i + 1) as f64 / n as f64)))
        .collect();
    if out.last().map(|p| p.1) != Some(1.0)
        && let Some(v) = sorted.last()
    {
        out.push((*v, 1.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(500.0));
        assert_eq!(quantile(&v, 0.99), Some(990.0));
        assert_eq!(quantile(&v, 0.999), Some(999.0));
        assert_eq!(quantile(&v, 1.0), Some(1000.0));
        assert_eq!(quantile(&[], 0.5), None);
        let c = cdf(&v, 10);
        assert_eq!(c.len(), 10);
        assert_eq!(c.last(), Some(&(1000.0, 1.0)));
    }

    #[test]
    fn tracker_counts_duplicates_and_completion() {
        let t = Tracker::new(2);
        t.sent(0);
        t.sent(1);
        assert!(t.delivered(0));
        assert!(t.delivered(0));
        assert!(!t.delivered(7));
        assert_eq!((t.delivered_count(), t.duplicates()), (1, 1));
        assert!(t.delivered(1));
        assert_eq!(t.latencies_us().len(), 2);
    }

    #[test]
    fn reads_own_cpu_time() {
        assert!(own_cpu_secs().is_some());
        let p = Probe::new(Some(std::process::id()), None);
        assert!(p.rss_kib().unwrap_or(0) > 0);
        assert!(p.peak_rss_kib().unwrap_or(0) >= p.rss_kib().unwrap_or(0));
    }
}
