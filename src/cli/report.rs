//! `coffer report drill ID|latest`: render a stored drill report as JSON, Markdown or HTML.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use coffer::render;
use coffer::report;

use super::common::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    kind: Kind,
}

#[derive(Subcommand)]
enum Kind {
    /// A restore-drill report
    Drill {
        /// Report id, id prefix, or `latest`
        id: String,
        /// Output format
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Write to this file instead of standard output
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Md,
    Html,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let Kind::Drill { id, format, output } = args.kind;
    let repo = global.open()?;
    let stored = report::find(&repo, &id)?;
    let text = match format {
        Format::Json => render::json(&stored)?,
        Format::Md => render::markdown(&stored),
        Format::Html => {
            let history: Vec<_> = report::history(&repo)?
                .into_iter()
                .filter(|r| r.report.started <= stored.report.started)
                .collect();
            render::html(&stored, &history)
        }
    };
    match output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            if !global.quiet && !global.json {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(super::EXIT_OK)
}
