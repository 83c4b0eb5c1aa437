//! The introductions receiving queued in the profile: making invitations
//! for members we have no session with and sending them through our
//! adder, and accepting invitations introduced to us.

use enlace_protocol::group::{Introduction, NucleusId};
use enlace_protocol::session::MAX_PLAINTEXT_LEN;

use super::flush::flush_outbox;
use super::invite::{FreshInvitation, accept_on_home};
use super::relays::Relays;
use super::report::{Event, Report};
use crate::domain::message::AppMessage;
use crate::domain::nucleus::introductions::{
    may_accept, readable, record_accepted, record_introduction, should_introduce,
};
use crate::error::Error;
use crate::profile::store::Store;
use crate::profile::{ContactId, NucleusTask};
use crate::time;

/// Does the queued introductions. A task that cannot be done now (relay
/// down) stays for the next run; one that no longer applies is dropped.
pub(crate) async fn run_tasks(
    store: &Store,
    relays: &mut Relays,
    report: &mut dyn Report,
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
            } => accept_introduction(store, relays, report, *nucleus, introduction, *via).await,
        };
        let forget = |store: &Store| {
            store.update(|p| {
                p.nucleus_tasks.retain(|t| *t != task);
                Ok(())
            })
        };
        match done {
            Ok(true) => forget(store)?,
            Ok(false) => {}
            // The relay is down or refused: try again next time.
            Err(Error::RelayUnreachable { .. } | Error::RelayRefused(_)) => {}
            Err(e) => {
                forget(store)?;
                report.report(Event::IntroductionDropped(&e))?;
            }
        }
    }
    Ok(())
}

/// Sends the outbox, then does the queued introductions (what `nucleus
/// join` starts: the join goes out before the introductions that follow
/// it over the same sessions), then sends again.
pub(crate) async fn send_and_introduce(
    store: &Store,
    report: &mut dyn Report,
) -> Result<(), Error> {
    let mut relays = Relays::default();
    let first = flush_outbox(store, &mut relays).await;
    let tasks = run_tasks(store, &mut relays, report).await;
    let second = flush_outbox(store, &mut relays).await;
    relays.close().await;
    tasks?;
    second.or(first)
}

/// Makes an invitation for `member` and sends it, in a signed
/// introduction, to our adder `via`. Returns whether the task is finished.
async fn introduce(
    store: &Store,
    relays: &mut Relays,
    nucleus: NucleusId,
    member: [u8; 32],
    via: [u8; 32],
) -> Result<bool, Error> {
    let profile = store.load()?;
    if !should_introduce(&profile, nucleus, &member, &via) {
        return Ok(true);
    }
    let identity = profile.identity_key_pair();
    let fresh = FreshInvitation::create(relays, &profile).await?;
    drop(profile);
    let now = fresh.now;
    let intro = Introduction::sign(
        &identity,
        nucleus,
        member,
        fresh.pending.invitation().as_bytes(),
    )
    .map_err(|_| Error::Encode)?;
    let plaintext = AppMessage::Introduction(intro).encode();
    if plaintext.len() > MAX_PLAINTEXT_LEN {
        return Err(Error::IntroductionTooLong);
    }
    store.update(|p| {
        record_introduction(
            p,
            nucleus,
            member,
            via,
            |id, name| fresh.record(id, Some(name)),
            plaintext,
            now,
        )
    })?;
    Ok(true)
}

/// Accepts an invitation a member's introduction brought: the same
/// handshake as `enlace accept`, naming the contact `<nucleus>/<name>`.
/// Returns whether the task is finished.
async fn accept_introduction(
    store: &Store,
    relays: &mut Relays,
    report: &mut dyn Report,
    nucleus: NucleusId,
    introduction: &[u8],
    via: ContactId,
) -> Result<bool, Error> {
    let now = time::now();
    let Some((intro, invitation)) = readable(nucleus, introduction, now) else {
        return Ok(true);
    };
    let profile = store.load()?;
    let Some(via_key) = may_accept(&profile, nucleus, intro.from(), via) else {
        return Ok(true);
    };
    let home = profile.home()?.clone();
    let identity = profile.identity_key_pair();
    drop(profile);

    let conn = relays.get(&home).await?;
    let accepted = accept_on_home(conn, &identity, &invitation, &home, now).await?;

    let from = *intro.from();
    let made = store.update(|p| {
        Ok(record_accepted(
            p,
            nucleus,
            from,
            invitation.identity(),
            via,
            via_key,
            accepted,
            now,
        ))
    })?;
    if let Some(made) = made {
        report.report(Event::Introduced(&made))?;
        let _ = flush_outbox(store, relays).await;
    }
    Ok(true)
}
