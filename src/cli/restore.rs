//! `coffer restore`: restore a snapshot into a directory, verifying every byte.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use coffer::restore::{RestoreOptions, restore_then};
use coffer::verify::{Selection, verify_restored};

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
    /// Afterwards, read every restored file back from disk and compare it and its metadata
    /// with the snapshot (only for a whole restore)
    #[arg(long, conflicts_with_all = ["include", "exclude"])]
    verify: bool,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    crate::keep_freed_memory();
    let repo = global.open()?;
    let (id, snap) = repo.find_snapshot(&args.snapshot)?;
    let started = Instant::now();
    let opts = RestoreOptions {
        target: args.target.clone(),
        include: args.include,
        exclude: args.exclude,
        only: None,
        read_back: args.verify,
    };
    // The read-back runs while the restored copy is synced to disk.
    let (out, failures) = restore_then(&repo, &snap.tree, &opts, |out| {
        if !args.verify {
            return coffer::error::Result::Ok(Vec::new());
        }
        let skip: HashSet<String> = out.errors.iter().map(|e| e.path.clone()).collect();
        let selection = Selection {
            only: None,
            skip: &skip,
            read_back: &out.read_back,
        };
        Ok(verify_restored(&repo, &snap.tree, &args.target, &selection)?.1)
    })?;
    if global.json {
        global.print_json(&serde_json::json!({
            "snapshot_id": id.to_hex(), "target": args.target, "result": out,
            "verified": args.verify, "verify_failures": failures,
        }))?;
    } else {
        for w in &out.warnings {
            eprintln!("warning: {w}");
        }
        for e in &out.errors {
            eprintln!("error: {}: {}", e.path, e.message);
        }
        for f in &failures {
            eprintln!(
                "error: {}: {} differs: expected {}, found {}",
                f.path, f.check, f.expected, f.found
            );
        }
        if !global.quiet {
            println!(
                "restored snapshot {} into {}: {} files, {} dirs, {} other, {} verified{} in {:.2?}",
                id.short(),
                args.target.display(),
                out.files,
                out.dirs,
                out.others,
                human_bytes(out.bytes),
                if args.verify { " and read back" } else { "" },
                started.elapsed()
            );
        }
    }
    let bad = out.errors.len() + failures.len();
    if bad > 0 {
        if !global.json {
            eprintln!(
                "{bad} entr(ies) failed verification; run `coffer check --read-data` for details"
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
