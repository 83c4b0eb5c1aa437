//! The `enlace-relay` binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    enlace_relay::cli::main()
}
