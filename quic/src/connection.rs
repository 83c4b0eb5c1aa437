//! [`RelayConnection`]: an open connection to a relay whose key is pinned,
//! with one method per command, and [`Subscription`], the stream a relay
//! pushes a mailbox's envelopes on.
//!
//! [`RelayConnection::connect`] opens a QUIC connection (TLS 1.3 only, ALPN
//! [`enlace_protocol::ALPN`]) to a [`RelayAddress`], accepting the relay only
//! if its certificate carries the ed25519 key whose fingerprint the address
//! names *and* the handshake is signed by that key. It then says hello. Each
//! request runs on its own bidirectional stream; a subscription keeps its
//! stream open for pushed deliveries (`docs/protocol.md` section 7).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{
    BINDING_EXPORTER_LABEL, ConnectionBinding, EndReason, Forward, ForwardId, ForwardState,
    Request, Response,
};
use enlace_protocol::delivery::{DeliveryKey, DhKeyPair};
use enlace_protocol::envelope::{Envelope, MailboxId, MessageId};
use enlace_protocol::keys::{Fingerprint, PublicKey, SigningKeyPair};

use crate::config::{SERVER_NAME, SetupError, client_config};
use crate::error::TransportError;
use crate::frame::{FrameStream, exchange, send_request};

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A mailbox just created on a relay.
pub struct CreatedMailbox {
    /// The recipient's id (keep secret).
    pub receive_id: MailboxId,
    /// The id to give contacts.
    pub send_id: MailboxId,
    /// The key deliveries are sealed with.
    pub delivery_key: DeliveryKey,
}

impl fmt::Debug for CreatedMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CreatedMailbox(..)")
    }
}

/// What the home relay said about a forwarded send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardOutcome {
    /// The destination relay has it on disk.
    Stored,
    /// Durably queued at the home relay; ask [`RelayConnection::forward_status`]
    /// later.
    Queued,
}

/// A destination relay's forwarding key, checked against its pinned
/// fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedRelayKey {
    /// The X25519 key sends are sealed to.
    pub forward_dh: [u8; 32],
    /// Unix seconds after which it must be fetched again.
    pub expires: u64,
}

/// An open, verified connection to a relay that has agreed on the version.
#[derive(Debug)]
pub struct RelayConnection {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    binding: ConnectionBinding,
}

impl RelayConnection {
    /// Connects to `address`, pins its key, and says hello.
    pub async fn connect(address: &RelayAddress) -> Result<Self, TransportError> {
        let host = address.host().trim_start_matches('[').trim_end_matches(']');
        let remote: SocketAddr = tokio::net::lookup_host((host, address.port()))
            .await
            .map_err(|_| TransportError::Resolve(address.host().to_owned()))?
            .next()
            .ok_or_else(|| TransportError::Resolve(address.host().to_owned()))?;
        Self::connect_to(remote, *address.fingerprint()).await
    }

    /// Connects to a socket address, pinning `fingerprint`.
    pub async fn connect_to(
        remote: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Result<Self, TransportError> {
        let bind: SocketAddr = if remote.is_ipv6() {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(bind).map_err(SetupError::from)?;
        Self::connect_on(&endpoint, remote, fingerprint).await
    }

    /// Connects over an existing client endpoint (one UDP socket shared by
    /// many connections, as a load generator holding thousands does),
    /// pinning `fingerprint`. [`RelayConnection::close`] then waits for the
    /// whole endpoint to go idle.
    pub async fn connect_on(
        endpoint: &quinn::Endpoint,
        remote: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Result<Self, TransportError> {
        let endpoint = endpoint.clone();
        // The name is not checked (the key is pinned) and reveals nothing.
        let connecting = endpoint
            .connect_with(client_config(fingerprint)?, remote, SERVER_NAME)
            .map_err(SetupError::from)?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => return Err(TransportError::Timeout),
            Ok(Err(e)) => return Err(TransportError::from_handshake(e)),
            Ok(Ok(c)) => c,
        };
        let mut binding = [0u8; 32];
        conn.export_keying_material(&mut binding, BINDING_EXPORTER_LABEL, b"")
            .map_err(|_| SetupError::Exporter)?;
        let this = Self {
            endpoint,
            conn,
            binding: ConnectionBinding(binding),
        };
        match this.request(&Request::hello()).await? {
            Response::Hello { .. } => Ok(this),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// The local UDP address this connection leaves from (for tests that
    /// check which addresses a relay sees).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.local_addr().ok()
    }

    /// Asks this (home) relay for `destination`'s signed forwarding key; the
    /// home relay fetches it, so this client never contacts the destination.
    /// A bundle that does not verify against the destination's pinned
    /// fingerprint at `now` is [`TransportError::Untrusted`].
    pub async fn fetch_relay_key(
        &self,
        destination: &RelayAddress,
        now: u64,
    ) -> Result<VerifiedRelayKey, TransportError> {
        let request = Request::FetchRelayKey {
            destination: destination.clone(),
        };
        match self.request(&request).await? {
            Response::RelayKey(key) => {
                let forward_dh = key
                    .verify(destination.fingerprint(), now)
                    .map_err(|_| TransportError::Untrusted)?;
                Ok(VerifiedRelayKey {
                    forward_dh,
                    expires: key.expires(),
                })
            }
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// Seals `envelope` to `destination` and asks this (home) relay to
    /// forward it. Retrying with the same `forward_id` never queues twice.
    pub async fn forward(
        &self,
        destination: &RelayAddress,
        key: &VerifiedRelayKey,
        forward_id: ForwardId,
        envelope: &Envelope,
    ) -> Result<ForwardOutcome, TransportError> {
        let sealed = enlace_protocol::forward::seal_send(
            &mut rand::rng(),
            destination.fingerprint(),
            &key.forward_dh,
            envelope,
        )
        .map_err(|_| TransportError::Untrusted)?;
        let request = Request::Forward(Forward {
            destination: destination.clone(),
            forward_id,
            sealed,
        });
        match self.request(&request).await? {
            Response::Stored => Ok(ForwardOutcome::Stored),
            Response::Queued => Ok(ForwardOutcome::Queued),
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// What became of earlier forwards (at most
    /// [`enlace_protocol::limits::MAX_FORWARD_STATUS_IDS`] per call), in the
    /// order asked.
    pub async fn forward_status(
        &self,
        ids: &[ForwardId],
    ) -> Result<Vec<ForwardState>, TransportError> {
        let request = Request::ForwardStatus { ids: ids.to_vec() };
        match self.request(&request).await? {
            Response::ForwardStatus(states) if states.len() == ids.len() => Ok(states),
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// The binding recipient commands on this connection are signed with.
    pub fn binding(&self) -> &ConnectionBinding {
        &self.binding
    }

    /// The underlying QUIC connection (for tests and diagnostics).
    pub fn quic(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends one request on a new stream and reads its one response.
    /// Relay errors come back as `Ok(Response::Error(_))`.
    pub async fn request(&self, request: &Request) -> Result<Response, TransportError> {
        exchange(&self.conn, request).await
    }

    async fn expect_ok(&self, request: &Request) -> Result<(), TransportError> {
        match self.request(request).await? {
            Response::Ok => Ok(()),
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// Creates a mailbox owned by `recipient` (a fresh per-mailbox key).
    pub async fn create_mailbox(
        &self,
        recipient: &SigningKeyPair,
    ) -> Result<CreatedMailbox, TransportError> {
        let dh = DhKeyPair::generate(&mut rand::rng());
        let request = Request::create_mailbox(recipient, *dh.public(), &self.binding);
        match self.request(&request).await? {
            Response::MailboxCreated {
                receive_id,
                send_id,
                relay_dh,
            } => Ok(CreatedMailbox {
                receive_id,
                send_id,
                delivery_key: DeliveryKey::for_recipient(&dh, &relay_dh)
                    .map_err(|_| TransportError::Delivery)?,
            }),
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// Secures a mailbox: from now on only `sender_key` may deposit.
    pub async fn secure(
        &self,
        receive_id: MailboxId,
        sender_key: PublicKey,
        recipient: &SigningKeyPair,
    ) -> Result<(), TransportError> {
        self.expect_ok(&Request::secure(
            receive_id,
            sender_key,
            recipient,
            &self.binding,
        ))
        .await
    }

    /// Deposits an envelope; returns once the relay has it on disk.
    pub async fn send(&self, envelope: &Envelope) -> Result<(), TransportError> {
        match self.request(&Request::Send(envelope.clone())).await? {
            Response::Stored => Ok(()),
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// Acknowledges (deletes) a delivered envelope, on its own stream.
    pub async fn ack(
        &self,
        receive_id: MailboxId,
        message_id: MessageId,
        recipient: &SigningKeyPair,
    ) -> Result<(), TransportError> {
        self.expect_ok(&Request::ack(
            receive_id,
            message_id,
            recipient,
            &self.binding,
        ))
        .await
    }

    /// Deletes a mailbox and everything in it.
    pub async fn delete(
        &self,
        receive_id: MailboxId,
        recipient: &SigningKeyPair,
    ) -> Result<(), TransportError> {
        self.expect_ok(&Request::delete(receive_id, recipient, &self.binding))
            .await
    }

    /// Subscribes to a mailbox: stored and new envelopes are pushed on the
    /// returned subscription until another connection takes over.
    pub async fn subscribe(
        &self,
        receive_id: MailboxId,
        recipient: &SigningKeyPair,
        delivery_key: DeliveryKey,
    ) -> Result<Subscription, TransportError> {
        let (mut send, recv) = self.conn.open_bi().await?;
        send_request(
            &mut send,
            &Request::subscribe(receive_id, recipient, &self.binding),
        )
        .await?;
        let mut frames = FrameStream::new(recv);
        match frames
            .next_response()
            .await?
            .ok_or(TransportError::StreamClosed)?
        {
            Response::Ok => Ok(Subscription {
                send,
                frames,
                receive_id,
                delivery_key,
                binding: self.binding,
                acks_pending: 0,
            }),
            Response::Error(e) => Err(TransportError::Relay(e)),
            _ => Err(TransportError::Unexpected),
        }
    }

    /// Closes the connection and waits until the relay has been told.
    pub async fn close(self) {
        self.conn.close(quinn::VarInt::from_u32(0), b"bye");
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
    }
}

/// What a subscription yields.
#[derive(Debug)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// An envelope, opened from its delivery sealing (not yet verified
    /// end to end: that is the session layer's job).
    Envelope(Envelope),
    /// The relay ended the subscription (another connection took over, or
    /// the mailbox was deleted).
    Ended(EndReason),
}

/// An active subscription to one mailbox.
pub struct Subscription {
    send: quinn::SendStream,
    frames: FrameStream,
    receive_id: MailboxId,
    delivery_key: DeliveryKey,
    binding: ConnectionBinding,
    acks_pending: usize,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("acks_pending", &self.acks_pending)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next delivered envelope or the end of the subscription. Answers
    /// to acks sent with [`Subscription::ack`] are consumed here; a refused
    /// ack is returned as an error.
    pub async fn next(&mut self) -> Result<SubscriptionEvent, TransportError> {
        loop {
            match self
                .frames
                .next_response()
                .await?
                .ok_or(TransportError::StreamClosed)?
            {
                Response::Deliver(sealed) => {
                    let env = self
                        .delivery_key
                        .open(&self.receive_id, &sealed)
                        .map_err(|_| TransportError::Delivery)?;
                    return Ok(SubscriptionEvent::Envelope(env));
                }
                Response::SubscriptionEnded(reason) => {
                    return Ok(SubscriptionEvent::Ended(reason));
                }
                Response::Ok if self.acks_pending > 0 => self.acks_pending -= 1,
                Response::Error(e) if self.acks_pending > 0 => {
                    self.acks_pending -= 1;
                    return Err(TransportError::Relay(e));
                }
                Response::Error(e) => return Err(TransportError::Relay(e)),
                _ => return Err(TransportError::Unexpected),
            }
        }
    }

    /// Ends the subscription cleanly: finishes the stream, then reads the
    /// relay's remaining answers until it finishes too, so every ack sent
    /// with [`Subscription::ack`] has been processed when this returns.
    /// Deliveries read here are dropped (they stay unacked and come again).
    pub async fn finish(mut self) -> Result<(), TransportError> {
        let _ = self.send.finish();
        let mut refused = None;
        while let Some(resp) = self.frames.next_response().await? {
            match resp {
                Response::Ok if self.acks_pending > 0 => self.acks_pending -= 1,
                Response::Error(e) if self.acks_pending > 0 => {
                    self.acks_pending -= 1;
                    refused.get_or_insert(e);
                }
                Response::Deliver(_) | Response::SubscriptionEnded(_) => {}
                _ => return Err(TransportError::Unexpected),
            }
        }
        match refused {
            Some(e) => Err(TransportError::Relay(e)),
            None => Ok(()),
        }
    }

    /// Acks an envelope on the subscription stream (pipelined: the relay's
    /// answer is read by [`Subscription::next`]). The relay deletes it and
    /// frees a slot in the delivery window.
    pub async fn ack(
        &mut self,
        message_id: MessageId,
        recipient: &SigningKeyPair,
    ) -> Result<(), TransportError> {
        let req = Request::ack(self.receive_id, message_id, recipient, &self.binding);
        send_request(&mut self.send, &req).await?;
        self.acks_pending += 1;
        Ok(())
    }
}
