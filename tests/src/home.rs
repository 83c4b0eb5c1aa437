//! An organizer's `enlace` profile in a directory of the test's own, run
//! through the real `enlace` binary. The profile is made in-process
//! ([`enlace_client::main_with`]) with the cheapest KDF a store may carry,
//! so every later run, which reads the parameters from the store, unlocks
//! it quickly; the binary itself always makes profiles with the real ones.
//!
//! The binary refuses message text and invitation codes on its command
//! line. Tests still write `home.ok(&["send", "Ana", "hola"])`: the fixture
//! moves the text (and an invitation code of `accept`) to standard input,
//! so the binary runs `enlace send Ana` with `hola` on its standard input,
//! the safe form. [`Home::command_verbatim`] runs exactly what it is given.

use std::io::{BufRead, BufReader, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use enlace_client::Env;
use enlace_client::profile::Profile;
use enlace_client::profile::store::{KdfParams, Passphrase, Store};
use enlace_protocol::address::RelayAddress;
use serde_json::Value;

use crate::record::Recorder;
use crate::{WAIT, binary};

/// Every test profile's passphrase (given to the binary in
/// `ENLACE_PASSPHRASE`).
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The cheapest KDF parameters a store may carry.
pub const TEST_KDF: KdfParams = KdfParams::WEAKEST;

/// One organizer's profile directory.
#[derive(Debug)]
pub struct Home {
    dir: PathBuf,
    /// Records every version of every file the runs write, if set.
    recorder: Option<Arc<Recorder>>,
}

/// Where the secret arguments of `args` go: the arguments without them,
/// and the text to give on standard input. `send NAME TEXT...`,
/// `nucleus send NAME TEXT...` and `accept CODE` (a code other than `-`)
/// lose their text; anything else is left as it is.
fn safe_form(args: &[&str]) -> (Vec<String>, Option<String>) {
    let mut out: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    // The subcommand: the first word that is not an option or its value.
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match *a {
            "--home" | "--passphrase-file" | "--passphrase-fd" => i += 2,
            a if a.starts_with("--") => i += 1,
            _ => break,
        }
    }
    let text_from = match (args.get(i), args.get(i + 1)) {
        (Some(&"send"), _) => Some(i + 2),
        (Some(&"nucleus"), Some(&"send")) => Some(i + 3),
        (Some(&"accept"), _) => {
            let mut j = i + 1;
            let mut code = None;
            while let Some(a) = args.get(j) {
                if *a == "--name" {
                    j += 2;
                } else {
                    code = Some(j);
                    break;
                }
            }
            return match code {
                Some(j) if args[j] != "-" => {
                    out[j] = "-".to_owned();
                    (out, Some(args[j].to_owned()))
                }
                _ => (out, None),
            };
        }
        _ => None,
    };
    match text_from {
        Some(k) if args.len() > k => {
            let text = args[k..].join(" ");
            out.truncate(k);
            (out, Some(text))
        }
        _ => (out, None),
    }
}

/// An unnamed temporary file holding `text`, to give as standard input.
fn input_file(text: &str) -> std::fs::File {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.rewind().unwrap();
    f
}

impl Home {
    /// Makes the profile `root/name` with [`PASSPHRASE`] and [`TEST_KDF`],
    /// its mailboxes on `relay`.
    pub fn new(root: &Path, name: &str, relay: &RelayAddress) -> Self {
        Self::make(root, name, relay, None)
    }

    /// As [`Home::new`], and every later run of the binary is recorded by
    /// `recorder` (which watches the profile directory from now on).
    pub fn recorded(
        root: &Path,
        name: &str,
        relay: &RelayAddress,
        recorder: Arc<Recorder>,
    ) -> Self {
        Self::make(root, name, relay, Some(recorder))
    }

    fn make(
        root: &Path,
        name: &str,
        relay: &RelayAddress,
        recorder: Option<Arc<Recorder>>,
    ) -> Self {
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
        if let Some(r) = &recorder {
            // `init` ran in this process: what it wrote is recorded from
            // here (its temporary data file held the same bytes).
            r.watch(&dir);
            r.snapshot();
        }
        let home = Self { dir, recorder };
        home.ok(&["relay", "set", &relay.to_string()]);
        home
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `enlace --home <dir> <args>` with the passphrase in the environment,
    /// ready to run. Message text and invitation codes in `args` are given
    /// on standard input instead (see the module's documentation);
    /// otherwise standard input is empty.
    pub fn command(&self, args: &[&str]) -> Command {
        let (args, input) = safe_form(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = self.command_verbatim(&args);
        if let Some(text) = input {
            cmd.stdin(input_file(&text));
        }
        cmd
    }

    /// `enlace --home <dir> <args>` exactly, with the passphrase in the
    /// environment and nothing on standard input.
    pub fn command_verbatim(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary("enlace"));
        cmd.arg("--home")
            .arg(&self.dir)
            .args(args)
            .env("ENLACE_PASSPHRASE", PASSPHRASE)
            .env_remove("ENLACE_HOME")
            .stdin(Stdio::null());
        cmd
    }

    /// `enlace --home <dir> <args>` exactly, with `input` on standard
    /// input and the passphrase in the environment.
    pub fn command_with_input(&self, args: &[&str], input: &str) -> Command {
        let mut cmd = self.command_verbatim(args);
        cmd.stdin(input_file(input));
        cmd
    }

    /// Runs `cmd` to the end (recorded, if this home is).
    pub fn output(&self, cmd: Command) -> Output {
        match &self.recorder {
            Some(r) => r.run(cmd),
            None => {
                let mut cmd = cmd;
                cmd.output().unwrap()
            }
        }
    }

    /// Runs `enlace <args>` to the end, whatever its exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.output(self.command(args))
    }

    /// `enlace send NAME` with `text` on standard input; expects success.
    pub fn send(&self, name: &str, text: &str) -> String {
        self.ok(&["send", name, text])
    }

    /// `enlace nucleus send NUCLEUS` with `text` on standard input;
    /// expects success.
    pub fn nucleus_send(&self, nucleus: &str, text: &str) -> String {
        self.ok(&["nucleus", "send", nucleus, text])
    }

    /// `enlace accept --name NAME` with `code` on standard input; expects
    /// success.
    pub fn accept(&self, code: &str, name: &str) -> String {
        self.ok(&["accept", code, "--name", name])
    }

    /// Runs `enlace <args>` with `input` on standard input (message text
    /// never goes on the command line), whatever its exit code.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        self.output(self.command_with_input(args, input))
    }

    /// `enlace --json nucleus send NUCLEUS` with `text` on standard input;
    /// the command's JSON lines and exit code.
    pub fn nucleus_send_json(&self, nucleus: &str, text: &str) -> (Vec<Value>, Option<i32>) {
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
    accepter.accept(&code, as_inviter);
    let events = inviter.read();
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "contact" && v["name"] == as_accepter),
        "{events:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::safe_form;

    #[test]
    fn secrets_move_to_standard_input() {
        let cases: [(&[&str], &[&str], Option<&str>); 7] = [
            (&["send", "Ana", "hola"], &["send", "Ana"], Some("hola")),
            (
                &["--json", "send", "Ana", "a", "b"],
                &["--json", "send", "Ana"],
                Some("a b"),
            ),
            (&["send", "Ana"], &["send", "Ana"], None),
            (
                &["nucleus", "send", "barrio", "x"],
                &["nucleus", "send", "barrio"],
                Some("x"),
            ),
            (
                &["accept", "enlace1-x", "--name", "Ana"],
                &["accept", "-", "--name", "Ana"],
                Some("enlace1-x"),
            ),
            (
                &["accept", "--name", "Ana", "enlace1-x"],
                &["accept", "--name", "Ana", "-"],
                Some("enlace1-x"),
            ),
            (
                &["--home", "send", "read"],
                &["--home", "send", "read"],
                None,
            ),
        ];
        for (args, want, input) in cases {
            let (got, text) = safe_form(args);
            assert_eq!(got, want, "{args:?}");
            assert_eq!(text.as_deref(), input, "{args:?}");
        }
    }
}
