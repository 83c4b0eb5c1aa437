//! Text parts, one-to-one and in a nucleus (application message kind 4).
//!
//! ```text
//! text part:   message id [16] | sent_at u64 | part u16 | parts u16
//!              | len u16 | bytes [len]
//! nucleus text part (kind 4):
//!              nucleus [16] | author fingerprint [32] | text part
//! ```
//!
//! A long text is cut into byte ranges of its UTF-8, each sent as one
//! part; the receiver joins them whatever order they arrive in. The text
//! part is also the body of the client's one-to-one text (kind 1,
//! `docs/client.md`).

use std::fmt;

use super::id::{NUCLEUS_ID_LEN, NucleusId};
use super::limits::MAX_PARTS;
use crate::codec::Reader;
use crate::keys::Fingerprint;
use crate::{DecodeError, Error};

/// One part of a text. Made by [`TextPart::new`] or decoded, so it always
/// holds `part < parts <= MAX_PARTS` and at most `u16::MAX` bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct TextPart {
    message_id: [u8; 16],
    sent_at: u64,
    part: u16,
    parts: u16,
    bytes: Vec<u8>,
}

impl fmt::Debug for TextPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TextPart({} of {})",
            u32::from(self.part) + 1,
            self.parts
        )
    }
}

impl TextPart {
    /// Bytes of an encoded part before its text.
    pub const HEADER_LEN: usize = 16 + 8 + 2 + 2 + 2;

    /// Part `part` (from 0) of `parts` of the text `message_id`, written at
    /// `sent_at` (the sender's clock, Unix seconds). Fails with
    /// [`Error::MessageTooLong`] when `bytes` do not fit one part, and with
    /// [`Error::Decode`] when the numbering is impossible (no parts, a part
    /// past the last, more than [`MAX_PARTS`]).
    pub fn new(
        message_id: [u8; 16],
        sent_at: u64,
        part: u16,
        parts: u16,
        bytes: Vec<u8>,
    ) -> Result<Self, Error> {
        if bytes.len() > usize::from(u16::MAX) {
            return Err(Error::MessageTooLong {
                len: bytes.len(),
                max: usize::from(u16::MAX),
            });
        }
        Ok(Self::numbered(message_id, sent_at, part, parts, bytes)?)
    }

    /// A part whose numbering is possible: `part < parts <= MAX_PARTS`.
    fn numbered(
        message_id: [u8; 16],
        sent_at: u64,
        part: u16,
        parts: u16,
        bytes: Vec<u8>,
    ) -> Result<Self, DecodeError> {
        check_numbering(part, parts)?;
        Ok(Self {
            message_id,
            sent_at,
            part,
            parts,
            bytes,
        })
    }

    /// The text's id, the same in every part (chosen by its author).
    pub fn message_id(&self) -> [u8; 16] {
        self.message_id
    }

    /// The sender's clock when the text was written (Unix seconds).
    pub fn sent_at(&self) -> u64 {
        self.sent_at
    }

    /// This part's index, from 0.
    pub fn part(&self) -> u16 {
        self.part
    }

    /// How many parts the text has.
    pub fn parts(&self) -> u16 {
        self.parts
    }

    /// This part's bytes of the UTF-8 text (a part may end inside a
    /// character: decode the joined text, not a part).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// This part's bytes, taken out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.message_id);
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.extend_from_slice(&self.part.to_be_bytes());
        out.extend_from_slice(&self.parts.to_be_bytes());
        // new and decode keep the length within u16.
        let len = u16::try_from(self.bytes.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.bytes.get(..usize::from(len)).unwrap_or_default());
    }

    /// Decodes exactly one text part.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let part = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(part)
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let message_id = r.array()?;
        let sent_at = u64::from_be_bytes(r.array()?);
        let part = r.u16()?;
        let parts = r.u16()?;
        let len = usize::from(r.u16()?);
        // Refused before the text is copied.
        check_numbering(part, parts)?;
        let bytes = r.take(len)?.to_vec();
        Self::numbered(message_id, sent_at, part, parts, bytes)
    }
}

fn check_numbering(part: u16, parts: u16) -> Result<(), DecodeError> {
    if parts == 0 || part >= parts || usize::from(parts) > MAX_PARTS {
        return Err(DecodeError::InvalidField("text part numbering"));
    }
    Ok(())
}

/// One part of a nucleus text: which nucleus, who wrote it, and the part.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupText {
    /// The nucleus.
    pub nucleus: NucleusId,
    /// The identity fingerprint of the member who wrote it; a receiver
    /// accepts it only from that member's own session.
    pub author: Fingerprint,
    /// The text part; its message id is the author's.
    pub part: TextPart,
}

impl fmt::Debug for GroupText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupText({:?})", self.part)
    }
}

impl GroupText {
    /// Bytes of an encoded nucleus text before its text part.
    pub const HEADER_LEN: usize = NUCLEUS_ID_LEN + 32;

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.nucleus.0);
        out.extend_from_slice(&self.author.0);
        self.part.encode(out);
    }

    /// Decodes exactly one nucleus text part.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let nucleus = NucleusId(r.array()?);
        let author = Fingerprint(r.array()?);
        let part = TextPart::decode_from(&mut r)?;
        r.finish()?;
        Ok(Self {
            nucleus,
            author,
            part,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // test code

    use super::*;

    fn part(part: u16, parts: u16, bytes: &[u8]) -> TextPart {
        TextPart::new([3; 16], 1_790_000_000, part, parts, bytes.to_vec()).unwrap()
    }

    #[test]
    fn text_part_round_trip_and_bounds() {
        let p = part(1, 2, b"hola");
        let mut bytes = Vec::new();
        p.encode(&mut bytes);
        assert_eq!(bytes.len(), TextPart::HEADER_LEN + 4);
        assert_eq!(TextPart::decode(&bytes).unwrap(), p);
        for cut in 0..bytes.len() {
            assert!(TextPart::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            TextPart::decode(&longer),
            Err(DecodeError::TrailingBytes(1))
        );
        for (i, n) in [(0, 0), (1, 1), (0, MAX_PARTS as u16 + 1)] {
            assert!(TextPart::new([0; 16], 0, i, n, Vec::new()).is_err());
        }
        assert!(TextPart::new([0; 16], 0, 63, 64, Vec::new()).is_ok());
        let big = vec![0; usize::from(u16::MAX) + 1];
        assert!(TextPart::new([0; 16], 0, 0, 1, big).is_err());
    }

    #[test]
    fn group_text_round_trip() {
        let t = GroupText {
            nucleus: NucleusId([6; 16]),
            author: Fingerprint([8; 32]),
            part: part(0, 1, "¡sí!".as_bytes()),
        };
        let mut bytes = Vec::new();
        t.encode(&mut bytes);
        assert_eq!(&bytes[..16], &[6; 16]);
        assert_eq!(GroupText::decode(&bytes).unwrap(), t);
        for cut in 0..bytes.len() {
            assert!(GroupText::decode(&bytes[..cut]).is_err());
        }
    }
}
