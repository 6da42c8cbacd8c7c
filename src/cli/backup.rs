//! `coffer backup`: back up paths or standard input.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use coffer::backup::{Backup, BackupOptions, ParentChoice, Progress, StdinSource};

use super::common::{Global, human_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Files and directories to back up
    paths: Vec<PathBuf>,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Host name to record instead of this machine's
    #[arg(long)]
    host: Option<String>,
    /// Exclude files matching a pattern (repeatable)
    #[arg(short = 'e', long = "exclude")]
    excludes: Vec<String>,
    /// Read exclude patterns from a file, one per line
    #[arg(long = "exclude-file")]
    exclude_files: Vec<PathBuf>,
    /// Do not cross file-system boundaries
    #[arg(short = 'x', long)]
    one_file_system: bool,
    /// Compare against this snapshot to skip unchanged files (default: latest of same host and paths)
    #[arg(long)]
    parent: Option<String>,
    /// Read every file, ignoring any parent snapshot
    #[arg(long, conflicts_with = "parent")]
    force: bool,
    /// Back up standard input as one file
    #[arg(long, conflicts_with = "paths")]
    stdin: bool,
    /// File name for --stdin
    #[arg(long, default_value = "stdin")]
    stdin_filename: String,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let mut excludes = args.excludes;
    for f in &args.exclude_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading exclude file {}", f.display()))?;
        excludes.extend(text.lines().map(str::to_string));
    }
    if !args.stdin && args.paths.is_empty() {
        bail!("nothing to back up: give at least one path, or --stdin");
    }
    if args.stdin && (args.stdin_filename.is_empty() || args.stdin_filename.contains('/')) {
        bail!("--stdin-filename must be a plain file name without '/'");
    }
    let parent = match (args.force, args.parent) {
        (true, _) => ParentChoice::None,
        (false, Some(p)) => ParentChoice::Snapshot(p),
        (false, None) => ParentChoice::Auto,
    };
    let stdin = args.stdin.then(|| StdinSource {
        name: args.stdin_filename.clone(),
        reader: Box::new(std::io::stdin()),
    });
    let opts = BackupOptions {
        paths: args.paths,
        tags: args.tags,
        host: args.host,
        excludes,
        one_file_system: args.one_file_system,
        parent,
        stdin,
    };
    // Listing the paths starts now and runs while the repository opens.
    let backup = Backup::start(opts)?;
    let mut repo = global.open()?;
    let progress = Bar::new(global.human());
    let outcome = backup.run(&mut repo, &progress)?;
    progress.bar.finish_and_clear();
    let s = &outcome.snapshot.summary;
    if global.json {
        global.print_json(&serde_json::json!({
            "snapshot_id": outcome.id.to_hex(),
            "summary": s,
            "warnings": outcome.warnings,
        }))?;
    } else if !global.quiet {
        println!(
            "Files: {} new, {} changed, {} unchanged",
            s.files_new, s.files_changed, s.files_unchanged
        );
        println!("Dirs:  {}, other entries: {}", s.dirs, s.others);
        println!(
            "Read {} of {}, added {} to the repository ({} new blobs) in {:.2?}",
            human_bytes(s.bytes_read),
            human_bytes(s.bytes_total),
            human_bytes(s.bytes_added),
            s.blobs_added,
            Duration::from_nanos(s.duration_ns)
        );
        println!("snapshot {} saved", outcome.id.short());
    }
    if outcome.warnings.is_empty() {
        Ok(super::EXIT_OK)
    } else {
        if !global.json {
            eprintln!(
                "backup completed with {} warning(s): some files were not backed up",
                outcome.warnings.len()
            );
        }
        Ok(super::EXIT_WARNINGS)
    }
}

/// A progress bar on stderr when it is a terminal.
struct Bar {
    bar: indicatif::ProgressBar,
    show: bool,
}

impl Bar {
    fn new(show: bool) -> Self {
        use std::io::IsTerminal;
        let bar = if show && std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed} {bytes} read ({bytes_per_sec}) {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Bar { bar, show }
    }
}

impl Progress for Bar {
    fn file(&self, path: &Path) {
        self.bar.set_message(path.display().to_string());
    }
    fn bytes(&self, n: u64) {
        self.bar.inc(n);
    }
    fn warning(&self, message: &str) {
        if self.show {
            self.bar.suspend(|| eprintln!("warning: {message}"));
        }
    }
}
