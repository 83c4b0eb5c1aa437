//! What the driver tells the person, through the command that runs it.

use std::time::Duration;

use crate::domain::inbox::Shown;
use crate::domain::nucleus::introductions::Introduced;
use crate::domain::nucleus::notices::ShownChange;
use crate::domain::retention::TimerShown;
use crate::error::Error;
use crate::profile::Verification;

/// Something that happened while the driver worked.
pub(crate) enum Event<'a> {
    /// A handshake completed: a new contact, or one that came back (with
    /// a new identity key when `state` says so).
    Contact {
        /// The contact's name.
        name: &'a str,
        /// Its verification state now.
        state: Verification,
    },
    /// Messages received, to show.
    Messages(&'a [Shown]),
    /// Membership changes of nuclei, to show.
    NucleusChanges(&'a [ShownChange]),
    /// Disappearing-message timers changed, to show.
    Timers(&'a [TimerShown]),
    /// An envelope that could not be decrypted was dropped.
    Undecryptable,
    /// Accepting a nucleus introduction made a contact.
    Introduced(&'a Introduced),
    /// A nucleus introduction could not be done and was dropped.
    IntroductionDropped(&'a Error),
    /// `read` found nothing new to show.
    NothingNew,
    /// `listen` is connected and waiting.
    Listening,
    /// `listen` lost its relays and tries again after a while.
    Retrying {
        /// What went wrong.
        error: &'a Error,
        /// How long it waits.
        after: Duration,
    },
}

/// Where the driver's events go.
pub(crate) trait Report {
    /// Tells of `event`; fails only when the output cannot be written.
    fn report(&mut self, event: Event<'_>) -> Result<(), Error>;
}
