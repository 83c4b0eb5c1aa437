//! The data file: the profile, padded to a size bucket and sealed under
//! the data key of one generation.
//!
//! ```text
//! profile.data:
//!   nonce [24] | XChaCha20-Poly1305(data key, nonce,
//!                                   aad = version u8 | generation u64,
//!                                   length u32 | postcard(Profile) | zeros)
//! ```
//!
//! The plaintext is padded with zeros to 64 KiB, or the next power of two
//! above that, so the file's size says only in which bucket the profile's
//! size lies, not how long its history is. Every save writes a new
//! generation under a fresh random data key.

use chacha20poly1305::aead::{Aead, AeadInOut, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::model::Profile;
use crate::error::Error;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The smallest bucket: 64 KiB of plaintext.
pub(super) const MIN_BUCKET: usize = 64 * 1024;
/// Largest data file read or written: 1 GiB of plaintext. A bigger
/// profile is not ours.
pub(super) const MAX_BUCKET: usize = 1 << 30;
/// Largest data file read, in bytes.
pub(super) const MAX_DATA_FILE: u64 = (NONCE_LEN + MAX_BUCKET + TAG_LEN) as u64;

/// The plaintext size for `len` bytes of profile (and its length prefix).
pub(super) fn bucket(len: usize) -> Option<usize> {
    let needed = len.checked_add(4)?;
    let size = needed.max(MIN_BUCKET).checked_next_power_of_two()?;
    (size <= MAX_BUCKET).then_some(size)
}

fn aad(version: u8, generation: u64) -> [u8; 9] {
    let mut aad = [0u8; 9];
    aad[0] = version;
    aad[1..].copy_from_slice(&generation.to_be_bytes());
    aad
}

/// Seals `profile` as the data file of `generation`.
pub(super) fn seal(
    profile: &Profile,
    key: &[u8; 32],
    version: u8,
    generation: u64,
    rng: &mut impl CryptoRng,
) -> Result<Vec<u8>, Error> {
    let size = postcard::experimental::serialized_size(profile).map_err(|_| Error::Encode)?;
    let padded = bucket(size).ok_or(Error::Encode)?;
    // One buffer of the final size, never reallocated (no stray copies of
    // the plaintext), zeroized when dropped.
    let mut plain = Zeroizing::new(vec![0u8; padded]);
    let len = u32::try_from(size).map_err(|_| Error::Encode)?;
    plain
        .get_mut(..4)
        .ok_or(Error::Encode)?
        .copy_from_slice(&len.to_be_bytes());
    postcard::to_slice(profile, plain.get_mut(4..4 + size).ok_or(Error::Encode)?)
        .map_err(|_| Error::Encode)?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &aad(version, generation),
            },
        )
        .map_err(|_| Error::Encode)?;
    let mut file = Vec::with_capacity(NONCE_LEN + sealed.len());
    file.extend_from_slice(&nonce);
    file.extend_from_slice(&sealed);
    Ok(file)
}

/// Spends on `file` the work a successful [`open`] does (a zeroizing copy,
/// the authenticator and the keystream over all of it) without a key that
/// opens it: the duress open calls it where a normal open decrypts, so the
/// two take the same time.
pub(super) fn same_work_as_open(file: &[u8], key: &[u8; 32]) {
    let Some((nonce, sealed)) = file.split_first_chunk::<NONCE_LEN>() else {
        return;
    };
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let body = sealed
        .get(..sealed.len().saturating_sub(TAG_LEN))
        .unwrap_or_default();
    let mut buffer = Zeroizing::new(Vec::with_capacity(sealed.len()));
    buffer.extend_from_slice(body);
    let _ = cipher.encrypt_in_place(&XNonce::from(*nonce), &[], &mut *buffer);
}

/// Opens a data file sealed under `key` for `generation`. Every failure is
/// [`Error::CannotOpen`]. Decrypts in place, in a zeroizing buffer.
pub(super) fn open(
    file: &[u8],
    key: &[u8; 32],
    version: u8,
    generation: u64,
) -> Result<Profile, Error> {
    let (nonce, sealed) = file
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(Error::CannotOpen)?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let mut plain = Zeroizing::new(sealed.to_vec());
    cipher
        .decrypt_in_place(
            &XNonce::from(*nonce),
            &aad(version, generation),
            &mut *plain,
        )
        .map_err(|_| Error::CannotOpen)?;
    let len = u32::from_be_bytes(*plain.first_chunk::<4>().ok_or(Error::CannotOpen)?);
    let body = usize::try_from(len)
        .ok()
        .and_then(|len| plain.get(4..4 + len))
        .ok_or(Error::CannotOpen)?;
    // Authenticated bytes that do not parse were written by a client
    // with another idea of the format: still "cannot open".
    postcard::from_bytes(body).map_err(|_| Error::CannotOpen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ContactId, HistoryEntry};

    #[test]
    fn buckets() {
        assert_eq!(bucket(0), Some(MIN_BUCKET));
        assert_eq!(bucket(MIN_BUCKET - 4), Some(MIN_BUCKET));
        assert_eq!(bucket(MIN_BUCKET - 3), Some(2 * MIN_BUCKET));
        assert_eq!(bucket(MAX_BUCKET - 4), Some(MAX_BUCKET));
        assert_eq!(bucket(MAX_BUCKET), None);
    }

    /// The file's size does not follow the history's length within a
    /// bucket.
    #[test]
    fn size_follows_buckets_not_history() {
        let mut rng = rand::rng();
        let mut p = Profile::new(&mut rng, 0);
        let key = [3; 32];
        let empty = seal(&p, &key, 3, 1, &mut rng).unwrap();
        for i in 0..100u8 {
            p.history.push(HistoryEntry::for_tests(
                ContactId(1),
                i,
                0,
                "una reunión el jueves a las seis",
            ));
        }
        let full = seal(&p, &key, 3, 1, &mut rng).unwrap();
        assert_eq!(empty.len(), full.len());
        assert_eq!(full.len(), 24 + MIN_BUCKET + 16);
        let back = open(&full, &key, 3, 1).unwrap();
        assert_eq!(back.history.len(), 100);
        // Another key, generation or version: cannot open.
        assert!(matches!(
            open(&full, &[4; 32], 3, 1),
            Err(Error::CannotOpen)
        ));
        assert!(matches!(open(&full, &key, 3, 2), Err(Error::CannotOpen)));
        assert!(matches!(open(&full, &key, 0x83, 1), Err(Error::CannotOpen)));
        assert!(matches!(
            open(&full[..100], &key, 3, 1),
            Err(Error::CannotOpen)
        ));
    }
}
