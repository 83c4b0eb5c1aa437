//! Responses: what a relay answers.

use crate::DecodeError;
use crate::codec::Reader;
use crate::delivery::{MAX_SEALED_LEN, SEAL_NONCE_LEN, SEAL_TAG_LEN};
use crate::envelope::MailboxId;
use crate::forward::RelayKey;
use crate::limits::{ENVELOPE_OVERHEAD, MAX_FORWARD_STATUS_IDS};

use super::error::RelayError;
use super::forwarding::ForwardState;
use super::tag;

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
