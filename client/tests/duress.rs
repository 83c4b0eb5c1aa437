//! A duress open looks and times like a normal open: both run argon2id
//! once, read and decrypt the data file, and save a new generation with
//! the same writes; only what they save differs. Timed here, in process,
//! against the noise of argon2id itself (a wrong passphrase: argon2id and
//! nothing else).
//!
//! `cargo test -p enlace-client --test duress -- --nocapture` prints the
//! figures; `ENLACE_DURESS_TIMING_KDF=default` runs it with the
//! parameters real profiles have (256 MiB, 3 passes: about 20 s).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use enlace_client::profile::store::{KdfParams, Passphrase, Store};
use enlace_client::profile::{Contact, ContactId, Direction, HistoryEntry, MessageId, Profile};

const PASS: &str = "correct horse battery staple";
const DURESS: &str = "the passphrase I hand over";
/// Pairs of opens timed.
const PAIRS: usize = 15;

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned())
}

/// A profile with a contact and some history, and a duress passphrase.
fn profile(dir: &std::path::Path, params: KdfParams) {
    let mut p = Profile::new(&mut rand::rng(), 1_790_000_000);
    p.contacts.push(Contact {
        id: ContactId(1),
        name: "Ximena".into(),
        identity_key: [7; 32],
        verified_key: None,
        key_changed: false,
        session: vec![1; 3_000],
        send_to: None,
        receive_on: None,
        added_at: 0,
    });
    for i in 0..50u8 {
        p.history.push(HistoryEntry {
            contact: ContactId(1),
            direction: Direction::In,
            message_id: MessageId([i; 16]),
            sent_at: u64::MAX / 2,
            stored_at: u64::MAX / 2,
            text: "nos vemos en la puerta norte a las seis".into(),
            shown: true,
        });
    }
    let store = Store::create(dir, &pass(PASS), params, &p, &mut rand::rng()).unwrap();
    store.set_duress(&pass(DURESS)).unwrap();
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// (median, first quartile, third quartile) in milliseconds.
fn quartiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let at = |q: usize| ms(v[(v.len() - 1) * q / 4]);
    (at(2), at(1), at(3))
}

#[test]
fn duress_and_normal_opens_take_the_same_time() {
    let params = match std::env::var("ENLACE_DURESS_TIMING_KDF").as_deref() {
        Ok("default") => KdfParams::DEFAULT,
        _ => KdfParams::WEAKEST,
    };
    let tmp = tempfile::tempdir().unwrap();
    let (mut normal, mut duress, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..PAIRS {
        // Two profiles alike: one opened normally, one under duress.
        let (a, b) = (
            tmp.path().join(format!("a{i}")),
            tmp.path().join(format!("b{i}")),
        );
        profile(&a, params);
        profile(&b, params);
        let wrong_open = || {
            let (r, t) = timed(|| Store::open(&a, &pass("not the passphrase")));
            assert!(r.is_err());
            t
        };
        let normal_open = || {
            let (r, t) = timed(|| Store::open(&a, &pass(PASS)));
            assert_eq!(r.unwrap().1.contacts.len(), 1);
            t
        };
        let duress_open = || {
            let (r, t) = timed(|| Store::open(&b, &pass(DURESS)));
            assert!(r.unwrap().1.contacts.is_empty());
            t
        };
        // Alternate which comes first, so neither gains from the order.
        wrong.push(wrong_open());
        if i % 2 == 0 {
            normal.push(normal_open());
            duress.push(duress_open());
        } else {
            duress.push(duress_open());
            normal.push(normal_open());
        }
        assert!(Store::open(&b, &pass(PASS)).is_err());
    }
    let (n, n1, n3) = quartiles(normal);
    let (d, d1, d3) = quartiles(duress);
    let (w, w1, w3) = quartiles(wrong);
    println!(
        "argon2id {} MiB, {} pass(es); {PAIRS} opens each, median [quartiles] in ms:\n  \
         normal open {n:.1} [{n1:.1}, {n3:.1}]\n  duress open {d:.1} [{d1:.1}, {d3:.1}]\n  \
         wrong passphrase (argon2id alone) {w:.1} [{w1:.1}, {w3:.1}]",
        params.memory_kib / 1024,
        params.time
    );
    // Within the noise: the widest interquartile range of the three (on
    // a loaded machine the fsyncs of a save vary too), or a tenth of
    // argon2id's median on a quiet one. An extra argon2id run, or a save
    // more or less, would be a whole median of the wrong passphrase's or
    // many milliseconds apart.
    let noise = (w3 - w1).max(n3 - n1).max(d3 - d1).max(w / 10.0);
    assert!(
        (d - n).abs() <= noise,
        "duress {d:.1} ms and normal {n:.1} ms differ by more than {noise:.1} ms"
    );
}
