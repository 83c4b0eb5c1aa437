//! The binary's command line: help, the address subcommand, refusing to
//! mint a new identity silently. (Also makes `cargo test --workspace` build
//! the binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_enlace-relay"))
}

#[test]
fn help_explains_every_setting() {
    let out = relay().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--data-dir",
        "--listen",
        "--public-host",
        "--quota",
        "--ttl-secs",
        "--max-connections-per-ip",
        "--idle-timeout-secs",
        "--metrics",
        "--backend",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn address_of_a_missing_identity_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = relay()
        .args(["address", "--data-dir"])
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("relay.key"), "{err}");
}

#[test]
fn address_matches_identity_and_a_lost_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir(&data).unwrap();
    let identity = enlace_relay::identity::Identity::load_or_create(&data).unwrap();
    let out = relay()
        .args(["address", "--listen", "127.0.0.1:4433", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        line.trim(),
        format!("enlace://{}@127.0.0.1:4433", identity.fingerprint())
    );

    std::fs::remove_file(data.join("relay.key")).unwrap();
    let out = relay()
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("refusing to create a new identity"), "{err}");
}
