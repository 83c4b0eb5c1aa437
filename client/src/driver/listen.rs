//! `enlace listen`: stays subscribed, reconnecting with backoff, until
//! Ctrl-C.

use std::collections::BTreeSet;
use std::time::Duration;

use enlace_quic::SubscriptionEvent;

use super::flush::flush_outbox;
use super::receive::{handle_envelope, secure_pending, subscribe_all};
use super::relays::Relays;
use super::report::{Event, Report};
use super::tasks::run_tasks;
use crate::domain::inbox::take_unshown;
use crate::domain::mailboxes::{mailbox_set, mailboxes};
use crate::domain::nucleus::notices::take_changes;
use crate::domain::retention;
use crate::error::Error;
use crate::profile::store::Store;

/// First wait before `listen` reconnects; doubled up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often `listen` looks for new mailboxes and queued envelopes while
/// idle (a `send` or `invite` in another terminal).
const LISTEN_TICK: Duration = Duration::from_secs(5);

/// `enlace listen`.
pub(crate) async fn listen(store: &Store, report: &mut dyn Report) -> Result<(), Error> {
    tokio::select! {
        result = listen_forever(store, report) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn listen_forever(store: &Store, report: &mut dyn Report) -> Result<(), Error> {
    let mut backoff = BACKOFF_MIN;
    let (changes, timers, earlier) =
        store.update(|p| Ok((take_changes(p), retention::take_unshown(p), take_unshown(p))))?;
    report.report(Event::NucleusChanges(&changes))?;
    report.report(Event::Timers(&timers))?;
    report.report(Event::Messages(&earlier))?;
    report.report(Event::Listening)?;
    loop {
        match listen_once(store, report).await {
            Ok(true) => backoff = BACKOFF_MIN,
            Ok(false) => {}
            Err(e @ (Error::RelayUnreachable { .. } | Error::RelayRefused(_))) => {
                report.report(Event::Retrying {
                    error: &e,
                    after: backoff,
                })?;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Work for a quiet moment of `listen`: returns true (after closing the
/// connections) when the set of mailboxes changed, so the caller
/// resubscribes; otherwise sends whatever waits in the outbox.
async fn tick(
    store: &Store,
    relays: &mut Relays,
    watched: &BTreeSet<[u8; 16]>,
) -> Result<bool, Error> {
    let mut profile = store.load()?;
    let changed = mailbox_set(&profile) != *watched;
    let queued = !profile.outbox.is_empty();
    // Messages past their timer go from the disk while listen runs, too.
    let expired = profile.expire(crate::time::now());
    drop(profile);
    if expired {
        store.update(|_| Ok(()))?;
    }
    if changed {
        std::mem::take(relays).close().await;
        return Ok(true);
    }
    if queued {
        let _ = flush_outbox(store, relays).await;
    }
    Ok(false)
}

/// One connected stretch of `listen`. Returns `Ok(true)` when it ended to
/// pick up a changed set of mailboxes, after a healthy connection.
async fn listen_once(store: &Store, report: &mut dyn Report) -> Result<bool, Error> {
    let mut relays = Relays::default();
    let profile = store.load()?;
    let boxes = mailboxes(&profile);
    let watched = mailbox_set(&profile);
    drop(profile);
    let flushed = flush_outbox(store, &mut relays).await;
    secure_pending(store, &mut relays, &boxes).await;
    let (mut rx, down) = subscribe_all(&mut relays, &boxes).await;
    if !down.is_empty() {
        relays.close().await;
        let queued = store.load()?.outbox.len();
        return Err(Error::RelayUnreachable { queued });
    }
    flushed.or_else(|e| match e {
        Error::RelayUnreachable { .. } | Error::RelayRefused(_) => Ok(()),
        other => Err(other),
    })?;
    loop {
        match tokio::time::timeout(LISTEN_TICK, rx.recv()).await {
            Ok(Some((index, Ok(SubscriptionEvent::Envelope(envelope))))) => {
                let Some(mailbox) = boxes.get(index) else {
                    continue;
                };
                let conn = relays.get(mailbox.relay.address()?).await?;
                handle_envelope(store, conn, mailbox, envelope, report).await?;
                run_tasks(store, &mut relays, report).await?;
                // Receipts go out at once.
                let _ = flush_outbox(store, &mut relays).await;
            }
            Ok(None) if boxes.is_empty() => {
                // Nothing to listen to yet: look again in a while.
                tokio::time::sleep(LISTEN_TICK).await;
                if tick(store, &mut relays, &watched).await? {
                    return Ok(true);
                }
            }
            Ok(Some((_, Ok(_)))) | Ok(Some((_, Err(_)))) | Ok(None) => {
                // A subscription ended or its connection broke.
                relays.close().await;
                let queued = store.load()?.outbox.len();
                return Err(Error::RelayUnreachable { queued });
            }
            Err(_) => {
                if tick(store, &mut relays, &watched).await? {
                    return Ok(true);
                }
            }
        }
    }
}
