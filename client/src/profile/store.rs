//! The encrypted profile store: a key file of three fixed-size slots,
//! overwritten in place, and a data file sealed under a data key that
//! changes with every save.
//!
//! ```text
//! profile.key   version u8 | salt [32] | slot 0 | slot 1 | slot 2     (`keyfile`)
//! profile.data  nonce [24] | XChaCha20-Poly1305(data key, ...)        (`datafile`)
//! ```
//!
//! Opening derives `kek = argon2id(passphrase, salt)` once, opens the slot
//! whose data key decrypts the data file, and saves at once (below): so
//! every open re-keys, drops what is past its disappearing-message timer
//! ([`Profile::expire`]), and does the same work whether the passphrase
//! was the real one or the duress one.
//!
//! **Saving re-keys.** A save seals the profile under a fresh random data
//! key, then:
//!
//! 1. writes `profile.data.tmp` and fsyncs it;
//! 2. writes the new data key (generation + 1) into the real slot not in
//!    use, overwriting the key file in place, and fsyncs it;
//! 3. renames the new data file over `profile.data` and fsyncs the
//!    directory;
//! 4. overwrites the slot of the previous generation with random bytes, in
//!    place, and fsyncs.
//!
//! The slot holding the data file's key is rewritten with the same bytes
//! until step 4, so a kill at any step leaves a profile that opens with
//! the passphrase, old or new (a kill between steps 2 and 3 leaves the new
//! data at its temporary name, which the next open renames into place). After step 4 no slot holds the old data
//! key: earlier data files left on the disk no longer decrypt, even with
//! the passphrase (what storage hardware can still keep: `docs/client.md`).
//!
//! **Duress.** Slot 2 opens only with the duress passphrase. An open that
//! finds it makes the same save with an empty profile, whose slot replaces
//! every other: the real profile's key is gone, and the duress passphrase
//! now opens the empty profile.
//!
//! A lock file serializes commands that run at the same time: changes are
//! read-modify-write under an exclusive lock, reads take a shared one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::datafile::{self, MAX_DATA_FILE};
use super::files::{
    create_private_dir, destroy, overwrite_synced, read_bounded, rename_synced, sync_dir,
    write_synced,
};
use super::kdf::Kek;
pub use super::kdf::{KDF_LANES, KDF_MEMORY_KIB, KDF_TIME, KdfParams, Passphrase};
use super::keyfile::{DURESS_SLOT, KEY_FILE_LEN, KeyFile, REAL_SLOTS, SlotContent, version_for};
use super::legacy;
use super::model::Profile;
use super::steps::step;
use crate::error::Error;
use crate::time;

/// The key file: salt and key slots, overwritten in place.
pub const KEY_FILE: &str = "profile.key";
/// The data file: the sealed, padded profile.
pub const DATA_FILE: &str = "profile.data";
/// Where a new data file is written before it is renamed over
/// [`DATA_FILE`].
const DATA_TEMP: &str = "profile.data.tmp";
/// The store of formats 1 and 2, migrated (then destroyed) on first open.
pub const LEGACY_FILE: &str = "profile.enlace";
const LEGACY_TEMP: &str = "profile.enlace.tmp";
/// An empty file whose OS lock serializes concurrent commands.
const LOCK_FILE: &str = "lock";
/// Every file the client ever creates in a profile directory; `wipe`
/// touches these and nothing else, the key file first.
const OWN_FILES: [&str; 6] = [
    KEY_FILE,
    DATA_FILE,
    DATA_TEMP,
    LEGACY_FILE,
    LEGACY_TEMP,
    LOCK_FILE,
];

/// The store format this client writes.
pub const FORMAT_VERSION: u16 = super::keyfile::FORMAT as u16;
/// Largest format 1/2 store read: 1 GiB. A bigger file is not ours.
const MAX_LEGACY_LEN: u64 = 1 << 30;
/// How often an open starts again when another command replaced the
/// store between reading its salt and taking the lock.
const OPEN_ATTEMPTS: usize = 3;

/// An opened profile directory: its path and the key derived from the
/// passphrase. The key never leaves this struct and is zeroized on drop.
pub struct Store {
    dir: PathBuf,
    /// The key file's version and salt as opened: a store replaced since
    /// (wiped and made again) is not this one.
    opened: KeyFile,
    kek: Kek,
    /// Whether this store holds the exclusive lock (a [`LockGuard`]), so
    /// its reads need no lock of their own.
    held: Arc<AtomicBool>,
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
    held: Option<Arc<AtomicBool>>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.store(false, Ordering::SeqCst);
        }
        // Closing the file releases the lock as well; unlocking early just
        // lets a waiting command go on sooner.
        let _ = self.file.unlock();
    }
}

fn open_lock_file(dir: &Path) -> Result<File, Error> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(dir.join(LOCK_FILE))
        .map_err(|e| Error::io("cannot open the profile lock", e))
}

fn exclusive_lock(dir: &Path) -> Result<LockGuard, Error> {
    let file = open_lock_file(dir)?;
    file.lock()
        .map_err(|e| Error::io("cannot lock the profile", e))?;
    Ok(LockGuard { file, held: None })
}

/// The profile as found on disk, with what the next save needs.
struct Found {
    key_file: KeyFile,
    /// The real slot whose key opened the data file, and its generation.
    active: Option<(usize, u64)>,
    profile: Profile,
}

/// Opens the data file with the real slots that `kek` opens, the newest
/// generation first. After a kill between writing the key file and the
/// rename, the new data file is still at its temporary name: it is read
/// there, and renamed into place when `repair` (the exclusive lock held).
fn open_data(
    dir: &Path,
    key_file: &KeyFile,
    kek: &Kek,
    repair: bool,
) -> Result<Option<(usize, u64, Profile)>, Error> {
    let mut slots: Vec<(usize, SlotContent)> = REAL_SLOTS
        .iter()
        .filter_map(|&i| key_file.unwrap(kek, i).map(|c| (i, c)))
        .collect();
    slots.sort_by_key(|(_, c)| std::cmp::Reverse(c.generation));
    for name in [DATA_FILE, DATA_TEMP] {
        let Some(data) = read_bounded(&dir.join(name), MAX_DATA_FILE)? else {
            continue;
        };
        for (index, content) in &slots {
            let generation = content.generation;
            let version = key_file.version();
            if let Ok(profile) = datafile::open(&data, &content.data_key, version, generation) {
                if name == DATA_TEMP && repair {
                    rename_synced(dir, DATA_TEMP, DATA_FILE)
                        .map_err(|e| Error::io("cannot save the profile", e))?;
                }
                return Ok(Some((*index, generation, profile)));
            }
        }
    }
    Ok(None)
}

/// A fresh random data key.
fn random_key(rng: &mut impl CryptoRng) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut());
    key
}

/// How a save writes the key file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Write {
    /// A new profile: the key file is created.
    Create,
    /// A save of the profile: the key file is overwritten in place.
    Save,
    /// The duress open: as a save, and every other slot is erased with
    /// the first write of the key file.
    Duress,
}

impl Store {
    /// Whether `dir` holds a profile.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DATA_FILE).exists() || dir.join(LEGACY_FILE).exists()
    }

    /// Creates a new profile in `dir` (made if missing, mode 0700) holding
    /// `profile`. Fails if a profile is already there, or if `params` are
    /// neither [`KdfParams::DEFAULT`] nor [`KdfParams::WEAKEST`] (the key
    /// file's version byte stands for the parameters).
    pub fn create(
        dir: &Path,
        passphrase: &Passphrase,
        params: KdfParams,
        profile: &Profile,
        rng: &mut impl CryptoRng,
    ) -> Result<Self, Error> {
        let version = version_for(params).ok_or(Error::UnsupportedKdf)?;
        create_private_dir(dir)?;
        let key_file = KeyFile::new(version, rng);
        let kek = key_file.derive(passphrase)?;
        let store = Self::with(dir, &key_file, kek);
        let _lock = exclusive_lock(dir)?;
        if Self::exists(dir) {
            return Err(Error::ProfileExists(dir.to_owned()));
        }
        store.write(&store.kek, profile, key_file, None, Write::Create, rng)?;
        Ok(store)
    }

    fn with(dir: &Path, key_file: &KeyFile, kek: Kek) -> Self {
        Self {
            dir: dir.to_owned(),
            opened: key_file.clone(),
            kek,
            held: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens the profile in `dir` with `passphrase` and saves it at once
    /// (re-keyed, expired messages gone); a store of format 1 or 2 is
    /// migrated. With the duress passphrase the real profile is erased
    /// and an empty one opens, as if it were all there ever was.
    pub fn open(dir: &Path, passphrase: &Passphrase) -> Result<(Self, Profile), Error> {
        let mut rng = rand::rng();
        for _ in 0..OPEN_ATTEMPTS {
            if let Some(opened) = Self::open_once(dir, passphrase, &mut rng)? {
                return Ok(opened);
            }
        }
        Err(Error::CannotOpen)
    }

    /// One attempt: `None` when the store changed under us (another
    /// command migrated or re-created it while we derived the key).
    fn open_once(
        dir: &Path,
        passphrase: &Passphrase,
        rng: &mut impl CryptoRng,
    ) -> Result<Option<(Self, Profile)>, Error> {
        if !Self::exists(dir) {
            return Err(Error::NoProfile(dir.to_owned()));
        }
        let key_path = dir.join(KEY_FILE);
        if let (Some(bytes), true) = (
            read_bounded(&key_path, KEY_FILE_LEN as u64)?,
            dir.join(DATA_FILE).exists(),
        ) {
            // The one argon2id run, before the lock: other commands do not
            // wait for it.
            let derived_for = KeyFile::parse(&bytes)?;
            let kek = derived_for.derive(passphrase)?;
            let _lock = exclusive_lock(dir)?;
            let now = read_bounded(&key_path, KEY_FILE_LEN as u64)?;
            let Some(key_file) = now.map(|b| KeyFile::parse(&b)).transpose()? else {
                return Ok(None);
            };
            if !key_file.same_profile(&derived_for) {
                return Ok(None);
            }
            return Self::with(dir, &key_file, kek)
                .open_locked(key_file, rng)
                .map(Some);
        }
        let Some(file) = read_bounded(&dir.join(LEGACY_FILE), MAX_LEGACY_LEN)? else {
            return Err(Error::CannotOpen);
        };
        let header = legacy::Header::decode(&file)?;
        let old_key = header.derive(passphrase)?;
        let _lock = exclusive_lock(dir)?;
        if dir.join(DATA_FILE).exists() && key_path.exists() {
            return Ok(None); // migrated meanwhile
        }
        let file =
            read_bounded(&dir.join(LEGACY_FILE), MAX_LEGACY_LEN)?.ok_or(Error::CannotOpen)?;
        let mut profile = header.decrypt(&old_key, &file)?;
        drop(old_key);
        // Format 3 from here: a new salt and a second argon2id run, with
        // the weakest parameters only if the old store had them.
        let params = if header.params == KdfParams::WEAKEST {
            KdfParams::WEAKEST
        } else {
            KdfParams::DEFAULT
        };
        let key_file = KeyFile::new(version_for(params).ok_or(Error::UnsupportedKdf)?, rng);
        let store = Self::with(dir, &key_file, key_file.derive(passphrase)?);
        profile.expire(time::now());
        store.write(&store.kek, &profile, key_file, None, Write::Create, rng)?;
        Ok(Some((store, profile)))
    }

    /// With the lock held and the key derived: the normal open or the
    /// duress one, each ending in the same save.
    fn open_locked(
        self,
        key_file: KeyFile,
        rng: &mut impl CryptoRng,
    ) -> Result<(Self, Profile), Error> {
        let duress = key_file.unwrap(&self.kek, DURESS_SLOT);
        match (open_data(&self.dir, &key_file, &self.kek, true)?, duress) {
            (Some((index, generation, mut profile)), _) => {
                profile.expire(time::now());
                let active = Some((index, generation));
                self.write(&self.kek, &profile, key_file, active, Write::Save, rng)?;
                Ok((self, profile))
            }
            (None, Some(mut duress)) => {
                // The same work as a normal open: the data file is read and
                // run through the cipher, then an empty profile is saved.
                if let Some(data) = read_bounded(&self.dir.join(DATA_FILE), MAX_DATA_FILE)? {
                    datafile::same_work_as_open(&data, &duress.data_key);
                }
                let mut empty = Profile::new(rng, time::now());
                empty.home_relay = duress.relay.take().map(super::StoredRelay::new);
                drop(duress);
                self.write(&self.kek, &empty, key_file, None, Write::Duress, rng)?;
                Ok((self, empty))
            }
            (None, None) => Err(Error::CannotOpen),
        }
    }

    /// Seals `profile` under a fresh data key and writes it as the next
    /// generation, in the four steps of the module's documentation.
    fn write(
        &self,
        kek: &Kek,
        profile: &Profile,
        mut key_file: KeyFile,
        active: Option<(usize, u64)>,
        how: Write,
        rng: &mut impl CryptoRng,
    ) -> Result<(), Error> {
        let [first, second] = REAL_SLOTS;
        let (index, previous, generation) = match active {
            Some((i, g)) if i == first => (second, first, g.saturating_add(1)),
            Some((i, g)) => (first, i, g.saturating_add(1)),
            None => (first, second, 1),
        };
        let data_key = random_key(rng);
        let sealed = datafile::seal(profile, &data_key, key_file.version(), generation, rng)?;
        let content = SlotContent {
            generation,
            data_key,
            relay: None,
        };
        key_file.wrap(kek, index, &content, rng)?;
        drop(content);
        if how == Write::Duress {
            key_file.erase(previous, rng);
            key_file.erase(DURESS_SLOT, rng);
        }
        let dir = &self.dir;
        let key_path = dir.join(KEY_FILE);
        let result = (|| {
            write_synced(&dir.join(DATA_TEMP), &sealed)?;
            if how == Write::Create {
                write_synced(&key_path, key_file.as_bytes())?;
                sync_dir(dir)?;
            } else {
                overwrite_synced(&key_path, key_file.as_bytes())?;
            }
            rename_synced(dir, DATA_TEMP, DATA_FILE)?;
            key_file.erase(previous, rng);
            overwrite_synced(&key_path, key_file.as_bytes())?;
            // What an earlier format left: destroyed once format 3 is safe.
            let mut destroyed = false;
            for name in [LEGACY_FILE, LEGACY_TEMP] {
                let path = dir.join(name);
                if path.exists() {
                    destroy(&path, rng)?;
                    destroyed = true;
                }
            }
            if destroyed {
                sync_dir(dir)?;
            }
            Ok(())
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(dir.join(DATA_TEMP));
            Error::io("cannot save the profile", e)
        })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the profile lock, waiting for another command to finish.
    /// Hold it across [`Store::load`] .. [`Store::save`].
    pub fn lock(&self) -> Result<LockGuard, Error> {
        let mut guard = exclusive_lock(&self.dir)?;
        self.held.store(true, Ordering::SeqCst);
        guard.held = Some(self.held.clone());
        Ok(guard)
    }

    /// Reads and decrypts the current profile (under a shared lock, unless
    /// this store holds the exclusive one). Call with the lock held when
    /// the result will be saved back.
    pub fn load(&self) -> Result<Profile, Error> {
        if !Self::exists(&self.dir) {
            return Err(Error::NoProfile(self.dir.clone()));
        }
        let _shared = if self.held.load(Ordering::SeqCst) {
            None
        } else {
            let file = open_lock_file(&self.dir)?;
            file.lock_shared()
                .map_err(|e| Error::io("cannot lock the profile", e))?;
            Some(LockGuard { file, held: None })
        };
        self.find(false).map(|found| found.profile)
    }

    /// The profile on disk and which slot opens it, the lock held.
    fn find(&self, repair: bool) -> Result<Found, Error> {
        let bytes = read_bounded(&self.dir.join(KEY_FILE), KEY_FILE_LEN as u64)?
            .ok_or_else(|| Error::NoProfile(self.dir.clone()))?;
        let key_file = KeyFile::parse(&bytes)?;
        // A store replaced since it was opened (wiped and made again) has
        // another salt: the key does not fit it.
        if !key_file.same_profile(&self.opened) {
            return Err(Error::CannotOpen);
        }
        let (index, generation, profile) =
            open_data(&self.dir, &key_file, &self.kek, repair)?.ok_or(Error::CannotOpen)?;
        Ok(Found {
            key_file,
            active: Some((index, generation)),
            profile,
        })
    }

    /// Encrypts `profile` as the next generation under a fresh data key
    /// (the store's documentation says how). Call with the lock held.
    pub fn save(&self, profile: &Profile, rng: &mut impl CryptoRng) -> Result<(), Error> {
        let found = self.find(true)?;
        self.write(
            &self.kek,
            profile,
            found.key_file,
            found.active,
            Write::Save,
            rng,
        )
    }

    /// Applies `change` to the profile under the lock, drops what is past
    /// its timer, and saves it; nothing is saved if `change` fails.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Profile) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _lock = self.lock()?;
        let mut found = self.find(true)?;
        let result = change(&mut found.profile)?;
        self.save_found(&self.kek, found)?;
        Ok(result)
    }

    /// Drops what is past its timer from `found` and writes it as the
    /// next generation, its slot sealed under `kek`.
    fn save_found(&self, kek: &Kek, mut found: Found) -> Result<(), Error> {
        found.profile.expire(time::now());
        let Found {
            key_file,
            active,
            profile,
        } = found;
        self.write(
            kek,
            &profile,
            key_file,
            active,
            Write::Save,
            &mut rand::rng(),
        )
    }

    /// Changes the passphrase: the next generation's slot is sealed under
    /// the new one, the old slot erased. A kill half-way leaves a profile
    /// that opens with one of the two. Refuses the duress passphrase.
    pub fn change_passphrase(&mut self, new: &Passphrase) -> Result<(), Error> {
        let lock = self.lock()?;
        let found = self.find(true)?;
        let kek = found.key_file.derive(new)?;
        if found.key_file.unwrap(&kek, DURESS_SLOT).is_some() {
            return Err(Error::DuressReused);
        }
        self.save_found(&kek, found)?;
        drop(lock);
        self.kek = kek;
        Ok(())
    }

    /// Sets the duress passphrase: slot 2, overwritten in place, opens
    /// with it and keeps the home relay for the empty profile a duress
    /// open leaves. Refuses the profile's own passphrase.
    pub fn set_duress(&self, duress: &Passphrase) -> Result<(), Error> {
        let _lock = self.lock()?;
        let Found {
            mut key_file,
            profile,
            ..
        } = self.find(true)?;
        let kek = key_file.derive(duress)?;
        if REAL_SLOTS
            .iter()
            .any(|&i| key_file.unwrap(&kek, i).is_some())
        {
            return Err(Error::DuressReused);
        }
        let mut rng = rand::rng();
        let data_key = random_key(&mut rng);
        let content = SlotContent {
            generation: 0,
            data_key,
            relay: profile
                .home_relay
                .as_ref()
                .and_then(|r| r.address().ok().cloned()),
        };
        key_file.wrap(&kek, DURESS_SLOT, &content, &mut rng)?;
        overwrite_synced(&self.dir.join(KEY_FILE), key_file.as_bytes())
            .map_err(|e| Error::io("cannot save the profile", e))
    }

    /// Clears the duress passphrase: slot 2 becomes random bytes again.
    pub fn clear_duress(&self) -> Result<(), Error> {
        let _lock = self.lock()?;
        let Found { mut key_file, .. } = self.find(true)?;
        key_file.erase(DURESS_SLOT, &mut rand::rng());
        overwrite_synced(&self.dir.join(KEY_FILE), key_file.as_bytes())
            .map_err(|e| Error::io("cannot save the profile", e))
    }
}

/// What an examiner holding the passphrase can do with copies of a key
/// file and data files found on a disk: for tests that check old copies
/// no longer decrypt. One argon2id run, for the salt of the key file it
/// is made from.
pub struct Examiner {
    salt_of: KeyFile,
    kek: Kek,
}

impl std::fmt::Debug for Examiner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Examiner(..)")
    }
}

impl Examiner {
    /// The passphrase's key for the salt of `key_file` (a key file's
    /// bytes, any version of it).
    pub fn new(key_file: &[u8], passphrase: &Passphrase) -> Result<Self, Error> {
        let salt_of = KeyFile::parse(key_file)?;
        let kek = salt_of.derive(passphrase)?;
        Ok(Self { salt_of, kek })
    }

    /// Whether `data` (a data file's bytes) decrypts with a slot of
    /// `key_file` (a key file's bytes with the same salt) that the
    /// passphrase opens; the duress slot counts too.
    pub fn opens(&self, key_file: &[u8], data: &[u8]) -> bool {
        self.open(key_file, data).is_some()
    }

    /// The profile `data` holds, if it decrypts as [`Examiner::opens`]
    /// says.
    pub fn open(&self, key_file: &[u8], data: &[u8]) -> Option<Profile> {
        let key_file = KeyFile::parse(key_file).ok()?;
        if !key_file.same_profile(&self.salt_of) {
            return None;
        }
        (0..=DURESS_SLOT).find_map(|i| {
            let c = key_file.unwrap(&self.kek, i)?;
            datafile::open(data, &c.data_key, key_file.version(), c.generation).ok()
        })
    }
}

/// Destroys the profile in `dir`: the key file first (its slots hold the
/// only copy of the data key), then every other file the client made
/// there, each overwritten with random bytes, fsynced and removed; then
/// the directory, if nothing else is in it. Needs no passphrase: under
/// duress there may be no time to type one.
pub fn wipe(dir: &Path, rng: &mut impl CryptoRng) -> Result<(), Error> {
    if !OWN_FILES
        .iter()
        .any(|name| *name != LOCK_FILE && dir.join(name).exists())
    {
        return Err(Error::NoProfile(dir.to_owned()));
    }
    // Wait (briefly) for a running command to finish its update: one that
    // had already read the profile would otherwise write it back after the
    // wipe. Never wait forever: under duress the wipe must go ahead.
    let _lock = lock_for_wipe(dir);
    for name in OWN_FILES {
        destroy(&dir.join(name), rng).map_err(|e| Error::io("cannot wipe the profile", e))?;
    }
    sync_dir(dir).map_err(|e| Error::io("cannot wipe the profile", e))?;
    // Anything else in the directory was not made by enlace: leave it, and
    // the directory, alone.
    step("remove the directory");
    match std::fs::remove_dir(dir) {
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
    let deadline = time::instant() + WIPE_LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Some(file),
            Err(_) if time::instant() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(_) => return None,
        }
    }
}

/// How long `wipe` waits for another command's update: updates hold the
/// lock for one read-modify-write, far less than this.
const WIPE_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests;
