//! Nucleus (group) messages and the membership fold. Decoders never panic
//! and are canonical (decode -> encode is the identity); the fold never
//! panics on any set of operations, never yields more than MAX_MEMBERS,
//! and, over signed operations, does not depend on their order.
//!
//! The first byte picks the target: 0 operation (verified), 1 operation
//! (unverified, as read from a store), 2 nucleus text part, 3 text part,
//! 4 introduction, 5 the fold over operations signed from a compact
//! description (four bytes each), 6 the fold over raw operations (each
//! u16 length-prefixed, decoded without their signatures).
#![no_main]

use std::sync::OnceLock;

use enlace_protocol::group::limits::MAX_MEMBERS;
use enlace_protocol::group::{Action, Fold, GroupText, Introduction, NucleusId, Op, TextPart};
use enlace_protocol::keys::SigningKeyPair;
use libfuzzer_sys::fuzz_target;

/// Identity keys the compact fold description chooses from.
const KEYS: u8 = 6;
/// Lamport clocks it chooses from: few, so that clocks collide.
const CLOCKS: u8 = 16;

/// Every operation the compact description can name, signed once (and
/// verified: `None` where decoding refuses it, a `create` of someone
/// else), indexed by author, clock, action and target.
fn table() -> &'static [Option<Op>] {
    static TABLE: OnceLock<Vec<Option<Op>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let keys: Vec<SigningKeyPair> = (1..=KEYS)
            .map(|i| SigningKeyPair::from_secret_bytes(&[i; 32]))
            .collect();
        let mut table = Vec::new();
        for author in &keys {
            for lamport in 0..CLOCKS {
                for action in [Action::Create, Action::Add, Action::Remove] {
                    for target in &keys {
                        let op = Op::sign(
                            author,
                            NucleusId([7; 16]),
                            u64::from(lamport),
                            action,
                            *target.public().as_bytes(),
                            "m",
                        )
                        .ok()
                        .and_then(|op| Op::decode(op.as_bytes()).ok());
                        table.push(op);
                    }
                }
            }
        }
        table
    })
}

/// The operation four fuzz bytes name.
fn compact(c: [u8; 4]) -> Option<&'static Op> {
    let [author, lamport, action, target] = c;
    let index =
        ((usize::from(author % KEYS) * usize::from(CLOCKS) + usize::from(lamport % CLOCKS)) * 3
            + usize::from(action % 3))
            * usize::from(KEYS)
            + usize::from(target % KEYS);
    table().get(index)?.as_ref()
}

/// Checks what holds for any fold, and returns it.
fn checked_fold(creator: Option<[u8; 32]>, ops: &[Op]) -> Fold {
    let fold = Fold::new(creator, ops);
    assert!(fold.members.len() <= MAX_MEMBERS);
    assert!(fold.members.keys().all(|k| fold.ever.contains(k)));
    for op in ops {
        let _ = fold.places(op, creator);
    }
    fold
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 7 {
        0 => {
            if let Ok(op) = Op::decode(rest) {
                assert_eq!(op.as_bytes(), rest);
                assert_eq!(Op::decode_unverified(rest).ok(), Some(op));
            }
        }
        1 => {
            if let Ok(op) = Op::decode_unverified(rest) {
                assert_eq!(op.as_bytes(), rest);
            }
        }
        2 => {
            if let Ok(text) = GroupText::decode(rest) {
                let mut out = Vec::new();
                text.encode(&mut out);
                assert_eq!(out, rest);
            }
        }
        3 => {
            if let Ok(part) = TextPart::decode(rest) {
                let mut out = Vec::new();
                part.encode(&mut out);
                assert_eq!(out, rest);
            }
        }
        4 => {
            if let Ok(intro) = Introduction::decode(rest) {
                assert_eq!(intro.as_bytes(), rest);
            }
        }
        5 => {
            let ops: Vec<Op> = rest
                .chunks_exact(4)
                .take(64)
                .filter_map(|c| compact([c[0], c[1], c[2], c[3]]).cloned())
                .collect();
            let creator = Some(
                *SigningKeyPair::from_secret_bytes(&[1; 32])
                    .public()
                    .as_bytes(),
            );
            let fold = checked_fold(creator, &ops);
            let mut reversed = ops.clone();
            reversed.reverse();
            assert_eq!(
                Fold::new(creator, &reversed),
                fold,
                "order changed the fold"
            );
        }
        _ => {
            let mut ops = Vec::new();
            let mut r = rest;
            while let Some((len, tail)) = r.split_first_chunk::<2>() {
                let len = usize::from(u16::from_be_bytes(*len));
                let Some((bytes, tail)) = tail.split_at_checked(len) else {
                    break;
                };
                if let Ok(op) = Op::decode_unverified(bytes) {
                    ops.push(op);
                }
                r = tail;
            }
            let creator = ops.first().map(|op| *op.author());
            checked_fold(creator, &ops);
            checked_fold(None, &ops);
        }
    }
});
