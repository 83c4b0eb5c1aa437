//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Message text and invitation codes are never given on the command line
(other users and your shell history could read them): type them when asked,
or give them on standard input.

Examples:
  enlace send Ana                      type the message, end with Ctrl-D
  enlace send Ana < note.txt
  enlace accept --name Ana             paste the code Ana gave you
  enlace history Ana
  enlace timer Ana 1d                  messages with Ana disappear after a day
  enlace --passphrase-fd 3 read 3< pass.txt

Environment:
  ENLACE_HOME        profile directory (same as --home)
  ENLACE_PASSPHRASE  passphrase for tests and demos only: other programs of
                     yours can read it; use the prompt, --passphrase-fd or
                     --passphrase-file

Exit codes:
  0  success
  1  failure not listed below (the message says what)
  2  usage error: unknown command or bad arguments (or a secret given as one)
  3  cannot open the profile: wrong passphrase or damaged store
  4  relay unreachable or refused; messages stay in the outbox
  5  a contact's identity key changed: verify again before sending";

const NUCLEUS_HELP: &str = "\
Examples:
  enlace nucleus create barrio            you are its owner
  enlace nucleus add barrio Ben           Ben is invited; he joins or declines
  enlace nucleus join barrio              accept an invitation (`decline` refuses it)
  enlace nucleus role barrio Ben admin    admins add and remove members
  enlace nucleus require-verified barrio on
  echo 'asamblea el jueves' | enlace nucleus send barrio

`enlace read` shows every change to a nucleus: who did what to whom.";

/// Enlace: end-to-end encrypted messages for organizers.
///
/// Everything enlace keeps is encrypted under your passphrase. `enlace
/// wipe` destroys it.
#[derive(Debug, Parser)]
#[command(name = "enlace", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Profile directory [default: the platform data directory]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "ENLACE_HOME",
        hide_env_values = true
    )]
    pub home: Option<PathBuf>,

    /// Read the passphrase from the first line of file descriptor N
    #[arg(long, global = true, value_name = "N")]
    pub passphrase_fd: Option<u32>,

    /// Read the passphrase from the first line of FILE (readable by you only, mode 0600)
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,

    /// Print JSON lines instead of text
    #[arg(long, global = true)]
    pub json: bool,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new encrypted profile
    Init {
        /// Also set the home relay (enlace://FINGERPRINT@HOST:PORT)
        #[arg(long, value_name = "ADDRESS")]
        relay: Option<String>,
    },
    /// Show or set the home relay
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Invite someone: prints a code and a QR to give them
    Invite {
        /// Name for the contact who accepts
        #[arg(long)]
        name: Option<String>,
    },
    /// Accept an invitation: paste the code when asked, or pipe it in
    Accept {
        /// `-` (the default): read the code from standard input. A code
        /// here is refused.
        #[arg(hide = true)]
        code: Option<String>,
        /// Name for the new contact
        #[arg(long)]
        name: String,
    },
    /// List contacts and whether they are verified
    Contacts,
    /// Show a contact's safety number to compare in person
    Verify {
        /// The contact
        name: String,
        /// Mark the contact verified after comparing
        #[arg(long)]
        confirm: bool,
    },
    /// Send a message: type it (end with Ctrl-D), or pipe it in
    Send {
        /// The contact
        name: String,
        /// Refused: message text is never given on the command line
        #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// Show the messages kept with a contact, or in a nucleus ('#NAME')
    History {
        /// The contact, or '#' and the nucleus (quoted: '#barrio')
        name: String,
    },
    /// Disappearing messages: show or set how long a conversation keeps them
    Timer {
        /// The contact, or '#' and the nucleus (quoted: '#barrio')
        name: String,
        /// off, or 1h to 90d (h hours, d days, w weeks); omitted: show it
        duration: Option<String>,
    },
    /// Nuclei: small groups whose messages go to every member
    #[command(subcommand, after_help = NUCLEUS_HELP)]
    Nucleus(NucleusCommand),
    /// Fetch, decrypt and print new messages
    Read,
    /// Stay connected and print messages as they arrive (Ctrl-C stops)
    Listen,
    /// Show the status of sent messages
    Status,
    /// Change the passphrase (the profile is re-keyed under it)
    ///
    /// The new passphrase is asked twice on a terminal; without one it is
    /// the first line of standard input.
    Passphrase,
    /// A second passphrase that, typed instead of yours, erases the profile
    #[command(subcommand)]
    Duress(DuressCommand),
    /// Destroy the profile: keys, contacts, messages
    Wipe {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
}

/// `enlace duress ...`
#[derive(Debug, Subcommand)]
pub enum DuressCommand {
    /// Set the duress passphrase
    ///
    /// Typed instead of yours at any passphrase prompt, it erases the
    /// profile for good and opens an empty one. It is asked twice on a
    /// terminal; without one it is the first line of standard input.
    Set,
    /// Forget the duress passphrase
    Clear,
}

/// `enlace relay ...`
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Set the home relay, where your mailboxes are made
    Set {
        /// enlace://FINGERPRINT@HOST:PORT, as the relay printed it
        address: String,
    },
    /// Show the home relay
    Show,
}

/// `enlace nucleus ...`
#[derive(Debug, Subcommand)]
pub enum NucleusCommand {
    /// Create a nucleus with you as its only member and owner
    Create {
        /// Its name
        name: String,
    },
    /// Invite a contact to a nucleus (owners and admins; they join or decline)
    Add {
        /// The nucleus
        name: String,
        /// The contact to invite
        contact: String,
    },
    /// Remove a member from a nucleus, or withdraw an invitation (owners and admins)
    Remove {
        /// The nucleus
        name: String,
        /// The member (a contact) to remove
        contact: String,
    },
    /// Give a member a role: owner, admin or member
    Role {
        /// The nucleus
        name: String,
        /// The member (a contact)
        contact: String,
        /// owner (manages everyone), admin (adds and removes members) or member
        role: RoleArg,
    },
    /// Accept an invitation to a nucleus
    Join {
        /// The nucleus, as `enlace nucleus list` shows it
        name: String,
    },
    /// Refuse an invitation to a nucleus and forget it
    Decline {
        /// The nucleus
        name: String,
    },
    /// Leave a nucleus and forget it
    Leave {
        /// The nucleus
        name: String,
    },
    /// List a nucleus's members, their roles and whether you verified them
    Members {
        /// The nucleus
        name: String,
    },
    /// Refuse to send to a nucleus while any member is not verified in person
    RequireVerified {
        /// The nucleus
        name: String,
        /// on or off
        setting: OnOff,
    },
    /// Send a message to every member: type it (end with Ctrl-D), or pipe it in
    Send {
        /// The nucleus
        name: String,
        /// Refused: message text is never given on the command line
        #[arg(hide = true, trailing_var_arg = true, allow_hyphen_values = true)]
        text: Vec<String>,
    },
    /// List your nuclei and invitations
    List,
}

/// A role in a nucleus, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    /// Adds and removes anyone, gives any role.
    Owner,
    /// Adds and removes members and admins.
    Admin,
    /// Sends and leaves.
    Member,
}

/// A setting, as typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Turned on.
    On,
    /// Turned off.
    Off,
}
