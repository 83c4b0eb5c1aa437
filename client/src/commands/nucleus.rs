//! `enlace nucleus ...`: small groups whose messages go to every member.

use std::io::BufRead;

use enlace_protocol::group::Role;
use enlace_protocol::session::MAX_PLAINTEXT_LEN;
use serde_json::json;

use super::contacts::introduced_by;
use super::context::{Ctx, To, message_text};
use super::output::{Out, hex};
use crate::cli::{NucleusCommand, OnOff, RoleArg};
use crate::display::terminal_safe;
use crate::domain::contacts::check_name;
use crate::domain::nucleus::names::{find, fingerprint};
use crate::domain::nucleus::notices::party;
use crate::domain::nucleus::state::{Standing, standing};
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
        NucleusCommand::Role {
            name,
            contact,
            role,
        } => {
            let role = match role {
                RoleArg::Owner => Role::Owner,
                RoleArg::Admin => Role::Admin,
                RoleArg::Member => Role::Member,
            };
            change_members(ctx, out, &name, &contact, MemberChange::Role(role))
        }
        NucleusCommand::Join { name } => {
            let (store, _) = ctx.open()?;
            driver::runtime::block_on(join(&store, out, &name))
        }
        NucleusCommand::Decline { name } => {
            let (store, _) = ctx.open()?;
            driver::runtime::block_on(decline(&store, out, &name))
        }
        NucleusCommand::Leave { name } => {
            let (store, _) = ctx.open()?;
            driver::runtime::block_on(leave(&store, out, &name))
        }
        NucleusCommand::RequireVerified { name, setting } => {
            require_verified(ctx, out, &name, setting == OnOff::On)
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
        &format!(
            "Created nucleus #{name}; you are its owner. Invite members with \
             `enlace nucleus add {name} CONTACT`."
        ),
        json!({"event": "nucleus-created", "nucleus": name, "role": "owner"}),
    )
}

fn list(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.nuclei.is_empty() {
        out.text("No nuclei yet. Start one with `enlace nucleus create NAME`.")?;
    }
    let me = profile.own_key();
    for n in &profile.nuclei {
        let fold = n.fold();
        let name = terminal_safe(&n.name);
        let inviter = |key: &[u8; 32]| terminal_safe(&party(&profile, n, key).name);
        let (state, role, text) = match standing(n, &fold, &me) {
            Standing::Joined(role) => (
                "member",
                Some(role.as_str()),
                format!(
                    "#{name}  {} member(s), you are {}",
                    fold.members.len(),
                    role.as_str()
                ),
            ),
            Standing::Invited => {
                let by = fold.members.get(&me).map(|m| inviter(&m.added_by));
                (
                    "invited",
                    None,
                    format!(
                        "#{name}  invitation from {}: `enlace nucleus join {name}` or \
                         `enlace nucleus decline {name}`",
                        by.unwrap_or_default()
                    ),
                )
            }
            Standing::Welcoming => (
                "arriving",
                None,
                format!("#{name}  (an invitation is arriving; `enlace read` completes it)"),
            ),
            Standing::Out => (
                "removed",
                None,
                format!(
                    "#{name}  (you are not a member; `enlace nucleus leave {name}` forgets it)"
                ),
            ),
        };
        out.emit(
            &text,
            json!({"nucleus": n.name, "state": state, "role": role,
                   "members": fold.members.len(), "require_verified": n.require_verified}),
        )?;
    }
    Ok(())
}

fn members(ctx: &Ctx<'_>, out: &mut Out<'_>, name: &str) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    let n = find(&profile, name)?;
    let me = profile.own_key();
    let fold = n.fold();
    if matches!(standing(n, &fold, &me), Standing::Out | Standing::Welcoming) {
        return Err(Error::NotMember(n.name.clone()));
    }
    for (key, member) in &fold.members {
        let contact = profile.contacts.iter().find(|c| &c.identity_key == key);
        let who = party(&profile, n, key);
        let session = *key == me || contact.is_some_and(|c| c.send_to.is_some());
        let introduced =
            contact.and_then(|c| introduced_by(&profile, c.id).map(Option::unwrap_or_default));
        let role = member.role.as_str();
        let mut text = format!("{}  {role}", terminal_safe(&who.name));
        if !member.joined {
            text.push_str("  invited, not joined");
        }
        if member.version_1 {
            text.push_str("  version 1, no consent recorded");
        }
        if who.state != "you" {
            text.push_str(&format!("  {}", who.state));
        }
        if let Some(by) = &introduced {
            text.push_str(&format!("  introduced by {}", terminal_safe(by)));
        }
        out.emit(
            &text,
            json!({"nucleus": n.name, "member": who.name, "role": role,
                   "joined": member.joined, "version_1": member.version_1,
                   "verification": who.state,
                   "session": session, "introduced_by": introduced,
                   "fingerprint": fingerprint(key).map(|f| hex(&f.0))}),
        )?;
    }
    if n.require_verified {
        out.text("(sending requires every member verified: `require-verified` is on)")?;
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

fn waits(stored: bool) -> &'static str {
    if stored {
        ""
    } else {
        " (the change waits in the outbox)"
    }
}

/// Which change `enlace nucleus add|remove|role` makes.
#[derive(Clone, Copy, Debug)]
enum MemberChange {
    /// `enlace nucleus add`.
    Add,
    /// `enlace nucleus remove`.
    Remove,
    /// `enlace nucleus role`.
    Role(Role),
}

/// `enlace nucleus add`, `remove` and `role`.
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
            MemberChange::Role(role) => {
                change::set_role(p, nucleus, contact, role, rng, sealer(now))
            }
        }
    })?;
    let (n, m) = (terminal_safe(&nucleus), terminal_safe(&member));
    let (result, stored) = send_now(store).await;
    let w = waits(stored);
    let (text, event, role) = match change {
        MemberChange::Add => (
            format!(
                "Invited {m} to #{n}{w}. They get nothing until they accept with \
                 `enlace nucleus join {n}`; then they see messages from then on, nothing earlier."
            ),
            "nucleus-add",
            None,
        ),
        MemberChange::Remove => (
            format!("Removed {m} from #{n}; nothing you send there reaches them any more{w}."),
            "nucleus-remove",
            None,
        ),
        MemberChange::Role(role) => (
            format!("{m} is now {} of #{n}{w}.", role.as_str()),
            "nucleus-role",
            Some(role.as_str()),
        ),
    };
    out.emit(
        &text,
        json!({"event": event, "nucleus": nucleus, "member": member, "role": role,
               "status": status_word(stored)}),
    )?;
    if stored { Ok(()) } else { result }
}

/// `enlace nucleus join`: the join goes out, then our introductions to
/// the members we have no session with (mailboxes and invitations are
/// made now, not before).
async fn join(store: &Store, out: &mut Out<'_>, nucleus: &str) -> Result<(), Error> {
    let now = time::now();
    let name = store.update(|p| change::join(p, nucleus, &mut rand::rng(), sealer(now)))?;
    let result = driver::tasks::send_and_introduce(store, out).await;
    let stored = store.load().map(|p| p.outbox.is_empty()).unwrap_or(false);
    let n = terminal_safe(&name);
    out.emit(
        &format!(
            "Joined #{n}{}. `enlace read` shows its messages and changes; `enlace nucleus \
             members {n}` its members.",
            waits(stored)
        ),
        json!({"event": "nucleus-join", "nucleus": name, "status": status_word(stored)}),
    )?;
    if stored { Ok(()) } else { result }
}

/// `enlace nucleus decline`.
async fn decline(store: &Store, out: &mut Out<'_>, nucleus: &str) -> Result<(), Error> {
    let now = time::now();
    let name = store.update(|p| change::decline(p, nucleus, &mut rand::rng(), sealer(now)))?;
    let (result, stored) = send_now(store).await;
    out.emit(
        &format!(
            "Declined #{} and forgot it{}.",
            terminal_safe(&name),
            if stored {
                ""
            } else {
                " (the answer to the inviter waits in the outbox)"
            }
        ),
        json!({"event": "nucleus-decline", "nucleus": name, "status": status_word(stored)}),
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

/// `enlace nucleus require-verified`.
fn require_verified(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    nucleus: &str,
    on: bool,
) -> Result<(), Error> {
    let name = ctx.update(|p| change::require_verified(p, nucleus, on))?;
    let n = terminal_safe(&name);
    let text = if on {
        format!("#{n} now refuses to send while any member is not verified in person.")
    } else {
        format!("#{n} sends to unverified members again (and says so once for each).")
    };
    out.emit(
        &text,
        json!({"event": "nucleus-setting", "nucleus": name, "require_verified": on}),
    )
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
        format!("#{safe} has no other joined member to send to yet.")
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
    if !sent.unverified.is_empty() {
        text.push_str(&format!(
            "\nNote: you have not verified {} in person; anyone holding their device reads \
             #{safe}. Compare safety numbers with `enlace verify NAME`, or refuse to send \
             until all are verified: `enlace nucleus require-verified {safe} on`.",
            terminal_safe(&sent.unverified.join(", "))
        ));
    }
    out.emit(
        &text,
        json!({"event": "nucleus-sent", "nucleus": name, "message_id": hex,
               "to": sent.sent_to, "skipped": sent.skipped, "unverified": sent.unverified,
               "status": status_word(stored)}),
    )?;
    if stored || count == 0 { Ok(()) } else { result }
}
