//! Length-prefixed frames (`docs/protocol.md` section 4) over QUIC streams.
//!
//! [`FrameStream`] reads frames from a receive stream without copying a
//! chunk twice and is cancel-safe, so it can sit in `select!`;
//! [`frame_with`] encodes a message straight after room for its header;
//! [`exchange`] runs one request and reads its one answer on a stream of its
//! own, which is how every command but a subscription travels.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use enlace_protocol::DecodeError;
use enlace_protocol::command::{Request, Response};
use enlace_protocol::frame::FrameReader;
use enlace_protocol::limits::{FRAME_HEADER_LEN, MAX_FRAME_LEN};

use crate::error::TransportError;

/// Most bytes taken from quinn per read: a large sealed envelope and its
/// header fit in one.
const MAX_READ_CHUNK: usize = 64 * 1024;

/// Why reading a frame failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum FrameError {
    /// The bytes are not a frame: a length over the maximum, an empty
    /// frame, or a stream that ended inside a frame
    /// ([`DecodeError::Truncated`]). The stream is out of step; stop it.
    Decode(DecodeError),
    /// The connection is gone.
    ConnectionLost(quinn::ConnectionError),
    /// The peer reset the stream, or it was stopped.
    Reset,
}

impl From<FrameError> for TransportError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Decode(d) => Self::Decode(d),
            FrameError::ConnectionLost(c) => Self::Connection(c),
            FrameError::Reset => Self::StreamClosed,
        }
    }
}

/// What [`FrameStream::next`] yields: a frame's payload, `None` when the
/// peer finished the stream cleanly between frames, or why not.
pub type FrameResult = Result<Option<Vec<u8>>, FrameError>;

/// A frame reader over a QUIC receive stream. Its state changes only when
/// a read completes, so a pending [`FrameStream::next`] may be dropped.
#[derive(Debug)]
pub struct FrameStream {
    recv: quinn::RecvStream,
    reader: FrameReader,
    /// The chunk being taken apart and how far into it the reader is.
    chunk: Option<(quinn::Chunk, usize)>,
    /// A frame read ahead and given back: [`FrameStream::next`] returns it
    /// first.
    pushed_back: Option<FrameResult>,
}

impl FrameStream {
    /// A reader at the start of `recv`.
    pub fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            reader: FrameReader::new(),
            chunk: None,
            pushed_back: None,
        }
    }

    /// The next frame's payload; `Ok(None)` when the peer finished cleanly.
    pub async fn next(&mut self) -> FrameResult {
        if let Some(frame) = self.pushed_back.take() {
            return frame;
        }
        loop {
            if let Some((chunk, pos)) = &mut self.chunk {
                let rest = chunk.bytes.get(*pos..).unwrap_or_default();
                let used = self.reader.handle_bytes(rest).map_err(FrameError::Decode)?;
                *pos += used;
                if *pos >= chunk.bytes.len() {
                    self.chunk = None;
                }
                if let Some(frame) = self.reader.poll_frame() {
                    return Ok(Some(frame));
                }
                continue;
            }
            match self.recv.read_chunk(MAX_READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.chunk = Some((chunk, 0)),
                Ok(None) if self.reader.is_idle() => return Ok(None),
                Ok(None) => return Err(FrameError::Decode(DecodeError::Truncated)),
                Err(quinn::ReadError::ConnectionLost(e)) => {
                    return Err(FrameError::ConnectionLost(e));
                }
                Err(_) => return Err(FrameError::Reset),
            }
        }
    }

    /// The next frame if it has arrived already, without waiting.
    pub fn ready(&mut self) -> Option<FrameResult> {
        let mut cx = Context::from_waker(Waker::noop());
        // Dropping `next` while pending is fine: it is cancel-safe.
        match std::pin::pin!(self.next()).poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    /// Gives a frame back: the next [`FrameStream::next`] returns it.
    pub fn push_back(&mut self, frame: FrameResult) {
        self.pushed_back = Some(frame);
    }

    /// Asks the peer to stop sending on this stream, with `code`.
    pub fn stop(&mut self, code: quinn::VarInt) {
        let _ = self.recv.stop(code);
    }

    /// The next frame decoded as a response; `Ok(None)` when the relay
    /// finished the stream cleanly.
    pub async fn next_response(&mut self) -> Result<Option<Response>, TransportError> {
        match self.next().await.map_err(TransportError::from)? {
            Some(frame) => Ok(Some(Response::decode(&frame)?)),
            None => Ok(None),
        }
    }
}

/// One frame holding what `encode` appends, encoded in place after room
/// for the header: one buffer, no copy of the payload. Fails as
/// [`enlace_protocol::frame::encode_frame`] does for an empty or oversized
/// payload.
pub fn frame_with(encode: impl FnOnce(&mut Vec<u8>)) -> Result<Vec<u8>, DecodeError> {
    let mut frame = vec![0; FRAME_HEADER_LEN];
    encode(&mut frame);
    let len = frame.len() - FRAME_HEADER_LEN;
    if len == 0 {
        return Err(DecodeError::InvalidField("empty frame"));
    }
    let announced = u32::try_from(len)
        .ok()
        .filter(|_| len <= MAX_FRAME_LEN)
        .ok_or(DecodeError::FrameTooLarge(len as u64))?;
    if let Some(header) = frame.get_mut(..FRAME_HEADER_LEN) {
        header.copy_from_slice(&announced.to_be_bytes());
    }
    Ok(frame)
}

/// Writes `request` as one frame on `send`.
pub async fn send_request(
    send: &mut quinn::SendStream,
    request: &Request,
) -> Result<(), TransportError> {
    let frame = frame_with(|out| request.encode(out))?;
    send.write_all(&frame)
        .await
        .map_err(|_| TransportError::StreamClosed)
}

/// Sends `request` on a new stream of `conn`, finishes the stream and reads
/// the one response. Relay errors come back as `Ok(Response::Error(_))`.
pub async fn exchange(
    conn: &quinn::Connection,
    request: &Request,
) -> Result<Response, TransportError> {
    let (mut send, recv) = conn.open_bi().await?;
    send_request(&mut send, request).await?;
    let _ = send.finish();
    FrameStream::new(recv)
        .next_response()
        .await?
        .ok_or(TransportError::StreamClosed)
}

#[cfg(test)]
mod tests {
    use enlace_protocol::frame::{decode_frame, encode_frame};

    use super::*;

    #[test]
    fn frame_with_matches_encode_frame() {
        let request = Request::hello();
        let mut expected = Vec::new();
        encode_frame(&request.to_bytes(), &mut expected).unwrap();
        let frame = frame_with(|out| request.encode(out)).unwrap();
        assert_eq!(frame, expected);
        assert_eq!(decode_frame(&frame).unwrap(), request.to_bytes().as_slice());
    }

    #[test]
    fn frame_with_refuses_empty_and_oversized_payloads() {
        assert!(matches!(
            frame_with(|_| {}),
            Err(DecodeError::InvalidField(_))
        ));
        let over = MAX_FRAME_LEN + 1;
        assert!(matches!(
            frame_with(|out| out.resize(out.len() + over, 0)),
            Err(DecodeError::FrameTooLarge(n)) if n == over as u64
        ));
    }
}
