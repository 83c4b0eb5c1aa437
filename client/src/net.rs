//! The network driver: invite, accept, send, read and listen over the
//! relay transport, with the end-to-end sessions of the protocol crate.
//!
//! Every change to the profile is saved (under the lock) before the relay
//! is told anything that depends on it: an envelope is acked only after the
//! message it carried and the advanced session are on disk, and an envelope
//! is dropped from the outbox only after its relay answered `stored`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{ForwardState, RelayError};
use enlace_protocol::delivery::DeliveryKey;
use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::keys::{PublicKey, SigningKeyPair};
use enlace_protocol::session::{
    self, Invitation as InvitationCode, MAX_PLAINTEXT_LEN, PendingInvitation, ReplyAddress, Session,
};
use serde_json::json;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use crate::app::{Out, update};
use crate::engine::{self, Received, Shown};
use crate::error::Error;
use crate::message::AcceptPayload;
use crate::profile::{Contact, Invitation, LocalMailbox, Profile, RemoteMailbox, Status};
use crate::store::Store;
use crate::time;
use enlace_quic::{
    ForwardOutcome, RelayConnection, SubscriptionEvent, TransportError, VerifiedRelayKey,
};

mod nucleus;
pub(crate) use nucleus::{MemberChange, nucleus_change, nucleus_leave, nucleus_send};

/// How long an invitation stays valid: a week, long enough to meet in
/// person, short enough that a lost code stops mattering.
pub(crate) const INVITATION_LIFETIME_SECS: u64 = 7 * 86_400;

/// `read` stops when no envelope arrived for this long: the relay pushes
/// what it holds right after subscribing.
pub(crate) const READ_IDLE: Duration = Duration::from_secs(2);

/// First wait before `listen` reconnects; doubled up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often `listen` looks for new mailboxes and queued envelopes while
/// idle (a `send` or `invite` in another terminal).
pub(crate) const LISTEN_TICK: Duration = Duration::from_secs(5);

/// Runs an async command on a single-threaded runtime.
pub(crate) fn block_on<T>(f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the network runtime", e))?
        .block_on(f)
}

fn relay_error(e: &TransportError) -> Option<String> {
    match e {
        TransportError::Relay(r) => Some(r.to_string()),
        _ => None,
    }
}

fn parse_relay(text: &str) -> Result<RelayAddress, Error> {
    text.parse().map_err(Error::Address)
}

/// Open connections, one per relay. A relay that could not be reached is
/// not tried again by the same command (each try can take the whole
/// connect timeout).
#[derive(Default)]
struct Relays {
    conns: BTreeMap<String, RelayConnection>,
    unreachable: BTreeSet<String>,
    /// Connections that proved they hold a mailbox on that relay, so it
    /// forwards for them.
    proven: BTreeSet<String>,
    /// Verified forwarding keys of destination relays, by address.
    keys: BTreeMap<String, VerifiedRelayKey>,
}

impl Relays {
    async fn get(&mut self, relay: &str) -> Result<&RelayConnection, Error> {
        if self.unreachable.contains(relay) {
            return Err(Error::RelayUnreachable { queued: 0 });
        }
        if !self.conns.contains_key(relay) {
            let address = parse_relay(relay)?;
            let Ok(conn) = RelayConnection::connect(&address).await else {
                self.unreachable.insert(relay.to_owned());
                return Err(Error::RelayUnreachable { queued: 0 });
            };
            self.conns.insert(relay.to_owned(), conn);
        }
        self.conns
            .get(relay)
            .ok_or(Error::RelayUnreachable { queued: 0 })
    }

    fn forget(&mut self, relay: &str) {
        self.conns.remove(relay);
        self.proven.remove(relay);
    }

    async fn close(self) {
        for (_, conn) in self.conns {
            conn.close().await;
        }
    }
}

fn home_relay(profile: &Profile) -> Result<RelayAddress, Error> {
    parse_relay(profile.home_relay.as_deref().ok_or(Error::NoRelay)?)
}

fn broken_session(_: enlace_protocol::Error) -> Error {
    Error::BrokenState("session")
}

/// Replaces stored session bytes, zeroizing the old ones.
fn store_session(contact: &mut Contact, session: &Session) {
    let old = std::mem::replace(&mut contact.session, session.to_bytes().to_vec());
    drop(Zeroizing::new(old));
}

/// The sealing step for [`engine`]: encrypt in the contact's session,
/// sign the envelope with our sender key for their mailbox.
fn sealer(now: u64) -> impl engine::Seal {
    move |contact, plaintext, envelope_id| {
        let to = contact
            .send_to
            .as_ref()
            .ok_or_else(|| Error::NoRoute(contact.name.clone()))?;
        let mut session = Session::from_bytes(&contact.session).map_err(broken_session)?;
        let body = session
            .encrypt(&mut rand::rng(), plaintext)
            .map_err(broken_session)?;
        let sender = SigningKeyPair::from_secret_bytes(&to.sender_key);
        let envelope = Envelope::sign(
            &sender,
            MailboxId(to.send_id),
            MessageId(envelope_id),
            CoarseTime::from_unix_secs(now),
            &body,
        )
        .map_err(|_| Error::Encode)?;
        let relay = to.relay.clone();
        store_session(contact, &session);
        Ok((envelope.into_bytes(), relay))
    }
}

pub(crate) fn check_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::InvalidName("empty"));
    }
    if name.chars().count() > 64 {
        return Err(Error::InvalidName("longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidName("control characters"));
    }
    Ok(name.to_owned())
}

/// Adds a contact, or updates the one with the same name (flagging an
/// identity key change). Returns its id.
fn upsert_contact(
    profile: &mut Profile,
    name: &str,
    identity: &PublicKey,
    session: &Session,
    send_to: RemoteMailbox,
    receive_on: LocalMailbox,
    now: u64,
) -> u64 {
    if let Some(c) = profile.contact_mut(name) {
        c.set_identity_key(*identity.as_bytes());
        store_session(c, session);
        c.send_to = Some(send_to);
        c.receive_on = Some(receive_on);
        return c.id;
    }
    let id = profile.allocate_id();
    profile.contacts.push(Contact {
        id,
        name: name.to_owned(),
        identity_key: *identity.as_bytes(),
        verified_key: None,
        key_changed: false,
        session: session.to_bytes().to_vec(),
        send_to: Some(send_to),
        receive_on: Some(receive_on),
        added_at: now,
    });
    id
}

/// A new mailbox on the home relay and a pending invitation to it: what
/// `enlace invite` and a nucleus introduction both make.
struct FreshInvitation {
    relay: RelayAddress,
    recipient: SigningKeyPair,
    created: enlace_quic::CreatedMailbox,
    pending: PendingInvitation,
    now: u64,
}

impl FreshInvitation {
    /// Creates the mailbox on `profile`'s home relay.
    async fn create(relays: &mut Relays, profile: &Profile) -> Result<Self, Error> {
        let relay = home_relay(profile)?;
        let identity = SigningKeyPair::from_secret_bytes(&profile.identity);
        let conn = relays.get(&relay.to_string()).await?;
        let recipient = SigningKeyPair::generate(&mut rand::rng());
        let created = conn.create_mailbox(&recipient).await.map_err(|e| {
            relay_error(&e).map_or(Error::RelayUnreachable { queued: 0 }, Error::RelayRefused)
        })?;
        let now = time::now();
        let pending = PendingInvitation::create(
            &mut rand::rng(),
            &identity,
            relay.clone(),
            created.send_id,
            now + INVITATION_LIFETIME_SECS,
        );
        Ok(Self {
            relay,
            recipient,
            created,
            pending,
            now,
        })
    }

    /// The profile record that keeps the invitation until it is accepted.
    fn record(&self, id: u64, name: Option<String>) -> Invitation {
        Invitation {
            id,
            name,
            mailbox: LocalMailbox {
                relay: self.relay.to_string(),
                receive_id: self.created.receive_id.0,
                send_id: self.created.send_id.0,
                recipient_key: *self.recipient.secret_bytes(),
                delivery_key: *self.created.delivery_key.to_bytes(),
                contact_sender_key: None,
                secured: false,
            },
            secret: self.pending.to_bytes().to_vec(),
            created_at: self.now,
        }
    }
}

/// `enlace invite`: a mailbox on the home relay and an invitation to it.
pub(crate) async fn invite(
    store: &Store,
    out: &mut Out<'_>,
    name: Option<String>,
) -> Result<(), Error> {
    let name = name.as_deref().map(check_name).transpose()?;
    let profile = store.load()?;
    let mut relays = Relays::default();
    let fresh = FreshInvitation::create(&mut relays, &profile).await?;
    drop(profile);
    let code = fresh.pending.invitation().to_text();
    let qr = fresh.pending.invitation().to_qr();
    let now = fresh.now;
    update(store, |p| {
        let id = p.allocate_id();
        p.invitations.push(fresh.record(id, name.clone()));
        Ok(())
    })?;
    relays.close().await;
    out.emit(
        &format!(
            "Give this invitation to the person you are inviting, in person or over a \
             channel you trust.\nIt is valid for 7 days and works once.\n\n{code}\n\n{qr}\n\
             When they have accepted, `enlace read` adds them to your contacts."
        ),
        json!({"event": "invitation", "code": code, "expires_at": now + INVITATION_LIFETIME_SECS}),
    )
}

/// `enlace accept`: the handshake; the first envelope goes to the
/// inviter's mailbox through the outbox.
pub(crate) async fn accept(
    store: &Store,
    out: &mut Out<'_>,
    code: &str,
    name: &str,
) -> Result<(), Error> {
    let name = check_name(name)?;
    let now = time::now();
    let invitation = InvitationCode::parse(find_code(code), now)
        .map_err(|e| Error::InvalidInvitation(e.to_string()))?;
    let profile = store.load()?;
    let home = home_relay(&profile)?;
    let identity = SigningKeyPair::from_secret_bytes(&profile.identity);
    if invitation.identity() == identity.public() {
        return Err(Error::InvalidInvitation("it is your own".into()));
    }
    drop(profile);

    let mut relays = Relays::default();
    let conn = relays.get(&home.to_string()).await?;
    let accepted = accept_on_home(conn, &identity, &invitation, &home, now).await?;

    let changed = update(store, |p| {
        accepted.save(p, &name, invitation.identity(), now);
        Ok(p.contact(&name).map(Contact::verification))
    })?;
    announce_contact(out, &name, changed)?;
    let result = flush_outbox(store, &mut relays).await;
    relays.close().await;
    result
}

/// What accepting an invitation made: a secured mailbox on the home relay
/// for the inviter to write to, the session, and the first (handshake)
/// envelope for the inviter's mailbox, ready to be saved and sent.
pub(crate) struct Accepted {
    session: Session,
    send_to: RemoteMailbox,
    receive_on: LocalMailbox,
    envelope_id: [u8; 16],
    envelope: Vec<u8>,
}

impl Accepted {
    /// Adds (or updates) the contact named `name` with identity key
    /// `identity`, and queues the handshake envelope in the outbox.
    /// Returns the contact's id.
    pub(crate) fn save(self, p: &mut Profile, name: &str, identity: &PublicKey, now: u64) -> u64 {
        let relay = self.send_to.relay.clone();
        let id = upsert_contact(
            p,
            name,
            identity,
            &self.session,
            self.send_to,
            self.receive_on,
            now,
        );
        p.outbox.push(crate::profile::OutboxEntry {
            contact: id,
            envelope_id: self.envelope_id,
            message_id: [0; 16],
            relay,
            envelope: self.envelope,
            control: true,
        });
        id
    }
}

/// Accepts `invitation` (`enlace accept`, or an introduction in a
/// nucleus): creates and secures a mailbox for the inviter on our home
/// relay (over `conn`), runs the handshake and signs its first envelope.
/// Nothing is saved yet: see [`Accepted::save`].
pub(crate) async fn accept_on_home(
    conn: &RelayConnection,
    identity: &SigningKeyPair,
    invitation: &InvitationCode,
    home: &RelayAddress,
    now: u64,
) -> Result<Accepted, Error> {
    let refused = |e: TransportError| {
        relay_error(&e).map_or(Error::RelayUnreachable { queued: 0 }, Error::RelayRefused)
    };
    let recipient = SigningKeyPair::generate(&mut rand::rng());
    let created = conn.create_mailbox(&recipient).await.map_err(refused)?;
    // The key the inviter will sign with into our mailbox: ours to make,
    // so the mailbox is secured before anyone knows it exists.
    let inviter_sender = SigningKeyPair::generate(&mut rand::rng());
    conn.secure(created.receive_id, *inviter_sender.public(), &recipient)
        .await
        .map_err(refused)?;
    let payload = AcceptPayload {
        sender_seed: inviter_sender.secret_bytes(),
    }
    .encode();
    let sender = SigningKeyPair::generate(&mut rand::rng());
    let reply = ReplyAddress {
        relay: home.clone(),
        send_id: created.send_id,
    };
    let (session, first) = session::accept(
        &mut rand::rng(),
        identity,
        invitation,
        &reply,
        sender.public(),
        &payload,
        now,
    )
    .map_err(|e| Error::InvalidInvitation(e.to_string()))?;
    let mut envelope_id = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut envelope_id);
    let envelope = Envelope::sign(
        &sender,
        invitation.send_id(),
        MessageId(envelope_id),
        CoarseTime::from_unix_secs(now),
        &first,
    )
    .map_err(|_| Error::Encode)?;
    Ok(Accepted {
        session,
        send_to: RemoteMailbox {
            relay: invitation.relay().to_string(),
            send_id: invitation.send_id().0,
            sender_key: *sender.secret_bytes(),
        },
        receive_on: LocalMailbox {
            relay: home.to_string(),
            receive_id: created.receive_id.0,
            send_id: created.send_id.0,
            recipient_key: *recipient.secret_bytes(),
            delivery_key: *created.delivery_key.to_bytes(),
            contact_sender_key: Some(*inviter_sender.public().as_bytes()),
            secured: true,
        },
        envelope_id,
        envelope: envelope.as_bytes().to_vec(),
    })
}

/// The invitation code inside `text`: the first word that starts with the
/// code prefix, so a pasted `enlace invite` output works as well as the
/// bare code.
fn find_code(text: &str) -> &str {
    text.split_whitespace()
        .find(|w| {
            w.get(..session::TEXT_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(session::TEXT_PREFIX))
        })
        .unwrap_or(text.trim())
}

fn announce_contact(
    out: &mut Out<'_>,
    name: &str,
    state: Option<crate::profile::Verification>,
) -> Result<(), Error> {
    let state = state.unwrap_or(crate::profile::Verification::Unverified);
    let text = if state == crate::profile::Verification::KeyChanged {
        format!(
            "{name} is back with a NEW identity key. Sending to {name} is refused until you \
             compare safety numbers in person: `enlace verify {name}`."
        )
    } else {
        format!(
            "New contact: {name} (unverified). Compare safety numbers in person with \
             `enlace verify {name}`."
        )
    };
    out.emit(
        &text,
        json!({"event": "contact", "name": name, "verification": state.as_str()}),
    )
}

/// `enlace send`.
pub(crate) async fn send(
    store: &Store,
    out: &mut Out<'_>,
    name: &str,
    text: &str,
) -> Result<(), Error> {
    let now = time::now();
    let message_id = update(store, |p| {
        let contact = p
            .contact(name)
            .ok_or_else(|| Error::UnknownContact(name.to_owned()))?;
        let id = contact.id;
        engine::queue_text(
            p,
            id,
            text,
            now,
            MAX_PLAINTEXT_LEN,
            &mut rand::rng(),
            sealer(now),
        )
    })?;
    let mut relays = Relays::default();
    let result = flush_outbox(store, &mut relays).await;
    relays.close().await;
    // This message's own fate: others in the outbox may have been refused
    // while it went out.
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
    let hex = crate::app::hex(&message_id);
    out.emit(
        &match status {
            Status::Stored => format!("Sent to {name} (stored by the relay)."),
            Status::QueuedAtHome => format!(
                "Queued for {name} at your home relay: it forwards the message when their relay is reachable."
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
}

/// Sends everything in the outbox, oldest first per destination mailbox. An
/// envelope leaves the outbox only when its relay answered `stored`. A relay
/// that cannot be reached holds back everything for it; a refusal (quota,
/// auth, ...) holds back only later envelopes to the same mailbox, so one
/// contact whose mailbox refuses us cannot stop messages to everyone else.
async fn flush_outbox(store: &Store, relays: &mut Relays) -> Result<(), Error> {
    let profile = store.load()?;
    let pending: Vec<([u8; 16], String, Vec<u8>, Route)> = profile
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
    let mut down = BTreeSet::new();
    let mut blocked = BTreeSet::new();
    let mut refused = None;
    for (envelope_id, relay, bytes, path) in pending {
        if down.contains(&relay) {
            continue;
        }
        let Ok(envelope) = Envelope::decode(&bytes) else {
            // Not ours to fix by retrying: drop it from the outbox.
            update(store, |p| {
                p.outbox.retain(|e| e.envelope_id != envelope_id);
                Ok(())
            })?;
            continue;
        };
        let destination = (relay.clone(), envelope.send_id());
        if blocked.contains(&destination) {
            continue;
        }
        if let Route::Refuse(reason) = path {
            refused = Some(reason.to_owned());
            blocked.insert(destination);
            continue;
        }
        if let Route::ViaHome { home, proof } = path {
            match forward_one(relays, &home, &proof, &relay, &envelope, &forward_secret).await {
                Ok(ForwardOutcome::Stored) => update(store, |p| {
                    engine::mark_stored(p, envelope_id);
                    Ok(())
                })?,
                Ok(ForwardOutcome::Queued) => update(store, |p| {
                    engine::mark_queued_at_home(p, envelope_id);
                    Ok(())
                })?,
                Err(Some(reason)) => {
                    refused = Some(reason);
                    blocked.insert(destination);
                }
                Err(None) => {
                    down.insert(relay);
                }
            }
            continue;
        }
        let conn = match relays.get(&relay).await {
            Ok(c) => c,
            Err(_) => {
                down.insert(relay);
                continue;
            }
        };
        match conn.send(&envelope).await {
            Ok(()) => update(store, |p| {
                engine::mark_stored(p, envelope_id);
                Ok(())
            })?,
            Err(e) => match relay_error(&e) {
                Some(reason) => {
                    refused = Some(reason);
                    blocked.insert(destination);
                }
                None => {
                    relays.forget(&relay);
                    down.insert(relay);
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

// ------------------------------------------------------------------- routes

/// How envelopes reach a contact's mailbox. A mailbox on the home relay is
/// sent to directly; one on another relay goes through the home relay,
/// sealed to the contact's relay, so this client never contacts that relay
/// and the contact's relay never sees this client's address
/// (docs/client.md, "Routes").
enum Route {
    Direct,
    /// No safe way: going to the contact's relay directly would show it our
    /// address, so the envelope waits in the outbox (the reason is shown).
    Refuse(&'static str),
    ViaHome {
        /// The home relay's address.
        home: String,
        /// One of our mailboxes there, to prove we are its client.
        proof: Proof,
    },
}

/// A mailbox of ours on the home relay: receive id and recipient key.
struct Proof {
    receive_id: MailboxId,
    recipient: Zeroizing<[u8; 32]>,
}

fn route(profile: &Profile, relay: &str) -> Route {
    const NO_HOME: &str = "no home relay to forward through, and contacting another \
                           nucleus's relay directly would show it your address";
    let Some(home) = profile.home_relay.as_deref() else {
        return Route::Refuse(NO_HOME);
    };
    let (Ok(home_addr), Ok(dest)) = (parse_relay(home), parse_relay(relay)) else {
        return Route::Refuse(NO_HOME);
    };
    if home_addr.fingerprint() == dest.fingerprint() {
        return Route::Direct;
    }
    // Without a mailbox of ours at home, the home relay would refuse to
    // forward; sending directly would show the contact's relay our address,
    // so the envelope waits (every command that makes a contact makes a
    // mailbox at home first).
    let proof = mailboxes(profile)
        .into_iter()
        .find(|m| parse_relay(&m.relay).is_ok_and(|a| a.fingerprint() == home_addr.fingerprint()));
    match proof {
        Some(m) => Route::ViaHome {
            home: home.to_owned(),
            proof: Proof {
                receive_id: m.receive_id,
                recipient: m.recipient.secret_bytes(),
            },
        },
        None => Route::Refuse(
            "no mailbox of yours on your home relay to forward through (make one with \
             `enlace invite`); contacting another nucleus's relay directly would show it \
             your address",
        ),
    }
}

/// Forwards one envelope through the home relay. `Err(Some(reason))`: the
/// destination (or home relay) refused it; `Err(None)`: unreachable now.
async fn forward_one(
    relays: &mut Relays,
    home: &str,
    proof: &Proof,
    relay: &str,
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
    let dest = parse_relay(relay).map_err(|e| Some(e.to_string()))?;
    if !relays.proven.contains(home) {
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
        relays.proven.insert(home.to_owned());
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
    let cached = relays
        .keys
        .get(relay)
        .filter(|k| k.expires > time::now())
        .copied();
    let key = match cached {
        Some(k) => k,
        None => {
            let conn = relays.get(home).await.map_err(|_| None)?;
            match conn.fetch_relay_key(&dest, time::now()).await {
                Ok(k) => {
                    relays.keys.insert(relay.to_owned(), k);
                    k
                }
                // The destination could not be asked now: not a refusal.
                Err(TransportError::Relay(RelayError::Unreachable)) => return Err(None),
                Err(e) => return Err(fail(&mut *relays, &e)),
            }
        }
    };
    let conn = relays.get(home).await.map_err(|_| None)?;
    match conn.forward(&dest, &key, fid, envelope).await {
        Ok(outcome) => Ok(outcome),
        Err(e) => Err(fail(&mut *relays, &e)),
    }
}

/// One of our mailboxes, with the keys to read it.
struct Mailbox {
    relay: String,
    receive_id: MailboxId,
    recipient: SigningKeyPair,
    delivery: [u8; 32],
    secure_with: Option<[u8; 32]>,
}

fn mailboxes(profile: &Profile) -> Vec<Mailbox> {
    let locals = profile.invitations.iter().map(|i| &i.mailbox).chain(
        profile
            .contacts
            .iter()
            .filter_map(|c| c.receive_on.as_ref()),
    );
    locals
        .map(|m| Mailbox {
            relay: m.relay.clone(),
            receive_id: MailboxId(m.receive_id),
            recipient: SigningKeyPair::from_secret_bytes(&m.recipient_key),
            delivery: m.delivery_key,
            secure_with: m.contact_sender_key.filter(|_| !m.secured),
        })
        .collect()
}

fn mailbox_set(profile: &Profile) -> BTreeSet<[u8; 16]> {
    mailboxes(profile).iter().map(|m| m.receive_id.0).collect()
}

/// What one envelope did, decided under the lock.
enum Outcome {
    /// Already processed: just ack.
    Duplicate,
    /// Could not be read; dropped.
    Dropped,
    /// A handshake completed: a new (or updated) contact.
    Contact(String, crate::profile::Verification),
    /// Something else (a message, a part, a receipt).
    Done,
}

/// Handles one delivered envelope: decrypt, update, save, print; then
/// secure and ack. Returns how many things it printed.
async fn handle_envelope(
    store: &Store,
    conn: &RelayConnection,
    mailbox: &Mailbox,
    envelope: Envelope,
    out: &mut Out<'_>,
) -> Result<usize, Error> {
    let now = time::now();
    let envelope_id = envelope.message_id().0;
    let rid = mailbox.receive_id.0;
    let (outcome, shown, secure) = update(store, |p| {
        if p.seen.contains(&envelope_id) {
            return Ok((Outcome::Duplicate, Vec::new(), None));
        }
        let outcome = receive(p, rid, &envelope, now)?;
        p.mark_seen(envelope_id);
        let secure = find_local(p, rid).and_then(|m| m.contact_sender_key.filter(|_| !m.secured));
        Ok((outcome, engine::take_unshown(p), secure))
    })?;
    if let Outcome::Contact(name, state) = &outcome {
        announce_contact(out, name, Some(*state))?;
    }
    print_messages(out, &shown)?;
    if let Some(key) = secure {
        secure_mailbox(store, conn, mailbox, key).await;
    }
    // Ack only now that the result is on disk. A lost ack means a
    // redelivery, which is dropped as a duplicate.
    let _ = conn
        .ack(
            mailbox.receive_id,
            envelope.message_id(),
            &mailbox.recipient,
        )
        .await;
    if matches!(outcome, Outcome::Dropped) {
        out.text("(an envelope that could not be decrypted was dropped)")?;
    }
    Ok(shown.len() + usize::from(matches!(outcome, Outcome::Contact(..))))
}

fn find_local(p: &Profile, rid: [u8; 16]) -> Option<&LocalMailbox> {
    p.contacts
        .iter()
        .filter_map(|c| c.receive_on.as_ref())
        .chain(p.invitations.iter().map(|i| &i.mailbox))
        .find(|m| m.receive_id == rid)
}

async fn secure_mailbox(store: &Store, conn: &RelayConnection, mailbox: &Mailbox, key: [u8; 32]) {
    let Ok(key) = PublicKey::from_bytes(&key) else {
        return;
    };
    if conn
        .secure(mailbox.receive_id, key, &mailbox.recipient)
        .await
        .is_ok()
    {
        let _ = update(store, |p| {
            if let Some(m) = p
                .contacts
                .iter_mut()
                .filter_map(|c| c.receive_on.as_mut())
                .find(|m| m.receive_id == mailbox.receive_id.0)
            {
                m.secured = true;
            }
            Ok(())
        });
    }
}

/// The profile side of receiving one envelope on mailbox `rid`.
fn receive(
    p: &mut Profile,
    rid: [u8; 16],
    envelope: &Envelope,
    now: u64,
) -> Result<Outcome, Error> {
    if let Some(index) = p
        .invitations
        .iter()
        .position(|i| i.mailbox.receive_id == rid)
    {
        let invitation_id = p.invitations.get(index).map(|i| i.id);
        let outcome = complete_invitation(p, index, envelope, now)?;
        if let (Outcome::Contact(name, _), Some(invitation_id)) = (&outcome, invitation_id) {
            nucleus::invitation_completed(p, invitation_id, name);
        }
        return Ok(outcome);
    }
    let Some(contact) = p
        .contacts
        .iter_mut()
        .find(|c| c.receive_on.as_ref().is_some_and(|m| m.receive_id == rid))
    else {
        return Ok(Outcome::Dropped);
    };
    let mut session = Session::from_bytes(&contact.session).map_err(broken_session)?;
    let Ok(plaintext) = session.decrypt(&mut rand::rng(), envelope.body()) else {
        return Ok(Outcome::Dropped);
    };
    store_session(contact, &session);
    let id = contact.id;
    match engine::handle_plaintext(p, id, &plaintext, now) {
        Received::Text(message_id) => {
            engine::queue_receipt(p, id, vec![message_id], &mut rand::rng(), sealer(now))?;
        }
        Received::Forward(outgoing) => nucleus::queue_forwards(p, outgoing, now)?,
        Received::Part | Received::Receipt | Received::Nothing => {}
    }
    Ok(Outcome::Done)
}

fn complete_invitation(
    p: &mut Profile,
    index: usize,
    envelope: &Envelope,
    now: u64,
) -> Result<Outcome, Error> {
    let Some(invitation) = p.invitations.get(index) else {
        return Ok(Outcome::Dropped);
    };
    let pending = PendingInvitation::from_bytes(&invitation.secret)
        .map_err(|_| Error::BrokenState("invitation"))?;
    let identity = SigningKeyPair::from_secret_bytes(&p.identity);
    let Ok((session, accepted)) =
        pending.complete(&mut rand::rng(), &identity, envelope.body(), now)
    else {
        return Ok(Outcome::Dropped);
    };
    let Ok(payload) = AcceptPayload::decode(&accepted.payload) else {
        return Ok(Outcome::Dropped);
    };
    let invitation = p.invitations.remove(index);
    let name = match &invitation.name {
        Some(n) => n.clone(),
        None => format!("contact-{}", invitation.id),
    };
    let m = &invitation.mailbox;
    let receive_on = LocalMailbox {
        relay: m.relay.clone(),
        receive_id: m.receive_id,
        send_id: m.send_id,
        recipient_key: m.recipient_key,
        delivery_key: m.delivery_key,
        contact_sender_key: Some(*accepted.sender_key.as_bytes()),
        secured: false,
    };
    let id = upsert_contact(
        p,
        &name,
        &accepted.identity,
        &session,
        RemoteMailbox {
            relay: accepted.reply_to.relay.to_string(),
            send_id: accepted.reply_to.send_id.0,
            sender_key: *payload.sender_seed,
        },
        receive_on,
        now,
    );
    let state = p
        .contact_by_id(id)
        .map(Contact::verification)
        .unwrap_or(crate::profile::Verification::Unverified);
    Ok(Outcome::Contact(name, state))
}

fn print_messages(out: &mut Out<'_>, shown: &[Shown]) -> Result<(), Error> {
    for m in shown {
        let place = match &m.nucleus {
            Some(n) => format!("#{} ", crate::display::terminal_safe(n)),
            None => String::new(),
        };
        let mut value =
            json!({"event": "message", "from": m.from, "sent_at": m.sent_at, "text": m.text});
        if let (Some(n), Some(map)) = (&m.nucleus, value.as_object_mut()) {
            map.insert("nucleus".into(), json!(n));
        }
        out.emit(
            &format!(
                "[{}] {place}{}: {}",
                time::format_utc(m.sent_at),
                crate::display::terminal_safe(&m.from),
                crate::display::terminal_safe(&m.text)
            ),
            value,
        )?;
    }
    Ok(())
}

type Event = (usize, Result<SubscriptionEvent, TransportError>);

/// Subscribes to every mailbox; events arrive on the returned channel,
/// tagged with the mailbox's index. Relays that cannot be reached are
/// returned in the set.
async fn subscribe_all(
    relays: &mut Relays,
    boxes: &[Mailbox],
) -> (mpsc::Receiver<Event>, BTreeSet<String>) {
    let (tx, rx) = mpsc::channel(64);
    let mut down = BTreeSet::new();
    for (index, mailbox) in boxes.iter().enumerate() {
        if down.contains(&mailbox.relay) {
            continue;
        }
        let conn = match relays.get(&mailbox.relay).await {
            Ok(c) => c,
            Err(_) => {
                down.insert(mailbox.relay.clone());
                continue;
            }
        };
        let sub = conn
            .subscribe(
                mailbox.receive_id,
                &mailbox.recipient,
                DeliveryKey::from_bytes(mailbox.delivery),
            )
            .await;
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                if relay_error(&e).is_none() {
                    relays.forget(&mailbox.relay);
                    down.insert(mailbox.relay.clone());
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
async fn secure_pending(store: &Store, relays: &mut Relays, boxes: &[Mailbox]) {
    for mailbox in boxes {
        if let Some(key) = mailbox.secure_with
            && let Ok(conn) = relays.get(&mailbox.relay).await
        {
            secure_mailbox(store, conn, mailbox, key).await;
        }
    }
}

/// `enlace read`: sends the outbox, drains every mailbox, sends receipts.
pub(crate) async fn read(store: &Store, out: &mut Out<'_>) -> Result<(), Error> {
    let mut relays = Relays::default();
    let first = flush_outbox(store, &mut relays).await;
    let boxes = mailboxes(&store.load()?);
    secure_pending(store, &mut relays, &boxes).await;
    let (mut rx, down) = subscribe_all(&mut relays, &boxes).await;
    let mut shown_any = false;
    // Print what earlier runs stored but did not show (an interrupted listen).
    let earlier = update(store, |p| Ok(engine::take_unshown(p)))?;
    print_messages(out, &earlier)?;
    shown_any |= !earlier.is_empty();
    let mut lost = false;
    while let Ok(Some((index, event))) = tokio::time::timeout(READ_IDLE, rx.recv()).await {
        let Some(mailbox) = boxes.get(index) else {
            continue;
        };
        match event {
            Ok(SubscriptionEvent::Envelope(envelope)) => {
                let Ok(conn) = relays.get(&mailbox.relay).await else {
                    lost = true;
                    continue;
                };
                shown_any |= handle_envelope(store, conn, mailbox, envelope, out).await? > 0;
            }
            Ok(_) => {}
            Err(_) => lost = true,
        }
    }
    drop(rx);
    nucleus::run_tasks(store, &mut relays, out).await?;
    let second = flush_outbox(store, &mut relays).await;
    relays.close().await;
    if !shown_any {
        out.text("No new messages.")?;
    }
    if !down.is_empty() || lost {
        let queued = store.load()?.outbox.len();
        return Err(Error::RelayUnreachable { queued });
    }
    second.or(first)
}

/// `enlace listen`: stays subscribed, reconnecting with backoff, until
/// Ctrl-C.
pub(crate) async fn listen(store: &Store, out: &mut Out<'_>) -> Result<(), Error> {
    tokio::select! {
        result = listen_forever(store, out) => result,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn listen_forever(store: &Store, out: &mut Out<'_>) -> Result<(), Error> {
    let mut backoff = BACKOFF_MIN;
    let earlier = update(store, |p| Ok(engine::take_unshown(p)))?;
    print_messages(out, &earlier)?;
    out.text("Listening for messages; Ctrl-C stops.")?;
    loop {
        match listen_once(store, out).await {
            Ok(true) => backoff = BACKOFF_MIN,
            Ok(false) => {}
            Err(e @ (Error::RelayUnreachable { .. } | Error::RelayRefused(_))) => {
                eprintln!("enlace: {e} — retrying in {} s", backoff.as_secs());
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
    let profile = store.load()?;
    let changed = mailbox_set(&profile) != *watched;
    let queued = !profile.outbox.is_empty();
    drop(profile);
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
async fn listen_once(store: &Store, out: &mut Out<'_>) -> Result<bool, Error> {
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
                let conn = relays.get(&mailbox.relay).await?;
                handle_envelope(store, conn, mailbox, envelope, out).await?;
                nucleus::run_tasks(store, &mut relays, out).await?;
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

#[cfg(test)]
mod tests {
    use enlace_protocol::keys::SigningKeyPair;

    use super::*;

    fn address(seed: u8, port: u16) -> String {
        let key = SigningKeyPair::from_secret_bytes(&[seed; 32]);
        RelayAddress::new(key.public().relay_fingerprint(), "127.0.0.1", port)
            .unwrap()
            .to_string()
    }

    #[test]
    fn never_contacts_another_relay_directly() {
        let mut profile = Profile::new(&mut rand::rng(), 0);
        let home = address(1, 4433);
        let other = address(2, 4434);
        // No home relay: nothing safe to do but wait.
        assert!(matches!(route(&profile, &other), Route::Refuse(_)));
        profile.home_relay = Some(home.clone());
        // The home relay itself: direct.
        assert!(matches!(route(&profile, &home), Route::Direct));
        // Another relay but no mailbox of ours at home to prove we are its
        // client: wait, never connect to the other relay (it would see our
        // address).
        assert!(matches!(route(&profile, &other), Route::Refuse(_)));
        assert!(matches!(
            route(&profile, "not an address"),
            Route::Refuse(_)
        ));
    }
}
