//! Streaming: a 10 GiB input backs up and restores in bounded memory.
//!
//! Ignored by default because it moves 10 GiB; `scripts/test.sh` runs it in release mode.
//! The size can be changed with `COFFER_STREAM_GIB`. The input is generated on the fly and
//! piped to `coffer backup --stdin`: every 64 KiB block is distinct (no dedup shortcut) but
//! compressible, so the repository stays small while every stage sees all 10 GiB.

use std::io::Write;
use std::process::{Command, Stdio};

/// Peak resident memory of the largest child process waited for so far, in bytes.
fn peak_child_rss() -> u64 {
    let usage =
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).unwrap();
    usage.max_rss() as u64 * 1024
}

fn block(i: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(65536);
    while b.len() < 65536 {
        b.extend_from_slice(
            format!(
                "block {i:016x} line {:08} of generated test data\n",
                b.len()
            )
            .as_bytes(),
        );
    }
    b.truncate(65536);
    b
}

#[test]
#[ignore = "moves 10 GiB; run by scripts/test.sh in release mode"]
fn ten_gib_stream_in_bounded_memory() {
    let gib: u64 = std::env::var("COFFER_STREAM_GIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let blocks = gib * 1024 * 1024 * 1024 / 65536;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pass"), "pw\n").unwrap();
    let coffer = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env("COFFER_REPOSITORY", tmp.path().join("repo"))
            .env("COFFER_PASSWORD_FILE", tmp.path().join("pass"))
            .args(args);
        c
    };
    assert!(
        coffer(&["init", "--kdf-memory", "8", "--kdf-iterations", "1"])
            .status()
            .unwrap()
            .success()
    );

    let mut child = coffer(&["--json", "backup", "--stdin", "--stdin-filename", "big.img"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut hasher = blake3::Hasher::new();
    for i in 0..blocks {
        let b = block(i);
        hasher.update(&b);
        stdin.write_all(&b).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let backup_rss = peak_child_rss();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        summary["summary"]["bytes_read"].as_u64().unwrap(),
        blocks * 65536
    );

    let target = tmp.path().join("restore");
    let restored = coffer(&["restore", "latest", "--target", target.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(
        restored.success(),
        "restore verifies the whole-file BLAKE3 as it writes"
    );
    let restore_rss = peak_child_rss();
    let file = target.join("big.img");
    assert_eq!(std::fs::metadata(&file).unwrap().len(), blocks * 65536);
    let listing = coffer(&["--json", "ls", "latest"]).output().unwrap();
    let entries: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(entries[0]["blake3"], hasher.finalize().to_hex().as_str());
    std::fs::remove_file(&file).unwrap();
    eprintln!(
        "peak RSS: backup {} MiB, backup+restore {} MiB",
        backup_rss >> 20,
        restore_rss >> 20
    );
    assert!(
        backup_rss < 400 << 20,
        "backup used {} MiB",
        backup_rss >> 20
    );
    assert!(
        restore_rss < 400 << 20,
        "restore used {} MiB",
        restore_rss >> 20
    );
}
