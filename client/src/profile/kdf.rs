//! The passphrase and what argon2id makes of it.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::Error;

/// argon2id memory cost for new profiles: 256 MiB. Four times the floor
/// OWASP gives for argon2id, about 0.7 s on the slow laptops organizers
/// carry; an attacker guessing passphrases pays as much per guess.
pub const KDF_MEMORY_KIB: u32 = 256 * 1024;
/// argon2id passes over memory for new profiles (RFC 9106's second
/// recommended option uses 3).
pub const KDF_TIME: u32 = 3;
/// argon2id lanes: 1, since the client derives on one thread.
pub const KDF_LANES: u32 = 1;

/// The weakest parameters a store (format 2) header may name: 64 MiB,
/// one pass. A header below this was not written by this client, so it is
/// refused before any work is done.
const KDF_MIN_MEMORY_KIB: u32 = 64 * 1024;
/// The strongest parameters a format 2 header may name (4 GiB, 16 passes,
/// 16 lanes): bounds the work a tampered header can make us do.
const KDF_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const KDF_MAX_TIME: u32 = 16;
const KDF_MAX_LANES: u32 = 16;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub time: u32,
    /// Lanes.
    pub lanes: u32,
}

impl KdfParams {
    /// The parameters every profile `enlace init` makes has.
    pub const DEFAULT: Self = Self {
        memory_kib: KDF_MEMORY_KIB,
        time: KDF_TIME,
        lanes: KDF_LANES,
    };

    /// The weakest parameters a store may have (64 MiB, one pass): only
    /// in-process tests make such profiles (`Env::kdf`), to stay fast.
    pub const WEAKEST: Self = Self {
        memory_kib: KDF_MIN_MEMORY_KIB,
        time: 1,
        lanes: 1,
    };

    /// Whether a format 2 header may name these.
    pub(super) fn in_bounds(self) -> bool {
        (KDF_MIN_MEMORY_KIB..=KDF_MAX_MEMORY_KIB).contains(&self.memory_kib)
            && (1..=KDF_MAX_TIME).contains(&self.time)
            && (1..=KDF_MAX_LANES).contains(&self.lanes)
    }
}

/// A passphrase, zeroized on drop.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The passphrase text.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters.
    pub fn char_count(&self) -> usize {
        self.0.chars().count()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(..)")
    }
}

/// A key derived from a passphrase, zeroized on drop.
pub(super) struct Kek(pub(super) Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// argon2id(passphrase, salt) with `params` (RFC 9106, version 0x13), 32
/// bytes.
pub(super) fn derive(
    passphrase: &Passphrase,
    salt: &[u8],
    params: KdfParams,
) -> Result<Kek, Error> {
    let params = Params::new(params.memory_kib, params.time, params.lanes, Some(32))
        .map_err(|_| Error::CannotOpen)?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
        .map_err(|e| match e {
            argon2::Error::OutOfMemory => Error::OutOfMemory,
            _ => Error::CannotOpen,
        })?;
    Ok(Kek(key))
}

const _: () = assert!(KDF_MEMORY_KIB >= 64 * 1024 && KDF_TIME >= 3);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_and_weakest_params_are_accepted_on_read() {
        assert!(KdfParams::DEFAULT.in_bounds());
        assert!(KdfParams::WEAKEST.in_bounds());
    }
}
