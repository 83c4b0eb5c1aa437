//! A modified client: the profile of a [`Home`], used to sign and send
//! what the real `enlace` refuses to, the way an infiltrator who patched
//! their client would. The bytes go out through the home's own sessions
//! and outbox, so the receivers cannot tell them from the real client's;
//! the next `enlace read` of that home sends them.

use enlace_client::profile::{EnvelopeId, Nucleus, OutboxEntry};
use enlace_protocol::envelope::{CoarseTime, Envelope};
use enlace_protocol::group::{Action, NucleusId, Op, OpHash, Verdict};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::Session;

use crate::home::Home;

/// The heads of `nucleus` as `home` holds it: what its next operation
/// would name as parents.
pub fn heads(home: &Home, nucleus: &str) -> Vec<OpHash> {
    with_nucleus(home, nucleus, |n| n.fold().heads)
}

/// `home`'s id of `nucleus`.
pub fn nucleus_id(home: &Home, nucleus: &str) -> NucleusId {
    with_nucleus(home, nucleus, |n| n.id)
}

/// `f` of `home`'s nucleus `nucleus`.
fn with_nucleus<T>(home: &Home, nucleus: &str, f: impl FnOnce(&Nucleus) -> T) -> T {
    let profile = home.profile();
    let n = profile
        .nuclei
        .iter()
        .find(|n| n.name == nucleus)
        .expect("no such nucleus");
    f(n)
}

/// Signs, with `home`'s identity key, an operation in `nucleus` naming
/// `parents`, whatever the rules say.
pub fn sign_op(
    home: &Home,
    nucleus: &str,
    action: Action,
    target: [u8; 32],
    parents: &[OpHash],
) -> Op {
    let profile = home.profile();
    let identity = profile.identity_key_pair();
    let name = if action == Action::Add { "spy" } else { "" };
    Op::sign(
        &identity,
        nucleus_id(home, nucleus),
        action,
        target,
        parents,
        name,
    )
    .unwrap()
}

/// The identity key of `home`'s contact `name`.
pub fn contact_key(home: &Home, name: &str) -> [u8; 32] {
    home.profile()
        .contact(name)
        .expect("no such contact")
        .identity_key
}

/// Seals the application message `plaintext` for `home`'s contact
/// `contact` in their session and puts it in the outbox, as the client
/// would for a message of its own.
pub fn send_plaintext(home: &Home, contact: &str, plaintext: &[u8]) {
    let store = home.store();
    store
        .update(|p| {
            let c = p.contact_mut(contact).expect("no such contact");
            let to = c.send_to.as_ref().expect("no session with the contact");
            let (send_id, sender_key, relay) =
                (to.send_id.mailbox(), to.sender_key, to.relay.clone());
            let mut session = Session::from_bytes(&c.session).unwrap();
            let body = session.encrypt(&mut rand::rng(), plaintext).unwrap();
            c.session = session.to_bytes().to_vec();
            let envelope_id = EnvelopeId(rand::random());
            let sender = SigningKeyPair::from_secret_bytes(&sender_key);
            let envelope = Envelope::sign(
                &sender,
                send_id,
                envelope_id.message_id(),
                CoarseTime::from_unix_secs(crate::unix_now()),
                &body,
            )
            .unwrap();
            let entry = OutboxEntry {
                contact: c.id,
                envelope_id,
                message_id: Default::default(),
                relay,
                envelope: envelope.into_bytes(),
                control: true,
            };
            p.outbox.push(entry);
            Ok(())
        })
        .unwrap();
}

/// The application message carrying a version-2 membership operation
/// (`docs/protocol.md`, section 13.1: version 1, kind 16).
pub fn op_message(op: &Op) -> Vec<u8> {
    [&[1, 16][..], op.as_bytes()].concat()
}

/// Whether `op` counts in the nucleus `home` holds.
pub fn counts(home: &Home, nucleus: &str, op: &Op) -> bool {
    with_nucleus(home, nucleus, |n| {
        n.fold().verdicts.get(&op.hash()) == Some(&Verdict::Counts)
    })
}
