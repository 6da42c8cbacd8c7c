//! `coffer restore`: restore a snapshot into a directory, verifying every byte.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use coffer::restore::{RestoreOptions, restore};

use super::common::{Global, human_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, id prefix, or `latest`
    snapshot: String,
    /// Directory to restore into
    #[arg(short, long)]
    target: PathBuf,
    /// Only restore paths matching a pattern (repeatable)
    #[arg(short, long = "include")]
    include: Vec<String>,
    /// Do not restore paths matching a pattern (repeatable)
    #[arg(short, long = "exclude")]
    exclude: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let repo = global.open()?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    let started = Instant::now();
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include,
        exclude: args.exclude,
    };
    let out = restore(&repo, &snap.tree, &opts)?;
    if global.json {
        global.print_json(&serde_json::json!({ "snapshot_id": id.to_hex(), "target": args.target, "result": out }))?;
    } else {
        for w in &out.warnings {
            eprintln!("warning: {w}");
        }
        for e in &out.errors {
            eprintln!("error: {e}");
        }
        if !global.quiet {
            println!(
                "restored snapshot {} into {}: {} files, {} dirs, {} other, {} verified in {:.2?}",
                id.short(),
                args.target.display(),
                out.files,
                out.dirs,
                out.others,
                human_bytes(out.bytes),
                started.elapsed()
            );
        }
    }
    if !out.errors.is_empty() {
        if !global.json {
            eprintln!(
                "{} file(s) failed verification; run `coffer check --read-data` for details",
                out.errors.len()
            );
        }
        return Ok(super::EXIT_INTEGRITY);
    }
    Ok(if out.warnings.is_empty() {
        super::EXIT_OK
    } else {
        super::EXIT_WARNINGS
    })
}
