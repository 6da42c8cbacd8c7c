//! `coffer check`: verify the repository's structure, and with `--read-data` every blob.

use anyhow::Result;
use coffer::check::{CheckOptions, Subset, check};
use coffer::repo::Repository;

use super::common::Global;

#[derive(clap::Args)]
pub struct Args {
    /// Also download, decrypt and verify every blob
    #[arg(long)]
    read_data: bool,
    /// Download and verify only a subset of the packs: a random share like 5%, or part n/t
    /// (running 1/t to t/t in turn covers everything)
    #[arg(long, value_name = "5%|n/t", conflicts_with = "read_data")]
    read_data_subset: Option<String>,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let store = global.store(false)?;
    let mut repo = Repository::open_unindexed(store, &global.passphrase(false)?)?;
    let subset = args
        .read_data_subset
        .as_deref()
        .map(Subset::parse)
        .transpose()?;
    let report = check(
        &mut repo,
        CheckOptions {
            read_data: args.read_data,
            subset,
        },
    )?;
    if global.json {
        global.print_json(&report)?;
    } else {
        for p in &report.errors {
            match (&p.snapshot, &p.path) {
                (Some(s), Some(path)) => {
                    eprintln!("error: snapshot {} {path}: {}", &s[..8], p.message)
                }
                _ => eprintln!("error: {}", p.message),
            }
        }
        if !global.quiet {
            println!(
                "checked {} index object(s), {} pack(s), {} blob(s), {} snapshot(s), {} tree(s){}",
                report.index_files,
                report.packs,
                report.blobs,
                report.snapshots,
                report.trees,
                if args.read_data || subset.is_some() {
                    format!("; read and verified {} pack(s)", report.packs_read)
                } else {
                    String::new()
                }
            );
            if !report.unreferenced_packs.is_empty() {
                println!(
                    "{} unreferenced pack(s), left over from interrupted backups (not an error)",
                    report.unreferenced_packs.len()
                );
            }
            if report.is_ok() {
                println!("no errors found");
            }
        }
    }
    if report.is_ok() {
        Ok(super::EXIT_OK)
    } else {
        let mut snaps: Vec<&String> = report
            .errors
            .iter()
            .filter_map(|p| p.snapshot.as_ref())
            .collect();
        snaps.sort();
        snaps.dedup();
        if !global.json {
            eprintln!(
                "check found {} error(s) affecting {} snapshot(s)",
                report.errors.len(),
                snaps.len()
            );
        }
        Ok(super::EXIT_INTEGRITY)
    }
}
