//! The CLI driven in-process: profile creation, passphrase and tampering
//! errors, wipe, and that nothing readable is left on disk.

// Test helpers may panic: a panic is a test failure with a location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use std::fs;
use std::path::{Path, PathBuf};

use enlace_client::Env;
use enlace_client::profile::store::{KdfParams, Passphrase, Store};
use enlace_client::profile::{Contact, Direction, HistoryEntry, MessageId};

const PASS: &str = "correct horse battery staple";
const RELAY: &str =
    "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.ximena-union.example:4433";

/// The cheapest parameters a store may carry, so tests stay fast; only
/// reachable in-process (see `Env::kdf`).
const TEST_KDF: KdfParams = KdfParams {
    memory_kib: 64 * 1024,
    time: 1,
    lanes: 1,
};

struct Run {
    code: u8,
    out: String,
    err: String,
}

fn run_with(home: &Path, pass: Option<&str>, args: &[&str], input: &str) -> Run {
    let env = Env {
        passphrase: pass.map(|p| Passphrase::new(p.to_owned())),
        interactive: false,
        kdf: Some(TEST_KDF),
    };
    let mut full = vec!["enlace".to_owned(), "--home".to_owned()];
    full.push(home.display().to_string());
    full.extend(args.iter().map(|s| (*s).to_owned()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = enlace_client::main_with(full, &env, &mut input.as_bytes(), &mut out, &mut err);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn run(home: &Path, args: &[&str]) -> Run {
    run_with(home, Some(PASS), args, "")
}

fn new_home() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("profile");
    let r = run(&home, &["init"]);
    assert_eq!(r.code, 0, "{}", r.err);
    (tmp, home)
}

fn all_bytes_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(all_bytes_under(&path));
        } else {
            files.push((path.clone(), fs::read(&path).unwrap()));
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn init_relay_contacts() {
    let (_tmp, home) = new_home();
    let r = run(&home, &["init"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with("error: a profile already exists"),
        "{}",
        r.err
    );
    assert_eq!(r.err.lines().count(), 1);

    let r = run(&home, &["relay", "set", RELAY]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run(&home, &["--json", "relay", "show"]);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v["relay"], RELAY);

    let r = run(&home, &["relay", "set", "enlace://short@host:1"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("fingerprint"), "{}", r.err);

    let r = run(&home, &["contacts"]);
    assert_eq!(r.code, 0);
    assert!(r.out.contains("No contacts yet"));
    let r = run(&home, &["--json", "contacts"]);
    assert_eq!(r.out, "");
}

#[test]
fn nucleus_commands_offline() {
    let (_tmp, home) = new_home();
    let r = run(&home, &["nucleus", "list"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("No nuclei yet"), "{}", r.out);

    let r = run(&home, &["nucleus", "create", "barrio"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("#barrio"), "{}", r.out);
    let r = run(&home, &["nucleus", "create", "Barrio"]);
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error: a nucleus named"), "{}", r.err);
    assert_eq!(r.err.lines().count(), 1);
    let r = run(&home, &["nucleus", "create", "a\u{1b}]52;c;x"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("control characters"), "{}", r.err);
    let r = run(&home, &["nucleus", "create", "   "]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("invalid"), "{}", r.err);

    let r = run(&home, &["--json", "nucleus", "members", "barrio"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let v: serde_json::Value = serde_json::from_str(r.out.trim()).unwrap();
    assert_eq!(v["member"], "you");

    let r = run(&home, &["--json", "nucleus", "list"]);
    let first: serde_json::Value = serde_json::from_str(r.out.lines().next().unwrap()).unwrap();
    assert_eq!(first["nucleus"], "barrio");
    assert_eq!(first["state"], "member");
    assert_eq!(first["members"], 1);

    let r = run(&home, &["nucleus", "add", "barrio", "Nadie"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with("error: no contact named \"Nadie\""),
        "{}",
        r.err
    );
    let r = run(&home, &["nucleus", "send", "otro", "hola"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with("error: no nucleus named \"otro\""),
        "{}",
        r.err
    );
    assert!(r.err.contains("enlace nucleus list"), "{}", r.err);
    // Alone in it: nothing to send to, nothing queued.
    let r = run(&home, &["nucleus", "send", "barrio", "hola"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("no other joined member"), "{}", r.out);
    let r = run_with(&home, Some(PASS), &["nucleus", "send", "barrio"], "  \n");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("empty"), "{}", r.err);

    let r = run(&home, &["nucleus", "leave", "barrio"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run(&home, &["nucleus", "members", "barrio"]);
    assert_eq!(r.code, 1);
}

#[test]
fn init_can_set_the_relay() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    let r = run(&home, &["init", "--relay", "enlace://nope@host:1"]);
    assert_eq!(r.code, 1);
    assert!(!home.join("profile.enlace").exists());
    let r = run(&home, &["init", "--relay", RELAY]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(run(&home, &["relay", "show"]).out.trim(), RELAY);
}

#[test]
fn weak_or_missing_passphrase_refused_at_init() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("p");
    let r = run_with(&home, Some("short"), &["init"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("too short"));
    let r = run_with(&home, None, &["init"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("ENLACE_PASSPHRASE"));
    assert!(!home.join("profile.enlace").exists());

    let file = tmp.path().join("pass.txt");
    fs::write(&file, format!("{PASS}\n")).unwrap();
    let f = file.display().to_string();
    let r = run_with(&home, None, &["--passphrase-file", &f, "init"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    // The file's passphrase and the environment's are the same one.
    assert_eq!(run(&home, &["contacts"]).code, 0);
}

#[test]
fn wrong_passphrase_changes_nothing() {
    let (_tmp, home) = new_home();
    let before = all_bytes_under(&home);
    for args in [&["contacts"][..], &["relay", "set", RELAY], &["status"]] {
        let r = run_with(&home, Some("not the passphrase"), args, "");
        assert_eq!(r.code, 3, "{args:?}");
        assert_eq!(
            r.err.trim_end(),
            "error: cannot open profile: wrong passphrase or damaged store \
             — check the passphrase; if it is right, restore the profile from a backup"
        );
    }
    assert_eq!(all_bytes_under(&home), before);
}

#[test]
fn tampered_store_refused_and_left_alone() {
    let (_tmp, home) = new_home();
    let path = home.join("profile.enlace");
    let original = fs::read(&path).unwrap();
    for i in [0, 12, 20, 40, 70, original.len() / 2, original.len() - 1] {
        let mut bad = original.clone();
        bad[i] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        let r = run(&home, &["relay", "set", RELAY]);
        assert_eq!(r.code, 3, "byte {i}: {}", r.err);
        assert!(r.err.contains("wrong passphrase or damaged store"));
        assert_eq!(fs::read(&path).unwrap(), bad, "byte {i}");
    }
    fs::write(&path, &original[..original.len() - 10]).unwrap();
    assert_eq!(run(&home, &["contacts"]).code, 3);
    fs::write(&path, original).unwrap();
    assert_eq!(run(&home, &["contacts"]).code, 0);
}

#[test]
fn nothing_readable_on_disk() {
    let (_tmp, home) = new_home();
    assert_eq!(run(&home, &["relay", "set", RELAY]).code, 0);
    let name = "Ximena Quispe";
    let text = "Meet at the north gate at six, bring the strike fund ledger";
    // Contacts and history come from the network in real use; put them in
    // directly so this test does not depend on a relay.
    let (store, _) = Store::open(&home, &Passphrase::new(PASS.into())).unwrap();
    {
        let _lock = store.lock().unwrap();
        let mut p = store.load().unwrap();
        let id = p.allocate_contact_id();
        p.contacts.push(Contact {
            id,
            name: name.into(),
            identity_key: [7; 32],
            verified_key: None,
            key_changed: false,
            session: Vec::new(),
            send_to: None,
            receive_on: None,
            added_at: 1_790_000_000,
        });
        p.history.push(HistoryEntry {
            contact: id,
            direction: Direction::Out,
            message_id: MessageId([1; 16]),
            sent_at: 1_790_000_000,
            stored_at: 1_790_000_000,
            text: text.into(),
            shown: true,
        });
        store.save(&p, &mut rand::rng()).unwrap();
    }
    let r = run(&home, &["contacts"]);
    assert!(r.out.contains(name), "{}", r.out);

    for needle in [
        name.as_bytes(),
        b"Ximena",
        text.as_bytes(),
        b"strike fund",
        b"ximena-union",
        b"relay.ximena",
        PASS.as_bytes(),
    ] {
        for (path, bytes) in all_bytes_under(&home) {
            assert!(
                !contains(&bytes, needle),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[test]
fn wipe_destroys_the_profile() {
    let (_tmp, home) = new_home();
    assert_eq!(run(&home, &["relay", "set", RELAY]).code, 0);
    let saved = fs::read(home.join("profile.enlace")).unwrap();

    // Not on a terminal and no --yes: refused, nothing touched.
    let r = run(&home, &["wipe"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("--yes"));
    assert_eq!(fs::read(home.join("profile.enlace")).unwrap(), saved);

    // Wipe needs no passphrase: under duress there may be no time.
    let r = run_with(&home, None, &["wipe", "--yes"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(!home.exists());

    let r = run(&home, &["contacts"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no profile"), "{}", r.err);
    let r = run(&home, &["wipe", "--yes"]);
    assert_eq!(r.code, 1);
}

#[test]
fn network_commands_need_a_relay_and_a_contact() {
    let (_tmp, home) = new_home();
    let r = run(&home, &["invite"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no home relay set"), "{}", r.err);
    let r = run(&home, &["send", "Nadie", "hola"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no contact named"), "{}", r.err);
    let r = run(&home, &["accept", "enlace1-garbage", "--name", "X"]);
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error: invalid invitation"), "{}", r.err);
    assert_eq!(r.err.lines().count(), 1);
}
