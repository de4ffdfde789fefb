//! The `hookrelay` binary: parse the command line, then hand over to [`hookrelay::cli::run`].

use std::process::ExitCode;

use clap::Parser as _;

// glibc's malloc showed as ~15% of CPU under load (many threads, many small JSON allocations);
// mimalloc is faster there and returns memory to the OS as readily.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    hookrelay::cli::run(hookrelay::cli::Cli::parse())
}
