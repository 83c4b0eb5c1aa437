//! `enlace nucleus ...`: small groups whose messages go to every member.

use std::io::BufRead;

use enlace_protocol::group::Action;
use enlace_protocol::session::MAX_PLAINTEXT_LEN;
use serde_json::json;

use super::contacts::introduced_by;
use super::context::{Ctx, To, message_text};
use super::output::{Out, hex};
use crate::cli::NucleusCommand;
use crate::display::terminal_safe;
use crate::domain::contacts::check_name;
use crate::domain::nucleus::names::{find, fingerprint};
use crate::domain::nucleus::{change, send};
use crate::domain::seal::sealer;
use crate::driver;
use crate::error::Error;
use crate::profile::store::Store;
use crate::time;

/// Runs one `nucleus` subcommand.
pub(crate) fn run(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
    cmd: NucleusCommand,
) -> Result<(), Error> {
    match cmd {
        NucleusCommand::Create { name } => create(ctx, out, &name),
        NucleusCommand::List => list(ctx, out),
        NucleusCommand::Members { name } => members(ctx, out, &name),
        NucleusCommand::Add { name, contact } => {
            change_members(ctx, out, &name, &contact, MemberChange::Add)
        }
        NucleusCommand::Remove { name, contact } => {
            change_members(ctx, out, &name, &contact, MemberChange::Remove)
        }
        NucleusCommand::Leave { name } => {
            let (store, _) = ctx.open()?;
            driver::runtime::block_on(leave(&store, out, &name))
        }
        NucleusCommand::Send { name, text } => {
            let text = message_text(ctx, input, To::Nucleus(&name), text)?;
            let (store, _) = ctx.open()?;
            driver::runtime::block_on(send_text(&store, out, &name, &text))
        }
    }
}

fn create(ctx: &Ctx<'_>, out: &mut Out<'_>, name: &str) -> Result<(), Error> {
    let name = check_name(name)?;
    let name = ctx.update(|p| change::create(p, &name, &mut rand::rng()))?;
    out.emit(
        &format!("Created nucleus #{name}. Add members with `enlace nucleus add {name} CONTACT`."),
        json!({"event": "nucleus-created", "nucleus": name}),
    )
}

fn list(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.nuclei.is_empty() {
        out.text("No nuclei yet. Start one with `enlace nucleus create NAME`.")?;
    }
    let me = profile.own_key();
    for n in &profile.nuclei {
        let members = n.members();
        let removed = n
            .decoded_ops()
            .iter()
            .any(|op| op.action() == Action::Remove && op.target() == &me);
        let state = if members.contains_key(&me) {
            "member"
        } else if removed {
            "removed"
        } else {
            "joining"
        };
        let name = terminal_safe(&n.name);
        let text = match state {
            "member" => format!("#{name}  {} member(s)", members.len()),
            "joining" => format!("#{name}  (being added; `enlace read` completes it)"),
            _ => format!("#{name}  (you were removed; `enlace nucleus leave {name}` forgets it)"),
        };
        out.emit(
            &text,
            json!({"nucleus": n.name, "state": state, "members": members.len()}),
        )?;
    }
    Ok(())
}

fn members(ctx: &Ctx<'_>, out: &mut Out<'_>, name: &str) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    let n = find(&profile, name)?;
    let me = profile.own_key();
    let members = n.members();
    if !members.contains_key(&me) {
        return Err(Error::NotMember(n.name.clone()));
    }
    for (key, member) in &members {
        let contact = profile.contacts.iter().find(|c| &c.identity_key == key);
        let (shown, state, session) = if *key == me {
            ("you".to_owned(), "you", true)
        } else if let Some(c) = contact {
            (
                c.name.clone(),
                c.verification().as_str(),
                c.send_to.is_some(),
            )
        } else {
            (
                format!("{} (no session yet)", member.suggested_name),
                "no-session",
                false,
            )
        };
        let introduced =
            contact.and_then(|c| introduced_by(&profile, c.id).map(Option::unwrap_or_default));
        let mut text = format!("{}  {state}", terminal_safe(&shown));
        if let Some(by) = &introduced {
            text.push_str(&format!("  introduced by {}", terminal_safe(by)));
        }
        out.emit(
            &text,
            json!({"nucleus": n.name, "member": shown, "verification": state,
                   "session": session, "introduced_by": introduced,
                   "fingerprint": fingerprint(key).map(|f| hex(&f.0))}),
        )?;
    }
    Ok(())
}

/// Sends the outbox; returns the result and whether the outbox is empty
/// now (everything, the change included, was stored).
async fn send_now(store: &Store) -> (Result<(), Error>, bool) {
    let result = driver::flush::send_outbox(store).await;
    let stored = store.load().map(|p| p.outbox.is_empty()).unwrap_or(false);
    (result, stored)
}

fn status_word(stored: bool) -> &'static str {
    if stored { "stored" } else { "queued" }
}

/// Which change `enlace nucleus add|remove` makes.
#[derive(Clone, Copy, Debug)]
enum MemberChange {
    /// `enlace nucleus add`.
    Add,
    /// `enlace nucleus remove`.
    Remove,
}

/// `enlace nucleus add` and `enlace nucleus remove`.
fn change_members(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    nucleus: &str,
    contact: &str,
    change: MemberChange,
) -> Result<(), Error> {
    let (store, _) = ctx.open()?;
    driver::runtime::block_on(change_members_now(&store, out, nucleus, contact, change))
}

async fn change_members_now(
    store: &Store,
    out: &mut Out<'_>,
    nucleus: &str,
    contact: &str,
    change: MemberChange,
) -> Result<(), Error> {
    let now = time::now();
    let (nucleus, member) = store.update(|p| {
        let rng = &mut rand::rng();
        match change {
            MemberChange::Add => change::add(p, nucleus, contact, rng, sealer(now)),
            MemberChange::Remove => change::remove(p, nucleus, contact, rng, sealer(now)),
        }
    })?;
    let (n, m) = (terminal_safe(&nucleus), terminal_safe(&member));
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
async fn leave(store: &Store, out: &mut Out<'_>, nucleus: &str) -> Result<(), Error> {
    let now = time::now();
    let nucleus = store.update(|p| change::leave(p, nucleus, &mut rand::rng(), sealer(now)))?;
    let (result, stored) = send_now(store).await;
    out.emit(
        &format!(
            "Left #{} and forgot it{}.",
            terminal_safe(&nucleus),
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
async fn send_text(
    store: &Store,
    out: &mut Out<'_>,
    nucleus: &str,
    text: &str,
) -> Result<(), Error> {
    let now = time::now();
    let (name, sent) = store.update(|p| {
        let sent = send::send_text(
            p,
            nucleus,
            text,
            now,
            MAX_PLAINTEXT_LEN,
            &mut rand::rng(),
            sealer(now),
        )?;
        Ok((find(p, nucleus)?.name.clone(), sent))
    })?;
    let result = driver::flush::send_outbox(store).await;
    let stored = !store
        .load()?
        .outbox
        .iter()
        .any(|e| !e.control && e.message_id == sent.message_id);
    let hex = hex(&sent.message_id.0);
    let count = sent.sent_to.len();
    let safe = terminal_safe(&name);
    let mut text = if count == 0 {
        format!("#{safe} has no other member to send to yet.")
    } else if stored {
        format!("Sent to #{safe}: {count} member(s) (stored by the relays).")
    } else {
        format!("Queued for #{safe}: {count} member(s), in the encrypted outbox.")
    };
    if !sent.skipped.is_empty() {
        text.push_str(&format!(
            "\nNot sent to {} (no session yet or identity changed): `enlace read` completes \
             introductions.",
            terminal_safe(&sent.skipped.join(", "))
        ));
    }
    out.emit(
        &text,
        json!({"event": "nucleus-sent", "nucleus": name, "message_id": hex,
               "to": sent.sent_to, "skipped": sent.skipped, "status": status_word(stored)}),
    )?;
    if stored || count == 0 { Ok(()) } else { result }
}
