//! `coffer init`: create a repository.

use anyhow::Result;
use coffer::chunker::ChunkerParams;
use coffer::crypto::Cipher;
use coffer::repo::{InitOptions, Repository};

use super::common::{Global, KdfArgs, human_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Cipher for all data: aes-256-gcm or xchacha20-poly1305
    #[arg(long, default_value = "aes-256-gcm")]
    cipher: String,
    /// Smallest chunk (e.g. 512K)
    #[arg(long, default_value = "512K", value_parser = parse_size)]
    chunk_min: u32,
    /// Average chunk (e.g. 1M)
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    chunk_avg: u32,
    /// Largest chunk (e.g. 8M)
    #[arg(long, default_value = "8M", value_parser = parse_size)]
    chunk_max: u32,
    /// zstd compression level, 0 to turn compression off (3 stores about 5% less on typical
    /// data and backs up about a third slower)
    #[arg(long, default_value_t = 1)]
    compression: i32,
    /// Target pack size (e.g. 32M)
    #[arg(long, default_value = "32M", value_parser = parse_size)]
    pack_size: u32,
    /// Also create a random recovery key, printed once
    #[arg(long)]
    recovery_key: bool,
    #[command(flatten)]
    kdf: KdfArgs,
}

/// Parses `4096`, `512K`, `1M`, `1MiB`, `2G`.
pub fn parse_size(s: &str) -> Result<u32, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1024u64),
        Some('m' | 'M') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g' | 'G') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (t, 1),
    };
    let n: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512K, 1M or 4096"))?;
    u32::try_from(n * mult).map_err(|_| format!("{s} is too large"))
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let opts = InitOptions {
        cipher: Cipher::from_name(&args.cipher)?,
        chunker: ChunkerParams {
            min: args.chunk_min,
            avg: args.chunk_avg,
            max: args.chunk_max,
        },
        compression: args.compression,
        pack_size: args.pack_size,
        kdf: args.kdf.params(),
        recovery_key: args.recovery_key,
    };
    opts.chunker.validate()?;
    opts.kdf.validate()?;
    let pass = global.passphrase(true)?;
    let store = global.store(true)?;
    let (repo, recovery) = Repository::init(store, &pass, &opts)?;
    let id = hex::encode(&repo.config().repo_id[..4]);
    let recovery = recovery.map(|k| k.display_string());
    if global.json {
        global.print_json(&serde_json::json!({
            "repository": repo.store().description(),
            "id": hex::encode(repo.config().repo_id),
            "cipher": opts.cipher.name(),
            "chunk_min": opts.chunker.min, "chunk_avg": opts.chunker.avg, "chunk_max": opts.chunker.max,
            "recovery_key": recovery.as_deref().map(String::as_str),
        }))?;
    } else if !global.quiet {
        println!(
            "created coffer repository {id} at {}",
            repo.store().description()
        );
        println!(
            "cipher {}, chunks {} / {} / {}, zstd level {}",
            opts.cipher.name(),
            human_bytes(opts.chunker.min.into()),
            human_bytes(opts.chunker.avg.into()),
            human_bytes(opts.chunker.max.into()),
            opts.compression
        );
        println!(
            "Keep the passphrase safe: without it the data cannot be read by anyone, including us."
        );
    }
    if let (Some(key), false) = (&recovery, global.json) {
        // Shown even with --quiet: it is printed exactly once and cannot be recovered later.
        println!(
            "\nRECOVERY KEY (shown once; store it offline, it opens the repository like a passphrase):\n\n    {}\n",
            key.as_str()
        );
    }
    Ok(super::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("x").is_err());
        assert!(parse_size("8G").is_err());
    }
}
