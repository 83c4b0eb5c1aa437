//! Arbitrary bytes into every session decoder: invitation text and binary,
//! stored pending invitations and sessions, the handshake's first message
//! and chat message decryption. Never panics; decoders are canonical
//! (decode -> encode is the identity); nothing forged is accepted.
//!
//! The first byte picks the target. Modes 4 and 6 write the input over a
//! valid message at a fuzz-chosen offset, so the fuzzer reaches past the
//! length checks of the 16 KiB first message and 2 KiB chat messages.
#![no_main]

use std::sync::OnceLock;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::MailboxId;
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::{self, Invitation, PendingInvitation, ReplyAddress, Session};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;

struct Fixture {
    inviter: SigningKeyPair,
    pending: PendingInvitation,
    first: Vec<u8>,
    /// The inviter's session after the handshake, stored.
    inviter_state: Vec<u8>,
    /// A chat message from the accepter to the inviter.
    message: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(2);
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
        let (mut a, first) = session::accept(
            &mut rng,
            &accepter,
            pending.invitation(),
            &reply,
            sender.public(),
            b"hi",
            0,
        )
        .unwrap();
        let (i, _) = pending.complete(&mut rng, &inviter, &first, 0).unwrap();
        let message = a.encrypt(&mut rng, b"hello").unwrap();
        Fixture {
            inviter,
            pending,
            first,
            inviter_state: i.to_bytes().to_vec(),
            message,
        }
    })
}

/// `base` with `patch` written at the offset in its first two bytes.
fn overlay(base: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    if let Some((offset, patch)) = patch.split_first_chunk::<2>() {
        let offset = usize::from(u16::from_be_bytes(*offset)) % out.len();
        for (o, p) in out[offset..].iter_mut().zip(patch) {
            *o = *p;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let mut rng = StdRng::seed_from_u64(3);
    match mode % 7 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                if let Ok(inv) = Invitation::parse(text, 0) {
                    assert_eq!(Invitation::parse(&inv.to_text(), 0).unwrap(), inv);
                }
            }
        }
        1 => {
            if let Ok(inv) = Invitation::decode(rest) {
                assert_eq!(inv.as_bytes(), rest);
                assert_eq!(Invitation::parse(&inv.to_text(), 0).unwrap(), inv);
            }
        }
        2 => {
            if let Ok(p) = PendingInvitation::from_bytes(rest) {
                assert_eq!(&*p.to_bytes(), rest);
            }
        }
        3 => {
            if let Ok(mut s) = Session::from_bytes(rest) {
                assert_eq!(&*s.to_bytes(), rest);
                let _ = s.encrypt(&mut rng, b"x");
                let _ = s.decrypt(&mut rng, &f.message);
            }
        }
        4 => {
            let message = overlay(&f.first, rest);
            let result = f.pending.complete(&mut rng, &f.inviter, &message, 0);
            assert_eq!(
                result.is_ok(),
                message == f.first,
                "tampered first message accepted"
            );
        }
        5 => {
            let mut s = Session::from_bytes(&f.inviter_state).unwrap();
            assert!(s.decrypt(&mut rng, rest).is_err() || rest == f.message.as_slice());
        }
        _ => {
            let mut s = Session::from_bytes(&f.inviter_state).unwrap();
            let message = overlay(&f.message, rest);
            let result = s.decrypt(&mut rng, &message);
            assert_eq!(
                result.is_ok(),
                message == f.message,
                "tampered message accepted"
            );
        }
    }
});
