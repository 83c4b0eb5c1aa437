//! Envelope throughput: encode, decode, sign and verify per second for the
//! smallest and largest body. Run with `cargo bench -p enlace-protocol --bench envelope`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code

use std::hint::black_box;
use std::time::{Duration, Instant};

use enlace_protocol::command::Request;
use enlace_protocol::envelope::{BodySize, CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::frame::encode_frame;
use enlace_protocol::keys::SigningKeyPair;

/// Runs `f` repeatedly for about a second and prints operations per second.
fn bench(name: &str, mut f: impl FnMut()) {
    for _ in 0..10 {
        f();
    }
    let budget = Duration::from_secs(1);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>12.0} /s {:>10.2} µs",
        n as f64 / secs,
        secs * 1e6 / n as f64
    );
}

fn main() {
    let key = SigningKeyPair::from_secret_bytes(&[1; 32]);
    for size in [BodySize::Small, BodySize::Large] {
        let body = vec![0x5a; size.len()];
        let env = Envelope::sign(
            &key,
            MailboxId([2; 16]),
            MessageId([3; 16]),
            CoarseTime(1),
            &body,
        )
        .unwrap();
        let bytes = env.as_bytes().to_vec();
        let label = format!("{} B body", size.len());
        bench(&format!("sign (encode + sign), {label}"), || {
            black_box(
                Envelope::sign(
                    &key,
                    MailboxId([2; 16]),
                    MessageId([3; 16]),
                    CoarseTime(1),
                    black_box(&body),
                )
                .unwrap(),
            );
        });
        bench(&format!("encode send frame, {label}"), || {
            let mut out = Vec::with_capacity(bytes.len() + 5);
            encode_frame(&Request::Send(black_box(env.clone())).to_bytes(), &mut out).unwrap();
            black_box(out);
        });
        bench(&format!("decode, {label}"), || {
            black_box(Envelope::decode(black_box(&bytes)).unwrap());
        });
        bench(&format!("verify, {label}"), || {
            env.verify(black_box(key.public())).unwrap();
        });
        bench(&format!("decode + verify, {label}"), || {
            Envelope::decode(black_box(&bytes))
                .unwrap()
                .verify(key.public())
                .unwrap();
        });
    }
}
