//! Plays both parties of a session from a seeded RNG and a fuzz-chosen
//! schedule (as libsignal's `interaction` target does): sends in both
//! directions, deliveries in any order, duplicates, drops, tampered copies
//! and state restores. Every message not dropped decrypts exactly once and
//! to what was sent; duplicates and tampered copies fail.
//!
//! Input: an 8-byte RNG seed, then one operation per byte with its
//! arguments in the following bytes. At most 64 operations run, which keeps
//! every schedule inside the skipped-key bounds (fewer than 32 ratchet
//! steps, jumps far below 1,000), so the assertions are exact.
#![no_main]

use std::sync::OnceLock;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::{self, MAX_PLAINTEXT_LEN, PendingInvitation, ReplyAddress, Session};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

const MAX_OPS: usize = 64;

/// The two sessions right after a handshake, stored: a handshake costs
/// about 2 ms, a restore about 0.1 ms.
fn initial() -> &'static (Vec<u8>, Vec<u8>) {
    static STATES: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    STATES.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(1);
        let inviter = SigningKeyPair::generate(&mut rng);
        let accepter = SigningKeyPair::generate(&mut rng);
        let fp = SigningKeyPair::generate(&mut rng)
            .public()
            .relay_fingerprint();
        let relay = RelayAddress::new(fp, "relay.example.org", 4433).unwrap();
        let pending =
            PendingInvitation::create(&mut rng, &inviter, relay.clone(), MailboxId([1; 16]), 10);
        let reply = ReplyAddress {
            relay,
            send_id: MailboxId([2; 16]),
        };
        let sender = SigningKeyPair::generate(&mut rng);
        let (a, first) = session::accept(
            &mut rng,
            &accepter,
            pending.invitation(),
            &reply,
            sender.public(),
            b"",
            0,
        )
        .unwrap();
        let (i, _) = pending.complete(&mut rng, &inviter, &first, 0).unwrap();
        (a.to_bytes().to_vec(), i.to_bytes().to_vec())
    })
}

struct InFlight {
    body: Vec<u8>,
    plain: Vec<u8>,
    delivered: bool,
}

fn pick(queue: &[InFlight], delivered: bool, index: u8) -> Option<usize> {
    let candidates: Vec<usize> = (0..queue.len())
        .filter(|&k| queue[k].delivered == delivered)
        .collect();
    (!candidates.is_empty()).then(|| candidates[usize::from(index) % candidates.len()])
}

fuzz_target!(|data: &[u8]| {
    let Some((seed, mut ops)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(u64::from_le_bytes(*seed));
    let (a, i) = initial();
    // [0]: the accepter, [1]: the inviter. queues[k]: messages towards side k.
    let mut sides = [
        Session::from_bytes(a).unwrap(),
        Session::from_bytes(i).unwrap(),
    ];
    let mut queues: [Vec<InFlight>; 2] = [Vec::new(), Vec::new()];
    let next = |ops: &mut &[u8]| -> u8 {
        let (b, rest) = ops.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        *ops = rest;
        b
    };
    let mut counter = 0u32;
    for _ in 0..MAX_OPS {
        if ops.is_empty() {
            break;
        }
        let op = next(&mut ops);
        let side = usize::from(op & 1);
        match (op >> 1) % 6 {
            0 => {
                counter += 1;
                let len = usize::from(next(&mut ops)) * 8 % MAX_PLAINTEXT_LEN;
                let mut plain = counter.to_be_bytes().to_vec();
                plain.resize(len.max(4), 0xa5);
                let body = sides[side].encrypt(&mut rng, &plain).unwrap();
                assert_eq!(body.len(), 2048);
                queues[1 - side].push(InFlight {
                    body,
                    plain,
                    delivered: false,
                });
            }
            1 => {
                if let Some(k) = pick(&queues[side], false, next(&mut ops)) {
                    let m = &mut queues[side][k];
                    let plain = sides[side].decrypt(&mut rng, &m.body).unwrap();
                    assert_eq!(&*plain, &m.plain[..]);
                    m.delivered = true;
                }
            }
            2 => {
                if let Some(k) = pick(&queues[side], true, next(&mut ops)) {
                    assert!(
                        sides[side]
                            .decrypt(&mut rng, &queues[side][k].body)
                            .is_err(),
                        "replay accepted"
                    );
                }
            }
            3 => {
                if let Some(k) = pick(&queues[side], false, next(&mut ops)) {
                    queues[side].remove(k);
                }
            }
            4 => {
                let (index, hi, lo, bit) = (
                    next(&mut ops),
                    next(&mut ops),
                    next(&mut ops),
                    next(&mut ops),
                );
                if !queues[side].is_empty() {
                    let mut bad = queues[side][usize::from(index) % queues[side].len()]
                        .body
                        .clone();
                    let pos = usize::from(u16::from_be_bytes([hi, lo])) % bad.len();
                    bad[pos] ^= 1 << (bit % 8);
                    assert!(
                        sides[side].decrypt(&mut rng, &bad).is_err(),
                        "tampered message accepted"
                    );
                }
            }
            _ => {
                let bytes = sides[side].to_bytes();
                sides[side] = Session::from_bytes(&bytes).unwrap();
                assert_eq!(&*sides[side].to_bytes(), &*bytes);
            }
        }
    }
    for side in 0..2 {
        for m in queues[side].iter().filter(|m| !m.delivered) {
            let plain = sides[side].decrypt(&mut rng, &m.body).unwrap();
            assert_eq!(&*plain, &m.plain[..]);
            assert!(sides[side].decrypt(&mut rng, &m.body).is_err());
        }
    }
});
