//! Nuclei with the real `enlace` CLI and two real relays: four members
//! whose mailboxes sit on two relays exchange messages both ways; a member
//! added later sees only what is sent after; a removed member receives
//! nothing sent after its removal; members who had no session with each
//! other are introduced through their adder.
//!
//! Nothing here depends on the route an envelope takes between relays
//! (direct to the contact's relay today, through the home relay once
//! relays forward): only what each member can read is checked.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use enlace_client::Env;
use enlace_client::profile::store::{KdfParams, Passphrase};
use serde_json::Value;

const PASS: &str = "correct horse battery staple";

/// Cheapest KDF a store may carry; profiles are made in-process with it.
const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    time: 1,
    lanes: 1,
};

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

/// A relay process on an ephemeral port of 127.0.0.1.
struct Relay {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    address: String,
}

impl Relay {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(bin("enlace-relay"))
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("enlace://"), "relay printed {line:?}");
        Self {
            child,
            _stdout: stdout,
            address: line.trim().to_owned(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One organizer's profile, its mailboxes on `relay`.
struct Home {
    dir: PathBuf,
}

impl Home {
    fn new(root: &Path, name: &str, relay: &Relay) -> Self {
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

    fn run(&self, args: &[&str]) -> Output {
        Command::new(bin("enlace"))
            .arg("--home")
            .arg(&self.dir)
            .args(args)
            .env("ENLACE_PASSPHRASE", PASS)
            .env_remove("ENLACE_HOME")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "enlace {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        self.ok(&full)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every event of one `read`.
    fn read(&self) -> Vec<Value> {
        self.json(&["read"])
    }

    /// The nucleus messages a `read` printed: (nucleus, from, text).
    fn read_group(&self) -> Vec<(String, String, String)> {
        group_messages(&self.read())
    }

    /// The member list of a nucleus: (shown name, has a session).
    fn members(&self, nucleus: &str) -> Vec<(String, bool)> {
        self.json(&["nucleus", "members", nucleus])
            .iter()
            .map(|v| {
                (
                    v["member"].as_str().unwrap().to_owned(),
                    v["session"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

fn group_messages(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| {
            (
                v["nucleus"].as_str().unwrap_or("").to_owned(),
                v["from"].as_str().unwrap().to_owned(),
                v["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// `inviter` invites `accepter`; they become contacts `as_accepter` (in the
/// inviter's list) and `as_inviter`.
fn connect(inviter: &Home, as_accepter: &str, accepter: &Home, as_inviter: &str) {
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

fn sorted(mut v: Vec<(String, String, String)>) -> Vec<(String, String, String)> {
    v.sort();
    v
}

fn msg(nucleus: &str, from: &str, text: &str) -> (String, String, String) {
    (nucleus.into(), from.into(), text.into())
}

/// One `read` on each home, all at once (each home is its own profile and
/// process). A `read` waits for 2 s of silence before it exits, so reading
/// in turn would cost that wait once per home.
fn read_each(homes: &[&Home]) -> Vec<Vec<Value>> {
    std::thread::scope(|s| {
        let reads: Vec<_> = homes.iter().map(|h| s.spawn(|| h.read())).collect();
        reads.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// The group messages of one `read` on each home, all at once.
fn read_groups(homes: &[&Home]) -> Vec<Vec<(String, String, String)>> {
    read_each(homes).iter().map(|e| group_messages(e)).collect()
}

/// `rounds` rounds of reads on every home at once: each step of gossip,
/// introductions and handshakes needs one member's read after another's,
/// and a round lets every member act on what the others sent before it
/// (or during it), so this settles without timing. Returns the group
/// messages each saw.
fn settle(homes: &[&Home], rounds: usize) -> Vec<Vec<(String, String, String)>> {
    let mut seen = vec![Vec::new(); homes.len()];
    for _ in 0..rounds {
        for (s, more) in seen.iter_mut().zip(read_groups(homes)) {
            s.extend(more);
        }
    }
    seen
}

/// Rounds of reads (at most `max`) until every home sees `count` members
/// of `nucleus`, each with a session. Returns the group messages seen.
fn settle_members(
    homes: &[&Home],
    nucleus: &str,
    count: usize,
    max: usize,
) -> Vec<Vec<(String, String, String)>> {
    let mut seen = vec![Vec::new(); homes.len()];
    for _ in 0..max {
        for (s, more) in seen.iter_mut().zip(settle(homes, 1)) {
            s.extend(more);
        }
        let done = homes.iter().all(|h| {
            // Not a member yet fails: not done.
            let out = h.run(&["--json", "nucleus", "members", nucleus]);
            let members: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            out.status.success()
                && members.len() == count
                && members.iter().all(|m| m["session"] == true)
        });
        if done {
            return seen;
        }
    }
    for home in homes {
        let members = home.members(nucleus);
        assert_eq!(members.len(), count, "{members:?}");
        assert!(members.iter().all(|(_, session)| *session), "{members:?}");
    }
    seen
}

#[test]
fn nucleus_on_two_relays_add_remove_and_introductions() {
    let tmp = tempfile::tempdir().unwrap();
    let relay1 = Relay::start(&tmp.path().join("relay1"));
    let relay2 = Relay::start(&tmp.path().join("relay2"));
    let ana = Home::new(tmp.path(), "ana", &relay1);
    let ben = Home::new(tmp.path(), "ben", &relay1);
    let cai = Home::new(tmp.path(), "cai", &relay2);
    let dia = Home::new(tmp.path(), "dia", &relay2);

    // Ana knows everyone; nobody else knows anyone.
    connect(&ana, "Ben", &ben, "Ana");
    connect(&ana, "Cai", &cai, "Ana");
    connect(&ana, "Dia", &dia, "Ana");

    ana.ok(&["nucleus", "create", "barrio"]);
    for who in ["Ben", "Cai", "Dia"] {
        ana.ok(&["nucleus", "add", "barrio", who]);
    }

    // Joining, introductions through Ana, handshakes.
    settle_members(&[&ben, &cai, &dia, &ana], "barrio", 4, 12);

    // Everyone sees four members and holds a session with each.
    for home in [&ana, &ben, &cai, &dia] {
        let members = home.members("barrio");
        assert_eq!(members.len(), 4, "{members:?}");
        assert!(members.iter().all(|(_, session)| *session), "{members:?}");
    }
    // Ben and Cai met through Ana: named after the nucleus, introduced,
    // unverified.
    let ben_contacts = ben.json(&["contacts"]);
    let names: Vec<&str> = ben_contacts
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"barrio/Cai"), "{names:?}");
    assert!(names.contains(&"barrio/Dia"), "{names:?}");
    let cai_for_ben = ben_contacts
        .iter()
        .find(|c| c["name"] == "barrio/Cai")
        .unwrap();
    assert_eq!(cai_for_ben["introduced_by"], "Ana");
    assert_eq!(cai_for_ben["verification"], "unverified");
    // The side that made the invitation marks it introduced too.
    let dia_contacts = dia.json(&["contacts"]);
    let ben_for_dia = dia_contacts
        .iter()
        .find(|c| c["name"] == "barrio/Ben")
        .unwrap();
    assert_eq!(ben_for_dia["introduced_by"], "Ana", "{dia_contacts:?}");
    let intro = ben
        .json(&["nucleus", "members", "barrio"])
        .into_iter()
        .find(|m| m["member"] == "barrio/Cai")
        .unwrap();
    assert_eq!(intro["introduced_by"], "Ana");
    assert_eq!(intro["verification"], "unverified");

    // Both ways across the relays: Ben (relay 1) and Dia (relay 2).
    ben.ok(&["nucleus", "send", "barrio", "asamblea el jueves"]);
    dia.ok(&["nucleus", "send", "barrio", "llevo el megáfono"]);
    // Messages from different members arrive on different mailboxes, in
    // no fixed order between them.
    let [ana_got, cai_got, ben_got, dia_got]: [_; 4] =
        read_groups(&[&ana, &cai, &ben, &dia]).try_into().unwrap();
    assert_eq!(
        sorted(ana_got),
        [
            msg("barrio", "Ben", "asamblea el jueves"),
            msg("barrio", "Dia", "llevo el megáfono"),
        ]
    );
    assert_eq!(
        sorted(cai_got),
        [
            msg("barrio", "barrio/Ben", "asamblea el jueves"),
            msg("barrio", "barrio/Dia", "llevo el megáfono"),
        ]
    );
    assert_eq!(ben_got, [msg("barrio", "barrio/Dia", "llevo el megáfono")]);
    assert_eq!(dia_got, [msg("barrio", "barrio/Ben", "asamblea el jueves")]);
    // Nothing twice.
    settle(&[&ana, &ben, &cai, &dia], 1)
        .iter()
        .for_each(|seen| assert!(seen.is_empty(), "{seen:?}"));

    // Eva (relay 2) joins later: she sees what is sent from now on only.
    let eva = Home::new(tmp.path(), "eva", &relay2);
    connect(&ana, "Eva", &eva, "Ana");
    ana.ok(&["nucleus", "send", "barrio", "antes de Eva"]);
    ana.ok(&["nucleus", "add", "barrio", "Eva"]);
    ana.ok(&["nucleus", "send", "barrio", "bienvenida Eva"]);
    assert_eq!(eva.read_group(), [msg("barrio", "Ana", "bienvenida Eva")]);
    let seen = settle_members(&[&ben, &cai, &dia, &ana, &eva], "barrio", 5, 12);
    for (i, s) in seen.iter().enumerate().take(3) {
        assert_eq!(
            s,
            &[
                msg("barrio", "Ana", "antes de Eva"),
                msg("barrio", "Ana", "bienvenida Eva"),
            ],
            "member {i}"
        );
    }
    assert!(seen[4].is_empty(), "{:?}", seen[4]);
    for home in [&ana, &ben, &cai, &dia, &eva] {
        let members = home.members("barrio");
        assert_eq!(members.len(), 5, "{members:?}");
        assert!(members.iter().all(|(_, session)| *session), "{members:?}");
    }
    cai.ok(&["nucleus", "send", "barrio", "hola Eva, soy Cai"]);
    assert_eq!(
        eva.read_group(),
        [msg("barrio", "barrio/Cai", "hola Eva, soy Cai")]
    );
    for got in read_groups(&[&ana, &ben, &dia]) {
        let texts: Vec<String> = got.into_iter().map(|m| m.2).collect();
        assert_eq!(texts, ["hola Eva, soy Cai"]);
    }

    // Ana removes Cai. Once Ben has the change, what he sends skips Cai.
    ana.ok(&["nucleus", "remove", "barrio", "Cai"]);
    assert!(ben.read_group().is_empty());
    let sent = ben.json(&["nucleus", "send", "barrio", "sin Cai"]);
    assert_eq!(sent[0]["to"].as_array().unwrap().len(), 3, "{sent:?}");
    ana.ok(&["nucleus", "send", "barrio", "Cai ya no está"]);
    let seen = settle(&[&cai, &dia, &eva, &ana], 1);
    assert!(seen[0].is_empty(), "removed member got {:?}", seen[0]);
    for s in &seen[1..3] {
        assert!(s.contains(&msg("barrio", "Ana", "Cai ya no está")), "{s:?}");
        assert!(s.iter().any(|(_, _, t)| t == "sin Cai"), "{s:?}");
    }
    assert_eq!(seen[3], [msg("barrio", "Ben", "sin Cai")]);
    // Cai knows it is out: it cannot send, and the others have 4 members.
    let list = cai.json(&["nucleus", "list"]);
    assert_eq!(list[0]["state"], "removed", "{list:?}");
    let out = cai.run(&["nucleus", "send", "barrio", "¿sigo?"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));
    for home in [&ana, &ben, &dia, &eva] {
        assert_eq!(home.members("barrio").len(), 4);
    }

    // Eva leaves: the others drop her, and she forgets the nucleus.
    eva.ok(&["nucleus", "leave", "barrio"]);
    settle(&[&ana, &ben, &dia], 1);
    for home in [&ana, &ben, &dia] {
        assert_eq!(home.members("barrio").len(), 3);
    }
    assert!(eva.json(&["nucleus", "list"]).is_empty());
}
