//! Requests: what a client (or a relay forwarding for one) asks a relay.

use crate::address::RelayAddress;
use crate::codec::Reader;
use crate::envelope::{Envelope, MailboxId, MessageId};
use crate::keys::{PublicKey, SigningKeyPair};
use crate::limits::MAX_FORWARD_STATUS_IDS;
use crate::{DecodeError, PROTOCOL_VERSION};

use super::forwarding::{Forward, ForwardId, sealed_rest};
use super::signed::{ConnectionBinding, Signed, sign, signed_tail};
use super::tag;

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
