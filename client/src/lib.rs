//! The Enlace client: the `enlace` command-line tool and the library it is
//! built from (so tests can drive every command in-process).
//!
//! What it does: keeps one organizer's profile (identity, contacts,
//! sessions, mailboxes, history, outbox, nuclei) in an encrypted store
//! ([`profile::store`]), and runs the commands of [`cli::Command`] against
//! it. It reaches relays through `enlace-quic`, which pins each relay's key
//! by fingerprint and carries the mailbox commands (create, secure, send,
//! subscribe, ack, delete).
//!
//! Layers, each importing only those below it:
//!
//! - `commands`: the CLI verbs: open the profile, call the domain and the
//!   driver, print;
//! - `driver`: the network (async; the only user of `enlace-quic`);
//! - `domain`: what messages and nucleus changes do to the profile, with
//!   no I/O and no clock;
//! - [`profile`]: the saved model and its encrypted store.
//!
//! Beside them, leaves any layer may use: [`cli`] (arguments), [`error`],
//! `time` (the only place that reads the clock), `display` (text from
//! contacts made safe for a terminal), `qr`, and [`harden`] (no core
//! files, not dumpable), which `main` calls first.
//!
//! What it does not do: protocol logic (that is `enlace-protocol`), or
//! relay work.
//!
//! The store format, the KDF parameters and what `wipe` can promise are in
//! `docs/client.md`.
//!
//! Specifications used: RFC 9106 (argon2id), draft-irtf-cfrg-xchacha
//! (XChaCha20-Poly1305).

#![forbid(unsafe_code)]

pub mod cli;
mod commands;
mod display;
mod domain;
mod driver;
pub mod error;
pub mod harden;
mod opaque;
pub mod profile;
mod qr;
mod time;

use std::ffi::OsString;
use std::io::{BufRead, Write};

use clap::Parser;

pub use commands::context::Env;
pub use error::Error;

/// Parses `args` (including the program name), runs the command and
/// renders any error as one line on `err`. Returns the exit code.
pub fn main_with<I, T>(
    args: I,
    env: &Env,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                error::exit::USAGE
            } else {
                error::exit::OK
            };
            // Plain text (no colour codes): output is often piped or logged.
            let text = e.render().to_string();
            let target: &mut dyn Write = if e.use_stderr() { err } else { out };
            let _ = write!(target, "{text}");
            return code;
        }
    };
    match commands::dispatch::run(cli, env, input, out) {
        Ok(()) => error::exit::OK,
        Err(e) => {
            let _ = writeln!(err, "error: {e} — {}", e.hint());
            e.exit_code()
        }
    }
}
