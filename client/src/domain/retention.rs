//! Disappearing-message timers between clients: setting one (sealed for
//! the contact, or for every member of a nucleus we can write to) and
//! applying one received. What the timers remove, and when, is
//! `profile::retention`.
//!
//! Either side may set a conversation's timer; both show the change. Of
//! two settings that cross, both sides keep the later one by the setter's
//! clock (the shorter if they were set in the same second). A nucleus
//! timer is accepted from a current member over its own session, as a
//! nucleus text is; members without a session with the setter yet learn
//! it only when someone sets it again.

use rand_core::CryptoRng;

use super::message::AppMessage;
use super::nucleus::names::find;
use super::outbox::{Seal, check_can_send, queue_control};
use super::received::Received;
use crate::error::Error;
use crate::opaque::opaque_debug;
use crate::profile::{ContactId, Conversation, MessageId, Profile, Timer, Verification};

/// The conversation a name on the command line means: `#name` is a
/// nucleus, anything else a contact. Returns it with its shown name.
pub(crate) fn find_conversation(p: &Profile, name: &str) -> Result<(Conversation, String), Error> {
    if let Some(nucleus) = name.strip_prefix('#') {
        let n = find(p, nucleus)?;
        return Ok((Conversation::Nucleus(n.id), format!("#{}", n.name)));
    }
    let c = p
        .contact(name)
        .ok_or_else(|| Error::UnknownContact(name.to_owned()))?;
    Ok((Conversation::Contact(c.id), c.name.clone()))
}

/// Sets `conversation`'s timer to `timer` at `now` and seals the change
/// for the other side (every other current member of a nucleus we can
/// write to). Returns the names of those it was sealed for.
pub(crate) fn set_timer(
    p: &mut Profile,
    conversation: Conversation,
    timer: Timer,
    now: u64,
    rng: &mut impl CryptoRng,
    mut seal: impl Seal,
) -> Result<Vec<String>, Error> {
    let (to, plaintext): (Vec<ContactId>, Vec<u8>) = match conversation {
        Conversation::Contact(id) => {
            let contact = p.contact_by_id(id).ok_or(Error::BrokenState("contact"))?;
            check_can_send(contact)?;
            if contact.send_to.is_none() {
                return Err(Error::NoRoute(contact.name.clone()));
            }
            let msg = AppMessage::Timer { set_at: now, timer };
            (vec![id], msg.encode())
        }
        Conversation::Nucleus(id) => {
            let me = p.own_key();
            let n = p
                .nuclei
                .iter()
                .find(|n| n.id == id)
                .ok_or(Error::BrokenState("nucleus"))?;
            let members = n.members();
            if !members.contains_key(&me) {
                return Err(Error::NotMember(n.name.clone()));
            }
            let to = p
                .contacts
                .iter()
                .filter(|c| {
                    c.identity_key != me
                        && members.contains_key(&c.identity_key)
                        && c.send_to.is_some()
                        && c.verification() != Verification::KeyChanged
                })
                .map(|c| c.id)
                .collect();
            let msg = AppMessage::NucleusTimer {
                nucleus: id,
                set_at: now,
                timer,
            };
            (to, msg.encode())
        }
    };
    p.set_timer(conversation, timer, now, None, now);
    let mut told = Vec::with_capacity(to.len());
    for id in to {
        queue_control(p, id, &plaintext, MessageId::default(), rng, &mut seal)?;
        if let Some(c) = p.contact_by_id(id) {
            told.push(c.name.clone());
        }
    }
    Ok(told)
}

/// Applies a timer message (kind 6 or 7) received from contact `peer`.
pub(crate) fn handle(p: &mut Profile, peer: ContactId, msg: AppMessage, now: u64) -> Received {
    match msg {
        AppMessage::Timer { set_at, timer } => {
            p.set_timer(Conversation::Contact(peer), timer, set_at, Some(peer), now);
        }
        AppMessage::NucleusTimer {
            nucleus,
            set_at,
            timer,
        } => {
            let me = p.own_key();
            let Some(peer_key) = p.contact_by_id(peer).map(|c| c.identity_key) else {
                return Received::Nothing;
            };
            let Some(n) = p.nuclei.iter().find(|n| n.id == nucleus) else {
                return Received::Nothing;
            };
            let members = n.members();
            if members.contains_key(&me) && members.contains_key(&peer_key) {
                p.set_timer(
                    Conversation::Nucleus(nucleus),
                    timer,
                    set_at,
                    Some(peer),
                    now,
                );
            }
        }
        _ => {}
    }
    Received::Nothing
}

/// A timer change to print.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TimerShown {
    /// Who set it: a contact's name, or `None` for this organizer.
    pub(crate) by: Option<String>,
    /// The nucleus, for a nucleus timer.
    pub(crate) nucleus: Option<String>,
    /// The new timer.
    pub(crate) timer: Timer,
    /// When this client stored it.
    pub(crate) at: u64,
}

opaque_debug!(TimerShown);

impl TimerShown {
    /// `Ana set disappearing messages to 1 hour.`, `You turned ... off.`
    pub(crate) fn sentence(&self) -> String {
        let who = self.by.as_deref().unwrap_or("You");
        match self.timer.secs() {
            None => format!("{who} turned disappearing messages off."),
            Some(_) => format!(
                "{who} set disappearing messages to {}.",
                self.timer.describe()
            ),
        }
    }
}

/// The notices of `conversation` (all of them, oldest first), to print.
pub(crate) fn notices_of(p: &Profile, conversation: Conversation) -> Vec<TimerShown> {
    p.timer_notices
        .iter()
        .filter(|n| n.conversation == conversation)
        .map(|n| shown(p, n))
        .collect()
}

fn shown(p: &Profile, n: &crate::profile::TimerNotice) -> TimerShown {
    let by = n.by.map(|id| {
        p.contact_by_id(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "(removed contact)".into())
    });
    let nucleus = match n.conversation {
        Conversation::Nucleus(id) => p.nuclei.iter().find(|x| x.id == id).map(|x| x.name.clone()),
        Conversation::Contact(_) => None,
    };
    TimerShown {
        by,
        nucleus,
        timer: n.timer,
        at: n.stored_at,
    }
}

/// Timer changes received and not shown yet, oldest first; marks them
/// shown.
pub(crate) fn take_unshown(p: &mut Profile) -> Vec<TimerShown> {
    let out: Vec<TimerShown> = p
        .timer_notices
        .iter()
        .filter(|n| !n.shown)
        .map(|n| shown(p, n))
        .collect();
    for n in &mut p.timer_notices {
        n.shown = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::inbox::handle_plaintext;
    use crate::profile::{Contact, EnvelopeId, StoredRelay};

    fn contact(id: u64, name: &str) -> Contact {
        Contact::for_tests(ContactId(id), name, true)
    }

    /// A stand-in for the session: the "envelope" is the plaintext.
    fn clear(
        _: &mut crate::profile::Contact,
        pt: &[u8],
        _: EnvelopeId,
    ) -> Result<(Vec<u8>, StoredRelay), Error> {
        Ok((pt.to_vec(), StoredRelay::from_text("relay".into())))
    }

    /// Ana sets a timer; Ben's client applies it and shows it once; both
    /// sides then hold the same timer.
    #[test]
    fn both_sides_hold_and_show_the_timer() {
        let mut ana = Profile::new(&mut rand::rng(), 0);
        let mut ben = Profile::new(&mut rand::rng(), 0);
        ana.contacts.push(contact(1, "Ben"));
        ben.contacts.push(contact(7, "Ana"));
        let (conversation, name) = find_conversation(&ana, "ben").unwrap();
        assert_eq!(name, "Ben");
        let hour = Timer::parse("1h").unwrap();
        let told = set_timer(&mut ana, conversation, hour, 500, &mut rand::rng(), clear).unwrap();
        assert_eq!(told, ["Ben"]);
        assert!(ana.timer(conversation) == hour);
        assert!(take_unshown(&mut ana).is_empty());
        let sealed = ana.outbox[0].envelope.clone();
        assert!(ana.outbox[0].control);
        assert_eq!(
            handle_plaintext(&mut ben, ContactId(7), &sealed, 600),
            Received::Nothing
        );
        assert!(ben.timer(Conversation::Contact(ContactId(7))) == hour);
        let shown = take_unshown(&mut ben);
        assert_eq!(shown.len(), 1);
        assert_eq!(
            shown[0].sentence(),
            "Ana set disappearing messages to 1 hour."
        );
        assert!(take_unshown(&mut ben).is_empty());
        // An older setting crossing it changes nothing.
        let stale = AppMessage::Timer {
            set_at: 499,
            timer: Timer::OFF,
        };
        handle_plaintext(&mut ben, ContactId(7), &stale.encode(), 700);
        assert!(ben.timer(Conversation::Contact(ContactId(7))) == hour);
        assert!(find_conversation(&ana, "#nada").is_err());
        assert!(find_conversation(&ana, "Nadie").is_err());
    }

    #[test]
    fn nucleus_timers_only_from_members_of_nuclei_we_are_in() {
        let mut p = Profile::new(&mut rand::rng(), 0);
        p.contacts.push(contact(7, "Ana"));
        let msg = AppMessage::NucleusTimer {
            nucleus: enlace_protocol::group::NucleusId([3; 16]),
            set_at: 1,
            timer: Timer::OFF,
        };
        // An unknown nucleus: nothing kept.
        handle_plaintext(&mut p, ContactId(7), &msg.encode(), 5);
        assert!(p.timers.is_empty() && p.timer_notices.is_empty());
    }
}
