//! An organizer's `enlace` profile in a directory of the test's own, run
//! through the real `enlace` binary. The profile is made in-process
//! ([`enlace_client::main_with`]) with the cheapest KDF a store may carry,
//! so every later run, which reads the parameters from the store, unlocks
//! it quickly; the binary itself always makes profiles with the real ones.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use enlace_client::Env;
use enlace_client::profile::Profile;
use enlace_client::profile::store::{KdfParams, Passphrase, Store};
use enlace_protocol::address::RelayAddress;
use serde_json::Value;

use crate::{WAIT, binary};

/// Every test profile's passphrase (given to the binary in
/// `ENLACE_PASSPHRASE`).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The cheapest KDF parameters a store may carry.
pub const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    time: 1,
    lanes: 1,
};

/// One organizer's profile directory.
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// Makes the profile `root/name` with [`PASSPHRASE`] and [`TEST_KDF`],
    /// its mailboxes on `relay`.
    pub fn new(root: &Path, name: &str, relay: &RelayAddress) -> Self {
        let dir = root.join(name);
        let env = Env {
            passphrase: Some(Passphrase::new(PASSPHRASE.into())),
            interactive: false,
            kdf: Some(TEST_KDF),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = ["enlace", "--home", dir.to_str().unwrap(), "init"];
        let code = enlace_client::main_with(args, &env, &mut &b""[..], &mut out, &mut err);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        let home = Self { dir };
        home.ok(&["relay", "set", &relay.to_string()]);
        home
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `enlace --home <dir> <args>` with the passphrase in the environment
    /// and nothing on standard input, ready to run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("enlace"));
        cmd.arg("--home")
            .arg(&self.dir)
            .args(args)
            .env("ENLACE_PASSPHRASE", PASSPHRASE)
            .env_remove("ENLACE_HOME")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `enlace <args>` to the end, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `enlace <args>` with `input` on standard input (message text
    /// never goes on the command line), whatever its exit code.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `enlace --json nucleus send NUCLEUS` with `text` on standard input;
    /// the command's JSON lines and exit code.
    pub fn nucleus_send(&self, nucleus: &str, text: &str) -> (Vec<Value>, Option<i32>) {
        let out = self.run_with_input(&["--json", "nucleus", "send", nucleus], text);
        let lines = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (lines, out.status.code())
    }

    /// The profile as it is on disk, opened with the passphrase (what the
    /// client itself keeps, for checks no command prints).
    pub fn profile(&self) -> Profile {
        let (_, profile) = Store::open(&self.dir, &Passphrase::new(PASSPHRASE.into())).unwrap();
        profile
    }

    /// The open store, to act as a modified client would
    /// ([`crate::hostile`]).
    pub fn store(&self) -> Store {
        Store::open(&self.dir, &Passphrase::new(PASSPHRASE.into()))
            .unwrap()
            .0
    }

    /// Runs and expects success; returns standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "enlace {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// JSON lines of a `--json` run that succeeded.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        self.ok(&full)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every event of one `read`.
    pub fn read(&self) -> Vec<Value> {
        self.json(&["read"])
    }

    /// The texts of the messages a `read` printed, in order.
    pub fn read_texts(&self) -> Vec<String> {
        self.read()
            .into_iter()
            .filter(|v| v["event"] == "message")
            .map(|v| v["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The status of every message sent, as `status` lists them.
    pub fn statuses(&self) -> Vec<String> {
        self.json(&["status"])
            .into_iter()
            .map(|v| v["status"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `enlace --json listen`, running until [`Listener::stop`] or drop.
    pub fn listen(&self) -> Listener {
        let mut child = self
            .command(&["--json", "listen"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Listener { child, events }
    }
}

/// A running `enlace listen` and the JSON lines it prints.
#[derive(Debug)]
pub struct Listener {
    child: Child,
    events: mpsc::Receiver<Value>,
}

impl Listener {
    /// The text of the next message it prints (within [`WAIT`]).
    pub fn next_message(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .events
                .recv_timeout(left)
                .expect("no message arrived in time");
            if v["event"] == "message" {
                return v["text"].as_str().unwrap().to_owned();
            }
        }
    }

    /// Kills it and waits until it is gone.
    pub fn stop(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `inviter` invites `accepter`; both end up with each other as contacts
/// named `as_accepter` (in the inviter's list) and `as_inviter`.
pub fn connect(inviter: &Home, as_accepter: &str, accepter: &Home, as_inviter: &str) {
    let lines = inviter.json(&["invite", "--name", as_accepter]);
    let code = lines[0]["code"].as_str().unwrap().to_owned();
    accepter.ok(&["accept", &code, "--name", as_inviter]);
    let events = inviter.read();
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "contact" && v["name"] == as_accepter),
        "{events:?}"
    );
}
