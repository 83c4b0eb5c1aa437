//! The Enlace client: the `enlace` command-line tool and the library it is
//! built from (so tests can drive every command in-process).
//!
//! What it does: keeps one organizer's profile (identity, contacts,
//! sessions, mailboxes, history, outbox) in an encrypted store
//! ([`store`]), and runs the commands of [`cli::Command`] against it.
//!
//! What it does not do: protocol logic (that is `enlace-protocol`), or
//! relay work. It reads the clock only in [`time`].
//!
//! The store format, the KDF parameters and what `wipe` can promise are in
//! `docs/client.md`.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod engine;
pub mod error;
pub mod message;
// `net` (invite, accept, send, read, listen) needs `transport` (relay
// branch) and `enlace_protocol::session` (sessions branch); it is declared
// here once both are on main. Until then those commands report that they
// are not available.
pub mod profile;
mod qr;
pub mod store;
pub mod time;

use std::ffi::OsString;
use std::io::{BufRead, Write};

use clap::Parser;

pub use app::Env;
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
    match app::run(cli, env, input, out) {
        Ok(()) => error::exit::OK,
        Err(e) => {
            let _ = writeln!(err, "error: {e} — {}", e.hint());
            e.exit_code()
        }
    }
}
