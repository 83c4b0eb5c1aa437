//! `send`, `status`, `read` and `listen`: messages between two contacts.

use std::io::BufRead;

use enlace_protocol::session::MAX_PLAINTEXT_LEN;
use serde_json::json;

use super::context::{Ctx, To, read_text, refuse_text};
use super::output::{Out, hex};
use crate::domain::outbox::queue_text;
use crate::domain::seal::sealer;
use crate::driver;
use crate::error::Error;
use crate::profile::Status;
use crate::time;

/// `enlace send`.
pub(crate) fn send(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
    name: &str,
    text: Vec<String>,
) -> Result<(), Error> {
    refuse_text(To::Contact(name), text)?;
    let (store, profile) = ctx.open()?;
    if profile.contact(name).is_none() {
        return Err(Error::UnknownContact(name.to_owned()));
    }
    drop(profile);
    let text = read_text(ctx, input, To::Contact(name))?;
    driver::runtime::block_on(async {
        let now = time::now();
        let message_id = store.update(|p| {
            let contact = p
                .contact(name)
                .ok_or_else(|| Error::UnknownContact(name.to_owned()))?;
            let id = contact.id;
            queue_text(
                p,
                id,
                &text,
                now,
                MAX_PLAINTEXT_LEN,
                &mut rand::rng(),
                sealer(now),
            )
        })?;
        let result = driver::flush::send_outbox(&store).await;
        // This message's own fate: others in the outbox may have been
        // refused while it went out.
        let profile = store.load()?;
        let stored = !profile
            .outbox
            .iter()
            .any(|e| !e.control && e.message_id == message_id);
        let at_home = profile
            .sent
            .iter()
            .any(|s| s.message_id == message_id && s.status == Status::QueuedAtHome);
        drop(profile);
        let status = if stored {
            Status::Stored
        } else if at_home {
            Status::QueuedAtHome
        } else {
            Status::Queued
        };
        let hex = hex(&message_id.0);
        out.emit(
            &match status {
                Status::Stored => format!("Sent to {name} (stored by the relay)."),
                Status::QueuedAtHome => format!(
                    "Queued for {name} at your home relay: it forwards the message when their \
                     relay is reachable."
                ),
                _ => format!("Queued for {name} in the encrypted outbox."),
            },
            json!({"event": "sent", "to": name, "message_id": hex, "status": status.as_str()}),
        )?;
        if status == Status::Queued {
            result
        } else {
            Ok(())
        }
    })
}

/// `enlace status`.
pub(crate) fn status(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.sent.is_empty() {
        out.text("No messages sent yet.")?;
    }
    for m in &profile.sent {
        let to = profile
            .contact_by_id(m.contact)
            .map(|c| c.name.as_str())
            .unwrap_or("(removed contact)");
        let id = hex(&m.message_id.0);
        out.emit(
            &format!(
                "{}  to {to}  {}  {}",
                time::format_utc(m.sent_at),
                m.status.as_str(),
                id.get(..8).unwrap_or_default()
            ),
            json!({"to": to, "message_id": id, "sent_at": m.sent_at,
                   "status": m.status.as_str(), "parts": m.parts}),
        )?;
    }
    Ok(())
}

/// `enlace read`.
pub(crate) fn read(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (store, _) = ctx.open()?;
    driver::runtime::block_on(driver::receive::read(&store, out))
}

/// `enlace listen`.
pub(crate) fn listen(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (store, _) = ctx.open()?;
    driver::runtime::block_on(driver::listen::listen(&store, out))
}
