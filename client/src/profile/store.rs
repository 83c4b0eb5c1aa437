//! The encrypted profile store: one file that holds everything the client
//! keeps, sealed under a key derived from the passphrase.
//!
//! ```text
//! profile.enlace:
//!   magic "ENLACEPF" (8) | format version u16 | kdf id u8 (1 = argon2id v1.3)
//!   | m_cost KiB u32 | t_cost u32 | p_cost u32 | salt [32] | nonce [24]
//!   | XChaCha20-Poly1305(key, nonce, aad = every byte before the ciphertext,
//!                        postcard(Profile))
//! ```
//!
//! All integers are big-endian. The key is argon2id(passphrase, salt) with
//! the parameters in the header; the header is the associated data, so a
//! changed parameter, salt or nonce fails exactly like a wrong passphrase.
//! The key is derived once per command run and held in [`Zeroizing`]
//! memory; each write picks a fresh random nonce (192 bits, so random
//! nonces never collide in practice).
//!
//! Writes are atomic: the new file is written beside the old one, fsynced,
//! renamed over it, and the directory is fsynced. A crash leaves either the
//! old or the new store, never a mix. A lock file serializes commands that
//! run at the same time (`listen` in one terminal, `send` in another): each
//! change is read-modify-write under the lock.
//!
//! See `docs/client.md` for why the parameters are what they are and what
//! [`wipe`] can and cannot promise.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::legacy;
use super::model::Profile;
use crate::error::Error;

/// The store file inside the profile directory.
pub const STORE_FILE: &str = "profile.enlace";
/// Where a new store is written before it is renamed over [`STORE_FILE`].
const TEMP_FILE: &str = "profile.enlace.tmp";
/// An empty file whose OS lock serializes concurrent commands.
const LOCK_FILE: &str = "lock";
/// Every file the client ever creates in a profile directory; `wipe`
/// touches these and nothing else.
const OWN_FILES: [&str; 3] = [STORE_FILE, TEMP_FILE, LOCK_FILE];

const MAGIC: &[u8; 8] = b"ENLACEPF";
/// The store format this client writes: header layout and the postcard
/// shape of [`Profile`]. Format 2 added nuclei at the end of the profile,
/// format 3 roles, consent and causal order to nuclei; format 1 and 2
/// stores are still read (`profile/legacy.rs`) and written back as format 3.
pub const FORMAT_VERSION: u16 = 3;
/// The oldest store format this client reads.
const OLDEST_FORMAT: u16 = 1;
const KDF_ARGON2ID_V13: u8 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 8 + 2 + 1 + 4 + 4 + 4 + SALT_LEN + NONCE_LEN;

/// argon2id memory cost for new profiles: 256 MiB. Four times the floor
/// OWASP gives for argon2id, about 0.7 s on the slow laptops organizers
/// carry; an attacker guessing passphrases pays as much per guess.
pub const KDF_MEMORY_KIB: u32 = 256 * 1024;
/// argon2id passes over memory for new profiles (RFC 9106's second
/// recommended option uses 3).
pub const KDF_TIME: u32 = 3;
/// argon2id lanes: 1, since the client derives on one thread.
pub const KDF_LANES: u32 = 1;

/// The weakest parameters a store header may name: 64 MiB, one pass. A
/// header below this was not written by this client, so it is refused
/// before any work is done.
const KDF_MIN_MEMORY_KIB: u32 = 64 * 1024;
/// The strongest parameters a header may name (4 GiB, 16 passes, 16
/// lanes): bounds the work a tampered header can make us do.
const KDF_MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const KDF_MAX_TIME: u32 = 16;
const KDF_MAX_LANES: u32 = 16;

/// Largest store file read: 1 GiB. A bigger file is not ours.
const MAX_STORE_LEN: u64 = 1 << 30;

/// argon2id cost parameters, as kept in a store header.
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
    /// The parameters new profiles use.
    pub const DEFAULT: Self = Self {
        memory_kib: KDF_MEMORY_KIB,
        time: KDF_TIME,
        lanes: KDF_LANES,
    };

    fn in_bounds(self) -> bool {
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

    fn as_bytes(&self) -> &[u8] {
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

/// The header fields that stay the same for the life of a profile.
#[derive(Clone, Copy)]
struct Header {
    params: KdfParams,
    salt: [u8; SALT_LEN],
}

impl Header {
    /// The header bytes with the given nonce: the AEAD's associated data.
    fn encode(&self, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.push(KDF_ARGON2ID_V13);
        out.extend_from_slice(&self.params.memory_kib.to_be_bytes());
        out.extend_from_slice(&self.params.time.to_be_bytes());
        out.extend_from_slice(&self.params.lanes.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(nonce);
        out
    }

    /// Parses a header; everything but a newer format version is reported
    /// as [`Error::CannotOpen`], like a failed decryption.
    fn decode(bytes: &[u8]) -> Result<(Self, [u8; NONCE_LEN]), Error> {
        let mut r = bytes;
        let magic: [u8; 8] = take(&mut r)?;
        if &magic != MAGIC {
            return Err(Error::CannotOpen);
        }
        let version = u16::from_be_bytes(take(&mut r)?);
        if version > FORMAT_VERSION {
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
        let salt = take(&mut r)?;
        let nonce = take(&mut r)?;
        Ok((Self { params, salt }, nonce))
    }

    fn derive_key(&self, passphrase: &Passphrase) -> Result<Zeroizing<[u8; 32]>, Error> {
        let params = Params::new(
            self.params.memory_kib,
            self.params.time,
            self.params.lanes,
            Some(32),
        )
        .map_err(|_| Error::CannotOpen)?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), &self.salt, key.as_mut())
            .map_err(|e| match e {
                argon2::Error::OutOfMemory => Error::OutOfMemory,
                _ => Error::CannotOpen,
            })?;
        Ok(key)
    }
}

fn take<const N: usize>(r: &mut &[u8]) -> Result<[u8; N], Error> {
    let (head, rest) = r.split_first_chunk::<N>().ok_or(Error::CannotOpen)?;
    *r = rest;
    Ok(*head)
}

/// An opened profile directory: its path and the key derived from the
/// passphrase. The key never leaves this struct and is zeroized on drop.
pub struct Store {
    dir: PathBuf,
    header: Header,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

/// Holds the profile lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking early just
        // lets a waiting command go on sooner.
        let _ = self.file.unlock();
    }
}

impl Store {
    /// Whether `dir` holds a profile.
    pub fn exists(dir: &Path) -> bool {
        dir.join(STORE_FILE).exists()
    }

    /// Creates a new profile in `dir` (made if missing, mode 0700) holding
    /// `profile`. Fails if a profile is already there.
    pub fn create(
        dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
        profile: &Profile,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, Error> {
        create_private_dir(dir)?;
        let store = {
            let mut salt = [0u8; SALT_LEN];
            rng.fill_bytes(&mut salt);
            let header = Header { params, salt };
            let key = header.derive_key(passphrase)?;
            Self {
                dir: dir.to_owned(),
                header,
                key,
            }
        };
        let _lock = store.lock()?;
        if Self::exists(dir) {
            return Err(Error::ProfileExists(dir.to_owned()));
        }
        store.save(profile, rng)?;
        Ok(store)
    }

    /// Opens the profile in `dir`: derives the key and checks it by
    /// decrypting the store. Returns the store and the profile as read.
    pub fn open(dir: &Path, passphrase: &Passphrase) -> Result<(Self, Profile), Error> {
        if !Self::exists(dir) {
            return Err(Error::NoProfile(dir.to_owned()));
        }
        let file = read_store_file(dir)?;
        let (header, _) = Header::decode(&file)?;
        let key = header.derive_key(passphrase)?;
        let store = Self {
            dir: dir.to_owned(),
            header,
            key,
        };
        let profile = store.decrypt(&file)?;
        Ok((store, profile))
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the profile lock, waiting for another command to finish.
    /// Hold it across [`Store::load`] .. [`Store::save`].
    pub fn lock(&self) -> Result<LockGuard, Error> {
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| Error::io("cannot open the profile lock", e))?;
        file.lock()
            .map_err(|e| Error::io("cannot lock the profile", e))?;
        Ok(LockGuard { file })
    }

    /// Reads and decrypts the current profile. Call with the lock held when
    /// the result will be saved back.
    pub fn load(&self) -> Result<Profile, Error> {
        if !Self::exists(&self.dir) {
            return Err(Error::NoProfile(self.dir.clone()));
        }
        self.decrypt(&read_store_file(&self.dir)?)
    }

    fn decrypt(&self, file: &[u8]) -> Result<Profile, Error> {
        let (header, nonce) = Header::decode(file)?;
        // A store whose salt or parameters changed since it was opened was
        // replaced (wiped and re-created): the key does not fit it.
        if header.salt != self.header.salt || header.params != self.header.params {
            return Err(Error::CannotOpen);
        }
        let (aad, ciphertext) = file.split_at_checked(HEADER_LEN).ok_or(Error::CannotOpen)?;
        let cipher = XChaCha20Poly1305::new(&(*self.key).into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad,
                    },
                )
                .map_err(|_| Error::CannotOpen)?,
        );
        // The header decoded, so the version is there and readable.
        let format = file
            .get(8..10)
            .and_then(|b| b.try_into().ok())
            .map_or(FORMAT_VERSION, u16::from_be_bytes);
        legacy::decode(format, &plain)
    }

    /// Encrypts `profile` and replaces the store atomically. Call with the
    /// lock held.
    pub fn save(&self, profile: &Profile, rng: &mut impl CryptoRng) -> Result<(), Error> {
        let size = postcard::experimental::serialized_size(profile).map_err(|_| Error::Encode)?;
        // Serialize into a buffer of exactly the right size, so the
        // plaintext is never reallocated (and copies left behind).
        let mut plain = Zeroizing::new(vec![0u8; size]);
        postcard::to_slice(profile, &mut plain).map_err(|_| Error::Encode)?;
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut file = self.header.encode(&nonce);
        let cipher = XChaCha20Poly1305::new(&(*self.key).into());
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &file,
                },
            )
            .map_err(|_| Error::Encode)?;
        file.extend_from_slice(&ciphertext);
        write_atomically(&self.dir, &file)
    }

    /// Applies `change` to the profile under the lock and saves it;
    /// nothing is saved if `change` fails.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Profile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _lock = self.lock()?;
        let mut profile = self.load()?;
        let result = change(&mut profile)?;
        self.save(&profile, &mut rand::rng())?;
        Ok(result)
    }
}

fn read_store_file(dir: &Path) -> Result<Vec<u8>, Error> {
    let mut f =
        File::open(dir.join(STORE_FILE)).map_err(|e| Error::io("cannot read the profile", e))?;
    let mut bytes = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_STORE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("cannot read the profile", e))?;
    if bytes.len() as u64 > MAX_STORE_LEN {
        return Err(Error::CannotOpen);
    }
    Ok(bytes)
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::io("cannot create the profile directory", e))
}

fn open_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Write to a temporary file, fsync it, rename it over the store, fsync
/// the directory so the rename itself is durable.
fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(TEMP_FILE);
    let result = (|| {
        let mut f = open_private_file(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, dir.join(STORE_FILE))?;
        sync_dir(dir)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot save the profile", e)
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Destroys the profile in `dir`: every file the client made there is
/// overwritten with random bytes, fsynced and removed, then the directory
/// is removed if nothing else is in it. Needs no passphrase: under duress
/// there may be no time to type one.
///
/// The header (salt and parameters) is overwritten with the rest, so the
/// key can no longer be derived even with the passphrase; see
/// `docs/client.md` for what storage hardware can still keep.
pub fn wipe(dir: &Path, rng: &mut impl CryptoRng) -> Result<(), Error> {
    if !Store::exists(dir) {
        return Err(Error::NoProfile(dir.to_owned()));
    }
    // Wait (briefly) for a running command to finish its update: one that
    // had already read the profile would otherwise write it back after the
    // wipe. Never wait forever: under duress the wipe must go ahead.
    let _lock = lock_for_wipe(dir);
    for name in OWN_FILES {
        let path = dir.join(name);
        match overwrite_and_remove(&path, rng) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot wipe the profile", e)),
        }
    }
    sync_dir(dir).map_err(|e| Error::io("cannot wipe the profile", e))?;
    // Anything else in the directory was not made by enlace: leave it, and
    // the directory, alone.
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.exists() => Ok(()),
        Err(e) => Err(Error::io("cannot remove the profile directory", e)),
    }
}

/// Takes the profile lock, giving up after [`WIPE_LOCK_WAIT`].
fn lock_for_wipe(dir: &Path) -> Option<File> {
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join(LOCK_FILE))
        .ok()?;
    let deadline = crate::time::instant() + WIPE_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Some(file),
            Err(_) if crate::time::instant() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(_) => return None,
        }
    }
}

/// How long `wipe` waits for another command's update: updates hold the
/// lock for one read-modify-write, far less than this.
const WIPE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn overwrite_and_remove(path: &Path, rng: &mut impl CryptoRng) -> io::Result<()> {
    let len = fs::metadata(path)?.len();
    let mut f = OpenOptions::new().write(true).open(path)?;
    let mut block = Zeroizing::new(vec![0u8; 64 * 1024]);
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        let chunk = block.get_mut(..n).unwrap_or_default();
        rng.fill_bytes(chunk);
        f.write_all(chunk)?;
        left -= n as u64;
    }
    f.sync_all()?;
    drop(f);
    fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::StoredRelay;

    /// The weakest parameters a header may carry, to keep tests quick.
    const TEST_PARAMS: KdfParams = KdfParams {
        memory_kib: KDF_MIN_MEMORY_KIB,
        time: 1,
        lanes: 1,
    };

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned())
    }

    fn new_store(dir: &Path) -> Store {
        let mut profile = Profile::new(&mut rand::rng(), 1_700_000_000);
        profile.home_relay = Some(StoredRelay::from_text("secret-relay-host".into()));
        Store::create(
            dir,
            &pass("correct horse"),
            TEST_PARAMS,
            &profile,
            &mut rand::rng(),
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let store = new_store(&dir);
        let mut p = store.load().unwrap();
        p.home_relay = Some(StoredRelay::from_text("other".into()));
        store.save(&p, &mut rand::rng()).unwrap();
        let (_, again) = Store::open(&dir, &pass("correct horse")).unwrap();
        assert_eq!(
            again.home_relay.as_ref().map(StoredRelay::as_str),
            Some("other")
        );
        assert!(!dir.join(TEMP_FILE).exists());
        let bytes = fs::read(dir.join(STORE_FILE)).unwrap();
        assert!(!bytes.windows(5).any(|w| w == b"other"));
    }

    #[test]
    fn wrong_passphrase_and_every_tampered_byte_fail_alike() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        new_store(&dir);
        let original = fs::read(dir.join(STORE_FILE)).unwrap();
        assert!(matches!(
            Store::open(&dir, &pass("wrong horse")),
            Err(Error::CannotOpen)
        ));
        // Flip one bit in every header field and in the ciphertext. The
        // KDF bounds stop absurd parameters before any work is done.
        for i in [0, 9, 10, 14, 18, 22, 30, 60, 80, original.len() - 1] {
            let mut bad = original.clone();
            // Byte 9 (the format's low byte): 2 becomes 1, an older format
            // whose header no longer matches what was authenticated.
            bad[i] ^= if i == 9 { 3 } else { 1 };
            fs::write(dir.join(STORE_FILE), &bad).unwrap();
            assert!(
                matches!(
                    Store::open(&dir, &pass("correct horse")),
                    Err(Error::CannotOpen)
                ),
                "byte {i}"
            );
            assert_eq!(fs::read(dir.join(STORE_FILE)).unwrap(), bad);
        }
        fs::write(dir.join(STORE_FILE), &original[..40]).unwrap();
        assert!(matches!(
            Store::open(&dir, &pass("correct horse")),
            Err(Error::CannotOpen)
        ));
    }

    #[test]
    fn newer_format_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        new_store(&dir);
        let mut bytes = fs::read(dir.join(STORE_FILE)).unwrap();
        bytes[9] = 4;
        fs::write(dir.join(STORE_FILE), &bytes).unwrap();
        assert!(matches!(
            Store::open(&dir, &pass("correct horse")),
            Err(Error::NewerStore(4))
        ));
    }

    #[test]
    fn format_1_store_opens_and_is_rewritten_as_format_3() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let store = new_store(&dir);
        // Write the profile as a format 1 client did: its postcard without
        // the fields format 2 appended, under a header saying 1.
        let profile = store.load().unwrap();
        let v2 = postcard::to_allocvec(&profile).unwrap();
        let v1 = &v2[..v2.len() - legacy::FORMAT_1_TAIL.len()];
        let mut file = store.header.encode(&[5; NONCE_LEN]);
        file[8..10].copy_from_slice(&1u16.to_be_bytes());
        let cipher = XChaCha20Poly1305::new(&(*store.key).into());
        let ct = cipher
            .encrypt(
                &XNonce::from([5; NONCE_LEN]),
                Payload {
                    msg: v1,
                    aad: &file,
                },
            )
            .unwrap();
        file.extend_from_slice(&ct);
        fs::write(dir.join(STORE_FILE), &file).unwrap();
        let (store, back) = Store::open(&dir, &pass("correct horse")).unwrap();
        assert_eq!(
            back.home_relay.as_ref().map(StoredRelay::as_str),
            Some("secret-relay-host")
        );
        assert!(back.nuclei.is_empty());
        store.save(&back, &mut rand::rng()).unwrap();
        let bytes = fs::read(dir.join(STORE_FILE)).unwrap();
        assert_eq!(&bytes[8..10], &FORMAT_VERSION.to_be_bytes());
        assert!(Store::open(&dir, &pass("correct horse")).is_ok());
    }

    #[test]
    fn create_refuses_existing_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        new_store(&dir);
        let before = fs::read(dir.join(STORE_FILE)).unwrap();
        let p = Profile::new(&mut rand::rng(), 0);
        assert!(matches!(
            Store::create(&dir, &pass("x"), TEST_PARAMS, &p, &mut rand::rng()),
            Err(Error::ProfileExists(_))
        ));
        assert_eq!(fs::read(dir.join(STORE_FILE)).unwrap(), before);
    }

    #[test]
    fn wipe_waits_for_an_update_in_progress() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let store = new_store(&dir);
        // An update has read the profile and is about to save it.
        let guard = store.lock().unwrap();
        let profile = store.load().unwrap();
        let wiper = {
            let dir = dir.clone();
            std::thread::spawn(move || wipe(&dir, &mut rand::rng()))
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        store.save(&profile, &mut rand::rng()).unwrap();
        drop(guard);
        wiper.join().unwrap().unwrap();
        // The wipe came after the save: nothing of the profile is left.
        assert!(!dir.join(STORE_FILE).exists());
        assert!(matches!(store.load(), Err(Error::NoProfile(_))));
    }

    #[test]
    fn wipe_removes_own_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        let store = new_store(&dir);
        drop(store.lock().unwrap());
        fs::write(dir.join("notes.txt"), b"mine").unwrap();
        wipe(&dir, &mut rand::rng()).unwrap();
        assert!(!dir.join(STORE_FILE).exists());
        assert!(!dir.join(LOCK_FILE).exists());
        assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"mine");
        assert!(matches!(
            Store::open(&dir, &pass("correct horse")),
            Err(Error::NoProfile(_))
        ));
        assert!(matches!(store.load(), Err(Error::NoProfile(_))));

        let dir2 = tmp.path().join("q");
        new_store(&dir2);
        wipe(&dir2, &mut rand::rng()).unwrap();
        assert!(!dir2.exists());
        assert!(matches!(
            wipe(&dir2, &mut rand::rng()),
            Err(Error::NoProfile(_))
        ));
    }

    /// A store written by the code of commit 5f48a08 (format 2, passphrase
    /// `correct horse battery staple`, the weakest parameters, the golden
    /// profile of `profile`'s tests) opens to exactly that profile, and is
    /// written back as format 3.
    #[test]
    fn golden_store_opens_to_the_golden_profile() {
        let text = include_str!("../../testdata/profile-format-2.hex");
        let golden = hex::decode(text.split_whitespace().collect::<String>()).unwrap();
        let file = include_bytes!("../../testdata/profile-format-2.enlace");
        assert_eq!(&file[..8], MAGIC);
        assert_eq!(&file[8..10], &2u16.to_be_bytes());
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STORE_FILE), file).unwrap();
        let (store, profile) =
            Store::open(tmp.path(), &pass("correct horse battery staple")).unwrap();
        let want = legacy::decode(2, &golden).unwrap();
        assert_eq!(
            postcard::to_allocvec(&profile).unwrap(),
            postcard::to_allocvec(&want).unwrap()
        );
        assert_eq!(profile.nuclei[0].ops_v1.len(), 2);
        assert!(matches!(
            Store::open(tmp.path(), &pass("correct horse battery stapler")),
            Err(Error::CannotOpen)
        ));
        store.save(&profile, &mut rand::rng()).unwrap();
        let rewritten = fs::read(tmp.path().join(STORE_FILE)).unwrap();
        assert_eq!(&rewritten[8..10], &FORMAT_VERSION.to_be_bytes());
        let (_, again) = Store::open(tmp.path(), &pass("correct horse battery staple")).unwrap();
        assert_eq!(
            postcard::to_allocvec(&again).unwrap(),
            postcard::to_allocvec(&want).unwrap()
        );
    }

    const _: () = assert!(KDF_MEMORY_KIB >= 64 * 1024 && KDF_TIME >= 3);

    #[test]
    fn default_params_are_accepted_on_read() {
        assert!(KdfParams::DEFAULT.in_bounds());
    }
}
