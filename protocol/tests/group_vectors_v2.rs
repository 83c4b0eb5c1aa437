//! The version-2 nucleus vectors of `protocol/testdata/group.json` and
//! `fail_group.json` (kinds `op_v2`, `fold_v2`; refused: `op_v2`,
//! `admission_v2`, `fold_v2`), checked with the public API only, as an
//! independent implementation would (docs/protocol.md, section 13).
//!
//! `cargo test -p enlace-protocol --test group_vectors_v2 -- --ignored
//! regenerate` rewrites the version-2 entries from the implementation,
//! after a deliberate format change; the version-1 entries are never
//! touched.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::path::PathBuf;

use enlace_protocol::group::{
    Action, ActionV1, History, NucleusId, Op, OpHash, OpV1, Refusal, Role, Verdict,
};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::{DecodeError, Error};
use serde_json::{Value, json};

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn vectors(name: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path(name)).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn a32(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap()
}

fn seed(n: u8) -> [u8; 32] {
    core::array::from_fn(|i| n.wrapping_add(i as u8))
}

fn key(n: u8) -> SigningKeyPair {
    SigningKeyPair::from_secret_bytes(&seed(n))
}

fn pk(n: u8) -> [u8; 32] {
    *key(n).public().as_bytes()
}

const NUCLEUS: NucleusId = NucleusId([0x6e; 16]);

fn action_name(a: Action) -> (&'static str, Option<&'static str>) {
    match a {
        Action::Create => ("create", None),
        Action::Add => ("add", None),
        Action::Remove => ("remove", None),
        Action::SetRole(r) => ("role", Some(r.as_str())),
        Action::Join => ("join", None),
    }
}

fn action_of(v: &Value) -> Action {
    let role = |v: &Value| {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == v.as_str().unwrap())
            .unwrap()
    };
    match v["action"].as_str().unwrap() {
        "create" => Action::Create,
        "add" => Action::Add,
        "remove" => Action::Remove,
        "role" => Action::SetRole(role(&v["role"])),
        "join" => Action::Join,
        other => panic!("unknown action {other}"),
    }
}

fn refusal_name(r: Refusal) -> &'static str {
    match r {
        Refusal::NotTheCreate => "not_the_create",
        Refusal::NotMember => "not_member",
        Refusal::NotJoined => "not_joined",
        Refusal::NoRole => "no_role",
        Refusal::LastOwner => "last_owner",
        Refusal::Target => "target",
        Refusal::Full => "full",
        Refusal::Superseded => "superseded",
        Refusal::Quota => "quota",
    }
}

/// A named operation of the vectors' nucleus, by the key with seed byte
/// `author`.
struct Named {
    name: &'static str,
    author: u8,
    op: Op,
}

fn sign(
    name: &'static str,
    author: u8,
    action: Action,
    target: u8,
    parents: &[&Op],
    label: &str,
) -> Named {
    let parents: Vec<OpHash> = parents.iter().map(|o| o.hash()).collect();
    let op = Op::sign(&key(author), NUCLEUS, action, pk(target), &parents, label).unwrap();
    Named { name, author, op }
}

/// The story the vectors tell: 0x01 creates, invites 0x02 (who joins and
/// becomes admin) and 0x03; 0x02 invites 0x04; 0x03 declines; 0x01
/// demotes 0x02 and removes 0x04.
fn story() -> Vec<Named> {
    let create = sign("v2-create", 1, Action::Create, 1, &[], "asamblea");
    let add2 = sign("v2-add", 1, Action::Add, 2, &[&create.op], "Ben");
    let join2 = sign("v2-join", 2, Action::Join, 2, &[&add2.op], "");
    let admin2 = sign(
        "v2-role-admin",
        1,
        Action::SetRole(Role::Admin),
        2,
        &[&join2.op],
        "",
    );
    let add3 = sign("v2-add-two-heads", 1, Action::Add, 3, &[&admin2.op], "Cai");
    let add4 = sign("v2-add-by-admin", 2, Action::Add, 4, &[&admin2.op], "Dia");
    let decline3 = sign("v2-decline", 3, Action::Remove, 3, &[&add3.op], "");
    let demote2 = sign(
        "v2-role-member",
        1,
        Action::SetRole(Role::Member),
        2,
        &[&add4.op, &decline3.op],
        "",
    );
    let rm4 = sign("v2-remove", 1, Action::Remove, 4, &[&demote2.op], "");
    vec![
        create, add2, join2, admin2, add3, add4, decline3, demote2, rm4,
    ]
}

fn op_vector(n: &Named) -> Value {
    let (action, role) = action_name(n.op.action());
    json!({
        "kind": "op_v2",
        "name": n.name,
        "author_seed": hex::encode(seed(n.author)),
        "author": hex::encode(n.op.author()),
        "nucleus": hex::encode(n.op.nucleus().0),
        "action": action,
        "role": role,
        "target": hex::encode(n.op.target()),
        "parents": n.op.parents().iter().map(|p| hex::encode(p.0)).collect::<Vec<_>>(),
        "op_name": n.op.name(),
        "encoding": hex::encode(n.op.as_bytes()),
        "hash": hex::encode(n.op.hash().0),
        "app_message": hex::encode([&[1, 16][..], n.op.as_bytes()].concat()),
    })
}

fn fold_vector(
    name: &str,
    creator: Option<[u8; 32]>,
    root: Option<&Op>,
    v1: &[OpV1],
    ops: &[&Op],
) -> Value {
    let owned: Vec<Op> = ops.iter().map(|o| (*o).clone()).collect();
    let fold = History {
        creator,
        root: root.map(Op::hash),
        v1,
        ops: &owned,
    }
    .fold();
    let members: Vec<Value> = fold
        .members
        .iter()
        .map(|(k, m)| {
            json!({"key": hex::encode(k), "role": m.role.as_str(), "joined": m.joined,
                   "added_by": hex::encode(m.added_by), "suggested_name": m.suggested_name})
        })
        .collect();
    let verdicts: Vec<Value> = owned
        .iter()
        .map(|o| {
            let v = match fold.verdicts[&o.hash()] {
                Verdict::Counts => "counts".to_owned(),
                Verdict::Refused(r) => refusal_name(r).to_owned(),
                Verdict::Waits => "waits".to_owned(),
            };
            json!({"hash": hex::encode(o.hash().0), "verdict": v})
        })
        .collect();
    json!({
        "kind": "fold_v2",
        "name": name,
        "creator": creator.map(hex::encode),
        "root": root.map(|r| hex::encode(r.hash().0)),
        "v1_ops": v1.iter().map(|o| hex::encode(o.as_bytes())).collect::<Vec<_>>(),
        "ops": owned.iter().map(|o| hex::encode(o.as_bytes())).collect::<Vec<_>>(),
        "members": members,
        "verdicts": verdicts,
        "heads": fold.heads.iter().map(|h| hex::encode(h.0)).collect::<Vec<_>>(),
    })
}

fn good_vectors() -> Vec<Value> {
    let s = story();
    let mut out: Vec<Value> = s.iter().map(op_vector).collect();
    let all: Vec<&Op> = s.iter().map(|n| &n.op).collect();
    out.push(fold_vector(
        "fold-v2-story",
        None,
        Some(&s[0].op),
        &[],
        &all,
    ));
    out.push(fold_vector(
        "fold-v2-invited",
        None,
        Some(&s[0].op),
        &[],
        &all[..2],
    ));
    // A version-1 nucleus, then a version-2 role change on top of it.
    let c = OpV1::sign(&key(1), NUCLEUS, 1, ActionV1::Create, pk(1), "viejo").unwrap();
    let a = OpV1::sign(&key(1), NUCLEUS, 2, ActionV1::Add, pk(2), "Ben").unwrap();
    let admin = Op::sign(
        &key(1),
        NUCLEUS,
        Action::SetRole(Role::Admin),
        pk(2),
        &[a.hash()],
        "",
    )
    .unwrap();
    out.push(fold_vector(
        "fold-v2-on-version-1",
        Some(pk(1)),
        None,
        &[c, a],
        &[&admin],
    ));
    out
}

/// Refused on arrival: (name, history, op, refusal).
fn admissions() -> Vec<(&'static str, Vec<Op>, Op, Refusal)> {
    let s = story();
    let ops: Vec<Op> = s.iter().map(|n| n.op.clone()).collect();
    let upto = |i: usize| ops[..=i].to_vec();
    let (join2, admin2, rm4) = (&ops[2], &ops[3], &ops[8]);
    vec![
        // 0x02 is a member when it signs: no role to add.
        (
            "admission-no-role",
            upto(2),
            Op::sign(&key(2), NUCLEUS, Action::Add, pk(5), &[join2.hash()], "x").unwrap(),
            Refusal::NoRole,
        ),
        // 0x04 signs after its removal, which it names.
        (
            "admission-after-removal",
            upto(8),
            Op::sign(&key(4), NUCLEUS, Action::Remove, pk(1), &[rm4.hash()], "").unwrap(),
            Refusal::NotMember,
        ),
        // 0x02 names only the create: its own admission is not in the past.
        (
            "admission-not-after-admission",
            upto(3),
            Op::sign(
                &key(2),
                NUCLEUS,
                Action::Remove,
                pk(2),
                &[ops[0].hash()],
                "",
            )
            .unwrap(),
            Refusal::NotMember,
        ),
        // An admin cannot demote the owner.
        (
            "admission-admin-demotes-owner",
            upto(3),
            Op::sign(
                &key(2),
                NUCLEUS,
                Action::SetRole(Role::Member),
                pk(1),
                &[admin2.hash()],
                "",
            )
            .unwrap(),
            Refusal::NoRole,
        ),
        // The last owner cannot demote itself.
        (
            "admission-last-owner",
            upto(3),
            Op::sign(
                &key(1),
                NUCLEUS,
                Action::SetRole(Role::Admin),
                pk(1),
                &[admin2.hash()],
                "",
            )
            .unwrap(),
            Refusal::LastOwner,
        ),
        // An invited member (0x03, before declining) cannot act.
        (
            "admission-invited-not-joined",
            upto(4),
            Op::sign(&key(3), NUCLEUS, Action::Add, pk(5), &[ops[4].hash()], "x").unwrap(),
            Refusal::NotJoined,
        ),
    ]
}

/// Stored (they count in their own past) but refused by the fold: the
/// backdated add by 0x02, naming the parents it had as admin, concurrent
/// with its demotion; another after its removal.
fn backdated() -> Vec<(&'static str, Vec<Op>, Op)> {
    let s = story();
    let ops: Vec<Op> = s.iter().map(|n| n.op.clone()).collect();
    let admin2 = &ops[3];
    let add = Op::sign(&key(2), NUCLEUS, Action::Add, pk(6), &[admin2.hash()], "x").unwrap();
    let rm2 = Op::sign(
        &key(1),
        NUCLEUS,
        Action::Remove,
        pk(2),
        &[ops[8].hash()],
        "",
    )
    .unwrap();
    let mut removed = ops.clone();
    removed.push(rm2);
    // A removal would count (removals take effect on their own past's
    // authority); an add needs the role its author lost concurrently.
    let rm1 = Op::sign(&key(2), NUCLEUS, Action::Add, pk(7), &[ops[5].hash()], "y").unwrap();
    vec![
        ("fold-backdated-below-demotion", ops, add),
        ("fold-backdated-below-removal", removed, rm1),
    ]
}

fn history_vector(kind: &str, name: &str, history: &[Op], op: &Op, error: &str) -> Value {
    json!({
        "kind": kind,
        "name": name,
        "root": hex::encode(history[0].hash().0),
        "ops": history.iter().map(|o| hex::encode(o.as_bytes())).collect::<Vec<_>>(),
        "op": hex::encode(op.as_bytes()),
        "error": error,
    })
}

/// Version-2 encodings that must not decode: (name, bytes, error).
fn malformed() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let s = story();
    let add = s[1].op.as_bytes().to_vec();
    let create = s[0].op.as_bytes().to_vec();
    let join = s[2].op.as_bytes().to_vec();
    let with = |mut b: Vec<u8>, at: usize, x: u8| {
        b[at] = x;
        b
    };
    let flip = |b: &[u8], at: usize| with(b.to_vec(), at, b[at] ^ 1);
    let resign = |author: u8, body: Vec<u8>| {
        let sig = key(author).sign_nucleus(enlace_protocol::keys::NucleusStatement::OpV2, &body);
        [body, sig.0.to_vec()].concat()
    };
    let body = |b: &[u8]| b[..b.len() - 64].to_vec();
    // Layout offsets: nucleus 0..16, action 16, role 17, author 18..50,
    // target 50..82, parent count 82, parents from 83.
    let two_parents = s[7].op.as_bytes().to_vec();
    let mut swapped = body(&two_parents);
    let (p1, p2) = (swapped[83..115].to_vec(), swapped[115..147].to_vec());
    swapped[83..115].copy_from_slice(&p2);
    swapped[115..147].copy_from_slice(&p1);
    let mut v1_signed = body(&add);
    let v1_sig = key(1).sign_nucleus(enlace_protocol::keys::NucleusStatement::Op, &v1_signed);
    v1_signed.extend_from_slice(&v1_sig.0);
    let mut too_many = body(&add);
    too_many[82] = 17;
    vec![
        ("op-v2-empty", Vec::new(), "malformed"),
        (
            "op-v2-truncated",
            add[..add.len() - 1].to_vec(),
            "malformed",
        ),
        (
            "op-v2-trailing-byte",
            [&add[..], &[0]].concat(),
            "malformed",
        ),
        (
            "op-v2-unknown-action",
            resign(1, with(body(&add), 16, 6)),
            "malformed",
        ),
        (
            "op-v2-role-on-add",
            resign(1, with(body(&add), 17, 1)),
            "malformed",
        ),
        (
            "op-v2-role-unknown",
            resign(1, with(with(body(&add), 16, 4), 17, 4)),
            "malformed",
        ),
        (
            "op-v2-add-without-parents",
            resign(
                1,
                [&body(&create)[..16], &[2], &body(&create)[17..]].concat(),
            ),
            "malformed",
        ),
        (
            "op-v2-create-with-parent",
            resign(1, [&body(&join)[..16], &[1], &body(&join)[17..]].concat()),
            "malformed",
        ),
        (
            "op-v2-join-for-someone-else",
            resign(1, [&body(&join)[..18], &pk(1), &body(&join)[50..]].concat()),
            "malformed",
        ),
        ("op-v2-parents-unordered", resign(1, swapped), "malformed"),
        ("op-v2-too-many-parents", resign(1, too_many), "malformed"),
        (
            "op-v2-flipped-parent",
            flip(&add, 90),
            "verification_failed",
        ),
        (
            "op-v2-flipped-signature",
            flip(&add, add.len() - 1),
            "verification_failed",
        ),
        (
            "op-v2-author-replaced",
            [&add[..18], &pk(2), &add[50..]].concat(),
            "verification_failed",
        ),
        (
            "op-v2-signed-as-version-1",
            v1_signed,
            "verification_failed",
        ),
    ]
}

fn bad_vectors() -> Vec<Value> {
    let mut out: Vec<Value> = malformed()
        .into_iter()
        .map(|(name, bytes, error)| {
            json!({"kind": "op_v2", "name": name, "input": hex::encode(bytes), "error": error})
        })
        .collect();
    for (name, history, op, why) in admissions() {
        out.push(history_vector(
            "admission_v2",
            name,
            &history,
            &op,
            refusal_name(why),
        ));
    }
    for (name, history, op) in backdated() {
        out.push(history_vector("fold_v2", name, &history, &op, "superseded"));
    }
    out
}

fn is_v2(v: &Value) -> bool {
    v["kind"].as_str().unwrap().ends_with("_v2")
}

#[test]
#[ignore = "rewrites the version-2 entries of protocol/testdata/group.json and fail_group.json"]
fn regenerate() {
    for (file, fresh) in [
        ("group.json", good_vectors()),
        ("fail_group.json", bad_vectors()),
    ] {
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(path(file)).unwrap()).unwrap();
        let mut kept: Vec<Value> = doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| !is_v2(v))
            .cloned()
            .collect();
        kept.extend(fresh);
        doc["vectors"] = Value::Array(kept);
        let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        std::fs::write(path(file), text).unwrap();
    }
}

/// The files hold exactly what the implementation makes now.
#[test]
fn files_are_current() {
    let file: Vec<Value> = vectors("group.json").into_iter().filter(is_v2).collect();
    assert_eq!(file, good_vectors());
    let file: Vec<Value> = vectors("fail_group.json")
        .into_iter()
        .filter(is_v2)
        .collect();
    assert_eq!(file, bad_vectors());
}

#[test]
fn operations() {
    let mut seen = 0;
    for v in vectors("group.json")
        .iter()
        .filter(|v| v["kind"] == "op_v2")
    {
        let name = v["name"].as_str().unwrap();
        let author = SigningKeyPair::from_secret_bytes(&a32(&v["author_seed"]));
        assert_eq!(author.public().as_bytes(), &a32(&v["author"]), "{name}");
        let parents: Vec<OpHash> = v["parents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| OpHash(a32(p)))
            .collect();
        let nucleus = NucleusId(h(&v["nucleus"]).try_into().unwrap());
        let action = action_of(v);
        let op = Op::sign(
            &author,
            nucleus,
            action,
            a32(&v["target"]),
            &parents,
            v["op_name"].as_str().unwrap(),
        )
        .unwrap();
        let encoding = h(&v["encoding"]);
        assert_eq!(op.as_bytes(), &encoding[..], "{name}");
        assert_eq!(op.hash().0.to_vec(), h(&v["hash"]), "{name}");
        assert_eq!(
            [&[1, 16][..], &encoding].concat(),
            h(&v["app_message"]),
            "{name}"
        );
        let back = Op::decode(&encoding).unwrap();
        assert_eq!(back, op, "{name}");
        assert_eq!(
            (back.action(), back.parents()),
            (action, &parents[..]),
            "{name}"
        );
        seen += 1;
    }
    assert!(seen >= 9);
}

fn ops_of(v: &Value) -> Vec<Op> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| Op::decode(&h(o)).unwrap())
        .collect()
}

#[test]
fn folds() {
    let mut seen = 0;
    for v in vectors("group.json")
        .iter()
        .filter(|v| v["kind"] == "fold_v2")
    {
        let name = v["name"].as_str().unwrap();
        let v1: Vec<OpV1> = v["v1_ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| OpV1::decode(&h(o)).unwrap())
            .collect();
        let mut ops = ops_of(&v["ops"]);
        let history = |ops: &[Op]| {
            History {
                creator: v["creator"].as_str().map(|_| a32(&v["creator"])),
                root: v["root"].as_str().map(|_| OpHash(a32(&v["root"]))),
                v1: &v1,
                ops,
            }
            .fold()
        };
        let fold = history(&ops);
        let want = v["members"].as_array().unwrap();
        assert_eq!(fold.members.len(), want.len(), "{name}");
        for ((key, m), w) in fold.members.iter().zip(want) {
            assert_eq!(key, &a32(&w["key"]), "{name}");
            assert_eq!(m.role.as_str(), w["role"], "{name}");
            assert_eq!(m.joined, w["joined"], "{name}");
            assert_eq!(m.added_by, a32(&w["added_by"]), "{name}");
            assert_eq!(m.suggested_name, w["suggested_name"], "{name}");
        }
        for w in v["verdicts"].as_array().unwrap() {
            let got = match fold.verdicts[&OpHash(a32(&w["hash"]))] {
                Verdict::Counts => "counts",
                Verdict::Refused(why) => refusal_name(why),
                Verdict::Waits => "waits",
            };
            assert_eq!(got, w["verdict"], "{name}");
        }
        let heads: Vec<String> = fold.heads.iter().map(|x| hex::encode(x.0)).collect();
        assert_eq!(json!(heads), v["heads"], "{name}");
        // Any order of arrival folds the same.
        ops.reverse();
        assert_eq!(history(&ops), fold, "{name}");
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn failures() {
    let mut seen = 0;
    for v in vectors("fail_group.json").iter().filter(|v| is_v2(v)) {
        let name = v["name"].as_str().unwrap();
        match v["kind"].as_str().unwrap() {
            "op_v2" => {
                let input = h(&v["input"]);
                let got = Op::decode(&input).expect_err(name);
                let category = match got {
                    Error::Decode(_) => "malformed",
                    Error::VerificationFailed => "verification_failed",
                    _ => "other",
                };
                assert_eq!(category, v["error"], "{name}: {got}");
                if category == "malformed" {
                    let unverified: DecodeError = Op::decode_unverified(&input).expect_err(name);
                    assert_eq!(Error::from(unverified), got, "{name}");
                }
            }
            kind @ ("admission_v2" | "fold_v2") => {
                let mut ops = ops_of(&v["ops"]);
                let op = Op::decode(&h(&v["op"])).unwrap();
                let root = Some(OpHash(a32(&v["root"])));
                let history = History {
                    creator: None,
                    root,
                    v1: &[],
                    ops: &ops,
                };
                let admitted = history.admit(&op);
                if kind == "admission_v2" {
                    let Verdict::Refused(why) = admitted else {
                        panic!("{name}: admitted as {admitted:?}");
                    };
                    assert_eq!(refusal_name(why), v["error"], "{name}");
                } else {
                    // Valid in its author's view, refused once its
                    // author's demotion or removal is held.
                    assert_eq!(admitted, Verdict::Counts, "{name}");
                    ops.push(op.clone());
                    let fold = History {
                        creator: None,
                        root,
                        v1: &[],
                        ops: &ops,
                    }
                    .fold();
                    let Verdict::Refused(why) = fold.verdicts[&op.hash()] else {
                        panic!("{name}: counted");
                    };
                    assert_eq!(refusal_name(why), v["error"], "{name}");
                }
            }
            other => panic!("unknown kind {other}"),
        }
        seen += 1;
    }
    assert!(seen >= 20);
}
