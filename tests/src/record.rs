//! Every version of every file `enlace` writes, as a forensic examiner
//! imaging the disk between any two of its operations would find it.
//!
//! [`Recorder::run`] starts the (debug) binary with
//! `ENLACE_DEBUG_STOP_AT_STEPS=1`: the client stops itself (SIGSTOP) just
//! before each write, fsync, rename and removal it makes. At every stop the
//! recorder reads every file under the watched directories from the disk
//! and keeps each content it has not seen at that path, then continues the
//! process; once it exits, it reads them once more. The client only
//! stops: the copies are made here, from the file system.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

/// One content a file had.
#[derive(Debug, Clone)]
pub struct Version {
    /// The snapshot that first saw it (snapshots are numbered from 0 in
    /// the order they were taken): versions of different files seen in
    /// the same snapshot were on the disk together.
    pub seen_at: usize,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Records the versions of the files under some directories.
#[derive(Debug, Default)]
pub struct Recorder {
    watched: Mutex<Vec<PathBuf>>,
    state: Mutex<State>,
    stops: AtomicUsize,
    runs: AtomicUsize,
}

#[derive(Debug, Default)]
struct State {
    /// Every distinct content seen at each path, oldest first.
    versions: BTreeMap<PathBuf, Vec<Version>>,
    /// Hashes of those contents, per path, to compare quickly.
    hashes: BTreeMap<PathBuf, HashSet<u64>>,
    snapshots: usize,
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

impl Recorder {
    /// A recorder watching nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `dir` (and everything under it) from now on.
    pub fn watch(&self, dir: &Path) {
        self.watched.lock().unwrap().push(dir.to_owned());
    }

    /// Reads every watched file now and keeps what is new.
    pub fn snapshot(&self) {
        let mut paths = Vec::new();
        for dir in self.watched.lock().unwrap().iter() {
            files_under(dir, &mut paths);
        }
        let mut state = self.state.lock().unwrap();
        let seen_at = state.snapshots;
        state.snapshots += 1;
        for path in paths {
            // A file removed between listing and reading is simply gone.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            if state
                .hashes
                .entry(path.clone())
                .or_default()
                .insert(hasher.finish())
            {
                state
                    .versions
                    .entry(path)
                    .or_default()
                    .push(Version { seen_at, bytes });
            }
        }
    }

    /// How many snapshots were taken so far: versions seen from now on
    /// have a `seen_at` of at least this.
    pub fn now(&self) -> usize {
        self.state.lock().unwrap().snapshots
    }

    /// Runs `cmd` to its end, stopping it before each of its writes to
    /// copy the files; returns its output as `Command::output` would.
    #[expect(
        clippy::zombie_processes,
        reason = "reaped by waitpid, which also reports its stops"
    )]
    pub fn run(&self, mut cmd: Command) -> Output {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let mut child = cmd
            .env("ENLACE_DEBUG_STOP_AT_STEPS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = Pid::from_child(&child);
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut buf).unwrap();
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stderr, &mut buf).unwrap();
            buf
        });
        let status = loop {
            let (_, status) = waitpid(Some(pid), WaitOptions::UNTRACED)
                .unwrap()
                .expect("a child to wait for");
            if status.stopped() {
                self.stops.fetch_add(1, Ordering::Relaxed);
                self.snapshot();
                kill_process(pid, Signal::CONT).unwrap();
                continue;
            }
            // Reaped here: `child.wait()` must not be called.
            break ExitStatus::from_raw(status.as_raw());
        };
        self.snapshot();
        Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        }
    }

    /// Every path written, with its distinct contents, oldest first.
    pub fn versions(&self) -> BTreeMap<PathBuf, Vec<Version>> {
        self.state.lock().unwrap().versions.clone()
    }

    /// How many times a run stopped before a write.
    pub fn stops(&self) -> usize {
        self.stops.load(Ordering::Relaxed)
    }

    /// How many runs were recorded.
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }
}
