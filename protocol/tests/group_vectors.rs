//! Runs the version-1 nucleus (group) vectors of
//! `protocol/testdata/group.json` and `fail_group.json` (membership
//! operations of kind 3, texts and introductions) with the public API
//! only, as an independent implementation would. They were written by the
//! client's nucleus code before it moved into this crate and are never
//! regenerated: version-1 operations stored in old profiles must still
//! verify. The version-2 entries are `group_vectors_v2.rs`'s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // test code

use std::path::PathBuf;

use enlace_protocol::group::{
    ActionV1 as Action, GroupText, History, Introduction, NucleusId, OpV1 as Op, TextPart,
};
use enlace_protocol::keys::{Fingerprint, SigningKeyPair};
use enlace_protocol::{DecodeError, Error};
use serde_json::Value;

fn vectors(name: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).unwrap()
}

fn a32(v: &Value) -> [u8; 32] {
    h(v).try_into().unwrap()
}

fn a16(v: &Value) -> [u8; 16] {
    h(v).try_into().unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

fn action(v: &Value) -> Action {
    match v.as_str().unwrap() {
        "create" => Action::Create,
        "add" => Action::Add,
        "remove" => Action::Remove,
        other => panic!("unknown action {other}"),
    }
}

fn app_message(kind: u8, encoding: &[u8]) -> Vec<u8> {
    [&[1, kind][..], encoding].concat()
}

#[test]
fn operations() {
    let mut seen = 0;
    for v in vectors("group.json").iter().filter(|v| v["kind"] == "op") {
        let name = v["name"].as_str().unwrap();
        let key = SigningKeyPair::from_secret_bytes(&a32(&v["author_seed"]));
        assert_eq!(key.public().as_bytes(), &a32(&v["author"]), "{name}");
        let op = Op::sign(
            &key,
            NucleusId(a16(&v["nucleus"])),
            u(&v["lamport"]),
            action(&v["action"]),
            a32(&v["target"]),
            v["op_name"].as_str().unwrap(),
        )
        .unwrap();
        let encoding = h(&v["encoding"]);
        assert_eq!(op.as_bytes(), &encoding[..], "{name}");
        assert_eq!(op.id().0.to_vec(), h(&v["id"]), "{name}");
        assert_eq!(app_message(3, &encoding), h(&v["app_message"]), "{name}");
        let back = Op::decode(&encoding).unwrap();
        assert_eq!(back, op, "{name}");
        assert_eq!(back.nucleus(), NucleusId(a16(&v["nucleus"])), "{name}");
        assert_eq!(back.lamport(), u(&v["lamport"]), "{name}");
        assert_eq!(back.author(), &a32(&v["author"]), "{name}");
        assert_eq!(back.target(), &a32(&v["target"]), "{name}");
        assert_eq!(back.name(), v["op_name"].as_str().unwrap(), "{name}");
        seen += 1;
    }
    assert!(seen >= 8);
}

#[test]
fn group_texts() {
    let mut seen = 0;
    for v in vectors("group.json")
        .iter()
        .filter(|v| v["kind"] == "group_text")
    {
        let name = v["name"].as_str().unwrap();
        let part = TextPart::new(
            a16(&v["message_id"]),
            u(&v["sent_at"]),
            u16::try_from(u(&v["part"])).unwrap(),
            u16::try_from(u(&v["parts"])).unwrap(),
            h(&v["text"]),
        )
        .unwrap();
        let text = GroupText {
            nucleus: NucleusId(a16(&v["nucleus"])),
            author: Fingerprint(a32(&v["author_fingerprint"])),
            part,
        };
        let mut encoding = Vec::new();
        text.encode(&mut encoding);
        assert_eq!(encoding, h(&v["encoding"]), "{name}");
        assert_eq!(app_message(4, &encoding), h(&v["app_message"]), "{name}");
        assert_eq!(GroupText::decode(&encoding).unwrap(), text, "{name}");
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn introductions() {
    let mut seen = 0;
    for v in vectors("group.json")
        .iter()
        .filter(|v| v["kind"] == "introduction")
    {
        let name = v["name"].as_str().unwrap();
        let key = SigningKeyPair::from_secret_bytes(&a32(&v["from_seed"]));
        let invitation = h(&v["invitation"]);
        let intro = Introduction::sign(
            &key,
            NucleusId(a16(&v["nucleus"])),
            a32(&v["to"]),
            &invitation,
        )
        .unwrap();
        let encoding = h(&v["encoding"]);
        assert_eq!(intro.as_bytes(), &encoding[..], "{name}");
        assert_eq!(app_message(5, &encoding), h(&v["app_message"]), "{name}");
        let back = Introduction::decode(&encoding).unwrap();
        assert_eq!(back, intro, "{name}");
        assert_eq!(back.from(), &a32(&v["from"]), "{name}");
        assert_eq!(back.invitation(), &invitation[..], "{name}");
        seen += 1;
    }
    assert!(seen >= 3);
}

#[test]
fn folds() {
    let mut seen = 0;
    for v in vectors("group.json").iter().filter(|v| v["kind"] == "fold") {
        let name = v["name"].as_str().unwrap();
        let ops: Vec<Op> = v["ops"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| Op::decode(&h(o)).unwrap())
            .collect();
        let fold = |ops: &[Op]| {
            History {
                creator: Some(a32(&v["creator"])),
                root: None,
                v1: ops,
                ops: &[],
            }
            .fold()
            .members
        };
        let members = fold(&ops);
        // Positions in the fold's order: version-1 operations by (clock, id).
        let mut order = ops.clone();
        order.sort_by_key(|o| o.order_key());
        order.dedup();
        let want = v["members"].as_array().unwrap();
        assert_eq!(members.len(), want.len(), "{name}");
        for ((key, member), w) in members.iter().zip(want) {
            assert_eq!(key, &a32(&w["key"]), "{name}");
            assert_eq!(member.suggested_name, w["suggested_name"], "{name}");
            assert_eq!(member.added_by, a32(&w["added_by"]), "{name}");
            let since = &order[member.since];
            assert_eq!(since.lamport(), u(&w["since_lamport"]), "{name}");
            assert_eq!(since.id().0.to_vec(), h(&w["since_id"]), "{name}");
        }
        // The order the operations are given in does not matter.
        let mut reversed = ops.clone();
        reversed.reverse();
        assert_eq!(fold(&reversed), members, "{name}");
        seen += 1;
    }
    assert!(seen >= 5);
}

/// `malformed` (any decode error) or `verification_failed`.
fn category(e: &Error) -> &'static str {
    match e {
        Error::Decode(_) => "malformed",
        Error::VerificationFailed => "verification_failed",
        _ => "other",
    }
}

#[test]
fn failures() {
    let mut seen = 0;
    // Version-2 entries (`*_v2`) are group_vectors_v2.rs's.
    for v in vectors("fail_group.json")
        .into_iter()
        .filter(|v| !v["kind"].as_str().unwrap().ends_with("_v2"))
    {
        let name = v["name"].as_str().unwrap();
        let input = h(&v["input"]);
        let got = match v["kind"].as_str().unwrap() {
            "op" => Op::decode(&input).expect_err(name),
            "introduction" => Introduction::decode(&input).expect_err(name),
            "group_text" => Error::from(GroupText::decode(&input).expect_err(name)),
            other => panic!("unknown kind {other}"),
        };
        assert_eq!(category(&got), v["error"], "{name}: {got}");
        if v["kind"] == "op" && v["error"] == "malformed" {
            // Stored operations are read without the signature check, but
            // with every other one.
            let unverified: DecodeError = Op::decode_unverified(&input).expect_err(name);
            assert_eq!(Error::from(unverified), got, "{name}");
        }
        seen += 1;
    }
    assert!(seen >= 25);
}
