//! The `enlace` CLI against a real relay: organizers' homes in temporary
//! directories, the real binaries, nothing mocked.

use std::io::Write;
use std::process::Stdio;

use enlace_tests::home::{Home, PASSPHRASE, connect};
use enlace_tests::relay::BlockingRelay;

#[test]
fn invite_accept_and_messages_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
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
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    let cai = Home::new(tmp.path(), "cai", relay.address());
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

#[test]
fn listen_receives_and_survives_relay_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    connect(&ana, "Ben", &ben, "Ana");

    let listener = ana.listen();
    ben.ok(&["send", "Ana", "primero"]);
    assert_eq!(listener.next_message(), "primero");

    relay.kill_9();
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
    assert_eq!(listener.next_message(), "durante la caída");
    assert_eq!(listener.next_message(), "después");
    listener.stop();
    assert_eq!(ana.read_texts(), Vec::<String>::new());
}

#[test]
fn outbox_waits_for_the_relay_and_delivers_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    connect(&ana, "Ben", &ben, "Ana");

    relay.kill_9();
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
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    connect(&ana, "Ben", &ben, "Ana");
    ana.ok(&["verify", "Ben", "--confirm"]);

    // "Ben" comes back with a new identity (a new laptop, or an impostor).
    ben.ok(&["wipe", "--yes"]);
    let ben = Home::new(tmp.path(), "ben", relay.address());
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
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
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
    for home in [ana.dir(), ben.dir()] {
        for entry in std::fs::read_dir(home).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            for needle in [
                &b"caja azul"[..],
                b"Benedicta",
                b"Yupanqui",
                b"127.0.0.1",
                PASSPHRASE.as_bytes(),
            ] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle));
            }
        }
    }
    ana.ok(&["wipe", "--yes"]);
    assert!(!ana.dir().exists());
    assert_eq!(ana.run(&["read"]).status.code(), Some(1));
}

/// A mailbox that refuses us (here: full) holds back only what goes to it;
/// messages to other contacts on the same relay still go out.
#[test]
fn a_refusing_mailbox_does_not_block_other_contacts() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    let cai = Home::new(tmp.path(), "cai", relay.address());
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
