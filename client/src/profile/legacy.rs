//! Reading the stores of formats 1 and 2 (one file, `profile.enlace`),
//! which the first open migrates to format 3.
//!
//! ```text
//! profile.enlace:
//!   magic "ENLACEPF" (8) | format version u16 (1 or 2) | kdf id u8 (1 = argon2id v1.3)
//!   | m_cost KiB u32 | t_cost u32 | p_cost u32 | salt [32] | nonce [24]
//!   | XChaCha20-Poly1305(key, nonce, aad = every byte before the ciphertext,
//!                        postcard(Profile))
//! ```
//!
//! Big-endian; `key = argon2id(passphrase, salt)` with the header's
//! parameters, which must lie within bounds before any work is done.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::kdf::{KdfParams, Kek, Passphrase, derive};
use super::model::Profile;
use super::upgrade;
use crate::error::Error;

const MAGIC: &[u8; 8] = b"ENLACEPF";
/// The newest format of this layout.
const LAST_FORMAT: u16 = 2;
const OLDEST_FORMAT: u16 = 1;
const KDF_ARGON2ID_V13: u8 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 8 + 2 + 1 + 4 + 4 + 4 + SALT_LEN + NONCE_LEN;

/// A format 1 or 2 store's header.
#[derive(Clone, Copy, Debug)]
pub(super) struct Header {
    version: u16,
    /// The argon2id parameters.
    pub(super) params: KdfParams,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
}

fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], Error> {
    let (head, rest) = r.split_first_chunk::<N>().ok_or(Error::CannotOpen)?;
    *r = rest;
    Ok(*head)
}

impl Header {
    /// Parses a header. A version newer than format 2 that still has the
    /// magic is named (the user should upgrade); anything else wrong fails
    /// like a wrong passphrase.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = bytes;
        let magic: [u8; 8] = take(&mut r)?;
        if &magic != MAGIC {
            return Err(Error::CannotOpen);
        }
        let version = u16::from_be_bytes(take(&mut r)?);
        if version > LAST_FORMAT {
            return Err(Error::NewerStore(version));
        }
        if version < OLDEST_FORMAT {
            return Err(Error::CannotOpen);
        }
        let [kdf] = take::<1>(&mut r)?;
        if kdf != KDF_ARGON2ID_V13 {
            return Err(Error::CannotOpen);
        }
        let params = KdfParams {
            memory_kib: u32::from_be_bytes(take(&mut r)?),
            time: u32::from_be_bytes(take(&mut r)?),
            lanes: u32::from_be_bytes(take(&mut r)?),
        };
        if !params.in_bounds() {
            return Err(Error::CannotOpen);
        }
        Ok(Self {
            version,
            params,
            salt: take(&mut r)?,
            nonce: take(&mut r)?,
        })
    }

    /// The argon2id run.
    pub(super) fn derive(&self, passphrase: &Passphrase) -> Result<Kek, Error> {
        derive(passphrase, &self.salt, self.params)
    }

    /// Decrypts the store `file` (this header's) and reads its profile as
    /// today's (`super::upgrade`).
    pub(super) fn decrypt(&self, kek: &Kek, file: &[u8]) -> Result<Profile, Error> {
        let (aad, ciphertext) = file.split_at_checked(HEADER_LEN).ok_or(Error::CannotOpen)?;
        let cipher = XChaCha20Poly1305::new(&(*kek.0).into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(self.nonce),
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .map_err(|_| Error::CannotOpen)?,
        );
        upgrade::decode(self.version, &plain)
    }
}

/// Writes `profile` as a format 1 or 2 store would have (for tests of the
/// migration): the postcard without the fields later formats appended.
/// Only for profiles without nuclei, whose encoding format 3 changed.
#[cfg(test)]
pub(super) fn encode_format_2(
    profile: &Profile,
    passphrase: &Passphrase,
    params: KdfParams,
    version: u16,
) -> Vec<u8> {
    let salt: [u8; SALT_LEN] = rand::random();
    let nonce = [5u8; NONCE_LEN];
    let mut file = Vec::with_capacity(HEADER_LEN);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&version.to_be_bytes());
    file.push(KDF_ARGON2ID_V13);
    file.extend_from_slice(&params.memory_kib.to_be_bytes());
    file.extend_from_slice(&params.time.to_be_bytes());
    file.extend_from_slice(&params.lanes.to_be_bytes());
    file.extend_from_slice(&salt);
    file.extend_from_slice(&nonce);
    assert!(
        profile.nuclei.is_empty(),
        "format 2 nuclei are encoded otherwise"
    );
    let v3 = postcard::to_allocvec(profile).unwrap_or_default();
    // Format 3 appended the timers and their notices (two empty vectors).
    let cut = 2 + if version == 1 {
        upgrade::FORMAT_1_TAIL.len()
    } else {
        0
    };
    let plain = v3.get(..v3.len() - cut).unwrap_or_default();
    let kek = derive(passphrase, &salt, params).unwrap_or_else(|_| Kek(Zeroizing::new([0; 32])));
    let cipher = XChaCha20Poly1305::new(&(*kek.0).into());
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plain,
                aad: &file,
            },
        )
        .unwrap_or_default();
    file.extend_from_slice(&ct);
    file
}
