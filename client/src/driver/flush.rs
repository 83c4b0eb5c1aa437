//! Sending the outbox: directly to the home relay, or forwarded through it
//! to another nucleus's relay.

use std::collections::{BTreeSet, HashSet};

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardState, RelayError};
use enlace_protocol::envelope::{Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_quic::{ForwardOutcome, TransportError};
use zeroize::Zeroizing;

use super::relays::{Relays, relay_error};
use crate::domain::outbox::{mark_queued_at_home, mark_stored};
use crate::domain::route::{Proof, Route, route};
use crate::error::Error;
use crate::profile::store::Store;
use crate::profile::{EnvelopeId, StoredRelay};
use crate::time;

/// Sends the outbox over fresh connections and closes them.
pub(crate) async fn send_outbox(store: &Store) -> Result<(), Error> {
    let mut relays = Relays::default();
    let result = flush_outbox(store, &mut relays).await;
    relays.close().await;
    result
}

/// Sends everything in the outbox, oldest first per destination mailbox. An
/// envelope leaves the outbox only when its relay answered `stored`. A relay
/// that cannot be reached holds back everything for it; a refusal (quota,
/// auth, ...) holds back only later envelopes to the same mailbox, so one
/// contact whose mailbox refuses us cannot stop messages to everyone else.
pub(crate) async fn flush_outbox(store: &Store, relays: &mut Relays) -> Result<(), Error> {
    let profile = store.load()?;
    let pending: Vec<(EnvelopeId, StoredRelay, Vec<u8>, Route)> = profile
        .outbox
        .iter()
        .map(|e| {
            (
                e.envelope_id,
                e.relay.clone(),
                e.envelope.clone(),
                route(&profile, &e.relay),
            )
        })
        .collect();
    // Keys the forward ids, so relays cannot compute them (see forward_one).
    let forward_secret = Zeroizing::new(profile.identity);
    drop(profile);
    let mut down: HashSet<RelayAddress> = HashSet::new();
    let mut blocked: BTreeSet<(String, MailboxId)> = BTreeSet::new();
    let mut refused = None;
    for (envelope_id, relay, bytes, path) in pending {
        if relay.address().is_ok_and(|a| down.contains(a)) {
            continue;
        }
        let Ok(envelope) = Envelope::decode(&bytes) else {
            // Not ours to fix by retrying: drop it from the outbox.
            store.update(|p| {
                p.outbox.retain(|e| e.envelope_id != envelope_id);
                Ok(())
            })?;
            continue;
        };
        let destination = (relay.as_str().to_owned(), envelope.send_id());
        if blocked.contains(&destination) {
            continue;
        }
        let address = match path {
            Route::Refuse(reason) => {
                refused = Some(reason.to_owned());
                blocked.insert(destination);
                continue;
            }
            Route::ViaHome { home, proof } => {
                let forwarded = match relay.address() {
                    Ok(dest) => {
                        forward_one(relays, &home, &proof, dest, &envelope, &forward_secret).await
                    }
                    Err(e) => Err(Some(e.to_string())),
                };
                match forwarded {
                    Ok(ForwardOutcome::Stored) => store.update(|p| {
                        mark_stored(p, envelope_id);
                        Ok(())
                    })?,
                    Ok(ForwardOutcome::Queued) => store.update(|p| {
                        mark_queued_at_home(p, envelope_id);
                        Ok(())
                    })?,
                    Err(Some(reason)) => {
                        refused = Some(reason);
                        blocked.insert(destination);
                    }
                    Err(None) => {
                        if let Ok(dest) = relay.address() {
                            down.insert(dest.clone());
                        }
                    }
                }
                continue;
            }
            Route::Direct => match relay.address() {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        let conn = match relays.get(address).await {
            Ok(c) => c,
            Err(_) => {
                down.insert(address.clone());
                continue;
            }
        };
        match conn.send(&envelope).await {
            Ok(()) => store.update(|p| {
                mark_stored(p, envelope_id);
                Ok(())
            })?,
            Err(e) => match relay_error(&e) {
                Some(reason) => {
                    refused = Some(reason);
                    blocked.insert(destination);
                }
                None => {
                    relays.forget(address);
                    down.insert(address.clone());
                }
            },
        }
    }
    let queued = store.load()?.outbox.len();
    match refused {
        _ if queued == 0 => Ok(()),
        Some(reason) => Err(Error::RelayRefused(reason)),
        None if down.is_empty() => Ok(()),
        None => Err(Error::RelayUnreachable { queued }),
    }
}

/// Forwards one envelope through the home relay. `Err(Some(reason))`: the
/// destination (or home relay) refused it; `Err(None)`: unreachable now.
async fn forward_one(
    relays: &mut Relays,
    home: &RelayAddress,
    proof: &Proof,
    dest: &RelayAddress,
    envelope: &Envelope,
    forward_secret: &[u8; 32],
) -> Result<ForwardOutcome, Option<String>> {
    let fail = |relays: &mut Relays, e: &TransportError| {
        let reason = relay_error(e);
        if reason.is_none() {
            relays.forget(home);
        }
        reason
    };
    if !relays.is_proven(home) {
        let conn = relays.get(home).await.map_err(|_| None)?;
        // Any verified recipient command makes this connection one of the
        // home relay's own clients; acking an id never stored changes nothing.
        let recipient = SigningKeyPair::from_secret_bytes(&proof.recipient);
        let proved = conn
            .ack(proof.receive_id, MessageId(rand::random()), &recipient)
            .await;
        if let Err(e) = proved {
            return Err(fail(&mut *relays, &e));
        }
        relays.mark_proven(home);
    }
    // Keyed by our identity seed: stable across retries, and neither relay
    // (nor both together) can compute it from the message id.
    let fid = enlace_protocol::forward::forward_id_for(forward_secret, &envelope.message_id());
    let conn = relays.get(home).await.map_err(|_| None)?;
    let known = conn.forward_status(&[fid]).await;
    match known.as_deref() {
        Ok([ForwardState::Stored]) => return Ok(ForwardOutcome::Stored),
        Ok([ForwardState::Queued]) => return Ok(ForwardOutcome::Queued),
        Ok([ForwardState::Refused(code)]) => {
            return Err(Some(RelayError::from_code(*code).to_string()));
        }
        Ok(_) => {}
        Err(e) => return Err(fail(&mut *relays, e)),
    }
    let key = match relays.forward_key(dest, time::now()) {
        Some(k) => k,
        None => {
            let conn = relays.get(home).await.map_err(|_| None)?;
            match conn.fetch_relay_key(dest, time::now()).await {
                Ok(k) => {
                    relays.keep_forward_key(dest, k);
                    k
                }
                // The destination could not be asked now: not a refusal.
                Err(TransportError::Relay(RelayError::Unreachable)) => return Err(None),
                Err(e) => return Err(fail(&mut *relays, &e)),
            }
        }
    };
    let conn = relays.get(home).await.map_err(|_| None)?;
    match conn.forward(dest, &key, fid, envelope).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => Err(fail(&mut *relays, &e)),
    }
}
