//! Disappearing-message timers, as the profile keeps them: what a timer
//! is, which conversation it belongs to, and the notices of its changes.
//! What they remove is `retention`.

use enlace_protocol::group::NucleusId;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::ids::ContactId;
use crate::opaque::opaque_debug;

/// The shortest timer: one hour.
pub const MIN_TIMER_SECS: u32 = 3_600;
/// The longest timer: 90 days.
pub const MAX_TIMER_SECS: u32 = 90 * 86_400;
/// The timer of a conversation nobody set one for: 7 days. Long enough to
/// read what came in over a weekend away, short enough that a laptop
/// seized (and its passphrase forced) gives up at most a week of talk.
pub const DEFAULT_TIMER_SECS: u32 = 7 * 86_400;
/// Most notices kept, over all conversations; the oldest go first (a
/// contact that keeps changing the timer cannot grow the profile).
pub const MAX_NOTICES: usize = 256;

/// A conversation: with one contact, or in one nucleus.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub enum Conversation {
    /// Direct messages with a contact.
    Contact(ContactId),
    /// A nucleus's messages.
    Nucleus(#[serde(with = "super::ids::nucleus_id")] NucleusId),
}

/// How long a conversation keeps messages: off (kept until removed by
/// hand) or a number of seconds within the bounds.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub struct Timer(u32);

impl Timer {
    /// Messages are kept.
    pub const OFF: Self = Self(0);
    /// The default timer.
    pub const DEFAULT: Self = Self(DEFAULT_TIMER_SECS);

    /// A timer of `secs` seconds; 0 is [`Timer::OFF`]. `None` outside the
    /// bounds.
    pub fn from_secs(secs: u32) -> Option<Self> {
        (secs == 0 || (MIN_TIMER_SECS..=MAX_TIMER_SECS).contains(&secs)).then_some(Self(secs))
    }

    /// The seconds, or `None` when off.
    pub fn secs(self) -> Option<u32> {
        (self.0 != 0).then_some(self.0)
    }

    /// The encoding in application messages: 0 for off.
    pub fn wire(self) -> u32 {
        self.0
    }

    /// Parses `off`, or a number followed by `h` (hours), `d` (days) or
    /// `w` (weeks): `1h`, `12h`, `7d`, `2w`, `90d`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        if text == "off" {
            return Some(Self::OFF);
        }
        let unit = match text.chars().last()? {
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return None,
        };
        let number: u32 = text.get(..text.len() - 1)?.parse().ok()?;
        Self::from_secs(number.checked_mul(unit)?).filter(|t| *t != Self::OFF)
    }

    /// `off`, `1 hour`, `36 hours`, `7 days`, `2 weeks`.
    pub fn describe(self) -> String {
        let Some(secs) = self.secs() else {
            return "off".into();
        };
        let plural = |n: u32, word: &str| {
            if n == 1 {
                format!("1 {word}")
            } else {
                format!("{n} {word}s")
            }
        };
        if secs % (7 * 86_400) == 0 {
            plural(secs / (7 * 86_400), "week")
        } else if secs % 86_400 == 0 {
            plural(secs / 86_400, "day")
        } else if secs % 3_600 == 0 {
            plural(secs / 3_600, "hour")
        } else {
            plural(secs, "second")
        }
    }

    /// Whether this timer keeps messages longer than `other` (off is the
    /// longest).
    pub(super) fn longer_than(self, other: Self) -> bool {
        match (self.secs(), other.secs()) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => a > b,
            _ => false,
        }
    }
}

/// A conversation's timer, as last set.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone)]
pub struct TimerSetting {
    /// The conversation.
    pub conversation: Conversation,
    /// Its timer.
    pub timer: Timer,
    /// The setter's clock when it was set (Unix seconds). Of two settings
    /// the later one counts, and of two set at the same second the
    /// shorter, so both sides end with the same timer whatever order the
    /// two messages crossed in.
    pub set_at: u64,
}

/// A timer change, shown in its conversation on both sides.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop, Clone)]
pub struct TimerNotice {
    /// The conversation.
    pub conversation: Conversation,
    /// Who set it: a contact, or `None` for this organizer.
    pub by: Option<ContactId>,
    /// The new timer.
    pub timer: Timer,
    /// When this client stored the change (Unix seconds).
    pub stored_at: u64,
    /// Whether `read` or `listen` showed it.
    pub shown: bool,
}

opaque_debug!(Conversation, Timer, TimerSetting, TimerNotice);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_parse_and_describe() {
        for (text, secs, shown) in [
            ("1h", 3_600, "1 hour"),
            ("36h", 36 * 3_600, "36 hours"),
            ("7d", 7 * 86_400, "1 week"),
            ("2w", 14 * 86_400, "2 weeks"),
            ("90d", 90 * 86_400, "90 days"),
            (" OFF ", 0, "off"),
        ] {
            let t = Timer::parse(text).unwrap();
            assert_eq!(t.wire(), secs, "{text}");
            assert_eq!(t.describe(), shown);
        }
        for bad in [
            "",
            "0h",
            "0d",
            "30m",
            "91d",
            "14w",
            "h",
            "-1h",
            "1.5h",
            "4294967295w",
        ] {
            assert!(Timer::parse(bad).is_none(), "{bad}");
        }
        assert!(Timer::from_secs(3_599).is_none());
        assert!(Timer::from_secs(MAX_TIMER_SECS + 1).is_none());
        assert_eq!(Timer::from_secs(0), Some(Timer::OFF));
    }
}
