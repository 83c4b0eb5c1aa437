//! Session costs: invitations, handshakes and messages per second, and the
//! bytes a message adds. Run with `cargo bench -p enlace-protocol --bench session`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code

use std::hint::black_box;
use std::time::{Duration, Instant};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::limits::ENVELOPE_OVERHEAD;
use enlace_protocol::session::{
    self, MAX_PLAINTEXT_LEN, MESSAGE_OVERHEAD, PendingInvitation, ReplyAddress, Session,
};

/// Runs `f` repeatedly for about two seconds and prints operations per second.
fn bench(name: &str, mut f: impl FnMut()) {
    for _ in 0..10 {
        f();
    }
    let budget = Duration::from_secs(2);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<52} {:>10.0} /s {:>10.2} µs",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn main() {
    let mut rng = rand::rng();
    let inviter = SigningKeyPair::generate(&mut rng);
    let accepter = SigningKeyPair::generate(&mut rng);
    let sender = SigningKeyPair::generate(&mut rng);
    let fp = SigningKeyPair::generate(&mut rng)
        .public()
        .relay_fingerprint();
    let relay = RelayAddress::new(fp, "relay.example.org", 4433).unwrap();
    let reply = ReplyAddress {
        relay: relay.clone(),
        send_id: MailboxId([2; 16]),
    };
    let pending =
        PendingInvitation::create(&mut rng, &inviter, relay.clone(), MailboxId([1; 16]), 10);
    let text = pending.invitation().to_text();

    bench("invitation: create and sign", || {
        black_box(PendingInvitation::create(
            &mut rng,
            &inviter,
            relay.clone(),
            MailboxId([1; 16]),
            10,
        ));
    });
    bench("invitation: parse text and verify", || {
        black_box(session::Invitation::parse(black_box(&text), 0).unwrap());
    });
    let mut first = Vec::new();
    bench("handshake: accept (accepter side)", || {
        let (s, m) = session::accept(
            &mut rng,
            &accepter,
            pending.invitation(),
            &reply,
            sender.public(),
            b"",
            0,
        )
        .unwrap();
        black_box(s);
        first = m;
    });
    bench("handshake: complete (inviter side)", || {
        black_box(pending.complete(&mut rng, &inviter, &first, 0).unwrap());
    });
    bench("handshake: accept + complete (both sides)", || {
        let (a, m) = session::accept(
            &mut rng,
            &accepter,
            pending.invitation(),
            &reply,
            sender.public(),
            b"",
            0,
        )
        .unwrap();
        let (i, _) = pending.complete(&mut rng, &inviter, &m, 0).unwrap();
        black_box((a, i));
    });

    let (mut a, m) = session::accept(
        &mut rng,
        &accepter,
        pending.invitation(),
        &reply,
        sender.public(),
        b"",
        0,
    )
    .unwrap();
    let (mut i, _) = pending.complete(&mut rng, &inviter, &m, 0).unwrap();
    let text = vec![0x61u8; 200];
    bench("message: encrypt + decrypt, same chain (200 B)", || {
        let body = a.encrypt(&mut rng, black_box(&text)).unwrap();
        black_box(i.decrypt(&mut rng, &body).unwrap());
    });
    let mut turn = false;
    bench("message: encrypt + decrypt, alternating (DH step)", || {
        let (tx, rx) = if turn {
            (&mut a, &mut i)
        } else {
            (&mut i, &mut a)
        };
        turn = !turn;
        let body = tx.encrypt(&mut rng, black_box(&text)).unwrap();
        black_box(rx.decrypt(&mut rng, &body).unwrap());
    });
    let state = a.to_bytes();
    bench("state: serialize + deserialize", || {
        black_box(Session::from_bytes(&a.to_bytes()).unwrap());
    });

    println!();
    println!("message overhead (header 81 + tag 16 + length 2): {MESSAGE_OVERHEAD} B");
    println!("largest chat plaintext per 2048 B body:          {MAX_PLAINTEXT_LEN} B");
    println!(
        "chat envelope on the wire:                         {} B (envelope {ENVELOPE_OVERHEAD} B + body 2048 B)",
        ENVELOPE_OVERHEAD + 2048
    );
    println!(
        "first message (handshake) body:                   {} B",
        first.len()
    );
    println!(
        "invitation: {} B binary, {} characters of text",
        pending.invitation().as_bytes().len(),
        pending.invitation().to_text().len()
    );
    println!(
        "session state after one exchange:                 {} B",
        state.len()
    );
}
