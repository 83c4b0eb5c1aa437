//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str = "\
Environment:
  ENLACE_HOME        profile directory (same as --home)
  ENLACE_PASSPHRASE  profile passphrase, for scripts; prefer the prompt

Exit codes:
  0  success
  1  failure not listed below (the message says what)
  2  usage error: unknown command or bad arguments
  3  cannot open the profile: wrong passphrase or damaged store
  4  relay unreachable or refused; messages stay in the outbox
  5  a contact's identity key changed: verify again before sending";

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

    /// Read the passphrase from the first line of FILE
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
    /// Accept an invitation code
    Accept {
        /// The invitation code, or text containing it; `-` reads standard input
        code: String,
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
    /// Send a message (reads standard input when TEXT is omitted)
    Send {
        /// The contact
        name: String,
        /// The message
        text: Option<String>,
    },
    /// Nuclei: small groups whose messages go to every member
    #[command(subcommand)]
    Nucleus(NucleusCommand),
    /// Fetch, decrypt and print new messages
    Read,
    /// Stay connected and print messages as they arrive (Ctrl-C stops)
    Listen,
    /// Show the status of sent messages
    Status,
    /// Destroy the profile: keys, contacts, messages
    Wipe {
        /// Do not ask for confirmation
        #[arg(long)]
        yes: bool,
    },
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
    /// Create a nucleus with you as its only member
    Create {
        /// Its name
        name: String,
    },
    /// Add a contact to a nucleus (they see messages from now on only)
    Add {
        /// The nucleus
        name: String,
        /// The contact to add
        contact: String,
    },
    /// Remove a member from a nucleus
    Remove {
        /// The nucleus
        name: String,
        /// The member (a contact) to remove
        contact: String,
    },
    /// Leave a nucleus and forget it
    Leave {
        /// The nucleus
        name: String,
    },
    /// List a nucleus's members
    Members {
        /// The nucleus
        name: String,
    },
    /// Send a message to every member (reads standard input when TEXT is omitted)
    Send {
        /// The nucleus
        name: String,
        /// The message
        text: Option<String>,
    },
    /// List your nuclei
    List,
}
