//! The server's QUIC transport: its limits (docs/protocol.md 7.7), the
//! application error codes (7.8), its configuration, and writing one
//! response frame.

use std::time::Duration;

use enlace_protocol::command::{RelayError, Response};
use enlace_quic::config::{ServerLimits, SetupError};
use enlace_quic::frame::frame_with;

use crate::identity::Identity;

/// Concurrent client-opened bidirectional streams per connection. quinn
/// keeps a hash-map slot per allowed stream for the connection's whole
/// life: up to 28 fit its smallest table of 32 buckets, 32 doubled it
/// (about 1.3 KiB more per idle connection). 24 still leaves room for a
/// window of 16 pipelined sends beside the subscription and a few requests.
pub const MAX_STREAMS: u32 = 24;
/// Per-stream receive window: two of the largest frames, so one request can
/// be pipelined behind another.
pub const STREAM_RECEIVE_WINDOW: u32 = 2 * 67 * 1024;
/// Per-connection receive window (quinn's default is unbounded): bounds the
/// memory one connection can make the relay buffer across all its streams.
/// A connection gets it once one of its signature checks passed; before,
/// [`UNPROVEN_RECEIVE_WINDOW`].
pub const CONNECTION_RECEIVE_WINDOW: u32 = 1024 * 1024;
/// Receive window of a connection none of whose checks has passed yet
/// (see [`crate::policy::standing::Tally::is_proven`]). A connection that only sends garbage is
/// closed after a few failed checks; what it made the relay receive and
/// decrypt before that (packets, acks) was most of its cost: with 1 MiB, a
/// many-address attacker's 10^6 frames took honest p99 to 5x its baseline,
/// with 8 KiB to 1.3x. Honest first requests are small; a first-contact
/// `Send` of a 64 KiB envelope still goes through, a window update at a time.
pub const UNPROVEN_RECEIVE_WINDOW: u32 = 8 * 1024;
/// Per-connection send buffer.
pub const SEND_WINDOW: u64 = 1024 * 1024;
/// Streams a connection may break (malformed frames) before the relay
/// closes the whole connection.
pub const MAX_MALFORMED_STREAMS: u32 = 8;
/// Application error codes (QUIC `STOP_SENDING`, `RESET_STREAM`,
/// `CONNECTION_CLOSE`), see docs/protocol.md section 7.
pub mod codes {
    use quinn::VarInt;
    /// Connection closed because the relay is shutting down.
    pub const SHUTDOWN: VarInt = VarInt::from_u32(0);
    /// Too many malformed streams on a connection.
    pub const PROTOCOL_VIOLATION: VarInt = VarInt::from_u32(1);
    /// A stream stopped after a malformed or oversized frame.
    pub const STREAM_MALFORMED: VarInt = VarInt::from_u32(2);
    /// Too many requests refused with `Auth` on a connection.
    pub const TOO_MANY_AUTH_FAILURES: VarInt = VarInt::from_u32(3);
    /// A connection closed by the client normally.
    pub const CLIENT_DONE: VarInt = VarInt::from_u32(0);
}

/// The relay's QUIC server configuration: its certificate and the
/// transport limits of this module.
pub fn server_config(
    identity: &Identity,
    idle_timeout_secs: u64,
) -> Result<quinn::ServerConfig, SetupError> {
    enlace_quic::config::server_config(
        identity.cert().clone(),
        identity.pkcs8(),
        &ServerLimits {
            max_streams: MAX_STREAMS,
            stream_receive_window: STREAM_RECEIVE_WINDOW,
            receive_window: UNPROVEN_RECEIVE_WINDOW,
            send_window: SEND_WINDOW,
            idle_timeout: Duration::from_secs(idle_timeout_secs),
        },
    )
}

/// Writes `response` as one frame; false if the stream is gone.
pub(crate) async fn write(send: &mut quinn::SendStream, response: &Response) -> bool {
    // A response too large for a frame cannot happen (the protocol's limits
    // bound every answer); should one, the client is told `Internal`.
    let frame = frame_with(|out| response.encode(out))
        .or_else(|_| frame_with(|out| Response::Error(RelayError::Internal).encode(out)));
    match frame {
        Ok(frame) => send.write_all(&frame).await.is_ok(),
        Err(_) => false,
    }
}
