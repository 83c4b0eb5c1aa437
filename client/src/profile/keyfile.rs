//! The key file: the argon2id salt and three key slots of fixed size,
//! always overwritten in place.
//!
//! ```text
//! profile.key, KEY_FILE_LEN (1,143) bytes:
//!   version u8 | salt [32] | slot 0 | slot 1 | slot 2      (slots of SLOT_LEN bytes)
//!   slot    = nonce [24] | XChaCha20-Poly1305(kek, nonce,
//!                            aad = version | salt | slot index u8, content)
//!   content = generation u64 | data key [32] | relay len u16 | relay [288]
//! ```
//!
//! `kek = argon2id(passphrase, salt)` with the parameters the version byte
//! stands for ([`params_for`]): the header names no parameters and holds
//! no magic, so every byte but the first looks random. Slots 0 and 1 hold
//! the data key of the profile (written alternately, the newer generation
//! in the slot not in use, the other then overwritten with random bytes);
//! slot 2 opens only with the duress passphrase, and holds the home relay
//! for the empty profile a duress open leaves (`store`). A slot in no use
//! is random bytes, the same length, so the file does not tell whether a
//! duress passphrase is set.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use enlace_protocol::address::RelayAddress;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::kdf::{KdfParams, Kek, Passphrase, derive};
use crate::error::Error;

/// The store format this client writes: key file and padded data file.
pub(super) const FORMAT: u8 = 3;
/// Version byte bit: the weakest argon2id settings a store may have (64
/// MiB, one pass), which only in-process tests ask for.
const WEAK_KDF: u8 = 0x80;

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longest relay address in binary form: fingerprint, host length, host
/// (at most 253 bytes), port.
const RELAY_ROOM: usize = 32 + 1 + 253 + 2;
const CONTENT_LEN: usize = 8 + 32 + 2 + RELAY_ROOM;
/// Bytes of one slot.
pub(super) const SLOT_LEN: usize = NONCE_LEN + CONTENT_LEN + TAG_LEN;
/// Bytes of the key file.
pub(super) const KEY_FILE_LEN: usize = 1 + SALT_LEN + 3 * SLOT_LEN;

/// The slots of the profile's data key, used alternately.
pub(super) const REAL_SLOTS: [usize; 2] = [0, 1];
/// The duress slot.
pub(super) const DURESS_SLOT: usize = 2;

/// The version byte for a store with these parameters, if it has one.
pub(super) fn version_for(params: KdfParams) -> Option<u8> {
    if params == KdfParams::DEFAULT {
        Some(FORMAT)
    } else if params == KdfParams::WEAKEST {
        Some(FORMAT | WEAK_KDF)
    } else {
        None
    }
}

/// The parameters a version byte stands for. A version from a newer
/// client is named; anything else fails like a wrong passphrase.
pub(super) fn params_for(version: u8) -> Result<KdfParams, Error> {
    match version {
        FORMAT => Ok(KdfParams::DEFAULT),
        v if v == FORMAT | WEAK_KDF => Ok(KdfParams::WEAKEST),
        v if (v & !WEAK_KDF) > FORMAT && (v & !WEAK_KDF) < 0x20 => {
            Err(Error::NewerStore(u16::from(v & !WEAK_KDF)))
        }
        _ => Err(Error::CannotOpen),
    }
}

/// What a slot holds.
pub(super) struct SlotContent {
    /// Counts the saves of the profile: the newer slot has the larger.
    pub(super) generation: u64,
    /// The key of the data file written with this slot.
    pub(super) data_key: Zeroizing<[u8; 32]>,
    /// The duress slot's home relay for the empty profile.
    pub(super) relay: Option<RelayAddress>,
}

impl std::fmt::Debug for SlotContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SlotContent(..)")
    }
}

/// The key file's bytes, as read or about to be written.
#[derive(Clone)]
pub(super) struct KeyFile {
    bytes: Zeroizing<[u8; KEY_FILE_LEN]>,
}

impl KeyFile {
    /// A new key file: a random salt, every slot random bytes.
    pub(super) fn new(version: u8, rng: &mut impl CryptoRng) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_FILE_LEN]);
        rng.fill_bytes(bytes.as_mut());
        if let Some(first) = bytes.first_mut() {
            *first = version;
        }
        Self { bytes }
    }

    /// Reads a key file: the length must be exact and the version known.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: [u8; KEY_FILE_LEN] = bytes.try_into().map_err(|_| Error::CannotOpen)?;
        let file = Self {
            bytes: Zeroizing::new(bytes),
        };
        params_for(file.version())?;
        Ok(file)
    }

    /// All of it.
    pub(super) fn as_bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// The version byte.
    pub(super) fn version(&self) -> u8 {
        self.bytes.first().copied().unwrap_or_default()
    }

    /// The salt.
    pub(super) fn salt(&self) -> &[u8] {
        self.bytes.get(1..1 + SALT_LEN).unwrap_or_default()
    }

    /// Whether `other` has the same version and salt (the same profile).
    pub(super) fn same_profile(&self, other: &Self) -> bool {
        self.version() == other.version() && self.salt() == other.salt()
    }

    /// Derives the key of `passphrase` for this file: the argon2id run.
    pub(super) fn derive(&self, passphrase: &Passphrase) -> Result<Kek, Error> {
        derive(passphrase, self.salt(), params_for(self.version())?)
    }

    fn range(index: usize) -> std::ops::Range<usize> {
        let start = 1 + SALT_LEN + index * SLOT_LEN;
        start..start + SLOT_LEN
    }

    fn aad(&self, index: usize) -> Vec<u8> {
        let header = self.bytes.get(..1 + SALT_LEN).unwrap_or_default();
        let index = u8::try_from(index).unwrap_or(u8::MAX);
        [header, &[index]].concat()
    }

    /// Opens slot `index` with `kek`; `None` if it does not open.
    pub(super) fn unwrap(&self, kek: &Kek, index: usize) -> Option<SlotContent> {
        let slot = self.bytes.get(Self::range(index))?;
        let (nonce, sealed) = slot.split_first_chunk::<NONCE_LEN>()?;
        let cipher = XChaCha20Poly1305::new(&(*kek.0).into());
        let aad = self.aad(index);
        let content = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(*nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .ok()?,
        );
        let generation = u64::from_be_bytes(*content.first_chunk::<8>()?);
        let mut data_key = Zeroizing::new([0u8; 32]);
        data_key.copy_from_slice(content.get(8..40)?);
        let relay_len = usize::from(u16::from_be_bytes(*content.get(40..42)?.first_chunk()?));
        let relay = match relay_len {
            0 => None,
            n => RelayAddress::decode(content.get(42..42 + n)?).ok(),
        };
        Some(SlotContent {
            generation,
            data_key,
            relay,
        })
    }

    /// Seals `content` into slot `index` with `kek` (a fresh nonce).
    pub(super) fn wrap(
        &mut self,
        kek: &Kek,
        index: usize,
        content: &SlotContent,
        rng: &mut impl CryptoRng,
    ) -> Result<(), Error> {
        let mut relay = Zeroizing::new(Vec::with_capacity(RELAY_ROOM));
        if let Some(address) = &content.relay {
            address.encode(&mut relay);
            if relay.len() > RELAY_ROOM {
                relay.clear();
            }
        }
        let relay_len = u16::try_from(relay.len()).map_err(|_| Error::Encode)?;
        let mut plain = Zeroizing::new(Vec::with_capacity(CONTENT_LEN));
        plain.extend_from_slice(&content.generation.to_be_bytes());
        plain.extend_from_slice(content.data_key.as_ref());
        plain.extend_from_slice(&relay_len.to_be_bytes());
        plain.extend_from_slice(&relay);
        plain.resize(CONTENT_LEN, 0);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(&(*kek.0).into());
        let aad = self.aad(index);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Encode)?;
        let slot = self
            .bytes
            .get_mut(Self::range(index))
            .ok_or(Error::Encode)?;
        let (head, tail) = slot.split_at_mut(NONCE_LEN);
        head.copy_from_slice(&nonce);
        if tail.len() != sealed.len() {
            return Err(Error::Encode);
        }
        tail.copy_from_slice(&sealed);
        Ok(())
    }

    /// Overwrites slot `index` with random bytes: whatever key it held is
    /// gone from this file.
    pub(super) fn erase(&mut self, index: usize, rng: &mut impl CryptoRng) {
        if let Some(slot) = self.bytes.get_mut(Self::range(index)) {
            rng.fill_bytes(slot);
        }
    }
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyFile(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned())
    }

    fn content(generation: u64) -> SlotContent {
        SlotContent {
            generation,
            data_key: Zeroizing::new([generation as u8; 32]),
            relay: None,
        }
    }

    #[test]
    fn layout_and_versions() {
        assert_eq!(SLOT_LEN, 370);
        assert_eq!(KEY_FILE_LEN, 1_143);
        assert_eq!(version_for(KdfParams::DEFAULT), Some(3));
        assert_eq!(version_for(KdfParams::WEAKEST), Some(0x83));
        let other = KdfParams {
            memory_kib: 128 * 1024,
            ..KdfParams::DEFAULT
        };
        assert_eq!(version_for(other), None);
        assert!(matches!(params_for(4), Err(Error::NewerStore(4))));
        assert!(matches!(params_for(0x84), Err(Error::NewerStore(4))));
        for v in [0, 1, 2, 0x82, 0x45, 0xff] {
            assert!(matches!(params_for(v), Err(Error::CannotOpen)), "{v}");
        }
    }

    #[test]
    fn slots_open_only_with_their_key_and_index() {
        let mut rng = rand::rng();
        let mut file = KeyFile::new(FORMAT | WEAK_KDF, &mut rng);
        let kek = file.derive(&pass("correct horse")).unwrap();
        let other = file.derive(&pass("wrong horse")).unwrap();
        for i in 0..3 {
            assert!(file.unwrap(&kek, i).is_none());
        }
        file.wrap(&kek, 1, &content(7), &mut rng).unwrap();
        let got = file.unwrap(&kek, 1).unwrap();
        assert_eq!((got.generation, *got.data_key), (7, [7; 32]));
        assert!(file.unwrap(&other, 1).is_none());
        // Moved to another index, the same bytes do not open.
        let mut moved = file.clone();
        let slot = file.bytes[KeyFile::range(1)].to_vec();
        moved.bytes[KeyFile::range(0)].copy_from_slice(&slot);
        assert!(moved.unwrap(&kek, 0).is_none());
        // Any changed byte of the header or the slot closes it.
        for i in [0, 1, 32, KeyFile::range(1).start, KeyFile::range(1).end - 1] {
            let mut bad = file.clone();
            bad.bytes[i] ^= 1;
            assert!(bad.unwrap(&kek, 1).is_none(), "byte {i}");
        }
        file.erase(1, &mut rng);
        assert!(file.unwrap(&kek, 1).is_none());
        let parsed = KeyFile::parse(file.as_bytes()).unwrap();
        assert!(parsed.same_profile(&file));
        assert!(KeyFile::parse(&file.as_bytes()[1..]).is_err());
    }

    #[test]
    fn the_duress_slot_keeps_a_relay() {
        let mut rng = rand::rng();
        let mut file = KeyFile::new(FORMAT | WEAK_KDF, &mut rng);
        let kek = file.derive(&pass("duress passphrase")).unwrap();
        let host = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(host.len(), 253);
        let text = format!(
            "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@{}:4433",
            host
        );
        let relay: RelayAddress = text.parse().unwrap();
        let mut c = content(0);
        c.relay = Some(relay);
        file.wrap(&kek, DURESS_SLOT, &c, &mut rng).unwrap();
        let got = file.unwrap(&kek, DURESS_SLOT).unwrap();
        assert_eq!(got.relay.unwrap().to_string(), text);
    }
}
