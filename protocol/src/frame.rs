//! Length-prefixed frames.
//!
//! A frame is a big-endian `u32` length followed by that many payload bytes.
//! The length must be between 1 and [`MAX_FRAME_LEN`]; anything else is
//! rejected from the four header bytes alone, before any allocation.

use crate::DecodeError;
use crate::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Appends `payload` as one frame to `out`.
///
/// Fails with [`DecodeError::FrameTooLarge`] if the payload exceeds
/// [`MAX_FRAME_LEN`], and with [`DecodeError::InvalidField`] if it is empty:
/// the peer would refuse either.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let len = check_len(payload.len() as u64)?;
    out.reserve(FRAME_HEADER_LEN + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Validates a frame header and returns the payload length it announces.
///
/// This is what a stream reader calls after reading four bytes and before
/// allocating a buffer for the payload.
pub fn payload_len(header: [u8; FRAME_HEADER_LEN]) -> Result<usize, DecodeError> {
    check_len(u64::from(u32::from_be_bytes(header)))
}

/// Decodes a buffer that must hold exactly one frame, returning its payload.
pub fn decode_frame(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    let (header, rest) = bytes
        .split_first_chunk::<FRAME_HEADER_LEN>()
        .ok_or(DecodeError::Truncated)?;
    let len = payload_len(*header)?;
    match rest.len().cmp(&len) {
        std::cmp::Ordering::Less => Err(DecodeError::Truncated),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes(rest.len() - len)),
        std::cmp::Ordering::Equal => Ok(rest),
    }
}

fn check_len(len: u64) -> Result<usize, DecodeError> {
    if len == 0 {
        return Err(DecodeError::InvalidField("empty frame"));
    }
    if len > MAX_FRAME_LEN as u64 {
        return Err(DecodeError::FrameTooLarge(len));
    }
    Ok(len as usize)
}

/// Incremental frame decoder for byte streams.
///
/// Call [`FrameReader::handle_bytes`] with whatever arrived, then
/// [`FrameReader::poll_frame`] until it returns `None`; repeat. The buffer
/// grows only as payload bytes arrive, so a peer that announces a large
/// frame and then stalls holds no more memory than it actually sent.
#[derive(Debug, Default)]
pub struct FrameReader {
    header: [u8; FRAME_HEADER_LEN],
    header_filled: usize,
    /// Payload length once the header is complete and valid.
    expected: Option<usize>,
    payload: Vec<u8>,
    ready: Option<Vec<u8>>,
}

impl FrameReader {
    /// A reader expecting the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes bytes up to the end of the current frame and returns how many
    /// were used. When the return value is less than `bytes.len()`, a frame
    /// is ready: take it with [`FrameReader::poll_frame`], then pass the rest.
    ///
    /// After an error the stream is out of sync and must be closed.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<usize, DecodeError> {
        let mut used = 0;
        while used < bytes.len() && self.ready.is_none() {
            let input = bytes.get(used..).unwrap_or_default();
            match self.expected {
                None => {
                    let want = FRAME_HEADER_LEN - self.header_filled;
                    let n = want.min(input.len());
                    let dst = self
                        .header
                        .get_mut(self.header_filled..self.header_filled + n)
                        .ok_or(DecodeError::Truncated)?;
                    dst.copy_from_slice(input.get(..n).unwrap_or_default());
                    self.header_filled += n;
                    used += n;
                    if self.header_filled == FRAME_HEADER_LEN {
                        self.expected = Some(payload_len(self.header)?);
                    }
                }
                Some(len) => {
                    let n = (len - self.payload.len()).min(input.len());
                    self.payload
                        .extend_from_slice(input.get(..n).unwrap_or_default());
                    used += n;
                    if self.payload.len() == len {
                        self.ready = Some(std::mem::take(&mut self.payload));
                        self.expected = None;
                        self.header_filled = 0;
                    }
                }
            }
        }
        Ok(used)
    }

    /// Returns the next complete frame payload, if one is ready.
    pub fn poll_frame(&mut self) -> Option<Vec<u8>> {
        self.ready.take()
    }

    /// True when no partial frame is buffered (a clean place for the stream
    /// to end).
    pub fn is_idle(&self) -> bool {
        self.header_filled == 0 && self.ready.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut out = Vec::new();
        encode_frame(b"hello", &mut out).unwrap();
        assert_eq!(out, b"\x00\x00\x00\x05hello");
        assert_eq!(decode_frame(&out).unwrap(), b"hello");
    }

    #[test]
    fn rejects_bad_lengths() {
        assert_eq!(decode_frame(b"\x00\x00\x00"), Err(DecodeError::Truncated));
        assert_eq!(
            decode_frame(b"\x00\x00\x00\x02a"),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_frame(b"\x00\x00\x00\x01ab"),
            Err(DecodeError::TrailingBytes(1))
        );
        assert!(matches!(
            decode_frame(b"\x00\x00\x00\x00"),
            Err(DecodeError::InvalidField(_))
        ));
        // A 4 GiB claim is refused from the header alone.
        assert_eq!(
            decode_frame(b"\xff\xff\xff\xff"),
            Err(DecodeError::FrameTooLarge(0xffff_ffff))
        );
        assert!(encode_frame(&vec![0; MAX_FRAME_LEN + 1], &mut Vec::new()).is_err());
        assert!(encode_frame(&[], &mut Vec::new()).is_err());
    }

    #[test]
    fn incremental_byte_by_byte() {
        let mut wire = Vec::new();
        encode_frame(b"one", &mut wire).unwrap();
        encode_frame(b"second", &mut wire).unwrap();
        let mut reader = FrameReader::new();
        let mut frames = Vec::new();
        for b in &wire {
            assert_eq!(reader.handle_bytes(std::slice::from_ref(b)).unwrap(), 1);
            frames.extend(reader.poll_frame());
        }
        assert_eq!(frames, vec![b"one".to_vec(), b"second".to_vec()]);
        assert!(reader.is_idle());
    }

    #[test]
    fn incremental_stops_at_frame_end() {
        let mut wire = Vec::new();
        encode_frame(b"ab", &mut wire).unwrap();
        encode_frame(b"cd", &mut wire).unwrap();
        let mut reader = FrameReader::new();
        let used = reader.handle_bytes(&wire).unwrap();
        assert_eq!(used, 6);
        assert_eq!(reader.poll_frame().unwrap(), b"ab");
        assert_eq!(reader.handle_bytes(&wire[used..]).unwrap(), 6);
        assert_eq!(reader.poll_frame().unwrap(), b"cd");
    }

    #[test]
    fn incremental_oversize_fails_before_payload() {
        let mut reader = FrameReader::new();
        assert!(matches!(
            reader.handle_bytes(b"\xff\xff\xff\xffxxxx"),
            Err(DecodeError::FrameTooLarge(_))
        ));
        assert_eq!(reader.payload.capacity(), 0);
    }
}
