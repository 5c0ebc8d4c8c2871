//! The `isolab` command line: parse, call, map the outcome to an exit code.

mod cli;
mod commands;
mod failure;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // Help and version go to stdout and succeed; usage errors of the container
            // commands exit 125, Docker's "isolab failed", instead of clap's 2.
            let code = if error.use_stderr() && cli::follows_docker_convention(&args) {
                125
            } else {
                error.exit_code() as u8
            };
            return ExitCode::from(code);
        }
    };
    match commands::dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let Some(message) = failure.message() {
                eprintln!("isolab: {message}");
            }
            failure.exit_code()
        }
    }
}
