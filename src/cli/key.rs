//! `coffer key`: list, add and remove key slots, change the passphrase.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use coffer::keyring;
use coffer::keyslot::Passphrase;

use super::common::{Global, KdfArgs, human_time, prompt, read_password_file, rfc3339};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// List key slots
    List,
    /// Add a passphrase slot
    Add(NewPass),
    /// Remove a key slot by id (or unique prefix)
    Remove {
        /// The slot id, as `coffer key list` shows it
        id: String,
    },
    /// Change the passphrase of the slot in use
    Passwd(NewPass),
}

#[derive(clap::Args)]
struct NewPass {
    /// Read the new passphrase from this file instead of asking
    #[arg(long, env = "COFFER_NEW_PASSWORD_FILE")]
    new_password_file: Option<PathBuf>,
    #[command(flatten)]
    kdf: KdfArgs,
}

impl NewPass {
    fn read(&self) -> Result<Passphrase> {
        match &self.new_password_file {
            Some(path) => read_password_file(path),
            None => prompt("Enter the new passphrase: ", true),
        }
    }
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let repo = global.open()?;
    match args.action {
        Action::List => {
            let slots = keyring::list(&repo)?;
            if global.json {
                let list: Vec<_> = slots
                    .iter()
                    .map(|s| serde_json::json!({
                        "id": s.id, "kind": s.kind, "current": s.current, "created": rfc3339(s.created_ns),
                        "host": s.host, "user": s.user, "kdf_memory_kib": s.kdf_memory_kib,
                    }))
                    .collect();
                global.print_json(&list)?;
            } else if !global.quiet {
                println!(
                    " {:<8}  {:<10}  {:<19}  {:<16}  User",
                    "ID", "Kind", "Created", "Host"
                );
                for s in &slots {
                    let mark = if s.current { '*' } else { ' ' };
                    println!(
                        "{mark}{:<8}  {:<10}  {:<19}  {:<16}  {}",
                        &s.id[..8],
                        s.kind,
                        human_time(s.created_ns),
                        s.host,
                        s.user
                    );
                }
            }
        }
        Action::Add(new) => {
            let id = keyring::add(&repo, &new.read()?, new.kdf.params())?;
            say(global, "added", &id)?;
        }
        Action::Remove { id } => {
            let id = keyring::remove(&repo, &id)?;
            say(global, "removed", &id)?;
        }
        Action::Passwd(new) => {
            let id = keyring::change_passphrase(&repo, &new.read()?, new.kdf.params())?;
            say(global, "changed passphrase; new key", &id)?;
        }
    }
    Ok(super::EXIT_OK)
}

fn say(global: &Global, what: &str, id: &str) -> Result<()> {
    if global.json {
        global.print_json(&serde_json::json!({ "result": what, "id": id }))?;
    } else if !global.quiet {
        println!("{what} {}", &id[..8.min(id.len())]);
    }
    Ok(())
}
