//! QUIC transport to an Enlace relay, with the relay's key pinned.
//!
//! [`RelayConnection::connect`] opens a QUIC connection (TLS 1.3 only, ALPN
//! [`enlace_protocol::ALPN`]) to a [`RelayAddress`], accepting the relay only
//! if its certificate carries the ed25519 key whose fingerprint the address
//! names *and* the handshake is signed by that key. It then says hello. Each
//! request runs on its own bidirectional stream; a subscription keeps its
//! stream open for pushed deliveries (see `docs/protocol.md section 7`).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use enlace_protocol::address::RelayAddress;
use enlace_protocol::command::{
    BINDING_EXPORTER_LABEL, ConnectionBinding, EndReason, Forward, ForwardId, ForwardState,
    RelayError, Request, Response,
};
use enlace_protocol::delivery::{DeliveryKey, DhKeyPair};
use enlace_protocol::envelope::{Envelope, MailboxId, MessageId};
use enlace_protocol::frame::{FrameReader, encode_frame};
use enlace_protocol::keys::{Fingerprint, PublicKey, SigningKeyPair};
use enlace_protocol::{ALPN, DecodeError};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use subtle::ConstantTimeEq;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keep-alive interval: below the relay's idle timeout, so a quiet
/// subscription stays open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Largest response frame read: a sealed large envelope plus headers.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The relay's host name did not resolve.
    #[error("cannot resolve relay host {0}")]
    Resolve(String),
    /// The connection could not be set up or was lost. A relay that fails
    /// the fingerprint or handshake-signature check ends up here too, as a
    /// TLS error.
    #[error("connection to the relay failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The relay did not prove it holds the pinned key.
    #[error("the relay is not the one in the address (fingerprint or key mismatch)")]
    Untrusted,
    /// The relay refused the connection (it is at its connection limit for
    /// this address or in total): try again later.
    #[error("the relay refused the connection (too many connections): try again later")]
    Refused,
    /// The attempt timed out.
    #[error("the relay did not answer in time")]
    Timeout,
    /// The relay refused the request.
    #[error("relay refused: {0}")]
    Relay(RelayError),
    /// The relay sent bytes that do not decode.
    #[error("malformed response from the relay: {0}")]
    Decode(#[from] DecodeError),
    /// A delivery did not open under the mailbox's delivery key.
    #[error("a delivery failed to decrypt")]
    Delivery,
    /// The relay answered something that does not fit the request.
    #[error("unexpected response from the relay")]
    Unexpected,
    /// A stream closed before the answer.
    #[error("the relay closed the stream")]
    StreamClosed,
    /// Local setup (socket, TLS configuration) failed.
    #[error("local setup failed: {0}")]
    Setup(String),
}

fn from_connection_error(e: quinn::ConnectionError) -> TransportError {
    match &e {
        // A TLS alert (QUIC CRYPTO_ERROR range 0x100..=0x1ff): the handshake
        // failed, which for a relay means the pin or the signature check.
        quinn::ConnectionError::TransportError(t)
            if (0x100..0x200).contains(&u64::from(t.code)) =>
        {
            TransportError::Untrusted
        }
        quinn::ConnectionError::ConnectionClosed(c)
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED =>
        {
            TransportError::Refused
        }
        _ => TransportError::Connection(e),
    }
}

/// Verifies a relay by its pinned key fingerprint (no CA, no names).
#[derive(Debug)]
pub struct PinnedRelayVerifier {
    pinned: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

/// DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The ed25519 key in a certificate, if that is what it holds.
pub fn certificate_key(cert: &CertificateDer<'_>) -> Option<PublicKey> {
    let parsed = rustls::server::ParsedCertificate::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = spki.as_ref().strip_prefix(&ED25519_SPKI_PREFIX)?;
    PublicKey::from_bytes(key.try_into().ok()?).ok()
}

impl PinnedRelayVerifier {
    /// A verifier for relays whose key has fingerprint `pinned`.
    pub fn new(pinned: Fingerprint, provider: &CryptoProvider) -> Self {
        Self {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for PinnedRelayVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = certificate_key(end_entity).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        let seen = key.relay_fingerprint();
        if bool::from(seen.0.ct_eq(&self.pinned.0)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Without this an impostor holding the real certificate but another
        // key would pass: the pin names the key, this proves possession.
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        vec![rustls::SignatureScheme::ED25519]
    }
}

/// The QUIC client configuration for a relay with fingerprint `pinned`.
pub fn client_config(pinned: Fingerprint) -> Result<quinn::ClientConfig, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedRelayVerifier::new(pinned, &provider));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| TransportError::Setup(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(0))
        .receive_window(quinn::VarInt::from_u32(4 * 1024 * 1024))
        .stream_receive_window(quinn::VarInt::from_u32(2 * 1024 * 1024));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

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
        let endpoint =
            quinn::Endpoint::client(bind).map_err(|e| TransportError::Setup(e.to_string()))?;
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
            .connect_with(client_config(fingerprint)?, remote, "enlace-relay")
            .map_err(|e| TransportError::Setup(e.to_string()))?;
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(_) => return Err(TransportError::Timeout),
            Ok(Err(e)) => return Err(from_connection_error(e)),
            Ok(Ok(c)) => c,
        };
        let mut binding = [0u8; 32];
        conn.export_keying_material(&mut binding, BINDING_EXPORTER_LABEL, b"")
            .map_err(|_| TransportError::Setup("TLS exporter unavailable".into()))?;
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
        let (mut send, recv) = self.conn.open_bi().await?;
        write_request(&mut send, request).await?;
        let _ = send.finish();
        let mut frames = ResponseFrames::new(recv);
        frames.next().await?.ok_or(TransportError::StreamClosed)
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
        write_request(
            &mut send,
            &Request::subscribe(receive_id, recipient, &self.binding),
        )
        .await?;
        let mut frames = ResponseFrames::new(recv);
        match frames.next().await?.ok_or(TransportError::StreamClosed)? {
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
    frames: ResponseFrames,
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
                .next()
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
        while let Some(resp) = self.frames.next().await? {
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
        write_request(&mut self.send, &req).await?;
        self.acks_pending += 1;
        Ok(())
    }
}

async fn write_request(
    send: &mut quinn::SendStream,
    request: &Request,
) -> Result<(), TransportError> {
    let mut frame = Vec::new();
    encode_frame(&request.to_bytes(), &mut frame)?;
    send.write_all(&frame)
        .await
        .map_err(|_| TransportError::StreamClosed)
}

/// Reads response frames from a stream.
struct ResponseFrames {
    recv: quinn::RecvStream,
    reader: FrameReader,
    buffered: Vec<u8>,
}

impl ResponseFrames {
    fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            reader: FrameReader::new(),
            buffered: Vec::new(),
        }
    }

    async fn next(&mut self) -> Result<Option<Response>, TransportError> {
        loop {
            if !self.buffered.is_empty() {
                let used = self.reader.handle_bytes(&self.buffered)?;
                self.buffered.drain(..used);
                if let Some(frame) = self.reader.poll_frame() {
                    return Ok(Some(Response::decode(&frame)?));
                }
                continue;
            }
            match self.recv.read_chunk(MAX_READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buffered.extend_from_slice(&chunk.bytes),
                Ok(None) if self.reader.is_idle() => return Ok(None),
                Ok(None) => return Err(DecodeError::Truncated.into()),
                Err(quinn::ReadError::ConnectionLost(e)) => return Err(e.into()),
                Err(_) => return Err(TransportError::StreamClosed),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::PrivatePkcs8KeyDer;

    use super::*;

    fn ed25519_cert(key: &SigningKeyPair) -> CertificateDer<'static> {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&*key.secret_bytes());
        let pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .unwrap();
        let params = rcgen::CertificateParams::new(vec!["enlace-relay".to_owned()]).unwrap();
        params.self_signed(&pair).unwrap().der().clone()
    }

    fn verify(verifier: &PinnedRelayVerifier, cert: &CertificateDer<'_>) -> bool {
        verifier
            .verify_server_cert(
                cert,
                &[],
                &ServerName::try_from("enlace-relay").unwrap(),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn pins_the_key_fingerprint() {
        let provider = rustls::crypto::ring::default_provider();
        let relay = SigningKeyPair::generate(&mut rand::rng());
        let cert = ed25519_cert(&relay);
        assert_eq!(certificate_key(&cert), Some(*relay.public()));
        let right = PinnedRelayVerifier::new(relay.public().relay_fingerprint(), &provider);
        assert!(verify(&right, &cert));
        // The identity fingerprint of the same key is a different pin.
        let wrong_role = PinnedRelayVerifier::new(relay.public().identity_fingerprint(), &provider);
        assert!(!verify(&wrong_role, &cert));
        let other = SigningKeyPair::generate(&mut rand::rng());
        let wrong = PinnedRelayVerifier::new(other.public().relay_fingerprint(), &provider);
        assert!(!verify(&wrong, &cert));
        assert_eq!(
            right.supported_verify_schemes(),
            vec![rustls::SignatureScheme::ED25519]
        );
    }

    #[test]
    fn refuses_non_ed25519_and_unparsable_certificates() {
        let provider = rustls::crypto::ring::default_provider();
        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["enlace-relay".to_owned()]).unwrap();
        let cert = params.self_signed(&p256).unwrap().der().clone();
        assert_eq!(certificate_key(&cert), None);
        let any = SigningKeyPair::generate(&mut rand::rng());
        let verifier = PinnedRelayVerifier::new(any.public().relay_fingerprint(), &provider);
        assert!(!verify(&verifier, &cert));
        assert!(!verify(&verifier, &CertificateDer::from(vec![0x30, 0x00])));
    }
}
