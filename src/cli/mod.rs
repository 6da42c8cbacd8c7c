//! Command-line front end: one file per subcommand, plus shared helpers in `common`.
//!
//! Exit codes (documented in the README): 0 success, 1 error, 2 usage error, 3 completed
//! with warnings, 4 integrity failure (and a failed drill), 5 a drill met its checks but missed
//! a recovery objective, 10 no repository, 12 wrong passphrase, 130 interrupted.
//! A broken pipe (`coffer ls | head`) exits 0.

mod backup;
mod check;
mod common;
mod drill;
mod init;
mod key;
mod ls;
mod report;
mod restore;
mod snapshots;
mod store;

use clap::{Parser, Subcommand};

use coffer::ErrorKind;

pub use common::Global;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error not covered below.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: completed, but with warnings (e.g. a file could not be read).
pub const EXIT_WARNINGS: i32 = 3;
/// Exit code: data failed verification (check or restore).
pub const EXIT_INTEGRITY: i32 = 4;
/// Exit code: a drill verified everything but missed a recovery objective.
pub const EXIT_OBJECTIVE_MISSED: i32 = 5;
/// Exit code: no repository at the given location.
pub const EXIT_NO_REPO: i32 = 10;
/// Exit code: wrong passphrase.
pub const EXIT_WRONG_PASSWORD: i32 = 12;

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "Encrypted, deduplicating backups with keys only you hold"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new repository
    Init(init::Args),
    /// Back up files or standard input into a new snapshot
    Backup(backup::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// List the files in a snapshot
    Ls(ls::Args),
    /// Restore a snapshot into a directory
    Restore(restore::Args),
    /// Check the repository's structure and, with --read-data, all its data
    Check(check::Args),
    /// Manage key slots: list, add, remove, passwd
    Key(key::Args),
    /// Run a restore drill and record its report; `drill history` lists past drills
    Drill(drill::Args),
    /// Render a stored report
    Report(report::Args),
    /// Check that a store (S3-compatible service, directory) behaves as coffer needs
    Store(store::Args),
}

/// Parses argv, runs the command and returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => init::run(&cli.global, a),
        Command::Backup(a) => backup::run(&cli.global, a),
        Command::Snapshots(a) => snapshots::run(&cli.global, a),
        Command::Ls(a) => ls::run(&cli.global, a),
        Command::Restore(a) => restore::run(&cli.global, a),
        Command::Check(a) => check::run(&cli.global, a),
        Command::Key(a) => key::run(&cli.global, a),
        Command::Drill(a) => drill::run(&cli.global, a),
        Command::Report(a) => report::run(&cli.global, a),
        Command::Store(a) => store::run(&cli.global, a),
    };
    match result {
        Ok(code) => code,
        Err(err) => report(&cli.global, &err),
    }
}

fn report(global: &Global, err: &anyhow::Error) -> i32 {
    if is_broken_pipe(err) {
        return EXIT_OK;
    }
    let code = match err.downcast_ref::<coffer::Error>().map(coffer::Error::kind) {
        Some(ErrorKind::WrongPassword) => EXIT_WRONG_PASSWORD,
        Some(ErrorKind::NoRepository) => EXIT_NO_REPO,
        Some(ErrorKind::Corrupt) => EXIT_INTEGRITY,
        _ => EXIT_ERROR,
    };
    if global.json {
        let msg = serde_json::json!({ "error": format!("{err:#}"), "exit_code": code });
        eprintln!("{msg}");
    } else {
        eprintln!("coffer: error: {err:#}");
    }
    code
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
