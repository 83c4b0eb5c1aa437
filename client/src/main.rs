//! The `enlace` command.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // Before anything secret is in memory: no core file, not dumpable.
    if let Err(e) = enlace_client::harden::harden_process() {
        eprintln!("error: {e} — {}", e.hint());
        return ExitCode::from(enlace_client::error::exit::OTHER);
    }
    let env = enlace_client::Env::from_process();
    let stdin = std::io::stdin();
    let code = enlace_client::main_with(
        std::env::args_os(),
        &env,
        &mut stdin.lock(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
