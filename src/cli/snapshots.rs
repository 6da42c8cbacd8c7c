//! `coffer snapshots`: list snapshots.

use anyhow::Result;

use super::common::{Global, human_bytes, human_time, rfc3339};

#[derive(clap::Args)]
pub struct Args {
    /// Only snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag")]
    tags: Vec<String>,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let repo = global.open()?;
    let snaps: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| args.host.as_ref().is_none_or(|h| &s.hostname == h))
        .filter(|(_, s)| args.tags.iter().all(|t| s.tags.contains(t)))
        .collect();
    if global.json {
        let list: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(), "short_id": id.short(), "time": rfc3339(s.time_ns),
                    "tree": s.tree.to_hex(), "paths": s.paths, "hostname": s.hostname,
                    "username": s.username, "tags": s.tags, "parent": s.parent.map(|p| p.to_hex()),
                    "program": s.program, "summary": s.summary,
                })
            })
            .collect();
        global.print_json(&list)?;
        return Ok(super::EXIT_OK);
    }
    if global.quiet {
        return Ok(super::EXIT_OK);
    }
    println!(
        "{:<8}  {:<19}  {:<16}  {:<12}  {:>10}  Paths",
        "ID", "Time", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(80));
    for (id, s) in &snaps {
        println!(
            "{:<8}  {:<19}  {:<16}  {:<12}  {:>10}  {}",
            id.short(),
            human_time(s.time_ns),
            s.hostname,
            s.tags.join(","),
            human_bytes(s.summary.bytes_total),
            s.paths.join(" ")
        );
    }
    println!("{} snapshot(s)", snaps.len());
    Ok(super::EXIT_OK)
}
