//! The `hookrelay` binary: parse the command line, then hand over to [`hookrelay::cli::run`].

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    hookrelay::cli::run(hookrelay::cli::Cli::parse())
}
