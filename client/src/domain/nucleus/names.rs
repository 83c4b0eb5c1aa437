//! Finding nuclei and members, and the local names given to them.

use enlace_protocol::keys::{Fingerprint, PublicKey};

use crate::error::Error;
use crate::profile::{ContactId, Nucleus, Profile};

/// Longest part of a local name that someone else chose (a nucleus's
/// name, a member's suggested name), in characters: a stranger's choice
/// stays a short part of what we show.
const MAX_RECEIVED_NAME_CHARS: usize = 30;

/// Longest base of a name made unique, in characters: room is left for a
/// `-2`, `-3`... within a contact name's 64.
const MAX_UNIQUE_BASE_CHARS: usize = 60;

/// The identity fingerprint of an identity key.
pub(crate) fn fingerprint(key: &[u8; 32]) -> Option<Fingerprint> {
    PublicKey::from_bytes(key)
        .ok()
        .map(|k| k.identity_fingerprint())
}

/// The contact with this identity key that we can write to, if any.
pub(crate) fn contact_for(p: &Profile, key: &[u8; 32]) -> Option<ContactId> {
    p.contacts
        .iter()
        .find(|c| &c.identity_key == key && c.send_to.is_some())
        .map(|c| c.id)
}

/// Whether we have a contact with this identity key.
pub(crate) fn has_contact(p: &Profile, key: &[u8; 32]) -> bool {
    p.contacts.iter().any(|c| &c.identity_key == key)
}

/// The nucleus with this (case-insensitive) name.
pub(crate) fn find<'a>(p: &'a Profile, name: &str) -> Result<&'a Nucleus, Error> {
    p.nuclei
        .iter()
        .find(|n| n.name.to_lowercase() == name.to_lowercase())
        .ok_or_else(|| Error::UnknownNucleus(name.to_owned()))
}

/// The index of the nucleus with this (case-insensitive) name.
pub(crate) fn find_index(p: &Profile, name: &str) -> Result<usize, Error> {
    p.nuclei
        .iter()
        .position(|n| n.name.to_lowercase() == name.to_lowercase())
        .ok_or_else(|| Error::UnknownNucleus(name.to_owned()))
}

/// A local nucleus name not used yet, from a name someone else chose.
pub(crate) fn unique_nucleus_name(p: &Profile, wanted: &str) -> String {
    let base: String = clean_name(wanted, "nucleus");
    let taken = |n: &str| {
        p.nuclei
            .iter()
            .any(|x| x.name.to_lowercase() == n.to_lowercase())
    };
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n))
        .unwrap_or(base)
}

/// A contact name not used yet, for an introduced member.
fn unique_contact_name(p: &Profile, wanted: &str) -> String {
    let base = wanted
        .chars()
        .take(MAX_UNIQUE_BASE_CHARS)
        .collect::<String>();
    if p.contact(&base).is_none() {
        return base;
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| p.contact(n).is_none())
        .unwrap_or(base)
}

/// A name received from someone else, made fit for a local name: control
/// characters and slashes replaced, at most [`MAX_RECEIVED_NAME_CHARS`].
pub(crate) fn clean_name(name: &str, fallback: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '/' { '-' } else { c })
        .take(MAX_RECEIVED_NAME_CHARS)
        .collect();
    let cleaned = cleaned.trim().to_owned();
    if cleaned.is_empty() {
        fallback.to_owned()
    } else {
        cleaned
    }
}

/// The local name for an introduced member: `<nucleus>/<suggested>`.
pub(crate) fn introduced_name(p: &Profile, nucleus: &Nucleus, member: &[u8; 32]) -> String {
    let members = nucleus.members();
    let entry = members.get(member);
    // The creator's name in its own `create` is the nucleus's name.
    let suggested = match entry {
        Some(m) if &m.added_by == member => "founder".to_owned(),
        Some(m) => clean_name(&m.suggested_name, "member"),
        None => "member".to_owned(),
    };
    unique_contact_name(p, &format!("{}/{}", nucleus.name, suggested))
}
