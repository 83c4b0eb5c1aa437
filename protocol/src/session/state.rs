//! An established session: the ratchet state with both identities, what
//! it encrypts and decrypts, and its serialized form for the client's store.

use std::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::ratchet::{self, Ratchet};
use crate::Error;
use crate::codec::Reader;
use crate::envelope::BodySize;
use crate::keys::{PUBLIC_KEY_LEN, PublicKey, SafetyNumber};

/// Bytes a chat message adds to its text: the encrypted header (81), the
/// body's authentication tag (16) and the length prefix of the padding (2).
pub const MESSAGE_OVERHEAD: usize = ratchet::MESSAGE_OVERHEAD;

/// The longest plaintext one chat message ([`BodySize::Small`]) carries.
/// Split longer text into several messages.
pub const MAX_PLAINTEXT_LEN: usize = BodySize::Small.len() - MESSAGE_OVERHEAD;

/// The version of [`Session::to_bytes`].
pub const SESSION_STATE_VERSION: u8 = 1;

/// An end-to-end session with one contact.
///
/// Encrypt and decrypt change the state: store [`Session::to_bytes`] after
/// each call that succeeded (or before the ciphertext leaves the device),
/// or a restart reuses keys of an older state.
pub struct Session {
    local: PublicKey,
    remote: PublicKey,
    ad: [u8; 32],
    ratchet: Ratchet,
}

impl Session {
    pub(super) fn new(local: PublicKey, remote: PublicKey, ad: [u8; 32], ratchet: Ratchet) -> Self {
        Self {
            local,
            remote,
            ad,
            ratchet,
        }
    }

    /// Encrypts up to [`MAX_PLAINTEXT_LEN`] bytes into a body of exactly
    /// [`BodySize::Small`] bytes for an envelope to the contact. Draws 24
    /// bytes (the header nonce) from `rng`.
    pub fn encrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, Error> {
        self.encrypt_sized(rng, plaintext, BodySize::Small)
    }

    /// Encrypts into a body of exactly `size` bytes, for content larger
    /// than a chat message (up to `size.len() - MESSAGE_OVERHEAD` bytes).
    pub fn encrypt_sized(
        &mut self,
        rng: &mut impl CryptoRng,
        plaintext: &[u8],
        size: BodySize,
    ) -> Result<Vec<u8>, Error> {
        self.ratchet.encrypt(rng, &self.ad, plaintext, size.len())
    }

    /// Decrypts the body of an envelope from the contact (of any of the
    /// fixed sizes). Messages may come
    /// out of order within [`MAX_FORWARD_JUMPS`](crate::limits::MAX_FORWARD_JUMPS);
    /// each decrypts at most once. Any failure (tampered, replayed, too far
    /// ahead, another session's) is [`Error::VerificationFailed`] and leaves
    /// the session unchanged; only an authentic message of a header version
    /// this crate does not speak is [`Error::UnsupportedVersion`] (also
    /// leaving it unchanged). Draws 32 bytes from `rng` when the contact has
    /// started a new ratchet step.
    pub fn decrypt(
        &mut self,
        rng: &mut impl CryptoRng,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        if BodySize::fitting(body.len()).is_none_or(|s| s.len() != body.len()) {
            return Err(Error::VerificationFailed);
        }
        self.ratchet.decrypt(rng, &self.ad, body)
    }

    /// Your own identity key.
    pub fn local_identity(&self) -> &PublicKey {
        &self.local
    }

    /// The contact's identity key, as authenticated by the handshake.
    pub fn remote_identity(&self) -> &PublicKey {
        &self.remote
    }

    /// The safety number to compare with the contact in person.
    pub fn safety_number(&self) -> SafetyNumber {
        SafetyNumber::new(&self.local, &self.remote)
    }

    /// Serializes the whole state (including secret keys) for the client's
    /// encrypted store: version u8, local identity `[32]`, remote identity
    /// `[32]`, associated data `[32]`, ratchet state (`docs/protocol.md` section 11).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        // Exactly sized: a Vec that grows frees its old buffer unzeroized.
        let len = 1 + 3 * PUBLIC_KEY_LEN + self.ratchet.encoded_len();
        let mut out = Zeroizing::new(Vec::with_capacity(len));
        out.push(SESSION_STATE_VERSION);
        out.extend_from_slice(self.local.as_bytes());
        out.extend_from_slice(self.remote.as_bytes());
        out.extend_from_slice(&self.ad);
        self.ratchet.encode(&mut out);
        debug_assert_eq!(out.len(), len);
        out
    }

    /// Restores a session from [`Session::to_bytes`]. Bounded and total:
    /// counts are checked against the limits before anything is allocated.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SESSION_STATE_VERSION {
            return Err(Error::UnsupportedVersion(u16::from(version)));
        }
        let local = PublicKey::from_bytes(&r.array::<PUBLIC_KEY_LEN>()?)?;
        let remote = PublicKey::from_bytes(&r.array::<PUBLIC_KEY_LEN>()?)?;
        let ad = r.array()?;
        let ratchet = Ratchet::decode_from(&mut r)?;
        r.finish()?;
        Ok(Self::new(local, remote, ad, ratchet))
    }

    /// Skipped message keys held for late messages.
    pub fn skipped_keys(&self) -> usize {
        self.ratchet.skipped_len()
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("ratchet", &self.ratchet)
            .finish_non_exhaustive()
    }
}
