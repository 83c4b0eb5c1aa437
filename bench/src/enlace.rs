//! Enlace: each message is a real end-to-end message (a Double Ratchet
//! session set up with the real invitation handshake) in a real envelope
//! signed with the mailbox's sender key; the mailbox is secured, so the relay
//! verifies every signature. Subscribers open the relay's delivery sealing,
//! decrypt the session message, and ack (a signed recipient command).
//!
//! Transport is `enlace-client`'s, unchanged. Connections share client
//! endpoints (one UDP socket per [`PER_ENDPOINT`] connections), each bound
//! to its own loopback source address (127.1.x.y), because the relay limits
//! connections and mailbox creations per source address and the idle mode
//! holds thousands of clients of one machine.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use enlace_quic::{CreatedMailbox, RelayConnection, Subscription, SubscriptionEvent};
use enlace_protocol::address::RelayAddress;
use enlace_protocol::envelope::{CoarseTime, Envelope, MailboxId, MessageId};
use enlace_protocol::keys::SigningKeyPair;
use enlace_protocol::session::{self, PendingInvitation, ReplyAddress, Session};
use futures_util::StreamExt;
use rand::RngExt;

use crate::measure::Tracker;
use crate::workload::{self, Config, Pace, System};

/// Connections per client endpoint (source address): under the relay's
/// default per-address connection limit (64) and per-host mailbox-creation
/// burst (64).
const PER_ENDPOINT: usize = 48;
/// Mailboxes one connection may create at once (the relay's CREATE_BURST).
const CREATE_PER_CONNECTION: usize = 16;
/// Mailboxes one source address may create at once (HOST_CREATE_BURST).
const CREATE_PER_HOST: usize = 64;
/// Longest wait for one delivery before the run is declared stuck.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Enlace {
    address: RelayAddress,
    remote: SocketAddr,
    pool: Mutex<Pool>,
    setup_pool: Mutex<Pool>,
}

/// Client endpoints on source addresses 127.<octet>.x.y, `per` connections
/// each.
struct Pool {
    octet: u8,
    per: usize,
    endpoints: Vec<quinn::Endpoint>,
    handed_out: usize,
}

impl Pool {
    fn new(octet: u8, per: usize) -> Self {
        Self {
            octet,
            per,
            endpoints: Vec::new(),
            handed_out: 0,
        }
    }

    fn next(&mut self) -> anyhow::Result<quinn::Endpoint> {
        let k = self.handed_out / self.per;
        self.handed_out += 1;
        if let Some(e) = self.endpoints.get(k) {
            return Ok(e.clone());
        }
        let n = u8::try_from(k / 250).context("too many endpoints")?;
        let source = Ipv4Addr::new(127, self.octet, n, (k % 250) as u8 + 1);
        let endpoint = quinn::Endpoint::client(SocketAddr::from((source, 0)))
            .with_context(|| format!("cannot bind a UDP socket on {source}"))?;
        self.endpoints.push(endpoint.clone());
        Ok(endpoint)
    }
}

impl Enlace {
    pub fn new(target: &str) -> anyhow::Result<Self> {
        let address: RelayAddress = target
            .parse()
            .map_err(|e| anyhow!("--target is not an enlace:// relay address: {e}"))?;
        let ip: Ipv4Addr = address
            .host()
            .parse()
            .context("the relay address must name an IPv4 loopback address")?;
        if !ip.is_loopback() {
            bail!("the benchmark only targets loopback addresses, not {ip}");
        }
        Ok(Self {
            remote: SocketAddr::from((ip, address.port())),
            address,
            pool: Mutex::new(Pool::new(1, PER_ENDPOINT)),
            setup_pool: Mutex::new(Pool::new(2, CREATE_PER_HOST / CREATE_PER_CONNECTION)),
        })
    }

    fn endpoint(&self) -> anyhow::Result<quinn::Endpoint> {
        self.pool
            .lock()
            .map_err(|_| anyhow!("pool lock poisoned"))?
            .next()
    }

    fn setup_endpoint(&self) -> anyhow::Result<quinn::Endpoint> {
        self.setup_pool
            .lock()
            .map_err(|_| anyhow!("pool lock poisoned"))?
            .next()
    }

    async fn connect(&self) -> anyhow::Result<RelayConnection> {
        RelayConnection::connect_on(&self.endpoint()?, self.remote, *self.address.fingerprint())
            .await
            .context("cannot connect to the relay")
    }

    async fn pair(&self, plan: Vec<u64>, payload_len: usize) -> anyhow::Result<(Publisher, Sub)> {
        let conn = self.connect().await?;
        let recipient = SigningKeyPair::generate(&mut rand::rng());
        let mailbox = conn
            .create_mailbox(&recipient)
            .await
            .context("cannot create a mailbox")?;
        let sender = SigningKeyPair::generate(&mut rand::rng());
        conn.secure(mailbox.receive_id, *sender.public(), &recipient)
            .await
            .context("cannot secure the mailbox")?;
        let (session, envelopes) = prepare(&self.address, &mailbox, &sender, &plan, payload_len)?;
        let publisher = Publisher {
            conn: self.connect().await?,
            envelopes,
        };
        Ok((
            publisher,
            Sub {
                conn,
                recipient,
                mailbox,
                session,
            },
        ))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the invitation handshake between a fresh recipient and sender and
/// encrypts and signs every planned message. Returns the recipient's session.
fn prepare(
    relay: &RelayAddress,
    mailbox: &CreatedMailbox,
    sender: &SigningKeyPair,
    plan: &[u64],
    payload_len: usize,
) -> anyhow::Result<(Session, Vec<(u64, Envelope)>)> {
    let mut rng = rand::rng();
    let now = unix_now();
    let recipient_identity = SigningKeyPair::generate(&mut rng);
    let sender_identity = SigningKeyPair::generate(&mut rng);
    let pending = PendingInvitation::create(
        &mut rng,
        &recipient_identity,
        relay.clone(),
        mailbox.send_id,
        now + 86_400,
    );
    let reply = ReplyAddress {
        relay: relay.clone(),
        send_id: MailboxId(rng.random()),
    };
    let (mut sender_session, first) = session::accept(
        &mut rng,
        &sender_identity,
        pending.invitation(),
        &reply,
        sender.public(),
        b"bench",
        now,
    )?;
    let (recipient_session, _) = pending.complete(&mut rng, &recipient_identity, &first, now)?;
    let mut envelopes = Vec::with_capacity(plan.len());
    for &index in plan {
        let body = sender_session.encrypt(&mut rng, &workload::payload(index, payload_len))?;
        let envelope = Envelope::sign(
            sender,
            mailbox.send_id,
            MessageId(rng.random()),
            CoarseTime::from_unix_secs(now),
            &body,
        )?;
        envelopes.push((index, envelope));
    }
    Ok((recipient_session, envelopes))
}

pub struct Publisher {
    conn: RelayConnection,
    envelopes: Vec<(u64, Envelope)>,
}

pub struct Sub {
    conn: RelayConnection,
    recipient: SigningKeyPair,
    mailbox: CreatedMailbox,
    session: Session,
}

pub struct Live {
    conn: RelayConnection,
    subscription: Subscription,
    recipient: SigningKeyPair,
    session: Session,
}

impl System for Enlace {
    type Pub = Publisher;
    type Sub = Sub;
    type Live = Live;
    type Prepared = Vec<(SigningKeyPair, CreatedMailbox)>;
    type Idle = Vec<(RelayConnection, Subscription)>;

    async fn setup(
        &self,
        config: &Config,
        plans: Vec<Vec<u64>>,
    ) -> anyhow::Result<Vec<(Publisher, Sub)>> {
        let futures = plans
            .into_iter()
            .map(|plan| self.pair(plan, config.payload))
            .collect();
        workload::bounded(futures, 16).await
    }

    async fn publish(
        p: Publisher,
        pace: Pace,
        window: usize,
        tracker: Arc<Tracker>,
    ) -> anyhow::Result<()> {
        let conn = &p.conn;
        let tracker = &tracker;
        let mut sends = futures_util::stream::iter(p.envelopes.into_iter().enumerate())
            .map(|(k, (index, envelope))| async move {
                pace.wait(k).await;
                tracker.sent(index);
                conn.send(&envelope).await
            })
            .buffer_unordered(window);
        while let Some(r) = sends.next().await {
            r.context("the relay did not store an envelope")?;
        }
        drop(sends);
        p.conn.quic().close(quinn::VarInt::from_u32(0), b"done");
        Ok(())
    }

    async fn subscribe(sub: Sub) -> anyhow::Result<Live> {
        let subscription = sub
            .conn
            .subscribe(
                sub.mailbox.receive_id,
                &sub.recipient,
                sub.mailbox.delivery_key,
            )
            .await
            .context("cannot subscribe")?;
        Ok(Live {
            conn: sub.conn,
            subscription,
            recipient: sub.recipient,
            session: sub.session,
        })
    }

    async fn drain(mut live: Live, expect: usize, tracker: Arc<Tracker>) -> anyhow::Result<()> {
        for _ in 0..expect {
            let event = tokio::time::timeout(DELIVERY_TIMEOUT, live.subscription.next())
                .await
                .context("no delivery for 60 s")??;
            let envelope = match event {
                SubscriptionEvent::Envelope(e) => e,
                _ => bail!("the relay ended the subscription"),
            };
            let plaintext = live
                .session
                .decrypt(&mut rand::rng(), envelope.body())
                .context("a delivered message did not decrypt")?;
            let index = workload::payload_index(&plaintext).context("short message")?;
            if !tracker.delivered(index) {
                bail!("a delivered message carries an unknown index");
            }
            live.subscription
                .ack(envelope.message_id(), &live.recipient)
                .await
                .context("cannot ack")?;
        }
        // Returns once the relay has answered every ack.
        live.subscription
            .finish()
            .await
            .context("the relay refused an ack")?;
        live.conn.quic().close(quinn::VarInt::from_u32(0), b"done");
        Ok(())
    }

    async fn prepare_idle(&self, clients: usize) -> anyhow::Result<Self::Prepared> {
        // A connection may create CREATE_PER_CONNECTION mailboxes at once,
        // a source address CREATE_PER_HOST: setup connections come from
        // their own addresses (127.2.x.y), CREATE_PER_HOST / 16 per address.
        let futures = (0..clients.div_ceil(CREATE_PER_CONNECTION))
            .map(|g| async move {
                let n = CREATE_PER_CONNECTION.min(clients - g * CREATE_PER_CONNECTION);
                let conn = RelayConnection::connect_on(
                    &self.setup_endpoint()?,
                    self.remote,
                    *self.address.fingerprint(),
                )
                .await
                .context("cannot connect to the relay")?;
                let mut made = Vec::with_capacity(n);
                for _ in 0..n {
                    let recipient = SigningKeyPair::generate(&mut rand::rng());
                    let mailbox = conn
                        .create_mailbox(&recipient)
                        .await
                        .context("cannot create a mailbox")?;
                    made.push((recipient, mailbox));
                }
                conn.quic().close(quinn::VarInt::from_u32(0), b"done");
                Ok(made)
            })
            .collect();
        Ok(workload::bounded(futures, 16)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }

    async fn idle(&self, prepared: Self::Prepared) -> anyhow::Result<Self::Idle> {
        let futures = prepared
            .into_iter()
            .map(|(recipient, mailbox)| async move {
                let conn = self.connect().await?;
                let subscription = conn
                    .subscribe(mailbox.receive_id, &recipient, mailbox.delivery_key)
                    .await?;
                Ok((conn, subscription))
            })
            .collect();
        workload::bounded(futures, 64).await
    }

    async fn close_idle(idle: Self::Idle) {
        for (conn, _) in &idle {
            conn.quic().close(quinn::VarInt::from_u32(0), b"done");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
