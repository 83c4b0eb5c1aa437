//! `contacts`, `verify`, `invite` and `accept`: the people we talk to.

use std::io::BufRead;

use enlace_protocol::keys::{PublicKey, SafetyNumber};
use enlace_protocol::session::Invitation as InvitationCode;
use serde_json::json;

use super::context::{Ctx, read_code, refuse_code};
use super::output::Out;
use crate::display::terminal_safe;
use crate::domain::contacts::{check_name, find_code};
use crate::driver;
use crate::error::Error;
use crate::profile::store::Store;
use crate::profile::{ContactId, Profile};
use crate::time;

/// Who introduced the contact `id`, if a nucleus introduction made it:
/// `Some(None)` when the introducer is no longer a contact.
pub(crate) fn introduced_by(profile: &Profile, id: ContactId) -> Option<Option<String>> {
    profile
        .introduced
        .iter()
        .find(|i| i.contact() == Some(id))
        .map(|i| {
            profile
                .contacts
                .iter()
                .find(|b| b.identity_key == i.by)
                .map(|b| b.name.clone())
        })
}

/// `enlace contacts`.
pub(crate) fn list(ctx: &Ctx<'_>, out: &mut Out<'_>) -> Result<(), Error> {
    let (_, profile) = ctx.open()?;
    if profile.contacts.is_empty() {
        out.text("No contacts yet. Invite someone with `enlace invite --name NAME`.")?;
    }
    for c in &profile.contacts {
        let state = c.verification().as_str();
        // Contacts made by a nucleus introduction say who introduced them.
        let introduced_by = introduced_by(&profile, c.id)
            .map(|by| by.unwrap_or_else(|| "a former contact".to_owned()));
        let note = introduced_by
            .as_ref()
            .map(|by| format!("  introduced by {}", terminal_safe(by)))
            .unwrap_or_default();
        out.emit(
            &format!(
                "{}  {state}  added {}{note}",
                terminal_safe(&c.name),
                time::format_utc(c.added_at)
            ),
            json!({"name": c.name, "verification": state, "added_at": c.added_at,
                   "introduced_by": introduced_by}),
        )?;
    }
    let pending = profile.invitations.len();
    if pending > 0 {
        out.text(&format!(
            "{pending} invitation(s) not accepted yet; `enlace read` picks up new contacts."
        ))?;
    }
    Ok(())
}

/// The word for a contact's verification state, read afresh.
fn contact_state(store: &Store, name: &str) -> Result<&'static str, Error> {
    let profile = store.load()?;
    Ok(profile
        .contact(name)
        .map(|c| c.verification().as_str())
        .unwrap_or("unknown"))
}

/// `enlace verify`.
pub(crate) fn verify(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    name: &str,
    confirm: bool,
) -> Result<(), Error> {
    let (store, profile) = ctx.open()?;
    let contact = profile
        .contact(name)
        .ok_or_else(|| Error::UnknownContact(name.to_owned()))?;
    let contact_name = contact.name.clone();
    let theirs = PublicKey::from_bytes(&contact.identity_key).map_err(|_| Error::CannotOpen)?;
    let ours = profile.identity_key_pair();
    let number = SafetyNumber::new(ours.public(), &theirs);
    drop(profile);
    if confirm {
        let state = store.update(|p| {
            let c = p
                .contact_mut(&contact_name)
                .ok_or_else(|| Error::UnknownContact(contact_name.clone()))?;
            c.confirm_verified();
            Ok(c.verification())
        })?;
        return out.emit(
            &format!("{contact_name} is now verified."),
            json!({"name": contact_name, "verification": state.as_str(),
                   "safety_number": number.digits()}),
        );
    }
    let qr = crate::qr::render(number.digits().as_bytes()).unwrap_or_default();
    out.emit(
        &format!(
            "Safety number with {contact_name}:\n\n{number}\n\n{qr}\n\
             Compare it with {contact_name}'s screen, in person. If every digit matches, run\n  \
             enlace verify {contact_name} --confirm"
        ),
        json!({"name": contact_name, "safety_number": number.digits(),
               "verification": contact_state(&store, &contact_name)?}),
    )
}

/// `enlace invite`.
pub(crate) fn invite(ctx: &Ctx<'_>, out: &mut Out<'_>, name: Option<String>) -> Result<(), Error> {
    let (store, _) = ctx.open()?;
    let name = name.as_deref().map(check_name).transpose()?;
    let made = driver::runtime::block_on(driver::invite::invite(&store, name))?;
    let (code, qr) = (&made.code, &made.qr);
    out.emit(
        &format!(
            "Give this invitation to the person you are inviting, in person or over a \
             channel you trust.\nIt is valid for 7 days and works once.\n\n{code}\n\n{qr}\n\
             When they have accepted, `enlace read` adds them to your contacts."
        ),
        json!({"event": "invitation", "code": code, "expires_at": made.expires_at}),
    )
}

/// `enlace accept`.
pub(crate) fn accept(
    ctx: &Ctx<'_>,
    out: &mut Out<'_>,
    input: &mut dyn BufRead,
    code: Option<String>,
    name: &str,
) -> Result<(), Error> {
    refuse_code(code, name)?;
    let name = check_name(name)?;
    let (store, _) = ctx.open()?;
    let code = read_code(ctx, input)?;
    let now = time::now();
    let invitation = InvitationCode::parse(find_code(&code), now)
        .map_err(|e| Error::InvalidInvitation(e.to_string()))?;
    driver::runtime::block_on(driver::invite::accept(&store, out, &invitation, &name, now))
}
