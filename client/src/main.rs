//! The `enlace` command.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
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
