//! From the parsed command line to the command that runs it.

use std::io::{BufRead, Write};

use super::context::{Ctx, Env, PassphraseSource};
use super::output::Out;
use super::{contacts, history, messages, nucleus, profile, secrets};
use crate::cli::{Cli, Command, DuressCommand, RelayCommand};
use crate::error::Error;

/// Runs one parsed command.
pub(crate) fn run(
    cli: Cli,
    env: &Env,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let source = PassphraseSource {
        fd: cli.passphrase_fd,
        file: cli.passphrase_file,
    };
    let ctx = Ctx::new(cli.home, source, env, input)?;
    let mut out = Out::new(cli.json, out);
    let out = &mut out;
    match cli.command {
        Command::Init { relay } => profile::init(&ctx, out, relay.as_deref()),
        Command::Relay(RelayCommand::Set { address }) => profile::relay_set(&ctx, out, &address),
        Command::Relay(RelayCommand::Show) => profile::relay_show(&ctx, out),
        Command::Wipe { yes } => profile::wipe(&ctx, out, input, yes),
        Command::Contacts => contacts::list(&ctx, out),
        Command::Verify { name, confirm } => contacts::verify(&ctx, out, &name, confirm),
        Command::Invite { name } => contacts::invite(&ctx, out, name),
        Command::Accept { code, name } => contacts::accept(&ctx, out, input, code, &name),
        Command::Send { name, text } => messages::send(&ctx, out, input, &name, text),
        Command::History { name } => history::history(&ctx, out, &name),
        Command::Timer { name, duration } => history::timer(&ctx, out, &name, duration.as_deref()),
        Command::Passphrase => secrets::change_passphrase(&ctx, out, input),
        Command::Duress(DuressCommand::Set) => secrets::duress_set(&ctx, out, input),
        Command::Duress(DuressCommand::Clear) => secrets::duress_clear(&ctx, out),
        Command::Status => messages::status(&ctx, out),
        Command::Read => messages::read(&ctx, out),
        Command::Listen => messages::listen(&ctx, out),
        Command::Nucleus(cmd) => nucleus::run(&ctx, out, input, cmd),
    }
}
