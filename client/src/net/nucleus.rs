//! The network side of nuclei: the `nucleus` commands that send, and the
//! introductions that need a relay (a mailbox for an invitation, or the
//! handshake of an accepted one). The group logic is in
//! [`crate::nucleus`]; this only drives it.

use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::{Invitation as InvitationCode, MAX_PLAINTEXT_LEN};
use serde_json::json;

use super::{FreshInvitation, Relays, accept_on_home, flush_outbox, home_relay, sealer};
use crate::app::{Out, update};
use crate::error::Error;
use crate::nucleus::{self as group, IntroducedContact, Introduction, NucleusTask};
use crate::profile::{OutboxEntry, Profile};
use crate::store::Store;
use crate::time;

/// Seals plaintexts that receiving decided to pass on (gossiped
/// operations, forwarded introductions) into the outbox.
pub(super) fn queue_forwards(
    p: &mut Profile,
    outgoing: Vec<(u64, Vec<u8>)>,
    now: u64,
) -> Result<(), Error> {
    let mut seal = sealer(now);
    for (contact_id, plaintext) in outgoing {
        let Some(contact) = p.contacts.iter_mut().find(|c| c.id == contact_id) else {
            continue;
        };
        if contact.send_to.is_none() {
            continue;
        }
        let mut envelope_id = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut envelope_id);
        let (envelope, relay) = seal(contact, &plaintext, envelope_id)?;
        p.outbox.push(OutboxEntry {
            contact: contact_id,
            envelope_id,
            message_id: [0; 16],
            relay,
            envelope,
            control: true,
        });
    }
    Ok(())
}

/// An invitation made for an introduction was accepted: the contact it
/// made is an introduced one.
pub(super) fn invitation_completed(p: &mut Profile, invitation_id: u64, name: &str) {
    let Some(contact) = p.contact(name).map(|c| c.id) else {
        return;
    };
    if let Some(i) = p
        .introduced
        .iter_mut()
        .find(|i| i.pending && i.local == invitation_id)
    {
        i.local = contact;
        i.pending = false;
    }
}

/// Sends the outbox and reports what happened to message `message_id`
/// (zero: any control envelope) as "stored" or "queued".
async fn send_now(store: &Store) -> (Result<(), Error>, bool) {
    let mut relays = Relays::default();
    let result = flush_outbox(store, &mut relays).await;
    relays.close().await;
    let stored = store.load().map(|p| p.outbox.is_empty()).unwrap_or(false);
    (result, stored)
}

fn status_word(stored: bool) -> &'static str {
    if stored { "stored" } else { "queued" }
}

/// Which change `enlace nucleus add|remove` makes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MemberChange {
    /// `enlace nucleus add`.
    Add,
    /// `enlace nucleus remove`.
    Remove,
}

/// `enlace nucleus add` and `enlace nucleus remove`.
pub(crate) async fn nucleus_change(
    store: &Store,
    out: &mut Out<'_>,
    nucleus: &str,
    contact: &str,
    change: MemberChange,
) -> Result<(), Error> {
    let now = time::now();
    let (nucleus, member) = update(store, |p| {
        let rng = &mut rand::rng();
        match change {
            MemberChange::Add => group::add(p, nucleus, contact, rng, sealer(now)),
            MemberChange::Remove => group::remove(p, nucleus, contact, rng, sealer(now)),
        }
    })?;
    let safe = crate::display::terminal_safe;
    let (n, m) = (safe(&nucleus), safe(&member));
    let (result, stored) = send_now(store).await;
    let waits = if stored {
        ""
    } else {
        " (the change waits in the outbox)"
    };
    let (text, event) = match change {
        MemberChange::Add => (
            format!("Added {m} to #{n}; they see messages from now on, nothing earlier{waits}."),
            "nucleus-add",
        ),
        MemberChange::Remove => (
            format!("Removed {m} from #{n}; nothing you send there reaches them any more{waits}."),
            "nucleus-remove",
        ),
    };
    out.emit(
        &text,
        json!({"event": event, "nucleus": nucleus, "member": member,
               "status": status_word(stored)}),
    )?;
    if stored { Ok(()) } else { result }
}

/// `enlace nucleus leave`.
pub(crate) async fn nucleus_leave(
    store: &Store,
    out: &mut Out<'_>,
    nucleus: &str,
) -> Result<(), Error> {
    let now = time::now();
    let nucleus = update(store, |p| {
        group::leave(p, nucleus, &mut rand::rng(), sealer(now))
    })?;
    let (result, stored) = send_now(store).await;
    out.emit(
        &format!(
            "Left #{} and forgot it{}.",
            crate::display::terminal_safe(&nucleus),
            if stored {
                ""
            } else {
                " (the notice to the others waits in the outbox)"
            }
        ),
        json!({"event": "nucleus-leave", "nucleus": nucleus, "status": status_word(stored)}),
    )?;
    if stored { Ok(()) } else { result }
}

/// `enlace nucleus send`.
pub(crate) async fn nucleus_send(
    store: &Store,
    out: &mut Out<'_>,
    nucleus: &str,
    text: &str,
) -> Result<(), Error> {
    let now = time::now();
    let (name, sent) = update(store, |p| {
        let sent = group::send_text(
            p,
            nucleus,
            text,
            now,
            MAX_PLAINTEXT_LEN,
            &mut rand::rng(),
            sealer(now),
        )?;
        Ok((group::find(p, nucleus)?.name.clone(), sent))
    })?;
    let mut relays = Relays::default();
    let result = flush_outbox(store, &mut relays).await;
    relays.close().await;
    let stored = !store
        .load()?
        .outbox
        .iter()
        .any(|e| !e.control && e.message_id == sent.message_id);
    let hex = crate::app::hex(&sent.message_id);
    let count = sent.sent_to.len();
    let mut text = if count == 0 {
        let name = crate::display::terminal_safe(&name);
        format!("#{name} has no other member to send to yet.")
    } else if stored {
        let name = crate::display::terminal_safe(&name);
        format!("Sent to #{name}: {count} member(s) (stored by the relays).")
    } else {
        let name = crate::display::terminal_safe(&name);
        format!("Queued for #{name}: {count} member(s), in the encrypted outbox.")
    };
    if !sent.skipped.is_empty() {
        text.push_str(&format!(
            "\nNot sent to {} (no session yet or identity changed): `enlace read` completes introductions.",
            crate::display::terminal_safe(&sent.skipped.join(", "))
        ));
    }
    out.emit(
        &text,
        json!({"event": "nucleus-sent", "nucleus": name, "message_id": hex,
               "to": sent.sent_to, "skipped": sent.skipped, "status": status_word(stored)}),
    )?;
    if stored || count == 0 { Ok(()) } else { result }
}

/// Does the introductions receiving queued: makes invitations for
/// members we have no session with and sends them through our adder, and
/// accepts invitations introduced to us. A task that cannot be done now
/// (relay down) stays for the next run; one that no longer applies is
/// dropped.
pub(super) async fn run_tasks(
    store: &Store,
    relays: &mut Relays,
    out: &mut Out<'_>,
) -> Result<(), Error> {
    let tasks = store.load()?.nucleus_tasks.clone();
    for task in tasks {
        let done = match &task {
            NucleusTask::Introduce {
                nucleus,
                member,
                via,
            } => introduce(store, relays, *nucleus, *member, *via).await,
            NucleusTask::Accept {
                nucleus,
                introduction,
                via,
            } => accept_introduction(store, relays, out, *nucleus, introduction, *via).await,
        };
        match done {
            Ok(true) => update(store, |p| {
                p.nucleus_tasks.retain(|t| *t != task);
                Ok(())
            })?,
            Ok(false) => {}
            // The relay is down or refused: try again next time.
            Err(Error::RelayUnreachable { .. } | Error::RelayRefused(_)) => {}
            Err(e) => {
                update(store, |p| {
                    p.nucleus_tasks.retain(|t| *t != task);
                    Ok(())
                })?;
                out.text(&format!("(a nucleus introduction was dropped: {e})"))?;
            }
        }
    }
    Ok(())
}

/// Whether `member` and `via` are members with us in `nucleus`, and we
/// still lack a session with `member`.
fn introduction_applies(p: &Profile, nucleus: [u8; 16], member: &[u8; 32]) -> bool {
    let me = *SigningKeyPair::from_secret_bytes(&p.identity)
        .public()
        .as_bytes();
    let Some(n) = p.nuclei.iter().find(|n| n.id == nucleus) else {
        return false;
    };
    let members = n.members();
    members.contains_key(&me)
        && members.contains_key(member)
        && !p.contacts.iter().any(|c| &c.identity_key == member)
}

/// Makes an invitation for `member` and sends it, in a signed
/// introduction, to our adder `via`. Returns whether the task is finished.
async fn introduce(
    store: &Store,
    relays: &mut Relays,
    nucleus: [u8; 16],
    member: [u8; 32],
    via: [u8; 32],
) -> Result<bool, Error> {
    let profile = store.load()?;
    if !introduction_applies(&profile, nucleus, &member)
        || !profile
            .contacts
            .iter()
            .any(|c| c.identity_key == via && c.send_to.is_some())
    {
        return Ok(true);
    }
    let identity = SigningKeyPair::from_secret_bytes(&profile.identity);
    let fresh = FreshInvitation::create(relays, &profile).await?;
    drop(profile);
    let now = fresh.now;
    let intro = Introduction::sign(
        &identity,
        nucleus,
        member,
        fresh.pending.invitation().as_bytes(),
    )?;
    let plaintext = crate::message::AppMessage::Introduction(intro).encode();
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::MessageTooLong(
            "the introduction does not fit one envelope (relay address too long)".into(),
        ));
    }
    update(store, |p| {
        if !introduction_applies(p, nucleus, &member) {
            return Ok(());
        }
        let Some(via_id) = p
            .contacts
            .iter()
            .find(|c| c.identity_key == via && c.send_to.is_some())
            .map(|c| c.id)
        else {
            return Ok(());
        };
        let n = p
            .nuclei
            .iter()
            .find(|n| n.id == nucleus)
            .ok_or(Error::BrokenState("nucleus"))?;
        let name = group::introduced_name(p, n, &member);
        let id = p.allocate_id();
        p.invitations.push(fresh.record(id, Some(name)));
        p.introduced.push(IntroducedContact {
            local: id,
            pending: true,
            member,
            by: via,
            nucleus,
        });
        queue_forwards(p, vec![(via_id, plaintext)], now)
    })?;
    Ok(true)
}

/// Accepts an invitation a member's introduction brought: the same
/// handshake as `enlace accept`, naming the contact `<nucleus>/<name>`.
/// Returns whether the task is finished.
async fn accept_introduction(
    store: &Store,
    relays: &mut Relays,
    out: &mut Out<'_>,
    nucleus: [u8; 16],
    introduction: &[u8],
    via: u64,
) -> Result<bool, Error> {
    let now = time::now();
    let Ok(intro) = Introduction::decode(introduction) else {
        return Ok(true);
    };
    // The invitation must be signed by the member the nucleus names: the
    // key the add operation carried, which also signed the introduction.
    let Ok(invitation) = InvitationCode::decode(&intro.invitation) else {
        return Ok(true);
    };
    if invitation.identity().as_bytes() != &intro.from
        || invitation.expires_at() < now
        || intro.nucleus != nucleus
    {
        return Ok(true);
    }
    let profile = store.load()?;
    if profile
        .contacts
        .iter()
        .any(|c| c.identity_key == intro.from)
    {
        return Ok(true);
    }
    // Receiving queued it only for a current member forwarded by its own
    // adder; if that no longer holds (removed meanwhile), drop it: nothing
    // that does not apply waits here.
    let via_key = profile.contact_by_id(via).map(|c| c.identity_key);
    let adder = profile
        .nuclei
        .iter()
        .find(|n| n.id == nucleus)
        .and_then(|n| n.members().get(&intro.from).map(|m| m.added_by));
    if !introduction_applies(&profile, nucleus, &intro.from) || adder.is_none() || adder != via_key
    {
        return Ok(true);
    }
    let home = home_relay(&profile)?;
    let identity = SigningKeyPair::from_secret_bytes(&profile.identity);
    drop(profile);

    let conn = relays.get(&home.to_string()).await?;
    let accepted = accept_on_home(conn, &identity, &invitation, &home, now).await?;

    let made = update(store, |p| {
        if p.contacts.iter().any(|c| c.identity_key == intro.from) {
            return Ok(None);
        }
        let Some(n) = p.nuclei.iter().find(|n| n.id == nucleus) else {
            return Ok(None);
        };
        let name = group::introduced_name(p, n, &intro.from);
        let nucleus_name = n.name.clone();
        let id = accepted.save(p, &name, invitation.identity(), now);
        p.introduced.push(IntroducedContact {
            local: id,
            pending: false,
            member: intro.from,
            by: via_key.unwrap_or_default(),
            nucleus,
        });
        let by = p
            .contact_by_id(via)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        Ok(Some((name, nucleus_name, by)))
    })?;
    if let Some((name, nucleus_name, by)) = made {
        let safe = crate::display::terminal_safe;
        out.emit(
            &format!(
                "New contact: {} (unverified; introduced by {} in #{}). Compare safety \
                 numbers in person with `enlace verify {}`.",
                safe(&name),
                safe(&by),
                safe(&nucleus_name),
                safe(&name)
            ),
            json!({"event": "contact", "name": name, "verification": "unverified",
                   "introduced_by": by, "nucleus": nucleus_name}),
        )?;
        let _ = flush_outbox(store, relays).await;
    }
    Ok(true)
}
