//! Nuclei against an infiltrator, with the real CLI and real relays:
//! being added creates and receives nothing until the contact joins;
//! members without the role cannot change membership, even with a
//! modified client; a member's backdated change is refused by every other
//! member; and a receipt from one member leaves another's copy queued
//! while its relay is down.

use enlace_protocol::group::Action;
use enlace_tests::home::{Home, connect};
use enlace_tests::hostile;
use enlace_tests::relay::BlockingRelay;
use serde_json::Value;

use super::{found, members_of, read_each, read_group, send, settle_members};

/// How a key that is neither a contact nor a member is shown.
const STRANGER: &str = "someone you do not know";

/// The nucleus changes among events: (change, by, member).
fn changes(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|v| v["event"] == "nucleus-change")
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            (s("change"), s("by"), s("member"))
        })
        .collect()
}

fn has(events: &[Value], change: &str, by: &str, member: &str) -> bool {
    changes(events)
        .iter()
        .any(|(c, b, m)| c == change && b == by && m == member)
}

#[test]
fn an_invited_contact_receives_nothing_and_makes_nothing_until_it_joins() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    let cai = Home::new(tmp.path(), "cai", relay.address());
    connect(&ana, "Ben", &ben, "Ana");
    connect(&ana, "Cai", &cai, "Ana");
    found(&ana, "barrio", &[(&cai, "Cai")]);
    assert!(has(&ana.read(), "joined", "you", "Cai"));

    let before = ben.profile();
    let mailboxes = before.local_mailboxes().count();
    ana.ok(&["nucleus", "add", "barrio", "Ben"]);
    let sent = send(&ana, "barrio", "solo para quien se unió");
    assert_eq!(sent[0]["to"], serde_json::json!(["Cai"]), "{sent:?}");

    // Ben sees the invitation, with who added him and who is in it, and
    // no message.
    let events = ben.read();
    assert!(has(&events, "invited", "Ana", "you"), "{events:?}");
    let invitation = events.iter().find(|v| v["change"] == "invited").unwrap();
    let text = ben.ok(&["nucleus", "list"]);
    assert!(text.contains("invitation from Ana"), "{text}");
    assert!(
        !events.iter().any(|v| v["event"] == "message"),
        "{events:?}"
    );
    assert_eq!(invitation["by_verification"], "unverified");
    // Nothing made: no mailbox, invitation, introduction or envelope.
    let after = ben.profile();
    assert_eq!(after.local_mailboxes().count(), mailboxes);
    assert!(after.invitations.is_empty());
    assert!(after.nucleus_tasks.is_empty() && after.outbox.is_empty());
    assert_eq!(after.contacts.len(), 1);
    // Not joined: it cannot send either.
    let (_, code) = ben.nucleus_send_json("barrio", "hola");
    assert_eq!(code, Some(1));
    // Cai is told Ben was invited, not that he is in.
    let events = cai.read();
    assert!(has(&events, "added", "Ana", "Ben"), "{events:?}");

    // Ben declines: the inviter hears it, the others through her.
    ben.ok(&["nucleus", "decline", "barrio"]);
    assert!(ben.json(&["nucleus", "list"]).is_empty());
    assert!(has(&ana.read(), "declined", "Ben", "Ben"));
    let events = cai.read();
    assert!(has(&events, "declined", "Ben", "Ben"), "{events:?}");
    assert_eq!(members_of(&ana, "barrio").len(), 2);
    assert!(read_group(&ben).is_empty());
}

#[test]
fn roles_refuse_members_and_every_member_refuses_a_backdated_change() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = BlockingRelay::start(&tmp.path().join("relay"));
    let ana = Home::new(tmp.path(), "ana", relay.address());
    let ben = Home::new(tmp.path(), "ben", relay.address());
    let cai = Home::new(tmp.path(), "cai", relay.address());
    let eve = Home::new(tmp.path(), "eve", relay.address());
    connect(&ana, "Ben", &ben, "Ana");
    connect(&ana, "Cai", &cai, "Ana");
    connect(&ben, "Eve", &eve, "Ben");
    found(&ana, "barrio", &[(&ben, "Ben"), (&cai, "Cai")]);
    settle_members(&[&ana, &ben, &cai], "barrio", 3, 8);
    let roles: Vec<(String, String)> = ana
        .json(&["nucleus", "members", "barrio"])
        .iter()
        .map(|m| {
            (
                m["member"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(roles.contains(&("you".into(), "owner".into())), "{roles:?}");
    assert!(
        roles.contains(&("Ben".into(), "member".into())),
        "{roles:?}"
    );

    // A member cannot add, remove or change roles.
    for args in [
        &["nucleus", "add", "barrio", "Eve"][..],
        &["nucleus", "remove", "barrio", "Ana"],
        &["nucleus", "role", "barrio", "Ana", "member"],
    ] {
        let out = ben.run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("only owners"), "{args:?}: {err}");
    }
    // Nor can a modified client: its add of Eve is refused by everyone.
    let eve_key = hostile::contact_key(&ben, "Eve");
    let no_role = hostile::sign_op(
        &ben,
        "barrio",
        Action::Add,
        eve_key,
        &hostile::heads(&ben, "barrio"),
    );
    hostile::send_plaintext(&ben, "Ana", &hostile::op_message(&no_role));
    hostile::send_plaintext(&ben, "barrio/Cai", &hostile::op_message(&no_role));
    ben.read();
    let seen = read_each(&[&ana, &cai]);
    for ((home, ben_name), events) in [(&ana, "Ben"), (&cai, "barrio/Ben")].into_iter().zip(seen) {
        assert!(has(&events, "refused", ben_name, STRANGER), "{events:?}");
        assert_eq!(members_of(home, "barrio").len(), 3);
    }

    // Ana makes Ben admin, then takes it back. Ben saw both; his modified
    // client signs an add of Eve naming the parents he had before the
    // demotion (backdated below it).
    ana.ok(&["nucleus", "role", "barrio", "Ben", "admin"]);
    let [ben_saw, cai_saw]: [_; 2] = read_each(&[&ben, &cai]).try_into().unwrap();
    assert!(has(&ben_saw, "role", "Ana", "you"), "{ben_saw:?}");
    assert!(has(&cai_saw, "role", "Ana", "barrio/Ben"), "{cai_saw:?}");
    let as_admin = hostile::heads(&ben, "barrio");
    ana.ok(&["nucleus", "role", "barrio", "Ben", "member"]);
    read_each(&[&ben, &cai]);
    let backdated = hostile::sign_op(&ben, "barrio", Action::Add, eve_key, &as_admin);
    hostile::send_plaintext(&ben, "Ana", &hostile::op_message(&backdated));
    hostile::send_plaintext(&ben, "barrio/Cai", &hostile::op_message(&backdated));
    ben.read();
    let seen = read_each(&[&ana, &cai]);
    for ((home, ben_name), events) in [(&ana, "Ben"), (&cai, "barrio/Ben")].into_iter().zip(seen) {
        assert!(has(&events, "refused", ben_name, STRANGER), "{events:?}");
        // Refused as concurrent with the demotion or as after it, by where
        // it falls in the order: either way it does not count.
        let refused = events.iter().find(|v| v["change"] == "refused").unwrap();
        let reason = refused["reason"].as_str().unwrap();
        assert!(reason.contains("role"), "{refused}");
        assert!(!hostile::counts(home, "barrio", &backdated));
        let members = members_of(home, "barrio");
        assert_eq!(members.len(), 3, "{members:?}");
    }
    // Eve got nothing.
    assert!(eve.json(&["nucleus", "list"]).is_empty());
}

#[test]
fn receipts_leave_a_down_members_copy_queued_until_its_relay_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay1 = BlockingRelay::start(&tmp.path().join("relay1"));
    let mut relay2 = BlockingRelay::start(&tmp.path().join("relay2"));
    let ana = Home::new(tmp.path(), "ana", relay1.address());
    let ben = Home::new(tmp.path(), "ben", relay1.address());
    let cai = Home::new(tmp.path(), "cai", relay2.address());
    connect(&ana, "Ben", &ben, "Ana");
    connect(&ana, "Cai", &cai, "Ana");
    found(&ana, "barrio", &[(&ben, "Ben"), (&cai, "Cai")]);
    ana.read();

    // Cai's relay goes down; Ana's relay restarts, forgetting the key it
    // fetched from Cai's, so Ana's copy for Cai waits in her own outbox.
    relay2.kill_9();
    relay1.kill_9();
    relay1.restart();
    let (sent, _) = ana.nucleus_send_json("barrio", "asamblea mañana");
    assert_eq!(sent[0]["to"].as_array().unwrap().len(), 2, "{sent:?}");
    assert_eq!(read_group(&ben).len(), 1);
    // Ben's receipt arrives; Cai's copy stays queued.
    let out = ana.run(&["--json", "read"]);
    assert_eq!(out.status.code(), Some(4), "Cai's relay is down");
    let status: Vec<(String, String)> = ana
        .json(&["status"])
        .iter()
        .map(|s| {
            (
                s["to"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        status.contains(&("Ben".into(), "delivered".into())),
        "{status:?}"
    );
    assert!(
        status
            .iter()
            .any(|(to, s)| to == "Cai" && s.starts_with("queued")),
        "{status:?}"
    );
    let cai_id = ana.profile().contact("Cai").unwrap().id;
    assert!(
        ana.profile()
            .outbox
            .iter()
            .any(|e| e.contact == cai_id && !e.control)
    );

    // Cai's relay is back: the copy goes out and arrives.
    relay2.restart();
    let out = ana.run(&["--json", "read"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = read_group(&cai);
    assert_eq!(
        got,
        [("barrio".into(), "Ana".into(), "asamblea mañana".into())]
    );
    ana.read();
    let status: Vec<String> = ana.statuses();
    assert!(
        status.iter().rev().take(2).all(|s| s == "delivered"),
        "{status:?}"
    );
}
