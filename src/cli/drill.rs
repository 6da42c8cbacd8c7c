//! `coffer drill`: restore a snapshot into scratch space, verify it, judge it against
//! recovery objectives and store the report; `coffer drill history` lists past drills.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use coffer::drill::{DrillOptions, Sample, drill};
use coffer::render;
use coffer::report::{self, Verdict};

use super::common::{Global, human_bytes};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Action {
    /// List past drills
    History,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Snapshot id, id prefix or `latest` (default: latest, after --host/--tag filters)
    snapshot: Option<String>,
    /// Only consider snapshots of this host
    #[arg(long)]
    host: Option<String>,
    /// Only consider snapshots with this tag (repeatable)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Restore a random, reproducible share of the files, e.g. 10%
    #[arg(long, value_parser = parse_percent, conflicts_with = "sample_files")]
    sample: Option<f64>,
    /// Restore this many randomly chosen files
    #[arg(long)]
    sample_files: Option<u64>,
    /// Seed of the random sample (recorded in the report; reuse it to repeat a drill)
    #[arg(long, value_parser = parse_seed)]
    seed: Option<u64>,
    /// Scratch directory (empty or new); default: a temporary directory
    #[arg(long)]
    target: Option<PathBuf>,
    /// Keep the restored copy instead of removing it
    #[arg(long)]
    keep: bool,
    /// Recovery time objective, e.g. 4h: the estimated full restore must fit in it
    #[arg(long, value_parser = parse_duration)]
    rto: Option<Duration>,
    /// Recovery point objective, e.g. 24h: the snapshot must be younger
    #[arg(long, value_parser = parse_duration)]
    rpo: Option<Duration>,
}

/// Parses `10%` or `10`.
fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage like 10%"))?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err("the sample must be more than 0% and at most 100%".into())
    }
}

/// Parses a seed in hex (as reports show it) or decimal.
fn parse_seed(s: &str) -> Result<u64, String> {
    u64::from_str_radix(s.trim_start_matches("0x"), 16)
        .or_else(|_| s.parse())
        .map_err(|_| format!("{s:?} is not a seed (hex as shown in reports)"))
}

/// Parses `90s`, `30m`, `4h`, `2d`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit {c:?}; use s, m, h or d (e.g. 4h, 1h30m)"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a duration like 4h"))?;
        total += n * unit;
        digits.clear();
    }
    if !digits.is_empty() || total == 0 {
        return Err(format!(
            "{s:?} is not a duration like 90s, 30m, 4h or 1h30m"
        ));
    }
    Ok(Duration::from_secs(total))
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    match args.action {
        Some(Action::History) => history(global),
        None => run_drill(global, args.run),
    }
}

fn run_drill(global: &Global, args: RunArgs) -> Result<i32> {
    crate::keep_freed_memory();
    let repo = global.open()?;
    let (id, snap) = match &args.snapshot {
        Some(spec) if args.host.is_none() && args.tags.is_empty() => repo.find_snapshot(spec)?,
        Some(_) => bail!("give either a snapshot or --host/--tag filters, not both"),
        None => repo
            .latest_intact_snapshot_where(|s| {
                args.host.as_ref().is_none_or(|h| &s.hostname == h)
                    && args.tags.iter().all(|t| s.tags.contains(t))
            })?
            .ok_or_else(|| anyhow!("no snapshot matches; `coffer snapshots` lists them"))?,
    };
    let sample = match (args.sample, args.sample_files) {
        (Some(p), _) => Sample::Percent(p),
        (None, Some(n)) => Sample::Files(n),
        (None, None) => Sample::All,
    };
    let opts = DrillOptions {
        sample,
        seed: args.seed,
        target: args.target,
        keep: args.keep,
        rto: args.rto,
        rpo: args.rpo,
    };
    let outcome = drill(&repo, id, &snap, &opts)?;
    let r = &outcome.report;
    let d = &r.report;
    if global.json {
        println!("{}", render::json(r)?);
    } else if !global.quiet {
        for f in &d.failures {
            eprintln!(
                "failed: {}: {}: expected {}, found {}",
                f.path, f.check, f.expected, f.found
            );
        }
        println!(
            "drill of snapshot {} ({} files, {}): {}",
            &d.snapshot.id[..8],
            d.checked.files,
            human_bytes(d.checked.bytes),
            verdict_word(d.verdict)
        );
        println!(
            "restore {} at {}/s, estimated full restore {}, snapshot age {}",
            render::duration(d.durations.restore_seconds),
            human_bytes(d.throughput_bytes_per_second as u64),
            render::duration(d.estimated_full_restore_seconds),
            render::duration(d.snapshot.age_seconds)
        );
        if let Some(path) = &outcome.kept_at {
            println!("restored copy kept at {}", path.display());
        }
        println!(
            "report {} stored in the repository (digest {})",
            &r.report_id[..12],
            &r.digest[..16]
        );
    }
    Ok(match d.verdict {
        Verdict::Pass => super::EXIT_OK,
        Verdict::Fail => super::EXIT_INTEGRITY,
        Verdict::ObjectiveMissed => super::EXIT_OBJECTIVE_MISSED,
    })
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASSED",
        Verdict::Fail => "FAILED verification",
        Verdict::ObjectiveMissed => "verified, but an objective was MISSED",
    }
}

fn history(global: &Global) -> Result<i32> {
    let repo = global.open()?;
    let all = report::history(&repo)?;
    if global.json {
        global.print_json(&all)?;
        return Ok(super::EXIT_OK);
    }
    if global.quiet {
        return Ok(super::EXIT_OK);
    }
    println!(
        "{:<12}  {:<20}  {:<8}  {:<16}  {:>7}  {:>10}  {:>12}",
        "Report", "Started", "Snapshot", "Verdict", "Files", "Duration", "Throughput"
    );
    for r in &all {
        let d = &r.report;
        println!(
            "{:<12}  {:<20}  {:<8}  {:<16}  {:>7}  {:>10}  {:>10}/s",
            &r.report_id[..12],
            d.started.get(..19).unwrap_or(&d.started),
            &d.snapshot.id[..8],
            format!("{:?}", d.verdict).to_lowercase(),
            d.checked.files,
            render::duration(d.durations.total_seconds),
            human_bytes(d.throughput_bytes_per_second as u64)
        );
    }
    println!("{} drill(s)", all.len());
    Ok(super::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objectives_and_samples() {
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_duration("4").is_err()
                && parse_duration("4x").is_err()
                && parse_duration("").is_err()
        );
        assert_eq!(parse_percent("10%"), Ok(10.0));
        assert!(parse_percent("0%").is_err() && parse_percent("150").is_err());
        assert_eq!(parse_seed("00000000000000ff"), Ok(255));
    }
}
