//! Every bound the protocol enforces, each with the reason for its value.
//!
//! Relays and clients must reject input beyond these bounds before they
//! allocate for it.

/// Size of an ordinary chat envelope body: room for about 1,900 bytes of
/// text after the end-to-end overhead, small enough that a relay holding
/// 128 envelopes per mailbox for thousands of mailboxes stays in memory
/// budgets of a small VPS. Every chat message uses exactly this size.
pub const BODY_SMALL: usize = 2048;

/// Size of a medium envelope body: the session handshake (an ML-KEM-768
/// ciphertext is 1,088 bytes) and short documents.
pub const BODY_MEDIUM: usize = 16 * 1024;

/// Size of the largest envelope body: file chunks. 64 KiB keeps one frame
/// well inside QUIC flow-control windows.
pub const BODY_LARGE: usize = 64 * 1024;

/// Bytes of an envelope around its body: version, send id, message id,
/// timestamp, size class and signature.
pub const ENVELOPE_OVERHEAD: usize = 1 + 16 + 16 + 4 + 1 + 64;

/// The largest envelope on the wire.
pub const MAX_ENVELOPE_LEN: usize = ENVELOPE_OVERHEAD + BODY_LARGE;

/// Largest frame payload accepted from the network: the largest envelope
/// plus 1 KiB for command headers and one more sealing layer (relay
/// forwarding wraps a send in an extra AEAD layer). Frames claiming more are
/// rejected before any allocation.
pub const MAX_FRAME_LEN: usize = MAX_ENVELOPE_LEN + 1024;

/// Forward ids one status query may name: a client asks about what it
/// queued since it last looked, a few dozen at most; the answer stays tiny.
pub const MAX_FORWARD_STATUS_IDS: usize = 64;

/// Bytes of the frame length prefix (big-endian `u32`).
pub const FRAME_HEADER_LEN: usize = 4;

/// Longest relay host name accepted in an address: the DNS limit (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// Iterations of SHA-512 per identity when computing a safety number: the
/// same work factor as Signal's numeric fingerprints, which makes searching
/// for a colliding key costly while staying instant for a person.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;

/// Message keys a receiver derives ahead in one chain to reach a counter it
/// has not seen: out-of-order delivery over a store-and-forward relay rarely
/// reorders more than a few dozen messages, and a thousand keeps a peer
/// that sends a huge counter from making us compute and store keys. A
/// larger jump is rejected before any key is derived. (libsignal uses 25,000
/// for high-volume clients; organizers exchange far fewer messages.)
pub const MAX_FORWARD_JUMPS: u32 = 1000;

/// Skipped message keys kept in total across all chains of a session: two
/// full forward jumps, so a peer's messages lost across one DH ratchet step
/// stay decryptable, while the state stays under about 150 KiB. When full,
/// the oldest keys are dropped first.
pub const MAX_SKIPPED_KEYS: usize = 2000;

/// Ratchet steps whose skipped keys are kept: a message delayed past 32
/// changes of speaker is given up. Bounds the header keys tried on each
/// incoming message (one AEAD open of 41 bytes each). libsignal keeps 5.
pub const MAX_SKIPPED_CHAINS: usize = 32;

/// Longest invitation code accepted as text, including separators: a
/// maximal binary invitation is about 2,600 base32 characters, and a person
/// may add a space or dash after every character. Longer input is refused
/// before decoding.
pub const MAX_INVITATION_TEXT_LEN: usize = 8192;
