//! Nuclei with the real `enlace` CLI and two real relays: four members
//! whose mailboxes sit on two relays join and exchange messages both ways;
//! a member added later sees only what is sent after it joined; a removed
//! member receives nothing sent after its removal; members who had no
//! session with each other are introduced through their adder.
//!
//! Nothing here depends on the route an envelope takes between relays
//! (direct to the contact's relay today, through the home relay once
//! relays forward): only what each member can read is checked.

#[path = "nuclei_consent.rs"]
mod consent;

use enlace_tests::home::{Home, connect};
use enlace_tests::relay::BlockingRelay;
use serde_json::Value;

/// The nucleus messages a `read` printed: (nucleus, from, text).
fn read_group(home: &Home) -> Vec<(String, String, String)> {
    group_messages(&home.read())
}

/// The member list of a nucleus: (shown name, has a session).
fn members_of(home: &Home, nucleus: &str) -> Vec<(String, bool)> {
    home.json(&["nucleus", "members", nucleus])
        .iter()
        .map(|v| {
            (
                v["member"].as_str().unwrap().to_owned(),
                v["session"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn group_messages(events: &[Value]) -> Vec<(String, String, String)> {
    events
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| {
            (
                v["nucleus"].as_str().unwrap_or("").to_owned(),
                v["from"].as_str().unwrap().to_owned(),
                v["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn sorted(mut v: Vec<(String, String, String)>) -> Vec<(String, String, String)> {
    v.sort();
    v
}

/// `owner` creates `nucleus` and invites each member (by its contact name
/// there); each sees the invitation in a `read` and joins.
fn found(owner: &Home, nucleus: &str, members: &[(&Home, &str)]) {
    owner.ok(&["nucleus", "create", nucleus]);
    for (_, name) in members {
        owner.ok(&["nucleus", "add", nucleus, name]);
    }
    let homes: Vec<&Home> = members.iter().map(|(h, _)| *h).collect();
    for events in read_each(&homes) {
        assert!(
            events
                .iter()
                .any(|v| v["event"] == "nucleus-change" && v["change"] == "invited"),
            "{events:?}"
        );
    }
    // Each home is its own profile and process: join all at once.
    std::thread::scope(|s| {
        for home in homes {
            s.spawn(move || home.ok(&["nucleus", "join", nucleus]));
        }
    });
}

/// `nucleus send` with the text on standard input; must succeed.
fn send(home: &Home, nucleus: &str, text: &str) -> Vec<Value> {
    let (lines, code) = home.nucleus_send_json(nucleus, text);
    assert_eq!(code, Some(0), "{lines:?}");
    lines
}

fn msg(nucleus: &str, from: &str, text: &str) -> (String, String, String) {
    (nucleus.into(), from.into(), text.into())
}

/// One `read` on each home, all at once (each home is its own profile and
/// process). A `read` waits for 2 s of silence before it exits, so reading
/// in turn would cost that wait once per home.
fn read_each(homes: &[&Home]) -> Vec<Vec<Value>> {
    std::thread::scope(|s| {
        let reads: Vec<_> = homes.iter().map(|h| s.spawn(|| h.read())).collect();
        reads.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// The group messages of one `read` on each home, all at once.
fn read_groups(homes: &[&Home]) -> Vec<Vec<(String, String, String)>> {
    read_each(homes).iter().map(|e| group_messages(e)).collect()
}

/// `rounds` rounds of reads on every home at once: each step of gossip,
/// introductions and handshakes needs one member's read after another's,
/// and a round lets every member act on what the others sent before it
/// (or during it), so this settles without timing. Returns the group
/// messages each saw.
fn settle(homes: &[&Home], rounds: usize) -> Vec<Vec<(String, String, String)>> {
    let mut seen = vec![Vec::new(); homes.len()];
    for _ in 0..rounds {
        for (s, more) in seen.iter_mut().zip(read_groups(homes)) {
            s.extend(more);
        }
    }
    seen
}

/// Rounds of reads (at most `max`) until every home sees `count` members
/// of `nucleus`, each with a session. Returns the group messages seen.
fn settle_members(
    homes: &[&Home],
    nucleus: &str,
    count: usize,
    max: usize,
) -> Vec<Vec<(String, String, String)>> {
    let mut seen = vec![Vec::new(); homes.len()];
    for _ in 0..max {
        for (s, more) in seen.iter_mut().zip(settle(homes, 1)) {
            s.extend(more);
        }
        let done = homes.iter().all(|h| {
            // Not a member yet fails: not done.
            let out = h.run(&["--json", "nucleus", "members", nucleus]);
            let members: Vec<Value> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            out.status.success()
                && members.len() == count
                && members.iter().all(|m| m["session"] == true)
        });
        if done {
            return seen;
        }
    }
    for home in homes {
        let members = members_of(home, nucleus);
        assert_eq!(members.len(), count, "{members:?}");
        assert!(members.iter().all(|(_, session)| *session), "{members:?}");
    }
    seen
}

#[test]
fn nucleus_on_two_relays_add_remove_and_introductions() {
    let tmp = tempfile::tempdir().unwrap();
    let relay1 = BlockingRelay::start(&tmp.path().join("relay1"));
    let relay2 = BlockingRelay::start(&tmp.path().join("relay2"));
    let ana = Home::new(tmp.path(), "ana", relay1.address());
    let ben = Home::new(tmp.path(), "ben", relay1.address());
    let cai = Home::new(tmp.path(), "cai", relay2.address());
    let dia = Home::new(tmp.path(), "dia", relay2.address());

    // Ana knows everyone; nobody else knows anyone.
    connect(&ana, "Ben", &ben, "Ana");
    connect(&ana, "Cai", &cai, "Ana");
    connect(&ana, "Dia", &dia, "Ana");

    // Each sees the invitation and accepts it.
    found(
        &ana,
        "barrio",
        &[(&ben, "Ben"), (&cai, "Cai"), (&dia, "Dia")],
    );

    // Joins reach Ana, introductions through her, handshakes.
    settle_members(&[&ben, &cai, &dia, &ana], "barrio", 4, 12);

    // Everyone sees four members and holds a session with each.
    for home in [&ana, &ben, &cai, &dia] {
        let members = members_of(home, "barrio");
        assert_eq!(members.len(), 4, "{members:?}");
        assert!(members.iter().all(|(_, session)| *session), "{members:?}");
    }
    // Ben and Cai met through Ana: named after the nucleus, introduced,
    // unverified.
    let ben_contacts = ben.json(&["contacts"]);
    let names: Vec<&str> = ben_contacts
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"barrio/Cai"), "{names:?}");
    assert!(names.contains(&"barrio/Dia"), "{names:?}");
    let cai_for_ben = ben_contacts
        .iter()
        .find(|c| c["name"] == "barrio/Cai")
        .unwrap();
    assert_eq!(cai_for_ben["introduced_by"], "Ana");
    assert_eq!(cai_for_ben["verification"], "unverified");
    // The side that made the invitation marks it introduced too.
    let dia_contacts = dia.json(&["contacts"]);
    let ben_for_dia = dia_contacts
        .iter()
        .find(|c| c["name"] == "barrio/Ben")
        .unwrap();
    assert_eq!(ben_for_dia["introduced_by"], "Ana", "{dia_contacts:?}");
    let intro = ben
        .json(&["nucleus", "members", "barrio"])
        .into_iter()
        .find(|m| m["member"] == "barrio/Cai")
        .unwrap();
    assert_eq!(intro["introduced_by"], "Ana");
    assert_eq!(intro["verification"], "unverified");

    // Both ways across the relays: Ben (relay 1) and Dia (relay 2).
    send(&ben, "barrio", "asamblea el jueves");
    send(&dia, "barrio", "llevo el megáfono");
    // Messages from different members arrive on different mailboxes, in
    // no fixed order between them.
    let [ana_got, cai_got, ben_got, dia_got]: [_; 4] =
        read_groups(&[&ana, &cai, &ben, &dia]).try_into().unwrap();
    assert_eq!(
        sorted(ana_got),
        [
            msg("barrio", "Ben", "asamblea el jueves"),
            msg("barrio", "Dia", "llevo el megáfono"),
        ]
    );
    assert_eq!(
        sorted(cai_got),
        [
            msg("barrio", "barrio/Ben", "asamblea el jueves"),
            msg("barrio", "barrio/Dia", "llevo el megáfono"),
        ]
    );
    assert_eq!(ben_got, [msg("barrio", "barrio/Dia", "llevo el megáfono")]);
    assert_eq!(dia_got, [msg("barrio", "barrio/Ben", "asamblea el jueves")]);
    // Nothing twice.
    settle(&[&ana, &ben, &cai, &dia], 1)
        .iter()
        .for_each(|seen| assert!(seen.is_empty(), "{seen:?}"));

    // Eva (relay 2) joins later: she sees what is sent once she joined.
    let eva = Home::new(tmp.path(), "eva", relay2.address());
    connect(&ana, "Eva", &eva, "Ana");
    send(&ana, "barrio", "antes de Eva");
    ana.ok(&["nucleus", "add", "barrio", "Eva"]);
    send(&ana, "barrio", "Eva invitada");
    assert!(read_group(&eva).is_empty());
    eva.ok(&["nucleus", "join", "barrio"]);
    assert!(read_group(&ana).is_empty());
    send(&ana, "barrio", "bienvenida Eva");
    assert_eq!(read_group(&eva), [msg("barrio", "Ana", "bienvenida Eva")]);
    let seen = settle_members(&[&ben, &cai, &dia, &ana, &eva], "barrio", 5, 12);
    for (i, s) in seen.iter().enumerate().take(3) {
        assert_eq!(
            s,
            &[
                msg("barrio", "Ana", "antes de Eva"),
                msg("barrio", "Ana", "Eva invitada"),
                msg("barrio", "Ana", "bienvenida Eva"),
            ],
            "member {i}"
        );
    }
    assert!(seen[4].is_empty(), "{:?}", seen[4]);
    for home in [&ana, &ben, &cai, &dia, &eva] {
        let members = members_of(home, "barrio");
        assert_eq!(members.len(), 5, "{members:?}");
        assert!(members.iter().all(|(_, session)| *session), "{members:?}");
    }
    send(&cai, "barrio", "hola Eva, soy Cai");
    assert_eq!(
        read_group(&eva),
        [msg("barrio", "barrio/Cai", "hola Eva, soy Cai")]
    );
    for got in read_groups(&[&ana, &ben, &dia]) {
        let texts: Vec<String> = got.into_iter().map(|m| m.2).collect();
        assert_eq!(texts, ["hola Eva, soy Cai"]);
    }

    // Ana removes Cai. Once Ben has the change, what he sends skips Cai.
    ana.ok(&["nucleus", "remove", "barrio", "Cai"]);
    assert!(read_group(&ben).is_empty());
    let sent = send(&ben, "barrio", "sin Cai");
    assert_eq!(sent[0]["to"].as_array().unwrap().len(), 3, "{sent:?}");
    send(&ana, "barrio", "Cai ya no está");
    let seen = settle(&[&cai, &dia, &eva, &ana], 1);
    assert!(seen[0].is_empty(), "removed member got {:?}", seen[0]);
    for s in &seen[1..3] {
        assert!(s.contains(&msg("barrio", "Ana", "Cai ya no está")), "{s:?}");
        assert!(s.iter().any(|(_, _, t)| t == "sin Cai"), "{s:?}");
    }
    assert_eq!(seen[3], [msg("barrio", "Ben", "sin Cai")]);
    // Cai knows it is out: it cannot send, and the others have 4 members.
    let list = cai.json(&["nucleus", "list"]);
    assert_eq!(list[0]["state"], "removed", "{list:?}");
    let out = cai.run_with_input(&["nucleus", "send", "barrio"], "¿sigo?");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"));
    for home in [&ana, &ben, &dia, &eva] {
        assert_eq!(members_of(home, "barrio").len(), 4);
    }

    // Eva leaves: the others drop her, and she forgets the nucleus.
    eva.ok(&["nucleus", "leave", "barrio"]);
    settle(&[&ana, &ben, &dia], 1);
    for home in [&ana, &ben, &dia] {
        assert_eq!(members_of(home, "barrio").len(), 3);
    }
    assert!(eva.json(&["nucleus", "list"]).is_empty());
}
