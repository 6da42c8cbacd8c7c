//! `coffer store validate [URL]`: check that a store behaves as Coffer needs.

use anyhow::Result;
use clap::Subcommand;
use coffer::store::validate;

use super::common::Global;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Run the conformance checks (round trip, listing, ranged reads, missing objects,
    /// create-only writes, interrupted uploads, delete) under a scratch prefix
    Validate {
        /// Store URL (default: the repository location)
        url: Option<String>,
    },
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let Action::Validate { url } = args.action;
    let mut global_for_url = global.clone();
    if let Some(url) = url {
        global_for_url.repo = Some(url);
    }
    let store = global_for_url.store(true)?;
    let outcomes = validate(&store)?;
    let failed = outcomes.iter().filter(|o| o.is_fatal()).count();
    if global.json {
        global
            .print_json(&serde_json::json!({ "store": store.description(), "checks": outcomes }))?;
    } else if !global.quiet {
        for o in &outcomes {
            match (&o.failure, o.required) {
                (None, _) => println!("ok    {}", o.name),
                (Some(why), true) => println!("FAIL  {}: {why}", o.name),
                (Some(why), false) => println!("warn  {}: {why}", o.name),
            }
        }
        let passed = outcomes.iter().filter(|o| o.failure.is_none()).count();
        if failed > 0 {
            println!("coffer cannot keep backups safely in this store");
        }
        println!(
            "{}: {passed} of {} checks passed",
            store.description(),
            outcomes.len()
        );
    }
    Ok(if failed == 0 {
        super::EXIT_OK
    } else {
        super::EXIT_ERROR
    })
}
