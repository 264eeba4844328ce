//! The `c360` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    let cli = c360::cli::Cli::parse();
    match c360::cli::run(cli) {
        Ok(()) => {}
        Err(f) => {
            eprintln!("error: {:#}", f.error);
            std::process::exit(f.code);
        }
    }
}
