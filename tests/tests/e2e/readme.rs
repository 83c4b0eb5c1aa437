//! The README's quick start, pasted into a shell as it is written: the
//! blocks of "Quick start" and "Two nuclei", run by bash one after the
//! other with the binaries this test runs (no `cargo build --release`),
//! `/tmp/` moved into a directory of the test's own and the two ports
//! moved to free ones. It uses only the safe forms the README shows:
//! message text and codes on standard input.

use std::net::UdpSocket;
use std::process::Command;

use enlace_tests::binary_dir;

/// The first ```sh block after `heading` in the README.
fn block_after(readme: &str, heading: &str) -> String {
    let from = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let start = readme[from..].find("```sh\n").unwrap() + from + "```sh\n".len();
    let end = readme[start..].find("```").unwrap() + start;
    readme[start..end].to_owned()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_readme_quick_start_works_when_pasted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let quick = block_after(&readme, "## Quick start");
    let nuclei = block_after(&readme, "### Two nuclei");
    assert!(quick.starts_with("cargo build --release\n"), "{quick}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().display().to_string();
    let (a, b) = (free_udp_port(), free_udp_port());
    let script = format!(
        "{}{nuclei}",
        quick.trim_start_matches("cargo build --release\n")
    )
    .replace("$PWD/target/release", &binary_dir().display().to_string())
    .replace("/tmp/", &format!("{dir}/"))
    .replace(":4433", &format!(":{a}"))
    .replace(":4434", &format!(":{b}"));
    // The relays the blocks start in the background stop with the shell.
    let script = format!("set -eu\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n{script}");
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env_remove("ENLACE_PASSPHRASE")
        .env_remove("ENLACE_HOME")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("Ben: ¡Hola! Asamblea el jueves a las 6."),
        "{stdout}"
    );
    assert!(
        stdout.contains("#asamblea Ana: Asamblea conjunta el sábado."),
        "{stdout}"
    );
}
