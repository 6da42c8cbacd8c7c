//! The `coffer` command: parses arguments, calls the library, prints results.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
