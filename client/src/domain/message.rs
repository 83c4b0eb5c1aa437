//! The application messages carried inside the end-to-end session. Layout
//! (big-endian) in `docs/client.md`:
//!
//! ```text
//! version u8 (1) | kind u8 | fields
//!   kind 1, text part: message id [16] | sent_at u64 | part u16 | parts u16
//!                      | len u16 | bytes [len]
//!   kind 2, receipt:   count u8 (1..=MAX_RECEIPT_IDS) | message id [16] * count
//!   kind 3, nucleus membership operation, version 1 (the protocol's
//!           `group::OpV1`; read in welcomes, never sent anew)
//!   kind 4, nucleus text part (the protocol's `group::GroupText`)
//!   kind 5, nucleus introduction (the protocol's `group::Introduction`)
//!   kind 6, timer:          set_at u64 | seconds u32
//!   kind 7, nucleus timer:  nucleus id [16] | set_at u64 | seconds u32
//!   kind 16, nucleus membership operation, version 2 (the protocol's
//!           `group::Op`)
//! ```
//!
//! Kinds 6 to 15 are kept for messages between two contacts (6 and 7 are
//! taken), kinds from 16 on for nuclei.
//!
//! Kinds 6 and 7 set a conversation's disappearing-message timer
//! (`profile::retention`): seconds 0 for off, else 3,600 to 7,776,000;
//! `set_at` is the setter's clock, which orders two settings that cross.
//!
//! The text part of kinds 1 and 4 is the protocol's `group::TextPart`. The
//! handshake's own payload (from the accepter, inside the session's first
//! message) is [`AcceptPayload`].
//!
//! A long text is split into parts that each fit one small envelope and is
//! put back together by the receiver ([`super::parts`]), whatever order
//! the parts arrive in. Parts are byte ranges of the UTF-8 text; the whole
//! is decoded once complete.

use enlace_protocol::group::limits::MAX_PARTS;
use enlace_protocol::group::{
    GroupText, Introduction, NUCLEUS_ID_LEN, NucleusId, Op, OpV1, TextPart,
};
use zeroize::Zeroizing;

use crate::error::MessageError;
use crate::profile::{MessageId, Timer};

/// The format version written in the first byte.
pub(crate) const MESSAGE_VERSION: u8 = 1;
const KIND_TEXT: u8 = 1;
const KIND_RECEIPT: u8 = 2;
const KIND_NUCLEUS_OP_V1: u8 = 3;
const KIND_GROUP_TEXT: u8 = 4;
const KIND_INTRODUCTION: u8 = 5;
const KIND_TIMER: u8 = 6;
const KIND_NUCLEUS_TIMER: u8 = 7;
const KIND_NUCLEUS_OP: u8 = 16;

/// Bytes of a text message before its text (version and kind included).
pub(crate) const TEXT_PART_OVERHEAD: usize = 1 + 1 + TextPart::HEADER_LEN;

/// Most message ids acknowledged in one receipt: one byte counts them, and
/// a receipt stays one small envelope.
pub(crate) const MAX_RECEIPT_IDS: usize = 32;

/// An application message.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum AppMessage {
    /// One part of a text.
    Text(TextPart),
    /// The sender's client received these messages completely.
    Receipt(Vec<MessageId>),
    /// A signed nucleus membership change of version 1.
    NucleusOpV1(OpV1),
    /// A signed nucleus membership change.
    NucleusOp(Op),
    /// One part of a nucleus text.
    GroupText(GroupText),
    /// A signed introduction of a new nucleus member.
    Introduction(Introduction),
    /// The sender set the timer of our conversation.
    Timer {
        /// The sender's clock when set.
        set_at: u64,
        /// The timer.
        timer: Timer,
    },
    /// The sender set the timer of a nucleus.
    NucleusTimer {
        /// The nucleus.
        nucleus: NucleusId,
        /// The sender's clock when set.
        set_at: u64,
        /// The timer.
        timer: Timer,
    },
}

impl std::fmt::Debug for AppMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Text(p) => write!(f, "Text(part {} of {})", u32::from(p.part()) + 1, p.parts()),
            Self::Receipt(ids) => write!(f, "Receipt({} ids)", ids.len()),
            Self::NucleusOpV1(op) => write!(f, "NucleusOpV1({op:?})"),
            Self::NucleusOp(op) => write!(f, "NucleusOp({op:?})"),
            Self::GroupText(t) => write!(f, "GroupText({t:?})"),
            Self::Introduction(_) => f.write_str("Introduction(..)"),
            Self::Timer { .. } => f.write_str("Timer(..)"),
            Self::NucleusTimer { .. } => f.write_str("NucleusTimer(..)"),
        }
    }
}

impl AppMessage {
    /// Encodes the message.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![MESSAGE_VERSION];
        match self {
            Self::Text(p) => {
                out.push(KIND_TEXT);
                p.encode(&mut out);
            }
            Self::NucleusOpV1(op) => {
                out.push(KIND_NUCLEUS_OP_V1);
                out.extend_from_slice(op.as_bytes());
            }
            Self::NucleusOp(op) => {
                out.push(KIND_NUCLEUS_OP);
                out.extend_from_slice(op.as_bytes());
            }
            Self::GroupText(t) => {
                out.push(KIND_GROUP_TEXT);
                t.encode(&mut out);
            }
            Self::Introduction(i) => {
                out.push(KIND_INTRODUCTION);
                out.extend_from_slice(i.as_bytes());
            }
            Self::Timer { set_at, timer } => {
                out.push(KIND_TIMER);
                out.extend_from_slice(&set_at.to_be_bytes());
                out.extend_from_slice(&timer.wire().to_be_bytes());
            }
            Self::NucleusTimer {
                nucleus,
                set_at,
                timer,
            } => {
                out.push(KIND_NUCLEUS_TIMER);
                out.extend_from_slice(&nucleus.0);
                out.extend_from_slice(&set_at.to_be_bytes());
                out.extend_from_slice(&timer.wire().to_be_bytes());
            }
            Self::Receipt(ids) => {
                // Callers split receipts at MAX_RECEIPT_IDS; never write a
                // count that disagrees with the ids that follow.
                let ids = ids.get(..MAX_RECEIPT_IDS).unwrap_or(ids);
                out.push(KIND_RECEIPT);
                out.push(u8::try_from(ids.len()).unwrap_or(u8::MAX));
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
        }
        out
    }

    /// Decodes exactly one message; trailing bytes are refused.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = bytes;
        let [version, kind] = take::<2>(&mut r)?;
        if version != MESSAGE_VERSION {
            return Err(MessageError::Malformed);
        }
        Ok(match kind {
            KIND_TEXT => Self::Text(TextPart::decode(r)?),
            KIND_NUCLEUS_OP_V1 => Self::NucleusOpV1(OpV1::decode(r)?),
            KIND_NUCLEUS_OP => Self::NucleusOp(Op::decode(r)?),
            KIND_GROUP_TEXT => Self::GroupText(GroupText::decode(r)?),
            KIND_INTRODUCTION => Self::Introduction(Introduction::decode(r)?),
            KIND_TIMER => {
                let (set_at, timer) = decode_timer(r)?;
                Self::Timer { set_at, timer }
            }
            KIND_NUCLEUS_TIMER => {
                let nucleus = NucleusId(take::<NUCLEUS_ID_LEN>(&mut r)?);
                let (set_at, timer) = decode_timer(r)?;
                Self::NucleusTimer {
                    nucleus,
                    set_at,
                    timer,
                }
            }
            KIND_RECEIPT => {
                let [count] = take::<1>(&mut r)?;
                let count = usize::from(count);
                if count == 0 || count > MAX_RECEIPT_IDS {
                    return Err(MessageError::Malformed);
                }
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    ids.push(MessageId(take::<16>(&mut r)?));
                }
                if !r.is_empty() {
                    return Err(MessageError::Malformed);
                }
                Self::Receipt(ids)
            }
            _ => return Err(MessageError::Malformed),
        })
    }
}

/// `set_at u64 | seconds u32`, exactly, with seconds a valid timer.
fn decode_timer(mut r: &[u8]) -> Result<(u64, Timer), MessageError> {
    let set_at = u64::from_be_bytes(take(&mut r)?);
    let secs = u32::from_be_bytes(take(&mut r)?);
    let timer = Timer::from_secs(secs).ok_or(MessageError::Malformed)?;
    if !r.is_empty() {
        return Err(MessageError::Malformed);
    }
    Ok((set_at, timer))
}

fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], MessageError> {
    let (head, rest) = r.split_first_chunk::<N>().ok_or(MessageError::Malformed)?;
    *r = rest;
    Ok(*head)
}

/// What the accepter puts in the handshake: the secret seed of the key the
/// inviter will sign envelopes to the accepter's mailbox with.
///
/// The accepter makes that key and secures its mailbox with it before the
/// handshake leaves, so its mailbox never accepts anyone else's envelopes.
/// Knowing the seed lets only the accepter itself deposit into its own
/// mailbox; messages are authenticated by the session, not by this key.
///
/// ```text
/// version u8 (1) | sender key seed [32]
/// ```
pub(crate) struct AcceptPayload {
    /// The seed of the inviter's sender key for the accepter's mailbox.
    pub(crate) sender_seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for AcceptPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptPayload(..)")
    }
}

impl AcceptPayload {
    /// Encodes the payload.
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(33));
        out.push(MESSAGE_VERSION);
        out.extend_from_slice(&*self.sender_seed);
        out
    }

    /// Decodes exactly one payload.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let mut r = bytes;
        let [version] = take::<1>(&mut r)?;
        let seed = Zeroizing::new(take::<32>(&mut r)?);
        if version != MESSAGE_VERSION || !r.is_empty() {
            return Err(MessageError::Malformed);
        }
        Ok(Self { sender_seed: seed })
    }
}

/// Splits `text` into parts whose text messages (kind 1) are at most
/// `max_plaintext` bytes each (the session's limit for one small envelope).
pub(crate) fn split_parts(
    text: &str,
    message_id: MessageId,
    sent_at: u64,
    max_plaintext: usize,
) -> Result<Vec<TextPart>, MessageError> {
    let room = max_plaintext
        .saturating_sub(TEXT_PART_OVERHEAD)
        .min(usize::from(u16::MAX));
    if room == 0 {
        return Err(MessageError::TooLong(0));
    }
    let chunks: Vec<&[u8]> = if text.is_empty() {
        vec![&[]]
    } else {
        text.as_bytes().chunks(room).collect()
    };
    let too_long = MessageError::TooLong(room * MAX_PARTS);
    if chunks.len() > MAX_PARTS {
        return Err(too_long);
    }
    let parts = u16::try_from(chunks.len()).map_err(|_| too_long)?;
    (0..parts)
        .zip(chunks)
        .map(|(i, bytes)| {
            TextPart::new(message_id.0, sent_at, i, parts, bytes.to_vec()).map_err(|_| too_long)
        })
        .collect()
}

/// Splits `text` into encoded text messages of at most `max_plaintext`
/// bytes each (see [`split_parts`]).
pub(crate) fn split_text(
    text: &str,
    message_id: MessageId,
    sent_at: u64,
    max_plaintext: usize,
) -> Result<Vec<Vec<u8>>, MessageError> {
    Ok(split_parts(text, message_id, sent_at, max_plaintext)?
        .into_iter()
        .map(|part| AppMessage::Text(part).encode())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parts::{MAX_PARTIAL_PER_CONTACT, add_part};
    use crate::profile::{ContactId, Profile};

    fn part(message_id: [u8; 16], sent_at: u64, part: u16, parts: u16, bytes: &[u8]) -> TextPart {
        TextPart::new(message_id, sent_at, part, parts, bytes.to_vec()).unwrap()
    }

    #[test]
    fn round_trip() {
        for msg in [
            AppMessage::Text(part([3; 16], 1_790_000_000, 1, 2, b"hola")),
            AppMessage::Receipt(vec![MessageId([1; 16]), MessageId([2; 16])]),
            AppMessage::Timer {
                set_at: 1_790_000_000,
                timer: Timer::from_secs(3_600).unwrap(),
            },
            AppMessage::NucleusTimer {
                nucleus: NucleusId([7; 16]),
                set_at: 1_790_000_000,
                timer: Timer::OFF,
            },
        ] {
            let bytes = msg.encode();
            assert_eq!(AppMessage::decode(&bytes).unwrap(), msg);
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(AppMessage::decode(&longer), Err(MessageError::Malformed));
            for cut in 0..bytes.len() {
                assert!(AppMessage::decode(&bytes[..cut]).is_err());
            }
        }
    }

    /// Application message bytes written by the code of commit 5f48a08:
    /// the layouts of docs/client.md and docs/protocol.md section 13.
    #[test]
    fn known_answers() {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let text = AppMessage::Text(part([3; 16], 1_790_000_000, 1, 2, b"hola"));
        assert_eq!(
            hex(&text.encode()),
            "010103030303030303030303030303030303000000006ab13b80000100020004686f6c61"
        );
        let receipt = AppMessage::Receipt(vec![MessageId([1; 16]), MessageId([2; 16])]);
        assert_eq!(
            hex(&receipt.encode()),
            "0102020101010101010101010101010101010102020202020202020202020202020202"
        );
        let timer = AppMessage::Timer {
            set_at: 1_790_000_000,
            timer: Timer::from_secs(3_600).unwrap(),
        };
        assert_eq!(hex(&timer.encode()), "0106000000006ab13b8000000e10");
        let nucleus_timer = AppMessage::NucleusTimer {
            nucleus: NucleusId([0x6e; 16]),
            set_at: 1_790_000_000,
            timer: Timer::from_secs(7_776_000).unwrap(),
        };
        assert_eq!(
            hex(&nucleus_timer.encode()),
            "01076e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e000000006ab13b800076a700"
        );
        let accept = AcceptPayload {
            sender_seed: Zeroizing::new([4; 32]),
        };
        assert_eq!(
            hex(&accept.encode()),
            "010404040404040404040404040404040404040404040404040404040404040404"
        );
        let parts: Vec<String> = split_text("abcdefghi", MessageId([9; 16]), 42, 36)
            .unwrap()
            .iter()
            .map(|p| hex(p))
            .collect();
        assert_eq!(
            parts,
            [
                "010109090909090909090909090909090909000000000000002a00000003000461626364",
                "010109090909090909090909090909090909000000000000002a00010003000465666768",
                "010109090909090909090909090909090909000000000000002a00020003000169",
            ]
        );
        // Kinds 3, 4 and 5 (protocol/testdata/group.json: `create`,
        // `group-text`, `introduction-empty`) decode and re-encode unchanged.
        for (kind, bytes) in [
            (
                3,
                "01036e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e000000000000000101af3d20264f9c26ef085b5ce5\
                 37f417d424037a0963a6386ff6d050e5bf773714af3d20264f9c26ef085b5ce537f417d424037a\
                 0963a6386ff6d050e5bf773714086173616d626c6561c832ad18e42ad27ee991e9837c6538fcdd\
                 543691f35832bf295d6af43cf51aae651279c3a1ddaf173b10a74310cd5bbd682e67544f5708d2\
                 2646054f7e34f600",
            ),
            (
                4,
                "01046e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6e9f8f0c662f05c6d4d39474410d96e0793544ac5671\
                 ee0e5d428538c22f56b75e4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d000000006ab13b8000000001\
                 00126173616d626c656120656c206a7565766573",
            ),
            (
                5,
                "01056e6e6e6e6e6e6e6e6e6e6e6e6e6e6e6eb5f1e884a45109bffc6dc8639f472f2a65b3341506\
                 f4c980d5b74265b4c8b78b77777777777777777777777777777777777777777777777777777777\
                 777777770000cc6c8871746a08e0ba92f3888ac1dde3cb34a77d1523eb4a0552495998e0ce4cb2\
                 51ea4ced949f0fa6723a244fc68ac8f226fa1653957f8db1674c10a5b1ca02",
            ),
        ] {
            let bytes: Vec<u8> = (0..bytes.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&bytes[i..i + 2], 16).unwrap())
                .collect();
            let msg = AppMessage::decode(&bytes).unwrap();
            let decoded_kind = match &msg {
                AppMessage::NucleusOpV1(_) => 3,
                AppMessage::GroupText(_) => 4,
                AppMessage::Introduction(_) => 5,
                _ => 0,
            };
            assert_eq!(decoded_kind, kind);
            assert_eq!(msg.encode(), bytes);
        }
    }

    #[test]
    fn accept_payload_round_trip() {
        let p = AcceptPayload {
            sender_seed: Zeroizing::new([4; 32]),
        };
        let bytes = p.encode();
        assert_eq!(*AcceptPayload::decode(&bytes).unwrap().sender_seed, [4; 32]);
        assert!(AcceptPayload::decode(&bytes[..32]).is_err());
        assert!(AcceptPayload::decode(&[&bytes[..], &[0]].concat()).is_err());
        assert!(AcceptPayload::decode(&[&[2][..], &bytes[1..]].concat()).is_err());
    }

    #[test]
    fn malformed_rejected() {
        let part = |part: u16, parts: u16| {
            let mut b = vec![1, KIND_TEXT];
            b.extend_from_slice(&[0; 24]);
            b.extend_from_slice(&part.to_be_bytes());
            b.extend_from_slice(&parts.to_be_bytes());
            b.extend_from_slice(&0u16.to_be_bytes());
            b
        };
        assert!(AppMessage::decode(&part(0, 1)).is_ok());
        assert!(AppMessage::decode(&part(1, 1)).is_err());
        assert!(AppMessage::decode(&part(0, 0)).is_err());
        assert!(AppMessage::decode(&part(0, MAX_PARTS as u16 + 1)).is_err());
        assert!(AppMessage::decode(&[2, KIND_TEXT]).is_err());
        assert!(AppMessage::decode(&[1, 9]).is_err());
        assert!(AppMessage::decode(&[1, KIND_RECEIPT, 0]).is_err());
        // Timers outside off and 1 hour..90 days are refused.
        for secs in [1u32, 3_599, 7_776_001, u32::MAX] {
            let mut b = vec![1, KIND_TIMER];
            b.extend_from_slice(&0u64.to_be_bytes());
            b.extend_from_slice(&secs.to_be_bytes());
            assert!(AppMessage::decode(&b).is_err(), "{secs}");
        }
    }

    #[test]
    fn long_text_split_and_reassembled_in_any_order() {
        let text: String = "¡Huelga general! ".repeat(700);
        let mut parts = split_text(&text, MessageId([9; 16]), 42, 2000).unwrap();
        assert!(parts.len() > 5);
        assert!(parts.iter().all(|p| p.len() <= 2000));
        parts.reverse();
        parts.swap(1, 3);
        let mut profile = Profile::new(&mut rand::rng(), 0);
        let last = parts.len() - 1;
        for (i, bytes) in parts.iter().enumerate() {
            let AppMessage::Text(part) = AppMessage::decode(bytes).unwrap() else {
                panic!("not text")
            };
            let result = add_part(&mut profile, ContactId(1), part.clone());
            if i < last {
                assert!(result.is_none());
                // A repeated part changes nothing.
                assert!(add_part(&mut profile, ContactId(1), part).is_none());
            } else {
                assert_eq!(result.unwrap().text, text);
            }
        }
        assert!(profile.partial.is_empty());
    }

    #[test]
    fn reassembly_yields_exact_text() {
        let text = "ñ".repeat(3000); // two bytes a character: splits mid-char
        let parts = split_text(&text, MessageId([1; 16]), 7, 1000).unwrap();
        let mut profile = Profile::new(&mut rand::rng(), 0);
        let mut result = None;
        for bytes in parts {
            let AppMessage::Text(part) = AppMessage::decode(&bytes).unwrap() else {
                panic!()
            };
            if let Some(done) = add_part(&mut profile, ContactId(5), part) {
                result = Some(done);
            }
        }
        let done = result.unwrap();
        assert_eq!(done.text, text);
        assert_eq!(done.sent_at, 7);
        assert!(profile.partial.is_empty());
    }

    #[test]
    fn too_long_and_bounded_partials() {
        let huge = "x".repeat(2000 * (MAX_PARTS + 1));
        assert!(matches!(
            split_text(&huge, MessageId([0; 16]), 0, 2000),
            Err(MessageError::TooLong(_))
        ));
        let mut profile = Profile::new(&mut rand::rng(), 0);
        for i in 0..(MAX_PARTIAL_PER_CONTACT as u8 + 3) {
            let part = part([i; 16], 0, 0, 2, &[1]);
            assert!(add_part(&mut profile, ContactId(1), part).is_none());
        }
        assert_eq!(profile.partial.len(), MAX_PARTIAL_PER_CONTACT);
    }
}
