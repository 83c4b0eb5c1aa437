//! Property tests of sessions over random schedules: sends in both
//! directions with drops, reorders, duplicates, tampering and state
//! round trips, all inside the skipped-key bounds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use enlace_protocol::Error;
use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::{self, MAX_PLAINTEXT_LEN, PendingInvitation, ReplyAddress, Session};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[derive(Debug, Clone)]
enum Op {
    /// The accepter (true) or inviter sends a message of this length.
    Send(bool, usize),
    /// Deliver an undelivered message towards the inviter (true) or the
    /// accepter, chosen by index: any order.
    Deliver(bool, usize),
    /// Deliver an already delivered message again: must fail.
    Duplicate(bool, usize),
    /// Lose an undelivered message for good.
    Drop(bool, usize),
    /// Deliver a copy of any message with one bit flipped: must fail.
    Tamper(bool, usize, usize, u8),
    /// Store and restore one side's state.
    Restore(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 0..64usize).prop_map(|(a, n)| Op::Send(a, n)),
        4 => (any::<bool>(), any::<usize>()).prop_map(|(a, i)| Op::Deliver(a, i)),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(a, i)| Op::Duplicate(a, i)),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(a, i)| Op::Drop(a, i)),
        1 => (any::<bool>(), any::<usize>(), 0..2048usize, 0..8u8)
            .prop_map(|(a, i, p, b)| Op::Tamper(a, i, p, b)),
        1 => any::<bool>().prop_map(Op::Restore),
    ]
}

struct InFlight {
    body: Vec<u8>,
    plain: Vec<u8>,
    delivered: bool,
}

fn handshake(rng: &mut StdRng) -> (Session, Session) {
    let inviter = SigningKeyPair::generate(rng);
    let accepter = SigningKeyPair::generate(rng);
    let fp = SigningKeyPair::generate(rng).public().relay_fingerprint();
    let relay = RelayAddress::new(fp, "relay.example.org", 4433).unwrap();
    let pending = PendingInvitation::create(rng, &inviter, relay.clone(), MailboxId([1; 16]), 10);
    let reply = ReplyAddress {
        relay,
        send_id: MailboxId([2; 16]),
    };
    let sender = SigningKeyPair::generate(rng);
    let (a, first) = session::accept(
        rng,
        &accepter,
        pending.invitation(),
        &reply,
        sender.public(),
        b"",
        0,
    )
    .unwrap();
    let (i, _) = pending.complete(rng, &inviter, &first, 0).unwrap();
    (a, i)
}

fn pick(queue: &[InFlight], delivered: bool, index: usize) -> Option<usize> {
    let candidates: Vec<usize> = (0..queue.len())
        .filter(|&k| queue[k].delivered == delivered)
        .collect();
    (!candidates.is_empty()).then(|| candidates[index % candidates.len()])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_schedules(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..64)) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut accepter, mut inviter) = handshake(&mut rng);
        // [0]: towards the inviter (sent by the accepter), [1]: towards the accepter.
        let mut queues: [Vec<InFlight>; 2] = [Vec::new(), Vec::new()];
        let mut counter = 0u32;
        for op in ops {
            match op {
                Op::Send(from_accepter, len) => {
                    counter += 1;
                    let mut plain = counter.to_be_bytes().to_vec();
                    plain.resize(4 + len * 29 % (MAX_PLAINTEXT_LEN - 4), 0x5a);
                    let (tx, q) = if from_accepter {
                        (&mut accepter, 0)
                    } else {
                        (&mut inviter, 1)
                    };
                    let body = tx.encrypt(&mut rng, &plain).unwrap();
                    prop_assert_eq!(body.len(), 2048);
                    queues[q].push(InFlight { body, plain, delivered: false });
                }
                Op::Deliver(to_inviter, i) => {
                    let (rx, q) = if to_inviter { (&mut inviter, 0) } else { (&mut accepter, 1) };
                    if let Some(k) = pick(&queues[q], false, i) {
                        let m = &mut queues[q][k];
                        let plain = rx.decrypt(&mut rng, &m.body).unwrap();
                        prop_assert_eq!(&*plain, &m.plain[..]);
                        m.delivered = true;
                    }
                }
                Op::Duplicate(to_inviter, i) => {
                    let (rx, q) = if to_inviter { (&mut inviter, 0) } else { (&mut accepter, 1) };
                    if let Some(k) = pick(&queues[q], true, i) {
                        prop_assert_eq!(
                            rx.decrypt(&mut rng, &queues[q][k].body),
                            Err(Error::VerificationFailed)
                        );
                    }
                }
                Op::Drop(to_inviter, i) => {
                    let q = usize::from(!to_inviter);
                    if let Some(k) = pick(&queues[q], false, i) {
                        queues[q].remove(k);
                    }
                }
                Op::Tamper(to_inviter, i, pos, bit) => {
                    let (rx, q) = if to_inviter { (&mut inviter, 0) } else { (&mut accepter, 1) };
                    if !queues[q].is_empty() {
                        let mut bad = queues[q][i % queues[q].len()].body.clone();
                        bad[pos] ^= 1 << bit;
                        prop_assert_eq!(rx.decrypt(&mut rng, &bad), Err(Error::VerificationFailed));
                    }
                }
                Op::Restore(which) => {
                    let side = if which { &mut accepter } else { &mut inviter };
                    let bytes = side.to_bytes();
                    *side = Session::from_bytes(&bytes).unwrap();
                    prop_assert_eq!(&*side.to_bytes(), &*bytes);
                }
            }
        }
        // Everything not dropped still arrives, exactly once, in any order.
        for (q, rx) in [(0, &mut inviter), (1, &mut accepter)] {
            for m in queues[q].iter_mut().rev().filter(|m| !m.delivered) {
                let plain = rx.decrypt(&mut rng, &m.body).unwrap();
                prop_assert_eq!(&*plain, &m.plain[..]);
                prop_assert!(rx.decrypt(&mut rng, &m.body).is_err());
            }
        }
    }

    #[test]
    fn state_decoding_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Session::from_bytes(&bytes);
        let _ = PendingInvitation::from_bytes(&bytes);
    }

    #[test]
    fn corrupted_state_never_panics(seed in any::<u64>(), pos in any::<usize>(), bit in 0..8u8) {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut accepter, mut inviter) = handshake(&mut rng);
        let m = accepter.encrypt(&mut rng, b"x").unwrap();
        inviter.decrypt(&mut rng, &m).unwrap();
        let mut bytes = inviter.to_bytes().to_vec();
        let p = pos % bytes.len();
        bytes[p] ^= 1 << bit;
        if let Ok(mut s) = Session::from_bytes(&bytes) {
            let _ = s.encrypt(&mut rng, b"y");
        }
    }
}

#[test]
fn long_one_way_runs_and_jumps() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut accepter, mut inviter) = handshake(&mut rng);
    // 1,000 messages skipped in one jump still decrypt; the store fills
    // up to its bound and no further.
    let bodies: Vec<Vec<u8>> = (0..=enlace_protocol::limits::MAX_FORWARD_JUMPS)
        .map(|i| accepter.encrypt(&mut rng, &i.to_be_bytes()).unwrap())
        .collect();
    let last = bodies.last().unwrap();
    assert_eq!(
        &*inviter.decrypt(&mut rng, last).unwrap(),
        &enlace_protocol::limits::MAX_FORWARD_JUMPS.to_be_bytes()
    );
    assert_eq!(
        inviter.skipped_keys(),
        enlace_protocol::limits::MAX_FORWARD_JUMPS as usize
    );
    assert_eq!(
        &*inviter.decrypt(&mut rng, &bodies[17]).unwrap(),
        &17u32.to_be_bytes()
    );
    // One more than the bound ahead: rejected, nothing stored.
    for _ in 0..=enlace_protocol::limits::MAX_FORWARD_JUMPS {
        accepter.encrypt(&mut rng, b"lost").unwrap();
    }
    let far = accepter.encrypt(&mut rng, b"far").unwrap();
    let before = inviter.skipped_keys();
    assert_eq!(
        inviter.decrypt(&mut rng, &far),
        Err(Error::VerificationFailed)
    );
    assert_eq!(inviter.skipped_keys(), before);
}
