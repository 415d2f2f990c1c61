//! `scion`: the command-line client of Scion's REST API. Parses the command line, runs one command
//! through `api-client`, and maps the outcome to an exit code: 0 done, 1 the operation failed,
//! 2 usage or configuration error. It never links the engine.
#![allow(clippy::print_stderr, reason = "a command-line tool reports errors on stderr")]

mod args;
mod commands;
mod config;
mod connection;
mod forward;
mod import_dblab;
mod logging;
mod output;
mod protection;
mod rds;
mod signals;
mod teleport;

use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = error.print();
            return ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
