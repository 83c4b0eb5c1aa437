//! Invitations over the network: a mailbox on the home relay and an
//! invitation to it (`enlace invite`, and introductions in a nucleus), and
//! accepting one (`enlace accept`, and introductions made to us).

use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::{CoarseTime, Envelope};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::{
    self, Invitation as InvitationCode, PendingInvitation, ReplyAddress,
};
use enlace_quic::{CreatedMailbox, RelayConnection};

use super::flush::flush_outbox;
use super::relays::{Relays, refused};
use super::report::{Event, Report};
use crate::domain::contacts::Accepted;
use crate::domain::message::AcceptPayload;
use crate::error::Error;
use crate::profile::store::Store;
use crate::profile::{
    Contact, EnvelopeId, Invitation, InvitationId, LocalMailbox, Profile, ReceiveId, RemoteMailbox,
    SendId, StoredRelay, Verification,
};
use crate::time;

/// How long an invitation stays valid: a week, long enough to meet in
/// person, short enough that a lost code stops mattering.
pub(crate) const INVITATION_LIFETIME_SECS: u64 = 7 * 86_400;

/// A new mailbox on the home relay and a pending invitation to it: what
/// `enlace invite` and a nucleus introduction both make.
pub(crate) struct FreshInvitation {
    relay: RelayAddress,
    recipient: SigningKeyPair,
    created: CreatedMailbox,
    /// The invitation, with its secret half.
    pub(crate) pending: PendingInvitation,
    /// When it was made.
    pub(crate) now: u64,
}

impl FreshInvitation {
    /// Creates the mailbox on `profile`'s home relay.
    pub(crate) async fn create(relays: &mut Relays, profile: &Profile) -> Result<Self, Error> {
        let relay = profile.home()?.clone();
        let identity = profile.identity_key_pair();
        let conn = relays.get(&relay).await?;
        let recipient = SigningKeyPair::generate(&mut rand::rng());
        let created = conn
            .create_mailbox(&recipient)
            .await
            .map_err(|e| refused(&e))?;
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
    pub(crate) fn record(&self, id: InvitationId, name: Option<String>) -> Invitation {
        Invitation {
            id,
            name,
            mailbox: LocalMailbox {
                relay: StoredRelay::new(self.relay.clone()),
                receive_id: ReceiveId(self.created.receive_id.0),
                send_id: SendId(self.created.send_id.0),
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

/// An invitation made by `enlace invite`, to show.
pub(crate) struct Made {
    /// The text code.
    pub(crate) code: String,
    /// The code as a terminal QR.
    pub(crate) qr: String,
    /// When it expires (Unix seconds).
    pub(crate) expires_at: u64,
}

/// `enlace invite`: a mailbox on the home relay and an invitation to it,
/// kept in the profile under `name` (if given).
pub(crate) async fn invite(store: &Store, name: Option<String>) -> Result<Made, Error> {
    let profile = store.load()?;
    let mut relays = Relays::default();
    let fresh = FreshInvitation::create(&mut relays, &profile).await?;
    drop(profile);
    let code = fresh.pending.invitation().to_text();
    let qr = fresh.pending.invitation().to_qr();
    let expires_at = fresh.now + INVITATION_LIFETIME_SECS;
    store.update(|p| {
        let id = p.allocate_invitation_id();
        p.invitations.push(fresh.record(id, name));
        Ok(())
    })?;
    relays.close().await;
    Ok(Made {
        code,
        qr,
        expires_at,
    })
}

/// `enlace accept`: the handshake, saved as the contact `name`; the first
/// envelope goes to the inviter's mailbox through the outbox.
pub(crate) async fn accept(
    store: &Store,
    report: &mut dyn Report,
    invitation: &InvitationCode,
    name: &str,
    now: u64,
) -> Result<(), Error> {
    let profile = store.load()?;
    let home = profile.home()?.clone();
    let identity = profile.identity_key_pair();
    if invitation.identity() == identity.public() {
        return Err(Error::InvalidInvitation("it is your own".into()));
    }
    drop(profile);

    let mut relays = Relays::default();
    let conn = relays.get(&home).await?;
    let accepted = accept_on_home(conn, &identity, invitation, &home, now).await?;

    let state = store.update(|p| {
        accepted.save(p, name, invitation.identity(), now);
        Ok(p.contact(name).map(Contact::verification))
    })?;
    report.report(Event::Contact {
        name,
        state: state.unwrap_or(Verification::Unverified),
    })?;
    let result = flush_outbox(store, &mut relays).await;
    relays.close().await;
    result
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
    let recipient = SigningKeyPair::generate(&mut rand::rng());
    let created = conn
        .create_mailbox(&recipient)
        .await
        .map_err(|e| refused(&e))?;
    // The key the inviter will sign with into our mailbox: ours to make,
    // so the mailbox is secured before anyone knows it exists.
    let inviter_sender = SigningKeyPair::generate(&mut rand::rng());
    conn.secure(created.receive_id, *inviter_sender.public(), &recipient)
        .await
        .map_err(|e| refused(&e))?;
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
    let envelope_id = EnvelopeId(envelope_id);
    let envelope = Envelope::sign(
        &sender,
        invitation.send_id(),
        envelope_id.message_id(),
        CoarseTime::from_unix_secs(now),
        &first,
    )
    .map_err(|_| Error::Encode)?;
    Ok(Accepted {
        session,
        send_to: RemoteMailbox {
            relay: StoredRelay::new(invitation.relay().clone()),
            send_id: SendId(invitation.send_id().0),
            sender_key: *sender.secret_bytes(),
        },
        receive_on: LocalMailbox {
            relay: StoredRelay::new(home.clone()),
            receive_id: ReceiveId(created.receive_id.0),
            send_id: SendId(created.send_id.0),
            recipient_key: *recipient.secret_bytes(),
            delivery_key: *created.delivery_key.to_bytes(),
            contact_sender_key: Some(*inviter_sender.public().as_bytes()),
            secured: true,
        },
        envelope_id,
        envelope: envelope.as_bytes().to_vec(),
    })
}
