//! The store: re-keying, crash states, duress, passphrase change,
//! migration of formats 1 and 2, wipe.

use std::fs;

use super::*;
use crate::profile::keyfile::{FORMAT, SLOT_LEN};
use crate::profile::{Conversation, StoredRelay, Timer};

/// The weakest parameters a store may carry, to keep tests quick.
const TEST_PARAMS: KdfParams = KdfParams::WEAKEST;
const PASS: &str = "correct horse";
const RELAY: &str =
    "enlace://aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq@relay.barrio.example:4433";

fn pass(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned())
}

fn new_store(dir: &Path) -> Store {
    let mut profile = Profile::new(&mut rand::rng(), 1_700_000_000);
    profile.home_relay = Some(StoredRelay::from_text("secret-relay-host".into()));
    Store::create(dir, &pass(PASS), TEST_PARAMS, &profile, &mut rand::rng()).unwrap()
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    fs::read(dir.join(name)).unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn round_trip_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    assert_eq!(names(&dir), ["lock", "profile.data", "profile.key"]);
    let mut p = store.load().unwrap();
    p.home_relay = Some(StoredRelay::from_text("other".into()));
    {
        let _lock = store.lock().unwrap();
        store.save(&p, &mut rand::rng()).unwrap();
    }
    let (_, again) = Store::open(&dir, &pass(PASS)).unwrap();
    assert_eq!(
        again.home_relay.as_ref().map(StoredRelay::as_str),
        Some("other")
    );
    assert_eq!(names(&dir), ["lock", "profile.data", "profile.key"]);
    for name in [KEY_FILE, DATA_FILE] {
        let bytes = read(&dir, name);
        assert!(!bytes.windows(5).any(|w| w == b"other"), "{name}");
    }
}

/// Every save seals the profile under a new data key and erases the slot
/// of the one before: with the passphrase and the key file as it is now,
/// only the current data file decrypts; each earlier one did with the key
/// file of its own time (which is why the slots are overwritten in place).
#[test]
fn every_save_rekeys_and_earlier_data_files_no_longer_decrypt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    let mut versions = vec![(read(&dir, KEY_FILE), read(&dir, DATA_FILE))];
    for i in 0..6 {
        store
            .update(|p| {
                p.next_id += i;
                Ok(())
            })
            .unwrap();
        versions.push((read(&dir, KEY_FILE), read(&dir, DATA_FILE)));
    }
    // Opening saves too.
    Store::open(&dir, &pass(PASS)).unwrap();
    versions.push((read(&dir, KEY_FILE), read(&dir, DATA_FILE)));
    let examiner = Examiner::new(&versions[0].0, &pass(PASS)).unwrap();
    let (key_now, data_now) = versions.last().unwrap().clone();
    for (i, (key, data)) in versions.iter().enumerate() {
        assert!(
            examiner.opens(key, data),
            "version {i} with its own key file"
        );
        let current = i == versions.len() - 1;
        assert_eq!(examiner.opens(&key_now, data), current, "version {i}");
    }
    let wrong = Examiner::new(&key_now, &pass("wrong horse")).unwrap();
    assert!(!wrong.opens(&key_now, &data_now));
    // Only the slot in use changes place: 0, 1, 0, 1...
    let slots: Vec<usize> = versions
        .iter()
        .map(|(key, _)| {
            let file = KeyFile::parse(key).unwrap();
            let kek = file.derive(&pass(PASS)).unwrap();
            let open: Vec<usize> = (0..3).filter(|&i| file.unwrap(&kek, i).is_some()).collect();
            assert_eq!(open.len(), 1);
            open[0]
        })
        .collect();
    assert_eq!(slots, [0, 1, 0, 1, 0, 1, 0, 1]);
}

/// No magic, no parameters: two profiles' key files share only the
/// version byte, and nothing in a data file is the same twice.
#[test]
fn the_files_identify_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    new_store(&a);
    new_store(&b);
    let (ka, kb) = (read(&a, KEY_FILE), read(&b, KEY_FILE));
    assert_eq!(ka.len(), KEY_FILE_LEN);
    assert_eq!((ka[0], kb[0]), (FORMAT | 0x80, FORMAT | 0x80));
    let same = ka.iter().zip(&kb).skip(1).filter(|(x, y)| x == y).count();
    assert!(same < 20, "{same} equal bytes");
    let (da, db) = (read(&a, DATA_FILE), read(&b, DATA_FILE));
    assert_eq!(da.len(), db.len());
    let same = da.iter().zip(&db).filter(|(x, y)| x == y).count();
    assert!(same < da.len() / 128, "{same} equal bytes");
    for bytes in [&ka, &da] {
        for needle in [&b"ENLACE"[..], b"enlace", b"secret-relay", b"argon"] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
}

#[test]
fn wrong_passphrase_and_every_tampered_byte_fail_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    new_store(&dir);
    let (key, data) = (read(&dir, KEY_FILE), read(&dir, DATA_FILE));
    assert!(matches!(
        Store::open(&dir, &pass("wrong horse")),
        Err(Error::CannotOpen)
    ));
    let tampered = |name: &str, bytes: &[u8]| {
        fs::write(dir.join(name), bytes).unwrap();
        let r = Store::open(&dir, &pass(PASS));
        assert!(matches!(r, Err(Error::CannotOpen)), "{name}: {r:?}");
        assert_eq!(read(&dir, name), bytes);
    };
    // The version byte (to another known version), the salt, and the slot
    // in use; the slots in no use are random bytes, and changing them
    // changes nothing.
    let file = KeyFile::parse(&key).unwrap();
    let kek = file.derive(&pass(PASS)).unwrap();
    let active = (0..3).find(|&i| file.unwrap(&kek, i).is_some()).unwrap();
    let slot = 33 + active * SLOT_LEN;
    for i in [0, 1, 20, slot, slot + 30, slot + SLOT_LEN - 1] {
        let mut bad = key.clone();
        bad[i] ^= if i == 0 { 0x80 } else { 1 };
        tampered(KEY_FILE, &bad);
    }
    for unused in (0..3).filter(|&i| i != active) {
        let mut other = key.clone();
        other[33 + unused * SLOT_LEN + 40] ^= 1;
        assert!(
            Examiner::new(&other, &pass(PASS))
                .unwrap()
                .opens(&other, &data)
        );
    }
    tampered(KEY_FILE, &key[..KEY_FILE_LEN - 1]);
    fs::write(dir.join(KEY_FILE), &key).unwrap();
    for i in [0, 23, 24, data.len() / 2, data.len() - 1] {
        let mut bad = data.clone();
        bad[i] ^= 1;
        tampered(DATA_FILE, &bad);
    }
    tampered(DATA_FILE, &data[..100]);
    fs::write(dir.join(DATA_FILE), &data).unwrap();
    assert!(Store::open(&dir, &pass(PASS)).is_ok());
}

#[test]
fn newer_format_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    new_store(&dir);
    let mut bytes = read(&dir, KEY_FILE);
    bytes[0] = 4;
    fs::write(dir.join(KEY_FILE), &bytes).unwrap();
    assert!(matches!(
        Store::open(&dir, &pass(PASS)),
        Err(Error::NewerStore(4))
    ));
}

/// Stores of formats 1 and 2 open, are written as format 3 at once, and
/// their file is overwritten and removed.
#[test]
fn format_1_and_2_stores_migrate_on_first_open() {
    for version in [1, 2] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        fs::create_dir(&dir).unwrap();
        let mut old = Profile::new(&mut rand::rng(), 5);
        old.home_relay = Some(StoredRelay::from_text("secret-relay-host".into()));
        let file = legacy::encode_format_2(&old, &pass(PASS), TEST_PARAMS, version);
        fs::write(dir.join(LEGACY_FILE), &file).unwrap();
        assert!(matches!(
            Store::open(&dir, &pass("wrong horse")),
            Err(Error::CannotOpen)
        ));
        assert_eq!(read(&dir, LEGACY_FILE), file);
        let (_, back) = Store::open(&dir, &pass(PASS)).unwrap();
        assert_eq!(
            back.home_relay.as_ref().map(StoredRelay::as_str),
            Some("secret-relay-host")
        );
        assert!(back.nuclei.is_empty() && back.timers.is_empty());
        assert_eq!(names(&dir), ["lock", "profile.data", "profile.key"]);
        assert_eq!(read(&dir, KEY_FILE)[0], FORMAT | 0x80);
        let (_, again) = Store::open(&dir, &pass(PASS)).unwrap();
        assert_eq!(again.created_at, 5);
    }
}

#[test]
fn legacy_newer_version_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    fs::create_dir(&dir).unwrap();
    let p = Profile::new(&mut rand::rng(), 5);
    let mut file = legacy::encode_format_2(&p, &pass(PASS), TEST_PARAMS, 2);
    file[9] = 7;
    fs::write(dir.join(LEGACY_FILE), &file).unwrap();
    assert!(matches!(
        Store::open(&dir, &pass(PASS)),
        Err(Error::NewerStore(7))
    ));
}

#[test]
fn create_refuses_existing_profile_and_unknown_params() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    new_store(&dir);
    let before = read(&dir, DATA_FILE);
    let p = Profile::new(&mut rand::rng(), 0);
    assert!(matches!(
        Store::create(&dir, &pass("x"), TEST_PARAMS, &p, &mut rand::rng()),
        Err(Error::ProfileExists(_))
    ));
    assert_eq!(read(&dir, DATA_FILE), before);
    let odd = KdfParams {
        time: 2,
        ..TEST_PARAMS
    };
    let other = tmp.path().join("q");
    assert!(matches!(
        Store::create(&other, &pass("x"), odd, &p, &mut rand::rng()),
        Err(Error::UnsupportedKdf)
    ));
}

/// The crash states a kill between the steps of a save leaves, made by
/// hand: every one opens with the passphrase (the binary is killed for
/// real at every step in `client/tests/crash.rs`).
#[test]
fn every_intermediate_state_of_a_save_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    let (key0, data0) = (read(&dir, KEY_FILE), read(&dir, DATA_FILE));
    store
        .update(|p| {
            p.next_id = 99;
            Ok(())
        })
        .unwrap();
    let (key2, data1) = (read(&dir, KEY_FILE), read(&dir, DATA_FILE));
    // Between steps 2 and 4 the key file holds both slots.
    let file0 = KeyFile::parse(&key0).unwrap();
    let file2 = KeyFile::parse(&key2).unwrap();
    let mut both = file0.clone();
    let kek = file0.derive(&pass(PASS)).unwrap();
    let new_slot = (0..3).find(|&i| file2.unwrap(&kek, i).is_some()).unwrap();
    let range = 33 + new_slot * SLOT_LEN..33 + (new_slot + 1) * SLOT_LEN;
    let mut bytes = both.as_bytes().to_vec();
    bytes[range.clone()].copy_from_slice(&key2[range]);
    both = KeyFile::parse(&bytes).unwrap();
    for (key, data, tmp_file, next_id) in [
        (&key0, &data0, Some(&data1), 1),                     // after step 1
        (&both.as_bytes().to_vec(), &data0, Some(&data1), 1), // after step 2
        (&both.as_bytes().to_vec(), &data1, None, 99),        // after step 3
        (&key2, &data1, None, 99),                            // done
    ] {
        fs::write(dir.join(KEY_FILE), key).unwrap();
        fs::write(dir.join(DATA_FILE), data).unwrap();
        match tmp_file {
            Some(t) => fs::write(dir.join(DATA_TEMP), t).unwrap(),
            None => drop(fs::remove_file(dir.join(DATA_TEMP))),
        }
        let (_, p) = Store::open(&dir, &pass(PASS)).unwrap();
        assert_eq!(p.next_id, next_id);
        let (_, p) = Store::open(&dir, &pass(PASS)).unwrap();
        assert_eq!(p.next_id, next_id);
    }
}

#[test]
fn duress_erases_the_profile_and_opens_an_empty_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    store
        .update(|p| {
            p.home_relay = Some(StoredRelay::from_text(RELAY.into()));
            p.next_id = 42;
            Ok(())
        })
        .unwrap();
    assert!(matches!(
        store.set_duress(&pass(PASS)),
        Err(Error::DuressReused)
    ));
    let key_before = read(&dir, KEY_FILE);
    store.set_duress(&pass("under pressure")).unwrap();
    let key_set = read(&dir, KEY_FILE);
    // Only slot 2 changed.
    assert_eq!(
        key_before[..33 + 2 * SLOT_LEN],
        key_set[..33 + 2 * SLOT_LEN]
    );
    assert_ne!(
        key_before[33 + 2 * SLOT_LEN..],
        key_set[33 + 2 * SLOT_LEN..]
    );
    // The real passphrase still opens the real profile (and re-keys).
    let (_, real) = Store::open(&dir, &pass(PASS)).unwrap();
    assert_eq!(real.next_id, 42);
    let examiner = Examiner::new(&key_set, &pass(PASS)).unwrap();
    let old_data = read(&dir, DATA_FILE);
    let old_key = read(&dir, KEY_FILE);
    assert!(examiner.opens(&old_key, &old_data));

    let (decoy_store, decoy) = Store::open(&dir, &pass("under pressure")).unwrap();
    assert_eq!(decoy.next_id, 1);
    assert!(decoy.contacts.is_empty() && decoy.history.is_empty());
    assert_eq!(
        decoy.home_relay.as_ref().map(StoredRelay::as_str),
        Some(RELAY)
    );
    assert_eq!(names(&dir), ["lock", "profile.data", "profile.key"]);
    // The real passphrase opens nothing now, not even the data file of
    // before with the key file of now.
    assert!(matches!(
        Store::open(&dir, &pass(PASS)),
        Err(Error::CannotOpen)
    ));
    assert!(!examiner.opens(&read(&dir, KEY_FILE), &old_data));
    // The duress passphrase is now the empty profile's passphrase, and
    // no duress slot is left.
    let (_, again) = Store::open(&dir, &pass("under pressure")).unwrap();
    assert_eq!(again.own_key(), decoy.own_key());
    assert!(decoy_store.load().is_ok());
    let file = KeyFile::parse(&read(&dir, KEY_FILE)).unwrap();
    let kek = file.derive(&pass("under pressure")).unwrap();
    assert!(file.unwrap(&kek, DURESS_SLOT).is_none());
    // A store opened with the real passphrase before cannot read on.
    assert!(matches!(store.load(), Err(Error::CannotOpen)));
}

#[test]
fn passphrase_change_rewraps_and_keeps_the_duress_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let mut store = new_store(&dir);
    store.set_duress(&pass("under pressure")).unwrap();
    assert!(matches!(
        store.change_passphrase(&pass("under pressure")),
        Err(Error::DuressReused)
    ));
    store.change_passphrase(&pass("a new passphrase")).unwrap();
    assert!(store.load().is_ok());
    store.update(|_| Ok(())).unwrap();
    assert!(matches!(
        Store::open(&dir, &pass(PASS)),
        Err(Error::CannotOpen)
    ));
    let (_, p) = Store::open(&dir, &pass("a new passphrase")).unwrap();
    assert_eq!(p.created_at, 1_700_000_000);
    let (_, decoy) = Store::open(&dir, &pass("under pressure")).unwrap();
    assert_eq!(decoy.next_id, 1);
    assert!(matches!(
        Store::open(&dir, &pass("a new passphrase")),
        Err(Error::CannotOpen)
    ));
}

#[test]
fn clearing_the_duress_passphrase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    store.set_duress(&pass("under pressure")).unwrap();
    store.clear_duress().unwrap();
    assert!(matches!(
        Store::open(&dir, &pass("under pressure")),
        Err(Error::CannotOpen)
    ));
    assert!(Store::open(&dir, &pass(PASS)).is_ok());
}

/// Opening and saving drop what is past its timer.
#[test]
fn saves_drop_expired_messages() {
    use crate::profile::{ContactId, HistoryEntry};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    store
        .update(|p| {
            let conversation = Conversation::Contact(ContactId(7));
            p.timers.push(crate::profile::TimerSetting {
                conversation,
                timer: Timer::parse("1h").unwrap(),
                set_at: 0,
            });
            p.history
                .push(HistoryEntry::for_tests(ContactId(7), 1, 1, "de hace mucho"));
            Ok(())
        })
        .unwrap();
    assert!(store.load().unwrap().history.is_empty());
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
    assert!(!dir.exists());
    assert!(matches!(store.load(), Err(Error::NoProfile(_))));
}

#[test]
fn wipe_removes_own_files_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("p");
    let store = new_store(&dir);
    fs::write(dir.join("notes.txt"), b"mine").unwrap();
    fs::write(dir.join(LEGACY_FILE), b"an old store").unwrap();
    wipe(&dir, &mut rand::rng()).unwrap();
    assert_eq!(names(&dir), ["notes.txt"]);
    assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"mine");
    assert!(matches!(
        Store::open(&dir, &pass(PASS)),
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
/// migrated to format 3 on that first open.
#[test]
fn golden_format_2_store_opens_and_migrates() {
    let text = include_str!("../../../testdata/profile-format-2.hex");
    let golden = hex::decode(text.split_whitespace().collect::<String>()).unwrap();
    let file = include_bytes!("../../../testdata/profile-format-2.enlace");
    assert_eq!(&file[..8], b"ENLACEPF");
    assert_eq!(&file[8..10], &2u16.to_be_bytes());
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(LEGACY_FILE), file).unwrap();
    let wrong = Store::open(tmp.path(), &pass("correct horse battery stapler"));
    assert!(matches!(wrong, Err(Error::CannotOpen)));
    let (_, profile) = Store::open(tmp.path(), &pass("correct horse battery staple")).unwrap();
    // The golden profile as today's (nuclei as version 1, no timers set),
    // less what its conversations' timers (the default, 7 days) dropped
    // by now.
    let mut expected = super::super::upgrade::decode(2, &golden).unwrap();
    expected.expire(time::now());
    assert_eq!(
        postcard::to_allocvec(&profile).unwrap(),
        postcard::to_allocvec(&expected).unwrap()
    );
    assert_eq!(profile.contacts.len(), 2);
    assert_eq!(profile.nuclei.len(), 1);
    assert_eq!(names(tmp.path()), ["lock", "profile.data", "profile.key"]);
    let (_, again) = Store::open(tmp.path(), &pass("correct horse battery staple")).unwrap();
    assert_eq!(again.invitations.len(), 1);
}

/// The golden format 3 store (`client/testdata/profile-format-3.*`,
/// passphrase `correct horse battery staple`, the weakest parameters)
/// opens to the golden profile of `profile`'s tests.
#[test]
fn golden_format_3_store_opens() {
    let text = include_str!("../../../testdata/profile-format-3.hex");
    let golden = hex::decode(text.split_whitespace().collect::<String>()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let key = include_bytes!("../../../testdata/profile-format-3.key");
    assert_eq!((key.len(), key.first()), (KEY_FILE_LEN, Some(&0x83)));
    fs::write(tmp.path().join(KEY_FILE), key).unwrap();
    fs::write(
        tmp.path().join(DATA_FILE),
        include_bytes!("../../../testdata/profile-format-3.data"),
    )
    .unwrap();
    // Opened as of a time before the golden messages' timers ran out.
    let examiner = Examiner::new(key, &pass("correct horse battery staple")).unwrap();
    assert!(examiner.opens(
        key,
        include_bytes!("../../../testdata/profile-format-3.data")
    ));
    let key_file = KeyFile::parse(key).unwrap();
    let kek = key_file
        .derive(&pass("correct horse battery staple"))
        .unwrap();
    let (_, _, profile) = open_data(tmp.path(), &key_file, &kek, false)
        .unwrap()
        .unwrap();
    assert_eq!(postcard::to_allocvec(&profile).unwrap(), golden);
    assert!(Store::open(tmp.path(), &pass("correct horse battery stapler")).is_err());
    assert!(Store::open(tmp.path(), &pass("correct horse battery staple")).is_ok());
}
