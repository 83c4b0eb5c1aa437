//! Disappearing messages: how long each conversation keeps its messages
//! (its *timer*), and removing what is past it.
//!
//! A conversation is the one with a contact or the one in a nucleus. Its
//! timer is off, or between 1 hour and 90 days (`timer`); a conversation
//! nobody set a timer for keeps 7 days. Either side sets it with an
//! in-band message (`domain::retention`), and both sides show the change
//! as a notice. The timer counts from when this client stored a message
//! (sent it, or received it whole).
//!
//! [`Profile::expire`] removes what is past its timer: the texts in the
//! history, parts of texts still arriving, the status of sent messages and
//! the notices. The store calls it on every open and every save, so what
//! expired is in no file written afterwards.

use super::ids::ContactId;
use super::messages::HistoryEntry;
use super::model::Profile;
use super::timer::{Conversation, MAX_NOTICES, Timer, TimerNotice, TimerSetting};

/// Whether something stored at `at` is still within `timer` at `now`.
fn kept(at: u64, timer: Timer, now: u64) -> bool {
    match timer.secs() {
        None => true,
        Some(secs) => now < at.saturating_add(u64::from(secs)),
    }
}

impl Profile {
    /// The timer of `conversation`: as set, or the default.
    pub fn timer(&self, conversation: Conversation) -> Timer {
        self.timer_setting(conversation)
            .map(|s| s.timer)
            .unwrap_or(Timer::DEFAULT)
    }

    /// The setting of `conversation`, if anyone set one.
    pub fn timer_setting(&self, conversation: Conversation) -> Option<&TimerSetting> {
        self.timers.iter().find(|s| s.conversation == conversation)
    }

    /// Applies a timer set at `set_at` (the setter's clock) by `by` (`None`:
    /// this organizer), unless a later setting is already held. Notes the
    /// change for both sides to show. Returns whether it was applied.
    pub fn set_timer(
        &mut self,
        conversation: Conversation,
        timer: Timer,
        set_at: u64,
        by: Option<ContactId>,
        now: u64,
    ) -> bool {
        if let Some(held) = self.timer_setting(conversation) {
            let older = set_at < held.set_at
                || (set_at == held.set_at
                    && (timer == held.timer || timer.longer_than(held.timer)));
            if older {
                return false;
            }
        }
        self.timers.retain(|s| s.conversation != conversation);
        self.timers.push(TimerSetting {
            conversation,
            timer,
            set_at,
        });
        if self.timer_notices.len() >= MAX_NOTICES {
            self.timer_notices.remove(0);
        }
        self.timer_notices.push(TimerNotice {
            conversation,
            by,
            timer,
            stored_at: now,
            shown: by.is_none(),
        });
        true
    }

    /// The conversation a history entry belongs to: the nucleus it was
    /// received in, or its contact.
    pub fn conversation_of(&self, entry: &HistoryEntry) -> Conversation {
        self.nuclei
            .iter()
            .find(|n| n.received.iter().any(|s| s.message_id == entry.message_id))
            .map(|n| Conversation::Nucleus(n.id))
            .unwrap_or(Conversation::Contact(entry.contact))
    }

    fn conversation_exists(&self, conversation: Conversation) -> bool {
        match conversation {
            Conversation::Contact(id) => self.contact_by_id(id).is_some(),
            Conversation::Nucleus(id) => self.nuclei.iter().any(|n| n.id == id),
        }
    }

    /// Removes what is past its conversation's timer at `now`: history
    /// texts, parts of texts still arriving, statuses of sent messages no
    /// longer in the outbox, and timer notices; and the settings of
    /// conversations that no longer exist. Returns whether anything went.
    pub fn expire(&mut self, now: u64) -> bool {
        let keep: Vec<bool> = self
            .history
            .iter()
            .map(|h| kept(h.stored_at, self.timer(self.conversation_of(h)), now))
            .collect();
        let before = self.history.len()
            + self.partial.len()
            + self.sent.len()
            + self.timer_notices.len()
            + self.timers.len();
        let mut flags = keep.into_iter();
        self.history.retain(|_| flags.next().unwrap_or(true));

        let timers: Vec<(ContactId, Timer)> = self
            .contacts
            .iter()
            .map(|c| (c.id, self.timer(Conversation::Contact(c.id))))
            .collect();
        let contact_timer = |id: ContactId| {
            timers
                .iter()
                .find(|(c, _)| *c == id)
                .map(|(_, t)| *t)
                .unwrap_or(Timer::DEFAULT)
        };
        self.partial
            .retain(|m| kept(m.sent_at, contact_timer(m.contact), now));
        let outbox = &self.outbox;
        self.sent.retain(|s| {
            outbox
                .iter()
                .any(|e| !e.control && e.message_id == s.message_id)
                || kept(s.sent_at, contact_timer(s.contact), now)
        });
        let notice_timers: Vec<Timer> = self
            .timer_notices
            .iter()
            .map(|n| self.timer(n.conversation))
            .collect();
        let mut timers = notice_timers.into_iter();
        self.timer_notices
            .retain(|n| kept(n.stored_at, timers.next().unwrap_or(Timer::DEFAULT), now));
        let exists: Vec<bool> = self
            .timers
            .iter()
            .map(|s| self.conversation_exists(s.conversation))
            .collect();
        let mut exists = exists.into_iter();
        self.timers.retain(|_| exists.next().unwrap_or(true));
        let after = self.history.len()
            + self.partial.len()
            + self.sent.len()
            + self.timer_notices.len()
            + self.timers.len();
        after != before
    }
}

#[cfg(test)]
mod tests {
    use enlace_protocol::group::NucleusId;

    use super::*;
    use crate::profile::timer::DEFAULT_TIMER_SECS;
    use crate::profile::{Contact, MessageId, PartialMessage, SentMessage, Status};

    const HOUR: u64 = 3_600;

    fn contact(p: &mut Profile, name: &str) -> ContactId {
        let id = p.allocate_contact_id();
        p.contacts.push(Contact::for_tests(id, name, false));
        id
    }

    fn entry(contact: ContactId, id: u8, at: u64, text: &str) -> HistoryEntry {
        HistoryEntry::for_tests(contact, id, at, text)
    }

    /// A 1-hour timer and an injected clock: readable before, gone after;
    /// other conversations keep theirs.
    #[test]
    fn messages_past_the_timer_go() {
        let mut p = Profile::new(&mut rand::rng(), 0);
        let ana = contact(&mut p, "Ana");
        let ben = contact(&mut p, "Ben");
        let t0 = 1_800_000_000;
        assert!(p.set_timer(
            Conversation::Contact(ana),
            Timer::parse("1h").unwrap(),
            t0,
            None,
            t0
        ));
        p.history.push(entry(ana, 1, t0, "se borra"));
        p.history.push(entry(ben, 2, t0, "se queda una semana"));
        p.sent.push(SentMessage {
            contact: ana,
            message_id: MessageId([3; 16]),
            sent_at: t0,
            status: Status::Delivered,
            parts: 1,
        });
        p.partial.push(PartialMessage {
            contact: ana,
            message_id: MessageId([4; 16]),
            sent_at: t0,
            parts: vec![Some(b"mitad".to_vec()), None],
        });
        assert!(!p.expire(t0 + HOUR - 1));
        assert_eq!(p.history.len(), 2);
        assert!(p.expire(t0 + HOUR));
        let texts: Vec<&str> = p.history.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(texts, ["se queda una semana"]);
        assert!(p.sent.is_empty() && p.partial.is_empty());
        // The notice of the change went with the messages.
        assert!(p.timer_notices.is_empty());
        assert!(!p.expire(t0 + 7 * 24 * HOUR - 1));
        assert!(p.expire(t0 + 7 * 24 * HOUR));
        assert!(p.history.is_empty());
    }

    #[test]
    fn off_keeps_everything_and_the_later_setting_counts() {
        let mut p = Profile::new(&mut rand::rng(), 0);
        let ana = contact(&mut p, "Ana");
        let conv = Conversation::Contact(ana);
        assert!(p.timer(conv) == Timer::DEFAULT);
        assert!(p.set_timer(conv, Timer::OFF, 100, Some(ana), 100));
        p.history.push(entry(ana, 1, 100, "para siempre"));
        assert!(!p.expire(u64::MAX));
        // An older setting is ignored; at the same second the shorter wins.
        let day = Timer::parse("1d").unwrap();
        let hour = Timer::parse("1h").unwrap();
        assert!(!p.set_timer(conv, hour, 99, None, 200));
        assert!(p.set_timer(conv, day, 100, None, 200));
        assert!(!p.set_timer(conv, Timer::OFF, 100, Some(ana), 200));
        assert!(p.set_timer(conv, hour, 100, Some(ana), 200));
        assert!(!p.set_timer(conv, day, 100, None, 200));
        assert!(p.timer(conv) == hour);
        assert_eq!(p.timers.len(), 1);
        let unshown = p.timer_notices.iter().filter(|n| !n.shown).count();
        assert_eq!((p.timer_notices.len(), unshown), (3, 2));
    }

    #[test]
    fn nucleus_messages_follow_the_nucleus_timer() {
        use crate::profile::{Nucleus, SeenGroupMessage};
        let mut p = Profile::new(&mut rand::rng(), 0);
        let ana = contact(&mut p, "Ana");
        let id = NucleusId([7; 16]);
        let mut nucleus = Nucleus::new(id, "barrio".into());
        nucleus.received = vec![SeenGroupMessage {
            author: [1; 32],
            message_id: MessageId([9; 16]),
        }];
        p.nuclei.push(nucleus);
        p.history.push(entry(ana, 9, 0, "al núcleo"));
        p.history.push(entry(ana, 8, 0, "directo"));
        assert!(p.conversation_of(&p.history[0]) == Conversation::Nucleus(id));
        assert!(p.set_timer(Conversation::Nucleus(id), Timer::OFF, 1, None, 1));
        p.expire(u64::from(DEFAULT_TIMER_SECS));
        let texts: Vec<&str> = p.history.iter().map(|h| h.text.as_str()).collect();
        assert_eq!(texts, ["al núcleo"]);
        // Leaving the nucleus forgets its setting at the next expiry.
        p.nuclei.clear();
        p.expire(u64::from(DEFAULT_TIMER_SECS));
        assert!(p.timers.is_empty());
    }

    #[test]
    fn notices_are_bounded() {
        let mut p = Profile::new(&mut rand::rng(), 0);
        let ana = contact(&mut p, "Ana");
        for i in 0..(MAX_NOTICES as u64 + 10) {
            let t = if i % 2 == 0 { "1h" } else { "2h" };
            assert!(p.set_timer(
                Conversation::Contact(ana),
                Timer::parse(t).unwrap(),
                i,
                Some(ana),
                i
            ));
        }
        assert_eq!(p.timer_notices.len(), MAX_NOTICES);
    }
}
