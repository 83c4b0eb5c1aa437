//! The CLI driven in-process: profile creation, passphrase and tampering
//! errors, wipe, and that nothing readable is left on disk.

// Test helpers may panic: a panic is a test failure with a location.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use enlace_client::Env;
use enlace_client::profile::store::{KdfParams, Passphrase, Store};
use enlace_client::profile::{Contact, ContactId, Direction, HistoryEntry, MessageId, Profile};

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

/// Adds a contact named `name` (contacts come from the network in real
/// use; tests that do not need a relay put them in directly).
fn add_contact(p: &mut Profile, name: &str) -> ContactId {
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
    id
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
    let r = run_with(&home, Some(PASS), &["nucleus", "send", "otro"], "hola");
    assert_eq!(r.code, 1);
    assert!(
        r.err.starts_with("error: no nucleus named \"otro\""),
        "{}",
        r.err
    );
    assert!(r.err.contains("enlace nucleus list"), "{}", r.err);
    // Alone in it: nothing to send to, nothing queued.
    let r = run_with(&home, Some(PASS), &["nucleus", "send", "barrio"], "hola");
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
    assert!(!home.join("profile.data").exists());
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
    assert!(r.err.contains("--passphrase-fd"), "{}", r.err);
    assert!(!home.join("profile.data").exists());

    let file = tmp.path().join("pass.txt");
    fs::write(&file, format!("{PASS}\n")).unwrap();
    let f = file.display().to_string();
    // A passphrase file others can read is refused, and nothing is made.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let r = run_with(&home, None, &["--passphrase-file", &f, "init"], "");
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err,
        "error: the passphrase file can be read by others (mode 0644) — make it readable by you \
         only: `chmod 600 FILE`, then try again\n"
    );
    assert!(!home.join("profile.data").exists());
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
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
    for name in ["profile.key", "profile.data"] {
        let path = home.join(name);
        let original = fs::read(&path).unwrap();
        // The version byte, the salt, the first slot (the one in use
        // after `init`), and the data file throughout.
        let places = if name == "profile.key" {
            vec![0, 12, 20, 40, 70, 33 + 369]
        } else {
            vec![0, 30, original.len() / 2, original.len() - 1]
        };
        for i in places {
            let mut bad = original.clone();
            bad[i] ^= 0x40;
            fs::write(&path, &bad).unwrap();
            let r = run(&home, &["relay", "set", RELAY]);
            assert_eq!(r.code, 3, "{name} byte {i}: {}", r.err);
            assert!(r.err.contains("wrong passphrase or damaged store"));
            assert_eq!(fs::read(&path).unwrap(), bad, "{name} byte {i}");
        }
        fs::write(&path, &original[..original.len() - 10]).unwrap();
        assert_eq!(run(&home, &["contacts"]).code, 3);
        fs::write(&path, original).unwrap();
        assert_eq!(run(&home, &["contacts"]).code, 0);
    }
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
        let id = add_contact(&mut p, name);
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
    let saved = all_bytes_under(&home);

    // Not on a terminal and no --yes: refused, nothing touched.
    let r = run(&home, &["wipe"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("--yes"));
    assert_eq!(all_bytes_under(&home), saved);

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
    let r = run_with(&home, Some(PASS), &["send", "Nadie"], "hola");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no contact named"), "{}", r.err);
    let r = run_with(
        &home,
        Some(PASS),
        &["accept", "-", "--name", "X"],
        "enlace1-garbage",
    );
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error: invalid invitation"), "{}", r.err);
    assert_eq!(r.err.lines().count(), 1);
}

/// Message text and invitation codes on the command line are refused with
/// one line that says why and what to type instead; nothing is opened.
#[test]
fn secrets_on_the_command_line_are_refused() {
    let (_tmp, home) = new_home();
    let before = all_bytes_under(&home);
    for (args, line) in [
        (
            &["send", "Ana", "asamblea", "el", "jueves"][..],
            "error: message text on the command line is refused: other users of this computer \
             and your shell history can read it — run `enlace send Ana` and type the message, \
             or pipe it in: `enlace send Ana < message.txt`",
        ),
        (
            &["send", "Ana María", "hola"][..],
            "error: message text on the command line is refused: other users of this computer \
             and your shell history can read it — run `enlace send 'Ana María'` and type the \
             message, or pipe it in: `enlace send 'Ana María' < message.txt`",
        ),
        (
            &["nucleus", "send", "barrio", "--", "-hola"][..],
            "error: message text on the command line is refused: other users of this computer \
             and your shell history can read it — run `enlace nucleus send barrio` and type the \
             message, or pipe it in: `enlace nucleus send barrio < message.txt`",
        ),
        (
            &["accept", "enlace1-abcdef", "--name", "Ana"][..],
            "error: an invitation code on the command line is refused: other users of this \
             computer and your shell history can read it — run `enlace accept --name Ana` and \
             paste it, or pipe it in: `enlace accept --name Ana < code.txt`",
        ),
    ] {
        let r = run_with(&home, None, args, "");
        assert_eq!(r.code, 2, "{args:?}: {}", r.err);
        assert_eq!(r.err.trim_end(), line, "{args:?}");
        assert_eq!(r.err.lines().count(), 1);
    }
    assert_eq!(all_bytes_under(&home), before);
}

/// `--passphrase-fd 0`: the first line of standard input is the
/// passphrase, and the rest is the command's (here, the invitation code).
#[test]
fn passphrase_from_standard_input_leaves_the_rest() {
    let (_tmp, home) = new_home();
    let input = format!("{PASS}\nenlace1-garbage\n");
    let r = run_with(
        &home,
        None,
        &["--passphrase-fd", "0", "accept", "--name", "X"],
        &input,
    );
    assert_eq!(r.code, 1);
    assert!(r.err.starts_with("error: invalid invitation"), "{}", r.err);
    let r = run_with(
        &home,
        None,
        &["--passphrase-fd", "0", "contacts"],
        "wrong one\n",
    );
    assert_eq!(r.code, 3);
    let r = run_with(
        &home,
        None,
        &["--passphrase-fd", "0", "contacts"],
        &format!("{PASS}\n"),
    );
    assert_eq!(r.code, 0, "{}", r.err);
}

/// `enlace duress set`, then the duress passphrase at a prompt: the real
/// profile is gone, an empty one answers exactly like a new profile.
#[test]
fn duress_passphrase_erases_and_answers_like_an_empty_profile() {
    let (_tmp, home) = new_home();
    let (_tmp2, fresh) = new_home();
    assert_eq!(run(&home, &["relay", "set", RELAY]).code, 0);
    assert_eq!(run(&fresh, &["relay", "set", RELAY]).code, 0);
    let r = run_with(&home, Some(PASS), &["nucleus", "create", "barrio"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run_with(&home, Some(PASS), &["duress", "set"], &format!("{PASS}\n"));
    assert_eq!(r.code, 1);
    assert!(r.err.contains("must differ"), "{}", r.err);
    let r = run_with(&home, Some(PASS), &["duress", "set"], "short\n");
    assert!(r.err.contains("too short"), "{}", r.err);
    let duress = "the one I give away";
    let r = run_with(
        &home,
        Some(PASS),
        &["duress", "set"],
        &format!("{duress}\n"),
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(run(&home, &["nucleus", "list"]).out.lines().count(), 1);

    let fresh_answers: Vec<(u8, String, String)> = [
        &["contacts"][..],
        &["nucleus", "list"],
        &["status"],
        &["relay", "show"],
    ]
    .iter()
    .map(|args| {
        let r = run(&fresh, args);
        (r.code, r.out, r.err)
    })
    .collect();
    let mut answers = Vec::new();
    for args in [
        &["contacts"][..],
        &["nucleus", "list"],
        &["status"],
        &["relay", "show"],
    ] {
        let r = run_with(&home, Some(duress), args, "");
        answers.push((r.code, r.out, r.err));
    }
    assert_eq!(answers, fresh_answers);
    let r = run(&home, &["contacts"]);
    assert_eq!(r.code, 3, "the real passphrase opens nothing now");
}

#[test]
fn passphrase_change() {
    let (_tmp, home) = new_home();
    let r = run_with(
        &home,
        Some(PASS),
        &["passphrase"],
        "a brand new passphrase\n",
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(run(&home, &["contacts"]).code, 3);
    let r = run_with(&home, Some("a brand new passphrase"), &["contacts"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    let r = run_with(&home, Some("a brand new passphrase"), &["passphrase"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no passphrase"), "{}", r.err);
}

#[test]
fn history_and_timer_offline() {
    let (_tmp, home) = new_home();
    let (store, _) = Store::open(&home, &Passphrase::new(PASS.into())).unwrap();
    store
        .update(|p| {
            let id = add_contact(p, "Ximena");
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            for (i, (direction, text)) in [
                (Direction::In, "¿nos vemos?"),
                (Direction::Out, "sí, a las 6"),
            ]
            .into_iter()
            .enumerate()
            {
                p.history.push(HistoryEntry {
                    contact: id,
                    direction,
                    message_id: MessageId([i as u8; 16]),
                    sent_at: now,
                    stored_at: now + i as u64,
                    text: text.into(),
                    shown: true,
                });
            }
            Ok(())
        })
        .unwrap();
    drop(store);
    let r = run(&home, &["history", "ximena"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(
        lines[0],
        "Messages with Ximena disappear 1 week after they are sent or received (the default)."
    );
    assert!(lines[1].ends_with("] Ximena: ¿nos vemos?"), "{}", lines[1]);
    assert!(lines[2].ends_with("] you: sí, a las 6"), "{}", lines[2]);
    let r = run(&home, &["--json", "history", "Ximena"]);
    let v: Vec<serde_json::Value> = r
        .out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(v[0]["seconds"], 604_800);
    assert_eq!(v[2]["direction"], "out");
    let r = run(&home, &["timer", "Ximena", "2h"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("cannot be written to yet"), "{}", r.err);
    let r = run(&home, &["timer", "Ximena", "30m"]);
    assert!(
        r.err.starts_with("error: invalid timer \"30m\""),
        "{}",
        r.err
    );

    assert_eq!(run(&home, &["nucleus", "create", "barrio"]).code, 0);
    let r = run(&home, &["timer", "#barrio", "1h"]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(
        r.out.trim(),
        "Messages in #barrio now disappear after 1 hour (no other member to tell yet)."
    );
    let r = run(&home, &["history", "#barrio"]);
    assert!(
        r.out.contains("You set disappearing messages to 1 hour."),
        "{}",
        r.out
    );
    let r = run(&home, &["timer", "#barrio"]);
    assert_eq!(
        r.out.trim(),
        "Messages in #barrio disappear 1 hour after they are sent or received."
    );
    let r = run(&home, &["history", "Nadie"]);
    assert_eq!(r.code, 1);
}

/// `--passphrase-fd 3` with the descriptor opened by the shell, as the
/// help's example has it; the real binary, which also hardens itself.
#[test]
fn passphrase_from_a_descriptor_the_shell_opened() {
    let (tmp, home) = new_home();
    let file = tmp.path().join("pass.txt");
    fs::write(&file, format!("{PASS}\n")).unwrap();
    let run = |file: &Path| {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(r#"exec "$ENLACE" --home "$PROFILE" --passphrase-fd 3 contacts 3< "$PASSFILE""#)
            .env("ENLACE", env!("CARGO_BIN_EXE_enlace"))
            .env("PROFILE", &home)
            .env("PASSFILE", file)
            .env_remove("ENLACE_PASSPHRASE")
            .output()
            .unwrap()
    };
    let out = run(&file);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("No contacts yet"));
    fs::write(&file, "not it\n").unwrap();
    assert_eq!(run(&file).status.code(), Some(3));
}
