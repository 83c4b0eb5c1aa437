//! The `enlace` CLI against a real relay: organizers' homes in temporary
//! directories, the real binaries, nothing mocked.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use enlace_client::Env;
use enlace_client::profile::store::{KdfParams, Passphrase};

const PASS: &str = "correct horse battery staple";

/// The cheapest KDF parameters a store may carry: profiles for these tests
/// are made in-process with them (the binary always uses the real ones).
const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    time: 1,
    lanes: 1,
};

const WAIT: Duration = Duration::from_secs(60);

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo test --workspace`",
        path.display()
    );
    path
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A relay process on a fixed port, so it can be restarted in place.
pub(crate) struct Relay {
    child: Option<Child>,
    /// Kept open so the relay never writes to a closed pipe.
    stdout: Option<BufReader<std::process::ChildStdout>>,
    dir: PathBuf,
    port: u16,
    address: String,
}

impl Relay {
    pub(crate) fn start(dir: &Path) -> Self {
        let mut relay = Self {
            child: None,
            stdout: None,
            dir: dir.to_owned(),
            port: free_udp_port(),
            address: String::new(),
        };
        relay.restart();
        relay
    }

    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none());
        let mut child = Command::new(bin("enlace-relay"))
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("enlace://"), "relay printed {line:?}");
        self.address = line.trim().to_owned();
        self.child = Some(child);
        self.stdout = Some(stdout);
    }

    /// kill -9: no chance to flush or say goodbye.
    pub(crate) fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One organizer's profile directory.
pub(crate) struct Home {
    dir: PathBuf,
}

impl Home {
    pub(crate) fn new(root: &Path, name: &str, relay: &Relay) -> Self {
        let dir = root.join(name);
        let env = Env {
            passphrase: Some(Passphrase::new(PASS.into())),
            interactive: false,
            kdf: Some(TEST_KDF),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = ["enlace", "--home", dir.to_str().unwrap(), "init"];
        let code = enlace_client::main_with(args, &env, &mut &b""[..], &mut out, &mut err);
        assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
        let home = Self { dir };
        home.ok(&["relay", "set", &relay.address]);
        home
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("enlace"));
        cmd.arg("--home")
            .arg(&self.dir)
            .args(args)
            .env("ENLACE_PASSPHRASE", PASS)
            .env_remove("ENLACE_HOME")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs and expects success; returns standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "enlace {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// JSON lines of a `--json` run that succeeded.
    pub(crate) fn json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        self.ok(&full)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The texts of the messages a `read` printed, in order.
    pub(crate) fn read_texts(&self) -> Vec<String> {
        self.json(&["read"])
            .into_iter()
            .filter(|v| v["event"] == "message")
            .map(|v| v["text"].as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn statuses(&self) -> Vec<String> {
        self.json(&["status"])
            .into_iter()
            .map(|v| v["status"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// `inviter` invites `accepter`; both end up with each other as contacts
/// named `as_accepter` (in the inviter's list) and `as_inviter`.
pub(crate) fn connect(inviter: &Home, as_accepter: &str, accepter: &Home, as_inviter: &str) {
    let lines = inviter.json(&["invite", "--name", as_accepter]);
    let code = lines[0]["code"].as_str().unwrap().to_owned();
    accepter.ok(&["accept", &code, "--name", as_inviter]);
    let events = inviter.json(&["read"]);
    assert!(
        events
            .iter()
            .any(|v| v["event"] == "contact" && v["name"] == as_accepter),
        "{events:?}"
    );
}

#[test]
fn invite_accept_and_messages_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    connect(&ana, "Ben", &ben, "Ana");

    ben.ok(&["send", "Ana", "asamblea el jueves a las 6"]);
    assert_eq!(ana.read_texts(), ["asamblea el jueves a las 6"]);
    // Text from standard input, long enough for several envelopes.
    let long: String = (0..400)
        .map(|i| format!("punto {i} del pliego; "))
        .collect();
    let mut child = ana
        .command(&["send", "Ben"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{long}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(long.len() > 3 * 1900);
    assert_eq!(ben.read_texts(), [long]);
    // Ben's read sent a receipt; Ana's next read sees it.
    assert_eq!(ana.read_texts(), Vec::<String>::new());
    assert_eq!(ana.statuses(), ["delivered"]);
    assert_eq!(ben.statuses(), ["delivered"]);

    let contacts = ana.json(&["contacts"]);
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["name"], "Ben");
    assert_eq!(contacts[0]["verification"], "unverified");

    // Both sides compute the same safety number.
    let a = ana.json(&["verify", "Ben"]);
    let b = ben.json(&["verify", "Ana"]);
    assert_eq!(a[0]["safety_number"], b[0]["safety_number"]);
    assert_eq!(a[0]["safety_number"].as_str().unwrap().len(), 60);
    ana.ok(&["verify", "Ben", "--confirm"]);
    assert_eq!(ana.json(&["contacts"])[0]["verification"], "verified");
}

#[test]
fn offline_recipient_reads_everything_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    let cai = Home::new(tmp.path(), "cai", &relay);
    connect(&ana, "Ben", &ben, "Ana");
    connect(&cai, "Ben", &ben, "Cai");
    let texts: Vec<String> = (1..=6).map(|i| format!("mensaje {i}")).collect();
    for t in &texts {
        ben.ok(&["send", "Ana", t]);
    }
    ben.ok(&["send", "Cai", "hola Cai"]);
    assert_eq!(ana.read_texts(), texts);
    assert_eq!(ana.read_texts(), Vec::<String>::new());
    assert_eq!(cai.read_texts(), ["hola Cai"]);
}

/// Reads `listen`'s JSON lines on a thread.
fn spawn_listen(home: &Home) -> (Child, mpsc::Receiver<serde_json::Value>) {
    let mut child = home
        .command(&["--json", "listen"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
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
    (child, rx)
}

fn next_message(rx: &mpsc::Receiver<serde_json::Value>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = rx.recv_timeout(left).expect("no message arrived in time");
        if v["event"] == "message" {
            return v["text"].as_str().unwrap().to_owned();
        }
    }
}

#[test]
fn listen_receives_and_survives_relay_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    connect(&ana, "Ben", &ben, "Ana");

    let (mut listener, rx) = spawn_listen(&ana);
    ben.ok(&["send", "Ana", "primero"]);
    assert_eq!(next_message(&rx, WAIT), "primero");

    relay.kill();
    // While the relay is down, Ben's message waits in his outbox.
    let out = ben.run(&["send", "Ana", "durante la caída"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kept in the outbox"), "{err}");
    assert_eq!(err.lines().count(), 1);
    assert_eq!(ben.statuses(), ["stored", "queued"]);

    relay.restart();
    // The next command that touches the network sends it, exactly once.
    ben.ok(&["send", "Ana", "después"]);
    assert_eq!(next_message(&rx, WAIT), "durante la caída");
    assert_eq!(next_message(&rx, WAIT), "después");
    listener.kill().unwrap();
    listener.wait().unwrap();
    assert_eq!(ana.read_texts(), Vec::<String>::new());
}

#[test]
fn outbox_waits_for_the_relay_and_delivers_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    connect(&ana, "Ben", &ben, "Ana");

    relay.kill();
    for t in ["uno", "dos"] {
        assert_eq!(ben.run(&["send", "Ana", t]).status.code(), Some(4));
    }
    assert_eq!(ben.statuses(), ["queued", "queued"]);
    relay.restart();
    // `read` sends the outbox too.
    ben.ok(&["read"]);
    assert_eq!(ben.statuses(), ["stored", "stored"]);
    assert_eq!(ana.read_texts(), ["uno", "dos"]);
    assert_eq!(ana.read_texts(), Vec::<String>::new());
    ben.ok(&["read"]);
    assert_eq!(ben.statuses(), ["delivered", "delivered"]);
}

#[test]
fn changed_identity_refused_until_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    connect(&ana, "Ben", &ben, "Ana");
    ana.ok(&["verify", "Ben", "--confirm"]);

    // "Ben" comes back with a new identity (a new laptop, or an impostor).
    ben.ok(&["wipe", "--yes"]);
    let ben = Home::new(tmp.path(), "ben", &relay);
    connect(&ben, "Ana", &ana, "Ben");

    assert_eq!(
        ana.json(&["contacts"])[0]["verification"],
        "identity-changed"
    );
    let out = ana.run(&["send", "Ben", "¿eres tú?"]);
    assert_eq!(out.status.code(), Some(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity key has changed"), "{err}");
    assert!(err.contains("enlace verify Ben"), "{err}");
    assert_eq!(ana.statuses(), Vec::<String>::new());

    ana.ok(&["verify", "Ben", "--confirm"]);
    ana.ok(&["send", "Ben", "ahora sí"]);
    assert_eq!(ben.read_texts(), ["ahora sí"]);
}

#[test]
fn nothing_readable_left_after_a_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    connect(&ana, "Benedicta Yupanqui", &ben, "Ana");
    ana.ok(&[
        "send",
        "Benedicta Yupanqui",
        "el fondo de huelga está en la caja azul",
    ]);
    assert_eq!(
        ben.read_texts(),
        ["el fondo de huelga está en la caja azul"]
    );
    for home in [&ana.dir, &ben.dir] {
        for entry in std::fs::read_dir(home).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for needle in [
                &b"caja azul"[..],
                b"Benedicta",
                b"Yupanqui",
                b"127.0.0.1",
                PASS.as_bytes(),
            ] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle));
            }
        }
    }
    ana.ok(&["wipe", "--yes"]);
    assert!(!ana.dir.exists());
    assert_eq!(ana.run(&["read"]).status.code(), Some(1));
}

/// A mailbox that refuses us (here: full) holds back only what goes to it;
/// messages to other contacts on the same relay still go out.
#[test]
fn a_refusing_mailbox_does_not_block_other_contacts() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", &relay);
    let ben = Home::new(tmp.path(), "ben", &relay);
    let cai = Home::new(tmp.path(), "cai", &relay);
    connect(&ana, "Ben", &ben, "Ana");
    connect(&ana, "Cai", &cai, "Ana");

    // Ben never reads: three long texts overflow his mailbox's quota of 128
    // envelopes, so the last one stays in Ana's outbox.
    let long: String = (0..5000).map(|i| format!("{i:>20}")).collect();
    let codes: Vec<Option<i32>> = (0..3)
        .map(|_| ana.run(&["send", "Ben", &long]).status.code())
        .collect();
    assert_eq!(codes.last(), Some(&Some(4)), "{codes:?}");
    assert_eq!(ana.statuses().iter().filter(|s| *s == "queued").count(), 1);

    // The refused envelopes are retried first, and refused again, but the
    // message to Cai goes out all the same.
    ana.ok(&["send", "Cai", "reunión mañana"]);
    assert_eq!(cai.read_texts(), ["reunión mañana"]);
}
