//! Relay-to-relay forwarding: a destination relay's signed forwarding key,
//! and the sealing of a forwarded send to it.
//!
//! Every relay keeps a long-term X25519 *forwarding key* and publishes it as
//! a [`RelayKey`]: the relay's ed25519 identity key (whose
//! [`relay fingerprint`](crate::keys::PublicKey::relay_fingerprint) is the pinned
//! fingerprint of its address), the X25519 public key and an expiry, signed
//! by the identity key over
//! `"enlace/v1/relay-key" || 0x00 || relay_key || forward_dh || expires`.
//!
//! A client that wants to reach a mailbox on relay D through its home relay
//! H seals the inner `Send` command to D:
//!
//! ```text
//! eph          = fresh X25519 key pair
//! key          = HKDF-SHA256(salt = none, ikm = X25519(eph, forward_dh),
//!                            info = "enlace/v1/forward-key" || 0x00 || eph_pub
//!                                   || forward_dh || destination_fingerprint)
//! sealed       = eph_pub (32) || nonce (24)
//!                || XChaCha20-Poly1305(key, nonce, inner command,
//!                      aad = "enlace/v1/forward" || 0x00 || destination_fingerprint)
//! ```
//!
//! H learns only D (it must connect there); D learns the envelope but only
//! H's address. The sealed length is a fixed function of the envelope's
//! size class ([`sealed_len`]), so forwarded sizes stay bucketed.

mod key;
mod seal;
mod size;
#[cfg(test)]
mod tests;

pub use key::{RELAY_KEY_LEN, RelayKey};
pub use seal::{ForwardKey, forward_id_for, seal_send};
pub use size::{FORWARD_SEAL_OVERHEAD, is_sealed_len, sealed_len};
