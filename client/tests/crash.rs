//! The `enlace` binary killed (SIGKILL) just before each write, fsync,
//! rename and removal of a save, a re-key, a passphrase change, a duress
//! set and open, and a migration from format 2; after every kill the
//! profile opens with the passphrase and holds the state before or after.
//!
//! The kill is the debug build's `ENLACE_DEBUG_CRASH_AT=N` (the client
//! sends itself SIGKILL before its N-th step); N runs from 1 until the
//! command finishes, each time from a copy of the same profile.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

use enlace_client::Env;
use enlace_client::profile::store::{KdfParams, Passphrase, Store};

const PASS: &str = "correct horse battery staple";
const NEW_PASS: &str = "a new passphrase for the crash test";
const DURESS: &str = "the passphrase I hand over";
const RELAY: &str =
    "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.example:4433";
const OTHER_RELAY: &str =
    "enlace://aeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaq@other.example:4433";

fn init(home: &Path) {
    let env = Env {
        passphrase: Some(Passphrase::new(PASS.into())),
        interactive: false,
        kdf: Some(KdfParams::WEAKEST),
    };
    let args = [
        "enlace",
        "--home",
        home.to_str().unwrap(),
        "init",
        "--relay",
        RELAY,
    ];
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = enlace_client::main_with(args, &env, &mut &b""[..], &mut out, &mut err);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The home relay of the profile in `home`, opened with `pass`; `None` if
/// it does not open.
fn relay_of(home: &Path, pass: &str) -> Option<String> {
    let (_, p) = Store::open(home, &Passphrase::new(pass.into())).ok()?;
    Some(
        p.home_relay
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .unwrap_or_default(),
    )
}

/// Runs `enlace <args>` on a copy of `pristine` killed before step 1, 2,
/// ... until it finishes; after each kill, `check` gets the killed copy.
/// Returns the number of steps the command made.
fn kill_at_every_step(
    pristine: &Path,
    scratch: &Path,
    args: &[&str],
    input: &str,
    check: impl Fn(&Path, usize),
) -> usize {
    for n in 1.. {
        copy_dir(pristine, scratch);
        let mut child = Command::new(env!("CARGO_BIN_EXE_enlace"))
            .arg("--home")
            .arg(scratch)
            .args(args)
            .env("ENLACE_PASSPHRASE", PASS)
            .env("ENLACE_DEBUG_CRASH_AT", n.to_string())
            .env_remove("ENLACE_DEBUG_STOP_AT_STEPS")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            assert!(!err.contains("debug crash"), "{err}");
            return n - 1;
        }
        assert_eq!(out.status.signal(), Some(9), "step {n}: {err}");
        assert!(err.contains(&format!("debug crash at step {n} (")), "{err}");
        check(scratch, n);
    }
    unreachable!()
}

/// A change (`relay set`): the open re-keys, the update re-keys again.
/// Killed anywhere, the profile opens and holds the old or the new relay.
#[test]
fn a_kill_at_any_step_of_a_save_leaves_a_profile_that_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let (pristine, scratch) = (tmp.path().join("p"), tmp.path().join("s"));
    init(&pristine);
    let steps = kill_at_every_step(
        &pristine,
        &scratch,
        &["relay", "set", OTHER_RELAY],
        "",
        |dir, n| {
            let relay = relay_of(dir, PASS).unwrap_or_else(|| panic!("step {n}: does not open"));
            assert!(relay == RELAY || relay == OTHER_RELAY, "step {n}: {relay}");
        },
    );
    // Two saves of eight steps: data file written and fsynced, key file
    // overwritten and fsynced, renamed and directory fsynced, old slot
    // overwritten and fsynced.
    assert_eq!(steps, 16);
    println!("relay set: killed at each of {steps} steps, every time the profile opened");
}

/// `enlace passphrase`: killed anywhere, the old or the new passphrase
/// opens it (exactly one), and the duress passphrase still works.
#[test]
fn a_kill_at_any_step_of_a_passphrase_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (pristine, scratch) = (tmp.path().join("p"), tmp.path().join("s"));
    init(&pristine);
    let (store, _) = Store::open(&pristine, &Passphrase::new(PASS.into())).unwrap();
    store.set_duress(&Passphrase::new(DURESS.into())).unwrap();
    drop(store);
    let input = format!("{NEW_PASS}\n");
    let steps = kill_at_every_step(&pristine, &scratch, &["passphrase"], &input, |dir, n| {
        let old = relay_of(dir, PASS).is_some();
        let new = relay_of(dir, NEW_PASS).is_some();
        assert!(old ^ new, "step {n}: old {old}, new {new}");
        // The duress passphrase still erases.
        assert!(relay_of(dir, DURESS).is_some(), "step {n}");
        assert!(relay_of(dir, PASS).is_none() && relay_of(dir, NEW_PASS).is_none());
    });
    assert_eq!(steps, 16);
}

/// `enlace duress set`, and the duress open itself: killed anywhere, the
/// duress passphrase (typed again) still leaves the real profile erased.
#[test]
fn a_kill_at_any_step_of_duress() {
    let tmp = tempfile::tempdir().unwrap();
    let (pristine, scratch) = (tmp.path().join("p"), tmp.path().join("s"));
    init(&pristine);
    let input = format!("{DURESS}\n");
    let steps = kill_at_every_step(&pristine, &scratch, &["duress", "set"], &input, |dir, n| {
        assert_eq!(relay_of(dir, PASS).as_deref(), Some(RELAY), "step {n}");
    });
    assert_eq!(steps, 10);
    // Now with the duress passphrase set: open with it.
    let (store, _) = Store::open(&pristine, &Passphrase::new(PASS.into())).unwrap();
    store.set_duress(&Passphrase::new(DURESS.into())).unwrap();
    drop(store);
    let steps = (1..)
        .find(|&n| {
            copy_dir(&pristine, &scratch);
            let out = Command::new(env!("CARGO_BIN_EXE_enlace"))
                .arg("--home")
                .arg(&scratch)
                .arg("contacts")
                .env("ENLACE_PASSPHRASE", DURESS)
                .env("ENLACE_DEBUG_CRASH_AT", n.to_string())
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return true;
            }
            assert_eq!(out.status.signal(), Some(9), "step {n}");
            // The duress passphrase, typed again, opens the empty profile
            // (erasing the real one if the kill came before it was gone);
            // after that the real passphrase opens nothing.
            assert_eq!(
                relay_of(&scratch, DURESS).as_deref(),
                Some(RELAY),
                "step {n}"
            );
            assert!(relay_of(&scratch, PASS).is_none(), "step {n}");
            false
        })
        .unwrap()
        - 1;
    assert_eq!(steps, 8);
}

/// A format 2 store (the golden) migrated on its first open: killed
/// anywhere, it opens with the passphrase and holds the same profile.
#[test]
fn a_kill_at_any_step_of_the_migration_from_format_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (pristine, scratch) = (tmp.path().join("p"), tmp.path().join("s"));
    std::fs::create_dir(&pristine).unwrap();
    std::fs::write(
        pristine.join("profile.enlace"),
        include_bytes!("../testdata/profile-format-2.enlace"),
    )
    .unwrap();
    let golden_relay =
        "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.barrio.example:4433";
    let steps = kill_at_every_step(&pristine, &scratch, &["relay", "show"], "", |dir, n| {
        assert_eq!(
            relay_of(dir, PASS).as_deref(),
            Some(golden_relay),
            "step {n}"
        );
        let names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.contains(&"profile.enlace".to_owned()),
            "step {n}: {names:?}"
        );
    });
    // Eight steps of the first format 3 save (the key file is created, so
    // the directory is fsynced once more), then the old file overwritten,
    // fsynced, removed, and the directory fsynced.
    assert_eq!(steps, 13);
}
