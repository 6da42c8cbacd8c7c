//! Crash consistency: `kill -9` a backup at random moments. Every time the repository stays
//! undamaged (leftovers are only reported), the next backup completes and reuses what was
//! uploaded, and every snapshot restores and verifies.
//!
//! The number of trials is `COFFER_CRASH_TRIALS` (default 20).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::random_bytes;

fn coffer(tmp: &Path, repo: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env("COFFER_REPOSITORY", repo)
        .env("COFFER_PASSWORD_FILE", tmp.join("pass"))
        .env_remove("COFFER_PASSWORD");
    c
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn init(tmp: &Path, repo: &str) {
    let ok = coffer(tmp, repo)
        .args(common::QUICK_INIT)
        .arg("-q")
        .args([
            "--chunk-min",
            "16K",
            "--chunk-avg",
            "64K",
            "--chunk-max",
            "256K",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Runs the kill -9 trials against `repo` (a path or URL).
fn crash_trials(tmp: &Path, repo: &str, trials: u32) {
    std::fs::write(tmp.join("pass"), "pw\n").unwrap();
    let src = tmp.join("src");
    for i in 0..6 {
        std::fs::create_dir_all(src.join(format!("d{i}"))).unwrap();
        std::fs::write(src.join(format!("d{i}/f")), random_bytes(1 << 20, i)).unwrap();
    }
    init(tmp, repo);
    let src_arg = src.to_str().unwrap().to_string();
    // How long an uninterrupted backup of new data takes here: kills are spread over it.
    let started = Instant::now();
    json(coffer(tmp, repo).args(["--json", "backup", &src_arg]));
    let span = started.elapsed().as_millis() as u64 + 50;
    let mut interrupted = 0;
    for trial in 0..trials {
        // New data each time, so every run has packs, an index and a snapshot to write.
        let dir = src.join(format!("t{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f"), random_bytes(3 << 20, 100 + u64::from(trial))).unwrap();
        let mut child = coffer(tmp, repo)
            .args(["backup", "-q", &src_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = u64::from_le_bytes(
            random_bytes(8, 1000 + u64::from(trial))[..8]
                .try_into()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(r % span));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let check = json(coffer(tmp, repo).args(["--json", "check"]));
        assert_eq!(
            check["errors"].as_array().unwrap().len(),
            0,
            "trial {trial}: {check}"
        );
    }
    eprintln!("{interrupted} of {trials} backups were killed while running");
    // A fresh repository shows what a full upload of the same data costs.
    let fresh = tmp.join("fresh");
    init(tmp, fresh.to_str().unwrap());
    let full = json(coffer(tmp, fresh.to_str().unwrap()).args(["--json", "backup", &src_arg]));
    let after = json(coffer(tmp, repo).args(["--json", "backup", &src_arg]));
    let (full, resumed) = (
        full["summary"]["bytes_added"].as_u64().unwrap(),
        after["summary"]["bytes_added"].as_u64().unwrap(),
    );
    eprintln!("after {trials} kills: resumed backup uploaded {resumed} bytes, a fresh one {full}");
    assert!(
        resumed < full,
        "the backup after the crashes reuses what was uploaded ({resumed} vs {full})"
    );
    let deep = json(coffer(tmp, repo).args(["--json", "check", "--read-data"]));
    assert_eq!(deep["errors"].as_array().unwrap().len(), 0, "{deep}");
    let snapshots = json(coffer(tmp, repo).args(["--json", "snapshots"]));
    for snap in snapshots.as_array().unwrap() {
        let id = snap["id"].as_str().unwrap();
        let target = tmp.join(format!("restore-{id}"));
        let out = json(coffer(tmp, repo).args([
            "--json",
            "restore",
            id,
            "--verify",
            "--target",
            target.to_str().unwrap(),
        ]));
        assert_eq!(out["verify_failures"].as_array().unwrap().len(), 0);
        assert_eq!(out["result"]["errors"].as_array().unwrap().len(), 0);
        std::fs::remove_dir_all(target).unwrap();
    }
}

#[test]
fn kill_9_during_backup_on_a_directory() {
    let trials = std::env::var("COFFER_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    crash_trials(tmp.path(), repo.to_str().unwrap(), trials);
}

#[test]
fn kill_9_during_backup_on_garage() {
    let Some(url) = common::s3_url("crash") else {
        return;
    };
    let trials = std::env::var("COFFER_CRASH_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().unwrap();
    crash_trials(tmp.path(), &url, trials);
}
