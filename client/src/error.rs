//! The client's errors. Each says what happened ([`std::fmt::Display`]),
//! what to do ([`Error::hint`]) and which exit code it maps to
//! ([`Error::exit_code`]); the CLI prints them as one line,
//! `error: what happened — what to do`. Application messages that do not
//! decode are a [`MessageError`].

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Exit codes, as documented in `enlace --help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure not listed below; the message says what.
    pub const OTHER: u8 = 1;
    /// Bad arguments (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The profile cannot be opened: wrong passphrase or damaged store.
    pub const CANNOT_OPEN: u8 = 3;
    /// A relay could not be reached or refused; messages stay queued.
    pub const RELAY: u8 = 4;
    /// A contact's identity key changed; sending refused until re-verified.
    pub const IDENTITY_CHANGED: u8 = 5;
}

/// What went wrong in a client command.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// Decryption of the store failed: wrong passphrase, or the file was
    /// changed or damaged. Deliberately one variant for both.
    #[error("cannot open profile: wrong passphrase or damaged store")]
    CannotOpen,
    /// The store was written by a newer client.
    #[error("the profile was written by a newer enlace (store format {0})")]
    NewerStore(u16),
    /// No profile in the directory.
    #[error("no profile in {}", .0.display())]
    NoProfile(PathBuf),
    /// `init` found a profile already.
    #[error("a profile already exists in {}", .0.display())]
    ProfileExists(PathBuf),
    /// The machine could not give argon2id its memory.
    #[error("not enough memory to derive the profile key")]
    OutOfMemory,
    /// No passphrase source was available.
    #[error("no passphrase: not on a terminal and none given")]
    NoPassphrase,
    /// The two passphrases typed at `init` differ.
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    /// The passphrase offered at `init` is too short.
    #[error("the passphrase is too short (at least {0} characters)")]
    WeakPassphrase(usize),
    /// The passphrase file could not be used.
    #[error("cannot read the passphrase file: {0}")]
    PassphraseFile(io::Error),
    /// The passphrase file can be read by other users.
    #[error("the passphrase file can be read by others (mode {0:04o})")]
    PassphraseFileMode(u32),
    /// `--passphrase-fd` could not be read.
    #[error("cannot read the passphrase from file descriptor {0}: {1}")]
    PassphraseFd(u32, io::Error),
    /// The duress passphrase and the profile's passphrase would be the same.
    #[error("the duress passphrase must differ from the profile's passphrase")]
    DuressReused,
    /// The KDF parameters have no version byte (only in-process callers
    /// choose parameters).
    #[error("these argon2id parameters cannot be stored")]
    UnsupportedKdf,
    /// Message text or an invitation code given on the command line, where
    /// other local users and the shell history see it.
    #[error(
        "{what} on the command line is refused: other users of this computer and your shell history can read it"
    )]
    SecretOnCommandLine {
        /// What was given: "message text", "an invitation code".
        what: &'static str,
        /// The safe way to give it.
        safe: String,
    },
    /// A timer that is not `off` or 1 hour to 90 days.
    #[error("invalid timer {0:?}: use off, or 1h to 90d (h hours, d days, w weeks)")]
    InvalidTimer(String),
    /// No home relay is set.
    #[error("no home relay set")]
    NoRelay,
    /// A relay address did not parse.
    #[error("{0}")]
    Address(enlace_protocol::Error),
    /// No contact by that name.
    #[error("no contact named {0:?}")]
    UnknownContact(String),
    /// No nucleus by that name.
    #[error("no nucleus named {0:?}")]
    UnknownNucleus(String),
    /// A nucleus with that name exists already.
    #[error("a nucleus named {0:?} already exists")]
    NucleusExists(String),
    /// A nucleus limit was reached.
    #[error("nucleus limit reached: {0}")]
    NucleusLimit(String),
    /// We are not (or no longer) a member of the nucleus.
    #[error("you are not a member of {0:?}")]
    NotMember(String),
    /// The contact is a member already.
    #[error("{0} is already a member of {1:?}")]
    AlreadyMember(String, String),
    /// The contact is not a member.
    #[error("{0} is not a member of {1:?}")]
    NotAMember(String, String),
    /// Our role in a nucleus does not allow a change.
    #[error("{1} in {0:?}")]
    NotAllowed(String, &'static str),
    /// We are the last owner of a nucleus with other members.
    #[error("you are the last owner of {0:?}")]
    LastOwner(String),
    /// No invitation to this nucleus waits.
    #[error("no invitation to {0:?} is waiting")]
    NotInvited(String),
    /// We were invited to the nucleus and have not joined.
    #[error("you have not joined {0:?}")]
    NotJoined(String),
    /// The nucleus requires verified members and some are not.
    #[error("{0:?} requires verified members, and these are not: {1}")]
    UnverifiedMembers(String, String),
    /// A contact with that name exists already.
    #[error("a contact named {0:?} already exists")]
    ContactExists(String),
    /// A contact name that cannot be used.
    #[error("invalid contact name: {0}")]
    InvalidName(&'static str),
    /// The contact's identity key changed since it was added or verified.
    #[error("{0}'s identity key has changed; nothing was sent")]
    IdentityChanged(String),
    /// `wipe` needs a confirmation.
    #[error("wipe not confirmed")]
    NotConfirmed,
    /// A message with nothing in it.
    #[error("the message is empty")]
    EmptyMessage,
    /// A message longer than one message may be.
    #[error("{0}")]
    MessageTooLong(MessageError),
    /// An introduction to a nucleus member that does not fit one envelope.
    #[error("the introduction does not fit one envelope (relay address too long)")]
    IntroductionTooLong,
    /// No relay of the outbox could be reached.
    #[error("cannot reach the relay{}", outbox_note(*.queued))]
    RelayUnreachable {
        /// Envelopes still waiting.
        queued: usize,
    },
    /// A relay answered with an error.
    #[error("the relay refused: {0}")]
    RelayRefused(String),
    /// An invitation code that cannot be used.
    #[error("invalid invitation: {0}")]
    InvalidInvitation(String),
    /// A contact we have no mailbox to write to.
    #[error("{0} cannot be written to yet")]
    NoRoute(String),
    /// Stored state that does not decode (a session, an invitation).
    #[error("the stored {0} is damaged")]
    BrokenState(&'static str),
    /// A command that needs something this build does not have yet.
    #[error("`enlace {0}` is not available yet in this build")]
    NotAvailable(&'static str),
    /// The profile could not be encoded (a bug, or memory exhaustion).
    #[error("cannot encode the profile")]
    Encode,
    /// The process could not be hardened at start.
    #[error("{0}: {1}")]
    Harden(&'static str, io::Error),
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What the client was doing.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

/// Why an application message was refused (or cannot be made).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The bytes are not a message this version understands.
    #[error("malformed message")]
    Malformed,
    /// A signature in the message does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// The text needs more parts than a message may have.
    #[error("the message is too long (at most {0} bytes)")]
    TooLong(usize),
}

impl From<enlace_protocol::DecodeError> for MessageError {
    fn from(_: enlace_protocol::DecodeError) -> Self {
        Self::Malformed
    }
}

impl From<enlace_protocol::Error> for MessageError {
    fn from(e: enlace_protocol::Error) -> Self {
        match e {
            enlace_protocol::Error::VerificationFailed => Self::BadSignature,
            _ => Self::Malformed,
        }
    }
}

fn outbox_note(queued: usize) -> String {
    match queued {
        0 => String::new(),
        1 => "; 1 envelope kept in the outbox".into(),
        n => format!("; {n} envelopes kept in the outbox"),
    }
}

impl Error {
    pub(crate) fn io(what: &'static str, source: io::Error) -> Self {
        Self::Io { what, source }
    }

    /// What the user should do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::CannotOpen => {
                "check the passphrase; if it is right, restore the profile from a backup".into()
            }
            Self::NewerStore(_) => "use the newer enlace that wrote it".into(),
            Self::NoProfile(_) => {
                "run `enlace init` first, or pass the right --home / ENLACE_HOME".into()
            }
            Self::ProfileExists(_) => {
                "use it, or choose another --home; `enlace wipe` destroys the old one".into()
            }
            Self::OutOfMemory => "close other programs and try again".into(),
            Self::NoPassphrase => {
                "run on a terminal, or pass --passphrase-fd N or --passphrase-file FILE".into()
            }
            Self::PassphraseMismatch => "run `enlace init` again".into(),
            Self::WeakPassphrase(_) => "choose a longer passphrase, e.g. five random words".into(),
            Self::PassphraseFile(_) => "check the path given to --passphrase-file".into(),
            Self::PassphraseFileMode(_) => {
                "make it readable by you only: `chmod 600 FILE`, then try again".into()
            }
            Self::PassphraseFd(..) => "pass the number of a descriptor open for reading".into(),
            Self::DuressReused => "choose another passphrase".into(),
            Self::UnsupportedKdf => "use KdfParams::DEFAULT".into(),
            Self::SecretOnCommandLine { safe, .. } => safe.clone(),
            Self::InvalidTimer(_) => "for example `1h`, `7d`, `90d` or `off`".into(),
            Self::NoRelay => "run `enlace relay set enlace://FINGERPRINT@HOST:PORT`".into(),
            Self::Address(_) => {
                "copy the whole address the relay printed: enlace://FINGERPRINT@HOST:PORT".into()
            }
            Self::UnknownContact(_) => "run `enlace contacts` to list them".into(),
            Self::ContactExists(_) => "choose another --name".into(),
            Self::UnknownNucleus(_) => "run `enlace nucleus list` to list them".into(),
            Self::NucleusExists(_) => "choose another name".into(),
            Self::NucleusLimit(_) => "leave a nucleus you no longer use, or start a new one".into(),
            Self::NotMember(n) => {
                format!("ask a member to add you again, or `enlace nucleus leave {n}` to forget it")
            }
            Self::AlreadyMember(..) => {
                "nothing to do; `enlace nucleus members NAME` lists them".into()
            }
            Self::NotAMember(..) => "`enlace nucleus members NAME` lists the members".into(),
            Self::NotAllowed(n, _) => {
                format!("ask an owner or admin; `enlace nucleus members {n}` shows the roles")
            }
            Self::LastOwner(n) => {
                format!("make another member owner first: `enlace nucleus role {n} NAME owner`")
            }
            Self::NotInvited(_) => "`enlace nucleus list` shows your invitations".into(),
            Self::NotJoined(n) => format!(
                "`enlace nucleus join {n}` accepts the invitation, `enlace nucleus decline {n}` \
                 refuses it"
            ),
            Self::UnverifiedMembers(n, _) => format!(
                "compare safety numbers in person with `enlace verify NAME`, or allow it with \
                 `enlace nucleus require-verified {n} off`"
            ),
            Self::InvalidName(_) => {
                "use 1 to 64 characters, no control characters, not only spaces".into()
            }
            Self::IdentityChanged(name) => format!(
                "compare the safety number in person with `enlace verify {name}`, \
                 then `enlace verify {name} --confirm`"
            ),
            Self::NotConfirmed => "pass --yes, or run it on a terminal to confirm".into(),
            Self::EmptyMessage => "type the text, or give it on standard input".into(),
            Self::RelayUnreachable { queued: 0 } => {
                "check the network, or ask the relay's operator, then try again".into()
            }
            Self::RelayUnreachable { .. } => "they go out with the next send, read or listen; \
                 check the network, or ask the relay's operator"
                .into(),
            Self::RelayRefused(_) => "try again later; messages stay in the outbox".into(),
            Self::InvalidInvitation(_) => {
                "copy the whole code, or ask for a new invitation (they expire after 7 days)".into()
            }
            Self::NoRoute(_) => "wait until they accept your invitation, then `enlace read`".into(),
            Self::BrokenState(_) => "restore the profile from a backup".into(),
            Self::MessageTooLong(_) => "split it into several messages".into(),
            Self::IntroductionTooLong => "choose a home relay with a shorter address".into(),
            Self::NotAvailable(_) => "update enlace; nothing was changed".into(),
            Self::Encode => "nothing was changed; report this bug".into(),
            Self::Harden(..) => "enlace does not run where its memory could be dumped; \
                 check the system's security settings"
                .into(),
            Self::Io { .. } => "check the disk and the permissions of the profile directory".into(),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::CannotOpen => exit::CANNOT_OPEN,
            Self::SecretOnCommandLine { .. } => exit::USAGE,
            Self::IdentityChanged(_) => exit::IDENTITY_CHANGED,
            Self::RelayUnreachable { .. } | Self::RelayRefused(_) => exit::RELAY,
            _ => exit::OTHER,
        }
    }
}
