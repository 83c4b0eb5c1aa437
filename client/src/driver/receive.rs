//! Receiving: subscribing to our mailboxes, taking each envelope (saved
//! before it is acked), securing mailboxes, and `enlace read`.

use std::collections::BTreeSet;
use std::time::Duration;

use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::Envelope;
use enlace_protocol::keys::PublicKey;
use enlace_quic::{RelayConnection, SubscriptionEvent, TransportError};
use tokio::sync::mpsc;

use super::flush::flush_outbox;
use super::relays::{Relays, relay_error};
use super::report::{Event, Report};
use super::tasks::run_tasks;
use crate::domain::contacts::Outcome;
use crate::domain::inbox::take_unshown;
use crate::domain::mailboxes::{Mailbox, mailboxes, mark_secured};
use crate::domain::nucleus::notices::take_changes;
use crate::domain::receive::take_envelope;
use crate::domain::retention;
use crate::error::Error;
use crate::profile::store::Store;
use crate::time;

/// `read` stops when no envelope arrived for this long: the relay pushes
/// what it holds right after subscribing.
const READ_IDLE: Duration = Duration::from_secs(2);

/// Handles one delivered envelope: decrypt, update, save, report; then
/// secure and ack. Returns how many things it reported.
pub(crate) async fn handle_envelope(
    store: &Store,
    conn: &RelayConnection,
    mailbox: &Mailbox,
    envelope: Envelope,
    report: &mut dyn Report,
) -> Result<usize, Error> {
    let now = time::now();
    let rid = mailbox.receive_id;
    let taken = store.update(|p| take_envelope(p, rid, &envelope, now))?;
    if let Outcome::Contact(name, state) = &taken.outcome {
        report.report(Event::Contact {
            name,
            state: *state,
        })?;
    }
    report.report(Event::NucleusChanges(&taken.changes))?;
    report.report(Event::Timers(&taken.timers))?;
    report.report(Event::Messages(&taken.shown))?;
    if let Some(key) = taken.secure_with {
        secure_mailbox(store, conn, mailbox, key).await;
    }
    // Ack only now that the result is on disk. A lost ack means a
    // redelivery, which is dropped as a duplicate.
    let _ = conn
        .ack(rid.mailbox(), envelope.message_id(), &mailbox.recipient)
        .await;
    if matches!(taken.outcome, Outcome::Dropped) {
        report.report(Event::Undecryptable)?;
    }
    Ok(taken.shown.len()
        + taken.changes.len()
        + taken.timers.len()
        + usize::from(matches!(taken.outcome, Outcome::Contact(..))))
}

/// Asks the relay to accept only `key`'s envelopes on `mailbox`, and notes
/// it in the profile once it did.
async fn secure_mailbox(store: &Store, conn: &RelayConnection, mailbox: &Mailbox, key: [u8; 32]) {
    let Ok(key) = PublicKey::from_bytes(&key) else {
        return;
    };
    if conn
        .secure(mailbox.receive_id.mailbox(), key, &mailbox.recipient)
        .await
        .is_ok()
    {
        let _ = store.update(|p| {
            mark_secured(p, mailbox.receive_id);
            Ok(())
        });
    }
}

/// An event of one subscription, tagged with the mailbox's index.
pub(crate) type Delivery = (usize, Result<SubscriptionEvent, TransportError>);

/// Subscribes to every mailbox; events arrive on the returned channel,
/// tagged with the mailbox's index. Relays that cannot be reached are
/// returned in the set.
pub(crate) async fn subscribe_all(
    relays: &mut Relays,
    boxes: &[Mailbox],
) -> (mpsc::Receiver<Delivery>, BTreeSet<String>) {
    let (tx, rx) = mpsc::channel(64);
    let mut down = BTreeSet::new();
    for (index, mailbox) in boxes.iter().enumerate() {
        if down.contains(mailbox.relay.as_str()) {
            continue;
        }
        let connected = match mailbox.relay.address() {
            Ok(address) => relays.get(address).await.map(|conn| (address, conn)),
            Err(e) => Err(e),
        };
        let (address, conn) = match connected {
            Ok(c) => c,
            Err(_) => {
                down.insert(mailbox.relay.as_str().to_owned());
                continue;
            }
        };
        let sub = conn
            .subscribe(
                mailbox.receive_id.mailbox(),
                &mailbox.recipient,
                DeliveryKey::from_bytes(mailbox.delivery),
            )
            .await;
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                if relay_error(&e).is_none() {
                    relays.forget(address);
                    down.insert(mailbox.relay.as_str().to_owned());
                }
                continue;
            }
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                let event = sub.next().await;
                let end = !matches!(event, Ok(SubscriptionEvent::Envelope(_)));
                if tx.send((index, event)).await.is_err() || end {
                    break;
                }
            }
        });
    }
    (rx, down)
}

/// Secures mailboxes whose contact key is known but not yet registered.
pub(crate) async fn secure_pending(store: &Store, relays: &mut Relays, boxes: &[Mailbox]) {
    for mailbox in boxes {
        if let Some(key) = mailbox.secure_with
            && let Ok(address) = mailbox.relay.address()
            && let Ok(conn) = relays.get(address).await
        {
            secure_mailbox(store, conn, mailbox, key).await;
        }
    }
}

/// `enlace read`: sends the outbox, drains every mailbox, sends receipts.
pub(crate) async fn read(store: &Store, report: &mut dyn Report) -> Result<(), Error> {
    let mut relays = Relays::default();
    let first = flush_outbox(store, &mut relays).await;
    let boxes = mailboxes(&store.load()?);
    secure_pending(store, &mut relays, &boxes).await;
    let (mut rx, down) = subscribe_all(&mut relays, &boxes).await;
    // Show what earlier runs stored but did not show (an interrupted listen).
    let (changes, timers, earlier) =
        store.update(|p| Ok((take_changes(p), retention::take_unshown(p), take_unshown(p))))?;
    report.report(Event::NucleusChanges(&changes))?;
    report.report(Event::Timers(&timers))?;
    report.report(Event::Messages(&earlier))?;
    let mut shown_any = !earlier.is_empty() || !changes.is_empty() || !timers.is_empty();
    let mut lost = false;
    while let Ok(Some((index, event))) = tokio::time::timeout(READ_IDLE, rx.recv()).await {
        let Some(mailbox) = boxes.get(index) else {
            continue;
        };
        match event {
            Ok(SubscriptionEvent::Envelope(envelope)) => {
                let connected = match mailbox.relay.address() {
                    Ok(address) => relays.get(address).await,
                    Err(e) => Err(e),
                };
                let Ok(conn) = connected else {
                    lost = true;
                    continue;
                };
                shown_any |= handle_envelope(store, conn, mailbox, envelope, report).await? > 0;
            }
            Ok(_) => {}
            Err(_) => lost = true,
        }
    }
    drop(rx);
    run_tasks(store, &mut relays, report).await?;
    let second = flush_outbox(store, &mut relays).await;
    relays.close().await;
    if !shown_any {
        report.report(Event::NothingNew)?;
    }
    if !down.is_empty() || lost {
        let queued = store.load()?.outbox.len();
        return Err(Error::RelayUnreachable { queued });
    }
    second.or(first)
}
