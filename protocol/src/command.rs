//! The client-relay command set (the mailbox model of `docs/protocol.md`).
//!
//! Every message is one frame payload: a tag byte, then fixed-size fields.
//! [`Request`]s go from client to relay, [`Response`]s from relay to client.
//!
//! Recipient commands (create, secure, subscribe, ack, delete) are
//! [`Signed`] with the mailbox's recipient key over
//! `"enlace/v1/recipient-command" || 0x00 || binding || command bytes`, where
//! `binding` is a [`ConnectionBinding`] supplied by the transport (for QUIC, a
//! TLS exporter value). A captured command therefore does not verify on any
//! other connection.
//!
//! Relay-to-relay forwarding uses tags 0x10..=0x1f (requests) and
//! 0x46..=0x48 (responses); see [`crate::forward`] for the sealing. Both
//! enums are `#[non_exhaustive]`.

use std::fmt;

use crate::address::RelayAddress;
use crate::codec::Reader;
use crate::delivery::{MAX_SEALED_LEN, SEAL_NONCE_LEN, SEAL_TAG_LEN};
use crate::envelope::{Envelope, MailboxId, MessageId};
use crate::forward::{RelayKey, is_sealed_len};
use crate::keys::{PublicKey, SIGNATURE_LEN, Signature, SigningKeyPair, labels};
use crate::limits::{ENVELOPE_OVERHEAD, MAX_FORWARD_STATUS_IDS};
use crate::{DecodeError, Error, PROTOCOL_VERSION};

/// Request tags.
mod tag {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const CREATE: u8 = 0x02;
    pub(super) const SECURE: u8 = 0x03;
    pub(super) const SEND: u8 = 0x04;
    pub(super) const SUBSCRIBE: u8 = 0x05;
    pub(super) const ACK: u8 = 0x06;
    pub(super) const DELETE: u8 = 0x07;
    pub(super) const FETCH_RELAY_KEY: u8 = 0x10;
    pub(super) const FORWARD: u8 = 0x11;
    pub(super) const RELAY_DELIVER: u8 = 0x12;
    pub(super) const FORWARD_STATUS: u8 = 0x13;

    pub(super) const OK: u8 = 0x40;
    pub(super) const HELLO_OK: u8 = 0x41;
    pub(super) const CREATED: u8 = 0x42;
    pub(super) const STORED: u8 = 0x43;
    pub(super) const DELIVER: u8 = 0x44;
    pub(super) const ENDED: u8 = 0x45;
    pub(super) const RELAY_KEY: u8 = 0x46;
    pub(super) const QUEUED: u8 = 0x47;
    pub(super) const FORWARD_STATUS_OK: u8 = 0x48;
    pub(super) const ERROR: u8 = 0x7f;
}

/// A 32-byte value both ends of one connection know and no one else can
/// choose: for QUIC, the TLS exporter output for label
/// `"EXPORTER-enlace-v1-connection-binding"` with an empty context.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBinding(pub [u8; 32]);

impl fmt::Debug for ConnectionBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionBinding(..)")
    }
}

/// The TLS exporter label a QUIC transport uses for [`ConnectionBinding`].
pub const BINDING_EXPORTER_LABEL: &[u8] = b"EXPORTER-enlace-v1-connection-binding";

/// A recipient command with its signature and the exact bytes it covers.
///
/// The command's fields can be read before verification (the relay needs the
/// receive id to find the key), but nothing should act on them until
/// [`Signed::verify`] succeeds.
#[derive(Clone, PartialEq, Eq)]
pub struct Signed<T> {
    command: T,
    /// Tag and fields, exactly as received or encoded.
    signed: Vec<u8>,
    signature: Signature,
}

impl<T> Signed<T> {
    /// The command, not yet verified.
    pub fn unverified(&self) -> &T {
        &self.command
    }

    /// Verifies the signature for this connection and returns the command.
    pub fn verify(&self, binding: &ConnectionBinding, key: &PublicKey) -> Result<&T, Error> {
        key.verify_parts(
            labels::RECIPIENT_COMMAND,
            &[&binding.0, &self.signed],
            &self.signature,
        )?;
        Ok(&self.command)
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.signed);
        out.extend_from_slice(&self.signature.0);
    }
}

impl<T: fmt::Debug> fmt::Debug for Signed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Signed").field(&self.command).finish()
    }
}

/// Creates a mailbox owned by `recipient_key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateMailbox {
    /// The per-mailbox recipient key that signs later commands (and this one,
    /// proving possession).
    pub recipient_key: PublicKey,
    /// The recipient's X25519 key for the delivery key (see [`crate::delivery`]).
    pub recipient_dh: [u8; 32],
}

/// Registers the sender key: from now on only envelopes it signed are accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secure {
    /// The mailbox, by receive id.
    pub receive_id: MailboxId,
    /// The per-mailbox sender key.
    pub sender_key: PublicKey,
}

/// Starts delivery of the mailbox's envelopes on this stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// The mailbox, by receive id.
    pub receive_id: MailboxId,
}

/// Acknowledges (and so deletes) one delivered envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The mailbox, by receive id.
    pub receive_id: MailboxId,
    /// The envelope's message id.
    pub message_id: MessageId,
}

/// Deletes the mailbox and everything in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete {
    /// The mailbox, by receive id.
    pub receive_id: MailboxId,
}

/// Bytes of a [`ForwardId`].
pub const FORWARD_ID_LEN: usize = 16;

/// A random id the client picks for one forwarded send, to ask its home
/// relay later what became of it (and to make a retried forward idempotent).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForwardId(pub [u8; FORWARD_ID_LEN]);

impl fmt::Debug for ForwardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ForwardId(..)")
    }
}

/// Asks the home relay to carry a sealed send to another relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The destination relay (its fingerprint is pinned when connecting).
    pub destination: RelayAddress,
    /// The client's id for this forward.
    pub forward_id: ForwardId,
    /// A `Send` sealed to the destination ([`crate::forward::seal_send`]).
    pub sealed: Vec<u8>,
}

/// What became of a forwarded send, as the home relay knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardState {
    /// No such forward (never seen, or its record expired).
    Unknown,
    /// Durably queued at the home relay, not yet accepted by the destination.
    Queued,
    /// The destination answered stored.
    Stored,
    /// Its TTL passed before the destination accepted it.
    Expired,
    /// The destination refused it with this error code.
    Refused(u16),
}

impl ForwardState {
    fn encode(self, out: &mut Vec<u8>) {
        let (state, code) = match self {
            Self::Unknown => (0u8, 0u16),
            Self::Queued => (1, 0),
            Self::Stored => (2, 0),
            Self::Expired => (3, 0),
            Self::Refused(c) => (4, c),
        };
        out.push(state);
        out.extend_from_slice(&code.to_be_bytes());
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let state = r.u8()?;
        let code = r.u16()?;
        Ok(match (state, code) {
            (0, 0) => Self::Unknown,
            (1, 0) => Self::Queued,
            (2, 0) => Self::Stored,
            (3, 0) => Self::Expired,
            (4, c) if c != 0 => Self::Refused(c),
            _ => return Err(DecodeError::InvalidField("forward state")),
        })
    }
}

/// A client-to-relay message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// First message of a connection: the versions the client speaks.
    Hello {
        /// Lowest supported version.
        min_version: u16,
        /// Highest supported version.
        max_version: u16,
    },
    /// Create a mailbox.
    CreateMailbox(Signed<CreateMailbox>),
    /// Secure a mailbox with the sender key.
    Secure(Signed<Secure>),
    /// Deposit an envelope (addressed by its send id).
    Send(Envelope),
    /// Subscribe to a mailbox.
    Subscribe(Signed<Subscribe>),
    /// Acknowledge a delivered envelope.
    Ack(Signed<Ack>),
    /// Delete a mailbox.
    Delete(Signed<Delete>),
    /// Ask for a relay's signed forwarding key: this relay's own if the
    /// fingerprint is its own, otherwise (for its own clients) the
    /// destination's, fetched over a relay-to-relay connection.
    FetchRelayKey {
        /// The relay whose key is wanted.
        destination: RelayAddress,
    },
    /// Forward a sealed send to another relay (own clients only).
    Forward(Forward),
    /// A relay delivering a forwarded, sealed send to this relay.
    RelayDeliver {
        /// A `Send` sealed to this relay.
        sealed: Vec<u8>,
    },
    /// Ask what became of earlier forwards (own clients only).
    ForwardStatus {
        /// 1 to [`MAX_FORWARD_STATUS_IDS`] forward ids.
        ids: Vec<ForwardId>,
    },
}

impl Request {
    /// A hello for the versions this crate speaks.
    pub fn hello() -> Self {
        Self::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
        }
    }

    /// A signed create-mailbox command.
    pub fn create_mailbox(
        recipient: &SigningKeyPair,
        recipient_dh: [u8; 32],
        binding: &ConnectionBinding,
    ) -> Self {
        let mut bytes = vec![tag::CREATE];
        bytes.extend_from_slice(recipient.public().as_bytes());
        bytes.extend_from_slice(&recipient_dh);
        let command = CreateMailbox {
            recipient_key: *recipient.public(),
            recipient_dh,
        };
        Self::CreateMailbox(sign(command, bytes, recipient, binding))
    }

    /// A signed secure command.
    pub fn secure(
        receive_id: MailboxId,
        sender_key: PublicKey,
        recipient: &SigningKeyPair,
        binding: &ConnectionBinding,
    ) -> Self {
        let mut bytes = vec![tag::SECURE];
        bytes.extend_from_slice(&receive_id.0);
        bytes.extend_from_slice(sender_key.as_bytes());
        Self::Secure(sign(
            Secure {
                receive_id,
                sender_key,
            },
            bytes,
            recipient,
            binding,
        ))
    }

    /// A signed subscribe command.
    pub fn subscribe(
        receive_id: MailboxId,
        recipient: &SigningKeyPair,
        binding: &ConnectionBinding,
    ) -> Self {
        let mut bytes = vec![tag::SUBSCRIBE];
        bytes.extend_from_slice(&receive_id.0);
        Self::Subscribe(sign(Subscribe { receive_id }, bytes, recipient, binding))
    }

    /// A signed ack command.
    pub fn ack(
        receive_id: MailboxId,
        message_id: MessageId,
        recipient: &SigningKeyPair,
        binding: &ConnectionBinding,
    ) -> Self {
        let mut bytes = vec![tag::ACK];
        bytes.extend_from_slice(&receive_id.0);
        bytes.extend_from_slice(&message_id.0);
        Self::Ack(sign(
            Ack {
                receive_id,
                message_id,
            },
            bytes,
            recipient,
            binding,
        ))
    }

    /// A signed delete command.
    pub fn delete(
        receive_id: MailboxId,
        recipient: &SigningKeyPair,
        binding: &ConnectionBinding,
    ) -> Self {
        let mut bytes = vec![tag::DELETE];
        bytes.extend_from_slice(&receive_id.0);
        Self::Delete(sign(Delete { receive_id }, bytes, recipient, binding))
    }

    /// Appends the frame payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Hello {
                min_version,
                max_version,
            } => {
                out.push(tag::HELLO);
                out.extend_from_slice(&min_version.to_be_bytes());
                out.extend_from_slice(&max_version.to_be_bytes());
            }
            Self::CreateMailbox(s) => s.encode(out),
            Self::Secure(s) => s.encode(out),
            Self::Send(env) => {
                out.push(tag::SEND);
                out.extend_from_slice(env.as_bytes());
            }
            Self::Subscribe(s) => s.encode(out),
            Self::Ack(s) => s.encode(out),
            Self::Delete(s) => s.encode(out),
            Self::FetchRelayKey { destination } => {
                out.push(tag::FETCH_RELAY_KEY);
                destination.encode(out);
            }
            Self::Forward(f) => {
                out.push(tag::FORWARD);
                f.destination.encode(out);
                out.extend_from_slice(&f.forward_id.0);
                out.extend_from_slice(&f.sealed);
            }
            Self::RelayDeliver { sealed } => {
                out.push(tag::RELAY_DELIVER);
                out.extend_from_slice(sealed);
            }
            Self::ForwardStatus { ids } => {
                out.push(tag::FORWARD_STATUS);
                out.push(ids.len() as u8);
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
        }
    }

    /// The frame payload as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one frame payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let request = match r.u8()? {
            tag::HELLO => Self::Hello {
                min_version: r.u16()?,
                max_version: r.u16()?,
            },
            tag::CREATE => {
                let recipient_key = PublicKey::from_bytes(&r.array()?)?;
                let recipient_dh = r.array()?;
                Self::CreateMailbox(signed_tail(
                    CreateMailbox {
                        recipient_key,
                        recipient_dh,
                    },
                    payload,
                    &mut r,
                )?)
            }
            tag::SECURE => {
                let receive_id = MailboxId(r.array()?);
                let sender_key = PublicKey::from_bytes(&r.array()?)?;
                Self::Secure(signed_tail(
                    Secure {
                        receive_id,
                        sender_key,
                    },
                    payload,
                    &mut r,
                )?)
            }
            tag::SEND => Self::Send(Envelope::decode_from(&mut r)?),
            tag::SUBSCRIBE => {
                let receive_id = MailboxId(r.array()?);
                Self::Subscribe(signed_tail(Subscribe { receive_id }, payload, &mut r)?)
            }
            tag::ACK => {
                let receive_id = MailboxId(r.array()?);
                let message_id = MessageId(r.array()?);
                Self::Ack(signed_tail(
                    Ack {
                        receive_id,
                        message_id,
                    },
                    payload,
                    &mut r,
                )?)
            }
            tag::DELETE => {
                let receive_id = MailboxId(r.array()?);
                Self::Delete(signed_tail(Delete { receive_id }, payload, &mut r)?)
            }
            tag::FETCH_RELAY_KEY => Self::FetchRelayKey {
                destination: RelayAddress::decode_from(&mut r)?,
            },
            tag::FORWARD => {
                let destination = RelayAddress::decode_from(&mut r)?;
                let forward_id = ForwardId(r.array()?);
                Self::Forward(Forward {
                    destination,
                    forward_id,
                    sealed: sealed_rest(&mut r)?,
                })
            }
            tag::RELAY_DELIVER => Self::RelayDeliver {
                sealed: sealed_rest(&mut r)?,
            },
            tag::FORWARD_STATUS => {
                let n = usize::from(r.u8()?);
                if n == 0 || n > MAX_FORWARD_STATUS_IDS {
                    return Err(DecodeError::InvalidField("forward id count"));
                }
                let mut ids = Vec::with_capacity(n);
                for _ in 0..n {
                    ids.push(ForwardId(r.array()?));
                }
                Self::ForwardStatus { ids }
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(request)
    }
}

/// The rest of a frame as a sealed forward: one of the fixed lengths.
fn sealed_rest(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let sealed = r.rest();
    if !is_sealed_len(sealed.len()) {
        return Err(DecodeError::InvalidField("sealed forward length"));
    }
    Ok(sealed.to_vec())
}

fn sign<T>(
    command: T,
    signed: Vec<u8>,
    key: &SigningKeyPair,
    binding: &ConnectionBinding,
) -> Signed<T> {
    let signature = key.sign_parts(labels::RECIPIENT_COMMAND, &[&binding.0, &signed]);
    Signed {
        command,
        signed,
        signature,
    }
}

/// Reads the trailing signature and keeps the bytes before it, as received.
fn signed_tail<T>(
    command: T,
    payload: &[u8],
    r: &mut Reader<'_>,
) -> Result<Signed<T>, DecodeError> {
    let signed_len = payload.len() - r.remaining();
    let signed = payload
        .get(..signed_len)
        .ok_or(DecodeError::Truncated)?
        .to_vec();
    let signature = Signature(r.array::<SIGNATURE_LEN>()?);
    Ok(Signed {
        command,
        signed,
        signature,
    })
}

/// Why a subscription ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Another connection subscribed to the same mailbox and took over.
    TakenOver,
    /// The mailbox was deleted.
    Deleted,
    /// A reason code from a newer relay.
    Other(u8),
}

impl EndReason {
    fn code(self) -> u8 {
        match self {
            Self::TakenOver => 1,
            Self::Deleted => 2,
            Self::Other(c) => c,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::TakenOver,
            2 => Self::Deleted,
            c => Self::Other(c),
        }
    }
}

/// Declares [`RelayError`] from one table: each row gives the wire code,
/// the name `docs/protocol.md` section 5.3 uses, the variant, its fields
/// (integer details, zero when only the code is known) and its message.
/// `code`, `from_code`, `name` and [`RelayError::ALL`] are generated from
/// the rows, so a code is written exactly once.
macro_rules! relay_errors {
    ($(
        $(#[doc = $doc:literal])*
        $code:literal $name:literal $variant:ident $({ $($(#[doc = $fdoc:literal])* $field:ident: $ty:ty),* })?
            => $message:literal,
    )*) => {
        /// An error the relay reports to a client.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
        #[non_exhaustive]
        pub enum RelayError {
            $(
                $(#[doc = $doc])*
                #[error($message)]
                $variant $({ $($(#[doc = $fdoc])* $field: $ty),* })?,
            )*
            /// An error code from a newer relay.
            #[error("relay error {0}")]
            Other(u16),
        }

        impl RelayError {
            /// Every error this crate knows, in code order, with zero details.
            pub const ALL: [RelayError; [$($code),*].len()] =
                [$(Self::$variant $({ $($field: 0),* })?),*];

            /// The wire code.
            pub fn code(&self) -> u16 {
                match self {
                    $(Self::$variant { .. } => $code,)*
                    Self::Other(c) => *c,
                }
            }

            /// The error for a bare wire code (as a forward's status carries
            /// it); details a code would carry are unknown and set to zero.
            pub fn from_code(code: u16) -> Self {
                match code {
                    $($code => Self::$variant $({ $($field: 0),* })?,)*
                    other => Self::Other(other),
                }
            }

            /// The error's name in `docs/protocol.md` section 5.3 (such as
            /// `"unknown mailbox"`), `"other"` for a code this crate does
            /// not know.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $name,)*
                    Self::Other(_) => "other",
                }
            }
        }
    };
}

relay_errors! {
    /// The request could not be decoded.
    1 "malformed" Malformed => "malformed request",
    /// No version in the client's range is supported.
    2 "unsupported version" UnsupportedVersion {
        /// Lowest version the relay speaks.
        min: u16,
        /// Highest version the relay speaks.
        max: u16
    } => "unsupported protocol version (relay speaks {min} to {max})",
    /// A signature did not verify (wrong key, wrong connection, or an
    /// unsigned send to a secured mailbox).
    3 "auth" Auth => "not authorized",
    /// No such mailbox.
    4 "unknown mailbox" UnknownMailbox => "unknown mailbox",
    /// The mailbox holds its maximum number of envelopes.
    5 "quota" Quota => "mailbox quota exceeded",
    /// The request is larger than the relay accepts.
    6 "too large" TooLarge => "request too large",
    /// The relay's storage is full.
    7 "storage full" StorageFull => "relay storage is full",
    /// Too many requests: retry after the given number of seconds.
    8 "rate limited" RateLimited {
        /// Seconds to wait before retrying.
        retry_after_secs: u32
    } => "rate limited, retry in {retry_after_secs} s",
    /// The relay failed internally; the request was not performed.
    9 "internal" Internal => "relay internal error",
    /// The request tag is unknown to this relay.
    10 "unknown command" UnknownCommand => "unknown command",
    /// Forwarding (and fetching other relays' keys) is only for clients
    /// holding a mailbox on this relay.
    11 "not own client" NotOwnClient => "forwarding is only for clients holding a mailbox on this relay",
    /// The relay's queue for that destination is full.
    12 "forward queue full" ForwardQueueFull => "the forwarding queue to that relay is full",
    /// The destination relay could not be reached (or did not prove its key).
    13 "unreachable" Unreachable => "the destination relay is unreachable",
}

impl RelayError {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code().to_be_bytes());
        match self {
            Self::UnsupportedVersion { min, max } => {
                out.extend_from_slice(&min.to_be_bytes());
                out.extend_from_slice(&max.to_be_bytes());
            }
            Self::RateLimited { retry_after_secs } => {
                out.extend_from_slice(&retry_after_secs.to_be_bytes())
            }
            _ => {}
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.u16()?;
        if code == 0 {
            return Err(DecodeError::InvalidField("error code 0"));
        }
        Ok(match Self::from_code(code) {
            Self::UnsupportedVersion { .. } => Self::UnsupportedVersion {
                min: r.u16()?,
                max: r.u16()?,
            },
            Self::RateLimited { .. } => Self::RateLimited {
                retry_after_secs: r.u32()?,
            },
            Self::Other(other) => {
                // A newer relay may attach details we cannot interpret.
                r.rest();
                Self::Other(other)
            }
            known => known,
        })
    }
}

/// The relay's answer to a decode failure.
impl From<DecodeError> for RelayError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::UnknownTag(_) => Self::UnknownCommand,
            DecodeError::FrameTooLarge(_) => Self::TooLarge,
            DecodeError::UnsupportedVersion(_) => Self::UnsupportedVersion {
                min: PROTOCOL_VERSION,
                max: PROTOCOL_VERSION,
            },
            _ => Self::Malformed,
        }
    }
}

/// The relay's choice of version for a client's hello range.
pub fn negotiate_version(min_version: u16, max_version: u16) -> Result<u16, RelayError> {
    if (min_version..=max_version).contains(&PROTOCOL_VERSION) {
        Ok(PROTOCOL_VERSION)
    } else {
        Err(RelayError::UnsupportedVersion {
            min: PROTOCOL_VERSION,
            max: PROTOCOL_VERSION,
        })
    }
}

/// A relay-to-client message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// The command succeeded (secure, subscribe, ack, delete).
    Ok,
    /// The version chosen for this connection.
    Hello {
        /// The negotiated version.
        version: u16,
    },
    /// A new mailbox.
    MailboxCreated {
        /// The recipient's id for the mailbox.
        receive_id: MailboxId,
        /// The id senders use.
        send_id: MailboxId,
        /// The relay's X25519 key for the delivery key.
        relay_dh: [u8; 32],
    },
    /// The envelope is on the relay's disk (fsynced).
    Stored,
    /// An envelope pushed on a subscription, sealed under the delivery key;
    /// open with [`crate::delivery::DeliveryKey::open`].
    Deliver(Vec<u8>),
    /// The subscription on this stream ended.
    SubscriptionEnded(EndReason),
    /// A relay's signed forwarding key (verify it with
    /// [`RelayKey::verify`] against the pinned fingerprint).
    RelayKey(Box<RelayKey>),
    /// The forward is durably queued at the home relay (fsynced); the
    /// destination has not accepted it yet.
    Queued,
    /// The state of each asked forward, in the order asked.
    ForwardStatus(Vec<ForwardState>),
    /// The command failed.
    Error(RelayError),
}

impl Response {
    /// Appends the frame payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ok => out.push(tag::OK),
            Self::Hello { version } => {
                out.push(tag::HELLO_OK);
                out.extend_from_slice(&version.to_be_bytes());
            }
            Self::MailboxCreated {
                receive_id,
                send_id,
                relay_dh,
            } => {
                out.push(tag::CREATED);
                out.extend_from_slice(&receive_id.0);
                out.extend_from_slice(&send_id.0);
                out.extend_from_slice(relay_dh);
            }
            Self::Stored => out.push(tag::STORED),
            Self::Deliver(sealed) => {
                out.push(tag::DELIVER);
                out.extend_from_slice(sealed);
            }
            Self::SubscriptionEnded(reason) => {
                out.push(tag::ENDED);
                out.push(reason.code());
            }
            Self::RelayKey(k) => {
                out.push(tag::RELAY_KEY);
                k.encode(out);
            }
            Self::Queued => out.push(tag::QUEUED),
            Self::ForwardStatus(states) => {
                out.push(tag::FORWARD_STATUS_OK);
                out.push(states.len() as u8);
                for s in states {
                    s.encode(out);
                }
            }
            Self::Error(e) => {
                out.push(tag::ERROR);
                e.encode(out);
            }
        }
    }

    /// The frame payload as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one frame payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(payload);
        let response = match r.u8()? {
            tag::OK => Self::Ok,
            tag::HELLO_OK => Self::Hello { version: r.u16()? },
            tag::CREATED => Self::MailboxCreated {
                receive_id: MailboxId(r.array()?),
                send_id: MailboxId(r.array()?),
                relay_dh: r.array()?,
            },
            tag::STORED => Self::Stored,
            tag::DELIVER => {
                let sealed = r.rest();
                let min = SEAL_NONCE_LEN + ENVELOPE_OVERHEAD + SEAL_TAG_LEN;
                if sealed.len() < min {
                    return Err(DecodeError::Truncated);
                }
                if sealed.len() > MAX_SEALED_LEN {
                    return Err(DecodeError::FrameTooLarge(sealed.len() as u64));
                }
                Self::Deliver(sealed.to_vec())
            }
            tag::ENDED => Self::SubscriptionEnded(EndReason::from_code(r.u8()?)),
            tag::ERROR => Self::Error(RelayError::decode(&mut r)?),
            tag::RELAY_KEY => Self::RelayKey(Box::new(RelayKey::decode_from(&mut r)?)),
            tag::QUEUED => Self::Queued,
            tag::FORWARD_STATUS_OK => {
                let n = usize::from(r.u8()?);
                if n == 0 || n > MAX_FORWARD_STATUS_IDS {
                    return Err(DecodeError::InvalidField("forward state count"));
                }
                let mut states = Vec::with_capacity(n);
                for _ in 0..n {
                    states.push(ForwardState::decode(&mut r)?);
                }
                Self::ForwardStatus(states)
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        r.finish()?;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::CoarseTime;
    use crate::limits::BODY_SMALL;

    fn key(seed: u8) -> SigningKeyPair {
        SigningKeyPair::from_secret_bytes(&[seed; 32])
    }

    fn all_requests(binding: &ConnectionBinding) -> Vec<Request> {
        let k = key(1);
        let rid = MailboxId([2; 16]);
        let env = Envelope::sign(
            &key(4),
            MailboxId([3; 16]),
            MessageId([5; 16]),
            CoarseTime(7),
            &[0; BODY_SMALL],
        )
        .unwrap();
        vec![
            Request::hello(),
            Request::create_mailbox(&k, [9; 32], binding),
            Request::secure(rid, *key(4).public(), &k, binding),
            Request::Send(env),
            Request::subscribe(rid, &k, binding),
            Request::ack(rid, MessageId([5; 16]), &k, binding),
            Request::delete(rid, &k, binding),
            Request::FetchRelayKey {
                destination: RelayAddress::new(
                    crate::keys::Fingerprint([0xaa; 32]),
                    "relay.example",
                    4433,
                )
                .unwrap(),
            },
            Request::Forward(Forward {
                destination: RelayAddress::new(
                    crate::keys::Fingerprint([0xbb; 32]),
                    "127.0.0.1",
                    9,
                )
                .unwrap(),
                forward_id: ForwardId([6; 16]),
                sealed: vec![1; crate::forward::sealed_len(crate::envelope::BodySize::Small)],
            }),
            Request::RelayDeliver {
                // The smallest class: a cut can never land on a valid length.
                sealed: vec![2; crate::forward::sealed_len(crate::envelope::BodySize::Small)],
            },
            Request::ForwardStatus {
                ids: vec![ForwardId([1; 16]), ForwardId([2; 16])],
            },
        ]
    }

    #[test]
    fn requests_round_trip_and_reject_truncation_and_trailing() {
        let binding = ConnectionBinding([7; 32]);
        for req in all_requests(&binding) {
            let bytes = req.to_bytes();
            assert_eq!(Request::decode(&bytes).unwrap(), req);
            for cut in 0..bytes.len() {
                assert!(
                    Request::decode(&bytes[..cut]).is_err(),
                    "{req:?} cut at {cut}"
                );
            }
            let mut long = bytes.clone();
            long.push(0);
            let expected = match req {
                // The sealed part runs to the end: one more byte is a
                // length no size class has.
                Request::Forward(_) | Request::RelayDeliver { .. } => {
                    DecodeError::InvalidField("sealed forward length")
                }
                _ => DecodeError::TrailingBytes(1),
            };
            assert_eq!(Request::decode(&long), Err(expected));
        }
    }

    #[test]
    fn signed_commands_are_bound_to_the_connection() {
        let binding = ConnectionBinding([7; 32]);
        let other = ConnectionBinding([8; 32]);
        let k = key(1);
        for req in all_requests(&binding) {
            let decoded = Request::decode(&req.to_bytes()).unwrap();
            let check = |b: &ConnectionBinding, pk: &PublicKey| match &decoded {
                Request::CreateMailbox(s) => s.verify(b, pk).map(|_| ()),
                Request::Secure(s) => s.verify(b, pk).map(|_| ()),
                Request::Subscribe(s) => s.verify(b, pk).map(|_| ()),
                Request::Ack(s) => s.verify(b, pk).map(|_| ()),
                Request::Delete(s) => s.verify(b, pk).map(|_| ()),
                _ => Ok(()),
            };
            check(&binding, k.public()).unwrap();
            if matches!(
                decoded,
                Request::CreateMailbox(_)
                    | Request::Secure(_)
                    | Request::Subscribe(_)
                    | Request::Ack(_)
                    | Request::Delete(_)
            ) {
                assert_eq!(check(&other, k.public()), Err(Error::VerificationFailed));
                assert_eq!(
                    check(&binding, key(2).public()),
                    Err(Error::VerificationFailed)
                );
            }
        }
    }

    #[test]
    fn responses_round_trip() {
        let responses = [
            Response::Ok,
            Response::Hello { version: 1 },
            Response::MailboxCreated {
                receive_id: MailboxId([1; 16]),
                send_id: MailboxId([2; 16]),
                relay_dh: [3; 32],
            },
            Response::Stored,
            Response::Deliver(vec![
                4;
                SEAL_NONCE_LEN
                    + ENVELOPE_OVERHEAD
                    + BODY_SMALL
                    + SEAL_TAG_LEN
            ]),
            Response::SubscriptionEnded(EndReason::TakenOver),
            Response::SubscriptionEnded(EndReason::Deleted),
            Response::Error(RelayError::Quota),
            Response::Error(RelayError::UnsupportedVersion { min: 1, max: 1 }),
            Response::Error(RelayError::RateLimited {
                retry_after_secs: 30,
            }),
            Response::Error(RelayError::Other(999)),
            Response::Error(RelayError::NotOwnClient),
            Response::Error(RelayError::ForwardQueueFull),
            Response::Error(RelayError::Unreachable),
            Response::RelayKey(Box::new(RelayKey::sign(&key(3), [4; 32], 99))),
            Response::Queued,
            Response::ForwardStatus(vec![
                ForwardState::Unknown,
                ForwardState::Queued,
                ForwardState::Stored,
                ForwardState::Expired,
                ForwardState::Refused(4),
            ]),
        ];
        for resp in responses {
            let bytes = resp.to_bytes();
            assert_eq!(Response::decode(&bytes).unwrap(), resp, "{resp:?}");
        }
    }

    #[test]
    fn unknown_tags_and_versions() {
        assert_eq!(Request::decode(&[0x1f]), Err(DecodeError::UnknownTag(0x1f)));
        // Sealed forwards of any other length, and empty or oversized
        // status queries, are refused before allocation.
        let mut odd = vec![0x12];
        odd.extend_from_slice(&[0; 100]);
        assert!(Request::decode(&odd).is_err());
        assert!(Request::decode(&[0x13, 0]).is_err());
        let mut many = vec![0x13, 65];
        many.extend_from_slice(&[0; 65 * 16]);
        assert!(Request::decode(&many).is_err());
        assert!(Response::decode(&[0x48, 1, 4, 0, 0]).is_err());
        assert!(Response::decode(&[0x48, 1, 5, 0, 0]).is_err());
        assert_eq!(Response::decode(&[0x00]), Err(DecodeError::UnknownTag(0)));
        assert_eq!(Request::decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(negotiate_version(1, 3), Ok(1));
        assert_eq!(
            negotiate_version(2, 3),
            Err(RelayError::UnsupportedVersion { min: 1, max: 1 })
        );
    }
}
