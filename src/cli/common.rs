//! Helpers every subcommand shares: global options, passphrases, opening the repository,
//! and formatting.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use coffer::keyslot::{KdfParams, Passphrase};
use coffer::repo::Repository;
use coffer::store::{FaultPlan, Location, RetryPolicy, Store, StoreOptions};

/// Options accepted by every subcommand.
#[derive(Args, Clone)]
pub struct Global {
    /// Repository location: a path, file:///path or memory://name
    #[arg(
        short = 'r',
        long = "repo",
        env = "COFFER_REPOSITORY",
        global = true,
        hide_env_values = true
    )]
    pub repo: Option<String>,
    /// Read the passphrase from this file (first line)
    #[arg(long, env = "COFFER_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use the first line it prints as the passphrase
    #[arg(long, env = "COFFER_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Retries of a failed storage request (exponential back-off with jitter)
    #[arg(long, global = true, default_value_t = 8, env = "COFFER_RETRIES")]
    pub retries: u32,
    /// Time-out of one storage request, in seconds
    #[arg(long, global = true, default_value_t = 120, env = "COFFER_TIMEOUT")]
    pub timeout: u64,
    /// Most storage requests in flight at once
    #[arg(long, global = true, default_value_t = 8, env = "COFFER_MAX_REQUESTS")]
    pub max_requests: usize,
    /// Upload limit in KiB/s
    #[arg(long, global = true, env = "COFFER_LIMIT_UPLOAD")]
    pub limit_upload: Option<u64>,
    /// Download limit in KiB/s
    #[arg(long, global = true, env = "COFFER_LIMIT_DOWNLOAD")]
    pub limit_download: Option<u64>,
    /// S3 endpoint URL (overrides AWS_ENDPOINT_URL; http:// allowed for loopback servers)
    #[arg(long, global = true)]
    pub s3_endpoint: Option<String>,
}

/// Argon2id cost options for commands that make a passphrase slot.
#[derive(Args, Clone, Copy)]
pub struct KdfArgs {
    /// Argon2id memory in MiB for the new passphrase (8..4096)
    #[arg(long, default_value_t = 64)]
    pub kdf_memory: u32,
    /// Argon2id passes for the new passphrase (1..64)
    #[arg(long, default_value_t = 3)]
    pub kdf_iterations: u32,
}

impl KdfArgs {
    pub fn params(self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf_memory.saturating_mul(1024),
            iterations: self.kdf_iterations,
            parallelism: 1,
        }
    }
}

impl Global {
    pub fn location(&self) -> Result<Location> {
        let url = self.repo.as_deref().ok_or_else(|| {
            anyhow!("no repository given: use -r/--repo or set COFFER_REPOSITORY")
        })?;
        Ok(Location::parse(url)?)
    }

    /// Whether human-readable output should be printed.
    pub fn human(&self) -> bool {
        !self.json && !self.quiet
    }

    /// The passphrase from the first configured source, or a prompt.
    pub fn passphrase(&self, confirm: bool) -> Result<Passphrase> {
        if let Some(path) = &self.password_file {
            return read_password_file(path);
        }
        if let Some(cmd) = &self.password_command {
            return password_from_command(cmd);
        }
        if let Ok(p) = std::env::var("COFFER_PASSWORD") {
            return Ok(Passphrase::new(p));
        }
        prompt("Enter passphrase for repository: ", confirm)
    }

    /// The store, with retries, limits and (for tests, from `COFFER_FAULTS`) injected faults.
    pub fn store(&self, create: bool) -> Result<Store> {
        let faults = match std::env::var("COFFER_FAULTS") {
            Ok(spec) if !spec.is_empty() => Some(FaultPlan::parse(&spec)?),
            _ => None,
        };
        let opts = StoreOptions {
            retry: RetryPolicy {
                retries: self.retries,
                timeout: Duration::from_secs(self.timeout.max(1)),
                ..Default::default()
            },
            max_requests: self.max_requests,
            upload_rate: self.limit_upload.map(|k| k * 1024),
            download_rate: self.limit_download.map(|k| k * 1024),
            faults,
            s3_endpoint: self.s3_endpoint.clone(),
        };
        Ok(Store::open_with(&self.location()?, create, &opts)?)
    }

    /// Opens the repository, loading its index.
    pub fn open(&self) -> Result<Repository> {
        let store = self.store(false)?;
        let pass = self.passphrase(false)?;
        Ok(Repository::open(store, &pass)?)
    }

    /// Prints `value` as JSON on stdout.
    pub fn print_json(&self, value: &impl serde::Serialize) -> Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, value)?;
        writeln!(out)?;
        Ok(())
    }
}

pub fn read_password_file(path: &PathBuf) -> Result<Passphrase> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading password file {}", path.display()))?;
    let pass = first_line(text);
    if pass.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(Passphrase::new(pass))
}

fn password_from_command(cmd: &str) -> Result<Passphrase> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running --password-command")?;
    if !out.status.success() {
        bail!("--password-command failed with {}", out.status);
    }
    let text = String::from_utf8(out.stdout)
        .map_err(|_| anyhow!("--password-command printed non-UTF-8 output"))?;
    Ok(Passphrase::new(first_line(text)))
}

fn first_line(mut text: String) -> String {
    if let Some(end) = text.find(['\n', '\r']) {
        text.truncate(end);
    }
    text
}

/// Asks on the terminal (twice with `confirm`).
pub fn prompt(question: &str, confirm: bool) -> Result<Passphrase> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no passphrase given and no terminal to ask on: use --password-file, --password-command, \
             COFFER_PASSWORD_FILE, COFFER_PASSWORD_COMMAND or COFFER_PASSWORD"
        );
    }
    let first = rpassword::prompt_password(question).context("reading passphrase")?;
    if confirm {
        let second = rpassword::prompt_password("Enter the same passphrase again: ")
            .context("reading passphrase")?;
        if first != second {
            bail!("the passphrases do not match");
        }
        if first.is_empty() {
            bail!("an empty passphrase is not allowed");
        }
    }
    Ok(Passphrase::new(first))
}

/// Bytes for people: 1.5 MiB.
pub fn human_bytes(n: u64) -> String {
    coffer::render::human_bytes(n)
}

/// A time in ns since the epoch as local `YYYY-MM-DD HH:MM:SS`.
pub fn human_time(ns: i64) -> String {
    let dt = chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    );
    dt.map(|d| {
        d.with_timezone(&chrono::Local)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    })
    .unwrap_or_else(|| ns.to_string())
}

/// A time in ns since the epoch as RFC 3339 (UTC), for JSON.
pub fn rfc3339(ns: i64) -> String {
    coffer::clock::rfc3339(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(first_line("pw\nrest".into()), "pw");
        assert_eq!(first_line("pw\r\n".into()), "pw");
        assert!(rfc3339(-1).starts_with("1969-12-31T23:59:59"));
    }
}
