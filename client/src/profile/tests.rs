//! The profile's encoding, pinned: a profile with something in every
//! field, as the code of commit 5f48a08 wrote it in store format 2 (before
//! the ids and relay addresses had types of their own), must read as the
//! same values, its nucleus's operations as version 1; the same profile
//! with the fields format 3 added (version-2 nucleus state, timers) must
//! encode to the format 3 bytes and back.

use enlace_protocol::group::{Action, ActionV1, Introduction, NucleusId, Op, OpV1, Role, Verdict};

use super::*;

fn relay(text: &str) -> StoredRelay {
    StoredRelay::from_text(text.to_owned())
}

/// The relay addresses in the golden profile (canonical text, as
/// `RelayAddress`'s `Display` writes it).
const HOME: &str =
    "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.barrio.example:4433";
const AWAY: &str = "enlace://aeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaq@[::1]:7000";

fn key(seed: u8) -> enlace_protocol::keys::SigningKeyPair {
    enlace_protocol::keys::SigningKeyPair::from_secret_bytes(&[seed; 32])
}

fn pk(seed: u8) -> [u8; 32] {
    *key(seed).public().as_bytes()
}

/// A profile with something in every field of format 2: written by the
/// code of commit 5f48a08 as `client/testdata/profile-format-2.hex`, and
/// read today with its nucleus's operations as version 1.
pub(super) fn golden_profile() -> Profile {
    let nucleus = NucleusId([0x61; 16]);
    let create = OpV1::sign(&key(0x11), nucleus, 1, ActionV1::Create, pk(0x11), "barrio").unwrap();
    let add = OpV1::sign(&key(0x11), nucleus, 2, ActionV1::Add, pk(2), "Ana").unwrap();
    let intro = Introduction::sign(&key(3), nucleus, pk(0x11), b"an invitation").unwrap();
    let mut p = Profile::new(&mut rand::rng(), 1_790_000_000);
    p.identity = [0x11; 32];
    p.home_relay = Some(relay(HOME));
    p.next_id = 6;
    p.contacts.push(Contact {
        id: ContactId(1),
        name: "Ana".into(),
        identity_key: pk(2),
        verified_key: Some(pk(2)),
        key_changed: false,
        session: vec![1, 2, 3],
        send_to: Some(RemoteMailbox {
            relay: relay(AWAY),
            send_id: SendId([0x21; 16]),
            sender_key: [0x22; 32],
        }),
        receive_on: Some(LocalMailbox {
            relay: relay(HOME),
            receive_id: ReceiveId([0x31; 16]),
            send_id: SendId([0x32; 16]),
            recipient_key: [0x33; 32],
            delivery_key: [0x34; 32],
            contact_sender_key: Some([0x35; 32]),
            secured: true,
        }),
        added_at: 1_790_000_100,
    });
    p.contacts.push(Contact {
        id: ContactId(2),
        name: "Ben ñ".into(),
        identity_key: pk(4),
        verified_key: None,
        key_changed: true,
        session: Vec::new(),
        send_to: None,
        receive_on: None,
        added_at: 1_790_000_200,
    });
    p.invitations.push(Invitation {
        id: InvitationId(3),
        name: Some("Cai".into()),
        mailbox: LocalMailbox {
            relay: relay(HOME),
            receive_id: ReceiveId([0x36; 16]),
            send_id: SendId([0x37; 16]),
            recipient_key: [0x38; 32],
            delivery_key: [0x39; 32],
            contact_sender_key: None,
            secured: false,
        },
        secret: vec![9; 5],
        created_at: 1_790_000_300,
    });
    p.history.push(HistoryEntry {
        contact: ContactId(1),
        direction: Direction::In,
        message_id: MessageId([0x41; 16]),
        sent_at: 1_790_000_400,
        stored_at: 1_790_000_401,
        text: "asamblea el jueves".into(),
        shown: false,
    });
    p.history.push(HistoryEntry {
        contact: ContactId(1),
        direction: Direction::Out,
        message_id: MessageId([0x42; 16]),
        sent_at: 1_790_000_500,
        stored_at: 1_790_000_500,
        text: "¡ahí estaré!".into(),
        shown: true,
    });
    p.outbox.push(OutboxEntry {
        contact: ContactId(1),
        envelope_id: EnvelopeId([0x43; 16]),
        message_id: MessageId([0x42; 16]),
        relay: relay(AWAY),
        envelope: vec![0xe0; 7],
        control: false,
    });
    p.outbox.push(OutboxEntry {
        contact: ContactId(1),
        envelope_id: EnvelopeId([0x44; 16]),
        message_id: MessageId([0; 16]),
        relay: relay(AWAY),
        envelope: vec![0xe1; 3],
        control: true,
    });
    for (id, status) in [
        ([0x42; 16], Status::QueuedAtHome),
        ([0x45; 16], Status::Delivered),
        ([0x46; 16], Status::Stored),
        ([0x47; 16], Status::Queued),
    ] {
        p.sent.push(SentMessage {
            contact: ContactId(1),
            message_id: MessageId(id),
            sent_at: 1_790_000_600,
            status,
            parts: 2,
        });
    }
    p.seen.push(EnvelopeId([0x51; 16]));
    p.seen.push(EnvelopeId([0x52; 16]));
    p.partial.push(PartialMessage {
        contact: ContactId(1),
        message_id: MessageId([0x53; 16]),
        sent_at: 1_790_000_700,
        parts: vec![Some(vec![1, 2]), None],
    });
    let seen = SeenGroupMessage {
        author: [0x54; 32],
        message_id: MessageId([0x55; 16]),
    };
    let mut n = Nucleus::new(nucleus, "barrio".into());
    n.creator = Some(pk(0x11));
    n.ops_v1 = vec![create.as_bytes().to_vec(), add.as_bytes().to_vec()];
    n.seen = vec![seen.clone()];
    n.received = vec![seen];
    p.nuclei.push(n);
    p.nucleus_tasks.push(NucleusTask::Introduce {
        nucleus,
        member: pk(5),
        via: pk(2),
    });
    p.nucleus_tasks.push(NucleusTask::Accept {
        nucleus,
        introduction: intro.as_bytes().to_vec(),
        via: ContactId(1),
    });
    p.introduced.push(IntroducedContact {
        local: 3,
        pending: true,
        member: pk(6),
        by: pk(2),
        nucleus,
    });
    p
}

/// [`golden_profile`] with something in every field format 3 added (the
/// nucleus's version-2 state, a timer for the contact and one for the
/// nucleus, and their notices): written by this code as
/// `client/testdata/profile-format-3.*`.
pub(super) fn golden_profile_3() -> Profile {
    let mut p = golden_profile();
    let n = &mut p.nuclei[0];
    let add = OpV1::decode_unverified(&n.ops_v1[1]).unwrap();
    let admin = Op::sign(
        &key(0x11),
        n.id,
        Action::SetRole(Role::Admin),
        pk(2),
        &[add.hash()],
        "",
    )
    .unwrap();
    let waiting = Op::sign(
        &key(2),
        n.id,
        Action::Add,
        pk(6),
        &[enlace_protocol::group::OpHash::of(b"x")],
        "Eva",
    )
    .unwrap();
    n.ops = vec![admin.as_bytes().to_vec()];
    n.waiting = vec![waiting.as_bytes().to_vec()];
    n.root = Some([0x62; 32]);
    n.invited_by = Some(pk(2));
    n.require_verified = true;
    n.warned = vec![pk(2)];
    n.notices = vec![
        Notice {
            what: NoticeKind::Role(2),
            by: pk(0x11),
            member: pk(2),
        },
        Notice {
            what: NoticeKind::Refused {
                action: 2,
                role: 0,
                reason: 4,
            },
            by: pk(2),
            member: pk(6),
        },
    ];
    let nucleus = n.id;
    let hour = Timer::from_secs(3_600).unwrap();
    assert!(p.set_timer(
        Conversation::Contact(ContactId(1)),
        hour,
        1_790_000_800,
        None,
        1_790_000_801
    ));
    assert!(p.set_timer(
        Conversation::Nucleus(nucleus),
        Timer::OFF,
        1_790_000_900,
        Some(ContactId(1)),
        1_790_000_901
    ));
    p
}

fn hex_file(text: &str) -> Vec<u8> {
    hex::decode(text.split_whitespace().collect::<String>()).unwrap()
}

fn golden_bytes() -> Vec<u8> {
    hex_file(include_str!("../../testdata/profile-format-2.hex"))
}

fn golden_bytes_3() -> Vec<u8> {
    hex_file(include_str!("../../testdata/profile-format-3.hex"))
}

/// Format 3 encodes the golden profile to the pinned bytes and reads them
/// back unchanged, with the nucleus's version-2 state.
#[test]
fn golden_profile_encoding_is_unchanged() {
    let golden = golden_bytes_3();
    let profile = golden_profile_3();
    assert_eq!(postcard::to_allocvec(&profile).unwrap(), golden);
    let back: Profile = postcard::from_bytes(&golden).unwrap();
    assert_eq!(postcard::to_allocvec(&back).unwrap(), golden);
    let n = &back.nuclei[0];
    assert!(n.require_verified && n.invited_by == Some(pk(2)));
    assert_eq!((n.ops.len(), n.waiting.len(), n.notices.len()), (1, 1, 2));
    // The version-2 change on the version-1 history counts.
    assert_eq!(n.members()[&pk(2)].role, Role::Admin);
}

/// A format 2 profile reads as it was, its nucleus's operations as version
/// 1 with implicit roles: the creator owner, the others members; a
/// version-2 change can build on them.
#[test]
fn format_2_golden_profile_reads_with_version_1_nucleus() {
    let back = upgrade::decode(2, &golden_bytes()).unwrap();
    assert_eq!(
        postcard::to_allocvec(&back).unwrap(),
        postcard::to_allocvec(&golden_profile()).unwrap()
    );
    assert_eq!(
        back.home_relay.as_ref().map(StoredRelay::as_str),
        Some(HOME)
    );
    assert_eq!(back.home().unwrap().to_string(), HOME);
    assert_eq!(back.contacts.len(), 2);
    let ana = &back.contacts[0];
    assert_eq!((ana.id, ana.name.as_str()), (ContactId(1), "Ana"));
    let remote = ana.send_to.as_ref().unwrap();
    assert!(remote.send_id == SendId([0x21; 16]));
    assert_eq!(remote.relay.as_str(), AWAY);
    assert_eq!(remote.relay.address().unwrap().to_string(), AWAY);
    let local = ana.receive_on.as_ref().unwrap();
    assert!(local.receive_id == ReceiveId([0x31; 16]) && local.send_id == SendId([0x32; 16]));
    assert_eq!(local.relay.as_str(), HOME);
    assert_eq!(back.contacts[1].verification(), Verification::KeyChanged);
    assert_eq!(back.invitations[0].id, InvitationId(3));
    assert!(back.outbox[0].envelope_id == EnvelopeId([0x43; 16]));
    assert!(back.outbox[0].message_id == MessageId([0x42; 16]));
    assert_eq!(back.outbox[0].relay.as_str(), AWAY);
    assert_eq!(back.sent[0].status, Status::QueuedAtHome);
    let n = &back.nuclei[0];
    let members = n.members();
    assert_eq!(members.len(), 2);
    assert_eq!(members[&pk(0x11)].role, Role::Owner);
    assert_eq!(members[&pk(2)].role, Role::Member);
    assert!(members.values().all(|m| m.joined));
    assert!(n.ops.is_empty() && n.root.is_none() && n.invited_by.is_none());
    let admin = Op::sign(
        &key(0x11),
        n.id,
        Action::SetRole(Role::Admin),
        pk(2),
        &n.fold().heads,
        "",
    )
    .unwrap();
    assert_eq!(n.with_history(|h| h.admit(&admin)), Verdict::Counts);
    // The version-1 bytes still verify as they were signed.
    for bytes in &n.ops_v1 {
        assert!(OpV1::decode(bytes).is_ok());
    }
    assert_eq!(back.nucleus_tasks.len(), 2);
    assert_eq!(back.introduced[0].local, 3);
    assert_eq!(back.introduced[0].invitation(), Some(InvitationId(3)));
    assert!(back.nuclei[0].id == NucleusId([0x61; 16]));
}

/// The format 3 golden's timers and their notices.
#[test]
fn golden_format_3_encoding_is_unchanged() {
    let golden = golden_bytes_3();
    assert_eq!(postcard::to_allocvec(&golden_profile_3()).unwrap(), golden);
    let back: Profile = postcard::from_bytes(&golden).unwrap();
    assert_eq!(postcard::to_allocvec(&back).unwrap(), golden);
    assert!(back.timer(Conversation::Contact(ContactId(1))) == Timer::from_secs(3_600).unwrap());
    assert!(back.timer(Conversation::Nucleus(NucleusId([0x61; 16]))) == Timer::OFF);
    assert_eq!(back.timer_notices.len(), 2);
    assert!(back.timer_notices[1].by == Some(ContactId(1)) && !back.timer_notices[1].shown);
}

/// Writes the format 3 goldens (`client/testdata/profile-format-3.*`):
/// run by hand once, with `cargo test -p enlace-client -- --ignored
/// write_format_3_goldens`, when format 3 was made; never again.
#[test]
#[ignore = "writes the goldens; run once by hand"]
fn write_format_3_goldens() {
    use std::fs;
    let testdata = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let bytes = postcard::to_allocvec(&golden_profile_3()).unwrap();
    let hex: String = bytes
        .chunks(32)
        .map(|line| format!("{}\n", hex::encode(line)))
        .collect();
    fs::write(testdata.join("profile-format-3.hex"), hex).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    store::Store::create(
        &dir,
        &store::Passphrase::new("correct horse battery staple".into()),
        store::KdfParams::WEAKEST,
        &golden_profile_3(),
        &mut rand::rng(),
    )
    .unwrap();
    for (from, to) in [
        (store::KEY_FILE, "profile-format-3.key"),
        (store::DATA_FILE, "profile-format-3.data"),
    ] {
        fs::copy(dir.join(from), testdata.join(to)).unwrap();
    }
}
