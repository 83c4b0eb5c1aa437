//! Nucleus (group) messages, the membership fold and several members'
//! operations interleaved. Decoders never panic and are canonical
//! (decode -> encode is the identity); the fold never panics on any set
//! of operations, never yields more than MAX_MEMBERS and does not depend
//! on their order; members who end up holding the same operations agree,
//! whatever they signed (honestly, backdated, without the role) and in
//! whatever order they received it.
//!
//! The first byte picks the target: 0 version-1 operation (verified), 1
//! version-1 operation (unverified, as read from a store), 2 nucleus text
//! part, 3 text part, 4 introduction, 5 the version-1 fold over operations
//! signed from a compact description (four bytes each), 6 the version-1
//! fold over raw operations (each u16 length-prefixed, decoded without
//! their signatures), 7 version-2 operation (verified), 8 version-2
//! operation (unverified), 9 the version-2 fold over raw operations, 10
//! several members signing and receiving each other's operations (three
//! bytes a step, see `interaction`).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use enlace_protocol::group::limits::{MAX_MEMBERS, MAX_WAITING_OPS};
use enlace_protocol::group::{
    Action, ActionV1, Fold, GroupText, History, Introduction, NucleusId, Op, OpHash, OpV1, Role,
    TextPart, Verdict,
};
use enlace_protocol::keys::SigningKeyPair;
use libfuzzer_sys::fuzz_target;

/// Identity keys the compact fold description chooses from.
const KEYS: u8 = 6;
/// Lamport clocks it chooses from: few, so that clocks collide.
const CLOCKS: u8 = 16;
/// Members of the interaction.
const MEMBERS: usize = 4;
/// Steps of one interaction: enough for removals, re-adds and backdating.
const MAX_STEPS: usize = 48;

const NUCLEUS: NucleusId = NucleusId([7; 16]);

fn keys() -> &'static [SigningKeyPair] {
    static KEYS_: OnceLock<Vec<SigningKeyPair>> = OnceLock::new();
    KEYS_.get_or_init(|| {
        (1..=KEYS)
            .map(|i| SigningKeyPair::from_secret_bytes(&[i; 32]))
            .collect()
    })
}

/// Every version-1 operation the compact description can name, signed
/// once (and verified: `None` where decoding refuses it, a `create` of
/// someone else), indexed by author, clock, action and target.
fn table() -> &'static [Option<OpV1>] {
    static TABLE: OnceLock<Vec<Option<OpV1>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = Vec::new();
        for author in keys() {
            for lamport in 0..CLOCKS {
                for action in [ActionV1::Create, ActionV1::Add, ActionV1::Remove] {
                    for target in keys() {
                        let op = OpV1::sign(
                            author,
                            NUCLEUS,
                            u64::from(lamport),
                            action,
                            *target.public().as_bytes(),
                            "m",
                        )
                        .ok()
                        .and_then(|op| OpV1::decode(op.as_bytes()).ok());
                        table.push(op);
                    }
                }
            }
        }
        table
    })
}

/// The version-1 operation four fuzz bytes name.
fn compact(c: [u8; 4]) -> Option<&'static OpV1> {
    let [author, lamport, action, target] = c;
    let index =
        ((usize::from(author % KEYS) * usize::from(CLOCKS) + usize::from(lamport % CLOCKS)) * 3
            + usize::from(action % 3))
            * usize::from(KEYS)
            + usize::from(target % KEYS);
    table().get(index)?.as_ref()
}

/// Checks what holds for any fold, and returns it.
fn checked(history: History<'_>) -> Fold {
    let fold = history.fold();
    assert!(fold.members.len() <= MAX_MEMBERS);
    assert!(fold.heads.len() <= fold.order.len());
    for op in history.ops {
        assert!(fold.verdicts.contains_key(&op.hash()));
    }
    // The same set in another order folds the same.
    let mut v1 = history.v1.to_vec();
    v1.reverse();
    let mut ops = history.ops.to_vec();
    ops.reverse();
    let again = History {
        v1: &v1,
        ops: &ops,
        ..history
    }
    .fold();
    assert_eq!(again, fold, "order changed the fold");
    fold
}

/// Length-prefixed chunks.
fn chunks(mut r: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while let Some((len, tail)) = r.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len));
        let Some((bytes, tail)) = tail.split_at_checked(len) else {
            break;
        };
        out.push(bytes);
        r = tail;
    }
    out
}

/// One member of the interaction: what it holds, and what waits for a
/// parent.
struct Member {
    held: Vec<Op>,
    waiting: Vec<Op>,
}

impl Member {
    fn history<'a>(&self, root: OpHash, ops: &'a [Op]) -> History<'a> {
        History {
            creator: None,
            root: Some(root),
            v1: &[],
            ops,
        }
    }

    /// Receives `op` as a client does: placed if it counts in its own
    /// past, dropped if refused, kept waiting while a parent is missing
    /// (within the client's per-author bound); then whatever waited and
    /// can be placed now.
    fn receive(&mut self, root: OpHash, op: &Op) {
        if self
            .held
            .iter()
            .chain(&self.waiting)
            .any(|o| o.hash() == op.hash())
        {
            return;
        }
        // The client's bound: at most MAX_WAITING_OPS waiting per author, a
        // new one dropping only its own author's oldest.
        let same: Vec<usize> = (0..self.waiting.len())
            .filter(|&i| self.waiting[i].author() == op.author())
            .collect();
        if same.len() >= MAX_WAITING_OPS {
            self.waiting.remove(same[0]);
        }
        self.waiting.push(op.clone());
        loop {
            let mut progress = false;
            let waiting = std::mem::take(&mut self.waiting);
            for o in waiting {
                match self.history(root, &self.held).admit(&o) {
                    Verdict::Counts => {
                        self.held.push(o);
                        progress = true;
                    }
                    Verdict::Refused(_) => progress = true,
                    Verdict::Waits => self.waiting.push(o),
                }
            }
            if !progress {
                break;
            }
        }
    }
}

/// Several members exchanging operations: the creator (key 0) founds the
/// nucleus and every member holds its `create`. Each step is three bytes
/// `[who, what, arg]`: `who` signs an operation (`what` 0-4: add, remove,
/// role, join, leave; target `arg`; parents its heads, or with the top
/// bit of `arg` set one older operation it holds: backdated), or receives
/// one operation signed so far (`what` 5), or all of them (`what` 6).
/// Everyone receives everything at the end; then they must agree.
fn interaction(data: &[u8]) {
    let ks = keys();
    let Some(creator) = ks.first() else {
        return;
    };
    let create = match Op::sign(
        creator,
        NUCLEUS,
        Action::Create,
        *creator.public().as_bytes(),
        &[],
        "n",
    ) {
        Ok(op) => op,
        Err(_) => return,
    };
    let root = create.hash();
    let mut members: Vec<Member> = (0..MEMBERS)
        .map(|_| Member {
            held: vec![create.clone()],
            waiting: Vec::new(),
        })
        .collect();
    let mut sent: Vec<Op> = vec![create];
    for step in data.chunks_exact(3).take(MAX_STEPS) {
        let (who, what, arg) = (usize::from(step[0]) % MEMBERS, step[1] % 7, step[2]);
        let target_key = &ks[usize::from(arg & 0x7f) % MEMBERS];
        let target = *target_key.public().as_bytes();
        let Some(m) = members.get_mut(who) else {
            continue;
        };
        match what {
            0..=4 => {
                let author = &ks[who];
                let me = *author.public().as_bytes();
                let (action, target) = match what {
                    0 => (Action::Add, target),
                    1 => (Action::Remove, target),
                    2 => (Action::SetRole(Role::ALL[usize::from(arg) % 3]), target),
                    3 => (Action::Join, me),
                    _ => (Action::Remove, me),
                };
                let parents = if arg & 0x80 != 0 {
                    let i = usize::from(arg) % m.held.len();
                    vec![m.held[i].hash()]
                } else {
                    m.history(root, &m.held)
                        .fold()
                        .heads
                        .into_iter()
                        .take(16)
                        .collect()
                };
                let name = if action == Action::Add { "m" } else { "" };
                let Ok(op) = Op::sign(author, NUCLEUS, action, target, &parents, name) else {
                    continue;
                };
                m.receive(root, &op);
                sent.push(op);
            }
            5 => {
                let op = sent[usize::from(arg) % sent.len()].clone();
                m.receive(root, &op);
            }
            _ => {
                for op in &sent {
                    m.receive(root, op);
                }
            }
        }
    }
    for m in &mut members {
        for op in &sent {
            m.receive(root, op);
        }
    }
    // Admission depends only on an operation and its past: everyone holds
    // the same set, and so folds the same.
    let sets: Vec<BTreeMap<OpHash, ()>> = members
        .iter()
        .map(|m| m.held.iter().map(|o| (o.hash(), ())).collect())
        .collect();
    let folds: Vec<Fold> = members
        .iter()
        .map(|m| checked(m.history(root, &m.held)))
        .collect();
    for (set, fold) in sets.iter().zip(&folds).skip(1) {
        assert_eq!(set, &sets[0], "members hold different operations");
        assert_eq!(fold, &folds[0], "members disagree");
    }
    // Nothing that waits is left: every parent was sent.
    assert!(members.iter().all(|m| m.waiting.is_empty()));
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 11 {
        0 => {
            if let Ok(op) = OpV1::decode(rest) {
                assert_eq!(op.as_bytes(), rest);
                assert_eq!(OpV1::decode_unverified(rest).ok(), Some(op));
            }
        }
        1 => {
            if let Ok(op) = OpV1::decode_unverified(rest) {
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
            let v1: Vec<OpV1> = rest
                .chunks_exact(4)
                .take(64)
                .filter_map(|c| compact([c[0], c[1], c[2], c[3]]).cloned())
                .collect();
            let creator = Some(*keys()[0].public().as_bytes());
            checked(History {
                creator,
                root: None,
                v1: &v1,
                ops: &[],
            });
        }
        6 => {
            let v1: Vec<OpV1> = chunks(rest)
                .into_iter()
                .filter_map(|b| OpV1::decode_unverified(b).ok())
                .collect();
            let creator = v1.first().map(|op| *op.author());
            for creator in [creator, None] {
                checked(History {
                    creator,
                    root: None,
                    v1: &v1,
                    ops: &[],
                });
            }
        }
        7 => {
            if let Ok(op) = Op::decode(rest) {
                assert_eq!(op.as_bytes(), rest);
                assert_eq!(Op::decode_unverified(rest).ok(), Some(op));
            }
        }
        8 => {
            if let Ok(op) = Op::decode_unverified(rest) {
                assert_eq!(op.as_bytes(), rest);
                assert_eq!(op.hash(), OpHash::of(rest));
            }
        }
        9 => {
            let ops: Vec<Op> = chunks(rest)
                .into_iter()
                .take(128)
                .filter_map(|b| Op::decode_unverified(b).ok())
                .collect();
            let root = ops
                .iter()
                .find(|o| o.action() == Action::Create)
                .map(Op::hash);
            let history = History {
                creator: None,
                root,
                v1: &[],
                ops: &ops,
            };
            checked(history);
            for op in ops.iter().take(8) {
                let _ = history.admit(op);
            }
        }
        _ => interaction(rest),
    }
});
