//! Real deployments: flaky networks, persistent failures, clear errors for bad S3 settings,
//! concurrent clients without locks, and tampering — on a directory and on S3 (Garage).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

struct Repo {
    tmp: tempfile::TempDir,
    url: String,
}

impl Repo {
    fn directory() -> Repo {
        let tmp = tempfile::tempdir().unwrap();
        let url = tmp.path().join("repo").display().to_string();
        Repo::with(tmp, url)
    }

    fn s3(name: &str) -> Option<Repo> {
        let url = s3_url(name)?;
        Some(Repo::with(tempfile::tempdir().unwrap(), url))
    }

    fn with(tmp: tempfile::TempDir, url: String) -> Repo {
        std::fs::write(tmp.path().join("pass"), "pw\n").unwrap();
        let repo = Repo { tmp, url };
        let chunks = [
            "--chunk-min",
            "16K",
            "--chunk-avg",
            "64K",
            "--chunk-max",
            "256K",
        ];
        let init = repo.run(&[&QUICK_INIT[..], &chunks].concat());
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        repo
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tmp.path().join(p)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env("COFFER_REPOSITORY", &self.url)
            .env("COFFER_PASSWORD_FILE", self.path("pass"))
            .env_remove("COFFER_PASSWORD")
            .env_remove("COFFER_FAULTS");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn snapshot_count(&self) -> usize {
        self.json(&["snapshots"]).as_array().unwrap().len()
    }

    /// Every snapshot restores and verifies, and `check --read-data` finds nothing.
    fn assert_all_restore(&self) {
        let deep = self.json(&["check", "--read-data"]);
        assert_eq!(deep["errors"].as_array().unwrap().len(), 0, "{deep}");
        for snap in self.json(&["snapshots"]).as_array().unwrap() {
            let id = snap["id"].as_str().unwrap();
            let target = self.path(&format!("restore-{id}"));
            let out = self.json(&[
                "restore",
                id,
                "--verify",
                "--target",
                target.to_str().unwrap(),
            ]);
            assert_eq!(out["verify_failures"].as_array().unwrap().len(), 0);
            assert_eq!(out["result"]["errors"].as_array().unwrap().len(), 0);
        }
    }
}

fn make_tree(dir: &Path, seed: u64, shared: &[u8]) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("own"), random_bytes(3 << 20, seed)).unwrap();
    std::fs::write(dir.join("sub/shared"), shared).unwrap();
}

fn flaky_backup(repo: Repo) {
    let src = repo.path("src");
    make_tree(&src, 1, &random_bytes(2 << 20, 2));
    let out = repo
        .cmd()
        .env("COFFER_FAULTS", "fail=0.1,cut=0.03,delay=0.1:20ms")
        .args(["--json", "backup", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a backup under 10% transient failures completes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restore = repo
        .cmd()
        .env("COFFER_FAULTS", "fail=0.1,cut=0.03")
        .args([
            "restore",
            "latest",
            "--verify",
            "--target",
            repo.path("r").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    repo.assert_all_restore();

    // A failure that does not go away ends with a clear error and no visible snapshot.
    std::fs::write(src.join("new"), random_bytes(1 << 20, 3)).unwrap();
    let before = repo.snapshot_count();
    let dead = repo
        .cmd()
        .env("COFFER_FAULTS", "fail=1")
        .args(["--retries", "2", "backup", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(dead.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&dead.stderr);
    assert!(stderr.contains("gave up after 3 attempts"), "{stderr}");
    assert_eq!(repo.snapshot_count(), before);
}

#[test]
fn flaky_network_on_a_directory() {
    flaky_backup(Repo::directory());
}

#[test]
fn flaky_network_on_garage() {
    if let Some(repo) = Repo::s3("flaky") {
        flaky_backup(repo);
    }
}

fn concurrent_clients(repo: Repo) {
    let shared = random_bytes(4 << 20, 99);
    let mut children = Vec::new();
    for i in 0..3u64 {
        let src = repo.path(&format!("host{i}"));
        make_tree(&src, 10 + i, &shared);
        let child = repo
            .cmd()
            .args([
                "--json",
                "backup",
                "--host",
                &format!("host{i}"),
                src.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    let mut added = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        added += v["summary"]["bytes_added"].as_u64().unwrap();
    }
    assert_eq!(repo.snapshot_count(), 3);
    // Three own files of 3 MiB each plus the shared 4 MiB. Racing clients may each upload the
    // shared file before seeing the others' packs, but the repository's index holds it once.
    let check = repo.json(&["check"]);
    assert!(check["errors"].as_array().unwrap().is_empty(), "{check}");
    eprintln!("3 concurrent clients uploaded {added} bytes for 13 MiB of unique data");
    // A fourth backup of the shared file alone adds no data blob: it is stored already.
    let again = repo.path("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::write(again.join("copy"), &shared).unwrap();
    let v = repo.json(&["backup", again.to_str().unwrap()]);
    assert!(
        v["summary"]["bytes_added"].as_u64().unwrap() < 64 * 1024,
        "shared data is stored once: {v}"
    );
    repo.assert_all_restore();
}

#[test]
fn concurrent_clients_on_a_directory() {
    concurrent_clients(Repo::directory());
}

#[test]
fn concurrent_clients_on_garage() {
    if let Some(repo) = Repo::s3("concurrent") {
        concurrent_clients(repo);
    }
}

#[test]
fn clear_errors_for_bad_s3_settings() {
    let Some(url) = s3_url("errors") else { return };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pass"), "pw\n").unwrap();
    let run = |envs: &[(&str, &str)], args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env("COFFER_PASSWORD_FILE", tmp.path().join("pass"))
            .args(["--retries", "1", "--timeout", "5"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        let out = c.args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(
        &[],
        &[
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "-r",
            &url,
            "snapshots",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot reach"), "unreachable endpoint: {err}");
    let (code, err) = run(
        &[("AWS_SECRET_ACCESS_KEY", "wrong")],
        &["-r", &url, "snapshots"],
    );
    assert_eq!(code, Some(1));
    assert!(err.contains("credentials"), "bad credentials: {err}");
    let (code, err) = run(&[], &["-r", "s3://no-such-bucket-coffer/x", "snapshots"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("bucket"), "missing bucket: {err}");
    let (code, err) = run(&[], &["-r", &url, "snapshots"]);
    assert_eq!(code, Some(10), "an empty prefix is no repository: {err}");
}

/// Tampering with stored objects is detected by `check`, naming what is wrong.
#[test]
fn tampering_is_detected() {
    let repo = Repo::directory();
    let src = repo.path("src");
    make_tree(&src, 5, &random_bytes(1 << 20, 6));
    repo.json(&["backup", src.to_str().unwrap()]);
    let root = PathBuf::from(&repo.url);
    let mut packs = list_files(&root.join("data"));
    packs.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let (small, big) = (packs[0].clone(), packs.last().unwrap().clone());
    let errors = |r: &Repo, args: &[&str]| -> Vec<String> {
        let out = r.cmd().arg("--json").args(args).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect()
    };
    // A pack swapped for another.
    let original = std::fs::read(&big).unwrap();
    std::fs::copy(&small, &big).unwrap();
    let e = errors(&repo, &["check", "--read-data"]);
    assert!(
        e.iter().any(|m| m.contains("bytes but the index says")),
        "{e:?}"
    );
    std::fs::write(&big, &original).unwrap();
    // A truncated pack.
    std::fs::write(&big, &original[..original.len() - 10]).unwrap();
    assert!(
        errors(&repo, &["check"])
            .iter()
            .any(|m| m.contains("truncated"))
    );
    // A deleted pack.
    std::fs::remove_file(&big).unwrap();
    let e = errors(&repo, &["check"]);
    assert!(
        e.iter().any(|m| m.contains("missing from the store"))
            && e.iter().any(|m| m.contains("\"snapshot\":\"")),
        "{e:?}"
    );
    std::fs::write(&big, &original).unwrap();
    // An index object replayed from another repository (or another time, under another name):
    // it does not authenticate, or does not match its name, and is reported.
    let other = Repo::directory();
    other.json(&["backup", src.to_str().unwrap()]);
    let foreign = list_files(&PathBuf::from(&other.url).join("index")).remove(0);
    let planted = root.join("index").join(foreign.file_name().unwrap());
    std::fs::copy(&foreign, &planted).unwrap();
    let e = errors(&repo, &["check"]);
    assert!(
        e.iter()
            .any(|m| m.contains("unusable") && m.contains("authentication failed")),
        "{e:?}"
    );
    std::fs::remove_file(&planted).unwrap();
    let own = list_files(&root.join("index")).remove(0);
    let renamed = root.join("index").join(format!("{:064x}", 7));
    std::fs::copy(&own, &renamed).unwrap();
    let e = errors(&repo, &["check"]);
    assert!(
        e.iter().any(|m| m.contains("does not match its name")),
        "{e:?}"
    );
    std::fs::remove_file(&renamed).unwrap();
    // An index object deleted: the blobs it named are missing for the snapshot.
    let index = list_files(&root.join("index")).remove(0);
    let saved = std::fs::read(&index).unwrap();
    std::fs::remove_file(&index).unwrap();
    let e = errors(&repo, &["check"]);
    assert!(!e.is_empty(), "a deleted index object is noticed");
    std::fs::write(&index, &saved).unwrap();
    // A snapshot pointing at a tree that is missing: delete the tree pack.
    assert!(errors(&repo, &["check", "--read-data"]).is_empty());
    std::fs::remove_file(&small).unwrap();
    let e = errors(&repo, &["check"]);
    assert!(
        e.iter()
            .any(|m| m.contains("tree") && m.contains("\"snapshot\":\"")),
        "{e:?}"
    );
}
