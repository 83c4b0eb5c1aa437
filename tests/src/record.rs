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

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::process::{Pid, Signal, WaitOptions, kill_process, waitpid};

/// Records the versions of the files under some directories.
#[derive(Debug, Default)]
pub struct Recorder {
    watched: Mutex<Vec<PathBuf>>,
    /// Every distinct content seen at each path, oldest first.
    versions: Mutex<BTreeMap<PathBuf, Vec<Vec<u8>>>>,
    stops: AtomicUsize,
    runs: AtomicUsize,
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
        let mut versions = self.versions.lock().unwrap();
        for path in paths {
            // A file removed between listing and reading is simply gone.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let seen = versions.entry(path).or_default();
            if !seen.contains(&bytes) {
                seen.push(bytes);
            }
        }
    }

    /// Runs `cmd` to its end, stopping it before each of its writes to
    /// copy the files; returns its output as `Command::output` would.
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
    pub fn versions(&self) -> BTreeMap<PathBuf, Vec<Vec<u8>>> {
        self.versions.lock().unwrap().clone()
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
